// The bridge to the image viewer (web/src/viewer, Cornerstone3D), loaded on demand: the worklist and
// the dashboard render without it (the worklist fetches it once it is on screen and the browser is
// idle).  If the viewer module is missing from a build the study page still works (a placeholder
// takes its place).
import { h } from "./dom.js";
import { icon } from "./ui/icons.js";

const modules = import.meta.glob("../viewer/index.js");

let loading = null;

/** Whether this build has the viewer at all. */
export function hasViewer() {
  return Boolean(modules["../viewer/index.js"]);
}

export function loadViewerModule() {
  const loader = modules["../viewer/index.js"];
  if (!loader) return Promise.resolve(null);
  if (!loading) loading = loader().catch((err) => {
    loading = null;
    throw err;
  });
  return loading;
}

/**
 * Mount a viewer in `element` (mountViewer of web/src/viewer/index.js).  Returns an adapter with the
 * calls the study page makes; each is a no-op when the viewer is missing or does not offer it:
 *   showFinding(id), setFindings(findings), setLayout(name), getLayout(), showHeatmap(url), destroy()
 */
export async function mountStudyViewer(element, options) {
  let mod = null;
  try {
    mod = await loadViewerModule();
  } catch (err) {
    console.error("viewer failed to load", err);
    placeholder(element, "The image viewer could not be loaded.", String(err?.message || err));
    return adapter(null);
  }
  if (!mod || typeof mod.mountViewer !== "function") {
    placeholder(element, "The image viewer is not part of this build.", "Findings, the report and sign-off work without it.");
    return adapter(null);
  }
  try {
    const viewer = await mod.mountViewer(element, options);
    return adapter(viewer);
  } catch (err) {
    console.error("viewer failed to start", err);
    placeholder(element, "The image viewer could not start.", String(err?.message || err));
    return adapter(null);
  }
}

function call(viewer, names, ...args) {
  if (!viewer) return undefined;
  for (const name of names) {
    if (typeof viewer[name] === "function") {
      try {
        return viewer[name](...args);
      } catch (err) {
        console.error(`viewer.${name} failed`, err);
        return undefined;
      }
    }
  }
  return undefined;
}

function adapter(viewer) {
  return {
    available: Boolean(viewer),
    raw: viewer,
    ready: viewer && viewer.ready ? Promise.resolve(viewer.ready) : Promise.resolve(),
    showFinding: (id, finding) => call(viewer, ["jumpToFinding", "showFinding", "selectFinding"], id, finding),
    setFindings: (findings) => call(viewer, ["setFindings"], findings),
    setLayout: (name) => call(viewer, ["setLayout"], name),
    getLayout: () => call(viewer, ["getLayout"]),
    showHeatmap: (url, opts) => call(viewer, ["showHeatmap"], url, opts),
    destroy: () => call(viewer, ["destroy"]),
  };
}

function placeholder(element, title, text) {
  element.replaceChildren(h("div.viewer-placeholder", { testid: "viewer-placeholder" },
    icon("eye", { size: 32 }), h("p.viewer-placeholder-title", title), h("p.muted", text)));
}
