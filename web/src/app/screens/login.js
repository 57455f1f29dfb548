// Sign-in: username and password -> POST /api/login, then back to where the user was going.
import { api } from "../api.js";
import { h } from "../dom.js";
import { startLive } from "../live.js";
import { navigate } from "../router.js";
import { setUser } from "../session.js";
import { icon, logo } from "../ui/icons.js";

export function loginScreen({ query }) {
  const next = query.next && query.next.startsWith("/") && !query.next.startsWith("//") ? query.next : "/";
  const username = h("input.input", { id: "login-username", name: "username", autocomplete: "username", required: true, autofocus: true, spellcheck: "false", autocapitalize: "none", testid: "login-username" });
  const password = h("input.input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: true, testid: "login-password" });
  const error = h("p.form-error", { role: "alert", testid: "login-error", hidden: true });
  const submit = h("button.btn.btn-primary.btn-block", { type: "submit", testid: "login-submit" }, "Sign in");

  const form = h("form.login-form", {
    testid: "login-form",
    onsubmit: async (ev) => {
      ev.preventDefault();
      error.hidden = true;
      submit.disabled = true;
      submit.textContent = "Signing in…";
      try {
        const user = await api.login(username.value.trim(), password.value);
        setUser(user);
        startLive();
        navigate(next, { replace: true });
      } catch (err) {
        error.textContent = err.status === 401 ? "Wrong username or password." : err.message;
        error.hidden = false;
        password.select();
        submit.disabled = false;
        submit.textContent = "Sign in";
      }
    },
  },
  h("label.field", { for: "login-username" }, h("span.field-label", "Username"), username),
  h("label.field", { for: "login-password" }, h("span.field-label", "Password"), password),
  error, submit);

  const el = h("div.login-page", { testid: "login-page" },
    h("section.login-card",
      h("div.login-brand", logo(40), h("div", h("div.login-title", "medimg"), h("div.login-sub", "Radiology workstation"))),
      form,
      h("p.login-note", icon("lock", { size: 14 }), "Access is logged. Use your own account; sessions end when you sign out.")),
    h("p.login-foot", "Computer-generated analyses are for review by a qualified radiologist. They are not a diagnosis."));
  setTimeout(() => username.focus(), 0);
  return { el, title: "Sign in" };
}
