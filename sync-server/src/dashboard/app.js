// The dashboard's shell: sign-in (a user's password, or an API key), a hash
// router over the pages, and one live stream shared by them.
//
// Routes: #/map, #/vehicles, #/vehicles/ID, #/reservations, #/custody,
// #/analytics, #/devices. `#key=KEY` signs in with a key; `#tenant=NAME`
// fills in the tenant on the sign-in form.

import { api, setKey, key, login, logout, setUnauthorizedHandler, Live } from "./api.js";
import * as map from "./map.js";
import * as vehicles from "./vehicles.js";
import * as reservations from "./reservations.js";
import * as custody from "./custody.js";
import * as analytics from "./analytics.js";
import * as devices from "./devices.js";

const PAGES = { map, vehicles, reservations, custody, analytics, devices };
const TENANT = "fleet-login-tenant";
const view = document.getElementById("view");
const live = new Live();
const ctx = { live, me: null, can: (cap) => !!(ctx.me && ctx.me.capabilities.includes(cap)) };
let cleanup = null;
const $ = (id) => document.getElementById(id);

/** Which sign-in the form offers: `password` (a user) or `key`. */
function loginMode(mode) {
  $("loginform").dataset.mode = mode;
  $("passwordfields").hidden = mode !== "password";
  $("keyfields").hidden = mode !== "key";
  $("loginswitch").textContent = mode === "password" ? "Use an API key instead" : "Sign in with a password instead";
}

function showLogin(message) {
  live.stop();
  ctx.me = null;
  if (cleanup) { cleanup(); cleanup = null; }
  view.replaceChildren();
  delete document.body.dataset.page;
  document.body.dataset.auth = "";
  $("login").hidden = false;
  $("loginerr").textContent = message || "";
  $("passwordinput").value = "";
  $("keyinput").value = "";
  const tenant = $("tenantinput");
  if (!tenant.value) tenant.value = localStorage.getItem(TENANT) || "";
  const first = $("loginform").dataset.mode === "key" ? $("keyinput")
    : !tenant.value ? tenant : !$("emailinput").value ? $("emailinput") : $("passwordinput");
  first.focus();
}

// A request refused while signed in: the key was revoked or the session ended.
// Before anyone is signed in, `enter` says what went wrong instead.
setUnauthorizedHandler((err) => {
  if (!ctx.me) return;
  if (key()) {
    setKey(null);
    showLogin(`That key was not accepted (${err.code}).`);
  } else if (err.code === "session_expired") {
    showLogin("Your session has expired. Sign in again.");
  } else {
    showLogin("Your session has ended. Sign in again.");
  }
});

/** Why a sign-in was refused, in words. */
function refusal(e, what) {
  if (e.code === "invalid_credentials") return "Wrong tenant, email or password.";
  if (e.code === "rate_limited" || e.status === 429) {
    const wait = e.retryAfter != null ? ` Wait ${e.retryAfter} s and try again.` : " Wait a minute and try again.";
    return "Too many sign-in attempts." + wait;
  }
  if (e.status === 401) return `That ${what} was not accepted (${e.code}).`;
  return e.message;
}

/** Loads who the caller is and opens the dashboard; false when nobody is signed in. */
async function enter() {
  try {
    ctx.me = await api("/api/v1/me");
  } catch (e) {
    ctx.me = null;
    if (key()) {
      setKey(null);
      showLogin(refusal(e, "key"));
    } else {
      showLogin(e.status === 401 ? "" : e.message);
    }
    return false;
  }
  $("login").hidden = true;
  document.body.dataset.role = ctx.me.role || "";
  document.body.dataset.auth = key() ? "key" : "session";
  live.start();
  route();
  return true;
}

function signInWithKey(k) {
  setKey(k);
  return enter();
}

function parseRoute() {
  const [path, query] = location.hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/").filter(Boolean);
  return { page: parts[0] || "map", args: parts.slice(1), query: new URLSearchParams(query || "") };
}

function route() {
  if (!ctx.me) return;
  const r = parseRoute();
  const page = PAGES[r.page] || map;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("on", a.dataset.page === r.page);
  if (cleanup) { cleanup(); cleanup = null; }
  view.replaceChildren();
  document.body.dataset.page = r.page;
  try {
    cleanup = page.mount(view, ctx, r) || null;
  } catch (e) {
    view.textContent = "This page failed: " + e.message;
  }
}

window.addEventListener("hashchange", () => {
  if (readHashKey()) return;
  route();
});

/** `#key=…` signs in and leaves the address bar without the key. */
function readHashKey() {
  const m = /(?:^#|&)key=([^&]+)/.exec(location.hash);
  if (!m) return false;
  history.replaceState(null, "", location.pathname + location.search + "#/map");
  signInWithKey(decodeURIComponent(m[1]));
  return true;
}

/** `#tenant=…` (what `fleet-sync demo` prints) fills in the sign-in form's tenant. */
function readHashTenant() {
  const m = /(?:^#|&)tenant=([^&]+)/.exec(location.hash);
  if (!m) return;
  $("tenantinput").value = decodeURIComponent(m[1]);
  history.replaceState(null, "", location.pathname + location.search + "#/map");
}

$("loginswitch").addEventListener("click", () => {
  loginMode($("loginform").dataset.mode === "password" ? "key" : "password");
  $("loginerr").textContent = "";
  ($("loginform").dataset.mode === "key" ? $("keyinput") : $("tenantinput")).focus();
});

$("loginform").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const err = $("loginerr");
  const submit = $("loginsubmit");
  if ($("loginform").dataset.mode === "key") {
    const k = $("keyinput").value.trim();
    if (!k) { err.textContent = "Paste an API key."; return; }
    signInWithKey(k);
    return;
  }
  const tenant = $("tenantinput").value.trim();
  const email = $("emailinput").value.trim();
  const password = $("passwordinput").value;
  if (!tenant || !email || !password) {
    err.textContent = "Fill in the tenant, your email and your password.";
    return;
  }
  err.textContent = "";
  submit.disabled = true;
  try {
    await login(tenant, email, password);
    localStorage.setItem(TENANT, tenant);
    $("passwordinput").value = "";
    await enter();
  } catch (e) {
    err.textContent = refusal(e, "password");
    $("passwordinput").select();
  } finally {
    submit.disabled = false;
  }
});

$("logout").addEventListener("click", async () => {
  const wasKey = !!key();
  setKey(null);
  if (!wasKey) {
    try {
      await logout();
    } catch (e) {
      showLogin("Signed out here, but the server said: " + e.message);
      return;
    }
  }
  showLogin(wasKey ? "" : "You are signed out.");
});

// A stream refused before it opened may mean the session ended: ask the API,
// whose 401 brings the sign-in form back.
live.onRefused = () => {
  if (ctx.me) api("/api/v1/me").catch(() => {});
};

live.onStatus((s) => {
  const el = $("live");
  el.textContent = s;
  el.classList.toggle("up", s === "live");
  document.body.dataset.live = s;
});

loginMode("password");
readHashTenant();
if (!readHashKey()) {
  // A key this tab was given, or else a session cookie from an earlier sign-in.
  enter();
}
