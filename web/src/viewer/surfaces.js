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

export function meshUrl(apiRoot, studyUid, name) {
  return `${apiRoot}/studies/${encodeURIComponent(studyUid)}/mesh/${encodeURIComponent(name)}.stl`;
}

/**
 * Fetch the meshes of `structures` ([{name, number, colour}]) and register them as one Surface
 * segmentation.  Resolves to {segmentationId, loaded: [names], failed: [names]}.
 */
export async function loadSurfaces({ apiRoot, studyUid, structures, frameOfReference, id, signal }) {
  const geometryIds = new Map();
  const loaded = [];
  const failed = [];
  await Promise.all(
    structures.map(async (s) => {
      try {
        const r = await fetch(meshUrl(apiRoot, studyUid, s.name), { signal, credentials: "same-origin" });
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        const { points, polys, triangles } = parseStl(await r.arrayBuffer());
        if (!triangles) throw new Error("empty mesh");
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
