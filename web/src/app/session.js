// The signed-in user ({username, display_name, role}) and what the role may do.
import { api } from "./api.js";

let user = null;
const listeners = new Set();

export function currentUser() {
  return user;
}

export function setUser(u) {
  user = u;
  for (const fn of listeners) fn(user);
}

export function onUserChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export async function loadUser() {
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
