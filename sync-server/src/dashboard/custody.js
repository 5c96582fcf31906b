// The custody board: who holds what and since when, overdue returns, and the
// conflicts two offline kiosks made, with a form to resolve each.

import { api } from "./api.js";
import { esc, ago, ms, when, notice, explain, list } from "./ui.js";

export function mount(el, ctx) {
  const canResolve = ctx.can("custody");
  el.innerHTML = `<div class="page"><h2>Custody</h2>
    <h3>Conflicts to resolve</h3><div id="conflicts"></div>
    <h3>Who has what</h3><div id="board"></div></div>`;
  const page = el.firstElementChild;

  async function loadBoard() {
    const box = page.querySelector("#board");
    let items, rich = true;
    try {
      const board = await api("/api/v1/custody/board");
      items = list(board, "out");
    } catch (e) {
      if (!e.missing) { box.replaceChildren(); notice(box, explain(e, "The custody board")); return; }
      // Older servers: holders by asset id from the kiosk custody log.
      rich = false;
      try {
        items = list(await api("/api/v1/custody"), "assets");
      } catch (e2) {
        box.replaceChildren();
        notice(box, explain(e2, "Custody"));
        return;
      }
    }
    const held = rich ? items : items.filter((a) => a.holder);
    box.innerHTML = held.length ? `<div class="tablewrap"><table><thead><tr><th>Asset</th><th>Holder</th><th>Since</th><th>Due</th><th>Where</th></tr></thead><tbody>${held.map((a) => {
      const h = a.holder || {};
      const since = ms(a.since_ms ?? h.at_ms ?? a.checked_out_at_ms);
      const due = ms(a.due_back_ms);
      const overdue = a.overdue || (due != null && due < Date.now());
      return `<tr data-asset="${esc(a.asset_id || a.id)}"><td><b>${esc(a.asset_name || a.name || (a.asset_id || a.id || "").slice(0, 8))}</b>${a.kind ? ` <span class="muted">${esc(a.kind)}</span>` : ""}</td>
        <td>${esc(a.holder_name || (a.badge_id || h.badge || "–").slice(0, 8))}</td>
        <td>${when(since)} <span class="muted">(${ago(since)})</span></td>
        <td>${due != null ? when(due) : "–"}${overdue ? ` <span class="pill rejected">overdue</span>` : ""}</td>
        <td class="muted">${esc(a.via || h.kiosk || "")}</td></tr>`;
    }).join("")}</tbody></table></div>` : `<div class="empty">Nothing is checked out.</div>`;
    if (!rich) notice(box, "Names, due times and overdue returns need the custody board endpoint; this server shows holders by id.", "warn");
  }

  async function loadConflicts() {
    const box = page.querySelector("#conflicts");
    try {
      const cs = list(await api("/api/v1/custody/conflicts"), "conflicts");
      box.innerHTML = cs.length ? cs.map((c) => `<div class="card conflict" data-id="${esc(c.id)}">
        <div><b>Asset ${esc(c.asset_name || c.asset_id)}</b> <span class="muted">detected ${when(c.detected_at)}</span></div>
        <div class="grid2" style="margin:8px 0">${[c.first, c.second].map((op, i) => `<div>
          <b>${i ? "Second" : "First"}:</b> ${esc(op.op.replace("_", " "))} by badge <code>${esc(op.badge_name || op.badge)}</code> at kiosk ${esc(op.kiosk)}, ${when(op.at_ms)}</div>`).join("")}</div>
        ${canResolve ? `<form class="resolve toolbar">
          <select name="holder" aria-label="who holds it now">
            <option value="${esc(c.first.badge)}">Held by the first badge</option>
            <option value="${esc(c.second.badge)}">Held by the second badge</option>
            <option value="">Back in the yard (no holder)</option>
          </select>
          <input name="note" required maxlength="1000" placeholder="What happened (required)" aria-label="note" class="grow">
          <button class="primary" type="submit">Resolve</button></form>` : `<div class="muted">Your key may not resolve conflicts.</div>`}
      </div>`).join("") : `<div class="empty" id="no-conflicts">No open conflicts.</div>`;
    } catch (e) {
      box.replaceChildren();
      notice(box, explain(e, "Custody conflicts"));
    }
  }

  page.addEventListener("submit", async (ev) => {
    const form = ev.target.closest("form.resolve");
    if (!form) return;
    ev.preventDefault();
    const card = form.closest(".conflict");
    const note = form.note.value.trim();
    if (!note) return;
    try {
      await api(`/api/v1/custody/conflicts/${card.dataset.id}/resolve`, { method: "POST", body: { note, holder_badge: form.holder.value || null } });
      await Promise.all([loadConflicts(), loadBoard()]);
      notice(page.querySelector("#conflicts"), "Conflict resolved.", "ok");
    } catch (e) {
      notice(card, e.message);
    }
  });

  const off = ctx.live.on((m) => { if (m.kind === "custody" || m.type === "reload") { loadBoard(); loadConflicts(); } });
  loadConflicts();
  loadBoard();
  return off;
}
