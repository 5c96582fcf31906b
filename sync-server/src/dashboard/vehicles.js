// The vehicle list, and one vehicle's page: `/api/v1/vehicles/{id}/overview`
// when the server has it, else what the vehicle and device endpoints tell.

import { api } from "./api.js";
import { esc, ago, ms, when, notice, explain, list, num } from "./ui.js";
import { statusOf } from "./map.js";

export function mount(el, ctx, route) {
  if (route.args[0]) return vehicle(el, ctx, route.args[0]);
  el.innerHTML = `<div class="page"><h2>Vehicles</h2>
    <div class="toolbar"><input id="q" type="search" placeholder="Filter by name" aria-label="filter"><span class="grow"></span><span class="muted" id="count"></span></div>
    <div class="tablewrap"><table><thead><tr><th>Name</th><th>Status</th><th class="num">Speed</th><th>Last seen</th><th>Position</th></tr></thead><tbody id="rows"></tbody></table></div></div>`;
  const page = el.firstElementChild;
  let vehicles = [];
  async function load() {
    try {
      vehicles = list(await api("/api/v1/vehicles"), "vehicles");
      page.querySelector(".notice")?.remove();
      render();
    } catch (e) {
      if (!page.querySelector(".notice")) notice(page, explain(e, "The vehicle list"));
    }
  }
  function render() {
    const q = page.querySelector("#q").value.trim().toLowerCase();
    const rows = vehicles.filter((v) => !q || String(v.name).toLowerCase().includes(q));
    page.querySelector("#count").textContent = `${rows.length} of ${vehicles.length}`;
    page.querySelector("#rows").innerHTML = rows.length ? rows.map((v) => {
      const s = statusOf(v);
      const p = v.position;
      return `<tr class="link" data-id="${esc(v.id)}"><td><b>${esc(v.name)}</b></td><td><span class="pill ${s}">${s}</span></td>
        <td class="num">${p && p.speed_mps != null ? Math.round(p.speed_mps * 3.6) + " km/h" : "–"}</td>
        <td>${ago(ms(v.last_seen))}</td><td class="muted">${p ? `${p.lat.toFixed(5)}, ${p.lon.toFixed(5)}` : "–"}</td></tr>`;
    }).join("") : `<tr><td colspan="5" class="empty">No vehicles yet: enroll a gateway to see it here.</td></tr>`;
  }
  page.querySelector("#q").addEventListener("input", render);
  page.querySelector("#rows").addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr[data-id]");
    if (tr) location.hash = "#/vehicles/" + tr.dataset.id;
  });
  load();
  const t = setInterval(load, 10_000);
  return () => clearInterval(t);
}

function section(title, body) {
  return `<div class="card"><h3>${esc(title)}</h3>${body}</div>`;
}

function rowsTable(items, cols) {
  if (!items || !items.length) return `<div class="muted">None.</div>`;
  return `<div class="tablewrap"><table><thead><tr>${cols.map((c) => `<th>${esc(c[0])}</th>`).join("")}</tr></thead><tbody>${
    items.map((it) => `<tr>${cols.map((c) => `<td>${c[1](it)}</td>`).join("")}</tr>`).join("")}</tbody></table></div>`;
}

function vehicle(el, ctx, id) {
  el.innerHTML = `<div class="page"><div class="toolbar"><a class="btn" href="#/vehicles">← Vehicles</a><h2 id="title" style="margin:0">Vehicle</h2></div><div id="body"></div></div>`;
  const page = el.firstElementChild;
  const body = page.querySelector("#body");
  (async () => {
    let o;
    try {
      o = await api(`/api/v1/vehicles/${encodeURIComponent(id)}/overview`);
    } catch (e) {
      if (!e.missing) { notice(page, explain(e, "This vehicle")); return; }
      o = null;
    }
    if (o) return overview(o);
    // Without the overview endpoint: the vehicle record, its device and recent events.
    try {
      const [v, d, ev] = await Promise.all([
        api(`/api/v1/vehicles/${encodeURIComponent(id)}`),
        api(`/api/v1/devices/${encodeURIComponent(id)}`).catch(() => null),
        api(`/api/v1/devices`).then((ds) => list(ds, "devices").find((x) => x.id === id))
          .then((x) => api(`/api/v1/devices/${encodeURIComponent(id)}/events?after_seq=${Math.max(0, (x ? x.last_seq : 0) - 200)}&limit=200`)).catch(() => null),
      ]);
      page.querySelector("#title").textContent = v.name;
      const events = ev ? ev.events : [];
      const faults = events.filter((e) => e.kind === "dtc_set" || e.kind === "dtc_clear");
      body.innerHTML = `<div class="grid2">
        ${section("Status", basics(v, d))}
        ${section("Faults (recent)", rowsTable(faults.slice(-20).reverse(), [["When", (e) => when(e.time_ms)], ["Event", (e) => esc(e.kind)], ["Code", (e) => esc(e.data.code || e.data.spn || JSON.stringify(e.data))]]))}
      </div>
      ${section("Recent events", rowsTable(events.slice(-25).reverse(), [["When", (e) => when(e.time_ms)], ["Kind", (e) => esc(e.kind)], ["Data", (e) => `<code>${esc(JSON.stringify(e.data)).slice(0, 160)}</code>`]]))}`;
      notice(page, "Reservations, custody, trips and inspections for this vehicle need the vehicle overview endpoint, which this server does not have.", "warn");
    } catch (e) {
      notice(page, explain(e, "This vehicle"));
    }
  })();

  function basics(v, d) {
    const p = v.position;
    return `<dl>
      <dt class="muted">Status</dt><dd><span class="pill ${statusOf(v)}">${statusOf(v)}</span> · seen ${ago(ms(v.last_seen))}</dd>
      <dt class="muted">Last position</dt><dd>${p ? `${p.lat.toFixed(5)}, ${p.lon.toFixed(5)} · ${p.speed_mps != null ? Math.round(p.speed_mps * 3.6) + " km/h" : ""} · ${when(p.time)}` : "none yet"}</dd>
      ${d ? `<dt class="muted">Gateway</dt><dd>${esc(d.name)} · agent ${esc(d.agent_version || "?")}${d.revoked ? " · revoked" : ""}</dd>` : ""}
    </dl>`;
  }

  function overview(o) {
    const a = o.asset || {};
    const st = o.status || {};
    const pos = o.position;
    page.querySelector("#title").textContent = o.name || id;
    const fields = ["kind", "make", "model", "vin", "plate", "vehicle_group", "home_yard", "department", "cost_center"].filter((k) => a[k] != null);
    const c = o.custody;
    body.innerHTML = `<div class="grid2">
      ${section("Status", `<dl>
        <dt class="muted">Last seen</dt><dd>${st.last_seen_ms != null ? `${when(st.last_seen_ms)} (${ago(st.last_seen_ms)})` : "never"}${st.revoked ? " · gateway revoked" : ""}</dd>
        <dt class="muted">Ignition</dt><dd>${esc(st.ignition || "unknown")}</dd>
        <dt class="muted">Last position</dt><dd>${pos ? `${pos.lat.toFixed(5)}, ${pos.lon.toFixed(5)}${pos.speed_mps != null ? " · " + Math.round(pos.speed_mps * 3.6) + " km/h" : ""} · ${when(pos.time_ms)}` : "none yet"}</dd>
        ${a.odometer_km != null ? `<dt class="muted">Odometer</dt><dd>${num(a.odometer_km)} km (${when(a.meter_at_ms)})</dd>` : ""}
        <dt class="muted">Custody</dt><dd>${c ? `badge <code>${esc(String(c.badge_id).slice(0, 8))}</code> via ${esc(c.via)} since ${when(c.since_ms)}` : "in the yard"}</dd>
      </dl>`)}
      ${section("Catalog", o.asset ? `<dl>${fields.map((k) => `<dt class="muted">${esc(k.replace("_", " "))}</dt><dd>${esc(a[k])}</dd>`).join("")}</dl>`
        : `<div class="muted">This gateway is not in the asset catalog yet.</div>`)}
      ${section("Open faults", rowsTable(o.open_faults, [["Code", (f) => esc(f.data.code ?? f.data.spn ?? "?")], ["Since", (f) => when(f.time_ms)], ["Detail", (f) => esc(f.data.description || f.data.fmi || "")]]))}
      ${section("Open defects", rowsTable(o.open_defects, [["Defect", (d) => esc(d.description || d.item || d.id)], ["Severity", (d) => esc(d.severity || "")]]))}
    </div>
    ${section("Coming reservations", rowsTable(o.reservations, [["From", (r) => when(r.start_ms)], ["To", (r) => when(r.end_ms)], ["Status", (r) => `<span class="pill ${esc(r.status)}">${esc(r.status)}</span>`], ["Purpose", (r) => esc(r.purpose || "")]]))}
    ${section("Recent trips", rowsTable(o.recent_trips, [["Ended", (t) => when(t.end_ms)], ["Distance", (t) => t.data.distance_m != null ? num(t.data.distance_m / 1000, 1) + " km" : t.data.distance_km != null ? num(t.data.distance_km, 1) + " km" : "–"], ["Duration", (t) => t.data.duration_s != null ? Math.round(t.data.duration_s / 60) + " min" : "–"]]))}
    ${section("Inspections", rowsTable(o.inspections, [["When", (i) => when(i.inspected_at_ms)], ["Driver", (i) => esc(i.driver)], ["Defects", (i) => esc((i.defects || []).length)]]))}`;
  }
}
