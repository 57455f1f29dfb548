// Keyboard shortcuts.  Screens bind() theirs and get back an unbind function; "?" lists the active
// ones.  Keys are ignored while typing in a field, except those marked {inFields: true}.
// A key is "k", "Shift+S", "Ctrl+s" (Ctrl also matches Cmd), "ArrowDown" or a sequence "g w".
import { h } from "./dom.js";
import { openDialog } from "./ui/dialog.js";

const bindings = []; // {keys, group, label, fn, inFields, hidden}
let pending = null; // first key of a sequence
let pendingTimer = null;

function keyName(ev) {
  let k = ev.key;
  if (k === " ") k = "Space";
  if (k.length === 1 && !ev.shiftKey) k = k.toLowerCase();
  const mods = [];
  if (ev.ctrlKey || ev.metaKey) mods.push("Ctrl");
  if (ev.altKey) mods.push("Alt");
  if (ev.shiftKey && k.length > 1) mods.push("Shift");
  if (ev.shiftKey && k.length === 1 && /[A-Z]/.test(k)) mods.push("Shift");
  return [...mods, k.length === 1 && mods.includes("Shift") ? k.toUpperCase() : k].join("+");
}

function typing(target) {
  if (!target || !(target instanceof Element)) return false;
  return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
}

export function bind(list) {
  const added = list.map((b) => ({ ...b, keys: [].concat(b.keys) }));
  bindings.push(...added);
  return () => {
    for (const b of added) {
      const i = bindings.indexOf(b);
      if (i >= 0) bindings.splice(i, 1);
    }
  };
}

function onKey(ev) {
  if (ev.defaultPrevented || ev.isComposing) return;
  if (document.querySelector("dialog[open]")) return; // a modal handles its own keys (Esc closes it)
  const name = keyName(ev);
  if (["Shift", "Control", "Alt", "Meta"].includes(ev.key)) return;
  const inField = typing(ev.target);
  const seq = pending ? `${pending} ${name}` : null;
  const candidates = bindings.filter((b) => !inField || b.inFields);
  // newest bindings win (a screen's keys over the global ones)
  for (let i = candidates.length - 1; i >= 0; i -= 1) {
    const b = candidates[i];
    if ((seq && b.keys.includes(seq)) || b.keys.includes(name)) {
      const when = typeof b.when === "function" ? b.when() : true;
      if (!when) continue;
      ev.preventDefault();
      pending = null;
      b.fn(ev);
      return;
    }
  }
  if (!inField && !ev.ctrlKey && !ev.metaKey && !ev.altKey && bindings.some((b) => b.keys.some((k) => k.startsWith(`${name} `)))) {
    pending = name;
    clearTimeout(pendingTimer);
    pendingTimer = setTimeout(() => (pending = null), 1200);
    return;
  }
  pending = null;
}

export function startKeys() {
  document.addEventListener("keydown", onKey);
}

function kbd(combo) {
  return combo.split(" ").map((part, i) => [i ? h("span.kbd-then", "then") : null,
    ...part.split("+").map((k) => h("kbd", { "Ctrl": "Ctrl", "ArrowDown": "↓", "ArrowUp": "↑", "Escape": "Esc", "Enter": "Enter" }[k] || k))]);
}

export function showHelp() {
  if (document.querySelector("dialog[data-testid=shortcuts-dialog]")) return;
  const groups = new Map();
  for (const b of bindings) {
    if (b.hidden) continue;
    const g = groups.get(b.group || "General") || [];
    if (!g.some((x) => x.label === b.label)) g.push(b);
    groups.set(b.group || "General", g);
  }
  const body = h("div.shortcut-groups", [...groups.entries()].map(([group, list]) =>
    h("section.shortcut-group", h("h3", group),
      h("dl.shortcuts", list.map((b) => [h("dt", b.keys.map((k, i) => [i ? h("span.kbd-or", "/") : null, kbd(k)])), h("dd", b.label)])))));
  openDialog({
    title: "Keyboard shortcuts", body, testid: "shortcuts-dialog", wide: true,
    actions: [h("button.btn.btn-primary", { type: "submit", value: "ok" }, "Close")],
  });
}
