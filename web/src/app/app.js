// The application shell: header (brand, navigation, live indicator, user, sign-out), the routes and
// the global shortcuts.  Every screen is a function (ctx) -> {el, destroy?, title?}.
import { api, onUnauthorized } from "./api.js";
import { h, mount } from "./dom.js";
import { bind, showHelp, startKeys } from "./keys.js";
import { liveState, onLiveState, startLive, stopLive } from "./live.js";
import { appPath, href, navigate, route, setCurrent, startRouter } from "./router.js";
import { initials } from "./labels.js";
import { ROLE_LABEL, currentUser, loadUser, setUser } from "./session.js";
import { dashboardScreen } from "./screens/dashboard.js";
import { loginScreen } from "./screens/login.js";
import { studyScreen } from "./screens/study.js";
import { worklistScreen } from "./screens/worklist.js";
import { icon, logo } from "./ui/icons.js";
import { toast } from "./ui/toast.js";

let root = null;
let shell = null; // {el, main, nav}
let renderSeq = 0;

const LIVE_LABEL = { live: "Live", connecting: "Connecting…", offline: "Offline" };

function liveIndicator() {
  const el = h("span.live", { testid: "live-indicator", role: "status" });
  const paint = (s) => {
    el.dataset.state = s;
    el.title = s === "live" ? "Live updates on: the worklist follows new studies and analyses"
      : s === "connecting" ? "Connecting to live updates…" : "Live updates are off; lists refresh when you reload";
    mount(el, h("span.live-dot", { "aria-hidden": "true" }), LIVE_LABEL[s] || s);
  };
  paint(liveState());
  onLiveState(paint);
  return el;
}

async function signOut() {
  try {
    await api.logout();
  } catch {
    // the session may already be gone; sign out locally anyway
  }
  stopLive();
  setUser(null);
  navigate("/login", { replace: true });
}

function buildShell() {
  const user = currentUser();
  const navLink = (path, label, glyph, testid) =>
    h("a.nav-link", { href: href(path), testid, dataset: { path } }, icon(glyph), label);
  const nav = h("nav.nav", { "aria-label": "Main" },
    navLink("/", "Worklist", "list", "nav-worklist"),
    navLink("/dashboard", "Quality", "chart", "nav-dashboard"));
  const userBox = h("div.user", { testid: "current-user" },
    h("span.avatar", { "aria-hidden": "true" }, initials(user.display_name || user.username)),
    h("span.user-text",
      h("span.user-name", { testid: "current-user-name" }, user.display_name || user.username),
      h("span.user-role", { testid: "current-user-role", dataset: { role: user.role } }, ROLE_LABEL[user.role] || user.role)));
  const header = h("header.topbar",
    h("a.brand", { href: href("/"), "aria-label": "medimg worklist" }, logo(24), h("span.brand-name", "medimg"), h("span.brand-sub", "Workstation")),
    nav,
    h("div.topbar-right",
      liveIndicator(),
      h("button.icon-button", { type: "button", title: "Keyboard shortcuts (?)", "aria-label": "Keyboard shortcuts", onclick: showHelp, testid: "shortcuts-button" }, icon("keyboard", { size: 18 })),
      userBox,
      h("button.btn.btn-ghost.btn-small", { type: "button", onclick: signOut, testid: "sign-out" }, icon("logout"), "Sign out")));
  const main = h("main.main", { id: "main" });
  const el = h("div.shell", header, main);
  return { el, main, nav };
}

function highlightNav(path) {
  if (!shell) return;
  for (const a of shell.nav.querySelectorAll("a")) {
    const p = a.dataset.path;
    const active = p === "/" ? path === "/" || path.startsWith("/studies") : path.startsWith(p);
    a.classList.toggle("active", active);
    if (active) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

async function render({ handler, params, query, path }) {
  const seq = ++renderSeq;
  const user = currentUser();
  if (!user && path !== "/login") {
    const next = path === "/" && !location.search ? "" : `?next=${encodeURIComponent(path + location.search)}`;
    return navigate(`/login${next}`, { replace: true });
  }
  if (user && path === "/login") return navigate(query.next && query.next.startsWith("/") ? query.next : "/", { replace: true });
  let screen;
  if (!handler) {
    screen = { el: h("section.empty-page", { testid: "not-found" }, h("h1", "Page not found"), h("p", "This address is not a page of the workstation."), h("a.btn.btn-primary", { href: href("/") }, "Open the worklist")), title: "Not found" };
  } else {
    screen = handler({ params, query, path });
  }
  if (seq !== renderSeq) return;
  setCurrent(screen);
  if (path === "/login") {
    shell = null;
    mount(root, screen.el);
  } else {
    if (!shell || !root.contains(shell.el)) {
      shell = buildShell();
      mount(root, shell.el);
    }
    mount(shell.main, screen.el);
    highlightNav(path);
  }
  document.title = screen.title ? `${screen.title} · medimg` : "medimg workstation";
}

export async function startApp(el) {
  root = el;
  route("/", worklistScreen);
  route("/studies/:uid", studyScreen);
  route("/dashboard", dashboardScreen);
  route("/login", loginScreen);
  onUnauthorized(() => {
    if (!currentUser()) return;
    stopLive();
    setUser(null);
    toast("Your session has ended. Please sign in again.", { kind: "info" });
    const p = appPath();
    navigate(`/login?next=${encodeURIComponent(p + location.search)}`, { replace: true });
  });
  startKeys();
  bind([
    { keys: "?", group: "General", label: "Show keyboard shortcuts", fn: showHelp },
    { keys: "g w", group: "General", label: "Go to the worklist", fn: () => navigate("/"), when: () => currentUser() },
    { keys: "g d", group: "General", label: "Go to the quality dashboard", fn: () => navigate("/dashboard"), when: () => currentUser() },
  ]);
  mount(root, h("div.boot", h("div.spinner", { "aria-label": "Loading" })));
  const user = await loadUser();
  if (user) startLive();
  await startRouter(render);
}
