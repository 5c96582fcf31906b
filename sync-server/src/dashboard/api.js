// The API client: the key from the session, JSON in and out, and the server's
// `{"error": {"code", "message"}}` turned into an ApiError a page can show.

const KEY = "fleet-api-key";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
  /** The endpoint is not on this server (yet): a page says so instead of failing. */
  get missing() {
    return this.status === 404 && (this.code === "not_found" || this.code === "method_not_allowed");
  }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(f) { onUnauthorized = f; }

export function key() { return sessionStorage.getItem(KEY); }
export function setKey(k) { if (k) sessionStorage.setItem(KEY, k); else sessionStorage.removeItem(KEY); }

async function errorOf(r) {
  const body = await r.json().catch(() => null);
  const e = body && body.error;
  return new ApiError(r.status, e ? e.code : "http_" + r.status, e ? e.message : `the server answered ${r.status}`);
}

/** A request to the API; resolves to the parsed JSON (or text for non-JSON answers). */
export async function api(path, { method = "GET", body, headers = {} } = {}) {
  const h = { Authorization: "Bearer " + key(), ...headers };
  let payload;
  if (body !== undefined) {
    h["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, { method, headers: h, body: payload, cache: "no-store" });
  } catch (e) {
    throw new ApiError(0, "unreachable", "cannot reach the server: " + e.message);
  }
  if (r.status === 401) {
    const err = await errorOf(r);
    onUnauthorized(err);
    throw err;
  }
  if (!r.ok) throw await errorOf(r);
  if (r.status === 204) return null;
  const type = r.headers.get("content-type") || "";
  return type.includes("json") ? r.json() : r.text();
}

/** Fetches a file with the key and hands it to the browser as a download. */
export async function download(path, filename) {
  const r = await fetch(path, { headers: { Authorization: "Bearer " + key() }, cache: "no-store" });
  if (!r.ok) throw await errorOf(r);
  const blob = await r.blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  return blob;
}

/**
 * The live stream (`/api/v1/stream`): one WebSocket for the whole page. On a
 * reconnect it resumes after the last event id it saw; when the server no
 * longer holds those events it says `gap` and listeners are told to reload.
 */
export class Live {
  constructor() {
    this.listeners = new Set();
    this.statusListeners = new Set();
    this.lastId = null;
    this.ws = null;
    this.retry = 0;
    this.stopped = true;
  }
  on(f) { this.listeners.add(f); return () => this.listeners.delete(f); }
  onStatus(f) { this.statusListeners.add(f); f(this.status || "offline"); return () => this.statusListeners.delete(f); }
  setStatus(s) { this.status = s; for (const f of this.statusListeners) f(s); }
  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
    this.ws = null;
    this.setStatus("offline");
  }
  connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    let ws;
    try {
      ws = new WebSocket(`${scheme}//${location.host}/api/v1/stream`, ["fleet.v1", "bearer." + key()]);
    } catch (e) {
      this.later();
      return;
    }
    this.ws = ws;
    this.setStatus("connecting");
    ws.onopen = () => {
      const sub = { type: "subscribe" };
      if (this.lastId != null) sub.resume_after = this.lastId;
      ws.send(JSON.stringify(sub));
    };
    ws.onmessage = (m) => {
      let msg;
      try { msg = JSON.parse(m.data); } catch { return; }
      if (msg.type === "subscribed" || msg.type === "resumed") {
        this.retry = 0;
        this.setStatus("live");
        if (msg.type === "subscribed") this.emit({ type: "reload" });
      } else if (msg.type === "gap") {
        this.retry = 0;
        this.setStatus("live");
        this.emit({ type: "reload" });
      } else if (msg.type === "event") {
        this.lastId = msg.id;
        this.emit(msg);
      } else if (msg.type === "error") {
        console.warn("stream:", msg.code, msg.message);
      }
    };
    ws.onclose = () => {
      if (this.ws === ws) this.ws = null;
      if (!this.stopped) this.later();
    };
  }
  later() {
    this.setStatus("reconnecting");
    const ms = Math.min(30_000, 500 * 2 ** this.retry) * (0.5 + Math.random() / 2);
    this.retry = Math.min(this.retry + 1, 6);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), ms);
  }
  emit(msg) {
    for (const f of this.listeners) {
      try { f(msg); } catch (e) { console.error(e); }
    }
  }
}
