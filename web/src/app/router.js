// History-API router under /ui/ (the server answers index.html for every app route).
// Routes: "/" worklist, "/studies/:uid", "/dashboard", "/login".

export const BASE = "/ui";

const routes = [];
let current = null; // { screen, cleanup }
let renderFn = null;

/** route("/studies/:uid", handler) — handler({params, query, path}) */
export function route(pattern, handler) {
  const keys = [];
  const rx = new RegExp(`^${pattern.replace(/\/:([a-z]+)/gi, (_, k) => { keys.push(k); return "/([^/]+)"; })}/?$`);
  routes.push({ rx, keys, handler });
}

export function appPath() {
  const p = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : location.pathname;
  return p || "/";
}

export function href(path) {
  return `${BASE}${path.startsWith("/") ? path : `/${path}`}`;
}

export function navigate(path, { replace = false } = {}) {
  const url = href(path);
  if (url === location.pathname + location.search && !replace) return resolve();
  history[replace ? "replaceState" : "pushState"]({}, "", url);
  return resolve();
}

/** Update the query string of the current route without re-rendering (filters). */
export function setQuery(params) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === "" || (Array.isArray(v) && !v.length)) continue;
    qs.set(k, Array.isArray(v) ? v.join(",") : v);
  }
  const search = qs.toString();
  history.replaceState(history.state, "", location.pathname + (search ? `?${search}` : ""));
}

export function resolve() {
  const path = appPath();
  const query = Object.fromEntries(new URLSearchParams(location.search));
  for (const r of routes) {
    const m = r.rx.exec(path);
    if (m) {
      const params = Object.fromEntries(r.keys.map((k, i) => [k, decodeURIComponent(m[i + 1])]));
      return renderFn({ handler: r.handler, params, query, path });
    }
  }
  return renderFn({ handler: null, params: {}, query, path });
}

export function startRouter(render) {
  renderFn = render;
  window.addEventListener("popstate", () => resolve());
  document.addEventListener("click", (ev) => {
    if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    const a = ev.target.closest("a[href]");
    if (!a || a.target || a.hasAttribute("download") || a.origin !== location.origin) return;
    if (!a.pathname.startsWith(`${BASE}/`) && a.pathname !== BASE) return;
    ev.preventDefault();
    history.pushState({}, "", a.pathname + a.search);
    resolve();
  });
  return resolve();
}

export function setCurrent(screen) {
  if (current && current !== screen && typeof current.destroy === "function") {
    try {
      current.destroy();
    } catch (err) {
      console.error(err);
    }
  }
  current = screen;
}
