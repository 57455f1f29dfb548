// Live updates: one EventSource on /api/events/stream shared by the screens.  `study` events
// ({"study_uid", "status", ...}) go to the subscribers; the connection state ("connecting",
// "live", "offline") drives the indicator in the header.  The browser reconnects by itself after a
// network error; when the server closed the stream for good (e.g. the session ended) we retry with a
// growing delay while someone is signed in.
import { urls } from "./api.js";

const subscribers = new Set();
const stateListeners = new Set();
let source = null;
let state = "offline";
let retryDelay = 2000;
let retryTimer = null;
let wanted = false;

function setState(s) {
  if (s === state) return;
  state = s;
  for (const fn of stateListeners) fn(state);
}

function dispatch(type, ev) {
  let data = null;
  try {
    data = JSON.parse(ev.data);
  } catch {
    return;
  }
  if (!data || typeof data !== "object") return;
  const event = { type: data.type || type, ...data };
  for (const fn of subscribers) {
    try {
      fn(event);
    } catch (err) {
      console.error(err);
    }
  }
}

function open() {
  clearTimeout(retryTimer);
  if (source || !wanted || typeof EventSource === "undefined") return;
  setState("connecting");
  source = new EventSource(urls.events, { withCredentials: true });
  source.addEventListener("open", () => {
    retryDelay = 2000;
    setState("live");
  });
  source.addEventListener("study", (ev) => dispatch("study", ev));
  // the server dropped events for this client: everyone reloads, the browser reconnects
  source.addEventListener("overflow", () => {
    for (const fn of subscribers) fn({ type: "overflow" });
  });
  source.addEventListener("message", (ev) => dispatch("message", ev));
  source.addEventListener("error", () => {
    if (!source) return;
    if (source.readyState === EventSource.CLOSED) {
      source.close();
      source = null;
      setState("offline");
      retryTimer = setTimeout(open, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 60000);
    } else {
      setState("connecting");
    }
  });
}

export function startLive() {
  wanted = true;
  open();
}

export function stopLive() {
  wanted = false;
  clearTimeout(retryTimer);
  if (source) source.close();
  source = null;
  setState("offline");
}

/** subscribe(fn) -> unsubscribe; fn gets every event as an object with `type`. */
export function subscribe(fn) {
  subscribers.add(fn);
  return () => subscribers.delete(fn);
}

export function liveState() {
  return state;
}

export function onLiveState(fn) {
  stateListeners.add(fn);
  return () => stateListeners.delete(fn);
}
