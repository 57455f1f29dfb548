// Surfaces of the segmented anatomy in 3-D: the server's STL meshes (/api/studies/{uid}/mesh/{name}.stl,
// LPS millimetres) read into Cornerstone geometry and shown as a Surface segmentation representation.
import { Enums, geometryLoader } from "@cornerstonejs/core";
import * as tools from "@cornerstonejs/tools";

const { segmentation, Enums: ToolEnums } = tools;

/** Points and triangles (vtk cell array: 3, a, b, c, ...) of a binary or ASCII STL. */
export function parseStl(buffer) {
  const bytes = new Uint8Array(buffer);
  const view = new DataView(buffer);
  const count = bytes.length >= 84 ? view.getUint32(80, true) : 0;
  if (bytes.length === 84 + 50 * count) {
    const points = new Float32Array(count * 9);
    const polys = new Uint32Array(count * 4);
    for (let t = 0; t < count; t++) {
      const base = 84 + 50 * t + 12; // skip the normal
      for (let k = 0; k < 9; k++) points[t * 9 + k] = view.getFloat32(base + 4 * k, true);
      polys[t * 4] = 3;
      polys[t * 4 + 1] = 3 * t;
      polys[t * 4 + 2] = 3 * t + 1;
      polys[t * 4 + 3] = 3 * t + 2;
    }
    return { points, polys, triangles: count };
  }
  const text = new TextDecoder().decode(bytes);
  const verts = [];
  const re = /vertex\s+(\S+)\s+(\S+)\s+(\S+)/g;
  let m;
  while ((m = re.exec(text))) verts.push(Number(m[1]), Number(m[2]), Number(m[3]));
  const n = Math.floor(verts.length / 9);
  const polys = new Uint32Array(n * 4);
  for (let t = 0; t < n; t++) polys.set([3, 3 * t, 3 * t + 1, 3 * t + 2], t * 4);
  return { points: Float32Array.from(verts), polys, triangles: n };
}

/**
 * Weld the STL's repeated corners into shared vertices and smooth the surface for display (Taubin:
 * a shrinking and an inflating Laplacian step per iteration, so the volume stays).  Marching cubes
 * over 5 mm slices leaves terraces; smoothed, the anatomy reads as anatomy.  Downloads stay raw.
 */
export function weldAndSmooth(points, triangles, iterations = 16) {
  const n = triangles * 3;
  const index = new Uint32Array(n);
  const seen = new Map();
  const welded = [];
  for (let v = 0; v < n; v++) {
    const x = points[3 * v];
    const y = points[3 * v + 1];
    const z = points[3 * v + 2];
    const key = `${x},${y},${z}`;
    let i = seen.get(key);
    if (i === undefined) {
      i = welded.length / 3;
      welded.push(x, y, z);
      seen.set(key, i);
    }
    index[v] = i;
  }
  const count = welded.length / 3;
  // neighbours (CSR) from the triangles' edges
  const degree = new Uint32Array(count + 1);
  for (let t = 0; t < triangles; t++) {
    for (let k = 0; k < 3; k++) {
      degree[index[3 * t + k]] += 2;
    }
  }
  const start = new Uint32Array(count + 1);
  for (let i = 0; i < count; i++) start[i + 1] = start[i] + degree[i];
  const fill = start.slice(0, count);
  const nbr = new Uint32Array(start[count]);
  for (let t = 0; t < triangles; t++) {
    const a = index[3 * t];
    const b = index[3 * t + 1];
    const c = index[3 * t + 2];
    nbr[fill[a]++] = b;
    nbr[fill[a]++] = c;
    nbr[fill[b]++] = a;
    nbr[fill[b]++] = c;
    nbr[fill[c]++] = a;
    nbr[fill[c]++] = b;
  }
  let cur = Float32Array.from(welded);
  let next = new Float32Array(cur.length);
  const step = (factor) => {
    for (let i = 0; i < count; i++) {
      const s = start[i];
      const e = start[i + 1];
      if (e === s) {
        next[3 * i] = cur[3 * i];
        next[3 * i + 1] = cur[3 * i + 1];
        next[3 * i + 2] = cur[3 * i + 2];
        continue;
      }
      let sx = 0;
      let sy = 0;
      let sz = 0;
      for (let j = s; j < e; j++) {
        const q = nbr[j];
        sx += cur[3 * q];
        sy += cur[3 * q + 1];
        sz += cur[3 * q + 2];
      }
      const m = e - s;
      next[3 * i] = cur[3 * i] + factor * (sx / m - cur[3 * i]);
      next[3 * i + 1] = cur[3 * i + 1] + factor * (sy / m - cur[3 * i + 1]);
      next[3 * i + 2] = cur[3 * i + 2] + factor * (sz / m - cur[3 * i + 2]);
    }
    [cur, next] = [next, cur];
  };
  // a few plain (shrinking) steps take the terraces of thick slices off, then Taubin steps smooth
  // without shrinking further
  for (let it = 0; it < 6; it++) step(0.6);
  for (let it = 0; it < iterations; it++) {
    step(0.5);
    step(-0.53);
  }
  const polys = new Uint32Array(triangles * 4);
  for (let t = 0; t < triangles; t++) {
    polys[4 * t] = 3;
    polys[4 * t + 1] = index[3 * t];
    polys[4 * t + 2] = index[3 * t + 1];
    polys[4 * t + 3] = index[3 * t + 2];
  }
  return { points: cur, polys };
}

export function meshUrl(apiRoot, studyUid, name, step = 1) {
  const q = step > 1 ? `?step=${step}` : "";
  return `${apiRoot}/studies/${encodeURIComponent(studyUid)}/mesh/${encodeURIComponent(name)}.stl${q}`;
}

/** The structures the server can mesh ([{name, kind}]), or null when it cannot say. */
export async function listMeshes(apiRoot, studyUid, { signal } = {}) {
  try {
    const r = await fetch(`${apiRoot}/studies/${encodeURIComponent(studyUid)}/mesh`, { signal, credentials: "same-origin" });
    if (!r.ok) return null;
    const j = await r.json();
    return Array.isArray(j.items) ? j.items : null;
  } catch (e) {
    if (e.name === "AbortError") throw e;
    return null;
  }
}

/**
 * Fetch the meshes of `structures` ([{name, number, colour}]) and register them as one Surface
 * segmentation.  Resolves to {segmentationId, loaded: [names], failed: [names]}.
 */
export async function loadSurfaces({ apiRoot, studyUid, structures, frameOfReference, id, signal, step = 1 }) {
  const geometryIds = new Map();
  const loaded = [];
  const failed = [];
  await Promise.all(
    structures.map(async (s) => {
      try {
        const r = await fetch(meshUrl(apiRoot, studyUid, s.name, step), { signal, credentials: "same-origin" });
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        const raw = parseStl(await r.arrayBuffer());
        if (!raw.triangles) throw new Error("empty mesh");
        const { points, polys } = weldAndSmooth(raw.points, raw.triangles);
        const geometryId = `${id}-${s.number}`;
        geometryLoader.createAndCacheGeometry(geometryId, {
          type: Enums.GeometryType.SURFACE,
          geometryData: {
            id: geometryId,
            points: Array.from(points),
            polys: Array.from(polys),
            frameOfReferenceUID: frameOfReference,
            color: s.colour,
            segmentIndex: s.number,
          },
        });
        geometryIds.set(s.number, geometryId);
        loaded.push(s.name);
      } catch (e) {
        if (e.name === "AbortError") throw e;
        failed.push(s.name);
      }
    }),
  );
  if (geometryIds.size) {
    const segments = {};
    for (const s of structures) if (geometryIds.has(s.number)) segments[s.number] = { segmentIndex: s.number, label: s.name };
    segmentation.addSegmentations([
      {
        segmentationId: id,
        representation: { type: ToolEnums.SegmentationRepresentations.Surface, data: { geometryIds } },
        config: { segments },
      },
    ]);
  }
  return { segmentationId: geometryIds.size ? id : null, loaded, failed };
}

export function showSurfaces(viewportId, segmentationId, structures) {
  segmentation.addSurfaceRepresentationToViewport(viewportId, [{ segmentationId }]);
  for (const s of structures) {
    try {
      segmentation.config.color.setSegmentIndexColor(viewportId, segmentationId, s.number, [...s.colour, 255]);
    } catch {
      /* segment without a mesh */
    }
  }
}

/**
 * Material of the surface actors once Cornerstone has made them (its display draws them opaque and
 * matte): organs as glass, so that what lies inside them (a lesion, the airways) shows through, and a
 * little gloss.  Returns how many actors it styled (0 while they are not there yet).
 */
export function styleSurfaceActors(viewport, segmentationId, structures) {
  let styled = 0;
  const prefix = `${segmentationId}-${ToolEnums.SegmentationRepresentations.Surface}-`;
  for (const entry of viewport.getActors()) {
    const uid = entry.representationUID;
    if (typeof uid !== "string" || !uid.startsWith(prefix) || entry.medimgStyled) continue;
    const number = Number(uid.slice(prefix.length));
    const s = structures.find((x) => x.number === number);
    const prop = entry.actor.getProperty();
    prop.setOpacity(s && /lung|liver|kidney|heart|spleen/i.test(s.name) ? 0.3 : 1);
    prop.setAmbient(0.15);
    prop.setDiffuse(0.85);
    prop.setSpecular(0.25);
    prop.setSpecularPower(24);
    entry.medimgStyled = true;
    styled++;
  }
  return styled;
}
