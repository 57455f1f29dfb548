// Status and priority badges.  Every state has its own glyph and word as well as its colour
// (Okabe-Ito palette), so nothing is told by colour alone.
import { h } from "../dom.js";

export const PRIORITY = {
  urgent: { label: "Urgent", glyph: "▲", rank: 0 },
  soon: { label: "Soon", glyph: "◆", rank: 1 },
  routine: { label: "Routine", glyph: "●", rank: 2 },
};

export function priorityBadge(priority, { compact = false } = {}) {
  const p = PRIORITY[priority];
  if (!p) return h("span.badge.prio.prio-none", { title: "No triage priority yet", testid: "priority-badge", dataset: { priority: "none" } }, h("span.glyph", "○"), compact ? null : "—");
  return h(`span.badge.prio.prio-${priority}`, { title: `Triage priority: ${p.label}`, testid: "priority-badge", dataset: { priority } },
    h("span.glyph", { "aria-hidden": "true" }, p.glyph), p.label);
}

/** The one status a row shows, from the study status and its latest analysis. */
export function studyState(entry) {
  const st = entry.status;
  const an = entry.analysis_status;
  if (st === "signed") return "signed";
  if (st === "skipped" || an === "refused") return "refused";
  if (st === "failed" || an === "failed") return "failed";
  if (st === "analysing" || an === "queued" || an === "running") return an === "queued" ? "queued" : "analysing";
  if (st === "ready" || an === "done") return "ready";
  return "received";
}

export const STATE = {
  received: { label: "Received", glyph: "↓", help: "Instances arriving; analysis starts when the study is complete" },
  queued: { label: "Queued", glyph: "…", help: "Waiting for an analysis worker" },
  analysing: { label: "Analysing", glyph: "◌", help: "The AI analysis is running" },
  ready: { label: "Ready", glyph: "◉", help: "Analysed: ready to be read" },
  signed: { label: "Signed", glyph: "✓", help: "Report signed by a radiologist" },
  failed: { label: "Failed", glyph: "✕", help: "The analysis failed on every attempt" },
  refused: { label: "Refused", glyph: "⊘", help: "Not analysed: no protocol fits or the image quality failed" },
};

export function stateBadge(state, extra) {
  const s = STATE[state] || { label: state, glyph: "•" };
  return h(`span.badge.state.state-${state}`, { title: extra || s.help, testid: "status-badge", dataset: { status: state } },
    h("span.glyph", { "aria-hidden": "true" }, s.glyph), s.label);
}

export const QUALITY = {
  pass: { label: "Pass", glyph: "✓" },
  warn: { label: "Warn", glyph: "!" },
  fail: { label: "Fail", glyph: "✕" },
};

export function qualityBadge(verdict) {
  const q = QUALITY[verdict];
  if (!q) return h("span.muted", "—");
  return h(`span.quality.quality-${verdict}`, { title: `Image quality: ${q.label}`, testid: "quality-badge", dataset: { quality: verdict } },
    h("span.glyph", { "aria-hidden": "true" }, q.glyph), q.label);
}

export const REVIEW = {
  ai: { label: "AI", glyph: "◇", help: "Not reviewed yet" },
  accepted: { label: "Accepted", glyph: "✓", help: "Accepted by the radiologist" },
  rejected: { label: "Rejected", glyph: "✕", help: "Rejected by the radiologist" },
  edited: { label: "Edited", glyph: "✎", help: "Changed by the radiologist; the AI's original is kept" },
  added: { label: "Added", glyph: "+", help: "Added by the radiologist" },
};

export function reviewBadge(status) {
  const r = REVIEW[status] || REVIEW.ai;
  return h(`span.badge.review.review-${status || "ai"}`, { title: r.help, testid: "finding-review-status", dataset: { review: status || "ai" } },
    h("span.glyph", { "aria-hidden": "true" }, r.glyph), r.label);
}
