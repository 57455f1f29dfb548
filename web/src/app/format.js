// Formatting of DICOM values and times for display.

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** DICOM PN "Family^Given^Middle^Prefix^Suffix" -> "FAMILY, Given Middle". */
export function personName(pn) {
  if (!pn) return "";
  const [family = "", given = "", middle = "", prefix = "", suffix = ""] = String(pn).split("=")[0].split("^");
  const first = [prefix, given, middle].filter(Boolean).join(" ");
  const name = [family.trim(), first.trim()].filter(Boolean).join(", ");
  return [name, suffix].filter(Boolean).join(" ") || String(pn);
}

/** "20070404" -> "04 Apr 2007" */
export function dicomDate(d) {
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(String(d || "").trim());
  if (!m) return d || "";
  return `${m[3]} ${MONTHS[Number(m[2]) - 1] || m[2]} ${m[1]}`;
}

/** "185824.123" -> "18:58" */
export function dicomTime(t) {
  const m = /^(\d{2})(\d{2})/.exec(String(t || ""));
  return m ? `${m[1]}:${m[2]}` : "";
}

export function ageAt(birth, on) {
  const b = /^(\d{4})(\d{2})(\d{2})$/.exec(birth || "");
  const d = /^(\d{4})(\d{2})(\d{2})$/.exec(on || "");
  if (!b || !d) return "";
  let years = Number(d[1]) - Number(b[1]);
  if (Number(d[2] + d[3]) < Number(b[2] + b[3])) years -= 1;
  return years >= 0 && years < 140 ? `${years} y` : "";
}

function toDate(t) {
  if (t === null || t === undefined || t === "") return null;
  if (typeof t === "number") return new Date(t > 1e12 ? t : t * 1000);
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** Milliseconds since the epoch of an ISO string or epoch seconds/milliseconds (0 when unknown). */
export function millis(t) {
  return toDate(t)?.getTime() || 0;
}

/** "14:05" today, "Yesterday 14:05", "03 Apr 14:05", "03 Apr 2025". */
export function when(t) {
  const d = toDate(t);
  if (!d) return "";
  const now = new Date();
  const hm = `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
  const day = (x) => new Date(x.getFullYear(), x.getMonth(), x.getDate()).getTime();
  const diffDays = Math.round((day(now) - day(d)) / 86400000);
  if (diffDays === 0) return hm;
  if (diffDays === 1) return `Yesterday ${hm}`;
  if (d.getFullYear() === now.getFullYear()) return `${String(d.getDate()).padStart(2, "0")} ${MONTHS[d.getMonth()]} ${hm}`;
  return `${String(d.getDate()).padStart(2, "0")} ${MONTHS[d.getMonth()]} ${d.getFullYear()}`;
}

/** Full date and time for tooltips: "2026-11-21 08:48:23". */
export function stamp(t) {
  const d = toDate(t);
  if (!d) return "";
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** "3 min ago", "2 h ago", "5 d ago". */
export function ago(t) {
  const d = toDate(t);
  if (!d) return "";
  const s = Math.max(0, (Date.now() - d.getTime()) / 1000);
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function num(v, digits = 1) {
  if (v === null || v === undefined || Number.isNaN(Number(v))) return "–";
  return Number(v).toFixed(digits);
}

export function pct(v, digits = 0) {
  if (v === null || v === undefined || Number.isNaN(Number(v))) return "–";
  return `${(Number(v) * 100).toFixed(digits)}%`;
}

const UNITS = { "[hnsf'U]": "HU", mm3: "mm³", "1": "" };
export function unit(u) {
  return u in UNITS ? UNITS[u] : u || "";
}

export function measurement(m, digits = 1) {
  if (!m) return "–";
  let value = m.value;
  let u = m.unit;
  if (u === "mm3" && Number(value) >= 1000) {
    value = Number(value) / 1000;
    u = "mL";
  }
  if (u === "mL" && Number(value) >= 1000) {
    value = Number(value) / 1000;
    u = "L";
  }
  if (u === "1") return pct(value, 0);
  return `${num(value, digits)} ${unit(u)}`.trim();
}

export function capitalise(text) {
  const t = String(text || "");
  return t ? t[0].toUpperCase() + t.slice(1) : t;
}

/** "lung_left" -> "Lung left" */
export function label(name) {
  return capitalise(String(name || "").replace(/[_-]+/g, " "));
}

export function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}
