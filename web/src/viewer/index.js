/**
 * medimg viewer: the image viewer of the radiologist's workstation (Cornerstone3D 5.x).
 *
 *   import { mountViewer } from "./viewer/index.js";
 *   const viewer = mountViewer(document.querySelector("#viewer"), {
 *     dicomwebRoot: "/dicomweb",            // DICOMweb root (QIDO/WADO-RS); default "/dicomweb"
 *     apiRoot: "/api",                      // REST API root, for STL meshes; default "/api"
 *     studyUid,                             // required
 *     seriesUid,                            // optional: default the image series with most instances
 *     findings: review.findings,            // optional: findings of GET /api/studies/{uid}/review
 *     onFindingEdited(id, change) {},       // an outline moved/resized: PATCH /api/studies/{uid}/findings/{id}
 *     onFindingAdded(finding) {},           // a missed finding drawn: POST /api/studies/{uid}/findings
 *     onFindingSelected(id) {},             // an outline clicked on the image
 *     priorStudyUid,                        // optional: the prior study for the "compare" layout
 *     layout: "single",                     // optional first layout: single | mpr | compare | 3d
 *     panel: true,                          // optional: show the layer panel (segments, findings, meshes)
 *     // rarely needed:
 *     segmentationRenderer: "auto",         // stack panes' labelmap: "webgl" (Cornerstone's layer),
 *                                           // "canvas" (2-D canvas), "auto" (canvas under software WebGL)
 *     segmentationOutline: undefined,       // labelmap outlines on/off (default: on, except WebGL layers
 *                                           // under software WebGL)
 *     volumeRendering: true, surfaces: false,   // what 3-D starts with (software WebGL: surfaces
 *                                           // when the study has a segmentation)
 *   });
 *
 * The element should have a size (the viewer fills it: width and height 100%).  Everything loads in
 * the background; `viewer.ready` resolves when the first layout is up.
 *
 * Returned object (all methods are safe to call before the images have arrived):
 *   ready                          Promise, resolves when the study is shown (never rejects: errors
 *                                  are shown in the viewer and its status line)
 *   setLayout(name)                "single" (one stack), "mpr" (axial/sagittal/coronal + crosshairs,
 *                                  MIP slab), "compare" (current | prior, linked scrolling; a clear
 *                                  "No prior study" pane without one), "3d" (volume rendering +
 *                                  surfaces); Promise
 *   getLayout()                    the current layout name
 *   setTool(name)                  left-button tool: "wl" | "pan" | "zoom" | "length" | "mark" | "crosshairs" (MPR)
 *   setWindowPreset(name)          "lung" | "mediastinum" | "bone" | "brain" | "abdomen" | "liver" (keys 1-6)
 *   setWindow(width, center)       any window, in HU
 *   setInvert(on)                  grey scale inverted
 *   reset()                        camera and window back to the start
 *   scroll(delta)                  slices forward (+) or back (-) in the active pane
 *   setMip(on), setSlabThickness(mm)   MIP over a slab in the MPR panes
 *   setVolumePreset(name)          3-D preset: CT-Chest-Contrast-Enhanced, CT-Bone, CT-Lung, CT-Soft-Tissue, CT-MIP
 *   showVolume(on), showSurfaces(on)   3-D: volume rendering of the CT, surfaces of the segmented
 *                                  anatomy (the server's STL meshes); either or both
 *   toggleSegment(label, on)       show/hide one segment of the study's SEG (label as in the SEG, e.g.
 *                                  "lung_left", "F1 mass"; or its number); false if there is no such segment
 *   setSegmentationOpacity(x)      0..1 fill opacity of the labelmap
 *   getSegments()                  [{label, number, visible, colour: [r,g,b], voxels}]
 *   setFindings(findings)          replace the findings (e.g. after the review changed); redraws outlines
 *   setFindingsVisible(on)         outlines of the findings on or off
 *   jumpToFinding(id)              scroll to its key slice and centre it, in every pane; true if found
 *   showHeatmap(url | null, {opacity}?)   evidence image (Grad-CAM) over the image; null removes it
 *   getState()                     {layout, tool, slice, total, window, segments, findings, timings, ...}
 *   getTimings()                   first-image and scroll timings (also window.__medimgViewerTimings)
 *   destroy()                      remove everything (viewports, tools, caches of this viewer)
 *
 * Callbacks, in patient coordinates (DICOM LPS, millimetres):
 *   onFindingEdited(id, {center_patient: [x,y,z], bbox_patient: [x0,y0,z0,x1,y1,z1],
 *                        diameter_mm, size_mm?: [w,h], series_uid})
 *       once the outline rests after a move/resize; bbox_patient is the outline's box (min corner,
 *       max corner) on its slice; diameter_mm its longer side (rectangle) or diameter (circle).
 *   onFindingAdded({kind: "nodule", center_patient, diameter_mm, bbox_patient, series_uid})
 *       when a circle is drawn with the "mark" tool.  Post it, then call setFindings() with the new
 *       list: the drawn circle is replaced by the saved finding's outline.
 *
 * Findings are read as the review gives them: `id`, `kind`, `center_patient` or
 * `location.centroid_patient`, `bbox_patient` (either form above) or `location.bbox_index` (voxel box
 * of the analysed image, used when that image is the series' grid), `diameter_mm` or the
 * `long_axis_diameter` measurement, `review.status` or `status` (colour: ai amber, accepted green,
 * rejected grey dashed, edited blue, added violet), `series_uid` (findings of other series skipped).
 *
 * Stable test hooks: see docs/workstation.md, section "Viewer".
 */
import "./viewer.css";
import { LAYOUTS, Viewer } from "./viewer.js";
import { VOLUME_PRESETS, WINDOW_PRESETS, voiRange } from "./presets.js";

export { LAYOUTS, WINDOW_PRESETS, VOLUME_PRESETS };

export function mountViewer(element, options = {}) {
  const v = new Viewer(element, options);
  return {
    get ready() {
      return v.ready;
    },
    setLayout: (name) => v.setLayout(name),
    getLayout: () => v.layout,
    setTool: (name) => v.setTool(name),
    setWindowPreset: (name) => v.setWindowPreset(name),
    setWindow: (width, center) => {
      v.voi = voiRange(Number(width), Number(center));
      for (const p of v.panes) {
        if (!p.viewport || p.kind === "3d") continue;
        if (p.kind === "stack") p.viewport.setProperties({ voiRange: v.voi });
        else p.viewport.setProperties({ voiRange: v.voi }, p.series?.volumeId);
        p.viewport.render();
      }
      v.markButtons();
    },
    setInvert: (on) => v.setInvert(on),
    reset: () => v.reset(),
    scroll: (delta) => v.scroll(delta),
    setMip: (on) => v.setMip(on),
    setSlabThickness: (mm) => v.setSlabThickness(mm),
    setVolumePreset: (name) => v.setVolumePreset(name),
    showSurfaces: (on) => v.showSurfaces(on),
    showVolume: (on) => v.showVolume(on),
    toggleSegment: (label, on) => v.toggleSegment(label, on),
    setSegmentationOpacity: (x) => v.setSegmentationOpacity(x),
    getSegments: () =>
      v.series.current?.seg
        ? v.series.current.seg.seg.segments.map((g) => ({
            label: g.label,
            number: g.number,
            visible: v.series.current.seg.visible.get(g.number),
            colour: g.colour,
            voxels: g.voxels,
          }))
        : [],
    setFindings: (findings) => v.setFindings(findings),
    setFindingsVisible: (on) => v.setFindingsVisible(on),
    jumpToFinding: (id) => v.jumpToFinding(id),
    showHeatmap: (url, opts) => v.showHeatmap(url, opts),
    getState: () => v.getState(),
    getTimings: () => v.timings.summary(),
    destroy: () => v.destroy(),
    /** internals, for the development page and tests only */
    _internal: v,
  };
}
