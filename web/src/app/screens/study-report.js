// The report side of a study: impression editor, guideline recommendations, triage, image quality,
// segmented structures (with their STL meshes), the files of the analysis, and the history.
import { urls } from "../api.js";
import { h } from "../dom.js";
import { label, measurement, millis, stamp, when } from "../format.js";
import { actionName, protocolName } from "../labels.js";
import { PRIORITY, QUALITY, qualityBadge } from "../ui/badges.js";
import { href } from "../router.js";
import { icon } from "../ui/icons.js";

export function section(title, ...children) {
  return h("section.panel-section", h("h3.section-title", title), ...children);
}

/** Impression editor.  ctx: {impression:{ai,text,edited}, editable, reason, onSave(text) -> Promise, onDirty(flag)} */
export function impressionEditor(ctx) {
  const saved = ctx.impression?.text ?? ctx.impression?.ai ?? "";
  const ai = ctx.impression?.ai ?? "";
  const status = h("span.save-state", { testid: "impression-state", "aria-live": "polite" }, ctx.impression?.edited ? "Edited by the radiologist" : "AI text");
  const area = h("textarea.textarea", {
    rows: "9", testid: "impression-text", "aria-label": "Impression", readonly: !ctx.editable, spellcheck: "true",
    title: ctx.editable ? "" : ctx.reason,
    oninput: () => {
      const dirty = area.value !== saved;
      save.disabled = !dirty;
      status.textContent = dirty ? "Unsaved changes" : ctx.impression?.edited ? "Edited by the radiologist" : "AI text";
      status.classList.toggle("dirty", dirty);
      ctx.onDirty(dirty, area.value);
    },
    onkeydown: (ev) => {
      if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === "s") {
        ev.preventDefault();
        if (!save.disabled) save.click();
      }
    },
  });
  area.value = saved;
  const fit = () => {
    area.style.height = "auto";
    area.style.height = `${Math.min(Math.max(area.scrollHeight + 2, 140), Math.round(window.innerHeight * 0.55))}px`;
  };
  area.addEventListener("input", fit);
  requestAnimationFrame(fit);
  const save = h("button.btn.btn-primary.btn-small", {
    type: "button", disabled: true, testid: "impression-save", title: "Save (Ctrl+S)",
    onclick: async () => {
      save.disabled = true;
      status.textContent = "Saving…";
      const ok = await ctx.onSave(area.value);
      if (!ok) {
        save.disabled = false;
        status.textContent = "Not saved";
      }
    },
  }, "Save impression");
  const restore = h("button.btn.btn-ghost.btn-small", {
    type: "button", testid: "impression-restore", disabled: !ctx.editable || !ai, title: "Put the AI's text back in the editor",
    onclick: () => {
      area.value = ai;
      area.dispatchEvent(new Event("input"));
      area.focus();
    },
  }, "Restore AI text");
  return h("div.impression", { testid: "impression-editor" },
    area,
    h("div.impression-foot", status, h("span.spacer"), ctx.editable ? [restore, save] : h("span.muted.small", ctx.reason)),
    ctx.impression?.edited && ai ? h("details.ai-original", h("summary", "AI's original impression"), h("p", ai)) : null);
}

export function recommendationsSection(report) {
  const recs = report?.recommendations || [];
  if (!recs.length) return null;
  return section("Guideline recommendations", h("div.recs", recs.map((r) => h(`div.rec${r.applicable === false ? ".rec-na" : ""}`, { testid: "recommendation" },
    h("div.rec-head", h("span.rec-guideline", r.guideline), h("span.rec-cat", r.applicable === false ? "not applicable" : r.category),
      (r.finding_ids || []).length ? h("span.muted.small", r.finding_ids.join(", ")) : null),
    h("p.rec-text", r.text),
    r.provenance?.parameters?.ai_text ? h("p.rec-ai.muted.small", { testid: "recommendation-ai" }, "From the AI's findings: ", h("del", r.provenance.parameters.ai_text)) : null))));
}

export function triageSection(report) {
  const t = report?.triage;
  if (!t) return null;
  const p = PRIORITY[t.priority];
  return section("Triage", h(`div.triage.prio-${t.priority}`, { testid: "triage" },
    h("span.badge.prio", { class: `prio-${t.priority}` }, h("span.glyph", p?.glyph || "•"), p?.label || t.priority),
    h("p", t.reason || "")));
}

export function qualitySection(report) {
  const q = report?.quality;
  if (!q) return null;
  const checks = q.checks || [];
  const flagged = checks.filter((c) => c.status !== "pass");
  const row = (c) => h(`li.check.check-${c.status}`, h("span.check-status", { title: QUALITY[c.status]?.label || c.status }, QUALITY[c.status]?.glyph || "•"),
    h("span.check-name", label(c.name)), h("span.check-reason", c.reason || ""));
  return section("Image quality", h("div.quality-head", qualityBadge(q.verdict),
    h("span.muted", flagged.length ? `${flagged.length} of ${checks.length} checks flagged` : `all ${checks.length} checks passed`)),
  flagged.length ? h("ul.checks", flagged.map(row)) : null,
  h("details.checks-all", h("summary", "All checks"), h("ul.checks", checks.map(row))));
}

/** Files of the analysis (or of the signed report) and the STL meshes. */
export function outputsSection(uid, report, signed) {
  const files = [
    ["report-html", "Report (HTML)", urls.reportHtml(uid), "file", true],
    ["report-pdf", "Report (PDF)", urls.reportPdf(uid), "file", true],
    ["sr", "DICOM SR", urls.sr(uid), "download", false],
    ["seg", "DICOM SEG", urls.seg(uid), "download", false],
    ["fhir", "FHIR DiagnosticReport", urls.fhir(uid), "download", false],
    ["report-json", "report.json", urls.reportJson(uid), "download", true],
  ];
  const structures = (report?.structures || []).filter((s) => s.name);
  return section(signed ? "Signed report files" : "Files",
    h("ul.file-list", { testid: "downloads" }, files.map(([key, text, url, glyph, view]) => h("li",
      h("a.file-link", { href: url, testid: `download-${key}`, target: view ? "_blank" : undefined, rel: view ? "noopener" : undefined, download: view ? undefined : "" },
        icon(glyph, { size: 15 }), text)))),
    structures.length ? [h("h4.sub-title", "3-D meshes (STL)"),
      h("ul.file-list.mesh-list", { testid: "mesh-downloads" }, structures.map((s) => {
        const vol = (s.measurements || []).find((m) => m.name === "volume");
        return h("li", h("a.file-link", { href: urls.mesh(uid, s.name), download: `${s.name}.stl`, testid: "download-mesh", dataset: { structure: s.name } },
          icon("cube", { size: 15 }), label(s.name)), vol ? h("span.muted.small", measurement(vol)) : null);
      }))] : null);
}

export function comparisonsSection(report) {
  const comps = report?.comparisons || [];
  if (!comps.length) return null;
  const priors = [...new Set(comps.map((c) => c.prior_study_uid).filter(Boolean))];
  const change = (c, name) => (c.changes || []).find((m) => m.name === name);
  return section("Comparison with prior", h("ul.comparisons", comps.map((c) => {
    const interval = change(c, "interval");
    return h("li.comparison", { testid: "comparison-item" },
      h("div.comparison-head", h("span.finding-id", c.finding_id),
        c.prior_finding_id ? h("span.muted", `↔ prior ${c.prior_finding_id}`) : h("span.badge.tag", "new"),
        interval ? h("span.muted.small", `${Math.round(Number(interval.value))} days apart`) : null),
      h("p", c.summary || (c.changes || []).map((m) => `${label(m.name)} ${measurement(m)}`).join(", ")));
  })),
  priors.map((uid) => h("a.file-link", { href: href(`/studies/${encodeURIComponent(uid)}`), testid: "open-prior" }, icon("columns", { size: 14 }), "Open the prior study")));
}

const mm = (v) => `${Number(v).toFixed(1)} mm`;
/** [x, y, z] in patient coordinates -> "(12.0, -40.5, 101.0) mm", or "" when it is not a point. */
function point(p) {
  if (!Array.isArray(p) || p.length !== 3 || !p.every((x) => x !== null && x !== "" && Number.isFinite(Number(x)))) return "";
  return `(${p.map((x) => Number(x).toFixed(1)).join(", ")}) mm`;
}
/** {type: "solid", margin: "smooth"} -> "solid, smooth" */
const characterisation = (v) => (v && typeof v === "object" ? Object.values(v).filter((x) => x !== null && x !== undefined && x !== "").join(", ") : String(v ?? ""));

/** The changes of an edit, {diameter_mm: 38, center_patient: [..]} -> "long axis 38.0 mm, moved to (…) mm".
 *  Only the fields the edit sent are there, so a centre or box in it is a real move or resize. */
function describeEdit(changes) {
  const out = [];
  for (const [k, v] of Object.entries(changes)) {
    if (k === "series_uid" || v === null || v === undefined) continue;
    if (k === "diameter_mm") out.push(`long axis ${mm(v)}`);
    else if (k === "short_axis_mm") out.push(`short axis ${mm(v)}`);
    else if (k === "center_patient") out.push(point(v) ? `moved to ${point(v)}` : "moved");
    else if (k === "bbox_patient") out.push("box resized");
    else out.push(characterisation(v));
  }
  return [...new Set(out)].filter(Boolean).join(", ");
}

/** A finding the radiologist added -> "added: nodule, solid, 6.5 mm, at (12.0, -40.5, 101.0) mm". */
function describeAdded(f) {
  const out = [];
  if (f.kind) out.push(String(f.kind));
  if (f.characterisation) out.push(characterisation(f.characterisation));
  if (f.diameter_mm !== null && f.diameter_mm !== undefined && f.diameter_mm !== "") out.push(mm(f.diameter_mm));
  if (point(f.center_patient)) out.push(`at ${point(f.center_patient)}`);
  const what = out.filter(Boolean).join(", ");
  return what ? `added: ${what}` : "added";
}

function historyDetail(e) {
  const d = e.detail && typeof e.detail === "object" ? e.detail : {};
  const parts = [];
  const fid = e.finding_id || d.finding_id || (typeof d.finding === "string" ? d.finding : "");
  if (fid) parts.push(fid);
  const changes = e.changes || d.changes;
  if (Array.isArray(changes) && changes.length) parts.push(changes.join("; "));
  else if (changes && typeof changes === "object") parts.push(describeEdit(changes));
  if (e.action === "finding_added" && d.finding && typeof d.finding === "object") parts.push(describeAdded(d.finding));
  switch (e.action) {
    case "analysis_started":
      if (d.attempt) parts.push(`attempt ${d.attempt}${d.max_attempts ? ` of ${d.max_attempts}` : ""}`);
      break;
    case "analysis_done":
      if (d.protocol) parts.push(protocolName(d.protocol));
      if (d.key_finding) parts.push(d.key_finding);
      break;
    case "result_stored":
    case "result_sent":
      if (d.kind) parts.push(`${String(d.kind).toUpperCase()} ${d.outcome || ""}`.trim());
      if (d.peer || d.destination) parts.push(`to ${d.peer || d.destination}`);
      break;
    default:
      break;
  }
  const text = e.summary || e.text || d.summary || d.reason || d.text || d.error || d.refusal || "";
  if (text) parts.push(String(text));
  const comment = e.comment || d.comment;
  if (comment) parts.push(`“${comment}”`);
  return parts.join(" · ");
}

export function historyList(items) {
  if (!items || !items.length) return h("p.muted.empty-line", { testid: "history-empty" }, "Nothing has happened to this study yet.");
  const sorted = [...items].sort((a, b) => millis(b.at) - millis(a.at) || (b.id || 0) - (a.id || 0));
  return h("ol.history", { testid: "history-list" }, sorted.map((e) => {
    const who = e.by_name || e.display_name || e.actor_name || e.actor || e.by || e.user || "system";
    const system = who === "system" || who === "api" || String(who).startsWith("medimg");
    return h("li.history-item", { testid: "history-item", dataset: { action: e.action || "" } },
      h(`span.history-dot${system ? ".system" : ""}`, { "aria-hidden": "true" }),
      h("div.history-body",
        h("div.history-what", actionName(e.action)),
        historyDetail(e) ? h("div.history-detail", historyDetail(e)) : null,
        h("div.history-meta", h("span.history-who", { testid: "history-who" }, who), h("time", { datetime: String(e.at ?? ""), title: stamp(e.at) }, when(e.at)))));
  }));
}
