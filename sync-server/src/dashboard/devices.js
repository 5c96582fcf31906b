// Devices: enrolled gateways and kiosks with their health, device groups and
// config rollouts through the control-plane API.

import { api } from "./api.js";
import { esc, ago, ms, when, notice, explain, list, num } from "./ui.js";

const EXAMPLE = { thresholds: { speeding_limit_kmh: 90, idle_after_s: 300 } };

export function mount(el, ctx) {
  const manage = ctx.can("manage_devices"), config = ctx.can("manage_config");
  el.innerHTML = `<div class="page"><h2>Devices</h2>
    <div class="tablewrap"><table><thead><tr><th></th><th>Name</th><th>State</th><th>Last seen</th><th class="num">Events</th><th class="num">Queue</th><th class="num">Disk</th><th>Config</th><th>Agent</th></tr></thead><tbody id="rows"></tbody></table></div>
    <h3>Groups and config rollout</h3>
    <div class="toolbar">${manage ? `<input id="gname" placeholder="New group name" aria-label="group name"><button id="gcreate" type="button">Create group</button><select id="gpick" aria-label="group"></select><button id="gassign" type="button">Move selected devices to group</button>` : `<span class="muted">Your key may look but not change groups.</span>`}</div>
    <div id="groups"></div></div>`;
  const page = el.firstElementChild;
  let devices = [], groups = [];

  async function load() {
    try {
      const [ds, vs, gs] = await Promise.all([api("/api/v1/devices"), api("/api/v1/vehicles").catch(() => []), api("/api/v1/device-groups")]);
      const online = new Map(list(vs, "vehicles").map((v) => [v.id, v]));
      devices = list(ds, "devices").map((d) => ({ ...d, online: online.get(d.id)?.online }));
      groups = list(gs, "groups");
      // Each device's own status report (queue, disk, config) is on its detail.
      const details = await Promise.all(devices.slice(0, 200).map((d) => api(`/api/v1/devices/${d.id}`).catch(() => null)));
      details.forEach((x, i) => { if (x) devices[i] = { ...devices[i], ...x }; });
      page.querySelectorAll(".notice.error").forEach((n) => n.remove());
      render();
    } catch (e) {
      notice(page, explain(e, "The device list"));
    }
  }

  function render() {
    const selected = new Set([...page.querySelectorAll("input.pick:checked")].map((c) => c.value));
    page.querySelector("#rows").innerHTML = devices.length ? devices.map((d) => {
      const st = d.status || {};
      const state = d.revoked ? "revoked" : d.online ? "online" : "offline";
      return `<tr data-id="${esc(d.id)}"><td><input class="pick" type="checkbox" value="${esc(d.id)}" aria-label="select ${esc(d.name)}" ${selected.has(d.id) ? "checked" : ""}></td>
        <td><b>${esc(d.name)}</b>${d.kind === "kiosk" ? ` <span class="pill kiosk" title="a yard kiosk: not listed among the vehicles">kiosk</span>` : ""}</td><td><span class="pill ${state === "online" ? "driving" : ""}">${state}</span></td>
        <td>${ago(ms(d.last_seen))}</td><td class="num">${num(d.event_count)}</td><td class="num">${num(st.queue_depth)}</td>
        <td class="num">${st.disk_used_bytes != null ? num(st.disk_used_bytes / 1048576, 1) + " MB" : "–"}</td>
        <td>${st.config_version != null ? "v" + esc(st.config_version) : "–"}${st.config_error ? ` <span class="pill rejected" title="${esc(st.config_error)}">error</span>` : ""}</td>
        <td class="muted">${esc(d.agent_version || st.agent_version || "–")}</td></tr>`;
    }).join("") : `<tr><td colspan="9" class="empty">No devices: create an enrollment token and enroll one.</td></tr>`;
    const pick = page.querySelector("#gpick");
    if (pick) pick.innerHTML = groups.map((g) => `<option value="${esc(g.id)}">${esc(g.name)}</option>`).join("");
    page.querySelector("#groups").innerHTML = groups.length ? groups.map((g) => {
      const roll = (g.rollouts || []).slice().sort((a, b) => b.version - a.version);
      return `<div class="card" data-group="${esc(g.id)}"><div class="toolbar"><b>${esc(g.name)}</b><span class="muted">${(g.devices || []).length} devices</span></div>
        ${roll.length ? `<div class="tablewrap"><table><thead><tr><th>Version</th><th>State</th><th>Stage</th><th>Reason</th></tr></thead><tbody>${roll.map((r) =>
          `<tr><td>v${esc(r.version)}</td><td>${esc(r.state)}</td><td>${r.stage ? `${esc(r.stage)} of ${r.stages.length} (${esc(r.stage_percent)}%)` : "–"}</td><td>${esc(r.reason || "")}</td></tr>`).join("")}</tbody></table></div>` : `<div class="muted">No config pushed yet.</div>`}
        ${config ? `<details><summary>Push a new config</summary>
          <label class="field">Config (JSON: sampling, thresholds, geofences, kiosk)<textarea class="cfg">${esc(JSON.stringify(EXAMPLE, null, 2))}</textarea></label>
          <div class="toolbar"><label class="field">Stages (%)<input class="stages" value="10, 100"></label><button type="button" class="push primary">Start rollout</button></div></details>` : ""}
      </div>`;
    }).join("") : `<div class="muted">No device groups yet.</div>`;
  }

  page.addEventListener("click", async (ev) => {
    const b = ev.target.closest("button");
    if (!b) return;
    try {
      if (b.id === "gcreate") {
        const name = page.querySelector("#gname").value.trim();
        if (!name) return;
        await api("/api/v1/device-groups", { method: "POST", body: { name } });
      } else if (b.id === "gassign") {
        const ids = [...page.querySelectorAll("input.pick:checked")].map((c) => c.value);
        if (!ids.length) return;
        await api(`/api/v1/device-groups/${page.querySelector("#gpick").value}/devices`, { method: "POST", body: { devices: ids } });
      } else if (b.classList.contains("push")) {
        const card = b.closest("[data-group]");
        let cfg;
        try { cfg = JSON.parse(card.querySelector(".cfg").value); } catch (e) { notice(card, "The config is not valid JSON: " + e.message); return; }
        const stages = card.querySelector(".stages").value.split(",").map((s) => Number(s.trim())).filter((n) => n > 0);
        await api(`/api/v1/device-groups/${card.dataset.group}/config`, { method: "POST", body: { config: cfg, rollout: { stages } } });
      } else return;
      await load();
      notice(page, "Saved.", "ok");
    } catch (e) {
      notice(page, e.message);
    }
  });

  load();
  const t = setInterval(load, 30_000);
  return () => clearInterval(t);
}
