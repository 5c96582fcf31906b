// The API client: JSON in and out, and the server's `{"error": {"code",
// "message"}}` turned into an ApiError a page can show. A request is signed in
// one of two ways: with an API key (kept in sessionStorage for this tab, sent as
// `Authorization: Bearer`), or with a user's session, whose HttpOnly cookie the
// browser sends by itself; a change made by session also carries the session's
// CSRF token (from the readable `fleet_csrf` cookie) as `X-CSRF-Token`.

const KEY = "fleet-api-key";
const CSRF_COOKIE = "fleet_csrf";

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    /** Seconds the server asked to wait (`Retry-After`), if it did. */
    this.retryAfter = retryAfter;
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

/** The session's CSRF token: the login answer's until a reload, then the cookie's. */
let csrfFromLogin = null;
function csrf() {
  for (const part of document.cookie.split(";")) {
    const [k, v] = part.trim().split("=");
    if (k === CSRF_COOKIE && v) return decodeURIComponent(v);
  }
  return csrfFromLogin;
}

function changes(method) {
  return !["GET", "HEAD", "OPTIONS"].includes(method.toUpperCase());
}

/** The headers that say who is asking: the key, or for a session the CSRF token on changes. */
function auth(method) {
  const k = key();
  if (k) return { Authorization: "Bearer " + k };
  const t = changes(method) ? csrf() : null;
  return t ? { "X-CSRF-Token": t } : {};
}

async function errorOf(r) {
  const body = await r.json().catch(() => null);
  const e = body && body.error;
  const wait = Number.parseInt(r.headers.get("retry-after") || "", 10);
  return new ApiError(
    r.status,
    e ? e.code : "http_" + r.status,
    e ? e.message : `the server answered ${r.status}`,
    Number.isFinite(wait) ? wait : null,
  );
}

/**
 * Logs a user in with a password (`POST /api/v1/session`). Resolves to the
 * login answer; a refusal (`invalid_credentials`, `rate_limited`, …) rejects
 * with its ApiError and does not count as a lost session.
 */
export async function login(tenant, email, password) {
  let r;
  try {
    r = await fetch("/api/v1/session", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ tenant, email, password }),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(0, "unreachable", "cannot reach the server: " + e.message);
  }
  if (!r.ok) throw await errorOf(r);
  const answer = await r.json();
  setKey(null);
  csrfFromLogin = answer.csrf_token || null;
  return answer;
}

/** Ends the session (`DELETE /api/v1/session`); the server clears both cookies. */
export async function logout() {
  csrfFromLogin = null;
  const h = auth("DELETE");
  const r = await fetch("/api/v1/session", { method: "DELETE", headers: h, credentials: "same-origin", cache: "no-store" });
  if (!r.ok && r.status !== 401) throw await errorOf(r);
}

/** A request to the API; resolves to the parsed JSON (or text for non-JSON answers). */
export async function api(path, { method = "GET", body, headers = {} } = {}) {
  const h = { ...auth(method), ...headers };
  let payload;
  if (body !== undefined) {
    h["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, { method, headers: h, body: payload, credentials: "same-origin", cache: "no-store" });
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

/** Fetches a file as the signed-in caller and hands it to the browser as a download. */
export async function download(path, filename) {
  const r = await fetch(path, { headers: auth("GET"), credentials: "same-origin", cache: "no-store" });
  if (r.status === 401) {
    const err = await errorOf(r);
    onUnauthorized(err);
    throw err;
  }
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
    this.onRefused = () => {};
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
      const k = key();
      ws = new WebSocket(`${scheme}//${location.host}/api/v1/stream`, k ? ["fleet.v1", "bearer." + k] : ["fleet.v1"]);
    } catch (e) {
      this.later();
      return;
    }
    this.ws = ws;
    this.setStatus("connecting");
    let opened = false;
    ws.onopen = () => {
      opened = true;
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
      if (!opened && !this.stopped) this.onRefused();
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
