// The REST API of the medimg server (docs/workstation-api.md): one function per endpoint.
// Errors come back as ApiError with the server's one-line message; a 401 anywhere but the login
// tells the app that the session ended (onUnauthorized).

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

let unauthorizedHandler = () => {};
export function onUnauthorized(fn) {
  unauthorizedHandler = fn;
}

const enc = encodeURIComponent;

async function request(method, path, { body, query, signal, raw = false } = {}) {
  let url = `/api${path}`;
  if (query) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v === undefined || v === null || v === "") continue;
      for (const item of Array.isArray(v) ? v : [v]) params.append(k, item);
    }
    const qs = params.toString();
    if (qs) url += `?${qs}`;
  }
  const init = { method, credentials: "same-origin", signal, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(url, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "The medimg server cannot be reached. Check the network and try again.");
  }
  if (raw && res.ok) return res;
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { error: text.slice(0, 300) };
    }
  }
  if (!res.ok) {
    const message = (data && (data.error || data.detail)) || `${res.status} ${res.statusText}`;
    const err = new ApiError(res.status, typeof message === "string" ? message : JSON.stringify(message), data);
    if (res.status === 401 && path !== "/login") unauthorizedHandler(err);
    throw err;
  }
  return data;
}

export const api = {
  // users and sessions
  login: (username, password) => request("POST", "/login", { body: { username, password } }),
  logout: () => request("POST", "/logout"),
  me: () => request("GET", "/me"),
  health: () => request("GET", "/health"),

  // worklist and studies
  worklist: (query, signal) => request("GET", "/worklist", { query, signal }),
  study: (uid) => request("GET", `/studies/${enc(uid)}`),
  report: (uid) => request("GET", `/studies/${enc(uid)}/report`),
  analyze: (uid) => request("POST", `/studies/${enc(uid)}/analyze`),

  // review and sign-off
  review: (uid) => request("GET", `/studies/${enc(uid)}/review`),
  decide: (uid, id, action, comment) =>
    request("POST", `/studies/${enc(uid)}/findings/${enc(id)}/decision`, { body: comment ? { action, comment } : { action } }),
  editFinding: (uid, id, changes) => request("PATCH", `/studies/${enc(uid)}/findings/${enc(id)}`, { body: changes }),
  addFinding: (uid, finding) => request("POST", `/studies/${enc(uid)}/findings`, { body: finding }),
  saveImpression: (uid, text) => request("PUT", `/studies/${enc(uid)}/impression`, { body: { text } }),
  sign: (uid) => request("POST", `/studies/${enc(uid)}/sign`),
  history: (uid) => request("GET", `/studies/${enc(uid)}/history`),

  // quality dashboard
  dashboard: () => request("GET", "/dashboard"),
};

/** URLs the browser opens or downloads directly. */
export const urls = {
  reportHtml: (uid) => `/api/studies/${enc(uid)}/report.html`,
  reportPdf: (uid) => `/api/studies/${enc(uid)}/report.pdf`,
  reportJson: (uid) => `/api/studies/${enc(uid)}/report`,
  sr: (uid) => `/api/studies/${enc(uid)}/sr`,
  seg: (uid) => `/api/studies/${enc(uid)}/seg`,
  fhir: (uid) => `/api/studies/${enc(uid)}/fhir`,
  mesh: (uid, structure) => `/api/studies/${enc(uid)}/mesh/${enc(structure)}.stl`,
  evidence: (uid, name) => `/api/studies/${enc(uid)}/evidence/${enc(name)}`,
  events: "/api/events/stream",
  dicomweb: "/dicomweb",
};
