// One-time set-up of Cornerstone3D for the viewer: rendering core, the DICOM image loader (wadors:
// scheme, decoding in web workers) and the tools.  Safe to call many times and alongside an app that
// initialises Cornerstone itself (every step checks what is already done).
import {
  init as coreInit,
  isCornerstoneInitialized,
  getWebWorkerManager,
} from "@cornerstonejs/core";
import { init as loaderInit } from "@cornerstonejs/dicom-image-loader";
import * as tools from "@cornerstonejs/tools";

import { FindingCircleTool, FindingRectangleTool } from "./findings.js";

let ready = null;

// The viewer brings every representation it shows (labelmaps from the SEG, surfaces from the server's
// meshes), so it needs no conversions between them; this stands in for the PolySeg add-on (not a
// dependency) and says so, instead of Cornerstone warning on every render and failing on an update.
const NO_CONVERSIONS = {
  init() {},
  canComputeRequestedRepresentation: () => false,
  computeContourData: async () => undefined,
  computeLabelmapData: async () => undefined,
  computeSurfaceData: async () => undefined,
  updateSurfaceData: async () => undefined,
  clipAndCacheSurfacesForViewport: async () => new Map(),
  extractContourData: () => new Map(),
  createAndAddContourSegmentationsFromClippedSurfaces: () => new Map(),
};

/** Resolves once Cornerstone3D (core, loader, tools) is ready; starts the decode workers early. */
export function ensureCornerstone() {
  if (!ready) ready = setUp();
  return ready;
}

async function setUp() {
  if (!isCornerstoneInitialized()) {
    // Few WebGL contexts: the viewer shows at most four viewports at a time, and each context costs
    // memory (and start-up time under software rendering).
    await coreInit({ rendering: { webGlContextCount: 2 } });
  }
  // The loader's init spawns its decode workers at once, so they load while the metadata is fetched.
  if (!getWebWorkerManager()?.workerRegistry?.dicomImageLoader) {
    const cores = Math.max(1, navigator.hardwareConcurrency || 2);
    loaderInit({ maxWebWorkers: Math.min(3, Math.max(1, Math.floor(cores / 2))) });
  }
  tools.init({ addons: { polySeg: NO_CONVERSIONS } }); // idempotent
  for (const T of [
    tools.WindowLevelTool,
    tools.PanTool,
    tools.ZoomTool,
    tools.StackScrollTool,
    tools.LengthTool,
    tools.RectangleROITool,
    tools.CircleROITool,
    tools.CrosshairsTool,
    tools.TrackballRotateTool,
    FindingRectangleTool,
    FindingCircleTool,
  ]) {
    tools.addTool(T);
  }
}
