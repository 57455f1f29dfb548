// A small browser stand-in for Node's "events" module.  vtk.js (under Cornerstone3D) bundles
// xmlbuilder2, whose streaming builder extends EventEmitter at load time; Vite leaves Node built-ins
// empty in a browser build, which made the viewer chunk fail with "Class extends value undefined".
// The XML writers are never used by the viewer; this keeps the class defined (and working).
export class EventEmitter {
  constructor() {
    this._events = new Map();
  }

  on(name, fn) {
    const list = this._events.get(name) || [];
    list.push(fn);
    this._events.set(name, list);
    return this;
  }

  addListener(name, fn) {
    return this.on(name, fn);
  }

  once(name, fn) {
    const wrapped = (...args) => {
      this.off(name, wrapped);
      fn.apply(this, args);
    };
    return this.on(name, wrapped);
  }

  off(name, fn) {
    const list = this._events.get(name);
    if (list) this._events.set(name, list.filter((f) => f !== fn));
    return this;
  }

  removeListener(name, fn) {
    return this.off(name, fn);
  }

  removeAllListeners(name) {
    if (name === undefined) this._events.clear();
    else this._events.delete(name);
    return this;
  }

  emit(name, ...args) {
    const list = this._events.get(name);
    if (!list || !list.length) return false;
    for (const fn of [...list]) fn.apply(this, args);
    return true;
  }

  listenerCount(name) {
    return (this._events.get(name) || []).length;
  }
}

export default EventEmitter;
EventEmitter.EventEmitter = EventEmitter;
