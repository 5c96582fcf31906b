// The dashboard's main journeys in headless Chromium, against a running
// fleet-sync (tests/tests/dashboard_browser.rs starts it).
//
// node dashboard_journeys.mjs CASE.json — CASE names the server URL, the API
// key (or for `login` the sign-in form's tenant, email and passwords), the
// journey (tour | custody | analytics | booking | login), where screenshots go
// and what the journey expects. Prints one JSON line and exits 0 when every
// check held; a failed check exits 1 with the reason.
import { chromium } from "playwright-core";
import { readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const c = JSON.parse(readFileSync(process.argv[2], "utf8"));
mkdirSync(c.screenshots, { recursive: true });
const checks = [];
const pageErrors = [];
function check(what, ok, got) {
  checks.push({ what, ok });
  if (!ok) throw new Error(`${what}: got ${JSON.stringify(got)}`);
}

const browser = await chromium.launch({
  executablePath: c.chromium || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu"],
});
let shot = 0;
const shots = [];
async function snap(page, name) {
  shot += 1;
  const path = join(c.screenshots, `${String(shot).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path });
  shots.push(path);
}

async function open(page, hash) {
  await page.evaluate((h) => { location.hash = h; }, hash);
  await page.waitForFunction((p) => document.body.dataset.page === p, hash.split("/")[1]);
}

/** Markers on the map: id -> [lat, lon, transform]. */
async function markers(page) {
  return page.evaluate(() => Object.fromEntries([...document.querySelectorAll("#map g.marker")].map((g) =>
    [g.dataset.id, [Number(g.dataset.lat), Number(g.dataset.lon), g.getAttribute("transform")]])));
}

const journeys = {
  // The live map: vehicles move between two screenshots; then every page once.
  async tour(page) {
    await page.waitForFunction(() => document.body.dataset.live === "live", null, { timeout: 15000 });
    await page.waitForFunction((n) => document.querySelectorAll("#map g.marker").length >= n, c.vehicles, { timeout: 30000 });
    // The geofences come from the device groups' configs, loaded beside the
    // vehicle list, so they may be drawn after the markers.
    await page.waitForFunction((n) => document.querySelectorAll("#map polygon.fence").length >= n, c.yards, { timeout: 15000 })
      .catch(() => {});
    const fences = await page.locator("#map polygon.fence").count();
    check("the yard geofences are drawn", fences === c.yards, fences);
    const scale = await page.locator("#map .scale text").textContent();
    check("the map has a scale bar", /^\d+ k?m$/.test(scale), scale);
    const before = await markers(page);
    await snap(page, "map");
    // A driving vehicle's position arrives over the stream within a few seconds.
    const moved = await page.waitForFunction((b) => [...document.querySelectorAll("#map g.marker")].some((g) => {
      const was = b[g.dataset.id];
      return was && (was[0] !== Number(g.dataset.lat) || was[1] !== Number(g.dataset.lon));
    }), before, { timeout: 45000, polling: 250 }).then(() => true, () => false);
    const after = await markers(page);
    const movedIds = Object.keys(after).filter((id) => before[id] && (before[id][0] !== after[id][0] || before[id][1] !== after[id][1]));
    check("a simulated vehicle moved on the map", moved && movedIds.length > 0, { before, after });
    check("its marker moved on screen", movedIds.some((id) => before[id][2] !== after[id][2]), movedIds.map((id) => [before[id][2], after[id][2]]));
    await snap(page, "map-moved");

    await open(page, "#/vehicles");
    await page.waitForSelector("#rows tr[data-id]");
    const rows = await page.locator("#rows tr[data-id]").count();
    check("the vehicle list shows every vehicle", rows === c.vehicles, rows);
    await snap(page, "vehicles");
    await page.locator("#rows tr[data-id]").first().click();
    await page.waitForFunction(() => /^#\/vehicles\/.+/.test(location.hash) && document.querySelector("#body .card"));
    await snap(page, "vehicle");

    for (const [hash, ready] of [
      ["#/reservations", ".cal .cell"],
      ["#/custody", "#conflicts > *"],
      ["#/analytics", "#utilization .body > *"],
      ["#/devices", "#rows tr[data-id]"],
    ]) {
      await open(page, hash);
      await page.waitForSelector(ready, { timeout: 15000 });
      await snap(page, hash.slice(2));
    }
    const devices = await page.locator("#rows tr[data-id]").count();
    check("the devices page lists the gateways and the kiosks", devices === c.vehicles + (c.kiosks || 0), devices);
    const kiosks = await page.locator("#rows tr[data-id] .pill.kiosk").count();
    check("each kiosk is marked as one on the devices page", kiosks === (c.kiosks || 0), kiosks);
    const groups = await page.locator("[data-group]").count();
    check("the demo's device group is shown with its rollout", groups === 1, groups);
  },

  // A conflict from two kiosks is resolved: the second badge keeps the asset.
  async custody(page) {
    await open(page, "#/custody");
    const card = page.locator(`.conflict[data-id="${c.conflict}"]`);
    await card.waitFor();
    const text = await card.textContent();
    check("the conflict names both kiosks", text.includes("kiosk-north") && text.includes("kiosk-south"), text);
    await snap(page, "custody-conflict");
    await card.locator("select[name=holder]").selectOption(c.holder_badge);
    await card.locator("input[name=note]").fill(c.note);
    await card.locator("button[type=submit]").click();
    await page.waitForSelector("#no-conflicts");
    const ok = await page.locator("#conflicts .notice.ok").textContent();
    check("the page says the conflict is resolved", /resolved/i.test(ok), ok);
    await snap(page, "custody-resolved");
  },

  // The utilization report: one bar per vehicle, and its CSV downloads.
  async analytics(page) {
    await open(page, "#/analytics");
    await page.waitForFunction((n) => document.querySelectorAll("#utilization rect.bar").length >= n, c.vehicles, { timeout: 15000 });
    const bars = await page.locator("#utilization rect.bar").evaluateAll((rs) => rs.map((r) => r.dataset.id));
    await snap(page, "analytics");
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("[data-csv=utilization]")]);
    const path = join(c.screenshots, "utilization.csv");
    await download.saveAs(path);
    const csv = readFileSync(path, "utf8").trim().split(/\r?\n/);
    check("the CSV has a header with the utilization columns", csv[0].startsWith("id,name") && csv[0].includes("hours_utilization"), csv[0]);
    const ids = csv.slice(1).map((l) => l.split(",")[0]);
    check("the CSV has a row for every vehicle on the chart", bars.length === ids.length && bars.every((id) => ids.includes(id)), { bars, ids });
    check("the download is named for the report", /^utilization-.*\.csv$/.test(download.suggestedFilename()), download.suggestedFilename());
    return { csv_rows: ids.length };
  },

  // Sign in with the form: a wrong password is refused in words, the right one
  // opens the dashboard and its live stream on the session cookie, a booking
  // made and approved by session (cookie + CSRF token) succeeds, and signing
  // out returns to the form.
  async login(page) {
    const form = page.locator("#loginform");
    await form.waitFor();
    check("the sign-in form asks for a password first", (await form.getAttribute("data-mode")) === "password", await form.getAttribute("data-mode"));
    check("the tenant comes from the link", (await page.locator("#tenantinput").inputValue()) === c.tenant, await page.locator("#tenantinput").inputValue());
    await page.fill("#emailinput", c.email);
    await page.fill("#passwordinput", c.wrong_password);
    await page.click("#loginsubmit");
    await page.waitForFunction(() => document.getElementById("loginerr").textContent.length > 0);
    const refused = await page.locator("#loginerr").textContent();
    check("a wrong password is refused in words", /wrong tenant, email or password/i.test(refused), refused);
    check("nothing opened behind the form", !(await page.evaluate(() => document.body.dataset.page)), null);
    await snap(page, "login-refused");

    await page.fill("#passwordinput", c.password);
    await page.click("#loginsubmit");
    await page.waitForFunction(() => document.body.dataset.page === "map" && document.getElementById("login").hidden);
    check("the dashboard runs on the session", (await page.evaluate(() => document.body.dataset.auth)) === "session", null);
    check("no key was kept", (await page.evaluate(() => sessionStorage.getItem("fleet-api-key"))) === null, null);
    await page.waitForFunction(() => document.body.dataset.live === "live", null, { timeout: 15000 });
    const session = (await page.context().cookies()).find((k) => k.name === "fleet_session");
    check("the session cookie is HttpOnly and SameSite=Strict", session && session.httpOnly && session.sameSite === "Strict", session);
    await snap(page, "login-map");

    const booked = await journeys.booking(page);

    await page.click("#logout");
    await page.waitForFunction(() => !document.getElementById("login").hidden);
    const bye = await page.locator("#loginerr").textContent();
    check("signing out returns to the sign-in form", /signed out/i.test(bye) && !(await page.evaluate(() => document.body.dataset.page)), bye);
    check("the session cookie is gone from the browser", !(await page.context().cookies()).some((k) => k.name === "fleet_session" && k.value), null);
    await snap(page, "login-signed-out");
    return { ...booked, old_session: session.value };
  },

  // Book a vehicle, approve it, see it in the calendar and in its .ics feed.
  async booking(page) {
    await open(page, "#/reservations");
    await page.click("#new");
    const form = page.locator("#book");
    await form.locator("select[name=vehicle]").selectOption({ label: c.vehicle_name });
    await form.locator("select[name=user]").selectOption({ label: c.driver });
    await form.locator("input[name=start]").fill(c.start_local);
    await form.locator("input[name=end]").fill(c.end_local);
    await form.locator("input[name=purpose]").fill("Delivery run");
    await snap(page, "booking-form");
    await form.locator("button[type=submit]").click();
    const detail = page.locator("#booking-detail");
    await detail.waitFor();
    const status = await detail.locator(".pill").textContent();
    check("the new booking waits for approval", status === "pending", status);
    const id = await detail.getAttribute("data-id");
    await snap(page, "booking-pending");
    await detail.locator("[data-act=approve]").click();
    await page.waitForFunction((id) => document.querySelector(`.booking[data-id="${id}"]`)?.dataset.status === "approved", id);
    await page.click(`.booking[data-id="${id}"]`);
    check("the calendar shows it approved", (await page.locator("#booking-detail .pill").textContent()) === "approved", null);
    for (const v of ["month", "day"]) {
      await page.click(`[data-view=${v}]`);
      await page.waitForSelector(`.booking[data-id="${id}"][data-status=approved]`);
      await snap(page, `calendar-${v}`);
    }
    await page.click(`.booking[data-id="${id}"]`);
    await page.click("#booking-detail [data-act=feed]");
    const feedUrl = await page.locator("#feed-url").textContent();
    // A calendar program fetches the feed with its token and no API key.
    const ics = await page.evaluate(async (u) => { const r = await fetch(u, { headers: {} }); return { status: r.status, type: r.headers.get("content-type"), body: await r.text() }; }, feedUrl);
    check("the feed answers as a calendar", ics.status === 200 && /text\/calendar/.test(ics.type || ""), ics);
    check("the feed holds the booking", ics.body.includes("BEGIN:VEVENT") && ics.body.includes(id), ics.body);
    await snap(page, "booking-feed");
    return { reservation: id, feed: feedUrl };
  },
};

let result = {};
try {
  const page = await browser.newPage({ viewport: c.viewport || { width: 1280, height: 800 }, acceptDownloads: true, timezoneId: "UTC" });
  page.on("pageerror", (e) => pageErrors.push(e.message));
  if (c.journey === "login") {
    await page.goto(`${c.url}/#tenant=${encodeURIComponent(c.tenant)}`);
  } else {
    await page.goto(`${c.url}/#key=${encodeURIComponent(c.key)}`);
    await page.waitForFunction(() => document.body.dataset.page, null, { timeout: 15000 });
  }
  result = (await journeys[c.journey](page)) || {};
  check("no script error on any page", pageErrors.length === 0, pageErrors);
  console.log(JSON.stringify({ ok: true, checks: checks.length, screenshots: shots, ...result }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e.message || e), checks, pageErrors, screenshots: shots }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
