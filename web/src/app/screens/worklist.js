// The worklist: studies by triage priority then arrival, with filters, search and live updates.
import { api } from "../api.js";
import { $$, h, mount } from "../dom.js";
import { ageAt, ago, dicomDate, personName, plural, stamp } from "../format.js";
import { bind } from "../keys.js";
import { MODALITIES, protocolName } from "../labels.js";
import { liveState, onLiveState, subscribe } from "../live.js";
import { href, navigate, setQuery } from "../router.js";
import { PRIORITY, STATE, priorityBadge, qualityBadge, stateBadge, studyState } from "../ui/badges.js";
import { icon } from "../ui/icons.js";
import { loadViewerModule } from "../viewer-host.js";

const PAGE = 50;

let lastSearch = "";

/** The worklist as the user left it (its filters), for "back to the worklist". */
/**
 * Fetch the viewer's code once the worklist is on screen and the browser is idle, so the first study
 * opened in a session does not wait for the viewer chunk (~4 MB): the worklist itself stays light.
 */
function prefetchViewer() {
  const run = () => loadViewerModule().catch(() => {});
  if ("requestIdleCallback" in window) window.requestIdleCallback(run, { timeout: 3000 });
  else setTimeout(run, 1000);
}

export function worklistPath() {
  return `/${lastSearch}`;
}

/** Status filter choices: label -> the statuses the API matches (study or analysis status). */
const STATUS_FILTERS = [
  { key: "", label: "All" },
  { key: "ready", label: "To read", statuses: ["ready"] },
  { key: "received", label: "Received", statuses: ["received"] },
  { key: "analysing", label: "Analysing", statuses: ["analysing", "queued", "running"] },
  { key: "signed", label: "Signed", statuses: ["signed"] },
  { key: "failed", label: "Failed / refused", statuses: ["failed", "refused", "skipped"] },
];

function parseQuery(query) {
  const list = (v) => (v ? String(v).split(",").filter(Boolean) : []);
  return {
    status: STATUS_FILTERS.some((f) => f.key === query.status) ? query.status : "",
    priority: list(query.priority).filter((p) => p in PRIORITY),
    modality: (query.modality || "").toUpperCase(),
    q: query.q || "",
    offset: Math.max(0, Number.parseInt(query.offset, 10) || 0),
  };
}

export function worklistScreen({ query }) {
  const state = { ...parseQuery(query), items: [], total: 0, loading: false, error: null, selected: null };
  let previous = new Map(); // study_uid -> signature, to mark what changed
  let controller = null;
  let reloadTimer = null;
  let firstLoad = true;
  const cleanups = [];

  // ----------------------------------------------------------------------------- controls
  const search = h("input.input.search-input", {
    type: "search", placeholder: "Search patient, ID, description, accession", value: state.q,
    "aria-label": "Search the worklist", testid: "worklist-search",
    oninput: () => {
      clearTimeout(reloadTimer);
      reloadTimer = setTimeout(() => {
        state.q = search.value.trim();
        state.offset = 0;
        load();
      }, 250);
    },
    onkeydown: (ev) => {
      if (ev.key === "Escape") {
        search.value = "";
        state.q = "";
        load();
        search.blur();
      } else if (ev.key === "ArrowDown" || ev.key === "Enter") {
        ev.preventDefault();
        focusRow(0);
      }
    },
  });

  const statusButtons = STATUS_FILTERS.map((f) => h("button.seg-button", {
    type: "button", testid: `filter-status-${f.key || "all"}`, dataset: { key: f.key },
    "aria-pressed": String(state.status === f.key),
    onclick: () => {
      state.status = f.key;
      state.offset = 0;
      paintControls();
      load();
    },
  }, f.label));

  const priorityButtons = Object.entries(PRIORITY).map(([key, p]) => h(`button.chip.chip-prio.prio-${key}`, {
    type: "button", testid: `filter-priority-${key}`, dataset: { key }, "aria-pressed": String(state.priority.includes(key)),
    title: `Show ${p.label.toLowerCase()} studies${state.priority.length ? "" : " only"}`,
    onclick: () => {
      state.priority = state.priority.includes(key) ? state.priority.filter((x) => x !== key) : [...state.priority, key];
      state.offset = 0;
      paintControls();
      load();
    },
  }, h("span.glyph", { "aria-hidden": "true" }, p.glyph), p.label));

  const modalitySelect = h("select.select", {
    "aria-label": "Modality", testid: "filter-modality",
    onchange: () => {
      state.modality = modalitySelect.value;
      state.offset = 0;
      load();
    },
  }, h("option", { value: "" }, "All modalities"), MODALITIES.map((m) => h("option", { value: m, selected: state.modality === m }, m)));

  const clearButton = h("button.btn.btn-ghost.btn-small", {
    type: "button", testid: "filter-clear",
    onclick: () => {
      Object.assign(state, { status: "", priority: [], modality: "", q: "", offset: 0 });
      search.value = "";
      modalitySelect.value = "";
      paintControls();
      load();
    },
  }, "Clear filters");

  const refreshButton = h("button.icon-button", { type: "button", title: "Refresh (r)", "aria-label": "Refresh", testid: "worklist-refresh", onclick: () => load() }, icon("refresh", { size: 18 }));

  function paintControls() {
    for (const b of statusButtons) b.setAttribute("aria-pressed", String(b.dataset.key === state.status));
    for (const b of priorityButtons) b.setAttribute("aria-pressed", String(state.priority.includes(b.dataset.key)));
    clearButton.hidden = !(state.status || state.priority.length || state.modality || state.q);
  }

  // ----------------------------------------------------------------------------- table
  const countEl = h("span.count", { testid: "worklist-count" });
  const announce = h("div.sr-only", { "aria-live": "polite", testid: "worklist-announce" });
  const tbody = h("tbody", { testid: "worklist-body" });
  const table = h("table.worklist", { testid: "worklist-table" },
    h("thead", h("tr",
      h("th.col-prio", { scope: "col" }, "Priority"),
      h("th.col-patient", { scope: "col" }, "Patient"),
      h("th.col-study", { scope: "col" }, "Study"),
      h("th.col-mod", { scope: "col" }, "Mod."),
      h("th.col-protocol", { scope: "col" }, "Protocol"),
      h("th.col-status", { scope: "col" }, "Status"),
      h("th.col-finding", { scope: "col" }, "Key finding"),
      h("th.col-quality", { scope: "col" }, "Quality"),
      h("th.col-received", { scope: "col" }, "Received"))),
    tbody);
  const emptyEl = h("div.empty-state", { testid: "worklist-empty", hidden: true });
  const errorEl = h("div.banner.banner-error", { role: "alert", testid: "worklist-error", hidden: true });
  const pager = h("div.pager", { testid: "worklist-pager" });

  function signature(e) {
    return [e.status, e.analysis_status, e.priority, e.key_finding, e.quality].join("|");
  }

  function open(uid) {
    navigate(`/studies/${encodeURIComponent(uid)}`);
  }

  function row(e) {
    const st = studyState(e);
    const sex = e.patient_sex ? e.patient_sex : "";
    const age = ageAt(e.patient_birth_date, e.study_date);
    const failedWhy = e.error ? `${STATE[st]?.help || ""}. Last error: ${e.error}` : undefined;
    const finding = e.key_finding || (st === "failed" && e.error ? `Analysis failed: ${e.error}` : st === "analysing" || st === "queued" || st === "received" ? "" : "—");
    const tr = h("tr.wl-row", {
      tabindex: "0", testid: "worklist-row",
      dataset: { studyUid: e.study_uid, status: st, priority: e.priority || "none" },
      "aria-label": `${personName(e.patient_name) || e.patient_id}, ${e.study_description || "study"}, ${STATE[st]?.label || st}${e.priority ? `, ${e.priority}` : ""}`,
      onclick: (ev) => {
        if (ev.target.closest("a")) return;
        open(e.study_uid);
      },
      onkeydown: (ev) => {
        if (ev.key === "Enter") {
          ev.preventDefault();
          open(e.study_uid);
        }
      },
      onfocus: () => (state.selected = e.study_uid),
    },
    h("td.col-prio", priorityBadge(e.priority)),
    h("td.col-patient",
      h("a.patient-name", { href: href(`/studies/${encodeURIComponent(e.study_uid)}`), tabindex: "-1", testid: "worklist-open" }, personName(e.patient_name) || "(no name)"),
      h("div.sub", [e.patient_id, [sex, age].filter(Boolean).join(" · ")].filter(Boolean).join(" · "))),
    h("td.col-study",
      h("div.study-desc", e.study_description || "(no description)"),
      h("div.sub", [dicomDate(e.study_date), e.accession_number ? `Acc ${e.accession_number}` : "", e.instances ? plural(e.instances, "image") : ""].filter(Boolean).join(" · "))),
    h("td.col-mod", (e.modalities || []).map((m) => h("span.mod", m))),
    h("td.col-protocol", protocolName(e.protocol) || h("span.muted", "—")),
    h("td.col-status", stateBadge(st, failedWhy), e.attempts > 1 && st !== "ready" && st !== "signed" ? h("div.sub", `attempt ${e.attempts}`) : null),
    h("td.col-finding", { title: e.key_finding || e.error || "" }, h("span.key-finding", { class: st === "failed" || st === "refused" ? "key-finding-bad" : "", testid: "worklist-key-finding" }, finding)),
    h("td.col-quality", qualityBadge(e.quality)),
    h("td.col-received", { title: stamp(e.first_received) }, h("span.time", { dataset: { t: e.first_received } }, ago(e.first_received))));
    return tr;
  }

  function paintRows() {
    const focusedUid = document.activeElement?.closest?.("tr.wl-row")?.dataset.studyUid;
    const added = [];
    const rows = state.items.map((e) => {
      const tr = row(e);
      const before = previous.get(e.study_uid);
      if (!firstLoad && before === undefined) {
        tr.classList.add("row-new");
        added.push(e);
      } else if (!firstLoad && before !== signature(e)) {
        tr.classList.add("row-changed");
      }
      return tr;
    });
    mount(tbody, rows);
    previous = new Map(state.items.map((e) => [e.study_uid, signature(e)]));
    if (added.length) announce.textContent = `${added.length} new ${added.length === 1 ? "study" : "studies"} in the worklist`;
    if (focusedUid) rows.find((r) => r.dataset.studyUid === focusedUid)?.focus({ preventScroll: true });
    const filtered = state.status || state.priority.length || state.modality || state.q;
    emptyEl.hidden = state.items.length > 0 || Boolean(state.error);
    table.hidden = state.items.length === 0;
    if (!state.items.length) {
      mount(emptyEl,
        h("div.empty-icon", icon(filtered ? "search" : "list", { size: 28 })),
        h("h2", filtered ? "No study matches these filters" : "No studies yet"),
        h("p", filtered ? "Change or clear the filters to see more studies."
          : "Studies sent to this node over DICOM (C-STORE) or DICOMweb (STOW-RS) appear here as they arrive, and are analysed automatically."),
        filtered ? h("button.btn.btn-ghost", { type: "button", onclick: () => clearButton.click() }, "Clear filters") : null);
    }
    const from = state.total ? state.offset + 1 : 0;
    const to = state.offset + state.items.length;
    countEl.textContent = state.total === 1 ? "1 study" : `${state.total} studies`;
    mount(pager,
      h("span.muted", state.total ? `${from}–${to} of ${state.total}` : ""),
      h("button.btn.btn-ghost.btn-small", { type: "button", disabled: state.offset === 0, testid: "worklist-prev", onclick: () => { state.offset = Math.max(0, state.offset - PAGE); load(); } }, icon("back"), "Previous"),
      h("button.btn.btn-ghost.btn-small", { type: "button", disabled: to >= state.total, testid: "worklist-next", onclick: () => { state.offset += PAGE; load(); } }, "Next", icon("next")));
    pager.hidden = state.total <= PAGE;
  }

  async function load({ quiet = false } = {}) {
    const f = STATUS_FILTERS.find((x) => x.key === state.status);
    setQuery({ status: state.status, priority: state.priority, modality: state.modality, q: state.q, offset: state.offset || "" });
    lastSearch = location.search;
    paintControls();
    controller?.abort();
    controller = new AbortController();
    if (!quiet) el.classList.add("loading");
    try {
      const data = await api.worklist({
        status: f?.statuses?.join(","), priority: state.priority.join(","), modality: state.modality,
        q: state.q, limit: PAGE, offset: state.offset,
      }, controller.signal);
      state.items = data.items || [];
      state.total = data.total ?? state.items.length;
      state.error = null;
      errorEl.hidden = true;
      paintRows();
      if (firstLoad) prefetchViewer();
      firstLoad = false;
    } catch (err) {
      if (err.name === "AbortError") return;
      state.error = err;
      errorEl.hidden = false;
      mount(errorEl, icon("warn"), h("span", `The worklist could not be loaded: ${err.message}`),
        h("button.btn.btn-ghost.btn-small", { type: "button", onclick: () => load() }, "Try again"));
      emptyEl.hidden = true;
    } finally {
      el.classList.remove("loading");
    }
  }

  function scheduleReload() {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(() => load({ quiet: true }), 300);
  }

  // ----------------------------------------------------------------------------- keyboard
  function rows() {
    return $$("tr.wl-row", tbody);
  }
  function focusRow(i) {
    const list = rows();
    if (!list.length) return;
    list[Math.max(0, Math.min(list.length - 1, i))].focus();
  }
  function move(delta) {
    const list = rows();
    const i = list.indexOf(document.activeElement);
    focusRow(i < 0 ? 0 : i + delta);
  }
  cleanups.push(bind([
    { keys: ["j", "ArrowDown"], group: "Worklist", label: "Next study", fn: () => move(1) },
    { keys: ["k", "ArrowUp"], group: "Worklist", label: "Previous study", fn: () => move(-1) },
    { keys: "Enter", group: "Worklist", label: "Open the selected study", fn: () => {
      const r = document.activeElement?.closest?.("tr.wl-row") || rows()[0];
      if (r) open(r.dataset.studyUid);
    } },
    { keys: "/", group: "Worklist", label: "Search", fn: () => search.focus() },
    { keys: "r", group: "Worklist", label: "Refresh", fn: () => load() },
    { keys: "u", group: "Worklist", label: "Show urgent studies only (toggle)", fn: () => priorityButtons[0].click() },
    { keys: "Escape", group: "Worklist", label: "Clear filters", fn: () => clearButton.click() },
  ]));

  // ----------------------------------------------------------------------------- live
  cleanups.push(subscribe((ev) => {
    if (ev.study_uid || ev.type === "study" || ev.type === "overflow") scheduleReload();
  }));
  const pollTimer = setInterval(() => {
    if (liveState() !== "live") load({ quiet: true });
    for (const t of $$("span.time", tbody)) t.textContent = ago(Number(t.dataset.t) || t.dataset.t);
  }, 30000);
  cleanups.push(onLiveState((s) => {
    if (s === "live" && !firstLoad) scheduleReload(); // catch up with what happened while offline
  }));

  const el = h("section.page.worklist-page", { testid: "worklist-page" },
    h("div.page-head",
      h("div.page-title-row", h("h1.page-title", "Worklist"), countEl, refreshButton),
      h("div.toolbar",
        h("label.search", icon("search"), search),
        h("div.seg", { role: "group", "aria-label": "Status" }, statusButtons),
        h("div.chips", { role: "group", "aria-label": "Priority" }, priorityButtons),
        modalitySelect, clearButton)),
    errorEl,
    h("div.table-wrap", table, emptyEl),
    pager, announce);

  paintControls();
  load();
  setTimeout(() => {
    if (document.activeElement === document.body || !document.activeElement) rows()[0]?.focus({ preventScroll: true });
  }, 400);

  return {
    el, title: "Worklist",
    destroy() {
      controller?.abort();
      clearTimeout(reloadTimer);
      clearInterval(pollTimer);
      for (const c of cleanups) c();
    },
  };
}
