// The findings of a study: one card per finding (what, where, how big, how likely, which model,
// the guideline's word on it) with Accept / Reject / Edit, and the Add-finding dialog.
import { urls } from "../api.js";
import { h } from "../dom.js";
import { label, measurement, num, pct, stamp, when } from "../format.js";
import { findingLocation, findingTitle, measureName } from "../labels.js";
import { REVIEW, reviewBadge } from "../ui/badges.js";
import { openDialog } from "../ui/dialog.js";
import { icon } from "../ui/icons.js";

export const CHARACTER_TYPES = ["solid", "part-solid", "ground-glass", "calcified", "fat-containing", "cystic", "other"];
export const KINDS = ["nodule", "mass", "lesion", "consolidation", "effusion", "pneumothorax", "other"];

export function measure(f, name) {
  return (f.measurements || []).find((m) => m.name === name) || null;
}

export function reviewStatus(f) {
  return f.review?.status || f.status || "ai";
}

function sizeLine(f) {
  const long = measure(f, "long_axis_diameter");
  const short = measure(f, "short_axis_diameter");
  const mean = measure(f, "mean_diameter");
  const dia = measure(f, "diameter");
  if (long && short) return `${num(long.value)} × ${num(short.value)} mm${mean ? ` (mean ${num(mean.value)} mm)` : ""}`;
  if (long) return `${num(long.value)} mm long axis`;
  if (dia) return measurement(dia);
  if (mean) return `${num(mean.value)} mm mean diameter`;
  return "";
}

function probabilityMeter(p) {
  if (p === null || p === undefined) return null;
  const v = Math.max(0, Math.min(1, Number(p)));
  const band = v >= 0.8 ? "high" : v >= 0.5 ? "mid" : "low";
  return h("div.prob", { title: `Probability that this is a real ${"finding"} of this kind: ${pct(v, 1)}`, testid: "finding-probability", dataset: { value: v.toFixed(3) } },
    h("span.prob-label", "Probability"),
    h(`span.prob-track.prob-${band}`, h("span.prob-fill", { style: { width: `${(v * 100).toFixed(1)}%` } })),
    h("span.prob-value", pct(v, 0)));
}

function characterisation(f) {
  const ch = f.characterisation || {};
  const rows = Object.entries(ch).filter(([k, v]) => v !== "" && v !== null && k !== "type_note");
  if (!rows.length && !ch.type_note) return null;
  return h("div.kv-list",
    rows.map(([k, v]) => h("div.kv", h("span.k", label(k)), h("span.v", String(v)))),
    ch.type_note ? h("div.note", ch.type_note) : null);
}

function extraMeasurements(f) {
  const skip = new Set(["long_axis_diameter", "short_axis_diameter", "mean_diameter"]);
  const list = (f.measurements || []).filter((m) => !skip.has(m.name));
  if (!list.length) return null;
  return h("div.measure-grid", list.map((m) => h("div.measure", { title: m.method || "" },
    h("span.k", measureName(m.name)), h("span.v", measurement(m)))));
}

function recommendationsFor(f, report) {
  const recs = (report?.recommendations || []).filter((r) => (r.finding_ids || []).includes(f.id));
  if (!recs.length) return null;
  return h("div.recs", { testid: "finding-recommendations" }, recs.map((r) => h(`div.rec${r.applicable === false ? ".rec-na" : ""}`,
    h("div.rec-head", h("span.rec-guideline", r.guideline), h("span.rec-cat", r.applicable === false ? "not applicable" : r.category)),
    h("p.rec-text", r.text),
    r.rule ? h("details.rec-rule", h("summary", "Rule applied"), h("p", r.rule)) : null)));
}

function provenance(f) {
  const p = f.provenance || {};
  if (!p.algorithm) return null;
  const short = String(p.algorithm).split(".").slice(-1)[0];
  return h("div.prov", { title: p.algorithm, testid: "finding-provenance" }, icon("cube", { size: 13 }),
    h("span.muted", "Model"), h("span", label(short)), p.version ? h("span.muted", `v${p.version}`) : null,
    p.model_card ? h("span.muted", `· ${p.model_card}`) : null);
}

function evidenceLinks(f, ctx) {
  const items = (f.evidence || []).filter((e) => e && e.path);
  if (!items.length) return null;
  return h("div.evidence", items.map((e) => {
    const name = String(e.path).split("/").pop();
    const url = urls.evidence(ctx.uid, name);
    const shown = ctx.heatmapUrl === url;
    return h("span.evidence-item",
      h("a.link", { href: url, target: "_blank", rel: "noopener", testid: "finding-evidence" }, icon("eye", { size: 13 }), label(e.kind || "evidence")),
      ctx.onHeatmap ? h("button.btn.btn-ghost.btn-small", {
        type: "button", testid: "finding-heatmap", "aria-pressed": String(shown),
        onclick: (ev) => {
          ev.stopPropagation();
          ctx.onHeatmap(shown ? null : url);
        },
      }, shown ? "Hide on image" : "Show on image") : null);
  }));
}

function comparisonLine(f, report) {
  const c = (report?.comparisons || []).find((x) => x.finding_id === f.id);
  if (!c) return null;
  const text = c.prior_finding_id ? c.summary || "compared with the prior" : "new since the prior study";
  return h("div.compare-line", { testid: "finding-comparison", title: "Compared with the prior study" },
    icon("columns", { size: 13 }), h("span.compare-tag", c.prior_finding_id ? `vs prior ${c.prior_finding_id}` : "New"), h("span", text));
}

function reviewLine(f) {
  const r = f.review;
  if (!r || !r.status || r.status === "ai") return null;
  const who = r.by_name || r.by || "";
  const parts = [REVIEW[r.status]?.label || r.status, who ? `by ${who}` : "", r.at ? when(r.at) : ""].filter(Boolean);
  return h("div.review-line", { title: r.at ? stamp(r.at) : "" }, parts.join(" "),
    r.comment ? h("div.review-comment", `“${r.comment}”`) : null,
    (r.changes || []).length ? h("ul.changes", r.changes.map((c) => h("li", c))) : originalLine(r.original));
}

function originalLine(original) {
  if (!original || typeof original !== "object") return null;
  const parts = [];
  for (const [k, v] of Object.entries(original)) {
    if (v && typeof v === "object" && "value" in v) parts.push(`${measureName(k).toLowerCase()} ${num(v.value)} ${v.unit || ""}`.trim());
    else if (k === "characterisation" && v && typeof v === "object") parts.push(`characterisation ${Object.values(v).filter(Boolean).join(", ")}`);
    else if (typeof v === "string" || typeof v === "number") parts.push(`${label(k)} ${v}`);
  }
  return parts.length ? h("div.original", h("span.k", "AI original: "), parts.join(" · ")) : null;
}

/**
 * One finding card.  ctx: {uid, report, selectedId, editable, reason, busyId, editingId, onSelect,
 * onDecide(f, action), onEdit(f), onSaveEdit(f, changes), onCancelEdit()}
 */
export function findingCard(f, ctx) {
  const status = reviewStatus(f);
  const selected = ctx.selectedId === f.id;
  const busy = ctx.busyId === f.id;
  const where = findingLocation(f);
  const size = sizeLine(f);
  const disabledReason = ctx.editable ? "" : ctx.reason;
  const actionButton = (action, text, glyph, key, tone) => h(`button.btn.btn-small.btn-${tone}`, {
    type: "button", disabled: !ctx.editable || busy, title: disabledReason || `${text} (${key})`,
    testid: `finding-${action}`, "aria-pressed": String((action === "accept" && status === "accepted") || (action === "reject" && status === "rejected")),
    onclick: (ev) => {
      ev.stopPropagation();
      if (action === "edit") ctx.onEdit(f);
      else ctx.onDecide(f, action);
    },
  }, icon(glyph, { size: 14 }), text);

  const card = h("article.finding", {
    class: [selected && "selected", `finding-${status}`, busy && "busy"],
    tabindex: "0", testid: "finding-item", dataset: { findingId: f.id, review: status },
    "aria-label": `${f.id} ${findingTitle(f)}${where ? `, ${where}` : ""}, ${REVIEW[status]?.label || status}`,
    onclick: () => ctx.onSelect(f),
    onkeydown: (ev) => {
      if (ev.target === card && (ev.key === "Enter" || ev.key === " ")) {
        ev.preventDefault();
        ctx.onSelect(f);
      }
    },
  },
  h("header.finding-head",
    h("span.finding-id", f.id),
    h("h3.finding-title", { testid: "finding-title" }, findingTitle(f)),
    reviewBadge(status)),
  h("div.finding-facts",
    where ? h("span.fact", { testid: "finding-location" }, icon("target", { size: 13 }), where) : null,
    size ? h("span.fact.fact-size", { testid: "finding-size" }, size) : null),
  probabilityMeter(f.probability),
  comparisonLine(f, ctx.report),
  selected ? [characterisation(f), extraMeasurements(f), recommendationsFor(f, ctx.report), evidenceLinks(f, ctx), status === "added" ? null : provenance(f)] : null,
  reviewLine(f),
  ctx.signed ? null : ctx.editingId === f.id ? editForm(f, ctx) : h("div.finding-actions",
    status === "added" ? null : actionButton("accept", "Accept", "check", "a", "accept"),
    actionButton("reject", status === "added" ? "Withdraw" : "Reject", "cross", "x", "reject"),
    actionButton("edit", "Edit", "edit", "e", "ghost")));
  return card;
}

function editForm(f, ctx) {
  const long = measure(f, "long_axis_diameter") || measure(f, "diameter") || measure(f, "mean_diameter");
  const short = measure(f, "short_axis_diameter");
  const type = (f.characterisation || {}).type || "";
  const num1 = (m) => (m ? Number(m.value).toFixed(1) : "");
  const diameter = h("input.input.input-num", { type: "number", min: "0.5", max: "500", step: "0.1", value: num1(long), required: true, testid: "finding-edit-diameter", id: `edit-dia-${f.id}` });
  const shortAxis = short ? h("input.input.input-num", { type: "number", min: "0.5", max: "500", step: "0.1", value: num1(short), testid: "finding-edit-short-axis", id: `edit-short-${f.id}` }) : null;
  const select = h("select.select", { testid: "finding-edit-characterisation", id: `edit-type-${f.id}` },
    h("option", { value: "" }, "Not set"),
    [...new Set([...CHARACTER_TYPES, type].filter(Boolean))].map((t) => h("option", { value: t, selected: t === type }, label(t))));
  const comment = h("input.input", { type: "text", placeholder: "Comment (optional)", maxlength: "500", testid: "finding-edit-comment", value: f.review?.comment || "" });
  const error = h("p.form-error", { hidden: true, testid: "finding-edit-error" });
  const form = h("form.edit-form", {
    testid: "finding-edit-form",
    onclick: (ev) => ev.stopPropagation(),
    onkeydown: (ev) => {
      ev.stopPropagation();
      if (ev.key === "Escape") ctx.onCancelEdit();
    },
    onsubmit: (ev) => {
      ev.preventDefault();
      const changes = {};
      const d = Number(diameter.value);
      if (!(d > 0)) return diameter.focus();
      if (!long || Math.abs(d - Number(long.value)) >= 0.05) changes.diameter_mm = d;
      if (shortAxis && shortAxis.value) {
        const sa = Number(shortAxis.value);
        if (sa > d) {
          error.textContent = "The short axis cannot be longer than the long axis.";
          error.hidden = false;
          return shortAxis.focus();
        }
        if (Math.abs(sa - Number(short.value)) >= 0.05) changes.short_axis_mm = sa;
      }
      if (select.value !== type) changes.characterisation = { type: select.value };
      const c = comment.value.trim();
      if (c !== (f.review?.comment || "")) changes.comment = c;
      ctx.onSaveEdit(f, changes);
      return undefined;
    },
  },
  h("div.form-row",
    h("label.field", { for: diameter.id }, h("span.field-label", "Long axis (mm)"), diameter),
    shortAxis ? h("label.field", { for: shortAxis.id }, h("span.field-label", "Short axis (mm)"), shortAxis) : null,
    h("label.field", { for: select.id }, h("span.field-label", "Characterisation"), select)),
  comment, error,
  h("p.hint", "To move or resize the finding, drag its outline on the image."),
  h("div.form-actions",
    h("button.btn.btn-ghost.btn-small", { type: "button", onclick: ctx.onCancelEdit, testid: "finding-edit-cancel" }, "Cancel"),
    h("button.btn.btn-primary.btn-small", { type: "submit", testid: "finding-edit-save" }, "Save changes")));
  setTimeout(() => diameter.focus(), 0);
  return form;
}

/** The Add-finding dialog; resolves with the POST body or null. `draft` may carry values the viewer gave. */
export function addFindingDialog({ seriesUid, draft = {}, onMarkOnImage = null }) {
  return new Promise((resolve) => {
    const center = draft.center_patient || [];
    const kind = h("select.select", { id: "add-kind", testid: "add-finding-kind" }, KINDS.map((k) => h("option", { value: k, selected: k === (draft.kind || "nodule") }, label(k))));
    const diameter = h("input.input.input-num", { id: "add-diameter", type: "number", min: "0.5", max: "500", step: "0.1", required: true, value: draft.diameter_mm ? Number(draft.diameter_mm).toFixed(1) : "", testid: "add-finding-diameter" });
    const type = h("select.select", { id: "add-type", testid: "add-finding-characterisation" }, h("option", { value: "" }, "Not set"), CHARACTER_TYPES.map((t) => h("option", { value: t }, label(t))));
    const coord = (axis, i) => h("label.field.field-coord", h("span.field-label", axis), h("input.input.input-num", { type: "number", step: "0.1", required: true, value: center[i] !== undefined ? Number(center[i]).toFixed(1) : "", testid: `add-finding-${axis.toLowerCase()}`, dataset: { axis: i } }));
    const coords = [coord("X", 0), coord("Y", 1), coord("Z", 2)];
    const error = h("p.form-error", { hidden: true });
    const body = h("div.add-finding",
      h("div.form-row",
        h("label.field", { for: "add-kind" }, h("span.field-label", "Kind"), kind),
        h("label.field", { for: "add-diameter" }, h("span.field-label", "Diameter (mm)"), diameter),
        h("label.field", { for: "add-type" }, h("span.field-label", "Characterisation"), type)),
      h("fieldset.fieldset", h("legend", "Centre (patient coordinates, mm, LPS)"), h("div.form-row", coords)),
      draft.center_patient ? h("p.hint", "Position and size are taken from the circle drawn on the image.")
        : onMarkOnImage ? h("p.hint", "Or ", h("button.link-button", { type: "submit", value: "mark", formnovalidate: true, testid: "add-finding-mark" }, "mark it on the image"),
          " with the viewer's Mark tool (F): position and size are then filled in.") : null,
      error);
    openDialog({
      title: "Add a finding", body, testid: "add-finding-dialog",
      actions: [
        h("button.btn.btn-ghost", { type: "submit", value: "cancel", formnovalidate: true }, "Cancel"),
        h("button.btn.btn-primary", { type: "submit", value: "ok", testid: "add-finding-save" }, "Add finding"),
      ],
      onClose: (value) => {
        if (value === "mark" && onMarkOnImage) onMarkOnImage();
        if (value !== "ok") return resolve(null);
        const c = coords.map((l) => Number(l.querySelector("input").value));
        const out = { kind: kind.value, center_patient: c, diameter_mm: Number(diameter.value), series_uid: draft.series_uid || seriesUid };
        if (type.value) out.characterisation = { type: type.value };
        resolve(out);
      },
    });
    setTimeout(() => diameter.focus(), 0);
  });
}
