// One study: the image viewer (web/src/viewer) over most of the screen, and a side panel with the
// AI findings (accept / reject / edit / add), the impression, sign-off, the report's files and the
// history.  The comparison layout puts the prior study beside the current one.
import { api, urls } from "../api.js";
import { h, mount } from "../dom.js";
import { ageAt, dicomDate, dicomTime, personName, plural, stamp, when } from "../format.js";
import { bind } from "../keys.js";
import { protocolName } from "../labels.js";
import { subscribe } from "../live.js";
import { href, navigate } from "../router.js";
import { can, roleReason } from "../session.js";
import { priorityBadge, qualityBadge, stateBadge, studyState } from "../ui/badges.js";
import { confirm } from "../ui/dialog.js";
import { icon } from "../ui/icons.js";
import { toast, toastError } from "../ui/toast.js";
import { hasViewer, mountStudyViewer } from "../viewer-host.js";
import { addFindingDialog, findingCard, reviewStatus } from "./study-findings.js";
import { worklistPath } from "./worklist.js";
import {
  comparisonsSection, historyList, impressionEditor, outputsSection, qualitySection,
  recommendationsSection, section, triageSection,
} from "./study-report.js";

const TABS = [
  { key: "findings", label: "Findings", key1: "g f" },
  { key: "report", label: "Report", key1: "g r" },
  { key: "history", label: "History", key1: "g h" },
];

/** The review as the page uses it, from GET /review or (when that is unavailable) from the report. */
function normaliseReview(data) {
  // The review's recommendations and triage are made again from the reviewed findings (GET /review);
  // the report's own are the AI's.
  const report = data.report && Array.isArray(data.recommendations)
    ? { ...data.report, recommendations: data.recommendations, triage: data.triage ?? data.report.triage }
    : data.report || null;
  const findings = (data.findings || report?.findings || []).map((f) => ({
    ...f, review: f.review || (f.status && f.status !== "ai" ? { status: f.status } : { status: "ai" }),
  }));
  const ai = data.impression?.ai ?? report?.review?.impression?.ai ?? report?.impression ?? "";
  return {
    report,
    findings,
    impression: { ai, text: data.impression?.text ?? report?.impression ?? ai, edited: Boolean(data.impression?.edited) },
    state: data.state || report?.review?.state || "draft",
    signed_by: data.signed_by_name || data.signed_by || report?.review?.signed_by_name || report?.review?.signed_by || "",
    signed_at: data.signed_at || report?.review?.signed_at || null,
    undecided: Array.isArray(data.undecided) ? data.undecided : null,
  };
}

export function studyScreen({ params, query }) {
  const uid = params.uid;
  const st = {
    detail: null, review: null, reviewSource: "review", noAnalysis: null, notFound: false, loadError: null,
    selectedId: null, editingId: null, busyId: null, signing: false,
    tab: TABS.some((t) => t.key === query.tab) ? query.tab : "findings",
    layout: query.layout === "compare" ? "compare" : "single",
    heatmapUrl: null, impressionDirty: false, impressionDraft: "", history: null, historyError: null,
  };
  const cleanups = [];
  let viewer = null;
  let viewerMounted = false;
  let viewerHasReport = false;
  let destroyed = false;
  let refreshTimer = null;

  // --------------------------------------------------------------------------- elements
  const bar = h("header.study-bar", { testid: "study-bar" });
  const currentPane = h("div.viewer-pane.viewer-current", { testid: "viewer-current" });
  const currentHost = h("div.viewer-host", { testid: "viewer-host" }, h("div.viewer-loading", h("div.spinner"), h("span", "Loading images…")));
  const priorPane = h("div.viewer-pane.viewer-prior", { testid: "viewer-prior" });
  const paneLabel = (text, testid) => h("div.pane-label", { testid }, text);
  currentPane.append(currentHost);
  const viewerArea = h("div.viewer-area", { testid: "viewer-area", dataset: { layout: st.layout } }, currentPane, priorPane);
  const tabBar = h("div.tabs", { role: "tablist", "aria-label": "Study panel" });
  const panelBody = h("div.panel-body", { role: "tabpanel", testid: "panel-body" });
  const footer = h("footer.panel-foot", { testid: "sign-footer" });
  const panel = h("aside.side-panel", { testid: "side-panel", "aria-label": "Findings and report" }, tabBar, panelBody, footer);
  const el = h("section.study-page", { testid: "study-page", dataset: { studyUid: uid } }, bar, h("div.study-body", viewerArea, panel));

  // --------------------------------------------------------------------------- derived state
  const report = () => st.review?.report || null;
  const findings = () => st.review?.findings || [];
  const signed = () => st.review?.state === "signed" || st.detail?.study?.status === "signed";
  /** AI findings without a decision (the server refuses to sign while there are any). */
  const undecided = () => st.review?.undecided || findings().filter((f) => reviewStatus(f) === "ai").map((f) => f.id);
  const priorUids = () => [...new Set((report()?.comparisons || []).map((c) => c.prior_study_uid).filter(Boolean))];

  function editReason() {
    if (!st.review || !report()) return "There is no finished analysis to review.";
    if (signed()) return "The report is signed; it can no longer be changed.";
    if (st.reviewSource !== "review") return "Review is not available on this server.";
    return roleReason("review");
  }
  function signReason() {
    if (!st.review || !report()) return "There is no finished analysis to sign.";
    if (signed()) return "The report is already signed.";
    if (report()?.status === "refused") return "The analysis was refused; there is no report to sign.";
    if (st.reviewSource !== "review") return "Sign-off is not available on this server.";
    const role = roleReason("sign");
    if (role) return role;
    const open = undecided();
    if (open.length) return `Decide on every AI finding first: ${open.join(", ")} ${open.length === 1 ? "has" : "have"} no decision yet.`;
    return "";
  }
  const editable = () => !editReason() && can.review();

  // --------------------------------------------------------------------------- loading
  async function loadDetail() {
    try {
      st.detail = await api.study(uid);
      st.loadError = null;
    } catch (err) {
      if (err.status === 404) st.notFound = true;
      else st.loadError = err;
    }
  }

  async function loadReview() {
    try {
      st.review = normaliseReview(await api.review(uid));
      st.reviewSource = "review";
      st.noAnalysis = null;
    } catch (err) {
      if (err.status === 404 || err.status === 409 || err.status === 405) {
        // no finished analysis yet, or a server without the review service: fall back to the report
        try {
          st.review = normaliseReview({ report: await api.report(uid) });
          st.reviewSource = err.status === 404 && /not found/i.test(err.message) && !/analysis/i.test(err.message) ? "report" : "review";
          st.noAnalysis = null;
        } catch (err2) {
          st.review = null;
          st.noAnalysis = err2.status === 404 ? err2.message : err.message;
          if (err2.status !== 404) toastError(err2, "The report could not be loaded");
        }
      } else {
        st.review = null;
        st.noAnalysis = null;
        toastError(err, "The review could not be loaded");
      }
    }
    // The history tab shows only the study's whole history (GET /history, loadHistory): the review's
    // own events (review.history) are a subset of it, and showing them first made the list jump.
    if (!st.selectedId && findings().length) st.selectedId = findings()[0].id;
  }

  async function loadHistory() {
    try {
      const data = await api.history(uid);
      st.history = Array.isArray(data) ? data : data.items || data.history || [];
      st.historyError = null;
    } catch (err) {
      // fall back to the study's audit events
      st.history = st.detail?.events || [];
      st.historyError = err.status === 404 ? null : err;
    }
  }

  async function loadAll({ keepSelection = true } = {}) {
    const selected = st.selectedId;
    await Promise.all([loadDetail(), loadReview()]);
    if (destroyed) return;
    if (keepSelection && selected && findings().some((f) => f.id === selected)) st.selectedId = selected;
    if (st.tab === "history" || st.history === null) await loadHistory();
    if (destroyed) return;
    const p = st.detail?.study;
    if (p) document.title = `${personName(p.patient_name) || p.patient_id} · ${p.study_description || "Study"} · medimg`;
    paintAll();
    await mountViewers();
    if (!destroyed) viewer?.setFindings(findings());
  }

  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(async () => {
      if (st.busyId || st.signing || st.editingId) return scheduleRefresh();
      await loadAll();
    }, 400);
  }

  // --------------------------------------------------------------------------- viewer
  // The viewer (web/src/viewer) shows the current study and, in its "compare" layout, the prior one
  // beside it (or its "No prior study" pane).  Without a viewer in the build, the page draws the two
  // panes itself so that the layout and its states stay the same.
  function viewerOptions() {
    const rep = report();
    return {
      studyUid: uid,
      dicomwebRoot: urls.dicomweb,
      apiRoot: "/api",
      seriesUid: rep?.study?.series_instance_uid || undefined,
      priorStudyUid: priorUids()[0],
      layout: st.layout,
      panel: window.innerWidth >= 1800, // the layer panel; the side panel already lists the findings
      findings: findings(),
      onFindingSelected: (id) => select(id, { fromViewer: true }),
      onFindingEdited: (id, changes) => viewerEdit(id, changes),
      onFindingAdded: (draft) => addFinding(draft),
    };
  }

  async function mountViewers() {
    // A viewer opened before the analysis finished has neither the findings nor the segmentation nor
    // the prior: open it again, once, when the report arrives.
    if (viewerMounted && viewer && !viewerHasReport && report()) {
      viewer.destroy();
      viewer = null;
      viewerMounted = false;
      currentHost.replaceChildren();
    }
    if (!viewerMounted && st.detail) {
      viewerMounted = true;
      viewerHasReport = Boolean(report());
      viewer = await mountStudyViewer(currentHost, viewerOptions());
      if (destroyed) return viewer.destroy();
      if (viewer.available) watchViewerLayout();
      viewer.ready.then(() => {
        if (!destroyed && st.selectedId) viewer.showFinding(st.selectedId);
      });
      paintBar();
      paintPanel(); // the viewer's extras (heat maps on the image) are offered now
    }
    paintFallbackPanes();
    return undefined;
  }

  /** Follow the layout the viewer's own toolbar picks, so the study bar's toggle tells the truth. */
  function watchViewerLayout() {
    const root = currentHost.querySelector("[data-testid=viewer]");
    if (!root) return;
    const obs = new MutationObserver(() => {
      const layout = viewer?.getLayout() || root.dataset.layout;
      if (layout && layout !== st.layout) {
        st.layout = layout;
        paintBar();
      }
    });
    obs.observe(root, { attributes: true, attributeFilter: ["data-layout"] });
    cleanups.push(() => obs.disconnect());
  }

  function paintFallbackPanes() {
    const own = !viewer?.available && st.layout === "compare";
    viewerArea.dataset.layout = own ? "compare" : "single";
    currentPane.querySelector(".pane-label")?.remove();
    if (!own) return;
    currentPane.prepend(paneLabel(`Current · ${dicomDate(st.detail?.study?.study_date) || "this study"}`, "pane-current-label"));
    const prior = priorUids()[0];
    if (!prior) {
      mount(priorPane, h("div.no-prior", { testid: "no-prior" }, icon("columns", { size: 30 }),
        h("p.no-prior-title", "No prior study"),
        h("p.muted", report() ? "The analysis found no earlier study of this patient to compare with." : "The comparison appears once the study has been analysed.")));
      return;
    }
    mount(priorPane, paneLabel("Prior study", "pane-prior-label"), h("div.no-prior", { testid: "prior-study" },
      icon("columns", { size: 30 }), h("p.no-prior-title", "Prior study"), h("p.muted", prior)));
  }

  function setLayout(layout) {
    st.layout = layout;
    if (viewer?.available) viewer.setLayout(layout);
    paintBar();
    paintFallbackPanes();
  }

  // --------------------------------------------------------------------------- actions
  function select(id, { fromViewer = false } = {}) {
    if (!id) return;
    const changed = st.selectedId !== id;
    st.selectedId = id;
    if (st.tab !== "findings") setTab("findings");
    else if (changed) paintPanel();
    const f = findings().find((x) => x.id === id);
    if (!fromViewer) viewer?.showFinding(id, f);
    const card = panelBody.querySelector(`[data-finding-id="${CSS.escape(id)}"]`);
    card?.scrollIntoView({ block: "nearest", behavior: "smooth" });
    if (!fromViewer && card && document.activeElement !== card && !card.contains(document.activeElement)) card.focus({ preventScroll: true });
  }

  async function act(findingId, fn, okText) {
    st.busyId = findingId;
    paintPanel();
    try {
      await fn();
      if (okText) toast(okText, { kind: "ok" });
      st.editingId = null;
      st.busyId = null;
      await loadAll();
      await loadHistory();
      paintPanel();
      return true;
    } catch (err) {
      st.busyId = null;
      paintPanel();
      toastError(err, "Not saved");
      return false;
    }
  }

  function decide(f, action) {
    if (!editable()) return toast(editReason());
    const current = reviewStatus(f);
    if ((action === "accept" && current === "accepted") || (action === "reject" && current === "rejected")) return undefined;
    const done = action === "accept" ? "accepted" : current === "added" ? "withdrawn" : "rejected";
    return act(f.id, () => api.decide(uid, f.id, action), `${f.id} ${done}`);
  }

  function saveEdit(f, changes) {
    if (!Object.keys(changes).length) {
      st.editingId = null;
      paintPanel();
      return undefined;
    }
    return act(f.id, () => api.editFinding(uid, f.id, changes), `${f.id} edited`);
  }

  function viewerEdit(id, changes) {
    if (!editable() || !id || !changes) return undefined;
    const body = {};
    for (const k of ["bbox_patient", "center_patient", "diameter_mm", "characterisation", "comment"]) if (changes[k] !== undefined) body[k] = changes[k];
    if (!Object.keys(body).length) return undefined;
    return act(id, () => api.editFinding(uid, id, body), `${id} moved/resized`);
  }

  async function addFinding(draft = {}) {
    const fromViewer = Boolean(draft.center_patient);
    const restoreOutlines = () => fromViewer && viewer?.setFindings(findings());
    if (!editable()) {
      restoreOutlines();
      return toast(editReason());
    }
    const markOnImage = viewer?.available && !fromViewer ? () => {
      viewer.raw.setTool?.("mark");
      toast("Draw a circle around the finding on the image; the form opens when you let go.");
    } : null;
    const body = await addFindingDialog({ seriesUid: report()?.study?.series_instance_uid, draft, onMarkOnImage: markOnImage });
    if (!body) {
      restoreOutlines();
      return undefined;
    }
    const ok = await act(null, async () => {
      const res = await api.addFinding(uid, body);
      const id = res?.id || res?.finding?.id;
      if (id) st.selectedId = id;
    }, "Finding added");
    if (!ok) restoreOutlines();
    return ok;
  }

  async function saveImpression(text) {
    try {
      await api.saveImpression(uid, text);
      st.impressionDirty = false;
      toast("Impression saved", { kind: "ok" });
      await loadReview();
      await loadHistory();
      paintPanel();
      return true;
    } catch (err) {
      toastError(err, "The impression was not saved");
      return false;
    }
  }

  async function sign() {
    const reason = signReason();
    if (reason) return toast(reason);
    if (st.impressionDirty) {
      const ok = await saveImpression(st.impressionDraft);
      if (!ok) return undefined;
    }
    const list = findings();
    const count = (s) => list.filter((f) => reviewStatus(f) === s).length;
    const p = st.detail?.study || {};
    const body = h("div.sign-summary", { testid: "sign-summary" },
      h("p", "You are signing the report of ", h("strong", personName(p.patient_name) || p.patient_id), `, ${p.study_description || "study"} of ${dicomDate(p.study_date)}.`),
      h("ul.sign-counts",
        h("li", h("span.badge.review.review-accepted", "✓"), plural(count("accepted"), "finding"), " accepted"),
        h("li", h("span.badge.review.review-rejected", "✕"), plural(count("rejected"), "finding"), " rejected"),
        h("li", h("span.badge.review.review-edited", "✎"), plural(count("edited"), "finding"), " edited"),
        h("li", h("span.badge.review.review-added", "+"), plural(count("added"), "finding"), " added")),
      h("p.muted", "Signing regenerates the report (HTML, PDF, DICOM SR, FHIR) with your changes marked against the AI's original, stores the signed SR with the study and sends it on. A signed report cannot be edited."));
    const ok = await confirm({ title: "Sign the report?", body, confirmLabel: "Sign report", tone: "sign", testid: "sign-dialog" });
    if (!ok) return undefined;
    st.signing = true;
    paintFooter();
    try {
      await api.sign(uid);
      toast("Report signed", { kind: "ok" });
      st.signing = false;
      await loadAll();
      await loadHistory();
      paintAll();
    } catch (err) {
      st.signing = false;
      paintFooter();
      toastError(err, "The report was not signed");
    }
    return undefined;
  }

  /** The next study waiting to be read (worklist order: priority, then arrival). */
  async function nextStudy() {
    try {
      const data = await api.worklist({ status: "ready", limit: 5 });
      const next = (data.items || []).find((e) => e.study_uid !== uid);
      if (next) navigate(`/studies/${encodeURIComponent(next.study_uid)}`);
      else {
        toast("No other study is waiting to be read.", { kind: "ok" });
        navigate(worklistPath());
      }
    } catch (err) {
      toastError(err, "The worklist could not be loaded");
    }
  }

  async function reanalyse() {
    const ok = await confirm({ title: "Run the analysis again?", body: h("p", "The study is queued for a new AI analysis. The current results stay until the new ones are ready."), confirmLabel: "Re-run analysis", testid: "reanalyse-dialog" });
    if (!ok) return;
    try {
      await api.analyze(uid);
      toast("Analysis queued", { kind: "ok" });
      await loadAll();
    } catch (err) {
      toastError(err, "Not queued");
    }
  }

  function setTab(tab) {
    st.tab = tab;
    if (tab === "history") loadHistory().then(() => !destroyed && st.tab === "history" && paintPanel());
    paintPanel();
  }

  // --------------------------------------------------------------------------- painting
  function paintAll() {
    paintBar();
    paintPanel();
  }

  function paintBar() {
    if (st.notFound) return mount(bar, h("a.btn.btn-ghost.btn-small", { href: href(worklistPath()), testid: "back-to-worklist" }, icon("back"), "Worklist"));
    const d = st.detail;
    if (!d) return mount(bar, h("a.btn.btn-ghost.btn-small", { href: href(worklistPath()), testid: "back-to-worklist" }, icon("back"), "Worklist"), h("span.muted", "Loading study…"));
    const p = d.study;
    const latest = (d.analyses || [])[0] || {};
    const entry = { status: p.status, analysis_status: latest.status };
    const modalities = [...new Set((d.series || []).filter((s) => !s.derived).map((s) => s.modality).filter(Boolean))];
    const rep = report();
    const age = ageAt(p.patient_birth_date, p.study_date);
    const prior = priorUids()[0];
    const compare = h("button.btn.btn-ghost.btn-small", {
      type: "button", "aria-pressed": String(st.layout === "compare"), testid: "layout-compare",
      title: `${prior ? "Show the prior study beside this one" : "Comparison layout (this study has no prior)"} (c)`,
      onclick: () => setLayout(st.layout === "compare" ? "single" : "compare"),
    }, icon("columns", { size: 14 }), st.layout === "compare" ? "Close comparison" : prior ? "Compare with prior" : "Compare");
    const rerun = can.reanalyse() && !signed() ? h("button.btn.btn-ghost.btn-small", { type: "button", onclick: reanalyse, testid: "reanalyse" }, icon("refresh", { size: 14 }), "Re-run analysis") : null;
    mount(bar,
      h("a.btn.btn-ghost.btn-small.back", { href: href(worklistPath()), testid: "back-to-worklist", title: "Back to the worklist (b)" }, icon("back"), "Worklist"),
      h("div.study-id",
        h("div.patient-line", h("span.patient", { testid: "study-patient" }, personName(p.patient_name) || "(no name)"),
          h("span.muted", [p.patient_id, p.patient_sex, age, p.patient_birth_date ? `born ${dicomDate(p.patient_birth_date)}` : ""].filter(Boolean).join(" · "))),
        h("div.study-line", { testid: "study-description" },
          [p.study_description || "Study", `${dicomDate(p.study_date)}${p.study_time ? ` ${dicomTime(p.study_time)}` : ""}`,
            modalities.join("/"), rep?.protocol ? protocolName(rep.protocol) : "", p.accession_number ? `Acc ${p.accession_number}` : ""].filter(Boolean).join(" · "))),
      h("div.study-badges", rep?.triage?.priority || latest.priority ? priorityBadge(rep?.triage?.priority || latest.priority) : null, stateBadge(signed() ? "signed" : studyState(entry), latest.error || undefined), rep?.quality ? qualityBadge(rep.quality.verdict) : null),
      h("span.spacer"),
      hasViewer() && viewer?.available !== false ? null : compare, // the viewer's toolbar has the layouts, Compare included
      rerun);
  }

  function paintTabs() {
    const counts = { findings: findings().length };
    mount(tabBar, TABS.map((t) => h("button.tab", {
      type: "button", role: "tab", "aria-selected": String(st.tab === t.key), testid: `tab-${t.key}`,
      title: `${t.label} (${t.key1})`, onclick: () => setTab(t.key),
    }, t.label, counts[t.key] !== undefined ? h("span.tab-count", String(counts[t.key])) : null)));
  }

  function signedBanner() {
    if (!signed()) return null;
    const r = st.review || {};
    return h("div.signed-banner", { testid: "signed-banner" },
      h("div.signed-head", icon("check", { size: 18 }), h("div",
        h("strong", "Signed"), r.signed_by ? h("span", ` by ${r.signed_by}`) : null,
        r.signed_at ? h("div.muted.small", { title: stamp(r.signed_at) }, when(r.signed_at)) : null)),
      h("div.signed-links", { testid: "signed-links" },
        h("a.file-link", { href: urls.reportHtml(uid), target: "_blank", rel: "noopener", testid: "signed-report-html" }, icon("file", { size: 14 }), "HTML"),
        h("a.file-link", { href: urls.reportPdf(uid), target: "_blank", rel: "noopener", testid: "signed-report-pdf" }, icon("file", { size: 14 }), "PDF"),
        h("a.file-link", { href: urls.sr(uid), download: "", testid: "signed-report-sr" }, icon("download", { size: 14 }), "DICOM SR"),
        h("a.file-link", { href: urls.fhir(uid), download: "", testid: "signed-report-fhir" }, icon("download", { size: 14 }), "FHIR")));
  }

  function noAnalysisState() {
    const d = st.detail;
    const status = d?.study?.status;
    const latest = (d?.analyses || [])[0];
    if (status === "failed" || latest?.status === "failed") {
      return h("div.panel-state.state-failed", { testid: "analysis-failed" }, icon("warn", { size: 28 }), h("h3", "The analysis failed"),
        h("p", latest?.error || "Every attempt ended in an error."),
        can.reanalyse() ? h("button.btn.btn-primary", { type: "button", onclick: reanalyse }, "Re-run analysis") : null);
    }
    if (status === "received" || status === "analysing" || latest?.status === "queued" || latest?.status === "running") {
      return h("div.panel-state", { testid: "analysis-pending" }, h("div.spinner"), h("h3", latest?.status === "running" ? "Analysing…" : "Waiting for the analysis"),
        h("p.muted", "The findings appear here when the AI analysis finishes; this page updates by itself."));
    }
    return h("div.panel-state", { testid: "analysis-none" }, icon("info", { size: 28 }), h("h3", "No analysis"),
      h("p.muted", st.noAnalysis || "This study has not been analysed."),
      can.reanalyse() ? h("button.btn.btn-ghost", { type: "button", onclick: reanalyse }, "Analyse now") : null);
  }

  function findingsTab() {
    const rep = report();
    if (!rep) return noAnalysisState();
    const list = findings();
    const reason = editReason();
    const ctx = {
      uid, report: rep, selectedId: st.selectedId, editable: editable(), signed: signed(), reason, busyId: st.busyId, editingId: st.editingId,
      onSelect: (f) => select(f.id),
      onDecide: decide,
      onEdit: (f) => {
        if (!editable()) return toast(reason);
        st.editingId = f.id;
        st.selectedId = f.id;
        paintPanel();
        return undefined;
      },
      onSaveEdit: saveEdit,
      heatmapUrl: st.heatmapUrl,
      onHeatmap: viewer?.available ? (url) => {
        st.heatmapUrl = url;
        viewer.showHeatmap(url);
        paintPanel();
      } : null,
      onCancelEdit: () => {
        st.editingId = null;
        paintPanel();
        panelBody.querySelector(`[data-finding-id="${CSS.escape(f0())}"]`)?.focus();
      },
    };
    const f0 = () => st.selectedId || "";
    const refused = rep.status === "refused";
    const viewOnly = !signed() && !can.review() && reason ? h("p.banner.banner-info", { testid: "review-view-only" }, icon("info"), reason) : null;
    return [
      viewOnly,
      refused ? h("div.banner.banner-refused", { testid: "analysis-refused" }, icon("warn"), h("div", h("strong", "Not analysed. "), rep.refusal || "")) : null,
      h("div.findings-head",
        h("span.muted", { testid: "findings-summary" }, list.length ? `${plural(list.length, "finding")} · ${list.filter((f) => reviewStatus(f) !== "ai").length} reviewed` : "No findings"),
        h("span.spacer"),
        signed() ? null : h("button.btn.btn-ghost.btn-small", { type: "button", onclick: () => addFinding(), disabled: !editable(), title: reason || "Add a finding the AI missed (n)", testid: "add-finding" }, icon("plus", { size: 14 }), "Add finding")),
      list.length ? h("div.finding-list", { testid: "finding-list" }, list.map((f) => findingCard(f, ctx)))
        : refused ? null : h("div.empty-line", { testid: "findings-empty" }, icon("check"), h("span", "The AI found nothing to report. Add a finding if you see one.")),
    ];
  }

  function reportTab() {
    const rep = report();
    if (!rep) return noAnalysisState();
    return [
      section("Impression", impressionEditor({
        impression: st.review.impression, editable: editable(), reason: editReason(),
        onSave: saveImpression,
        onDirty: (dirty, text) => {
          st.impressionDirty = dirty;
          st.impressionDraft = text;
        },
      })),
      triageSection(rep),
      recommendationsSection(rep),
      comparisonsSection(rep),
      qualitySection(rep),
      outputsSection(uid, rep, signed()),
      rep.disclaimer ? h("p.disclaimer", rep.disclaimer) : null,
    ];
  }

  function historyTab() {
    if (st.history === null) return h("div.panel-state", h("div.spinner"));
    return [st.historyError ? h("p.banner.banner-warn", icon("warn"), `The history could not be loaded (${st.historyError.message}); showing the study's events.`) : null,
      historyList(st.history)];
  }

  function paintPanel() {
    if (st.notFound) {
      mount(panelBody, h("div.panel-state", { testid: "study-not-found" }, icon("warn", { size: 28 }), h("h3", "Study not found"), h("p.muted", "It is not in this node's store.")));
      mount(footer);
      return;
    }
    if (st.loadError) {
      mount(panelBody, h("div.panel-state", icon("warn", { size: 28 }), h("h3", "The study could not be loaded"), h("p.muted", st.loadError.message),
        h("button.btn.btn-ghost", { type: "button", onclick: () => loadAll() }, "Try again")));
      return;
    }
    paintTabs();
    const scroll = panelBody.scrollTop;
    const focusedId = document.activeElement?.closest?.("[data-finding-id]")?.dataset.findingId;
    const keepImpression = st.tab === "report" && st.impressionDirty ? panelBody.querySelector("[data-testid=impression-text]") : null;
    if (keepImpression) {
      paintFooter();
      return; // do not throw away what is being typed
    }
    mount(panelBody, signedBanner(),
      st.tab === "findings" ? findingsTab() : st.tab === "report" ? reportTab() : historyTab());
    panelBody.scrollTop = scroll;
    if (focusedId && !st.editingId) panelBody.querySelector(`[data-finding-id="${CSS.escape(focusedId)}"]`)?.focus({ preventScroll: true });
    paintFooter();
  }

  function paintFooter() {
    if (!report() || report().status === "refused") return mount(footer);
    const list = findings();
    const reviewed = list.filter((f) => reviewStatus(f) !== "ai").length;
    if (signed()) {
      return mount(footer, h("div.sign-state.signed", { testid: "sign-state" }, icon("lock", { size: 16 }), "Signed — no further edits"),
        h("span.spacer"),
        h("button.btn.btn-primary", { type: "button", onclick: nextStudy, testid: "next-study", title: "Open the next study to read (])" }, "Next study", icon("next", { size: 14 })));
    }
    const reason = signReason();
    const share = list.length ? reviewed / list.length : 1;
    mount(footer,
      h("div.progress", { testid: "review-progress", title: "Findings reviewed" },
        h("div.progress-text", list.length ? `${reviewed} of ${plural(list.length, "finding")} reviewed` : "No AI findings"),
        h("div.progress-track", h("div.progress-fill", { style: { width: `${(share * 100).toFixed(0)}%` } }))),
      h("button.btn.btn-sign", {
        type: "button", testid: "sign-button", disabled: Boolean(reason) || st.signing, onclick: sign,
        title: reason || "Sign the report (Shift+S)", "aria-describedby": reason ? "sign-reason" : undefined,
      }, icon("sign", { size: 16 }), st.signing ? "Signing…" : "Sign report"),
      reason ? h("p.sign-reason#sign-reason", { testid: "sign-disabled-reason" }, reason) : null);
    return undefined;
  }

  // --------------------------------------------------------------------------- keys and live
  function moveFinding(delta) {
    const list = findings();
    if (!list.length) return;
    const i = list.findIndex((f) => f.id === st.selectedId);
    const next = list[Math.max(0, Math.min(list.length - 1, i < 0 ? 0 : i + delta))];
    select(next.id);
  }
  const selectedFinding = () => findings().find((f) => f.id === st.selectedId);
  cleanups.push(bind([
    { keys: "j", group: "Study", label: "Next finding", fn: () => moveFinding(1) },
    { keys: "k", group: "Study", label: "Previous finding", fn: () => moveFinding(-1) },
    { keys: "a", group: "Study", label: "Accept the selected finding", fn: () => selectedFinding() && decide(selectedFinding(), "accept") },
    { keys: "x", group: "Study", label: "Reject the selected finding", fn: () => selectedFinding() && decide(selectedFinding(), "reject") },
    { keys: "e", group: "Study", label: "Edit the selected finding", fn: () => {
      const f = selectedFinding();
      if (!f) return;
      if (!editable()) { toast(editReason()); return; }
      st.editingId = f.id;
      if (st.tab !== "findings") setTab("findings");
      else paintPanel();
    } },
    { keys: "n", group: "Study", label: "Add a finding", fn: () => addFinding() },
    { keys: "g i", group: "Study", label: "Edit the impression", fn: () => {
      setTab("report");
      setTimeout(() => panelBody.querySelector("[data-testid=impression-text]")?.focus(), 0);
    } },
    { keys: "Shift+S", group: "Study", label: "Sign the report", fn: sign },
    { keys: "c", group: "Study", label: "Toggle the comparison layout", fn: () => setLayout(st.layout === "compare" ? "single" : "compare") },
    { keys: "g f", group: "Study", label: "Findings tab", fn: () => setTab("findings") },
    { keys: "g r", group: "Study", label: "Report tab", fn: () => setTab("report") },
    { keys: "g h", group: "Study", label: "History tab", fn: () => setTab("history") },
    { keys: "]", group: "Study", label: "Next study to read", fn: nextStudy },
    { keys: "b", group: "Study", label: "Back to the worklist", fn: () => navigate(worklistPath()) },
  ]));
  cleanups.push(subscribe((ev) => {
    if (ev.study_uid === uid || ev.type === "overflow") scheduleRefresh();
  }));
  const beforeUnload = (ev) => {
    if (st.impressionDirty) {
      ev.preventDefault();
      ev.returnValue = "";
    }
  };
  window.addEventListener("beforeunload", beforeUnload);
  cleanups.push(() => window.removeEventListener("beforeunload", beforeUnload));

  paintAll();
  loadAll({ keepSelection: false });

  return {
    el,
    get title() {
      const p = st.detail?.study;
      return p ? `${personName(p.patient_name) || p.patient_id} · ${p.study_description || "Study"}` : "Study";
    },
    destroy() {
      destroyed = true;
      clearTimeout(refreshTimer);
      for (const c of cleanups) c();
      viewer?.destroy();
    },
  };
}

