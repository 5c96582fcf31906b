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
    ${costs ? `<div class="card" id="costs"><div class="toolbar"><h3 style="margin:0">Costs, TCO and ROI</h3><span class="grow"></span><button type="button" data-csv="costs">Export CSV</button></div><div class="body"></div></div>` : ""}
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
function pct(v) { return v == null ? null : v * 100; }
function formula(f) {
  if (!f) return "";
  const lines = typeof f === "string" ? [f] : Object.values(f);
  return `<div class="muted formula">${lines.map((l) => `<div><code>${esc(l)}</code></div>`).join("")}</div>`;
}

function utilization(box, r) {
  const rows = rowsOf(r);
  if (!rows.length) { box.innerHTML = `<div class="empty">No vehicles in this period.</div>`; return; }
  const W = 760, bar = 22, gap = 8, left = 140, right = 220, H = rows.length * (bar + gap) + 30;
  const svg = svgEl("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "engine-on hours against target, per vehicle" });
  const x = (p) => left + ((W - left - right) * Math.min(100, p)) / 100;
  for (const t of [0, 25, 50, 75, 100]) {
    svg.append(svgEl("line", { x1: x(t), x2: x(t), y1: 0, y2: H - 20, stroke: "#e1e7ec" }));
    const l = svgEl("text", { x: x(t), y: H - 6, "text-anchor": "middle" });
    l.textContent = t + "%";
    svg.append(l);
  }
  rows.forEach((v, i) => {
    const y = i * (bar + gap) + 4;
    const p = pct(v.hours_utilization) ?? 0;
    const name = svgEl("text", { x: left - 8, y: y + bar * 0.7, "text-anchor": "end" });
    name.textContent = v.name || String(v.id).slice(0, 8);
    svg.append(name);
    // Days without data are drawn apart, so "unused" is never read into "no data".
    svg.append(svgEl("rect", { x: left, y, width: x(100) - left, height: bar, fill: "#f3f5f7", rx: 3 }));
    svg.append(svgEl("rect", { x: left, y, width: Math.max(0, x(p) - left), height: bar, fill: "#0f5fa6", rx: 3, class: "bar", "data-id": v.id, "data-value": v.hours_utilization }));
    const val = svgEl("text", { x: x(100) + 8, y: y + bar * 0.7 });
    val.textContent = `${num(p, 1)}% · ${v.days_used}/${v.days_with_data} days used${v.days_no_data ? ` · ${v.days_no_data} without data` : ""}`;
    svg.append(val);
  });
  box.append(svg);
  const groups = list(r, "groups");
  if (groups.length) {
    box.insertAdjacentHTML("beforeend", `<div class="tablewrap"><table><thead><tr><th>Group</th><th class="num">Vehicles</th><th class="num">Hours used</th><th class="num">Days used</th><th class="num">Days without data</th></tr></thead><tbody>${groups.map((g) =>
      `<tr><td>${esc(g.group || "(none)")}</td><td class="num">${num(g.vehicles)}</td><td class="num">${num(pct(g.hours_utilization), 1)}%</td><td class="num">${num(pct(g.days_utilization), 1)}%</td><td class="num">${num(g.days_no_data)}</td></tr>`).join("")}</tbody></table></div>`);
  }
  box.insertAdjacentHTML("beforeend", formula(r.formula));
}

function heatmap(box, r) {
  // `hours`: 7 rows (weekdays, from Monday) by 24 hours of the day.
  const grid = Array.isArray(r.hours) ? r.hours : [];
  if (!grid.length) { box.innerHTML = `<div class="empty">No usage in this period.</div>`; return; }
  const days = (r.weekdays || ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]).map((d) => d[0].toUpperCase() + d.slice(1));
  const max = Math.max(...grid.flat(), 1e-9);
  const cw = 28, ch = 22, left = 40, top = 18;
  const svg = svgEl("svg", { class: "chart", viewBox: `0 0 ${left + 24 * cw + 4} ${top + grid.length * ch + 4}`, role: "img", "aria-label": "usage by hour and weekday" });
  days.forEach((d, i) => { const t = svgEl("text", { x: 4, y: top + i * ch + 15 }); t.textContent = d; svg.append(t); });
  for (let h = 0; h < 24; h += 3) { const t = svgEl("text", { x: left + h * cw + 2, y: 12 }); t.textContent = String(h).padStart(2, "0"); svg.append(t); }
  grid.forEach((row, d) => row.forEach((v, h) => {
    const rect = svgEl("rect", { x: left + h * cw, y: top + d * ch, width: cw - 2, height: ch - 2, rx: 2, fill: `rgba(15,95,166,${(0.05 + 0.95 * v / max).toFixed(3)})` });
    const t = svgEl("title");
    t.textContent = `${days[d]} ${String(h).padStart(2, "0")}:00 · ${num(v, 2)} ${String(r.unit || "").replace(/_/g, " ")}`;
    rect.append(t);
    svg.append(rect);
  }));
  box.append(svg);
  box.insertAdjacentHTML("beforeend", `<div class="muted">${esc(String(r.unit || "").replace(/_/g, " "))}, ${r.utc_offset_min ? `UTC${r.utc_offset_min > 0 ? "+" : ""}${r.utc_offset_min / 60}` : "UTC"}</div>`);
}

function idle(box, r) {
  const table = (rows, empty) => rows.length ? `<div class="tablewrap"><table><thead><tr><th>Vehicle</th><th>Group</th><th>Last used</th><th>Last data</th><th class="num">Days with data</th><th class="num">Days without</th></tr></thead><tbody>${rows.map((v) =>
    `<tr><td>${esc(v.name || v.id)}</td><td>${esc(v.group || "")}</td><td>${esc(v.last_used_day || "not in window")}</td><td>${esc(v.last_data_day || "none")}</td><td class="num">${num(v.days_with_data)}</td><td class="num">${num(v.days_no_data)}</td></tr>`).join("")}</tbody></table></div>` : `<div class="empty">${empty}</div>`;
  box.innerHTML = `<div class="muted">Not used for ${esc(r.days ?? 7)} days:</div>${table(list(r, "idle"), "No idle vehicles.")}
    <h3>Data gaps (reported apart from idle)</h3>${table(list(r, "data_gaps"), "No vehicle is missing data.")}
    ${r.rule ? `<div class="muted">${esc(r.rule)}</div>` : ""}`;
}

function costTable(box, r) {
  const rows = rowsOf(r);
  if (!rows.length) { box.innerHTML = `<div class="empty">No costs in this period.</div>`; return; }
  box.innerHTML = `<div class="tablewrap"><table><thead><tr><th>Vehicle</th><th class="num">Distance</th><th class="num">Fuel</th><th class="num">Maintenance</th><th class="num">Depreciation</th><th class="num">Total</th><th class="num">Per km</th><th class="num">ROI</th></tr></thead><tbody>${rows.map((v) => {
    const c = v.currency;
    return `<tr><td>${esc(v.name || v.id)}</td><td class="num">${num(v.meter_distance_km, 1)} km</td><td class="num">${money(v.fuel_cents, c)}</td><td class="num">${money(v.maintenance_cents, c)}</td><td class="num">${money(v.depreciation_cents, c)}</td><td class="num">${money(v.total_cents, c)}</td><td class="num">${money(v.cost_per_km_cents, c)}</td><td class="num">${v.roi == null ? "–" : num(v.roi * 100, 1) + "%"}</td></tr>`;
  }).join("")}</tbody></table></div>${formula(r.formula)}`;
}
