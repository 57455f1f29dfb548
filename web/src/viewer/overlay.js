// Text over a viewport: patient and series (top), slice and window/zoom (bottom), orientation letters
// at the four edges (from the camera, so they follow rotation and flips).
import { widthCenter } from "./presets.js";

const AXES = [
  ["L", "R"],
  ["P", "A"],
  ["H", "F"],
];

/** Orientation letters of a direction in patient (LPS) space, the strongest axis first. */
export function orientationLetters(v) {
  if (!v) return "";
  const parts = [0, 1, 2]
    .map((i) => ({ i, a: Math.abs(v[i]), s: v[i] >= 0 ? 0 : 1 }))
    .filter((p) => p.a > 0.25)
    .sort((x, y) => y.a - x.a)
    .slice(0, 2);
  return parts.map((p) => AXES[p.i][p.s]).join("");
}

function negate(v) {
  return [-v[0], -v[1], -v[2]];
}

function cross(a, b) {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}

export class ViewportOverlay {
  constructor(pane) {
    this.root = document.createElement("div");
    this.root.className = "mv-overlay";
    this.root.innerHTML = `
      <div class="mv-ov mv-ov-tl"></div>
      <div class="mv-ov mv-ov-tr"></div>
      <div class="mv-ov mv-ov-bl"></div>
      <div class="mv-ov mv-ov-br"></div>
      <div class="mv-orient mv-orient-top"></div>
      <div class="mv-orient mv-orient-bottom"></div>
      <div class="mv-orient mv-orient-left"></div>
      <div class="mv-orient mv-orient-right"></div>`;
    pane.appendChild(this.root);
    const q = (c) => this.root.querySelector(c);
    this.tl = q(".mv-ov-tl");
    this.tr = q(".mv-ov-tr");
    this.bl = q(".mv-ov-bl");
    this.br = q(".mv-ov-br");
    this.o = { top: q(".mv-orient-top"), bottom: q(".mv-orient-bottom"), left: q(".mv-orient-left"), right: q(".mv-orient-right") };
    this.last = {};
  }

  setText(el, key, html) {
    if (this.last[key] === html) return;
    this.last[key] = html;
    el.innerHTML = html;
  }

  /** Top corners: who and what (called when the series changes). */
  setHeader(info, extra = "") {
    if (!info) {
      this.setText(this.tl, "tl", "");
      this.setText(this.tr, "tr", "");
      return;
    }
    const who = [info.patientName || info.patientId, [info.sex, info.age].filter(Boolean).join(" ")]
      .filter(Boolean)
      .map(esc);
    const id = info.patientId && info.patientId !== info.patientName ? `<div>ID ${esc(info.patientId)}</div>` : "";
    this.setText(this.tl, "tl", `<div class="mv-ov-strong">${who.join(" · ")}</div>${id}${extra}`);
    const series = [info.modality, info.seriesNumber !== "" ? `Se ${info.seriesNumber}` : "", info.seriesDescription]
      .filter((x) => x !== "" && x !== undefined)
      .map(esc)
      .join(" · ");
    this.setText(
      this.tr,
      "tr",
      `<div class="mv-ov-strong">${esc(info.studyDescription || "")}</div><div>${esc(info.studyDate || "")}</div><div>${series}</div>`,
    );
  }

  /** Bottom corners and orientation letters, from the viewport's current state. */
  update(viewport, { slice, total, position, slab, voi, fixedOrientation, noOrientation } = {}) {
    const lines = [];
    if (total) lines.push(`<span data-testid="viewer-slice-indicator">Im ${slice}/${total}</span>`);
    if (position !== undefined && position !== null) lines.push(`${position}`);
    if (slab) lines.push(esc(slab));
    this.setText(this.bl, "bl", lines.map((l) => `<div>${l}</div>`).join(""));
    const wc = widthCenter(voi);
    let zoom = "";
    try {
      const z = viewport.getZoom?.();
      if (z) zoom = `Zoom ${z.toFixed(2)}×`;
    } catch {
      /* not all viewports zoom */
    }
    const wl = wc ? `W ${Math.round(wc.width)} L ${Math.round(wc.center)}` : "";
    this.setText(this.br, "br", [wl, zoom].filter(Boolean).map((l) => `<div>${l}</div>`).join(""));
    const cam = viewport.getCamera?.();
    if (fixedOrientation) {
      for (const side of ["top", "bottom", "left", "right"]) this.setText(this.o[side], `o${side}`, fixedOrientation[side]);
    } else if (noOrientation) {
      this.clearOrientation();
    } else if (cam && cam.viewUp && cam.viewPlaneNormal) {
      const up = cam.viewUp;
      const right = cross(up, cam.viewPlaneNormal);
      this.setText(this.o.top, "ot", orientationLetters(up));
      this.setText(this.o.bottom, "ob", orientationLetters(negate(up)));
      this.setText(this.o.right, "or", orientationLetters(right));
      this.setText(this.o.left, "ol", orientationLetters(negate(right)));
    }
  }

  clearOrientation() {
    for (const [k, el] of Object.entries(this.o)) this.setText(el, `o${k}`, "");
  }

  destroy() {
    this.root.remove();
  }
}

export function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
