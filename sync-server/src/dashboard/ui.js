// Small DOM and formatting helpers the pages share.

export function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

/** A message in place of (or above) a page's content: what went wrong, in words. */
export function notice(el, text, kind = "error") {
  const div = document.createElement("div");
  div.className = "notice " + kind;
  div.dataset.kind = kind;
  div.textContent = text;
  el.prepend(div);
  return div;
}

/** What a failed request means to the person looking at the page. */
export function explain(err, what) {
  if (err && err.missing) return `${what} is not available on this server.`;
  if (err && err.status === 403) return `Your key may not see ${what.toLowerCase()} (${err.code}).`;
  return `${what} could not be loaded: ${err && err.message ? err.message : err}`;
}

export function ago(ms) {
  if (ms == null || Number.isNaN(ms)) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  if (s < 86400) return Math.floor(s / 3600) + " h ago";
  return Math.floor(s / 86400) + " d ago";
}

/** Epoch ms from an `*_ms` number or an RFC 3339 string. */
export function ms(v) {
  if (v == null) return null;
  if (typeof v === "number") return v;
  const t = Date.parse(v);
  return Number.isNaN(t) ? null : t;
}

export function when(v) {
  const t = ms(v);
  return t == null ? "–" : new Date(t).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

export function money(cents, currency) {
  if (cents == null) return "–";
  const n = cents / 100;
  try {
    return currency ? n.toLocaleString([], { style: "currency", currency }) : n.toLocaleString([], { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  } catch {
    return n.toFixed(2);
  }
}

export function num(v, digits = 0) {
  return v == null || Number.isNaN(v) ? "–" : Number(v).toLocaleString([], { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/** A list out of an answer that is either an array or `{ <key>: [...] }`. */
export function list(answer, ...keys) {
  if (Array.isArray(answer)) return answer;
  for (const k of keys) if (answer && Array.isArray(answer[k])) return answer[k];
  return [];
}

/** `<input type=datetime-local>` value for epoch ms, in local time. */
export function localInput(t) {
  const d = new Date(t - new Date(t).getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 16);
}

export function svgEl(name, attrs = {}) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}
