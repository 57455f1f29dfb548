// Short messages just under the header, centred: there they sit over the study bar, not over the
// image or the side panel's tabs.  At most MAX_VISIBLE at once, newest on top; a message identical to
// one still shown refreshes that one (with a count) instead of stacking.  Errors stay until dismissed.
import { h } from "../dom.js";
import { icon } from "./icons.js";

const MAX_VISIBLE = 2;
const LIFETIME_MS = 2500;

let host = null;
/** The toasts shown, newest first: {el, key, count, timer, close, countEl, kind}. */
const shown = [];

function ensureHost() {
  if (!host || !host.isConnected) {
    host = h("div.toasts", { role: "status", "aria-live": "polite", testid: "toasts" });
    document.body.append(host);
  }
  return host;
}

function arm(t, ms) {
  clearTimeout(t.timer);
  t.timer = ms ? setTimeout(t.close, ms) : null;
}

export function toast(message, { kind = "info", timeout } = {}) {
  const ms = timeout ?? (kind === "error" ? 0 : LIFETIME_MS);
  const key = `${kind}\u0000${message}`;
  const same = shown.find((x) => x.key === key);
  if (same) {
    same.count += 1;
    same.countEl.textContent = `×${same.count}`;
    same.countEl.hidden = false;
    shown.splice(shown.indexOf(same), 1);
    shown.unshift(same);
    ensureHost().prepend(same.el);
    arm(same, ms);
    return same.close;
  }
  const glyph = { ok: "check", error: "warn", info: "info" }[kind] || "info";
  const t = { key, kind, count: 1, timer: null, el: null, countEl: h("span.toast-count", { hidden: true }), close: null };
  t.close = () => {
    clearTimeout(t.timer);
    const i = shown.indexOf(t);
    if (i < 0) return;
    shown.splice(i, 1);
    t.el.classList.add("leaving");
    setTimeout(() => t.el.remove(), 180);
  };
  t.el = h(`div.toast.toast-${kind}`, { testid: `toast-${kind}` },
    icon(glyph), h("span.toast-text", message), t.countEl,
    h("button.icon-button.toast-close", { type: "button", "aria-label": "Dismiss", onclick: t.close }, icon("cross", { size: 14 })));
  shown.unshift(t);
  ensureHost().prepend(t.el);
  arm(t, ms);
  // over the cap: the oldest goes first, a transient one before an error the user has not dismissed
  while (shown.length > MAX_VISIBLE) {
    const old = [...shown].reverse();
    (old.find((x) => x.kind !== "error") || old[0]).close();
  }
  return t.close;
}

export function toastError(err, what) {
  const msg = err?.message || String(err);
  return toast(what ? `${what}: ${msg}` : msg, { kind: "error" });
}
