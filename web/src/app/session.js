// The signed-in user ({username, display_name, role}) and what the role may do.
import { api } from "./api.js";

let user = null;
const listeners = new Set();

export function currentUser() {
  return user;
}

// Whether this browser believes it has a session.  The session cookie (medimg_session) is HttpOnly, so
// the page cannot see it; without a hint, every visit to the sign-in page would ask GET /api/me, get
// the 401 the API contract prescribes, and the browser would log that 401 as a console error.  So a
// small, non-secret flag in localStorage is set when a user is known (sign-in, a successful /api/me)
// and cleared when there is none (sign-out, any 401, a failed /api/me); /api/me is only asked while it
// is set.  It grants nothing: the server still decides with the cookie.  A cookie without the flag
// (e.g. a session from before this version) just means signing in once more.
export const SESSION_HINT = "medimg.session";

function hint() {
  try {
    return window.localStorage.getItem(SESSION_HINT) === "1";
  } catch {
    return true; // no storage (privacy settings): ask the server as before
  }
}

function setHint(on) {
  try {
    if (on) window.localStorage.setItem(SESSION_HINT, "1");
    else window.localStorage.removeItem(SESSION_HINT);
  } catch {
    // no storage: nothing to remember
  }
}

export function setUser(u) {
  user = u;
  setHint(Boolean(u));
  for (const fn of listeners) fn(user);
}

export function onUserChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export async function loadUser() {
  if (!hint()) {
    setUser(null);
    return user;
  }
  try {
    setUser(await api.me());
  } catch {
    setUser(null);
  }
  return user;
}

export const ROLE_LABEL = { radiologist: "Radiologist", technologist: "Technologist", admin: "Administrator" };

export const can = {
  review: () => user?.role === "radiologist",
  sign: () => user?.role === "radiologist",
  reanalyse: () => user?.role === "radiologist" || user?.role === "technologist" || user?.role === "admin",
};

/** Why the current user may not sign/review, or "" when they may. */
export function roleReason(action) {
  if (!user) return "Sign in first.";
  if (user.role === "radiologist") return "";
  const who = ROLE_LABEL[user.role] || user.role;
  return action === "sign"
    ? `Only a radiologist can sign reports (you are signed in as ${who}).`
    : `Only a radiologist can review findings (you are signed in as ${who}).`;
}
