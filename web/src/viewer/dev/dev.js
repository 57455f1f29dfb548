// Development page for the viewer alone (web/viewer-dev.html): mounts it on the study in the URL with
// the findings of the study's review (or of its report while the review API is not there) and logs
// the editing callbacks.  Not part of the app.
import * as cornerstoneTools from "@cornerstonejs/tools";

import { mountViewer } from "../index.js";

window.__cornerstoneTools = cornerstoneTools; // to look at its state from the console

const q = new URLSearchParams(location.search);
const api = q.get("api") || "/api";

async function reviewOf(study) {
  for (const path of [`/studies/${study}/review`, `/studies/${study}/report`]) {
    try {
      const r = await fetch(api + path, { credentials: "same-origin" });
      if (r.ok) {
        const j = await r.json();
        return { findings: j.findings || [], report: j.report || j };
      }
    } catch {
      /* try the next */
    }
  }
  return { findings: [], report: null };
}

async function main() {
  let study = q.get("study");
  if (!study) {
    const r = await fetch("/dicomweb/studies?limit=1", { headers: { Accept: "application/dicom+json" } });
    const rows = await r.json();
    study = rows[0]?.["0020000D"]?.Value?.[0];
  }
  window.__viewerEvents = [];
  const review = q.get("findings") === "0" ? { findings: [], report: null } : await reviewOf(study);
  window.__devReview = review;
  const viewer = mountViewer(document.getElementById("viewer"), {
    dicomwebRoot: q.get("dicomweb") || "/dicomweb",
    apiRoot: api,
    studyUid: study,
    seriesUid: q.get("series") || review.report?.study?.series_instance_uid || undefined,
    priorStudyUid: q.get("prior") || undefined,
    layout: q.get("layout") || "single",
    segmentationOutline: q.get("segoutline") === null ? undefined : q.get("segoutline") !== "0",
    segmentationRenderer: q.get("segrenderer") || undefined,
    volumeRendering: q.get("volume") === null ? undefined : q.get("volume") !== "0",
    surfaces: q.get("surfaces") === null ? undefined : q.get("surfaces") !== "0",
    findings: review.findings,
    onFindingEdited: (id, change) => window.__viewerEvents.push({ type: "edited", id, change }),
    onFindingAdded: (finding) => window.__viewerEvents.push({ type: "added", finding }),
    onFindingSelected: (id) => window.__viewerEvents.push({ type: "selected", id }),
  });
  window.viewer = viewer;
  // development: open another study in the same element (as the app does between studies)
  window.remount = async (uid, extra = {}) => {
    window.viewer.destroy();
    const r = await reviewOf(uid);
    window.viewer = mountViewer(document.getElementById("viewer"), {
      dicomwebRoot: "/dicomweb",
      apiRoot: api,
      studyUid: uid,
      seriesUid: r.report?.study?.series_instance_uid || undefined,
      findings: r.findings,
      ...extra,
    });
    return window.viewer.ready;
  };
  if (q.get("heatmap")) viewer.showHeatmap(q.get("heatmap"));
}

main();
