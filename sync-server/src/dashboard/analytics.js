// Analytics: utilization per vehicle (bars), usage by hour and weekday (heatmap),
// idle assets, and cost per km for keys that may see costs. Charts are SVG
// drawn here; every report has a CSV export.

import { api, download } from "./api.js";
import { esc, notice, explain, list, num, money, svgEl } from "./ui.js";

const DAY = 86_400_000;
const REPORTS = {
  utilization: "/api/v1/analytics/utilization",
  heatmap: "/api/v1/analytics/heatmap",
  idle: "/api/v1/analytics/idle",
  costs: "/api/v1/analytics/costs",
};

function isoDay(t) { return new Date(t).toISOString().slice(0, 10); }

export function mount(el, ctx, route) {
  const costs = ctx.can("view_costs");
  const days = Number(route.query.get("days")) || 30;
  el.innerHTML = `<div class="page"><h2>Analytics</h2>
    <div class="toolbar"><label class="field">From<input id="from" type="date"></label><label class="field">To<input id="to" type="date"></label>
      <button type="button" id="run" class="primary">Show</button><span class="grow"></span></div>
    <div class="card" id="utilization"><div class="toolbar"><h3 style="margin:0">Utilization</h3><span class="grow"></span><button type="button" data-csv="utilization">Export CSV</button></div><div class="body"></div></div>
    <div class="card" id="heatmap"><div class="toolbar"><h3 style="margin:0">Usage by hour and weekday</h3><span class="grow"></span><button type="button" data-csv="heatmap">Export CSV</button></div><div class="body"></div></div>
    <div class="card" id="idle"><div class="toolbar"><h3 style="margin:0">Idle assets</h3><span class="grow"></span><button type="button" data-csv="idle">Export CSV</button></div><div class="body"></div></div>
    ${costs ? `<div class="card" id="costs"><div class="toolbar"><h3 style="margin:0">Cost per km</h3><span class="grow"></span><button type="button" data-csv="costs">Export CSV</button></div><div class="body"></div></div>` : ""}
  </div>`;
  const page = el.firstElementChild;
  page.querySelector("#from").value = isoDay(Date.now() - days * DAY);
  page.querySelector("#to").value = isoDay(Date.now());

  const params = () => new URLSearchParams({ from: page.querySelector("#from").value, to: page.querySelector("#to").value });

  async function report(name, render) {
    const box = page.querySelector(`#${name} .body`);
    if (!box) return;
    box.replaceChildren();
    try {
      render(box, await api(`${REPORTS[name]}?${params()}`));
    } catch (e) {
      notice(box, explain(e, "This report"), e.missing ? "warn" : "error");
    }
  }

  function run() {
    report("utilization", utilization);
    report("heatmap", heatmap);
    report("idle", idle);
    if (costs) report("costs", costTable);
  }

  page.querySelector("#run").addEventListener("click", run);
  page.addEventListener("click", async (ev) => {
    const b = ev.target.closest("[data-csv]");
    if (!b) return;
    const name = b.dataset.csv;
    const q = params();
    q.set("format", "csv");
    try {
      const blob = await download(`${REPORTS[name]}?${q}`, `${name}-${q.get("from")}-${q.get("to")}.csv`);
      b.dataset.downloaded = String(blob.size);
    } catch (e) {
      notice(page.querySelector(`#${name} .body`), "The CSV could not be made: " + e.message);
    }
  });
  run();
}

function rowsOf(r) { return list(r, "vehicles", "rows", "items"); }
function pct(v) { return v == null ? null : v > 1.0001 ? v : v * 100; }

function utilization(box, r) {
  const rows = rowsOf(r);
  if (!rows.length) { box.innerHTML = `<div class="empty">No vehicle has data in this period.</div>`; return; }
  const W = 720, bar = 22, gap = 8, left = 150, H = rows.length * (bar + gap) + 30;
  const svg = svgEl("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "utilization per vehicle" });
  const x = (p) => left + ((W - left - 60) * Math.min(100, p)) / 100;
  for (const t of [0, 25, 50, 75, 100]) {
    svg.append(svgEl("line", { x1: x(t), x2: x(t), y1: 0, y2: H - 20, stroke: "#e1e7ec" }));
    const l = svgEl("text", { x: x(t), y: H - 6, "text-anchor": "middle" });
    l.textContent = t + "%";
    svg.append(l);
  }
  rows.forEach((v, i) => {
    const y = i * (bar + gap) + 4;
    const p = pct(v.utilization_pct ?? v.hours_utilization ?? v.utilization) ?? 0;
    const name = svgEl("text", { x: left - 8, y: y + bar * 0.7, "text-anchor": "end" });
    name.textContent = v.name || v.vehicle_name || String(v.id || v.device_id).slice(0, 8);
    svg.append(name);
    svg.append(svgEl("rect", { x: left, y, width: Math.max(0, x(p) - left), height: bar, fill: "#0f5fa6", rx: 3, class: "bar", "data-id": v.id || v.device_id || "" }));
    const days = v.days_used != null ? ` · ${v.days_used}/${v.days_available ?? "?"} days` : "";
    const gaps = v.days_without_data ? ` · ${v.days_without_data} days no data` : "";
    const val = svgEl("text", { x: x(p) + 6, y: y + bar * 0.7 });
    val.textContent = `${num(p, 1)}%${days}${gaps}`;
    svg.append(val);
  });
  box.append(svg);
}

function heatmap(box, r) {
  // 7 rows (Mon..Sun) by 24 hours; values in any unit, shaded against the max.
  const m = r.cells || r.heatmap || r.matrix || r;
  const grid = Array.isArray(m) && Array.isArray(m[0]) ? m : null;
  const cells = grid ? grid.flatMap((row, d) => row.map((v, h) => ({ weekday: d, hour: h, value: v }))) : list(m, "cells");
  if (!cells.length) { box.innerHTML = `<div class="empty">No usage in this period.</div>`; return; }
  const max = Math.max(...cells.map((c) => c.value ?? c.hours ?? 0), 1e-9);
  const cw = 26, ch = 22, left = 40, top = 18;
  const svg = svgEl("svg", { class: "chart", viewBox: `0 0 ${left + 24 * cw + 4} ${top + 7 * ch + 4}`, role: "img", "aria-label": "usage heatmap" });
  ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].forEach((d, i) => { const t = svgEl("text", { x: 4, y: top + i * ch + 15 }); t.textContent = d; svg.append(t); });
  for (let h = 0; h < 24; h += 3) { const t = svgEl("text", { x: left + h * cw + 2, y: 12 }); t.textContent = String(h).padStart(2, "0"); svg.append(t); }
  for (const c of cells) {
    const v = c.value ?? c.hours ?? 0;
    const rect = svgEl("rect", { x: left + c.hour * cw, y: top + c.weekday * ch, width: cw - 2, height: ch - 2, rx: 2, fill: `rgba(15,95,166,${(0.06 + 0.94 * v / max).toFixed(3)})` });
    const t = svgEl("title");
    t.textContent = `${num(v, 1)}`;
    rect.append(t);
    svg.append(rect);
  }
  box.append(svg);
}

function idle(box, r) {
  const rows = rowsOf(r);
  box.innerHTML = rows.length ? `<div class="tablewrap"><table><thead><tr><th>Vehicle</th><th>Last used</th><th class="num">Idle days</th><th>Data</th></tr></thead><tbody>${rows.map((v) =>
    `<tr><td>${esc(v.name || v.vehicle_name || v.id)}</td><td>${esc(v.last_used_day || v.last_used || "never")}</td><td class="num">${num(v.idle_days)}</td><td>${v.data_gap || v.no_data ? `<span class="pill pending">data gap</span>` : "complete"}</td></tr>`).join("")}</tbody></table></div>`
    : `<div class="empty">No idle assets.</div>`;
}

function costTable(box, r) {
  const rows = rowsOf(r);
  if (!rows.length) { box.innerHTML = `<div class="empty">No costs in this period.</div>`; return; }
  const cur = r.currency;
  box.innerHTML = `<div class="tablewrap"><table><thead><tr><th>Vehicle</th><th class="num">Distance</th><th class="num">Fuel</th><th class="num">Maintenance</th><th class="num">Depreciation</th><th class="num">Cost per km</th></tr></thead><tbody>${rows.map((v) =>
    `<tr><td>${esc(v.name || v.vehicle_name || v.id)}</td><td class="num">${num(v.distance_km, 1)} km</td><td class="num">${money(v.fuel_cents, cur)}</td><td class="num">${money(v.maintenance_cents, cur)}</td><td class="num">${money(v.depreciation_cents, cur)}</td><td class="num">${money(v.cost_per_km_cents, cur)}</td></tr>`).join("")}</tbody></table></div>
    <p class="muted">${esc(r.formula || "Cost per km = (fuel + maintenance + depreciation) ÷ distance, with the vehicle's own meter readings.")}</p>`;
}
