// The kiosk's touch screen: polls /api/state and posts what the driver does.
"use strict";

const $ = (id) => document.getElementById(id);
let state = null;
let marks = [];
let signed = false;

async function post(path, body) {
  const r = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? "" : JSON.stringify(body),
  });
  const v = await r.json();
  if (!r.ok) {
    showError(v.error ? v.error.message : "failed");
    return null;
  }
  render(v);
  return v;
}

function showError(message) {
  const res = $("result");
  res.hidden = false;
  res.className = "refused";
  res.dataset.code = "error";
  res.textContent = message;
}

const PROMPTS = {
  idle: "Scan your badge or a vehicle tag",
  badge_scanned: "Now scan the vehicle or its key tag",
  asset_scanned: "Now scan your badge",
  confirm: "Ready: take the key?",
  check_in: "Check in",
  checked_out: "Take your key",
  checked_in: "Checked in",
  refused: "Not possible",
};

function render(v) {
  const prev = state ? state.step : null;
  state = v;
  $("where").textContent = `${v.kiosk} · ${v.yard}`;
  $("net").textContent = v.online ? "Online" : "Offline";
  $("net").className = v.online ? "online" : "offline";
  $("unsynced").textContent = v.unsynced === null ? "?" : String(v.unsynced);
  $("prompt").textContent = PROMPTS[v.step] || v.step;
  document.body.dataset.step = v.step;
  const f = v.flow;
  let detail = "";
  if (v.step === "badge_scanned") detail = `Driver: ${f.driver}`;
  if (v.step === "asset_scanned") detail = `Vehicle: ${f.asset.name}`;
  if (v.step === "confirm" || v.step === "checked_out") {
    const c = f.checkout;
    const due = new Date(c.approval.due_ms).toISOString().slice(0, 16).replace("T", " ");
    detail = `${c.asset.name} for ${c.driver}` +
      (c.asset.slot === null ? "" : `, key slot ${c.asset.slot}`) + `. Due back ${due} UTC.`;
  }
  if (v.step === "check_in") detail = `${f.checkin.asset.name}`;
  if (v.step === "refused") detail = f.message;
  $("detail").textContent = detail;
  const res = $("result");
  if (v.last && (v.step === "refused" || v.step === "checked_out" || v.step === "checked_in" || v.last.code === "door_open")) {
    res.hidden = false;
    res.className = v.last.ok ? "ok" : "refused";
    res.dataset.code = v.last.code;
    res.textContent = v.last.message;
  } else if (v.step !== prev) {
    res.hidden = true;
  }
  renderVehicle(v);
  $("confirm-box").hidden = v.step !== "confirm";
  $("checkin-box").hidden = v.step !== "check_in";
  $("cancel").hidden = v.step === "idle";
  if (v.step === "check_in") {
    const form = f.checkin.form;
    document.querySelectorAll(".rate").forEach((b) => {
      b.classList.toggle("chosen", Number(b.dataset.rating) === form.rating);
    });
    $("photo-state").textContent = form.photo ? "Photo taken" : (v.camera ? "" : "No camera");
  } else if (prev === "check_in" || prev === null) {
    resetForm();
  }
}

// Readings and open defects of the vehicle at hand; on an unsafe-defect
// refusal, what the defects are.
function utc(ms) {
  return new Date(ms).toISOString().slice(0, 16).replace("T", " ") + " UTC";
}
function renderVehicle(v) {
  const f = v.flow;
  let defects = [];
  let meters = "";
  if (v.step === "refused" && f.reason && f.reason.code === "unsafe_defect") {
    defects = (f.reason.defects || []).map((text) => ({ text, unsafe: true }));
  } else if (v.vehicle) {
    defects = v.vehicle.defects.map((d) => ({
      text: d.item ? `${d.item}: ${d.note}` : d.note,
      unsafe: d.unsafe,
    }));
    const m = v.vehicle.meters;
    const parts = [];
    if (m && m.odometer_km !== null) {
      parts.push(`Odometer ${Math.round(m.odometer_km).toLocaleString("en-GB")} km (${utc(m.odometer_at_ms)})`);
    }
    if (m && m.fuel_pct !== null) {
      parts.push(`Fuel ${Math.round(m.fuel_pct)}% (${utc(m.fuel_at_ms)})`);
    }
    if (v.step === "check_in") meters = parts.length ? parts.join(" · ") : "No recent odometer or fuel reading";
  }
  const show = v.step === "check_in" || defects.length > 0;
  $("vehicle-box").hidden = !show;
  $("meters").textContent = meters;
  $("meters").hidden = meters === "";
  $("defects-box").hidden = defects.length === 0;
  $("defects-title").textContent = v.step === "refused" ? "Why: open safety defects" : "Open defects";
  const list = $("defects");
  list.replaceChildren(...defects.map((d) => {
    const li = document.createElement("li");
    li.textContent = d.text;
    li.className = d.unsafe ? "unsafe" : "";
    return li;
  }));
}

function resetForm() {
  marks = [];
  drawMarks();
  $("notes").value = "";
  clearSig();
}

async function poll() {
  try {
    const r = await fetch("/api/state");
    render(await r.json());
  } catch (e) {
    $("net").textContent = "Kiosk service not answering";
  }
}

// Manual code entry.
$("enter-code").addEventListener("click", async () => {
  const text = $("code").value.trim();
  if (!text) return;
  $("code").value = "";
  await post("/api/scan", { text });
});
$("code").addEventListener("keydown", (e) => {
  if (e.key === "Enter") $("enter-code").click();
});
$("confirm").addEventListener("click", () => post("/api/confirm"));
$("cancel").addEventListener("click", () => post("/api/cancel"));

// Check-in form.
document.querySelectorAll(".rate").forEach((b) =>
  b.addEventListener("click", () => post("/api/checkin/rating", { rating: Number(b.dataset.rating) })));
$("photo").addEventListener("click", () => post("/api/checkin/photo"));

function drawMarks() {
  const box = $("damage");
  box.querySelectorAll(".mark").forEach((m) => m.remove());
  for (const m of marks) {
    const d = document.createElement("div");
    d.className = "mark";
    d.style.left = `${m.x * 100}%`;
    d.style.top = `${m.y * 100}%`;
    box.appendChild(d);
  }
}
$("damage").addEventListener("pointerdown", (e) => {
  const r = $("damage").getBoundingClientRect();
  if (marks.length >= 32) return;
  marks.push({ x: (e.clientX - r.left) / r.width, y: (e.clientY - r.top) / r.height, note: "" });
  drawMarks();
});
$("clear-damage").addEventListener("click", () => { marks = []; drawMarks(); });

// Signature pad: touch, pen and mouse through pointer events.
const pad = $("sigpad");
const ctx = pad.getContext("2d");
let drawing = false;
function clearSig() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  signed = false;
}
function at(e) {
  const r = pad.getBoundingClientRect();
  return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
}
pad.addEventListener("pointerdown", (e) => {
  drawing = true;
  pad.setPointerCapture(e.pointerId);
  const [x, y] = at(e);
  ctx.beginPath();
  ctx.moveTo(x, y);
});
pad.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  const [x, y] = at(e);
  ctx.lineWidth = 3;
  ctx.lineCap = "round";
  ctx.strokeStyle = "#000";
  ctx.lineTo(x, y);
  ctx.stroke();
  signed = true;
});
pad.addEventListener("pointerup", () => { drawing = false; });
$("clear-sig").addEventListener("click", clearSig);

$("submit").addEventListener("click", async () => {
  if (!signed) {
    showError("Please sign in the box first.");
    return;
  }
  if (!(await post("/api/checkin/notes", { notes: $("notes").value }))) return;
  if (!(await post("/api/checkin/damage", { marks }))) return;
  if (!(await post("/api/checkin/signature", { png: pad.toDataURL("image/png") }))) return;
  await post("/api/checkin/submit");
});

clearSig();
poll();
setInterval(poll, 500);
