// The reservations calendar (day, week, month): book a vehicle, approve or
// reject a pending booking, cancel, and subscribe to a vehicle's calendar feed.

import { api } from "./api.js";
import { esc, when, notice, explain, list, localInput } from "./ui.js";

const DAY = 86_400_000;

function startOfDay(t) { const d = new Date(t); d.setHours(0, 0, 0, 0); return d.getTime(); }
function startOfWeek(t) { const d = new Date(startOfDay(t)); const wd = (d.getDay() + 6) % 7; return d.getTime() - wd * DAY; }
function startOfMonth(t) { const d = new Date(t); return new Date(d.getFullYear(), d.getMonth(), 1).getTime(); }
function addDays(t, n) { const d = new Date(t); d.setDate(d.getDate() + n); return d.getTime(); }

/** The days a view shows: [first, last) and the cells. */
export function range(view, cursor) {
  if (view === "day") { const a = startOfDay(cursor); return { from: a, to: addDays(a, 1), days: [a], cols: 1 }; }
  if (view === "week") { const a = startOfWeek(cursor); const days = [...Array(7)].map((_, i) => addDays(a, i)); return { from: a, to: addDays(a, 7), days, cols: 7 }; }
  const first = startOfMonth(cursor), a = startOfWeek(first);
  const next = new Date(first); next.setMonth(next.getMonth() + 1);
  const days = [];
  for (let d = a; d < next.getTime() || days.length % 7; d = addDays(d, 1)) days.push(d);
  return { from: a, to: addDays(days[days.length - 1], 1), days, cols: 7 };
}

export function mount(el, ctx, route) {
  const manage = ctx.can("manage_reservations"), approve = ctx.can("approve_reservations");
  const st = { view: route.query.get("view") || "week", cursor: Date.now(), items: [], vehicles: [], selected: null };
  el.innerHTML = `<div class="page"><h2>Reservations</h2>
    <div class="toolbar">
      <button type="button" data-nav="-1" aria-label="earlier">‹</button><button type="button" data-nav="0">Today</button><button type="button" data-nav="1" aria-label="later">›</button>
      <b id="label"></b><span class="grow"></span>
      ${["day", "week", "month"].map((v) => `<button type="button" data-view="${v}">${v[0].toUpperCase() + v.slice(1)}</button>`).join("")}
      ${manage ? `<button type="button" class="primary" id="new">Book a vehicle</button>` : ""}
    </div>
    <form id="book" class="card" hidden>
      <div class="toolbar">
        <label class="field">Vehicle<select name="vehicle" required></select></label>
        <label class="field">From<input name="start" type="datetime-local" required></label>
        <label class="field">To<input name="end" type="datetime-local" required></label>
        <label class="field">User<select name="user"></select></label>
        <label class="field grow">Purpose<input name="purpose" maxlength="200" placeholder="What for"></label>
      </div>
      <div class="toolbar"><button class="primary" type="submit">Request booking</button><button type="button" id="cancelbook">Close</button></div>
    </form>
    <div id="detail"></div>
    <div id="cal"></div></div>`;
  const page = el.firstElementChild;
  const form = page.querySelector("#book");

  async function loadVehicles() {
    try {
      st.vehicles = list(await api("/api/v1/assets?kind=vehicle"), "assets", "items").filter((a) => !a.kind || a.kind === "vehicle");
    } catch {
      st.vehicles = [];
    }
    form.vehicle.innerHTML = st.vehicles.map((v) => `<option value="${esc(v.id)}">${esc(v.name)}</option>`).join("");
    let users = [];
    try { users = list(await api("/api/v1/users"), "users"); } catch { /* a key that may not list users books as itself */ }
    const me = ctx.me && ctx.me.user;
    st.users = users;
    form.user.innerHTML = (me ? [me] : []).concat(users.filter((u) => !me || u.id !== me.id))
      .map((u) => `<option value="${esc(u.id)}">${esc(u.name || u.email)}</option>`).join("") || `<option value="">(you)</option>`;
  }

  async function load() {
    const r = range(st.view, st.cursor);
    try {
      const items = [];
      let after = null;
      // Pages of 500 until the server says there is no next one (a month is rarely more than one).
      for (let i = 0; i < 20; i++) {
        const q = new URLSearchParams({ from_ms: r.from, to_ms: r.to, limit: 500 });
        if (after) q.set("after", after);
        const page = await api(`/api/v1/reservations?${q}`);
        items.push(...list(page, "reservations"));
        after = page && page.next;
        if (!after) break;
      }
      st.items = items;
      page.querySelectorAll("#cal .notice").forEach((n) => n.remove());
      st.error = null;
    } catch (e) {
      st.items = [];
      st.error = explain(e, "Reservations");
    }
    render();
  }

  const userName = (id) => ((st.users || []).find((u) => u.id === id) || {}).name || "driver " + String(id).slice(0, 8);
  const name = (id) => (st.vehicles.find((v) => v.id === id) || {}).name || String(id).slice(0, 8);

  function render() {
    for (const b of page.querySelectorAll("[data-view]")) b.classList.toggle("on", b.dataset.view === st.view);
    const r = range(st.view, st.cursor);
    const fmt = { day: { dateStyle: "full" }, week: { month: "long", day: "numeric" }, month: { month: "long", year: "numeric" } }[st.view];
    page.querySelector("#label").textContent = st.view === "week" ? `Week of ${new Date(r.from).toLocaleDateString([], fmt)}` : new Date(st.view === "month" ? st.cursor : r.from).toLocaleDateString([], fmt);
    const cal = page.querySelector("#cal");
    const heads = st.cols === 1 ? "" : "";
    const today = startOfDay(Date.now());
    const head = r.cols === 7 ? ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].map((d) => `<div class="hd">${d}</div>`).join("") : heads;
    cal.innerHTML = `<div class="cal" style="grid-template-columns:repeat(${r.cols},minmax(0,1fr))">${head}${r.days.map((d) => {
      const end = addDays(d, 1);
      const here = st.items.filter((b) => b.start_ms < end && b.end_ms > d).sort((a, b) => a.start_ms - b.start_ms);
      return `<div class="cell ${d === today ? "today" : ""}" data-day="${d}"><div class="date">${new Date(d).toLocaleDateString([], { weekday: r.cols === 1 ? "long" : undefined, day: "numeric", month: "short" })}</div>
        ${here.map((b) => `<button type="button" class="booking ${esc(b.status)}" data-id="${esc(b.id)}" data-status="${esc(b.status)}">
          ${new Date(b.start_ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })} ${esc(b.vehicle_name || name(b.vehicle_id))} · ${esc(b.status)}</button>`).join("")}</div>`;
    }).join("")}</div>`;
    if (st.error) notice(cal, st.error);
    renderDetail();
  }

  function renderDetail() {
    const box = page.querySelector("#detail");
    const b = st.items.find((x) => x.id === st.selected);
    if (!b) { box.replaceChildren(); return; }
    box.innerHTML = `<div class="card" id="booking-detail" data-id="${esc(b.id)}">
      <div class="toolbar"><b>${esc(b.vehicle_name || name(b.vehicle_id))}</b><span class="pill ${esc(b.status)}">${esc(b.status)}</span><span class="grow"></span><button type="button" data-act="close">Close</button></div>
      <div>${when(b.start_ms)} – ${when(b.end_ms)}${b.purpose ? " · " + esc(b.purpose) : ""}${" · " + esc(userName(b.user_id))}</div>
      ${b.reason ? `<div class="muted">Reason: ${esc(b.reason)}</div>` : ""}
      <div class="toolbar" style="margin-top:10px">
        ${approve && b.status === "pending" ? `<button type="button" class="primary" data-act="approve">Approve</button>
          <input id="reason" placeholder="Reason to reject" aria-label="reason"><button type="button" class="danger" data-act="reject">Reject</button>` : ""}
        ${manage && ["pending", "approved"].includes(b.status) ? `<button type="button" data-act="cancel">Cancel booking</button>` : ""}
        <button type="button" data-act="feed" title="makes a new private link; the previous one stops working">Calendar feed of this vehicle</button>
      </div><div id="feed"></div></div>`;
  }

  page.addEventListener("click", async (ev) => {
    const b = ev.target.closest("button");
    if (!b) return;
    if (b.dataset.view) { st.view = b.dataset.view; load(); return; }
    if (b.dataset.nav != null) {
      const n = Number(b.dataset.nav);
      if (n === 0) st.cursor = Date.now();
      else if (st.view === "month") { const d = new Date(st.cursor); d.setMonth(d.getMonth() + n); st.cursor = d.getTime(); }
      else st.cursor = addDays(st.cursor, n * (st.view === "week" ? 7 : 1));
      load();
      return;
    }
    if (b.id === "new") { openForm(startOfDay(st.cursor) + 9 * 3_600_000); return; }
    if (b.id === "cancelbook") { form.hidden = true; return; }
    if (b.classList.contains("booking")) { st.selected = b.dataset.id; renderDetail(); return; }
    const act = b.dataset.act;
    if (!act) return;
    const id = st.selected;
    try {
      if (act === "close") { st.selected = null; renderDetail(); return; }
      if (act === "approve") await api(`/api/v1/reservations/${id}/approve`, { method: "POST", body: {} });
      if (act === "reject") {
        const reason = page.querySelector("#reason").value.trim();
        if (!reason) { page.querySelector("#reason").focus(); return; }
        await api(`/api/v1/reservations/${id}/reject`, { method: "POST", body: { reason } });
      }
      if (act === "cancel") await api(`/api/v1/reservations/${id}/cancel`, { method: "POST", body: {} });
      if (act === "feed") { await showFeed(id); return; }
      await load();
    } catch (e) {
      notice(page.querySelector("#detail"), e.message);
    }
  });

  async function showFeed(id) {
    const b = st.items.find((x) => x.id === id);
    const f = await api(`/api/v1/calendar/tokens`, { method: "POST", body: { subject: "vehicle", id: b.vehicle_id } });
    const url = new URL(f.path, location.origin).href;
    page.querySelector("#feed").innerHTML = `<p>Subscribe in Outlook or Google Calendar: <code id="feed-url">${esc(url)}</code></p>`;
  }

  // Clicking an empty part of a day books from 09:00 that day.
  page.querySelector("#cal").addEventListener("dblclick", (ev) => {
    const cell = ev.target.closest(".cell");
    if (cell && manage) openForm(Number(cell.dataset.day) + 9 * 3_600_000);
  });

  function openForm(start) {
    form.hidden = false;
    form.start.value = localInput(start);
    form.end.value = localInput(start + 4 * 3_600_000);
    if (!st.vehicles.length) notice(form, "There are no vehicles in the asset catalog to book.", "warn");
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = {
      vehicle_id: form.vehicle.value,
      start_ms: new Date(form.start.value).getTime(),
      end_ms: new Date(form.end.value).getTime(),
    };
    if (form.user.value) body.user_id = form.user.value;
    if (form.purpose.value.trim()) body.purpose = form.purpose.value.trim();
    try {
      const r = await api("/api/v1/reservations", { method: "POST", body });
      form.hidden = true;
      st.cursor = body.start_ms;
      st.selected = r && r.id;
      await load();
      notice(page.querySelector("#detail"), `Booked: ${r.status || "pending"}.`, "ok");
    } catch (e) {
      notice(form, e.message);
    }
  });

  const off = ctx.live.on((m) => { if (m.kind === "reservation") load(); });
  loadVehicles().then(load);
  return off;
}
