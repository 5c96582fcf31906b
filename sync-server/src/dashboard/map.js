// The live fleet map: vehicles over the yards' geofences on a plain background
// (or tiles the operator serves from this origin), fitted to the fleet, with a
// scale bar, positions pushed by the live stream, and a trip replay.

import { api } from "./api.js";
import { esc, ago, ms, notice, explain, svgEl, list } from "./ui.js";

const COLORS = { driving: "#1f9d55", idle: "#d68a00", parked: "#3b6fd8", offline: "#9aa5b1" };
const STATUSES = ["driving", "idle", "parked", "offline"];
const OFFLINE_AFTER_MS = 120_000;
const TILE_KEY = "fleet-tile-url";
const EARTH_M = 40_075_016.686;

// Web Mercator at zoom 0: a 256 px world. Tiles, when configured, line up.
function world(lat, lon) {
  const s = Math.sin((Math.max(-85, Math.min(85, lat)) * Math.PI) / 180);
  return [((lon + 180) / 360) * 256, (0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)) * 256];
}

export function statusOf(v, now = Date.now()) {
  const seen = ms(v.last_seen);
  if (seen == null || now - seen > OFFLINE_AFTER_MS) return "offline";
  return STATUSES.includes(v.status) ? v.status : "parked";
}

export function mount(el, ctx) {
  el.innerHTML = `
    <div class="mappage">
      <div class="mapbox">
        <svg id="map" aria-label="fleet map"></svg>
        <div class="maplegend">${STATUSES.map((s) => `<span><i class="dot" style="background:${COLORS[s]}"></i>${s} <b data-count="${s}">0</b></span>`).join("")}</div>
        <div class="replay" id="replay" hidden>
          <button type="button" id="replay-play">Play</button>
          <input type="range" id="replay-slider" min="0" max="0" value="0" aria-label="replay position">
          <span id="replay-time" class="muted"></span>
          <button type="button" id="replay-close">Close</button>
        </div>
      </div>
      <aside class="mapside">
        <div class="head">
          <b id="vcount">Vehicles</b><span class="grow" style="flex:1"></span>
          <button type="button" id="fit">Fit</button>
          <button type="button" id="trip" disabled>Replay trip</button>
          <button type="button" id="tiles" title="tile URL served by your server">Tiles</button>
        </div>
        <ul id="vlist"></ul>
      </aside>
    </div>`;
  const svg = el.querySelector("#map");
  const box = el.querySelector(".mapbox");
  const state = { vehicles: new Map(), fences: [], selected: null, view: null, replay: null, trails: new Map() };
  let stopped = false;

  async function loadVehicles() {
    try {
      const vs = list(await api("/api/v1/vehicles"), "vehicles");
      for (const v of vs) {
        const old = state.vehicles.get(v.id);
        // A stream position newer than the list's wins.
        if (old && old.position && v.position && ms(old.position.time) > ms(v.position.time)) v.position = old.position;
        state.vehicles.set(v.id, v);
        trail(v);
      }
      el.querySelector(".notice")?.remove();
      draw();
    } catch (e) {
      if (!el.querySelector(".notice")) notice(box, explain(e, "The vehicle list"));
    }
  }

  async function loadFences() {
    try {
      const groups = list(await api("/api/v1/device-groups"), "groups");
      const fences = [];
      for (const g of groups) {
        const detail = g.rollouts ? g : await api(`/api/v1/device-groups/${g.id}`);
        const versions = (detail.rollouts || []).map((r) => r.version);
        if (!versions.length) continue;
        const cfg = await api(`/api/v1/device-groups/${g.id}/config/${Math.max(...versions)}`);
        const feats = (cfg.config && cfg.config.geofences && cfg.config.geofences.features) || [];
        for (const f of feats) {
          const geom = f.geometry || {};
          const polys = geom.type === "Polygon" ? [geom.coordinates] : geom.type === "MultiPolygon" ? geom.coordinates : [];
          const name = (f.properties && (f.properties.name || f.properties.id)) || "geofence";
          for (const p of polys) if (p && p[0]) fences.push({ name, ring: p[0] });
        }
      }
      state.fences = fences;
      if (!state.userMoved) state.view = fit();
      draw();
    } catch (e) {
      // The map is still useful without geofences; say why they are missing.
      notice(box, explain(e, "Geofences"), "warn");
    }
  }

  function trail(v) {
    if (!v.position) return;
    const t = state.trails.get(v.id) || [];
    const last = t[t.length - 1];
    if (!last || last[0] !== v.position.lat || last[1] !== v.position.lon) t.push([v.position.lat, v.position.lon]);
    while (t.length > 60) t.shift();
    state.trails.set(v.id, t);
  }

  const offLive = ctx.live.on((msg) => {
    if (msg.type === "reload") return loadVehicles();
    if (msg.kind !== "position" || !msg.vehicle) return;
    const d = msg.data || {};
    if (typeof d.lat !== "number" || typeof d.lon !== "number") return;
    const v = state.vehicles.get(msg.vehicle) || { id: msg.vehicle, name: msg.vehicle.slice(0, 8) };
    v.position = { lat: d.lat, lon: d.lon, speed_mps: d.speed_mps, heading_deg: d.heading_deg, time: msg.at };
    v.last_seen = msg.at;
    v.online = true;
    if (d.speed_mps != null) v.status = d.speed_mps > 1 ? "driving" : v.status === "driving" ? "idle" : v.status || "idle";
    state.vehicles.set(v.id, v);
    trail(v);
    scheduleDraw();
  });

  let pending = false;
  function scheduleDraw() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; if (!stopped) draw(); });
  }

  // The view: a world point at the centre and pixels per zoom-0 world pixel.
  function fit() {
    const pts = [];
    for (const v of state.vehicles.values()) if (v.position) pts.push(world(v.position.lat, v.position.lon));
    for (const f of state.fences) for (const [lon, lat] of f.ring) pts.push(world(lat, lon));
    if (state.replay) for (const p of state.replay.points) pts.push(world(p.lat, p.lon));
    if (!pts.length) return null;
    const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
    const cx = (Math.min(...xs) + Math.max(...xs)) / 2, cy = (Math.min(...ys) + Math.max(...ys)) / 2;
    const w = svg.clientWidth || 800, h = svg.clientHeight || 600;
    // At least ~500 m across, so one parked vehicle is not a full-screen zoom.
    const minSpan = 256 * 500 / (EARTH_M * Math.cos((lat0(cy) * Math.PI) / 180));
    const spanX = Math.max(Math.max(...xs) - Math.min(...xs), minSpan);
    const spanY = Math.max(Math.max(...ys) - Math.min(...ys), minSpan);
    return { cx, cy, scale: Math.min((w - 120) / spanX, (h - 120) / spanY) };
  }

  function lat0(wy) {
    const n = Math.PI - (2 * Math.PI * wy) / 256;
    return (180 / Math.PI) * Math.atan(0.5 * (Math.exp(n) - Math.exp(-n)));
  }

  function project(lat, lon) {
    const [x, y] = world(lat, lon);
    const w = svg.clientWidth || 800, h = svg.clientHeight || 600;
    return [w / 2 + (x - state.view.cx) * state.view.scale, h / 2 + (y - state.view.cy) * state.view.scale];
  }

  function inView(v) {
    if (!v.position) return true;
    const [x, y] = project(v.position.lat, v.position.lon);
    return x > 10 && y > 10 && x < (svg.clientWidth || 800) - 10 && y < (svg.clientHeight || 600) - 10;
  }

  function draw() {
    const w = svg.clientWidth || 800, h = svg.clientHeight || 600;
    const vs = [...state.vehicles.values()];
    if (!state.view || (!state.userMoved && vs.some((v) => !inView(v)))) state.view = fit();
    svg.replaceChildren();
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.append(svgEl("rect", { x: 0, y: 0, width: w, height: h, fill: "#eef2f5" }));
    drawList(vs);
    if (!state.view) {
      const t = svgEl("text", { x: w / 2, y: h / 2, "text-anchor": "middle", fill: "#6b7785" });
      t.textContent = "No vehicle has reported a position yet.";
      svg.append(t);
      return;
    }
    drawTiles(w, h);
    drawGrid(w, h);
    for (const f of state.fences) {
      const pts = f.ring.map(([lon, lat]) => project(lat, lon).map((n) => n.toFixed(1)).join(",")).join(" ");
      const poly = svgEl("polygon", { points: pts, fill: "rgba(15,95,166,.08)", stroke: "#0f5fa6", "stroke-width": 1.5, "stroke-dasharray": "6 4", class: "fence" });
      const title = svgEl("title");
      title.textContent = f.name;
      poly.append(title);
      svg.append(poly);
      const [lx, ly] = project(f.ring[0][1], f.ring[0][0]);
      const label = svgEl("text", { x: lx + 4, y: ly - 4, fill: "#0f5fa6", "font-size": 12 });
      label.textContent = f.name;
      svg.append(label);
    }
    for (const [id, t] of state.trails) {
      if (t.length < 2 || state.replay) continue;
      const v = state.vehicles.get(id);
      svg.append(svgEl("polyline", { points: t.map(([la, lo]) => project(la, lo).join(",")).join(" "), fill: "none", stroke: COLORS[statusOf(v)], "stroke-width": 2, "stroke-opacity": 0.45, "stroke-linecap": "round" }));
    }
    if (state.replay) drawReplay();
    const order = vs.filter((v) => v.position).sort((a, b) => (a.id === state.selected) - (b.id === state.selected));
    for (const v of order) svg.append(marker(v));
    drawScale(h);
  }

  function drawTiles(w, h) {
    const tpl = localStorage.getItem(TILE_KEY);
    if (!tpl) return;
    const z = Math.max(0, Math.min(19, Math.round(Math.log2(state.view.scale))));
    const n = 2 ** z, size = (256 / n) * state.view.scale;
    const x0 = state.view.cx * n / 256 - w / 2 / size, y0 = state.view.cy * n / 256 - h / 2 / size;
    for (let tx = Math.floor(x0); tx < x0 + w / size; tx++) {
      for (let ty = Math.floor(y0); ty < y0 + h / size; ty++) {
        if (ty < 0 || ty >= n) continue;
        const href = tpl.replace("{z}", z).replace("{x}", ((tx % n) + n) % n).replace("{y}", ty);
        svg.append(svgEl("image", { href, x: (tx - x0) * size, y: (ty - y0) * size, width: size + 0.5, height: size + 0.5 }));
      }
    }
  }

  function drawGrid(w, h) {
    if (localStorage.getItem(TILE_KEY)) return;
    const g = svgEl("g", { stroke: "#e1e7ec", "stroke-width": 1 });
    for (let x = 0.5; x < w; x += 40) g.append(svgEl("line", { x1: x, y1: 0, x2: x, y2: h }));
    for (let y = 0.5; y < h; y += 40) g.append(svgEl("line", { x1: 0, y1: y, x2: w, y2: y }));
    svg.append(g);
  }

  function drawScale(h) {
    const mPerPx = (EARTH_M * Math.cos((lat0(state.view.cy) * Math.PI) / 180)) / (256 * state.view.scale);
    const target = 120 * mPerPx;
    const pow = 10 ** Math.floor(Math.log10(target));
    const nice = [1, 2, 5, 10].map((m) => m * pow).filter((m) => m <= target).pop() || pow;
    const px = nice / mPerPx, x = 20, y = h - 24;
    const g = svgEl("g", { class: "scale" });
    g.append(svgEl("rect", { x: x - 8, y: y - 22, width: px + 16, height: 34, fill: "rgba(255,255,255,.85)", rx: 4 }));
    g.append(svgEl("polyline", { points: `${x},${y - 6} ${x},${y} ${x + px},${y} ${x + px},${y - 6}`, fill: "none", stroke: "#1d2733", "stroke-width": 2 }));
    const t = svgEl("text", { x: x + px / 2, y: y - 9, "text-anchor": "middle", fill: "#1d2733", "font-size": 12 });
    t.textContent = nice >= 1000 ? nice / 1000 + " km" : nice + " m";
    g.append(t);
    svg.append(g);
  }

  function marker(v) {
    const s = statusOf(v);
    const [x, y] = project(v.position.lat, v.position.lon);
    const g = svgEl("g", { class: "marker", "data-id": v.id, "data-name": v.name, "data-status": s, "data-lat": v.position.lat, "data-lon": v.position.lon, transform: `translate(${x.toFixed(1)} ${y.toFixed(1)})` });
    if (v.id === state.selected) g.append(svgEl("circle", { r: 18, fill: "rgba(15,95,166,.18)" }));
    if (s === "driving" && v.position.heading_deg != null) {
      g.append(svgEl("path", { d: "M0,-11 L8,8 L0,4 L-8,8 Z", fill: COLORS[s], stroke: "#fff", "stroke-width": 2, transform: `rotate(${v.position.heading_deg})` }));
    } else {
      g.append(svgEl("circle", { r: 7, fill: COLORS[s], stroke: "#fff", "stroke-width": 2 }));
    }
    const t = svgEl("text", { x: 12, y: 4, fill: "#1d2733" });
    t.textContent = v.name;
    g.append(t);
    g.addEventListener("click", () => select(v.id));
    return g;
  }

  function drawList(vs) {
    const counts = Object.fromEntries(STATUSES.map((s) => [s, 0]));
    const rows = vs.map((v) => ({ v, s: statusOf(v) }));
    rows.sort((a, b) => STATUSES.indexOf(a.s) - STATUSES.indexOf(b.s) || String(a.v.name).localeCompare(b.v.name));
    for (const r of rows) counts[r.s]++;
    for (const s of STATUSES) el.querySelector(`[data-count="${s}"]`).textContent = counts[s];
    el.querySelector("#vcount").textContent = `Vehicles (${vs.length})`;
    el.querySelector("#vlist").innerHTML = rows.map(({ v, s }) => `
      <li data-id="${esc(v.id)}" class="${v.id === state.selected ? "sel" : ""}">
        <b>${esc(v.name)}</b><span class="pill ${s}">${s}</span>
        <span class="muted">${v.position && v.position.speed_mps != null ? Math.round(v.position.speed_mps * 3.6) + " km/h" : "–"}</span>
        <span class="muted">seen ${ago(ms(v.last_seen))}</span>
      </li>`).join("");
    el.querySelector("#trip").disabled = !state.selected;
  }

  function select(id) {
    state.selected = state.selected === id ? null : id;
    draw();
  }

  el.querySelector("#vlist").addEventListener("click", (ev) => {
    const li = ev.target.closest("li");
    if (li) select(li.dataset.id);
  });
  el.querySelector("#vlist").addEventListener("dblclick", (ev) => {
    const li = ev.target.closest("li");
    if (li) location.hash = "#/vehicles/" + li.dataset.id;
  });
  el.querySelector("#fit").addEventListener("click", () => { state.userMoved = false; state.view = fit(); draw(); });
  el.querySelector("#tiles").addEventListener("click", () => {
    const cur = localStorage.getItem(TILE_KEY) || "";
    const next = prompt("Tile URL on this server, e.g. /tiles/{z}/{x}/{y}.png (empty: plain background)", cur);
    if (next == null) return;
    const t = next.trim();
    if (t && !t.startsWith("/")) { alert("Tiles must come from this server: give a path starting with /"); return; }
    if (t) localStorage.setItem(TILE_KEY, t); else localStorage.removeItem(TILE_KEY);
    draw();
  });

  // Pan by dragging, zoom with the wheel.
  let drag = null;
  svg.addEventListener("pointerdown", (e) => { if (state.view) { drag = { x: e.clientX, y: e.clientY, cx: state.view.cx, cy: state.view.cy }; svg.setPointerCapture(e.pointerId); } });
  svg.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) < 4) return;
    state.userMoved = true;
    state.view.cx = drag.cx - dx / state.view.scale;
    state.view.cy = drag.cy - dy / state.view.scale;
    scheduleDraw();
  });
  svg.addEventListener("pointerup", () => { drag = null; });
  svg.addEventListener("wheel", (e) => {
    if (!state.view) return;
    e.preventDefault();
    state.userMoved = true;
    state.view.scale *= e.deltaY < 0 ? 1.25 : 0.8;
    scheduleDraw();
  }, { passive: false });

  // Trip replay: the selected vehicle's positions since its last ignition-on.
  el.querySelector("#trip").addEventListener("click", async () => {
    const v = state.vehicles.get(state.selected);
    if (!v) return;
    try {
      const points = await lastTrip(v.id);
      if (points.length < 2) { notice(box, `${v.name} has no recorded trip to replay yet.`, "warn"); return; }
      state.replay = { vehicle: v, points, i: points.length - 1 };
      const slider = el.querySelector("#replay-slider");
      slider.max = points.length - 1;
      slider.value = points.length - 1;
      el.querySelector("#replay").hidden = false;
      state.view = fit();
      draw();
    } catch (e) {
      notice(box, explain(e, "The trip"));
    }
  });
  el.querySelector("#replay-slider").addEventListener("input", (e) => {
    if (!state.replay) return;
    state.replay.i = Number(e.target.value);
    draw();
  });
  let playTimer = null;
  el.querySelector("#replay-play").addEventListener("click", () => {
    if (!state.replay) return;
    clearInterval(playTimer);
    if (state.replay.i >= state.replay.points.length - 1) state.replay.i = 0;
    playTimer = setInterval(() => {
      if (!state.replay || state.replay.i >= state.replay.points.length - 1) { clearInterval(playTimer); return; }
      state.replay.i++;
      el.querySelector("#replay-slider").value = state.replay.i;
      draw();
    }, 100);
  });
  el.querySelector("#replay-close").addEventListener("click", () => {
    clearInterval(playTimer);
    state.replay = null;
    el.querySelector("#replay").hidden = true;
    state.view = fit();
    draw();
  });

  function drawReplay() {
    const { points, i } = state.replay;
    const line = (ps, attrs) => svg.append(svgEl("polyline", { points: ps.map((p) => project(p.lat, p.lon).join(",")).join(" "), fill: "none", "stroke-linecap": "round", "stroke-linejoin": "round", ...attrs }));
    line(points, { stroke: "#9aa5b1", "stroke-width": 3 });
    line(points.slice(0, i + 1), { stroke: "#0f5fa6", "stroke-width": 4 });
    const p = points[i];
    const [x, y] = project(p.lat, p.lon);
    svg.append(svgEl("circle", { cx: x, cy: y, r: 8, fill: "#fff", stroke: "#0f5fa6", "stroke-width": 3, class: "replay-head" }));
    el.querySelector("#replay-time").textContent = `${state.replay.vehicle.name} · ${new Date(p.t).toLocaleTimeString()} · ${p.speed == null ? "–" : Math.round(p.speed * 3.6) + " km/h"}`;
  }

  loadVehicles();
  loadFences();
  const poll = setInterval(loadVehicles, 15_000);
  const ro = new ResizeObserver(() => scheduleDraw());
  ro.observe(svg);
  return () => { stopped = true; offLive(); clearInterval(poll); clearInterval(playTimer); ro.disconnect(); };
}

/** The positions of a device's latest trip: after its last ignition-on among its recent events. */
export async function lastTrip(deviceId) {
  const dev = await api(`/api/v1/devices`).then((ds) => list(ds, "devices").find((d) => d.id === deviceId));
  const last = dev ? dev.last_seq || 0 : 0;
  let after = Math.max(0, last - 3000);
  const events = [];
  for (let page = 0; page < 4; page++) {
    const r = await api(`/api/v1/devices/${deviceId}/events?after_seq=${after}&limit=1000`);
    events.push(...r.events);
    if (r.next_after_seq == null || r.events.length < 1000) break;
    after = r.next_after_seq;
  }
  let start = 0;
  events.forEach((e, i) => { if (e.kind === "ignition_on") start = i; });
  return events.slice(start)
    .filter((e) => e.kind === "position" && typeof e.data.lat === "number")
    .map((e) => ({ lat: e.data.lat, lon: e.data.lon, speed: e.data.speed_mps, t: e.time_ms ?? ms(e.time) }));
}
