// Small charts drawn in SVG: a stacked share bar and the weekly score distribution.
import { h, s } from "../dom.js";

/**
 * A horizontal bar of shares.  segments: [{key, label, value (count), share (0..1), glyph}].
 * Segments too narrow for a label get none (the legend carries every number).
 */
export function shareBar(segments, { testid = "share-bar", height = 22 } = {}) {
  const total = segments.reduce((a, x) => a + (x.share || 0), 0) || 1;
  let x = 0;
  const rects = [];
  for (const seg of segments) {
    const w = ((seg.share || 0) / total) * 100;
    if (w <= 0) continue;
    rects.push(s("rect", { x: `${x}%`, y: 0, width: `${w}%`, height, class: `seg-${seg.key}` },
      s("title", {}, `${seg.label}: ${seg.value} (${Math.round((seg.share || 0) * 100)}%)`)));
    if (w >= 9) rects.push(s("text", { x: `${x + w / 2}%`, y: height / 2 + 4, "text-anchor": "middle", class: "bar-label" }, `${Math.round((seg.share || 0) * 100)}%`));
    x += w;
  }
  if (!rects.length) rects.push(s("rect", { x: 0, y: 0, width: "100%", height, class: "seg-empty" }));
  return s("svg", { class: "share-bar", width: "100%", height, role: "img", "aria-label": segments.map((g) => `${g.label} ${Math.round((g.share || 0) * 100)}%`).join(", "), testid }, ...rects);
}

export function legend(segments) {
  return h("ul.legend", segments.map((g) => h("li", h(`span.swatch.seg-${g.key}`, { "aria-hidden": "true" }, g.glyph || ""),
    h("span.legend-label", g.label), h("span.legend-value", `${g.value}`), g.share !== null && g.share !== undefined ? h("span.legend-share", `${Math.round(g.share * 100)}%`) : null)));
}

/**
 * Weekly AI score distribution: one column per week, ten bins of 0.1 from bottom (0) to top (1),
 * shaded by the share of the week's findings in the bin; the weekly mean as a line.
 * weeks: [{week, n, counts[10], mean, median}]
 */
export function scoreChart(weeks, { testid = "score-chart" } = {}) {
  // The SVG's viewBox follows the width of its box (one user unit per CSS pixel, fixed height), so the
  // chart fills the card at any width without scaling its text; drawn at 560 until the box is laid out.
  const box = h("div.score-chart-box");
  let drawnW = 0;
  const draw = (w) => {
    const W = Math.max(240, Math.round(w));
    if (Math.abs(W - drawnW) < 2) return;
    drawnW = W;
    box.replaceChildren(scoreSvg(weeks, W, testid));
  };
  draw(560);
  if (typeof ResizeObserver === "function") {
    const ro = new ResizeObserver((entries) => {
      const w = entries[entries.length - 1].contentRect.width;
      if (box.isConnected && w > 0) draw(w);
    });
    ro.observe(box);
  }
  return box;
}

function scoreSvg(weeks, W, testid) {
  const H = 190;
  const left = 34;
  const right = 8;
  const top = 10;
  const bottom = 40;
  const plotW = W - left - right;
  const plotH = H - top - bottom;
  const n = weeks.length || 1;
  const colW = plotW / n;
  const yOf = (p) => top + plotH * (1 - p);
  const out = [];
  // grid and y axis
  for (const p of [0, 0.25, 0.5, 0.75, 1]) {
    out.push(s("line", { x1: left, x2: W - right, y1: yOf(p), y2: yOf(p), class: "grid" }));
    out.push(s("text", { x: left - 6, y: yOf(p) + 4, "text-anchor": "end", class: "axis" }, p.toFixed(p === 0 || p === 1 ? 0 : 2)));
  }
  const maxShare = Math.max(0.0001, ...weeks.flatMap((w) => (w.n ? w.counts.map((c) => c / w.n) : [0])));
  weeks.forEach((w, i) => {
    const x = left + i * colW;
    if (w.n) {
      w.counts.forEach((c, b) => {
        if (!c) return;
        const share = c / w.n;
        out.push(s("rect", {
          x: x + 2, y: yOf((b + 1) / 10) + 0.5, width: Math.max(1, colW - 4), height: plotH / 10 - 1, rx: 2,
          class: "heat", "fill-opacity": (0.2 + 0.8 * (share / maxShare)).toFixed(3),
        }, s("title", {}, `${w.week}: ${c} of ${w.n} findings scored ${(b / 10).toFixed(1)}–${((b + 1) / 10).toFixed(1)}`)));
      });
    } else {
      out.push(s("rect", { x: x + 2, y: top, width: Math.max(1, colW - 4), height: plotH, class: "empty-week" }, s("title", {}, `${w.week}: no findings`)));
    }
    const label = String(w.week || "").replace(/^\d{4}-/, "");
    if (n <= 16 || i % Math.ceil(n / 12) === 0) out.push(s("text", { x: x + colW / 2, y: H - bottom + 16, "text-anchor": "middle", class: "axis" }, label));
    out.push(s("text", { x: x + colW / 2, y: H - bottom + 30, "text-anchor": "middle", class: "axis axis-n" }, w.n ? `n=${w.n}` : ""));
  });
  // weekly mean
  const pts = weeks.map((w, i) => (w.mean === null || w.mean === undefined ? null : [left + i * colW + colW / 2, yOf(w.mean)]));
  let path = "";
  pts.forEach((p, i) => {
    if (!p) return;
    path += `${path && pts[i - 1] ? "L" : "M"}${p[0].toFixed(1)},${p[1].toFixed(1)}`;
  });
  if (path) out.push(s("path", { d: path, class: "mean-line" }));
  pts.forEach((p, i) => {
    if (p) out.push(s("circle", { cx: p[0], cy: p[1], r: 3.2, class: "mean-dot" }, s("title", {}, `${weeks[i].week}: mean ${weeks[i].mean.toFixed(2)}, median ${weeks[i].median?.toFixed(2) ?? "–"}`)));
  });
  return s("svg", { class: "score-chart", viewBox: `0 0 ${W} ${H}`, width: "100%", height: H, role: "img", "aria-label": "AI score distribution per week", testid }, ...out);
}
