// Modal dialogs on <dialog>: confirm() resolves true/false; Esc cancels, focus returns where it was.
import { h } from "../dom.js";

export function openDialog({ title, body, actions, testid = "dialog", wide = false, onClose }) {
  const previous = document.activeElement;
  const dlg = h("dialog.modal", { class: wide ? "modal-wide" : "", testid, "aria-labelledby": `${testid}-title` },
    h("form.modal-form", { method: "dialog" },
      h("h2.modal-title", { id: `${testid}-title` }, title),
      h("div.modal-body", body),
      h("div.modal-actions", actions)));
  dlg.addEventListener("close", () => {
    dlg.remove();
    onClose?.(dlg.returnValue);
    if (previous && previous.focus) previous.focus();
  });
  dlg.addEventListener("click", (ev) => {
    if (ev.target === dlg) dlg.close("cancel");
  });
  document.body.append(dlg);
  dlg.showModal();
  return dlg;
}

/** await confirm({title, body, confirmLabel, danger}) -> boolean */
export function confirm({ title, body, confirmLabel = "OK", cancelLabel = "Cancel", tone = "primary", testid = "confirm-dialog" }) {
  return new Promise((resolve) => {
    const ok = h(`button.btn.btn-${tone}`, { type: "submit", value: "ok", testid: `${testid}-confirm` }, confirmLabel);
    const dlg = openDialog({
      title, body, testid,
      actions: [h("button.btn.btn-ghost", { type: "submit", value: "cancel", testid: `${testid}-cancel` }, cancelLabel), ok],
      onClose: (value) => resolve(value === "ok"),
    });
    setTimeout(() => ok.focus(), 0);
    return dlg;
  });
}
