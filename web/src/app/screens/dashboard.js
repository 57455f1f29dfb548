// The quality dashboard: per protocol and model, what radiologists did with the AI's findings, the
// weekly distribution of the AI score, and input drift against the model's training reference.
import { api } from "../api.js";
import { h, mount } from "../dom.js";
import { label, num, plural, stamp, when } from "../format.js";
import { bind } from "../keys.js";
import { protocolName } from "../labels.js";
import { legend, scoreChart, shareBar } from "../ui/charts.js";
import { icon } from "../ui/icons.js";

const OUTCOMES = [
  { key: "accepted", label: "Accepted", glyph: "✓" },
  { key: "edited", label: "Edited", glyph: "✎" },
  { key: "rejected", label: "Rejected", glyph: "✕" },
  { key: "added", label: "Added (missed by AI)", glyph: "+" },
  { key: "pending", label: "Not reviewed", glyph: "◇" },
];

const FEATURES = {
  scanner: "Scanner model", kernel: "Reconstruction kernel", slice_thickness: "Slice thickness", kvp: "kVp",
  pixel_spacing: "Pixel spacing", rows: "Matrix rows", px_mean: "Pixel mean", px_std: "Pixel SD",
  px_p05: "Pixel 5th percentile", px_p50: "Pixel median", px_p95: "Pixel 95th percentile",
};
const featureName = (f) => FEATURES[f] || label(f);

const DRIFT_STATUS = {
  ok: { label: "OK", glyph: "✓" },
  alert: { label: "Alert", glyph: "▲" },
  insufficient: { label: "Too few", glyph: "…" },
  no_reference: { label: "No reference", glyph: "–" },
};

function stat(value, text, testid, tone = "") {
  return h(`div.stat${tone ? `.stat-${tone}` : ""}`, { testid }, h("div.stat-value", String(value ?? 0)), h("div.stat-label", text));
}

function outcomes(p) {
  const f = p.findings || {};
  const counts = f.counts || {};
  const shares = f.shares || {};
  const segs = OUTCOMES.map((o) => ({ ...o, value: counts[o.key] ?? 0, share: shares[o.key] ?? 0 }));
  if (!f.total) return h("p.muted.empty-line", "No AI findings in the period.");
  return h("div.outcomes", { testid: "dashboard-outcomes" },
    shareBar(segs, { testid: "outcome-bar" }),
    legend(segs),
    h("p.muted.small", `${plural(f.total, "finding")}: ${f.ai ?? 0} from the AI, ${f.added ?? 0} added by radiologists; ${f.reviewed ?? 0} of the AI's reviewed.`));
}

function driftValue(d) {
  if (d.statistic === null || d.statistic === undefined || d.status === "insufficient" || d.status === "no_reference") return "–";
  const t = d.threshold !== null && d.threshold !== undefined ? ` / ${num(d.threshold, 2)}` : "";
  return `${num(d.statistic, 3)}${t}`;
}

function driftTable(p) {
  const drift = p.drift || {};
  const features = drift.features || [];
  if (!drift.reference) return h("p.muted.empty-line", drift.note || "No training reference for this protocol.");
  const win = drift.window || {};
  return h("div.drift", { testid: "drift" },
    h("p.muted.small", `Recent inputs: ${win.n ?? 0} analyses (last ${win.days ?? "?"} days) against the training reference of ${drift.reference.model || "the model"}${drift.reference.n ? ` (${drift.reference.n} images)` : ""}.`),
    features.length ? h("div.table-scroll", h("table.drift-table", { testid: "drift-table" },
      h("thead", h("tr", h("th", "Feature"), h("th", "Test"), h("th.num", "n"), h("th.num", "Statistic / threshold"), h("th", "Status"), h("th", "Why"))),
      h("tbody", features.map((d) => {
        const s = DRIFT_STATUS[d.status] || { label: d.status, glyph: "•" };
        return h("tr", { class: d.alert ? "drift-alert" : "", testid: "drift-row", dataset: { feature: d.feature, status: d.status, alert: String(Boolean(d.alert)) } },
          h("td", featureName(d.feature)), h("td.muted", label(d.method)), h("td.num", String(d.n ?? "")), h("td.num", driftValue(d)),
          h("td", h(`span.drift-status.drift-${d.status}`, h("span.glyph", { "aria-hidden": "true" }, s.glyph), s.label)),
          h("td.reason", d.reason || ""));
      })))) : h("p.muted.empty-line", "No input features recorded yet."));
}

/** The card's drift summary: an alert, "in range" only when some feature was actually tested (OK or
 *  alert) and none alerts, else "not enough data" (every feature without a reference or too few inputs). */
function driftBadge(p) {
  const drift = p.drift || {};
  if (drift.alert) return h("span.badge.alert-badge", { testid: "drift-alert-badge" }, h("span.glyph", "▲"), "Input drift");
  const judged = (drift.features || []).filter((d) => d.status === "ok" || d.status === "alert").length;
  if (!drift.reference || !judged) {
    return h("span.badge.unjudged-badge", { testid: "drift-unjudged-badge", title: "No input feature had both a training reference and enough recent inputs to be tested" },
      h("span.glyph", "–"), "Not enough data to judge drift");
  }
  return h("span.badge.ok-badge", { testid: "drift-ok-badge", title: `${judged} of ${(drift.features || []).length} input features tested, none out of range` },
    h("span.glyph", "✓"), "Inputs in range");
}

function protocolCard(p) {
  const alert = p.drift?.alert;
  const a = p.analyses || {};
  const by = a.by_status || {};
  const weeks = p.scores?.weeks || [];
  return h("article.card.protocol-card", { testid: "dashboard-protocol", dataset: { protocol: p.protocol, alert: String(Boolean(alert)) } },
    h("header.card-head",
      h("div", h("h2.card-title", protocolName(p.protocol)), h("div.muted.small", { title: (p.algorithms || []).join(", ") }, p.model ? `Model: ${p.model}` : "")),
      h("span.spacer"),
      driftBadge(p),
    ),
    h("div.mini-stats",
      h("span", h("strong", String(a.total ?? 0)), " analyses"),
      h("span", h("strong", String(by.done ?? 0)), " done"),
      h("span", h("strong", String(by.refused ?? 0)), " refused"),
      h("span", { class: by.failed ? "text-bad" : "" }, h("strong", String(by.failed ?? 0)), " failed")),
    h("div.card-cols",
      h("section.card-section", h("h3.section-title", "Radiologist review of AI findings"), outcomes(p)),
      h("section.card-section", h("h3.section-title", "AI score distribution per week"),
        p.scores?.n ? [scoreChart(weeks), h("p.muted.small.chart-key", h("span.key-heat"), "share of the week's findings per score band", h("span.key-mean"), "weekly mean")]
          : h("p.muted.empty-line", "No scored findings in the period."))),
    h("section.card-section", h("h3.section-title", "Input drift"), driftTable(p)));
}

export function dashboardScreen() {
  const body = h("div.dash-body", h("div.panel-state", h("div.spinner"), h("span.muted", "Loading the dashboard…")));
  const meta = h("span.muted", { testid: "dashboard-period" });
  const el = h("section.page.dashboard-page", { testid: "dashboard-page" },
    h("div.page-head", h("div.page-title-row", h("h1.page-title", "Quality dashboard"), meta,
      h("span.spacer"),
      h("button.icon-button", { type: "button", title: "Refresh (r)", "aria-label": "Refresh", testid: "dashboard-refresh", onclick: () => load() }, icon("refresh", { size: 18 })))),
    body);

  async function load() {
    el.classList.add("loading");
    try {
      const d = await api.dashboard();
      const period = d.period || {};
      meta.textContent = `Last ${period.weeks ?? "?"} weeks · updated ${when(d.generated_at)}`;
      meta.title = `${stamp(period.from)} to ${stamp(period.to)}`;
      const protocols = d.protocols || [];
      const active = protocols.filter((p) => (p.analyses?.total ?? 0) > 0 || (p.drift?.window?.n ?? 0) > 0 || (p.findings?.total ?? 0) > 0);
      const idle = protocols.filter((p) => !active.includes(p));
      const alerts = protocols.filter((p) => p.drift?.alert);
      const by = d.analyses?.by_status || {};
      mount(body,
        alerts.length ? h("div.banner.banner-alert", { role: "alert", testid: "dashboard-alert" }, icon("warn"),
          h("div", h("strong", alerts.length === 1 ? "Input drift alert" : `Input drift alerts on ${alerts.length} protocols`),
            h("ul.alert-list", alerts.map((p) => h("li", h("strong", `${protocolName(p.protocol)}: `), (p.drift.alerts || []).join("; ")))))) : null,
        h("div.stats", { testid: "dashboard-stats" },
          stat(d.analyses?.total, "analyses in the period", "stat-total"),
          stat(by.done, "done", "stat-done"),
          stat(by.refused, "refused", "stat-refused"),
          stat(by.failed, "failed", "stat-failed", by.failed ? "bad" : ""),
          stat((by.queued ?? 0) + (by.running ?? 0), "queued or running", "stat-pending")),
        active.length ? h("div.protocol-grid", active.map(protocolCard))
          : h("div.empty-state", h("h2", "No analyses yet"), h("p", "The dashboard fills as studies are analysed and reviewed.")),
        idle.length ? h("section.idle", h("h3.section-title", "Protocols without analyses in the period"),
          h("ul.idle-list", idle.map((p) => h("li", { testid: "dashboard-idle-protocol" }, h("strong", protocolName(p.protocol)), p.model ? h("span.muted", ` · ${p.model}`) : null)))) : null);
    } catch (err) {
      mount(body, h("div.banner.banner-error", { role: "alert" }, icon("warn"), h("span", `The dashboard could not be loaded: ${err.message}`),
        h("button.btn.btn-ghost.btn-small", { type: "button", onclick: load }, "Try again")));
    } finally {
      el.classList.remove("loading");
    }
  }
  const unbind = bind([{ keys: "r", group: "Dashboard", label: "Refresh", fn: load }]);
  load();
  return { el, title: "Quality dashboard", destroy: unbind };
}
