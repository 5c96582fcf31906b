// The dashboard's shell: sign-in with an API key, a hash router over the pages,
// and one live stream shared by them.
//
// Routes: #/map, #/vehicles, #/vehicles/ID, #/reservations, #/custody,
// #/analytics, #/devices. `#key=KEY` (what `fleet-sync demo` prints) signs in.

import { api, setKey, key, setUnauthorizedHandler, Live } from "./api.js";
import * as map from "./map.js";
import * as vehicles from "./vehicles.js";
import * as reservations from "./reservations.js";
import * as custody from "./custody.js";
import * as analytics from "./analytics.js";
import * as devices from "./devices.js";

const PAGES = { map, vehicles, reservations, custody, analytics, devices };
const view = document.getElementById("view");
const live = new Live();
const ctx = { live, me: null, can: (cap) => !!(ctx.me && ctx.me.capabilities.includes(cap)) };
let cleanup = null;

function showLogin(message) {
  live.stop();
  if (cleanup) { cleanup(); cleanup = null; }
  view.replaceChildren();
  document.getElementById("login").hidden = false;
  document.getElementById("loginerr").textContent = message || "";
  document.getElementById("keyinput").focus();
}

setUnauthorizedHandler((err) => {
  setKey(null);
  showLogin(`That key was not accepted (${err.code}).`);
});

async function signIn(k) {
  setKey(k);
  try {
    ctx.me = await api("/api/v1/me");
  } catch (e) {
    if (e.status !== 401) showLogin(e.message);
    return;
  }
  document.getElementById("login").hidden = true;
  document.body.dataset.role = ctx.me.role || "";
  live.start();
  route();
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
  signIn(decodeURIComponent(m[1]));
  return true;
}

document.getElementById("loginform").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const k = document.getElementById("keyinput").value.trim();
  if (k) signIn(k);
});

document.getElementById("logout").addEventListener("click", () => {
  setKey(null);
  ctx.me = null;
  showLogin();
});

live.onStatus((s) => {
  const el = document.getElementById("live");
  el.textContent = s;
  el.classList.toggle("up", s === "live");
  document.body.dataset.live = s;
});

if (!readHashKey()) {
  if (key()) signIn(key()); else showLogin();
}
