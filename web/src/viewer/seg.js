// DICOM SEG (the analysis' derived series) shown as one Cornerstone labelmap over the CT.
//
// The SEG's segments overlap (body holds the lungs, a lung holds the lesion); one labelmap holds one
// label per voxel, so the viewer keeps every segment's mask (1 bit a pixel, per slice) and composes
// the labelmap from the visible segments, smaller structures drawn over larger ones.  Turning a
// segment off composes again, so what lay under it shows (the body under a hidden lung).
//
// Read from DICOMweb: the SEG's metadata (segments, per-frame positions and source images) and its
// Pixel Data as one bulk data request (BINARY: packed bits; FRACTIONAL: bytes, thresholded at half).
import { cache, imageLoader } from "@cornerstonejs/core";
import * as tools from "@cornerstonejs/tools";

import { numbers, splitMultipart, tagValue, tagValues } from "./dicomweb.js";

const { Enums: ToolEnums, segmentation } = tools;
const LABELMAP = ToolEnums.SegmentationRepresentations.Labelmap;

/** CIELab (DICOM scaled 0..65535) to sRGB 0..255. */
export function labToRgb(lab) {
  const L = (lab[0] / 65535) * 100;
  const a = (lab[1] / 65535) * 255 - 128;
  const b = (lab[2] / 65535) * 255 - 128;
  let y = (L + 16) / 116;
  let x = a / 500 + y;
  let z = y - b / 200;
  const f = (t) => (t ** 3 > 0.008856 ? t ** 3 : (t - 16 / 116) / 7.787);
  x = 0.95047 * f(x);
  y = 1.0 * f(y);
  z = 1.08883 * f(z);
  let r = x * 3.2406 + y * -1.5372 + z * -0.4986;
  let g = x * -0.9689 + y * 1.8758 + z * 0.0415;
  let bl = x * 0.0557 + y * -0.204 + z * 1.057;
  const gamma = (c) => (c > 0.0031308 ? 1.055 * c ** (1 / 2.4) - 0.055 : 12.92 * c);
  r = gamma(r);
  g = gamma(g);
  bl = gamma(bl);
  return [r, g, bl].map((c) => Math.round(Math.max(0, Math.min(1, c)) * 255));
}

// Colours by what a segment is, so the same anatomy looks the same in every study.
const NAMED_COLOURS = [
  [/lesion|nodule|mass|tumou?r|^f\d+/i, [255, 64, 64]],
  [/airway|trache|bronch/i, [80, 200, 255]],
  [/lung.*left|left.*lung/i, [90, 200, 120]],
  [/lung.*right|right.*lung/i, [150, 220, 90]],
  [/lung/i, [110, 210, 110]],
  [/body|skin/i, [230, 180, 120]],
  [/heart/i, [220, 80, 140]],
  [/liver/i, [190, 110, 60]],
  [/bone|spine|vertebra|rib/i, [235, 235, 210]],
];

function colourFor(label, lab) {
  for (const [re, rgb] of NAMED_COLOURS) if (re.test(label)) return rgb;
  return lab ? labToRgb(lab) : [255, 200, 0];
}

/**
 * Read a SEG instance's metadata and pixels and map its frames onto `stack` (from buildStack).
 * Returns {segments: [{number, label, meaning, colour, voxels, masks: Map(slice -> bit mask)}], uid}.
 */
export async function loadSeg(dw, studyUid, segSeriesUid, stack, { signal } = {}) {
  const metas = await dw.seriesMetadata(studyUid, segSeriesUid, { signal });
  const meta = metas.find((m) => tagValue(m, "00080060") === "SEG") || metas[0];
  if (!meta) throw new Error("the SEG series has no instance");
  const rows = Number(tagValue(meta, "00280010"));
  const cols = Number(tagValue(meta, "00280011"));
  const nFrames = Number(tagValue(meta, "00280008") ?? 1);
  const bits = Number(tagValue(meta, "00280100") ?? 1);
  const segType = String(tagValue(meta, "00620001") || "BINARY").toUpperCase();
  const ctMeta = stack.entries[0].meta;
  if (rows !== Number(tagValue(ctMeta, "00280010")) || cols !== Number(tagValue(ctMeta, "00280011"))) {
    throw new Error(`the SEG grid (${cols}x${rows}) is not the image grid`);
  }
  const segments = new Map();
  for (const item of tagValues(meta, "00620002") || []) {
    const number = Number(tagValue(item, "00620004"));
    const label = String(tagValue(item, "00620005") || `Segment ${number}`);
    // the Tracking ID names the structure to the rest of medimg (masks, meshes: lung_left, F1)
    const name = String(tagValue(item, "00620020") || label);
    const prop = (tagValues(item, "0062000F") || [])[0];
    const meaning = prop ? tagValue(prop, "00080104") || "" : "";
    segments.set(number, {
      number,
      label,
      name,
      meaning,
      colour: colourFor(label + " " + meaning, numbers(item, "0062000D")),
      masks: new Map(),
      voxels: 0,
      firstSlice: Infinity,
      lastSlice: -Infinity,
    });
  }
  // Where each frame goes: its source image (SOP UID) when that is in the stack, else its position.
  const bySop = new Map();
  stack.entries.forEach((e, i) => bySop.set(`${e.sopUid}/${e.frame}`, i));
  const perFrame = tagValues(meta, "52009230") || [];
  const shared = (tagValues(meta, "52009229") || [])[0];
  const sharedSegment = shared ? segmentNumberOf(shared) : undefined;
  const placement = [];
  for (let f = 0; f < nFrames; f++) {
    const g = perFrame[f] || {};
    const seg = segmentNumberOf(g) ?? sharedSegment;
    let slice = sliceBySource(g, bySop);
    if (slice === undefined) slice = sliceByPosition(g, stack);
    placement.push({ seg, slice });
  }
  const bulk = meta["7FE00010"];
  let pixels;
  if (bulk && bulk.BulkDataURI) {
    const r = await fetch(bulk.BulkDataURI, {
      headers: { Accept: "application/octet-stream" },
      signal,
      credentials: "same-origin",
    });
    if (!r.ok) throw new Error(`SEG pixel data: HTTP ${r.status}`);
    const type = r.headers.get("Content-Type") || "";
    pixels = new Uint8Array(await r.arrayBuffer());
    if (type.startsWith("multipart/")) {
      pixels = splitMultipart(pixels, type)[0];
    }
  } else if (bulk && bulk.InlineBinary) {
    pixels = Uint8Array.from(atob(bulk.InlineBinary), (c) => c.charCodeAt(0));
  } else {
    throw new Error("the SEG metadata has no Pixel Data bulk data URI");
  }
  const n = rows * cols;
  const maskBytes = Math.ceil(n / 8);
  const fractionalMax = Number(tagValue(meta, "00620010") ?? 255);
  for (let f = 0; f < nFrames; f++) {
    const { seg, slice } = placement[f];
    const s = segments.get(seg);
    if (!s || slice === undefined) continue;
    let mask;
    if (bits === 1) {
      mask = extractBits(pixels, f * n, n, maskBytes);
    } else {
      const bytesPer = bits / 8;
      mask = new Uint8Array(maskBytes);
      const base = f * n * bytesPer;
      const threshold = segType === "FRACTIONAL" ? fractionalMax / 2 : 0;
      for (let p = 0; p < n; p++) {
        const v = bytesPer === 2 ? pixels[base + 2 * p] | (pixels[base + 2 * p + 1] << 8) : pixels[base + p];
        if (v > threshold) mask[p >> 3] |= 1 << (p & 7);
      }
    }
    const count = popcount(mask);
    if (!count) continue;
    const old = s.masks.get(slice);
    if (old) for (let i = 0; i < maskBytes; i++) old[i] |= mask[i];
    else s.masks.set(slice, mask);
    s.voxels += count;
    s.firstSlice = Math.min(s.firstSlice, slice);
    s.lastSlice = Math.max(s.lastSlice, slice);
  }
  const list = [...segments.values()].filter((s) => s.voxels > 0);
  return {
    uid: segSeriesUid,
    sopUid: tagValue(meta, "00080018"),
    description: tagValue(meta, "0008103E") || "",
    rows,
    cols,
    segments: list,
  };
}

function segmentNumberOf(group) {
  const ident = (tagValues(group, "0062000A") || [])[0];
  const v = ident ? tagValue(ident, "0062000B") : undefined;
  return v === undefined ? undefined : Number(v);
}

function sliceBySource(group, bySop) {
  for (const d of tagValues(group, "00089124") || []) {
    for (const src of tagValues(d, "00082112") || []) {
      const sop = tagValue(src, "00081155");
      const frame = Number(tagValue(src, "00081160") ?? 1);
      const i = bySop.get(`${sop}/${frame}`);
      if (i !== undefined) return i;
    }
  }
  return undefined;
}

function sliceByPosition(group, stack) {
  const pos = numbers((tagValues(group, "00209113") || [])[0], "00200032");
  if (!pos || !stack.normal) return undefined;
  const d = pos[0] * stack.normal[0] + pos[1] * stack.normal[1] + pos[2] * stack.normal[2];
  let best;
  let bestDist = Infinity;
  stack.entries.forEach((e, i) => {
    const dist = Math.abs((e.distance ?? 0) - d);
    if (dist < bestDist) {
      bestDist = dist;
      best = i;
    }
  });
  const tol = (stack.spacing || 1) * 0.5;
  return bestDist <= tol ? best : undefined;
}

/** Bits [start, start+n) of packed little-endian bit data, as a mask starting at bit 0. */
function extractBits(src, start, n, maskBytes) {
  if ((start & 7) === 0) {
    const off = start >> 3;
    return src.slice(off, off + maskBytes);
  }
  const mask = new Uint8Array(maskBytes);
  for (let p = 0; p < n; p++) {
    const b = start + p;
    if (src[b >> 3] & (1 << (b & 7))) mask[p >> 3] |= 1 << (p & 7);
  }
  return mask;
}

const POP = new Uint8Array(256).map((_, i) => {
  let c = 0;
  for (let v = i; v; v >>= 1) c += v & 1;
  return c;
});

function popcount(mask) {
  let c = 0;
  for (let i = 0; i < mask.length; i++) c += POP[mask[i]];
  return c;
}

// The labelmap images live in the cache only; when Cornerstone builds a volume of them for the MPR
// panes it asks the loader of their scheme for one again, which answers from the cache.
let schemeRegistered = false;
function registerLabelmapScheme() {
  if (schemeRegistered) return;
  schemeRegistered = true;
  imageLoader.registerImageLoader("medimg-seg", (imageId) => ({
    promise: Promise.resolve(cache.getImage(imageId)),
  }));
}

/**
 * The labelmap of a loaded SEG over a stack, registered with Cornerstone's segmentation state.
 * `compose()` writes the visible segments into the labelmap images.
 */
export class SegOverlay {
  constructor(seg, stack, id) {
    this.seg = seg;
    this.stack = stack;
    this.segmentationId = id;
    // the body (skin) outline holds everything else: off until asked for
    this.visible = new Map(seg.segments.map((s) => [s.number, !/^(body|skin)\b/i.test(s.label)]));
    this.opacity = 0.45;
    this.outline = true;
    // Drawn in this order: largest first, so smaller structures lie on top.
    this.order = [...seg.segments].sort((a, b) => b.voxels - a.voxels);
    registerLabelmapScheme();
    this.images = imageLoader.createAndCacheDerivedLabelmapImages(stack.imageIds, {
      getDerivedImageId: (ref) => `medimg-seg:${id}:${stack.imageIds.indexOf(ref)}`,
    });
    this.labelmapImageIds = this.images.map((img) => img.imageId);
    const segs = {};
    for (const s of seg.segments) {
      segs[s.number] = { segmentIndex: s.number, label: s.label, locked: true, active: false, cachedStats: {} };
    }
    segmentation.addSegmentations([
      {
        segmentationId: id,
        representation: { type: LABELMAP, data: { imageIds: this.labelmapImageIds } },
        config: { label: seg.description || "Segmentation", segments: segs },
      },
    ]);
    this.compose();
  }

  compose() {
    const n = this.seg.rows * this.seg.cols;
    const slices = this.images.length;
    const arrays = this.images.map((img) => img.voxelManager.getScalarData());
    for (let i = 0; i < slices; i++) arrays[i].fill(0);
    for (const s of this.order) {
      if (!this.visible.get(s.number)) continue;
      const label = s.number;
      for (const [slice, mask] of s.masks) {
        const out = arrays[slice];
        if (!out) continue;
        for (let byte = 0; byte < mask.length; byte++) {
          const m = mask[byte];
          if (!m) continue;
          const base = byte << 3;
          for (let bit = 0; bit < 8; bit++) if (m & (1 << bit) && base + bit < n) out[base + bit] = label;
        }
      }
    }
    this.version = (this.version || 0) + 1;
    segmentation.triggerSegmentationEvents.triggerSegmentationDataModified(this.segmentationId);
  }

  /** RGBA of each label (0: transparent) for the 2-D renderer, with the current opacity. */
  lut() {
    const lut = new Uint8ClampedArray(256 * 4);
    for (const s of this.seg.segments) {
      const a = /^(body|skin)\b/i.test(s.label) ? this.opacity * 0.35 : this.opacity;
      lut.set([...s.colour, Math.round(a * 255)], s.number * 4);
    }
    return lut;
  }

  /** Add the labelmap to viewports (ids) with the segment colours and the current style. */
  addTo(viewportIds) {
    const map = {};
    for (const v of viewportIds) map[v] = [{ segmentationId: this.segmentationId, type: LABELMAP }];
    segmentation.addLabelmapRepresentationToViewportMap(map);
    for (const v of viewportIds) {
      for (const s of this.seg.segments) {
        segmentation.config.color.setSegmentIndexColor(v, this.segmentationId, s.number, [...s.colour, 255]);
      }
    }
    this.applyStyle();
  }

  removeFrom(viewportIds) {
    for (const v of viewportIds) {
      try {
        segmentation.removeSegmentationRepresentations(v, { segmentationId: this.segmentationId });
      } catch {
        /* already gone */
      }
    }
  }

  applyStyle() {
    // the body (or skin) holds everything else: a faint wash, so what lies inside stays readable
    for (const s of this.seg.segments) {
      if (!/^(body|skin)\b/i.test(s.label)) continue;
      segmentation.segmentationStyle.setStyle(
        { type: LABELMAP, segmentationId: this.segmentationId, segmentIndex: s.number },
        { fillAlpha: this.opacity * 0.35, fillAlphaInactive: this.opacity * 0.35 },
      );
    }
    segmentation.segmentationStyle.setStyle(
      { type: LABELMAP, segmentationId: this.segmentationId },
      {
        renderFill: this.opacity > 0,
        fillAlpha: this.opacity,
        renderOutline: this.outline,
        outlineWidth: 1,
        outlineOpacity: Math.min(1, 0.35 + this.opacity),
        renderFillInactive: this.opacity > 0,
        fillAlphaInactive: this.opacity,
        renderOutlineInactive: this.outline,
        outlineWidthInactive: 1,
        outlineOpacityInactive: Math.min(1, 0.35 + this.opacity),
      },
    );
    segmentation.triggerSegmentationEvents.triggerSegmentationRepresentationModified?.(
      undefined,
      this.segmentationId,
      LABELMAP,
    );
  }

  setVisible(number, on) {
    this.visible.set(number, Boolean(on));
    this.compose();
  }

  setOpacity(x) {
    this.opacity = Math.max(0, Math.min(1, Number(x)));
    this.version = (this.version || 0) + 1;
    this.applyStyle();
  }

  destroy() {
    try {
      segmentation.removeSegmentation(this.segmentationId);
    } catch {
      /* gone */
    }
    for (const id of this.labelmapImageIds) {
      try {
        cache.removeImageLoadObject(id, { force: true });
      } catch {
        /* not cached */
      }
    }
  }
}

/**
 * The labelmap of one stack pane drawn on a 2-D canvas over the viewport instead of as a second
 * WebGL layer.  Used where WebGL is a software rasteriser: there the labelmap layer costs more than
 * the image itself on every frame (about 60-100 ms against 35 ms here), which halves the scroll rate;
 * the browser composites a 2-D canvas almost for free.  Same labels, colours and opacity (nearest
 * neighbour, like Cornerstone's), outlines included; MPR panes keep Cornerstone's labelmap.
 */
export class SegCanvas {
  constructor(pane, overlay, { outline = true } = {}) {
    this.overlay = overlay;
    this.outlines = outline;
    this.canvas = document.createElement("canvas");
    this.canvas.className = "mv-segcanvas";
    this.canvas.width = overlay.seg.cols;
    this.canvas.height = overlay.seg.rows;
    this.ctx = this.canvas.getContext("2d");
    this.image = this.ctx.createImageData(this.canvas.width, this.canvas.height);
    this.drawn = null;
    // between the image and Cornerstone's SVG layer, so the outlines of findings stay on top
    const svg = pane.canvas.querySelector("svg");
    if (svg?.parentNode) svg.parentNode.insertBefore(this.canvas, svg);
    else pane.el.insertBefore(this.canvas, pane.overlay.root);
  }

  update(viewport) {
    const o = this.overlay;
    let index;
    try {
      index = viewport.getCurrentImageIdIndex();
    } catch {
      return;
    }
    const key = `${index}:${o.version}`;
    if (this.drawn !== key) {
      this.drawn = key;
      this.draw(o.images[index]?.voxelManager.getScalarData());
    }
    // image pixel (i, j) -> canvas, as the viewport shows it (zoom, pan, flips)
    const data = viewport.getImageData?.();
    if (!data?.imageData) return;
    const [w, h] = data.dimensions;
    const at = (i, j) => viewport.worldToCanvas(data.imageData.indexToWorld([i, j, 0]));
    const p0 = at(-0.5, -0.5);
    const px = at(w - 0.5, -0.5);
    const py = at(-0.5, h - 0.5);
    const a = (px[0] - p0[0]) / w;
    const b = (px[1] - p0[1]) / w;
    const c = (py[0] - p0[0]) / h;
    const d = (py[1] - p0[1]) / h;
    this.canvas.style.transform = `matrix(${a}, ${b}, ${c}, ${d}, ${p0[0]}, ${p0[1]})`;
  }

  draw(labels) {
    const px = this.image.data;
    const w = this.canvas.width;
    const h = this.canvas.height;
    if (!labels) {
      px.fill(0);
      this.ctx.putImageData(this.image, 0, 0);
      return;
    }
    const lut = this.overlay.lut();
    const edge = this.outlines;
    const edgeAlpha = Math.min(255, Math.round((0.35 + this.overlay.opacity) * 255));
    for (let y = 0, i = 0; y < h; y++) {
      for (let x = 0; x < w; x++, i++) {
        const v = labels[i];
        const q = i * 4;
        if (!v) {
          px[q + 3] = 0;
          continue;
        }
        const l = v * 4;
        px[q] = lut[l];
        px[q + 1] = lut[l + 1];
        px[q + 2] = lut[l + 2];
        let alpha = lut[l + 3];
        if (edge && (x === 0 || y === 0 || x === w - 1 || y === h - 1 || labels[i - 1] !== v || labels[i + 1] !== v || labels[i - w] !== v || labels[i + w] !== v)) {
          alpha = Math.max(alpha, this.overlay.opacity > 0 ? edgeAlpha : 0);
        }
        px[q + 3] = alpha;
      }
    }
    this.ctx.putImageData(this.image, 0, 0);
  }

  destroy() {
    this.canvas.remove();
  }
}
