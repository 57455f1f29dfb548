// What the viewer measures about itself (Performance API marks and measures, prefixed "medimg-viewer"),
// published as window.__medimgViewerTimings for the browser tests and the status line.

function quantile(sorted, q) {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))));
  return sorted[i];
}

function round(x) {
  return x === null || x === undefined ? null : Math.round(x * 10) / 10;
}

export class Timings {
  constructor(n) {
    this.prefix = `medimg-viewer-${n}`;
    this.t0 = performance.now();
    this.values = {};
    this.scrollLatencies = [];
    this.scrollIntervals = [];
    this.scrollMisses = 0;
    this.lastRender = null;
    this.pendingInput = null;
    performance.mark(`${this.prefix}:mount`);
    this.publish();
  }

  /** Record a named moment (ms since mount) once. */
  mark(name) {
    if (this.values[name] !== undefined) return this.values[name];
    const now = performance.now();
    performance.mark(`${this.prefix}:${name}`);
    try {
      performance.measure(`${this.prefix}:mount->${name}`, `${this.prefix}:mount`, `${this.prefix}:${name}`);
    } catch {
      /* marks cleared by someone */
    }
    this.values[name] = round(now - this.t0);
    this.publish();
    return this.values[name];
  }

  set(name, value) {
    this.values[name] = round(value);
    this.publish();
  }

  /** A scroll input (wheel or key) that should bring a new image. */
  input(missed = false) {
    if (this.pendingInput === null) this.pendingInput = performance.now();
    if (missed) this.scrollMisses++;
  }

  /** A render of a new image after a scroll input. */
  rendered() {
    const now = performance.now();
    if (this.pendingInput !== null) {
      this.scrollLatencies.push(now - this.pendingInput);
      if (this.lastRender !== null && now - this.lastRender < 500) this.scrollIntervals.push(now - this.lastRender);
      this.pendingInput = null;
      this.lastRender = now;
      if (this.scrollLatencies.length > 2000) this.scrollLatencies.splice(0, 1000);
      this.publishSoon();
    }
  }

  publishSoon() {
    if (this._soon) return;
    this._soon = setTimeout(() => {
      this._soon = null;
      this.publish();
    }, 200);
  }

  summary() {
    const lat = [...this.scrollLatencies].sort((a, b) => a - b);
    const gaps = [...this.scrollIntervals].sort((a, b) => a - b);
    return {
      ...this.values,
      scroll: {
        steps: lat.length,
        latencyMedianMs: round(quantile(lat, 0.5)),
        latencyP95Ms: round(quantile(lat, 0.95)),
        latencyMaxMs: round(lat.length ? lat[lat.length - 1] : null),
        frameIntervalMedianMs: round(quantile(gaps, 0.5)),
        frameIntervalP95Ms: round(quantile(gaps, 0.95)),
        notCachedSteps: this.scrollMisses,
      },
    };
  }

  publish() {
    if (typeof window === "undefined") return;
    const all = (window.__medimgViewerTimings = window.__medimgViewerTimings || {});
    all[this.prefix] = this.summary();
    all.latest = all[this.prefix];
  }
}
