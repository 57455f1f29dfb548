// Short messages in the lower right corner; errors stay until dismissed.
import { h } from "../dom.js";
import { icon } from "./icons.js";

let host = null;

function ensureHost() {
  if (!host) {
    host = h("div.toasts", { role: "status", "aria-live": "polite", testid: "toasts" });
    document.body.append(host);
  }
  return host;
}

export function toast(message, { kind = "info", timeout } = {}) {
  const glyph = { ok: "check", error: "warn", info: "info" }[kind] || "info";
  const close = () => {
    el.classList.add("leaving");
    setTimeout(() => el.remove(), 180);
  };
  const el = h(`div.toast.toast-${kind}`, { testid: `toast-${kind}` },
    icon(glyph), h("span.toast-text", message),
    h("button.icon-button.toast-close", { type: "button", "aria-label": "Dismiss", onclick: close }, icon("cross", { size: 14 })));
  ensureHost().append(el);
  const ms = timeout ?? (kind === "error" ? 0 : 3500);
  if (ms) setTimeout(close, ms);
  return close;
}

export function toastError(err, what) {
  const msg = err?.message || String(err);
  return toast(what ? `${what}: ${msg}` : msg, { kind: "error" });
}
