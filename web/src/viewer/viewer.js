// The viewer: one Cornerstone3D rendering engine, its panes (stack, MPR, 3-D, comparison), the
// toolbar and layer panel, and the data (series, SEG labelmap, findings) they show.  index.js is the
// public face; everything here may change.
import {
  RenderingEngine,
  Enums,
  cache,
  imageLoader,
  volumeLoader,
  setVolumesForViewports,
  utilities as csUtils,
  getRenderingCapabilities,
} from "@cornerstonejs/core";
import * as tools from "@cornerstonejs/tools";

import { ensureCornerstone } from "./cornerstone.js";
import { DicomWeb, buildStack, describe, isImageSeries, pickMainSeriesOfInstances, registerMetadata, tagValue } from "./dicomweb.js";
import { FindingCircleTool, FindingLayer, FindingRectangleTool, StackGeometry } from "./findings.js";
import { HeatmapOverlay } from "./heatmap.js";
import { AxesMarker } from "./axes.js";
import { ICONS } from "./icons.js";
import { ViewportOverlay, esc } from "./overlay.js";
import { VOLUME_PRESETS, WINDOW_PRESETS, presetByName, voiRange, widthCenter } from "./presets.js";
import { SegCanvas, SegOverlay, loadSeg } from "./seg.js";
import { listMeshes, loadSurfaces, meshUrl, showSurfaces, styleSurfaceActors } from "./surfaces.js";
import { Timings } from "./timings.js";

const {
  ToolGroupManager,
  SynchronizerManager,
  synchronizers,
  Enums: ToolEnums,
  WindowLevelTool,
  PanTool,
  ZoomTool,
  LengthTool,
  CrosshairsTool,
  TrackballRotateTool,
  annotation: annotationApi,
} = tools;
const { MouseBindings } = ToolEnums;
const { ViewportType, Events, OrientationAxis, BlendModes } = Enums;

export const LAYOUTS = ["single", "mpr", "compare", "3d"];
const LAYOUT_LABELS = { single: "Stack", mpr: "MPR", compare: "Compare", "3d": "3D" };

const TOOLS = {
  wl: { tool: WindowLevelTool.toolName, label: "Window", hint: "Window/level: drag (W)" },
  pan: { tool: PanTool.toolName, label: "Pan", hint: "Pan: drag (P); middle button always pans" },
  zoom: { tool: ZoomTool.toolName, label: "Zoom", hint: "Zoom: drag (Z); right button always zooms" },
  length: { tool: LengthTool.toolName, label: "Ruler", hint: "Measure a distance (M)" },
  mark: { tool: FindingCircleTool.toolName, label: "Mark", hint: "Mark a missed finding: drag a circle (F)" },
  crosshairs: { tool: CrosshairsTool.toolName, label: "Crosshairs", hint: "Linked crosshairs (C)", mpr: true },
};
const TOOL_KEYS = { w: "wl", p: "pan", z: "zoom", m: "length", f: "mark", c: "crosshairs" };

const BG = [0, 0, 0];
let instances = 0;

export class Viewer {
  constructor(element, options = {}) {
    if (!element) throw new Error("mountViewer: no element to mount into");
    this.host = element;
    this.options = options;
    this.n = ++instances;
    this.id = `medimg-viewer-${this.n}`;
    this.dw = new DicomWeb(options.dicomwebRoot || "/dicomweb");
    this.apiRoot = (options.apiRoot || "/api").replace(/\/+$/, "");
    this.timings = new Timings(this.n);
    this.abort = new AbortController();
    this.layout = LAYOUTS.includes(options.layout) ? options.layout : "single";
    this.tool = "wl";
    this.voi = null; // current window, shared by the panes showing the current series
    this.invert = false;
    this.mip = { on: false, thickness: 20 };
    this.volumePreset = VOLUME_PRESETS[0].name;
    // 3-D: volume rendering and/or surfaces.  Ray casting under a software WebGL takes seconds a
    // frame, so there the 3-D view starts with the surfaces when the study has a segmentation.
    this.volumeOn = options.volumeRendering ?? true;
    this.surfacesOn = options.surfaces ?? false;
    this.panes = [];
    this.series = { current: null, prior: null };
    this.findings = options.findings || [];
    this.heatmap = { url: null, opacity: 0.8 };
    this.linkCompare = true;
    this.listeners = [];
    this.destroyed = false;
    this.status = {};
    this.buildDom();
    this.ready = this.start().catch((e) => {
      if (e?.name === "AbortError" || this.destroyed) return;
      console.error(e);
      this.showError(e.message || String(e));
    });
  }

  // ====================================================================== DOM
  buildDom() {
    const root = document.createElement("div");
    root.className = "mv-root";
    root.tabIndex = 0;
    root.dataset.testid = "viewer";
    root.dataset.layout = this.layout;
    root.setAttribute("role", "application");
    root.setAttribute("aria-label", "Image viewer");
    const btn = (cls, attrs, inner) =>
      `<button type="button" class="${cls}" ${Object.entries(attrs)
        .map(([k, v]) => `${k}="${esc(v)}"`)
        .join(" ")}>${inner}</button>`;
    const layoutButtons = LAYOUTS.map((l) =>
      btn("mv-btn", { "data-layout": l, "data-testid": `viewer-layout-${l}`, title: `${LAYOUT_LABELS[l]} layout`, "aria-pressed": "false" }, `${ICONS[l]}<span>${LAYOUT_LABELS[l]}</span>`),
    ).join("");
    const toolButtons = Object.entries(TOOLS)
      .map(([k, t]) =>
        btn(`mv-btn${t.mpr ? " mv-only-mpr" : ""}`, { "data-tool": k, "data-testid": `viewer-tool-${k}`, title: t.hint, "aria-pressed": "false" }, `${ICONS[k]}<span>${t.label}</span>`),
      )
      .join("");
    const presetButtons = WINDOW_PRESETS.map((p) =>
      btn("mv-btn mv-preset", { "data-preset": p.name, "data-testid": `viewer-preset-${p.name}`, title: `${p.label}: W ${p.width} L ${p.center} (key ${p.key})`, "aria-pressed": "false" }, `<span>${p.short || p.label}</span><kbd>${p.key}</kbd>`),
    ).join("");
    root.innerHTML = `
      <div class="mv-toolbar" role="toolbar" aria-label="Viewer tools">
        <div class="mv-group" role="group" aria-label="Layout">${layoutButtons}</div>
        <div class="mv-sep"></div>
        <div class="mv-group mv-tools mv-hide-3d" role="group" aria-label="Tools">${toolButtons}</div>
        <div class="mv-sep mv-hide-3d"></div>
        <div class="mv-group mv-presets mv-hide-3d" role="group" aria-label="Window presets">${presetButtons}</div>
        <div class="mv-group mv-only-mpr" role="group" aria-label="Slab">
          ${btn("mv-btn", { "data-action": "mip", "data-testid": "viewer-mip", title: "Maximum intensity projection over a slab", "aria-pressed": "false" }, `${ICONS.mip}<span>MIP</span>`)}
          <label class="mv-slab" title="Slab thickness (mm)"><input type="range" min="2" max="80" step="1" value="${this.mip.thickness}" data-testid="viewer-slab-thickness" aria-label="Slab thickness in mm"><output data-testid="viewer-slab-value">${this.mip.thickness} mm</output></label>
        </div>
        <div class="mv-group mv-only-3d" role="group" aria-label="3-D">
          ${btn("mv-btn", { "data-action": "volume", "data-testid": "viewer-3d-volume", title: "Volume rendering of the CT", "aria-pressed": "true" }, `${ICONS["3d"]}<span>Volume</span>`)}
          <label class="mv-select">Preset <select data-testid="viewer-3d-preset" aria-label="Volume rendering preset">${VOLUME_PRESETS.map((p) => `<option value="${p.name}">${p.label}</option>`).join("")}</select></label>
          ${btn("mv-btn", { "data-action": "surfaces", "data-testid": "viewer-3d-surfaces", title: "Surfaces of the segmented anatomy (the server's meshes)", "aria-pressed": "false" }, `${ICONS.layers}<span>Surfaces</span>`)}
        </div>
        <div class="mv-group mv-only-compare" role="group" aria-label="Comparison">
          ${btn("mv-btn", { "data-action": "link", "data-testid": "viewer-compare-link", title: "Link scrolling of current and prior", "aria-pressed": "true" }, `${ICONS.link}<span>Link</span>`)}
        </div>
        <div class="mv-spacer"></div>
        <div class="mv-group mv-actions" role="group">
          ${btn("mv-btn mv-hide-3d", { "data-action": "invert", "data-testid": "viewer-invert", title: "Invert (I)", "aria-pressed": "false" }, `${ICONS.invert}<span>Invert</span>`)}
          ${btn("mv-btn", { "data-action": "reset", "data-testid": "viewer-reset", title: "Reset view (R)" }, `${ICONS.reset}<span>Reset</span>`)}
          ${btn("mv-btn", { "data-action": "panel", "data-testid": "viewer-panel-toggle", title: "Layers: segmentation, findings, heatmap, meshes", "aria-pressed": "true" }, `${ICONS.layers}<span>Layers</span>`)}
        </div>
      </div>
      <div class="mv-body">
        <div class="mv-stage">
          <div class="mv-grid" data-testid="viewer-viewports"></div>
          <div class="mv-loading" data-testid="viewer-loading"><div class="mv-spinner"></div><span>Loading images…</span></div>
          <div class="mv-progress" data-testid="viewer-progress" hidden><div></div></div>
        </div>
        <aside class="mv-panel" data-testid="viewer-panel" aria-label="Layers">
          <section class="mv-sec" data-sec="seg">
            <h3>Segmentation</h3>
            <div class="mv-seg-state mv-muted" data-testid="viewer-seg-state">Looking for a segmentation…</div>
            <ul class="mv-seglist" data-testid="viewer-segments"></ul>
            <label class="mv-range">Opacity <input type="range" min="0" max="100" value="45" data-testid="viewer-seg-opacity" aria-label="Segmentation opacity"><output>45%</output></label>
          </section>
          <section class="mv-sec" data-sec="findings">
            <h3>Findings</h3>
            <label class="mv-check"><input type="checkbox" checked data-testid="viewer-findings-toggle"> Outlines on images</label>
            <ul class="mv-findlist" data-testid="viewer-findings"></ul>
          </section>
          <section class="mv-sec" data-sec="heatmap" hidden>
            <h3>Evidence heatmap</h3>
            <label class="mv-range">Opacity <input type="range" min="0" max="100" value="80" data-testid="viewer-heatmap-opacity" aria-label="Heatmap opacity"><output>80%</output></label>
          </section>
          <section class="mv-sec" data-sec="meshes">
            <h3>3-D meshes (STL)</h3>
            <ul class="mv-meshlist" data-testid="viewer-meshes"><li class="mv-muted">After the segmentation loads</li></ul>
          </section>
          <section class="mv-sec mv-keys">
            <h3>Keys</h3>
            <dl>
              <dt>Wheel, ↑ ↓</dt><dd>Slice</dd><dt>PgUp PgDn</dt><dd>10 slices</dd>
              <dt>1–6</dt><dd>Window presets</dd><dt>W P Z M F</dt><dd>Tools</dd>
              <dt>R</dt><dd>Reset</dd><dt>I</dt><dd>Invert</dd>
              <dt>Right drag</dt><dd>Zoom</dd><dt>Middle drag</dt><dd>Pan</dd>
            </dl>
          </section>
        </aside>
      </div>
      <div class="mv-statusbar" data-testid="viewer-status" aria-live="polite"><span class="mv-st-main">Opening…</span><span class="mv-st-side"></span></div>`;
    this.host.appendChild(root);
    this.root = root;
    this.grid = root.querySelector(".mv-grid");
    this.panel = root.querySelector(".mv-panel");
    if (this.options.panel === false) this.togglePanel(false);
    this.on(root, "click", (e) => this.onClick(e));
    this.on(root, "keydown", (e) => this.onKey(e));
    this.on(root, "pointerdown", () => {
      if (!root.contains(document.activeElement) || document.activeElement === document.body) root.focus({ preventScroll: true });
    });
    const opacity = root.querySelector('[data-testid="viewer-seg-opacity"]');
    this.on(opacity, "input", () => this.setSegmentationOpacity(Number(opacity.value) / 100));
    const hm = root.querySelector('[data-testid="viewer-heatmap-opacity"]');
    this.on(hm, "input", () => this.setHeatmapOpacity(Number(hm.value) / 100));
    const slab = root.querySelector('[data-testid="viewer-slab-thickness"]');
    this.on(slab, "input", () => this.setSlabThickness(Number(slab.value)));
    const p3 = root.querySelector('[data-testid="viewer-3d-preset"]');
    this.on(p3, "change", () => this.setVolumePreset(p3.value));
    this.on(root.querySelector('[data-testid="viewer-findings-toggle"]'), "change", (e) => this.setFindingsVisible(e.target.checked));
    this.on(root.querySelector(".mv-seglist"), "change", (e) => {
      const input = e.target.closest("input[data-segment]");
      if (input) this.toggleSegment(input.dataset.segment, input.checked);
    });
    this.on(root.querySelector(".mv-findlist"), "click", (e) => {
      const li = e.target.closest("[data-finding]");
      if (li) this.jumpToFinding(li.dataset.finding);
    });
    this.resizeObserver = new ResizeObserver(() => this.scheduleResize());
    this.resizeObserver.observe(this.grid);
    this.markButtons();
  }

  on(target, type, fn, opts) {
    target.addEventListener(type, fn, opts);
    this.listeners.push(() => target.removeEventListener(type, fn, opts));
  }

  setStatus(key, text) {
    if (text) this.status[key] = text;
    else delete this.status[key];
    const main = this.root.querySelector(".mv-st-main");
    const order = ["error", "load", "seg", "prior", "volume", "mesh", "info"];
    main.textContent = order.map((k) => this.status[k]).filter(Boolean).join(" · ") || "Ready";
    main.classList.toggle("mv-st-error", Boolean(this.status.error));
  }

  showError(message) {
    this.setStatus("error", message);
    this.root.querySelector(".mv-loading")?.remove();
    if (!this.panes.length) {
      const box = document.createElement("div");
      box.className = "mv-empty mv-error";
      box.dataset.testid = "viewer-error";
      box.innerHTML = `<strong>The images could not be shown</strong><span>${esc(message)}</span>`;
      this.root.querySelector(".mv-stage").appendChild(box);
      return;
    }
    const pane = this.panes[0];
    if (pane && !pane.hasImage) {
      pane.el.querySelector(".mv-empty")?.remove();
      const box = document.createElement("div");
      box.className = "mv-empty mv-error";
      box.dataset.testid = "viewer-error";
      box.innerHTML = `<strong>The images could not be shown</strong><span>${esc(message)}</span>`;
      pane.el.appendChild(box);
    }
  }

  markButtons() {
    const r = this.root;
    r.dataset.layout = this.layout;
    const cur = this.series.current;
    const volumetric = !cur || (cur.stack.positioned && cur.stack.entries.length >= 3);
    for (const b of r.querySelectorAll("[data-layout]")) {
      b.setAttribute("aria-pressed", String(b.dataset.layout === this.layout));
      if (b.dataset.layout === "mpr" || b.dataset.layout === "3d") {
        b.disabled = !volumetric;
        b.title = volumetric ? `${LAYOUT_LABELS[b.dataset.layout]} layout` : `${LAYOUT_LABELS[b.dataset.layout]} needs a series of parallel slices`;
      }
    }
    for (const b of r.querySelectorAll("[data-tool]")) b.setAttribute("aria-pressed", String(b.dataset.tool === this.tool));
    const wc = widthCenter(this.voi);
    for (const b of r.querySelectorAll("[data-preset]")) {
      const p = presetByName(b.dataset.preset);
      const on = wc && Math.abs(wc.width - p.width) < 0.5 && Math.abs(wc.center - p.center) < 0.5;
      b.setAttribute("aria-pressed", String(Boolean(on)));
    }
    r.querySelector('[data-action="mip"]').setAttribute("aria-pressed", String(this.mip.on));
    r.querySelector('[data-action="invert"]').setAttribute("aria-pressed", String(this.invert));
    r.querySelector('[data-action="link"]').setAttribute("aria-pressed", String(this.linkCompare));
    r.querySelector('[data-action="volume"]').setAttribute("aria-pressed", String(this.volumeOn));
    r.querySelector('[data-action="surfaces"]').setAttribute("aria-pressed", String(this.surfacesOn));
    r.querySelector('[data-testid="viewer-3d-preset"]').disabled = !this.volumeOn;
    r.querySelector('[data-action="link"]').hidden = !this.options.priorStudyUid;
    r.querySelector('[data-action="panel"]').setAttribute("aria-pressed", String(!this.panel.hidden));
  }

  onClick(e) {
    const b = e.target.closest("button");
    if (!b || !this.root.contains(b)) return;
    if (b.dataset.layout) this.setLayout(b.dataset.layout).catch((err) => this.setStatus("error", err.message || String(err)));
    else if (b.dataset.tool) this.setTool(b.dataset.tool);
    else if (b.dataset.preset) this.setWindowPreset(b.dataset.preset);
    else if (b.dataset.action === "mip") this.setMip(!this.mip.on);
    else if (b.dataset.action === "reset") this.reset();
    else if (b.dataset.action === "invert") this.setInvert(!this.invert);
    else if (b.dataset.action === "panel") this.togglePanel();
    else if (b.dataset.action === "link") this.setCompareLink(!this.linkCompare);
    else if (b.dataset.action === "surfaces") this.showSurfaces(!this.surfacesOn);
    else if (b.dataset.action === "volume") this.showVolume(!this.volumeOn);
  }

  onKey(e) {
    if (e.target.closest("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
    const key = e.key;
    const preset = this.root.dataset.modality === "CT" ? WINDOW_PRESETS.find((p) => p.key === key) : null;
    let handled = true;
    if (preset) this.setWindowPreset(preset.name);
    else if (key === "ArrowUp" || key === "ArrowLeft") this.scroll(-1);
    else if (key === "ArrowDown" || key === "ArrowRight") this.scroll(1);
    else if (key === "PageUp") this.scroll(-10);
    else if (key === "PageDown") this.scroll(10);
    else if (key === "Home") this.scroll(-1e6);
    else if (key === "End") this.scroll(1e6);
    else if (key === "r" || key === "R") this.reset();
    else if (key === "i" || key === "I") this.setInvert(!this.invert);
    else if (TOOL_KEYS[key.toLowerCase()] && (TOOL_KEYS[key.toLowerCase()] !== "crosshairs" || this.layout === "mpr")) this.setTool(TOOL_KEYS[key.toLowerCase()]);
    else handled = false;
    if (handled) e.preventDefault();
  }

  togglePanel(show) {
    this.panel.hidden = show === undefined ? !this.panel.hidden : !show;
    this.markButtons();
    this.scheduleResize();
  }

  scheduleResize() {
    if (this._resizeRaf) return;
    this._resizeRaf = requestAnimationFrame(() => {
      this._resizeRaf = null;
      if (this.engine && !this.destroyed) {
        this.engine.resize(true, true);
        if (this._refitMpr) {
          // the panes have their size only now: fit the volume again, on the same slices
          this._refitMpr = false;
          const vps = this.panes.filter((p) => p.kind === "volume" && p.viewport);
          const keep = this._mprKeep;
          for (const p of vps) this.fitVolumePane(p, keep || undefined);
          if (keep) this.slideVolumesTo(keep);
          else this.engine.renderViewports(vps.map((p) => p.viewportId));
        }
        if (this._refit3d) {
          // the same for the 3-D pane: framed once it has its size
          this._refit3d = false;
          const p3 = this.panes.find((p) => p.kind === "3d" && p.viewport && p.series?.volume);
          if (p3) {
            this.fit3d(p3);
            p3.viewport.render();
          }
        }
        for (const p of this.panes) this.refreshPane(p);
      }
    });
  }

  // ====================================================================== start-up
  async start() {
    const { signal } = this.abort;
    const studyUid = this.options.studyUid;
    if (!studyUid) throw new Error("no study to show (studyUid missing)");
    this.setStatus("load", "Loading series…");
    // Requests first: Cornerstone's set-up (a WebGL context, the decode workers) runs meanwhile.
    let seriesUid = this.options.seriesUid;
    const listPromise = this.dw.series(studyUid, { signal });
    // the study's SEG, once its series list and the image stack are known
    let stackKnown;
    const stackPromise = new Promise((resolve) => (stackKnown = resolve));
    this.segPromise = Promise.all([listPromise, stackPromise])
      .then(([list, s]) => this.loadSegFor(s, list))
      .catch((e) => {
        if (e?.name !== "AbortError") this.setStatus("seg", `Segmentation: ${e.message}`);
      });
    // The instances of the series (or, when none is named, of the study, which also says which
    // series to open) come from the index at once; the middle one's own metadata is one file,
    // while the whole series' metadata reads every file.
    const instancesPromise = seriesUid
      ? this.dw.instances(studyUid, seriesUid, { signal })
      : this.dw.studyInstances(studyUid, { signal });
    const csReady = ensureCornerstone().then(() => this.timings.mark("cornerstoneReady"));
    let instances = await instancesPromise;
    this.timings.mark("instancesListed");
    if (!seriesUid) {
      seriesUid = pickMainSeriesOfInstances(instances);
      if (!seriesUid) throw new Error("the study has no image series");
      instances = instances.filter((i) => i.seriesUid === seriesUid);
    }
    this.timings.mark("seriesChosen");
    const quick = this.quickFirstImage(studyUid, seriesUid, instances, csReady).catch((e) => {
      if (e?.name !== "AbortError") console.warn("viewer: quick first image failed", e);
    });
    // the whole series' metadata once the first file's is on its way (they share the server)
    const full = (this._firstMetaSent || Promise.resolve()).then(() => this.dw.seriesMetadata(studyUid, seriesUid, { signal }));
    const metas = await full;
    this.timings.mark("metadata");
    await csReady;
    if (this.destroyed) return;
    const stack = buildStack(this.dw, studyUid, seriesUid, metas);
    if (!stack.entries.length) throw new Error("the series has no images");
    const cur = this.makeSeries(studyUid, seriesUid, stack);
    this.series.current = cur;
    this.root.dataset.modality = cur.info.modality || "";
    this.markButtons();
    stackKnown(cur);
    await quick;
    if (this.destroyed) return;
    this.timings.set("slices", stack.entries.length);
    if (!this.engine) this.engine = new RenderingEngine(`${this.id}-engine`);
    this.ensureToolGroups();
    if (this.quickPane) {
      // the quick image is on screen: give its pane the whole stack at the same image
      const p = this.quickPane;
      this.quickPane = null;
      const at = Math.max(0, stack.imageIds.indexOf(p.quickImageId));
      p.series = cur;
      await p.viewport.setStack(stack.imageIds, at);
      this.afterStackSet(p);
      this.panes = [p];
      if (this.layout !== "single") await this.setLayout(this.layout, true);
    } else {
      await this.setLayout(this.layout, true);
    }
    this.prefetch(cur);
    this.renderFindingList();
    this.findingLayerFor(cur);

  }

  makeSeries(studyUid, seriesUid, stack) {
    return {
      studyUid,
      seriesUid,
      stack,
      geom: new StackGeometry(stack),
      info: describe(stack.entries[0].meta),
      loaded: 0,
      volumeId: null,
      volume: null,
      seg: null,
      findingLayer: null,
    };
  }

  async quickFirstImage(studyUid, seriesUid, list, csReady) {
    const { signal } = this.abort;
    if (!list.length || (this.layout !== "single" && this.layout !== "compare")) return;
    list = [...list].sort((a, b) => a.number - b.number);
    const mid = list[Math.floor((list.length - 1) / 2)];
    const metaPromise = this.dw.instanceMetadata(studyUid, seriesUid, mid.uid, { signal });
    this._firstMetaSent = new Promise((resolve) => setTimeout(resolve, 15));
    const done = await metaPromise;
    if (!done || this.series.current) return;
    const meta = done;
    this.timings.mark("firstMetadata");
    const imageId = this.dw.imageId(studyUid, seriesUid, mid.uid, 1);
    registerMetadata(imageId, meta);
    const loading = imageLoader.loadAndCacheImage(imageId, { priority: -10 }).catch(() => null);
    await csReady;
    if (this.destroyed || this.series.current) return;
    if (!this.engine) this.engine = new RenderingEngine(`${this.id}-engine`);
    const pane = this.createPane({ kind: "stack", series: "current" }, 0);
    this.grid.dataset.count = "1";
    this.engine.enableElement({ viewportId: pane.viewportId, type: ViewportType.STACK, element: pane.canvas, defaultOptions: { background: BG } });
    pane.viewport = this.engine.getViewport(pane.viewportId);
    pane.quickImageId = imageId;
    pane.info = describe(meta);
    pane.overlay.setHeader(pane.info);
    this.watchPane(pane);
    await loading;
    this.timings.mark("firstDecoded");
    if (this.destroyed) return;
    await pane.viewport.setStack([imageId], 0);
    pane.viewport.render();
    this.quickPane = pane;
    this.panes = [pane];
  }

  // ====================================================================== panes
  createPane(spec, index) {
    const el = document.createElement("div");
    el.className = "mv-pane";
    el.dataset.testid = `viewer-viewport-${index}`;
    el.dataset.kind = spec.kind;
    if (spec.orientation) el.dataset.orientation = spec.orientation;
    const canvas = document.createElement("div");
    canvas.className = "mv-canvas";
    canvas.dataset.testid = index === 0 ? "viewer-canvas" : `viewer-canvas-${index}`;
    canvas.addEventListener("contextmenu", (e) => e.preventDefault());
    el.appendChild(canvas);
    const label = document.createElement("div");
    label.className = "mv-pane-label";
    label.textContent = spec.label || "";
    el.appendChild(label);
    this.grid.appendChild(el);
    const pane = {
      spec,
      index,
      el,
      canvas,
      label,
      kind: spec.kind,
      viewportId: `${this.id}-vp${index}-${spec.kind}-${spec.orientation || spec.series || ""}`.replace(/[^A-Za-z0-9_-]/g, ""),
      overlay: new ViewportOverlay(el),
      heat: null,
      series: null,
      hasImage: false,
    };
    el.addEventListener("pointerdown", () => this.setActivePane(pane));
    return pane;
  }

  setActivePane(pane) {
    this.activePane = pane;
    for (const p of this.panes) p.el.classList.toggle("mv-active", p === pane && this.panes.length > 1);
  }

  watchPane(pane) {
    const el = pane.canvas;
    const rendered = () => {
      if (!pane.hasImage) {
        pane.hasImage = true;
        pane.el.querySelector(".mv-empty")?.remove();
        this.root.querySelector(".mv-loading")?.remove();
        if (pane.series === this.series.current || pane.quickImageId) {
          const t = this.timings.mark("firstImage");
          this.setStatus("info", `First image ${Math.round(t)} ms`);
        }
      }
      this.refreshPane(pane);
    };
    pane.unwatch = [];
    const add = (type, fn) => {
      el.addEventListener(type, fn);
      pane.unwatch.push(() => el.removeEventListener(type, fn));
    };
    add(Events.IMAGE_RENDERED, () => {
      if (pane.awaitingScroll) {
        pane.awaitingScroll = false;
        this.timings.rendered();
      }
      rendered();
    });
    add(Events.STACK_NEW_IMAGE, () => {
      pane.awaitingScroll = true;
    });
    add(Events.VOI_MODIFIED, (e) => {
      if (pane.series === this.series.current && (pane.kind !== "3d")) {
        const r = e.detail?.range;
        if (r && Number.isFinite(r.lower)) {
          this.voi = { lower: r.lower, upper: r.upper };
          this.markButtons();
        }
      }
    });
    // The wheel scrolls one slice per notch, counted from the wheel's distance: when the page is
    // busy the browser merges several notches into one event, and a slice per event would lose them.
    const onWheel = (e) => {
      if (pane.kind === "3d" || !pane.viewport) return;
      e.preventDefault();
      const d = e.deltaY * (e.deltaMode === 1 ? 33 : e.deltaMode === 2 ? 100 : 1); // lines, pages -> px
      let steps;
      if (Math.abs(d) >= 50) {
        // a mouse wheel: its notch is the smallest step it has sent (100 or 120 px in most browsers;
        // never taken below 100, so a fast trackpad swipe cannot shrink it)
        this.wheelNotch = Math.max(100, Math.min(this.wheelNotch || Math.abs(d), Math.abs(d)));
        steps = Math.sign(d) * Math.max(1, Math.round(Math.abs(d) / this.wheelNotch));
        pane.wheel = 0;
      } else {
        // a trackpad: small deltas add up to a slice per 100 px
        pane.wheel = (pane.wheel || 0) + d / 100;
        steps = pane.wheel > 0 ? Math.floor(pane.wheel) : Math.ceil(pane.wheel);
        pane.wheel -= steps;
      }
      if (!steps) return;
      this.setActivePane(pane);
      this.scrollPane(pane, steps);
    };
    pane.el.addEventListener("wheel", onWheel, { passive: false });
    pane.unwatch.push(() => pane.el.removeEventListener("wheel", onWheel));
  }

  refreshPane(pane) {
    const vp = pane.viewport;
    if (!vp || this.destroyed) return;
    if (pane.kind === "3d") {
      pane.overlay.update(vp, {});
      pane.overlay.clearOrientation();
      if (!pane.axes) pane.axes = new AxesMarker(pane.el);
      try {
        pane.axes.update(vp.getCamera());
      } catch {
        /* no camera yet */
      }
      const surf = this.series.current?.surface;
      if (surf?.segmentationId && styleSurfaceActors(vp, surf.segmentationId, surf.structures || [])) vp.render();
      return;
    }
    const s = pane.series;
    let slice;
    let total;
    let position;
    try {
      if (pane.kind === "stack") {
        const i = vp.getCurrentImageIdIndex();
        const ids = vp.getImageIds();
        slice = i + 1;
        total = ids.length;
        const e = s?.stack?.entries?.[i];
        if (e?.position && s.geom) {
          const n = s.geom.normal;
          const axis = [0, 1, 2].reduce((a, k) => (Math.abs(n[k]) > Math.abs(n[a]) ? k : a), 0);
          position = `${"XYZ"[axis]} ${e.position[axis].toFixed(1)} mm`;
        }
        pane.el.dataset.slice = String(slice);
        pane.el.dataset.total = String(total);
      } else {
        const cam = vp.getCamera();
        const n = cam.viewPlaneNormal;
        const f = cam.focalPoint;
        const g = s?.geom;
        if (g && Math.abs(n[0] * g.normal[0] + n[1] * g.normal[1] + n[2] * g.normal[2]) > 0.999) {
          // the acquisition plane: number the slices as the stack does
          slice = g.sliceOf(f) + 1;
          total = g.n;
        } else {
          const d = csUtils.getImageSliceDataForVolumeViewport(vp);
          if (d) {
            slice = d.imageIndex + 1;
            total = d.numberOfSlices;
          }
        }
        if (slice) {
          pane.el.dataset.slice = String(slice);
          pane.el.dataset.total = String(total);
        }
        // position along the patient axis the plane faces (x: sagittal, y: coronal, z: axial)
        const axis = [0, 1, 2].reduce((a, i) => (Math.abs(n[i]) > Math.abs(n[a]) ? i : a), 0);
        position = `${"XYZ"[axis]} ${f[axis].toFixed(1)} mm`;
      }
    } catch {
      /* not ready */
    }
    let voi;
    try {
      voi = pane.kind === "stack" ? vp.getProperties().voiRange : vp.getProperties(pane.series?.volumeId)?.voiRange;
    } catch {
      voi = undefined;
    }
    const slab = pane.kind === "volume" && this.mip.on ? `MIP ${this.mip.thickness} mm` : "";
    // a projection image without Image Orientation: its Patient Orientation letters, or none
    const projection = s?.stack && !s.stack.iop;
    pane.overlay.update(vp, { slice, total, position, voi, slab, fixedOrientation: projection ? s.stack.projection : null, noOrientation: projection && !s.stack.projection });
    if (pane.heat) pane.heat.update(vp);
    if (pane.segCanvas) pane.segCanvas.update(vp);
  }

  teardownPanes() {
    for (const p of this.panes) {
      for (const fn of p.unwatch || []) fn();
      try {
        this.series.current?.seg?.removeFrom([p.viewportId]);
        this.series.current?.surface && tools.segmentation.removeSegmentationRepresentations(p.viewportId);
      } catch {
        /* gone */
      }
      for (const g of Object.values(this.groups || {})) {
        try {
          g.removeViewports(this.engine.id, p.viewportId);
        } catch {
          /* not in group */
        }
      }
      try {
        this.engine.disableElement(p.viewportId);
      } catch {
        /* already */
      }
      p.overlay.destroy();
      p.heat?.destroy();
      p.segCanvas?.destroy();
      p.axes?.destroy();
      p.el.remove();
    }
    this.panes = [];
    for (const s of this.syncs || []) {
      try {
        SynchronizerManager.destroySynchronizer(s.id);
      } catch {
        /* gone */
      }
    }
    this.syncs = [];
  }

  // ====================================================================== layouts
  async setLayout(name, force = false) {
    if (!LAYOUTS.includes(name)) throw new Error(`unknown layout ${name}; use one of ${LAYOUTS.join(", ")}`);
    if (name === this.layout && !force && this.panes.length) return;
    const cur = this.series.current;
    // keep the slice the radiologist is on
    const keep = this.currentFocus();
    this.layout = name;
    if (name === "mpr" && this.tool === "wl" && !this._mprToolChosen) this.tool = "crosshairs";
    if (name !== "mpr" && this.tool === "crosshairs") this.tool = "wl";
    this.markButtons();
    if (!cur) return; // start() lays out once the series is known
    const token = (this._layoutToken = (this._layoutToken || 0) + 1);
    this.teardownPanes();
    this.ensureToolGroups();
    try {
      if (name === "single") await this.layoutStacks([{ kind: "stack", series: "current" }], keep);
      else if (name === "compare") await this.layoutCompare(keep);
      else if (name === "mpr") await this.layoutMpr(keep);
      else await this.layout3d();
    } catch (e) {
      // a layout replaced by another while it was being built fails on its removed viewports
      if (token !== this._layoutToken || this.destroyed) return;
      throw e;
    }
    if (token !== this._layoutToken || this.destroyed) return;
    this.applyTool();
    // the crosshairs, set up by applyTool, may have moved the panes: back to the kept slice
    if (name === "mpr" && keep?.point) this.slideVolumesTo(keep.point);
    this.setActivePane(this.panes[0]);
    this.markButtons();
    this.scheduleResize();
  }

  currentFocus() {
    const p = this.panes.find((x) => x.series === this.series.current && x.viewport) || null;
    if (!p) return null;
    try {
      if (p.kind === "stack") {
        const idx = p.viewport.getCurrentImageIdIndex();
        // the middle of the image on screen, on the slice shown
        const cam = p.viewport.getCamera();
        const g = this.series.current.geom;
        const plane = g.slicePosition(idx);
        const n = g.normal;
        const off = [0, 1, 2].reduce((a, i) => a + (cam.focalPoint[i] - plane[i]) * n[i], 0);
        return { slice: idx, point: cam.focalPoint.map((v, i) => v - off * n[i]) };
      }
      if (p.kind === "volume") {
        const cam = p.viewport.getCamera();
        return { point: cam.focalPoint, slice: this.series.current.geom.sliceOf(cam.focalPoint) };
      }
    } catch {
      return null;
    }
    return null;
  }

  async layoutStacks(specs, keep) {
    this.grid.dataset.count = String(specs.length);
    const panes = specs.map((s, i) => this.createPane(s, i));
    this.panes = panes;
    this.engine.setViewports(
      panes.map((p) => ({ viewportId: p.viewportId, type: ViewportType.STACK, element: p.canvas, defaultOptions: { background: BG } })),
    );
    for (const p of panes) {
      p.viewport = this.engine.getViewport(p.viewportId);
      this.watchPane(p);
    }
    for (const p of panes) {
      const s = p.spec.series === "prior" ? this.series.prior : this.series.current;
      if (!s) continue;
      await this.showStack(p, s, p.spec.series === "current" ? keep?.slice : undefined);
    }
  }

  async showStack(p, s, sliceIndex) {
    p.series = s;
    const n = s.stack.imageIds.length;
    const at = sliceIndex !== undefined ? Math.max(0, Math.min(n - 1, sliceIndex)) : Math.floor((n - 1) / 2);
    await p.viewport.setStack(s.stack.imageIds, at);
    this.afterStackSet(p);
  }

  afterStackSet(p) {
    const s = p.series;
    p.info = s.info;
    p.overlay.setHeader(s.info);
    p.el.classList.toggle("mv-prior", p.spec.series === "prior");
    this.groups.stack.addViewport(p.viewportId, this.engine.id);
    if (s === this.series.current) {
      if (this.voi) p.viewport.setProperties({ voiRange: this.voi });
      if (s.seg) this.attachSeg([p]);
      if (this.heatmap.url) this.attachHeatmap(p);
    }
    if (s !== this.series.current) {
      // the prior in the same window as the current study
      const curPane = this.panes.find((x) => x.series === this.series.current && x.viewport && x.kind === "stack");
      let voi = this.voi;
      try {
        voi = voi || curPane?.viewport.getProperties().voiRange;
      } catch {
        /* not shown yet */
      }
      if (voi) p.viewport.setProperties({ voiRange: { lower: voi.lower, upper: voi.upper } });
    }
    if (this.invert) p.viewport.setProperties({ invert: true });
    p.viewport.render();
  }

  async layoutCompare(keep) {
    const prior = this.options.priorStudyUid;
    if (!prior) {
      await this.layoutStacks([{ kind: "stack", series: "current", label: "Current" }], keep);
      this.grid.dataset.count = "2";
      const empty = document.createElement("div");
      empty.className = "mv-pane mv-pane-empty";
      empty.dataset.testid = "viewer-no-prior";
      empty.innerHTML = `<div class="mv-empty"><strong>No prior study</strong><span>This patient has no earlier study to compare with.</span></div>`;
      this.grid.appendChild(empty);
      this.panes[0].noPriorEl = empty;
      const orig = this.panes[0].overlay.destroy.bind(this.panes[0].overlay);
      this.panes[0].overlay.destroy = () => {
        empty.remove();
        orig();
      };
      return;
    }
    await this.layoutStacks(
      [
        { kind: "stack", series: "current", label: "Current" },
        { kind: "stack", series: "prior", label: "Prior" },
      ],
      keep,
    );
    const pane = this.panes[1];
    if (!this.series.prior) {
      const box = document.createElement("div");
      box.className = "mv-empty";
      box.innerHTML = "<strong>Loading the prior study…</strong>";
      pane.el.appendChild(box);
      try {
        await this.loadPrior();
      } catch (e) {
        box.innerHTML = `<strong>The prior study could not be loaded</strong><span>${esc(e.message)}</span>`;
        box.classList.add("mv-error");
        return;
      }
      if (!this.panes.includes(pane)) return;
      const cur = this.series.current;
      const ci = this.panes[0].viewport.getCurrentImageIdIndex();
      const frac = ci / Math.max(1, cur.stack.imageIds.length - 1);
      const pi = Math.round(frac * (this.series.prior.stack.imageIds.length - 1));
      await this.showStack(pane, this.series.prior, pi);
      box.remove();
    }
    this.linkComparePanes();
  }

  linkComparePanes() {
    const [a, b] = this.panes;
    if (!a || !b || !b.series) return;
    const id = `${this.id}-compare-slice`;
    try {
      SynchronizerManager.destroySynchronizer(id);
    } catch {
      /* none */
    }
    // Registration of the two studies (their frames of reference differ): what is on screen now is
    // taken to match, a translation between the two images' positions.  (Cornerstone 5.14 would
    // compute it itself but looks the images up by slice number and finds none.)
    const reg = csUtils.spatialRegistrationMetadataProvider;
    reg.add([a.viewportId, b.viewportId], undefined);
    reg.add([b.viewportId, a.viewportId], undefined);
    if (!this.linkCompare) return;
    const pa = a.series.stack.entries[a.viewport.getCurrentImageIdIndex()]?.position;
    const pb = b.series.stack.entries[b.viewport.getCurrentImageIdIndex()]?.position;
    if (pa && pb) {
      const m = new Float32Array(16);
      m[0] = m[5] = m[10] = m[15] = 1;
      m[12] = pa[0] - pb[0];
      m[13] = pa[1] - pb[1];
      m[14] = pa[2] - pb[2];
      reg.add([a.viewportId, b.viewportId], m);
    }
    const sync = synchronizers.createImageSliceSynchronizer(id);
    sync.add({ renderingEngineId: this.engine.id, viewportId: a.viewportId });
    sync.add({ renderingEngineId: this.engine.id, viewportId: b.viewportId });
    this.syncs.push({ id });
    const voiId = `${this.id}-compare-voi`;
    try {
      SynchronizerManager.destroySynchronizer(voiId);
    } catch {
      /* none */
    }
    const voi = synchronizers.createVOISynchronizer(voiId, { syncInvertState: true, syncColormap: false });
    voi.add({ renderingEngineId: this.engine.id, viewportId: a.viewportId });
    voi.add({ renderingEngineId: this.engine.id, viewportId: b.viewportId });
    this.syncs.push({ id: voiId });
  }

  setCompareLink(on) {
    this.linkCompare = Boolean(on);
    this.markButtons();
    if (this.layout === "compare") this.linkComparePanes();
  }

  async loadPrior() {
    const { signal } = this.abort;
    const studyUid = this.options.priorStudyUid;
    this.setStatus("prior", "Loading the prior study…");
    const list = await this.dw.series(studyUid, { signal });
    const cur = this.series.current;
    const images = list.filter(isImageSeries);
    // the prior series most like the current one: same modality, then same description, then size
    images.sort(
      (a, b) =>
        (b.modality === cur.info.modality) - (a.modality === cur.info.modality) ||
        (b.description === cur.info.seriesDescription) - (a.description === cur.info.seriesDescription) ||
        b.instances - a.instances,
    );
    const pick = images[0];
    if (!pick) throw new Error("the prior study has no image series");
    const metas = await this.dw.seriesMetadata(studyUid, pick.uid, { signal });
    const stack = buildStack(this.dw, studyUid, pick.uid, metas);
    if (!stack.entries.length) throw new Error("the prior series has no images");
    this.series.prior = this.makeSeries(studyUid, pick.uid, stack);
    this.setStatus("prior", null);
    this.prefetch(this.series.prior);
    return this.series.prior;
  }

  async ensureVolume(s) {
    if (s.volume) return s.volume;
    if (!s.volumePromise) {
      s.volumeId = `cornerstoneStreamingImageVolume:${this.id}-${s.seriesUid}`;
      this.setStatus("volume", "Building the volume…");
      s.volumePromise = (async () => {
        const t0 = performance.now();
        const volume = await volumeLoader.createAndCacheVolume(s.volumeId, { imageIds: s.stack.imageIds });
        s.volumeLoaded = new Promise((resolve) => {
          volume.load(() => {
            this.timings.set("volumeLoadedMs", performance.now() - t0);
            this.setStatus("volume", null);
            resolve(volume);
          });
        });
        s.volume = volume;
        return volume;
      })();
    }
    return s.volumePromise;
  }

  async layoutMpr(keep) {
    const cur = this.series.current;
    if (!cur.stack.positioned || cur.stack.entries.length < 3) {
      this.setStatus("info", "MPR needs a series of parallel slices");
      return this.layoutStacks([{ kind: "stack", series: "current" }], keep);
    }
    this.grid.dataset.count = "3";
    const specs = [
      { kind: "volume", orientation: "axial", label: "Axial" },
      { kind: "volume", orientation: "sagittal", label: "Sagittal" },
      { kind: "volume", orientation: "coronal", label: "Coronal" },
    ];
    const panes = specs.map((s, i) => this.createPane(s, i));
    this.panes = panes;
    const axis = { axial: OrientationAxis.AXIAL, sagittal: OrientationAxis.SAGITTAL, coronal: OrientationAxis.CORONAL };
    this.engine.setViewports(
      panes.map((p) => ({
        viewportId: p.viewportId,
        type: ViewportType.ORTHOGRAPHIC,
        element: p.canvas,
        defaultOptions: { background: BG, orientation: axis[p.spec.orientation] },
      })),
    );
    for (const p of panes) {
      p.viewport = this.engine.getViewport(p.viewportId);
      p.series = cur;
      p.info = cur.info;
      p.overlay.setHeader(cur.info);
      this.watchPane(p);
    }
    await this.ensureVolume(cur);
    if (!this.panes.includes(panes[0])) return;
    const ids = panes.map((p) => p.viewportId);
    await setVolumesForViewports(this.engine, [{ volumeId: cur.volumeId }], ids);
    // crosshairs join the three panes at once (set up again by applyTool once they are all in)
    const xh = this.groups.mpr.getToolOptions(CrosshairsTool.toolName)?.mode;
    if (xh === "Active" || xh === "Passive") this.groups.mpr.setToolDisabled(CrosshairsTool.toolName);
    for (const p of panes) {
      this.groups.mpr.addViewport(p.viewportId, this.engine.id);
      const props = {};
      if (this.voi) props.voiRange = this.voi;
      if (this.invert) props.invert = true;
      if (Object.keys(props).length) p.viewport.setProperties(props, cur.volumeId);
    }
    this.applyMip();
    if (cur.seg) this.attachSeg(panes);
    const voiId = `${this.id}-mpr-voi`;
    const voi = synchronizers.createVOISynchronizer(voiId, { syncInvertState: true, syncColormap: false });
    for (const id of ids) voi.add({ renderingEngineId: this.engine.id, viewportId: id });
    this.syncs.push({ id: voiId });
    // the whole volume fitted in each pane, on the slice the radiologist was on (the fit is done
    // again once the panes have their final size: see scheduleResize)
    for (const p of panes) this.fitVolumePane(p, keep?.point);
    this._mprKeep = keep?.point || null;
    this._refitMpr = true;
    this.engine.renderViewports(ids);
  }

  /** Reset a volume pane's camera to fit the whole volume, then move it along its normal only to
   * the plane through `point` (patient mm; default: the plane it shows now). */
  fitVolumePane(p, point) {
    const vp = p.viewport;
    if (!vp) return;
    const at = point || vp.getCamera().focalPoint;
    vp.resetCamera({ resetPan: true, resetZoom: true, resetToCenter: true });
    this.slidePane(p, at);
  }

  /** Move a volume pane along its view-plane normal to the plane through `point` (no pan). */
  slidePane(p, point) {
    const vp = p.viewport;
    const cam = vp.getCamera();
    const n = cam.viewPlaneNormal;
    const d = [0, 1, 2].reduce((a, i) => a + (point[i] - cam.focalPoint[i]) * n[i], 0);
    if (Math.abs(d) < 1e-6) return;
    vp.setCamera({
      focalPoint: cam.focalPoint.map((v, i) => v + d * n[i]),
      position: cam.position.map((v, i) => v + d * n[i]),
    });
  }

  /** Every MPR pane through `point` (along their normals), the crosshairs centred there. */
  slideVolumesTo(point) {
    const vps = this.panes.filter((p) => p.kind === "volume" && p.viewport);
    for (const p of vps) this.slidePane(p, point);
    const xh = this.groups?.mpr?.getToolInstance?.(CrosshairsTool.toolName);
    try {
      xh?.setToolCenter?.(point);
    } catch {
      /* crosshairs not initialised */
    }
    this.engine.renderViewports(vps.map((p) => p.viewportId));
  }

  async layout3d() {
    const cur = this.series.current;
    this.grid.dataset.count = "1";
    const p = this.createPane({ kind: "3d", label: "3D" }, 0);
    this.panes = [p];
    const soft = softwareGl();
    // under a software WebGL the pane renders at half resolution (scaled up by CSS), sampling coarser
    if (soft) p.el.classList.add("mv-lowres");
    if (soft && this.options.volumeRendering === undefined && this.options.surfaces === undefined && !this._3dChosen) {
      // the segmentation decides: surfaces when there is one (it may still be on its way)
      await this.segPromise;
      if (!this.panes.includes(p)) return;
      this.surfacesOn = Boolean(cur.seg);
      this.volumeOn = !cur.seg;
    }
    this.markButtons();
    this.engine.setViewports([
      { viewportId: p.viewportId, type: ViewportType.VOLUME_3D, element: p.canvas, defaultOptions: { background: [0.04, 0.05, 0.07], orientation: OrientationAxis.CORONAL } },
    ]);
    p.viewport = this.engine.getViewport(p.viewportId);
    p.series = cur;
    p.info = cur.info;
    p.overlay.setHeader(cur.info);
    this.watchPane(p);
    if (!cur.stack.positioned || cur.stack.entries.length < 3) {
      const box = document.createElement("div");
      box.className = "mv-empty";
      box.innerHTML = "<strong>No 3-D view</strong><span>3-D needs a series of parallel slices.</span>";
      p.el.appendChild(box);
      return;
    }
    const wait = document.createElement("div");
    wait.className = "mv-empty";
    wait.innerHTML = "<strong>Building the volume…</strong>";
    p.el.appendChild(wait);
    await this.ensureVolume(cur);
    // ray casting a half-loaded volume again for every slice that arrives is wasted work
    await cur.volumeLoaded;
    wait.remove();
    if (!this.panes.includes(p)) return;
    await setVolumesForViewports(this.engine, [{ volumeId: cur.volumeId }], [p.viewportId], false, true);
    this.groups.vr.addViewport(p.viewportId, this.engine.id);
    p.viewport.setProperties({ preset: this.volumePreset });
    p.viewport.setProperties({ sampleDistanceMultiplier: soft ? 3 : 1 });
    this.volumeActor(p)?.setVisibility(this.volumeOn);
    // look at the patient from the front, head up, with a margin
    p.viewport.setCamera({ viewPlaneNormal: [0, -1, 0], viewUp: [0, 0, 1] });
    p.viewport.resetCamera();
    if (this.surfacesOn) await this.showSurfaces(true);
    if (!this.panes.includes(p)) return;
    this.fit3d(p);
    this._refit3d = true;
    p.viewport.render();
  }

  /** 3-D: camera from the front, head up, framing everything shown (volume and every surface) with a
   * margin, and a clipping range that takes in all of it. */
  fit3d(p) {
    const vp = p.viewport;
    vp.setCamera({ viewPlaneNormal: [0, -1, 0], viewUp: [0, 0, 1] });
    vp.resetCamera();
    const ren = vp.getRenderer?.();
    const b = ren?.computeVisiblePropBounds?.();
    if (!b || !b.every(Number.isFinite) || b[0] > b[1]) return;
    const cam = vp.getCamera();
    const n = cam.viewPlaneNormal;
    const up = cam.viewUp;
    const right = [up[1] * n[2] - up[2] * n[1], up[2] * n[0] - up[0] * n[2], up[0] * n[1] - up[1] * n[0]];
    const c = [(b[0] + b[1]) / 2, (b[2] + b[3]) / 2, (b[4] + b[5]) / 2];
    let w = 0;
    let h = 0;
    let r = 0;
    for (const x of [b[0], b[1]])
      for (const y of [b[2], b[3]])
        for (const z of [b[4], b[5]]) {
          const d = [x - c[0], y - c[1], z - c[2]];
          w = Math.max(w, Math.abs(d[0] * right[0] + d[1] * right[1] + d[2] * right[2]));
          h = Math.max(h, Math.abs(d[0] * up[0] + d[1] * up[1] + d[2] * up[2]));
          r = Math.max(r, Math.hypot(...d));
        }
    const aspect = Math.max(0.1, (p.canvas.clientWidth || 1) / (p.canvas.clientHeight || 1));
    const dist = 3 * r + 10;
    vp.setCamera({
      focalPoint: c,
      position: c.map((v, i) => v + dist * n[i]),
      parallelScale: 1.12 * Math.max(h, w / aspect),
    });
    vp.setInitialCamera?.(vp.getCamera());
    // near and far planes around the whole scene, whatever the rotation
    ren.getActiveCamera().setClippingRange(Math.max(0.1, dist - 2 * r), dist + 2 * r);
  }

  volumeActor(p) {
    const id = p.series?.volumeId;
    const entry = p.viewport?.getActors?.().find((a) => a.uid === id || a.referencedId === id);
    return entry?.actor || null;
  }

  showVolume(on) {
    this.volumeOn = Boolean(on);
    this._3dChosen = true;
    this.markButtons();
    const p = this.panes.find((x) => x.kind === "3d");
    const actor = p && this.volumeActor(p);
    if (!actor) return;
    actor.setVisibility(this.volumeOn);
    p.viewport.render();
  }

  // ====================================================================== tools
  ensureToolGroups() {
    if (this.groups) return;
    const mk = (name) => {
      const id = `${this.id}-${name}`;
      ToolGroupManager.destroyToolGroup(id);
      return ToolGroupManager.createToolGroup(id);
    };
    const stack = mk("stack");
    const mpr = mk("mpr");
    const vr = mk("vr");
    for (const g of [stack, mpr]) {
      g.addTool(WindowLevelTool.toolName);
      g.addTool(PanTool.toolName);
      g.addTool(ZoomTool.toolName, { minZoomScale: 0.1, maxZoomScale: 40 });
      g.addTool(LengthTool.toolName);
      g.addTool(FindingRectangleTool.toolName);
      g.addTool(FindingCircleTool.toolName);
    }
    const colours = { axial: "rgb(255, 90, 90)", sagittal: "rgb(255, 210, 70)", coronal: "rgb(70, 200, 255)" };
    mpr.addTool(CrosshairsTool.toolName, {
      getReferenceLineColor: (viewportId) => {
        const p = this.panes.find((x) => x.viewportId === viewportId);
        return colours[p?.spec.orientation] || "rgb(200, 200, 200)";
      },
      getReferenceLineControllable: () => true,
      getReferenceLineDraggableRotatable: () => true,
      getReferenceLineSlabThicknessControlsOn: () => false,
    });
    vr.addTool(TrackballRotateTool.toolName);
    vr.addTool(PanTool.toolName);
    vr.addTool(ZoomTool.toolName);
    vr.setToolActive(TrackballRotateTool.toolName, { bindings: [{ mouseButton: MouseBindings.Primary }] });
    vr.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
    vr.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: MouseBindings.Secondary }, { mouseButton: MouseBindings.Wheel }] });
    for (const g of [stack, mpr]) {
      g.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
      g.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: MouseBindings.Secondary }] });
      g.setToolPassive(LengthTool.toolName);
      g.setToolPassive(FindingRectangleTool.toolName);
      g.setToolPassive(FindingCircleTool.toolName);
    }
    this.groups = { stack, mpr, vr };
  }

  setTool(name) {
    if (!TOOLS[name]) throw new Error(`unknown tool ${name}`);
    if (name === "crosshairs" && this.layout !== "mpr") return;
    this.tool = name;
    if (this.layout === "mpr") this._mprToolChosen = true;
    this.applyTool();
    this.markButtons();
  }

  applyTool() {
    if (!this.groups) return;
    for (const [gname, g] of Object.entries(this.groups)) {
      if (gname === "vr") continue;
      const primary = g.getActivePrimaryMouseButtonTool?.();
      const want = TOOLS[this.tool].tool;
      if (primary === want) continue;
      if (primary) g.setToolPassive(primary);
      if (!g.hasTool(want)) {
        g.setToolActive(WindowLevelTool.toolName, { bindings: [{ mouseButton: MouseBindings.Primary }] });
        continue;
      }
      g.setToolActive(want, { bindings: [{ mouseButton: MouseBindings.Primary }] });
    }
    if (this.groups.mpr && this.layout === "mpr") {
      // crosshairs stay visible (and draggable) when another tool has the left button
      const mode = this.groups.mpr.getToolOptions(CrosshairsTool.toolName)?.mode;
      if (this.tool !== "crosshairs" && mode !== "Passive" && mode !== "Active") this.groups.mpr.setToolPassive(CrosshairsTool.toolName);
    }
  }

  // ====================================================================== navigation
  scroll(delta) {
    const p = this.activePane || this.panes[0];
    this.scrollPane(p, delta);
  }

  scrollPane(p, delta) {
    if (!p?.viewport || p.kind === "3d" || !delta) return;
    if (p.kind === "stack") {
      const ids = p.viewport.getImageIds();
      const i = p.viewport.getCurrentImageIdIndex();
      const j = Math.max(0, Math.min(ids.length - 1, i + delta));
      if (j === i) return;
      this.timings.input(!isCached(ids[j]));
      csUtils.jumpToSlice(p.canvas, { imageIndex: j });
    } else {
      csUtils.scroll(p.viewport, { delta: Math.max(-10000, Math.min(10000, delta)) });
    }
  }

  reset() {
    for (const p of this.panes) {
      const vp = p.viewport;
      if (!vp) continue;
      vp.resetCamera();
      if (p.kind === "3d") {
        this.fit3d(p);
      } else if (p.kind === "stack") {
        vp.resetProperties?.();
        if (this.invert) vp.setProperties({ invert: true });
      } else {
        vp.resetProperties?.(p.series?.volumeId);
      }
      vp.render();
    }
    this.voi = null;
    const p0 = this.panes.find((p) => p.series === this.series.current && p.kind !== "3d");
    try {
      const r = p0?.kind === "stack" ? p0.viewport.getProperties().voiRange : p0?.viewport.getProperties(p0.series.volumeId)?.voiRange;
      if (r) this.voi = { lower: r.lower, upper: r.upper };
    } catch {
      /* no image yet */
    }
    this.markButtons();
  }

  setWindowPreset(name) {
    const p = presetByName(name);
    if (!p) throw new Error(`unknown window preset ${name}; use one of ${WINDOW_PRESETS.map((x) => x.name).join(", ")}`);
    this.voi = voiRange(p.width, p.center);
    for (const pane of this.panes) {
      if (!pane.viewport || pane.kind === "3d") continue;
      if (pane.kind === "stack") pane.viewport.setProperties({ voiRange: this.voi });
      else pane.viewport.setProperties({ voiRange: this.voi }, pane.series?.volumeId);
      pane.viewport.render();
    }
    this.markButtons();
  }

  setInvert(on) {
    this.invert = Boolean(on);
    for (const pane of this.panes) {
      if (!pane.viewport || pane.kind === "3d") continue;
      if (pane.kind === "stack") pane.viewport.setProperties({ invert: this.invert });
      else pane.viewport.setProperties({ invert: this.invert }, pane.series?.volumeId);
      pane.viewport.render();
    }
    this.markButtons();
  }

  setMip(on) {
    this.mip.on = Boolean(on);
    this.applyMip();
    this.markButtons();
  }

  setSlabThickness(mm) {
    this.mip.thickness = Math.max(1, Math.min(200, Number(mm) || 1));
    const out = this.root.querySelector('[data-testid="viewer-slab-value"]');
    out.textContent = `${this.mip.thickness} mm`;
    const input = this.root.querySelector('[data-testid="viewer-slab-thickness"]');
    if (Number(input.value) !== this.mip.thickness) input.value = String(this.mip.thickness);
    if (!this.mip.on) this.mip.on = true;
    this.applyMip();
    this.markButtons();
  }

  applyMip() {
    for (const p of this.panes) {
      if (p.kind !== "volume" || !p.viewport) continue;
      if (this.mip.on) {
        p.viewport.setBlendMode(BlendModes.MAXIMUM_INTENSITY_BLEND);
        p.viewport.setSlabThickness(this.mip.thickness);
      } else {
        p.viewport.setBlendMode(BlendModes.COMPOSITE);
        p.viewport.setSlabThickness(0.1);
      }
      p.viewport.render();
      this.refreshPane(p);
    }
  }

  setVolumePreset(name) {
    this.volumePreset = name;
    const sel = this.root.querySelector('[data-testid="viewer-3d-preset"]');
    if (sel.value !== name) sel.value = name;
    for (const p of this.panes) {
      if (p.kind === "3d" && p.viewport && p.series?.volume) {
        p.viewport.setProperties({ preset: name });
        p.viewport.render();
      }
    }
  }

  /** Centre the volume panes (and the crosshairs) on a patient point. */
  centreVolumes(point, render = true) {
    const vps = this.panes.filter((p) => p.kind === "volume" && p.viewport);
    const xh = this.groups?.mpr?.getToolInstance?.(CrosshairsTool.toolName);
    for (const p of vps) {
      const cam = p.viewport.getCamera();
      const d = [0, 1, 2].map((i) => point[i] - cam.focalPoint[i]);
      p.viewport.setCamera({
        focalPoint: [0, 1, 2].map((i) => cam.focalPoint[i] + d[i]),
        position: [0, 1, 2].map((i) => cam.position[i] + d[i]),
      });
    }
    try {
      xh?.setToolCenter?.(point);
    } catch {
      /* crosshairs not initialised yet */
    }
    if (render) this.engine.renderViewports(vps.map((p) => p.viewportId));
  }

  // ====================================================================== data: prefetch
  prefetch(s) {
    const ids = s.stack.imageIds;
    const pane = this.panes.find((p) => p.series === s && p.kind === "stack");
    const centre = pane ? pane.viewport.getCurrentImageIdIndex() : Math.floor(ids.length / 2);
    const order = ids.map((id, i) => i).sort((a, b) => Math.abs(a - centre) - Math.abs(b - centre));
    const t0 = performance.now();
    let done = 0;
    const total = ids.length;
    const isCurrent = s === this.series.current;
    const bar = this.root.querySelector(".mv-progress");
    const tick = () => {
      done++;
      s.loaded = done;
      if (isCurrent) {
        bar.hidden = done >= total;
        bar.firstElementChild.style.width = `${Math.round((100 * done) / total)}%`;
        if (done < total) {
          if (done % 4 === 0) this.setStatus("load", `Loading images ${done}/${total}`);
        } else {
          this.setStatus("load", null);
          this.timings.set("allImagesMs", performance.now() - t0);
          this.timings.mark("allImagesLoaded");
        }
      }
    };
    const { Prefetch } = Enums.RequestType;
    // a few at a time in distance order: what is near the slice on screen comes first
    let next = 0;
    const worker = async () => {
      while (next < order.length && !this.destroyed) {
        const id = ids[order[next++]];
        try {
          await imageLoader.loadAndCacheImage(id, { priority: 0, requestType: Prefetch });
        } catch {
          /* shown as a failed image when scrolled to */
        }
        tick();
      }
    };
    for (let k = 0; k < 6; k++) worker();
  }

  // ====================================================================== data: SEG
  async loadSegFor(s, list) {
    const { signal } = this.abort;
    const segSeries = (list || []).filter((x) => String(x.modality).toUpperCase() === "SEG");
    const state = this.root.querySelector('[data-testid="viewer-seg-state"]');
    const noSeg = (text) => {
      state.textContent = text;
      // nothing to set or download without one
      this.root.querySelector('[data-testid="viewer-seg-opacity"]').closest("label").hidden = true;
      this.root.querySelector('[data-sec="meshes"]').hidden = true;
    };
    if (!segSeries.length) {
      noSeg("No segmentation in this study.");
      return;
    }
    // the newest SEG (highest series number) that lies on this series' grid
    segSeries.sort((a, b) => b.number - a.number || String(b.date + b.time).localeCompare(String(a.date + a.time)));
    state.textContent = "Loading the segmentation…";
    this.setStatus("seg", "Loading segmentation…");
    const t0 = performance.now();
    let seg = null;
    let lastError = null;
    for (const cand of segSeries) {
      try {
        seg = await loadSeg(this.dw, s.studyUid, cand.uid, s.stack, { signal });
        if (seg.segments.length) break;
      } catch (e) {
        if (e.name === "AbortError") throw e;
        lastError = e;
        seg = null;
      }
    }
    if (this.destroyed) return;
    if (!seg || !seg.segments.length) {
      noSeg(lastError ? `The segmentation could not be shown: ${lastError.message}` : "The segmentation is empty.");
      this.setStatus("seg", null);
      return;
    }
    const overlay = new SegOverlay(seg, s.stack, `${this.id}-seg-${seg.uid}`);
    // Label outlines cost a second pass of every pixel; under a software WebGL (SwiftShader, llvmpipe:
    // virtual desktops) that halves the scroll rate, so there the labelmap is drawn filled only.
    overlay.outline = this.options.segmentationOutline ?? !softwareGl();
    overlay.setOpacity(this.segOpacity ?? 0.45);
    s.seg = overlay;
    this.timings.set("segLoadedMs", performance.now() - t0);
    this.attachSeg(this.panes);
    for (const [label, on] of Object.entries(this.pendingSegToggles || {})) this.toggleSegment(label, on);
    this.renderSegments();
    this.renderMeshes(seg);
    state.textContent = seg.description || "Segmentation";
    this.setStatus("seg", null);
  }

  /** Show the current series' labelmap in these panes (Cornerstone's layer, or the 2-D canvas on
   *  stack panes under a software WebGL). */
  attachSeg(panes) {
    const seg = this.series.current?.seg;
    if (!seg) return;
    const gl = [];
    for (const p of panes) {
      if (p.series !== this.series.current || !p.viewport) continue;
      if (p.kind === "stack" && this.segOn2dCanvas()) {
        if (!p.segCanvas) p.segCanvas = new SegCanvas(p, seg, { outline: this.options.segmentationOutline ?? true });
        p.segCanvas.update(p.viewport);
      } else if (p.kind === "stack" || p.kind === "volume") {
        gl.push(p.viewportId);
      }
    }
    if (gl.length) seg.addTo(gl);
  }

  segOn2dCanvas() {
    const r = this.options.segmentationRenderer || "auto";
    return r === "canvas" || (r === "auto" && softwareGl());
  }

  renderSegments() {
    const s = this.series.current;
    const ul = this.root.querySelector(".mv-seglist");
    if (!s?.seg) {
      ul.innerHTML = "";
      return;
    }
    const volumeMl = (seg) => {
      const e = s.stack.entries[0].meta;
      const ps = (e["00280030"]?.Value || [1, 1]).map(Number);
      const dz = s.stack.spacing || Number(tagValue(e, "00180050")) || 1;
      return (seg.voxels * ps[0] * ps[1] * dz) / 1000;
    };
    ul.innerHTML = s.seg.seg.segments
      .map((seg) => {
        const on = s.seg.visible.get(seg.number);
        const ml = volumeMl(seg);
        const slug = slugOf(seg.label);
        return `<li><label class="mv-check" title="${esc(seg.meaning || seg.label)}">
          <input type="checkbox" data-segment="${esc(seg.label)}" data-testid="viewer-segment-toggle-${esc(slug)}" ${on ? "checked" : ""}>
          <span class="mv-swatch" style="background: rgb(${seg.colour.join(",")})"></span>
          <span class="mv-seg-name">${esc(prettyLabel(seg.label))}</span>
          <span class="mv-seg-vol">${ml >= 10 ? Math.round(ml) : ml.toFixed(1)} mL</span></label></li>`;
      })
      .join("");
  }

  async renderMeshes(seg) {
    const ul = this.root.querySelector(".mv-meshlist");
    const s = this.series.current;
    if (!seg || !s) {
      ul.innerHTML = '<li class="mv-muted">No segmented structures.</li>';
      return;
    }
    // what the server can mesh (its names are the SEG's Tracking IDs); the SEG's own list meanwhile
    const draw = (items) => {
      ul.innerHTML = items
        .map((it) => {
          const url = meshUrl(this.apiRoot, s.studyUid, it.name);
          return `<li><a href="${esc(url)}" download="${esc(it.name)}.stl" data-testid="viewer-mesh-link-${esc(slugOf(it.name))}" title="Binary STL, LPS millimetres">${ICONS.download}<span>${esc(it.title)}</span></a></li>`;
        })
        .join("");
    };
    const fromSeg = seg.segments.map((g) => ({ name: g.name, title: `${prettyLabel(g.label)}.stl` }));
    draw(fromSeg);
    const listed = await listMeshes(this.apiRoot, s.studyUid, { signal: this.abort.signal }).catch(() => null);
    if (!listed || this.destroyed) return;
    if (!listed.length) {
      ul.innerHTML = '<li class="mv-muted">The server has no meshes for this study.</li>';
      return;
    }
    const byName = new Map(seg.segments.map((g) => [g.name, g]));
    draw(listed.map((it) => ({ name: it.name, title: `${prettyLabel(byName.get(it.name)?.label || it.name)}.stl` })));
  }

  toggleSegment(label, on) {
    const s = this.series.current;
    if (!s?.seg) {
      this.pendingSegToggles = { ...(this.pendingSegToggles || {}), [label]: on };
      return false;
    }
    const want = String(label).toLowerCase();
    const seg = s.seg.seg.segments.find(
      (x) => x.label.toLowerCase() === want || slugOf(x.label) === slugOf(want) || String(x.number) === want || x.meaning.toLowerCase() === want,
    );
    if (!seg) return false;
    s.seg.setVisible(seg.number, on);
    const input = this.root.querySelector(`input[data-segment="${CSS.escape(seg.label)}"]`);
    if (input) input.checked = Boolean(on);
    this.renderAll();
    return true;
  }

  setSegmentationOpacity(x) {
    this.segOpacity = Math.max(0, Math.min(1, Number(x)));
    const input = this.root.querySelector('[data-testid="viewer-seg-opacity"]');
    const pct = Math.round(this.segOpacity * 100);
    if (Number(input.value) !== pct) input.value = String(pct);
    input.nextElementSibling.textContent = `${pct}%`;
    this.series.current?.seg?.setOpacity(this.segOpacity);
    this.renderAll();
  }

  renderAll() {
    if (this.engine && this.panes.length) this.engine.renderViewports(this.panes.filter((p) => p.viewport).map((p) => p.viewportId));
  }

  // ====================================================================== data: 3-D surfaces
  async showSurfaces(on) {
    this.surfacesOn = Boolean(on);
    this._3dChosen = true;
    this.markButtons();
    const s = this.series.current;
    const p = this.panes.find((x) => x.kind === "3d");
    if (!p || !s || !p.viewport) return;
    if (!this.surfacesOn) {
      if (s.surface?.segmentationId) {
        try {
          tools.segmentation.removeSegmentationRepresentations(p.viewportId, { segmentationId: s.surface.segmentationId });
        } catch {
          /* gone */
        }
      }
      p.viewport.render();
      return;
    }
    if (!s.seg) {
      this.setStatus("mesh", "Surfaces need the study's segmentation");
      return;
    }
    const structures = s.seg.seg.segments
      .filter((g) => !/^(body|skin)\b/i.test(g.name))
      .map((g) => ({ name: g.name, number: g.number, colour: g.colour }));
    if (!s.surface) {
      this.setStatus("mesh", "Loading the surfaces…");
      const t0 = performance.now();
      s.surface = await loadSurfaces({
        apiRoot: this.apiRoot,
        studyUid: s.studyUid,
        structures,
        frameOfReference: s.info.frameOfReference,
        id: `${this.id}-surf-${s.seriesUid}`,
        signal: this.abort.signal,
      });
      s.surface.structures = structures;
      this.timings.set("surfacesMs", performance.now() - t0);
    }
    if (!this.panes.includes(p) || !this.surfacesOn) return;
    if (!s.surface.segmentationId) {
      this.setStatus("mesh", "The server gave no meshes");
      return;
    }
    this.setStatus("mesh", s.surface.failed.length ? `No mesh for ${s.surface.failed.join(", ")}` : null);
    showSurfaces(p.viewportId, s.surface.segmentationId, structures);
    p.viewport.render();
  }

  // ====================================================================== data: findings
  findingLayerFor(s) {
    if (s.findingLayer) return s.findingLayer;
    s.findingLayer = new FindingLayer({
      stack: s.stack,
      geometry: s.geom,
      seriesUid: s.seriesUid,
      frameOfReference: s.info.frameOfReference || `${s.seriesUid}-for`,
      onEdited: (id, change) => this.options.onFindingEdited?.(id, { ...change, series_uid: s.seriesUid }),
      onAdded: (finding) => {
        this.options.onFindingAdded?.(finding);
      },
      onSelect: (id) => {
        if (!this._jumping) this.options.onFindingSelected?.(id);
      },
    });
    s.findingLayer.setFindings(this.findings);
    if (s === this.series.current) this.renderFindingList();
    this.renderAll();
    return s.findingLayer;
  }

  setFindings(findings) {
    this.findings = findings || [];
    this.series.current?.findingLayer?.setFindings(this.findings);
    this.renderFindingList();
    this.renderAll();
  }

  setFindingsVisible(on) {
    this.series.current?.findingLayer?.setVisible(on);
    const box = this.root.querySelector('[data-testid="viewer-findings-toggle"]');
    if (box.checked !== Boolean(on)) box.checked = Boolean(on);
    this.renderAll();
  }

  renderFindingList() {
    const ul = this.root.querySelector(".mv-findlist");
    const layer = this.series.current?.findingLayer;
    const items = layer ? [...layer.items.values()].map((x) => x.geo) : [];
    if (!this.findings.length) {
      ul.innerHTML = '<li class="mv-muted">No findings.</li>';
      return;
    }
    if (!items.length) {
      ul.innerHTML = this.findings.map((f) => `<li class="mv-muted">${esc(f.id)} ${esc(f.kind || "")}</li>`).join("");
      return;
    }
    ul.innerHTML = items
      .map(
        (g) => `<li><button type="button" class="mv-finding" data-finding="${esc(g.id)}" data-testid="viewer-finding-${esc(g.id)}" data-status="${esc(g.status)}">
          <span class="mv-dot"></span><span class="mv-f-id">${esc(g.id)}</span><span class="mv-f-kind">${esc(g.kind)}</span><span class="mv-f-size">${g.diameter ? `${g.diameter.toFixed(1)} mm` : ""}</span></button></li>`,
      )
      .join("");
  }

  /** Scroll to a finding's key slice and centre it, in every pane that shows the current series. */
  jumpToFinding(id) {
    const s = this.series.current;
    const item = s?.findingLayer?.item(id);
    if (!item) return false;
    const { geo } = item;
    const centre = geo.box ? [0, 1, 2].map((i) => (geo.box[i] + geo.box[i + 3]) / 2) : geo.centre;
    const planePoint = s.geom.slicePosition(geo.slice);
    for (const p of this.panes) {
      if (p.series !== s || !p.viewport) continue;
      if (p.kind === "stack") {
        csUtils.jumpToSlice(p.canvas, { imageIndex: geo.slice }).then(() => {
          const cam = p.viewport.getCamera();
          const n = cam.viewPlaneNormal;
          const d = [0, 1, 2].map((i) => centre[i] - cam.focalPoint[i]);
          const along = d[0] * n[0] + d[1] * n[1] + d[2] * n[2];
          const inPlane = [0, 1, 2].map((i) => d[i] - along * n[i]);
          p.viewport.setCamera({
            focalPoint: [0, 1, 2].map((i) => cam.focalPoint[i] + inPlane[i]),
            position: [0, 1, 2].map((i) => cam.position[i] + inPlane[i]),
          });
          p.viewport.render();
        });
      }
    }
    if (this.panes.some((p) => p.kind === "volume")) {
      const n = s.geom.normal;
      const off = [0, 1, 2].reduce((a, i) => a + (centre[i] - planePoint[i]) * n[i], 0);
      this.centreVolumes([0, 1, 2].map((i) => centre[i] - off * n[i]));
    }
    this._jumping = true;
    try {
      s.findingLayer.select(id);
    } finally {
      this._jumping = false;
    }
    for (const b of this.root.querySelectorAll(".mv-finding")) b.classList.toggle("mv-current", b.dataset.finding === String(id));
    return true;
  }

  /** Canvas positions (CSS px in the pane's canvas) of a finding outline's handles, for tests. */
  findingHandles(id, paneIndex = 0) {
    const p = this.panes[paneIndex];
    const item = this.series.current?.findingLayer?.item(id);
    if (!p?.viewport || !item?.uid) return null;
    const ann = annotationApi.state.getAnnotation(item.uid);
    if (!ann) return null;
    return ann.data.handles.points.map((pt) => Array.from(p.viewport.worldToCanvas(pt)));
  }

  // ====================================================================== heatmap
  async showHeatmap(url, opts = {}) {
    this.heatmap.url = url || null;
    if (opts.opacity !== undefined) this.heatmap.opacity = opts.opacity;
    this.root.querySelector('[data-sec="heatmap"]').hidden = !url;
    for (const p of this.panes) {
      if (p.kind !== "stack" || p.series !== this.series.current) continue;
      await this.attachHeatmap(p);
    }
  }

  async attachHeatmap(p) {
    if (!p.heat) p.heat = new HeatmapOverlay(p.el);
    try {
      await p.heat.show(this.heatmap.url, this.heatmap.opacity);
      p.heat.update(p.viewport);
    } catch (e) {
      this.setStatus("info", e.message);
    }
  }

  setHeatmapOpacity(x) {
    this.heatmap.opacity = Math.max(0, Math.min(1, x));
    const input = this.root.querySelector('[data-testid="viewer-heatmap-opacity"]');
    input.nextElementSibling.textContent = `${Math.round(this.heatmap.opacity * 100)}%`;
    for (const p of this.panes) p.heat?.setOpacity(this.heatmap.opacity);
  }

  // ====================================================================== state for the app and tests
  getState() {
    const p = this.panes[0];
    let slice = null;
    let total = null;
    if (p?.el.dataset.slice) {
      slice = Number(p.el.dataset.slice);
      total = Number(p.el.dataset.total);
    }
    return {
      layout: this.layout,
      tool: this.tool,
      slice,
      total,
      window: widthCenter(this.voi),
      invert: this.invert,
      mip: { ...this.mip },
      segments: this.series.current?.seg
        ? this.series.current.seg.seg.segments.map((g) => ({ label: g.label, number: g.number, visible: this.series.current.seg.visible.get(g.number) }))
        : [],
      segmentationOpacity: this.segOpacity ?? 0.45,
      findings: this.series.current?.findingLayer ? [...this.series.current.findingLayer.items.keys()] : [],
      prior: Boolean(this.series.prior),
      timings: this.timings.summary(),
    };
  }

  destroy() {
    if (this.destroyed) return;
    this.destroyed = true;
    this.abort.abort();
    this.resizeObserver?.disconnect();
    for (const off of this.listeners) off();
    try {
      this.teardownPanes();
    } catch {
      /* best effort */
    }
    for (const s of [this.series.current, this.series.prior]) {
      if (!s) continue;
      s.findingLayer?.destroy();
      // the radiologist's rulers and unsaved marks go with the viewer
      for (const name of [LengthTool.toolName, FindingCircleTool.toolName, FindingRectangleTool.toolName]) {
        try {
          if (s.info.frameOfReference) annotationApi.state.removeAnnotations(name, s.info.frameOfReference);
        } catch {
          /* none */
        }
      }
      s.seg?.destroy();
      if (s.surface?.segmentationId) {
        try {
          tools.segmentation.removeSegmentation(s.surface.segmentationId);
        } catch {
          /* gone */
        }
        for (const g of s.surface.structures || []) {
          try {
            cache.removeGeometryLoadObject(`${s.surface.segmentationId}-${g.number}`);
          } catch {
            /* not cached */
          }
        }
      }
      if (s.volumeId) {
        try {
          cache.removeVolumeLoadObject(s.volumeId);
        } catch {
          /* gone */
        }
      }
    }
    for (const g of Object.values(this.groups || {})) ToolGroupManager.destroyToolGroup(g.id);
    try {
      this.engine?.destroy();
    } catch {
      /* gone */
    }
    this.root.remove();
  }
}

function softwareGl() {
  try {
    return Boolean(getRenderingCapabilities().softwareRasterizer);
  } catch {
    return false;
  }
}

function isCached(imageId) {
  return Boolean(cache.getImage?.(imageId));
}

export function slugOf(label) {
  return String(label)
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-|-$/g, "");
}

function prettyLabel(label) {
  const s = String(label).replace(/_/g, " ");
  return s.charAt(0).toUpperCase() + s.slice(1);
}

