// Line icons drawn on a 20x20 grid (stroke = currentColor), so they take the colour of their text.
import { s } from "../dom.js";

const PATHS = {
  check: ["M4 10.5l4 4 8-9"],
  cross: ["M5 5l10 10", "M15 5L5 15"],
  edit: ["M4 16l1-4 8-8 3 3-8 8z", "M11 6l3 3"],
  plus: ["M10 4v12", "M4 10h12"],
  search: ["M8.5 3.5a5 5 0 1 1 0 10a5 5 0 0 1 0-10z", "M12.5 12.5l4 4"],
  back: ["M12 4l-6 6 6 6"],
  next: ["M8 4l6 6-6 6"],
  sign: ["M3 15c3-1 4-7 6-7s0 6 2 6 2-3 3-3 1 2 3 2", "M3 18h14"],
  lock: ["M5 9h10v8H5z", "M7 9V6a3 3 0 0 1 6 0v3"],
  download: ["M10 3v10", "M6 9l4 4 4-4", "M4 17h12"],
  file: ["M5 2h7l4 4v12H5z", "M12 2v4h4"],
  history: ["M3 10a7 7 0 1 0 2-5", "M3 3v3h3", "M10 6v4l3 2"],
  chart: ["M3 17h14", "M5 14V9", "M9 14V5", "M13 14v-3", "M17 14V7"],
  list: ["M7 5h10", "M7 10h10", "M7 15h10", "M3 5h1", "M3 10h1", "M3 15h1"],
  user: ["M10 3a3.5 3.5 0 1 1 0 7a3.5 3.5 0 0 1 0-7z", "M3 18c1-4 4-5 7-5s6 1 7 5"],
  logout: ["M8 4H4v12h4", "M12 6l4 4-4 4", "M16 10H7"],
  refresh: ["M16 10a6 6 0 1 1-2-4.5", "M16 3v3.5h-3.5"],
  keyboard: ["M2 5h16v10H2z", "M5 8h1", "M8 8h1", "M11 8h1", "M14 8h1", "M6 12h8"],
  columns: ["M3 4h14v12H3z", "M10 4v12"],
  square: ["M3 4h14v12H3z"],
  warn: ["M10 3l8 14H2z", "M10 8v4", "M10 14.5v.5"],
  info: ["M10 3a7 7 0 1 1 0 14a7 7 0 0 1 0-14z", "M10 9v5", "M10 6v.5"],
  target: ["M10 3a7 7 0 1 1 0 14a7 7 0 0 1 0-14z", "M10 7a3 3 0 1 1 0 6a3 3 0 0 1 0-6z"],
  cube: ["M10 2l7 4v8l-7 4-7-4V6z", "M3 6l7 4 7-4", "M10 10v8"],
  pulse: ["M2 10h4l2-5 4 10 2-5h4"],
  eye: ["M2 10s3-5 8-5 8 5 8 5-3 5-8 5-8-5-8-5z", "M10 8a2 2 0 1 1 0 4a2 2 0 0 1 0-4z"],
};

export function icon(name, { size = 16, label } = {}) {
  const el = s("svg", {
    class: `icon icon-${name}`, width: size, height: size, viewBox: "0 0 20 20", fill: "none",
    stroke: "currentColor", "stroke-width": 1.7, "stroke-linecap": "round", "stroke-linejoin": "round",
    "aria-hidden": label ? undefined : "true", role: label ? "img" : undefined, "aria-label": label,
  }, ...(PATHS[name] || PATHS.info).map((d) => s("path", { d })));
  return el;
}

/** The medimg mark: a stylised axial slice. */
export function logo(size = 22) {
  return s("svg", { class: "logo", width: size, height: size, viewBox: "0 0 24 24", "aria-hidden": "true" },
    s("rect", { x: 1, y: 1, width: 22, height: 22, rx: 6, fill: "#1d5f8f" }),
    s("ellipse", { cx: 12, cy: 12.5, rx: 8, ry: 6.5, fill: "none", stroke: "#cfe8f7", "stroke-width": 1.6 }),
    s("ellipse", { cx: 8.6, cy: 12.5, rx: 2.6, ry: 3.8, fill: "#cfe8f7", opacity: 0.85 }),
    s("ellipse", { cx: 15.4, cy: 12.5, rx: 2.6, ry: 3.8, fill: "#cfe8f7", opacity: 0.85 }),
    s("circle", { cx: 16.3, cy: 11, r: 1.3, fill: "#f0a15a" }));
}
