// Findings of the review as Cornerstone annotations, and the edits a radiologist makes to them.
//
// A finding is drawn on its key slice (the slice of its long axis, else the one nearest its centre):
// a rectangle from its box, or a circle from its centre and diameter when it has no box, labelled
// with its id, kind and size.  The outlines can be moved and resized (the tools are passive, so their
// handles stay draggable); every change is reported in patient coordinates (LPS, mm).  The "mark
// finding" tool draws a circle for a finding the AI missed.
import { eventTarget } from "@cornerstonejs/core";
import * as tools from "@cornerstonejs/tools";

const { annotation: annotationApi, Enums: ToolEnums, RectangleROITool, CircleROITool } = tools;

export const FINDING_GROUP = "medimg-findings";

/** Colours by review status (the same in the app's side panel). */
export const STATUS_COLOURS = {
  ai: "rgb(255, 176, 32)",
  accepted: "rgb(64, 210, 120)",
  rejected: "rgb(140, 140, 150)",
  edited: "rgb(64, 190, 255)",
  added: "rgb(230, 100, 255)",
};

function textLines(data) {
  const m = data?.medimg;
  if (m && m.lines) return m.lines;
  return undefined;
}

/** Outline of a finding with a box (RectangleROI with the finding's label). */
export class FindingRectangleTool extends RectangleROITool {
  static toolName = "MedimgFindingRectangle";

  constructor(props = {}) {
    super({
      ...props,
      configuration: {
        ...(props.configuration || {}),
        getTextLines: (data, targetId) => textLines(data) || [],
        calculateStats: false,
      },
    });
  }
}

/** Outline of a finding given by centre and diameter, and the tool to mark a new finding. */
export class FindingCircleTool extends CircleROITool {
  static toolName = "MedimgFindingCircle";

  constructor(props = {}) {
    super({
      ...props,
      configuration: {
        ...(props.configuration || {}),
        getTextLines: (data, targetId) => textLines(data) || circleLines(data),
        // (the circle tool draws its text box only when it calculates statistics)
        calculateStats: true,
      },
    });
  }
}

function circleLines(data) {
  const p = data?.handles?.points;
  if (!p || p.length < 2) return [];
  return [`New finding`, `⌀ ${fmt(2 * dist(p[0], p[1]))} mm`];
}

export function dist(a, b) {
  return Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
}

export function fmt(x, digits = 1) {
  return Number.isFinite(x) ? x.toFixed(digits) : "?";
}

function measurement(f, name) {
  const m = (f.measurements || []).find((x) => x.name === name);
  return m && Number.isFinite(Number(m.value)) ? Number(m.value) : undefined;
}

/** bbox in either [x0,y0,z0,x1,y1,z1] or [[x0,y0,z0],[x1,y1,z1]] form, as min/max corners. */
function normaliseBox(b) {
  if (!Array.isArray(b)) return null;
  let lo;
  let hi;
  if (b.length === 6 && b.every(Number.isFinite)) {
    lo = b.slice(0, 3);
    hi = b.slice(3, 6);
  } else if (b.length === 2 && Array.isArray(b[0]) && Array.isArray(b[1])) {
    [lo, hi] = b;
  } else return null;
  return [0, 1, 2].map((i) => Math.min(lo[i], hi[i])).concat([0, 1, 2].map((i) => Math.max(lo[i], hi[i])));
}

/**
 * Geometry of the series for index <-> patient conversions: sorted slice positions, in-plane axes and
 * spacing (from buildStack's entries).
 */
export class StackGeometry {
  constructor(stack) {
    const first = stack.entries[0]?.meta;
    const iop = stack.iop || [1, 0, 0, 0, 1, 0];
    const ps = (first?.["00280030"]?.Value || [1, 1]).map(Number);
    this.row = iop.slice(0, 3); // direction of increasing column index (x)
    this.col = iop.slice(3, 6); // direction of increasing row index (y)
    this.dx = ps[1];
    this.dy = ps[0];
    this.positions = stack.entries.map((e) => e.position || [0, 0, 0]);
    this.normal = stack.normal || [0, 0, 1];
    this.n = stack.entries.length;
    this.rows = Number(first?.["00280010"]?.Value?.[0] || 1);
    this.cols = Number(first?.["00280011"]?.Value?.[0] || 1);
  }

  slicePosition(z) {
    const n = this.n;
    if (n === 0) return [0, 0, 0];
    const zc = Math.max(0, Math.min(n - 1, z));
    const k = Math.floor(zc);
    const t = zc - k;
    const a = this.positions[k];
    const b = this.positions[Math.min(n - 1, k + 1)];
    return [0, 1, 2].map((i) => a[i] + t * (b[i] - a[i]));
  }

  /** Patient point at the middle of slice z. */
  sliceCentre(z) {
    return this.indexToPatient([z, (this.rows - 1) / 2, (this.cols - 1) / 2]);
  }

  /** (z, y, x) voxel index, fractional, to patient (x, y, z) mm. */
  indexToPatient([z, y, x]) {
    const o = this.slicePosition(z);
    return [0, 1, 2].map((i) => o[i] + x * this.dx * this.row[i] + y * this.dy * this.col[i]);
  }

  /** Nearest slice index of a patient point. */
  sliceOf(p) {
    let best = 0;
    let bestD = Infinity;
    const d = p[0] * this.normal[0] + p[1] * this.normal[1] + p[2] * this.normal[2];
    this.positions.forEach((q, i) => {
      const e = Math.abs(q[0] * this.normal[0] + q[1] * this.normal[1] + q[2] * this.normal[2] - d);
      if (e < bestD) {
        bestD = e;
        best = i;
      }
    });
    return best;
  }
}

/**
 * Where to draw a finding: {id, label, centre, box (patient min/max corners or null), diameter, slice,
 * status}.  Report findings carry voxel boxes of the analysed image; they are used when the
 * analysed image is this series' grid (checked with the centroid), else the centre and diameter.
 */
export function findingGeometry(f, geom) {
  const loc = f.location || {};
  let centre = f.center_patient || loc.centroid_patient || loc.center_patient;
  let box = normaliseBox(f.bbox_patient || loc.bbox_patient);
  const ci = loc.centroid_index;
  let gridMatches = false;
  if (ci && centre && geom.n) {
    const p = geom.indexToPatient(ci);
    gridMatches = dist(p, centre) < 1.5;
  }
  if (!box && gridMatches && Array.isArray(loc.bbox_index) && loc.bbox_index.length === 6) {
    const [z0, y0, x0, z1, y1, x1] = loc.bbox_index;
    const a = geom.indexToPatient([z0, y0 - 0.5, x0 - 0.5]);
    const b = geom.indexToPatient([z1 - 1, y1 - 0.5, x1 - 0.5]);
    box = normaliseBox([...a, ...b]);
  }
  if (!centre && box) centre = [0, 1, 2].map((i) => (box[i] + box[i + 3]) / 2);
  const longAxis = f.diameter_mm ?? measurement(f, "long_axis_diameter") ?? measurement(f, "diameter");
  const shortAxis = measurement(f, "short_axis_diameter");
  const diameter = Number.isFinite(Number(longAxis)) ? Number(longAxis) : box ? Math.max(box[3] - box[0], box[4] - box[1]) : 10;
  let slice;
  const ev = (f.evidence || []).find((e) => Number.isFinite(e?.long_axis_slice));
  if (ev && gridMatches) slice = ev.long_axis_slice;
  else if (centre) slice = geom.sliceOf(centre);
  const status = f.review?.status || f.status || "ai";
  const kind = f.kind || "finding";
  const size = shortAxis ? `${fmt(diameter)} × ${fmt(shortAxis)} mm` : `⌀ ${fmt(diameter)} mm`;
  const prob = Number.isFinite(f.probability) ? ` · p ${f.probability.toFixed(2)}` : "";
  return {
    id: String(f.id ?? ""),
    kind,
    status,
    centre,
    box,
    diameter,
    shortAxis,
    slice,
    lines: [`${f.id ?? ""} ${kind}${status !== "ai" ? ` (${status})` : ""}`.trim(), `${size}${prob}`],
  };
}

/** Patient-space description of an outline annotation (what onFindingEdited/onFindingAdded get). */
export function describeOutline(ann) {
  const pts = ann.data.handles.points;
  if (ann.metadata.toolName === FindingCircleTool.toolName) {
    const c = pts[0];
    const r = dist(pts[0], pts[1]);
    return {
      center_patient: round3(c),
      diameter_mm: round1(2 * r),
      bbox_patient: round3([c[0] - r, c[1] - r, c[2], c[0] + r, c[1] + r, c[2]]),
    };
  }
  const lo = [0, 1, 2].map((i) => Math.min(...pts.map((p) => p[i])));
  const hi = [0, 1, 2].map((i) => Math.max(...pts.map((p) => p[i])));
  // the in-plane extents (the box is drawn on one slice; its plane need not be axial)
  const w = dist(pts[0], pts[1]);
  const h = dist(pts[0], pts[2]);
  return {
    center_patient: round3([0, 1, 2].map((i) => (lo[i] + hi[i]) / 2)),
    diameter_mm: round1(Math.max(w, h)),
    bbox_patient: round3([...lo, ...hi]),
    size_mm: [round1(w), round1(h)],
  };
}

function round1(x) {
  return Math.round(x * 10) / 10;
}

function round3(a) {
  return a.map((x) => Math.round(x * 1000) / 1000);
}

/**
 * The findings' annotations for one series.  `draw()` (again after setFindings) puts them into
 * Cornerstone's annotation state; edits come back through the callbacks.
 */
export class FindingLayer {
  constructor({ stack, geometry, seriesUid, frameOfReference, onEdited, onAdded, onSelect }) {
    this.stack = stack;
    this.geom = geometry;
    this.seriesUid = seriesUid;
    this.for = frameOfReference;
    this.onEdited = onEdited;
    this.onAdded = onAdded;
    this.onSelect = onSelect;
    this.items = new Map(); // finding id -> {finding, geo, uid}
    this.byUid = new Map(); // annotation uid -> finding id
    this.pending = new Map();
    this.visible = true;
    this._onModified = (evt) => this.modified(evt.detail);
    this._onCompleted = (evt) => this.completed(evt.detail);
    this._onSelection = (evt) => this.selection(evt.detail);
    eventTarget.addEventListener(ToolEnums.Events.ANNOTATION_MODIFIED, this._onModified);
    eventTarget.addEventListener(ToolEnums.Events.ANNOTATION_COMPLETED, this._onCompleted);
    eventTarget.addEventListener(ToolEnums.Events.ANNOTATION_SELECTION_CHANGE, this._onSelection);
  }

  setFindings(findings) {
    this.clear();
    for (const f of findings || []) {
      if (f && f.id !== undefined && f.series_uid && f.series_uid !== this.seriesUid) continue;
      const geo = findingGeometry(f, this.geom);
      if (!geo.centre || geo.slice === undefined) continue;
      this.items.set(geo.id, { finding: f, geo, uid: null });
    }
    this.draw();
  }

  draw() {
    this.placedLabels = new Map();
    for (const item of this.items.values()) {
      if (item.uid) continue;
      item.uid = this.addAnnotation(item.geo);
      this.byUid.set(item.uid, item.geo.id);
    }
  }

  addAnnotation(geo) {
    const imageId = this.stack.imageIds[geo.slice];
    const planeZ = this.geom.slicePosition(geo.slice);
    const n = this.geom.normal;
    // project the centre onto the key slice's plane
    const c = geo.centre;
    const off = (c[0] - planeZ[0]) * n[0] + (c[1] - planeZ[1]) * n[1] + (c[2] - planeZ[2]) * n[2];
    const centre = [c[0] - off * n[0], c[1] - off * n[1], c[2] - off * n[2]];
    let points;
    let toolName;
    if (geo.box) {
      toolName = FindingRectangleTool.toolName;
      const { row, col } = this.geom;
      const half = (axis, lo, hi) => {
        // extent of the box along an in-plane axis
        const span = [0, 1, 2].reduce((s, i) => s + Math.abs(axis[i]) * (hi[i] - lo[i]), 0);
        return span / 2;
      };
      const lo = geo.box.slice(0, 3);
      const hi = geo.box.slice(3, 6);
      const hx = half(row, lo, hi);
      const hy = half(col, lo, hi);
      const mid = [0, 1, 2].map((i) => (lo[i] + hi[i]) / 2);
      const moff = (mid[0] - planeZ[0]) * n[0] + (mid[1] - planeZ[1]) * n[1] + (mid[2] - planeZ[2]) * n[2];
      const m = [mid[0] - moff * n[0], mid[1] - moff * n[1], mid[2] - moff * n[2]];
      const at = (sx, sy) => [0, 1, 2].map((i) => m[i] + sx * hx * row[i] + sy * hy * col[i]);
      points = [at(-1, -1), at(1, -1), at(-1, 1), at(1, 1)];
    } else {
      toolName = FindingCircleTool.toolName;
      const r = geo.diameter / 2;
      points = [centre, [0, 1, 2].map((i) => centre[i] + r * this.geom.row[i])];
    }
    const labelAt = this.labelPosition(geo, planeZ);
    const ann = {
      annotationUID: `medimg-finding-${this.seriesUid}-${geo.id}-${Math.random().toString(36).slice(2, 8)}`,
      highlighted: false,
      invalidated: true,
      isLocked: false,
      isVisible: this.visible,
      autoGenerated: false,
      metadata: {
        toolName,
        FrameOfReferenceUID: this.for,
        referencedImageId: imageId,
        viewPlaneNormal: [...n],
        viewUp: this.geom.col.map((v) => -v),
        medimgFindingId: geo.id,
      },
      data: {
        handles: {
          points,
          activeHandleIndex: null,
          textBox: {
            hasMoved: Boolean(labelAt),
            worldPosition: labelAt || [0, 0, 0],
            worldBoundingBox: { topLeft: [0, 0, 0], topRight: [0, 0, 0], bottomLeft: [0, 0, 0], bottomRight: [0, 0, 0] },
          },
        },
        label: geo.lines[0],
        cachedStats: {},
        medimg: { findingId: geo.id, lines: geo.lines, placed: Boolean(labelAt) },
      },
    };
    annotationApi.state.addAnnotation(ann, this.for);
    this.styleFor(ann.annotationUID, geo.status);
    return ann.annotationUID;
  }

  /** The outline's extent in the slice plane: {u0, u1, v0, v1}, mm along the row (u, screen right)
   * and column (v, screen down) directions. */
  rect2d(geo) {
    const { row, col } = this.geom;
    const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    if (geo.box) {
      const lo = geo.box.slice(0, 3);
      const hi = geo.box.slice(3, 6);
      const us = [dot(lo, row), dot(hi, row)];
      const vs = [dot(lo, col), dot(hi, col)];
      return { u0: Math.min(...us), u1: Math.max(...us), v0: Math.min(...vs), v1: Math.max(...vs) };
    }
    const r = geo.diameter / 2;
    const u = dot(geo.centre, row);
    const v = dot(geo.centre, col);
    return { u0: u - r, u1: u + r, v0: v - r, v1: v + r };
  }

  /** Where the label goes so that it covers no other outline (nor another label) on the slice: null
   * for Cornerstone's place (right of the outline, following it), else the text box's top-left
   * corner (patient mm) on the left, above or below.  The label's size is estimated in mm at the
   * fitted zoom (about 0.5 mm a screen pixel for a chest CT). */
  labelPosition(geo, planePoint) {
    const MM_PX = 0.5;
    const a = this.rect2d(geo);
    const chars = Math.max(...geo.lines.map((l) => l.length));
    const W = (chars * 7.2 + 8) * MM_PX;
    const H = (geo.lines.length * 16 + 4) * MM_PX;
    const g = 4;
    const vc = (a.v0 + a.v1) / 2;
    const cands = [
      { u0: a.u1 + g, u1: a.u1 + g + W, v0: vc - H / 2, v1: vc + H, dflt: true },
      { u0: a.u0 - g - W, u1: a.u0 - g, v0: vc - H / 2, v1: vc + H / 2 },
      { u0: a.u0, u1: a.u0 + W, v0: a.v0 - g - H, v1: a.v0 - g },
      { u0: a.u0, u1: a.u0 + W, v0: a.v1 + g, v1: a.v1 + g + H },
    ];
    const others = [...this.items.values()].filter((it) => it.geo.id !== geo.id && it.geo.slice === geo.slice && it.geo.centre).map((it) => this.rect2d(it.geo));
    const placed = this.placedLabels?.get(geo.slice) || [];
    const hit = (c, r) => c.u0 < r.u1 && c.u1 > r.u0 && c.v0 < r.v1 && c.v1 > r.v0;
    const pick = cands.find((c) => !others.some((r) => hit(c, r)) && !placed.some((r) => hit(c, r))) || cands[0];
    if (this.placedLabels) this.placedLabels.set(geo.slice, [...placed, pick]);
    if (pick.dflt) return null;
    const { row, col } = this.geom;
    const du = pick.u0 - (planePoint[0] * row[0] + planePoint[1] * row[1] + planePoint[2] * row[2]);
    const dv = pick.v0 - (planePoint[0] * col[0] + planePoint[1] * col[1] + planePoint[2] * col[2]);
    return [0, 1, 2].map((i) => planePoint[i] + du * row[i] + dv * col[i]);
  }

  styleFor(uid, status) {
    const colour = STATUS_COLOURS[status] || STATUS_COLOURS.ai;
    annotationApi.config.style.setAnnotationStyles(uid, {
      color: colour,
      textBoxColor: colour,
      colorHighlighted: "rgb(255, 255, 255)",
      textBoxColorHighlighted: "rgb(255, 255, 255)",
      colorSelected: "rgb(255, 255, 255)",
      textBoxColorSelected: "rgb(255, 255, 255)",
      lineWidth: "2",
      lineDash: status === "rejected" ? "4,4" : "",
      textBoxFontSize: "13px",
      textBoxBackground: "rgba(0, 0, 0, 0.55)",
    });
  }

  item(id) {
    return this.items.get(String(id));
  }

  setVisible(on) {
    this.visible = Boolean(on);
    for (const { uid } of this.items.values()) {
      if (uid) annotationApi.visibility.setAnnotationVisibility(uid, this.visible);
    }
  }

  select(id) {
    const item = this.item(id);
    if (!item?.uid) return;
    annotationApi.selection.setAnnotationSelected(item.uid, true, false);
  }

  modified({ annotation, changeType }) {
    if (!annotation || changeType !== ToolEnums.ChangeTypes.HandlesUpdated) return;
    const id = this.byUid.get(annotation.annotationUID);
    if (id === undefined) return;
    // a label placed beside the outline follows it again once the outline is moved
    if (annotation.data?.medimg?.placed && annotation.data.handles?.textBox) {
      annotation.data.medimg.placed = false;
      annotation.data.handles.textBox.hasMoved = false;
    }
    // dragging sends many; report once the outline rests
    clearTimeout(this.pending.get(id));
    this.pending.set(
      id,
      setTimeout(() => {
        this.pending.delete(id);
        const item = this.items.get(id);
        if (!item) return;
        const change = describeOutline(annotation);
        item.geo.status = "edited";
        const size = change.size_mm ? `${fmt(change.size_mm[0])} × ${fmt(change.size_mm[1])} mm` : `⌀ ${fmt(change.diameter_mm)} mm`;
        annotation.data.medimg.lines = [`${id} ${item.geo.kind} (edited)`, size];
        this.styleFor(annotation.annotationUID, "edited");
        this.onEdited?.(id, change);
      }, 250),
    );
  }

  completed({ annotation }) {
    if (!annotation || annotation.metadata?.toolName !== FindingCircleTool.toolName) return;
    if (this.byUid.has(annotation.annotationUID)) return;
    const d = describeOutline(annotation);
    if (!(d.diameter_mm > 0.5)) {
      annotationApi.state.removeAnnotation(annotation.annotationUID);
      return;
    }
    const added = {
      kind: "nodule",
      series_uid: this.seriesUid,
      center_patient: d.center_patient,
      diameter_mm: d.diameter_mm,
      bbox_patient: d.bbox_patient,
    };
    annotation.data.medimg = { findingId: null, lines: ["New finding", `⌀ ${fmt(d.diameter_mm)} mm`] };
    this.styleFor(annotation.annotationUID, "added");
    this.drawnNew = this.drawnNew || new Set();
    this.drawnNew.add(annotation.annotationUID);
    this.onAdded?.(added, annotation.annotationUID);
  }

  selection({ selection }) {
    if (!selection || !this.onSelect) return;
    for (const uid of selection) {
      const id = this.byUid.get(uid);
      if (id !== undefined) this.onSelect(id);
    }
  }

  clear() {
    for (const t of this.pending.values()) clearTimeout(t);
    this.pending.clear();
    for (const { uid } of this.items.values()) {
      if (uid) annotationApi.state.removeAnnotation(uid);
    }
    for (const uid of this.drawnNew || []) annotationApi.state.removeAnnotation(uid);
    this.drawnNew = new Set();
    this.items.clear();
    this.byUid.clear();
  }

  destroy() {
    this.clear();
    eventTarget.removeEventListener(ToolEnums.Events.ANNOTATION_MODIFIED, this._onModified);
    eventTarget.removeEventListener(ToolEnums.Events.ANNOTATION_COMPLETED, this._onCompleted);
    eventTarget.removeEventListener(ToolEnums.Events.ANNOTATION_SELECTION_CHANGE, this._onSelection);
  }
}
