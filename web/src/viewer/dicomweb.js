// DICOMweb access for the viewer: QIDO-RS searches, WADO-RS metadata, and the wadors: image IDs the
// Cornerstone DICOM image loader fetches frames with.  Metadata (DICOM JSON) is handed to the loader's
// wadors metaDataManager, which is what its metadata provider reads (the way OHIF feeds it).
import { wadors } from "@cornerstonejs/dicom-image-loader";

const JSON_ACCEPT = "application/dicom+json, application/json;q=0.9";
const NON_IMAGE = new Set(["SEG", "SR", "PR", "KO", "RTSTRUCT", "RTPLAN", "RTDOSE", "DOC", "REG", "FID"]);

/** DICOM JSON value helpers (PS3.18 F.2). */
export function tagValue(meta, tag, index = 0) {
  const el = meta?.[tag];
  if (!el || !el.Value || el.Value.length <= index) return undefined;
  const v = el.Value[index];
  if (v && typeof v === "object" && "Alphabetic" in v) return v.Alphabetic;
  return v;
}

export function tagValues(meta, tag) {
  const el = meta?.[tag];
  return el && Array.isArray(el.Value) ? el.Value : undefined;
}

export function numbers(meta, tag) {
  const v = tagValues(meta, tag);
  return v ? v.map(Number) : undefined;
}

export class DicomWebError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

export class DicomWeb {
  /** @param {string} root e.g. "/dicomweb" (made absolute against the page's address) */
  constructor(root) {
    this.root = new URL(root || "/dicomweb", window.location.href).href.replace(/\/+$/, "");
  }

  async json(path, { signal } = {}) {
    const r = await fetch(this.root + path, { headers: { Accept: JSON_ACCEPT }, signal, credentials: "same-origin" });
    if (r.status === 204) return [];
    if (!r.ok) {
      let why = "";
      try {
        why = (await r.json()).error || "";
      } catch {
        /* not JSON */
      }
      throw new DicomWebError(`${path}: HTTP ${r.status}${why ? ` (${why})` : ""}`, r.status);
    }
    return r.json();
  }

  studyPath(s) {
    return `/studies/${encodeURIComponent(s)}`;
  }

  seriesPath(s, se) {
    return `${this.studyPath(s)}/series/${encodeURIComponent(se)}`;
  }

  instancePath(s, se, i) {
    return `${this.seriesPath(s, se)}/instances/${encodeURIComponent(i)}`;
  }

  /** QIDO-RS: the study's series (UID, modality, number, description, instance count). */
  async series(studyUid, opts) {
    const rows = await this.json(
      `${this.studyPath(studyUid)}/series?includefield=0008103E&includefield=00201209&includefield=00080021&includefield=00080031`,
      opts,
    );
    return rows.map((r) => ({
      uid: tagValue(r, "0020000E"),
      modality: tagValue(r, "00080060") || "",
      number: Number(tagValue(r, "00200011") ?? 0),
      description: tagValue(r, "0008103E") || "",
      instances: Number(tagValue(r, "00201209") ?? 0),
      date: tagValue(r, "00080021") || "",
      time: tagValue(r, "00080031") || "",
    }));
  }

  /** QIDO-RS: instances of a series (UID, instance number); cheap: answered from the index. */
  async instances(studyUid, seriesUid, opts) {
    const rows = await this.json(`${this.seriesPath(studyUid, seriesUid)}/instances`, opts);
    return rows.map((r) => ({
      uid: tagValue(r, "00080018"),
      number: Number(tagValue(r, "00200013") ?? 0),
      frames: Number(tagValue(r, "00280008") ?? 1) || 1,
      rows: Number(tagValue(r, "00280010") ?? 0),
    }));
  }

  /** QIDO-RS: every instance of the study with its series (UID, modality, number). */
  async studyInstances(studyUid, opts) {
    const rows = await this.json(`${this.studyPath(studyUid)}/instances`, opts);
    return rows.map((r) => ({
      uid: tagValue(r, "00080018"),
      number: Number(tagValue(r, "00200013") ?? 0),
      frames: Number(tagValue(r, "00280008") ?? 1) || 1,
      rows: Number(tagValue(r, "00280010") ?? 0),
      seriesUid: tagValue(r, "0020000E"),
      modality: tagValue(r, "00080060") || "",
      seriesNumber: Number(tagValue(r, "00200011") ?? 0),
    }));
  }

  seriesMetadata(studyUid, seriesUid, opts) {
    return this.json(`${this.seriesPath(studyUid, seriesUid)}/metadata`, opts);
  }

  async instanceMetadata(studyUid, seriesUid, sopUid, opts) {
    const list = await this.json(`${this.instancePath(studyUid, seriesUid, sopUid)}/metadata`, opts);
    return list[0];
  }

  /** The wadors: image ID of one frame (1-based). */
  imageId(studyUid, seriesUid, sopUid, frame = 1) {
    return `wadors:${this.root}${this.instancePath(studyUid, seriesUid, sopUid)}/frames/${frame}`;
  }

  /** Raw bytes of frames (multipart/related; uncompressed octet-stream), one ArrayBuffer per part. */
  async frames(studyUid, seriesUid, sopUid, frameList, { signal } = {}) {
    const url = `${this.root}${this.instancePath(studyUid, seriesUid, sopUid)}/frames/${frameList}`;
    const r = await fetch(url, {
      headers: { Accept: 'multipart/related; type="application/octet-stream"' },
      signal,
      credentials: "same-origin",
    });
    if (!r.ok) throw new DicomWebError(`frames of ${sopUid}: HTTP ${r.status}`, r.status);
    const type = r.headers.get("Content-Type") || "";
    const body = new Uint8Array(await r.arrayBuffer());
    if (!type.toLowerCase().startsWith("multipart/")) return [body];
    return splitMultipart(body, type);
  }
}

/** Split a multipart/related body into its parts' bodies (Uint8Array views). */
export function splitMultipart(body, contentType) {
  const m = /boundary="?([^";]+)"?/i.exec(contentType);
  if (!m) return [body];
  const delim = new TextEncoder().encode(`--${m[1]}`);
  const parts = [];
  let pos = indexOf(body, delim, 0);
  while (pos >= 0) {
    let start = pos + delim.length;
    if (body[start] === 0x2d && body[start + 1] === 0x2d) break; // close delimiter
    const headerEnd = indexOf(body, CRLFCRLF, start);
    if (headerEnd < 0) break;
    start = headerEnd + 4;
    const next = indexOf(body, delim, start);
    if (next < 0) break;
    let end = next;
    if (body[end - 2] === 0x0d && body[end - 1] === 0x0a) end -= 2;
    parts.push(body.subarray(start, end));
    pos = next;
  }
  return parts;
}

const CRLFCRLF = new Uint8Array([13, 10, 13, 10]);

function indexOf(hay, needle, from) {
  const first = needle[0];
  const last = hay.length - needle.length;
  outer: for (let i = from; i <= last; i++) {
    if (hay[i] !== first) continue;
    for (let j = 1; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/** Hand an instance's DICOM JSON to the loader's wadors metadata store for each of its image IDs. */
export function registerMetadata(imageId, meta) {
  wadors.metaDataManager.add(imageId, sanitise(meta));
}

/**
 * Values that would break the geometry rather than inform it: a pixel spacing of 0 (some computed
 * radiographs carry "0\0") makes every distance 0 and the camera degenerate.  Such attributes are
 * dropped, so Cornerstone falls back to 1 mm and says the spacing is unknown.
 */
export function sanitise(meta) {
  for (const tag of ["00280030", "00181164", "00182010"]) {
    const v = meta[tag]?.Value;
    if (v && !(v.length >= 2 && v.every((x) => Number(x) > 0))) delete meta[tag];
  }
  return meta;
}

const PO_AXES = { L: [1, 0, 0], R: [-1, 0, 0], P: [0, 1, 0], A: [0, -1, 0], H: [0, 0, 1], F: [0, 0, -1] };

/**
 * Screen directions of a projection image without Image Orientation (Patient), from its Patient
 * Orientation (0020,0020): the patient directions of the rows (to the right) and of the columns
 * (downwards), e.g. ["L", "F"].  Null when unknown.
 */
export function patientOrientationLetters(meta) {
  const po = tagValues(meta, "00200020");
  if (tagValues(meta, "00200037") || !po || po.length < 2) return null;
  const flipLetters = (s) => String(s).split("").map((c) => ({ L: "R", R: "L", A: "P", P: "A", H: "F", F: "H" })[c] || c).join("");
  const right = String(po[0]);
  const down = String(po[1]);
  if (![...right, ...down].every((c) => PO_AXES[c])) return null;
  return { right, left: flipLetters(right), bottom: down, top: flipLetters(down) };
}

/** Is this series one the viewer can show as images? */
export function isImageSeries(s) {
  return !NON_IMAGE.has(String(s.modality || "").toUpperCase());
}

/** The series to open when none is given: the image series with the most instances. */
export function pickMainSeries(list) {
  const images = list.filter(isImageSeries);
  images.sort((a, b) => b.instances - a.instances || a.number - b.number);
  return images[0];
}

/** The same choice from a study's instance list (QIDO at study level). */
export function pickMainSeriesOfInstances(instances) {
  const bySeries = new Map();
  for (const i of instances) {
    if (!i.seriesUid || !isImageSeries({ modality: i.modality })) continue;
    const s = bySeries.get(i.seriesUid) || { uid: i.seriesUid, instances: 0, number: i.seriesNumber };
    s.instances += i.frames || 1;
    bySeries.set(i.seriesUid, s);
  }
  const list = [...bySeries.values()].sort((a, b) => b.instances - a.instances || a.number - b.number);
  return list[0]?.uid;
}

/**
 * Order a series' instances (DICOM JSON) into a stack: by position along the slice normal when
 * positions are known, else by instance number.  Multi-frame instances give one entry per frame.
 * Returns {entries: [{sopUid, frame, meta, position, imageId}], normal, spacing, ...geometry}.
 */
export function buildStack(dw, studyUid, seriesUid, metas) {
  const entries = [];
  for (const meta of metas) {
    const sop = tagValue(meta, "00080018");
    if (!sop || tagValue(meta, "00280010") === undefined) continue; // no pixels
    const frames = Number(tagValue(meta, "00280008") ?? 1) || 1;
    const imageId1 = dw.imageId(studyUid, seriesUid, sop, 1);
    registerMetadata(imageId1, meta);
    for (let f = 1; f <= frames; f++) {
      entries.push({
        sopUid: sop,
        frame: f,
        meta,
        imageId: f === 1 ? imageId1 : dw.imageId(studyUid, seriesUid, sop, f),
        number: Number(tagValue(meta, "00200013") ?? 0),
        position: numbers(meta, "00200032"),
      });
    }
  }
  const iop = numbers(entries[0]?.meta, "00200037");
  let normal = null;
  if (iop && iop.length === 6) {
    normal = cross(iop.slice(0, 3), iop.slice(3, 6));
  }
  const positioned = normal && entries.every((e) => e.frame === 1 && e.position && e.position.length === 3);
  if (positioned) {
    for (const e of entries) e.distance = dot(e.position, normal);
    entries.sort((a, b) => a.distance - b.distance || a.number - b.number);
  } else {
    entries.sort((a, b) => a.number - b.number || a.frame - b.frame);
  }
  let spacing = null;
  if (positioned && entries.length > 1) {
    spacing = Math.abs(entries[entries.length - 1].distance - entries[0].distance) / (entries.length - 1);
  }
  const projection = iop ? null : patientOrientationLetters(entries[0]?.meta);
  return { entries, imageIds: entries.map((e) => e.imageId), normal, iop, spacing, positioned, projection };
}

export function dot(a, b) {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

export function cross(a, b) {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}

/** Patient and series facts for the overlay, from one instance's DICOM JSON. */
export function describe(meta) {
  const date = tagValue(meta, "00080020") || "";
  return {
    patientName: String(tagValue(meta, "00100010") || "").replace(/\^/g, " ").trim(),
    patientId: tagValue(meta, "00100020") || "",
    sex: tagValue(meta, "00100040") || "",
    age: tagValue(meta, "00101010") || "",
    studyDate: date.length === 8 ? `${date.slice(0, 4)}-${date.slice(4, 6)}-${date.slice(6)}` : date,
    studyDescription: tagValue(meta, "00081030") || "",
    seriesDescription: tagValue(meta, "0008103E") || "",
    seriesNumber: tagValue(meta, "00200011") ?? "",
    modality: tagValue(meta, "00080060") || "",
    institution: tagValue(meta, "00080080") || "",
    sliceThickness: tagValue(meta, "00180050"),
    frameOfReference: tagValue(meta, "00200052") || "",
    windowCenter: Number(tagValue(meta, "00281050")),
    windowWidth: Number(tagValue(meta, "00281051")),
  };
}
