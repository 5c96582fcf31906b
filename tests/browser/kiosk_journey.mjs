// A driver's whole visit at the kiosk, in headless Chromium: refused with a
// revoked badge and a forged code, then a check-out (badge code typed, the key
// tag "scanned" by the simulated camera path) and a check-in, whose screen shows
// the van's open defect and odometer, with a rating, a damage mark, a photo and
// a signature drawn on the pad.
//
// node kiosk_journey.mjs CASE.json — CASE names the kiosk URL, the codes, the
// expected slot and where screenshots go. Prints one JSON line and exits 0 when
// every check held.
import { chromium } from "playwright-core";
import { readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const c = JSON.parse(readFileSync(process.argv[2], "utf8"));
mkdirSync(c.screenshots, { recursive: true });
const checks = [];
function check(what, ok, got) {
  checks.push({ what, ok, got });
  if (!ok) throw new Error(`${what}: got ${JSON.stringify(got)}`);
}

const browser = await chromium.launch({
  executablePath: c.chromium || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu"],
});
let shot = 0;
async function snap(page, name) {
  shot += 1;
  await page.screenshot({ path: join(c.screenshots, `${String(shot).padStart(2, "0")}-${name}.png`) });
}

try {
  const page = await browser.newPage({ viewport: { width: 1024, height: 1400 } });
  await page.goto(c.url);
  const prompt = page.locator("#prompt");
  const result = page.locator("#result");
  await page.waitForFunction(() => document.body.dataset.step === "idle");
  check("the idle screen asks for a scan", (await prompt.textContent()).includes("Scan your badge"), await prompt.textContent());
  check("the kiosk says it is offline", (await page.locator("#net").textContent()) === "Offline", await page.locator("#net").textContent());
  await snap(page, "idle");

  async function typeCode(code) {
    await page.fill("#code", code);
    await page.click("#enter-code");
  }
  async function step(name) {
    await page.waitForFunction((s) => document.body.dataset.step === s, name, { timeout: 5000 });
  }
  async function cameraScan(text) {
    // What the camera task does with a decoded label.
    const r = await page.evaluate(async (t) => {
      const r = await fetch("/api/scan", { method: "POST", body: JSON.stringify({ text: t }) });
      return r.status;
    }, text);
    check("the scan was taken", r === 200, r);
  }

  // A revoked badge: refused, and the screen says why.
  await typeCode(c.revoked_badge_code);
  await step("refused");
  await page.waitForSelector("#result:not([hidden])");
  let text = await result.textContent();
  check("a revoked badge is refused with the reason", /revoked/i.test(text), text);
  check("the refusal carries its code", (await result.getAttribute("data-code")) === "badge_revoked", await result.getAttribute("data-code"));
  await snap(page, "revoked-badge");

  // A forged label from the camera.
  await cameraScan(c.forged_text);
  await page.waitForFunction(() => document.querySelector("#result").dataset.code === "label_forged");
  text = await result.textContent();
  check("a forged code is refused with the reason", /forged/i.test(text), text);
  await snap(page, "forged");

  // Check-out: the badge code typed, then the key tag from the camera.
  await typeCode(c.badge_code);
  await step("badge_scanned");
  check("the driver is named", (await page.locator("#detail").textContent()).includes(c.driver), await page.locator("#detail").textContent());
  await cameraScan(c.key_text);
  await step("confirm");
  text = await page.locator("#detail").textContent();
  check("the confirm screen names the vehicle and slot", text.includes(c.vehicle_name) && text.includes(`slot ${c.slot}`), text);
  await snap(page, "confirm");
  // Key boxes number slots from 1; the GPIO record lists relays from 0.
  const relay = c.slot - 1;
  const before = await (await page.request.get(`${c.url}api/gpio`)).json();
  check("no key was released before the confirm", before.slots[relay].transitions.length === 0, before.slots[relay]);
  await page.click("#confirm");
  await step("checked_out");
  await page.waitForSelector("#result:not([hidden])");
  text = await result.textContent();
  check("the screen confirms the check-out", /checked out/i.test(text), text);
  const gpio = await (await page.request.get(`${c.url}api/gpio`)).json();
  const rises = gpio.slots[relay].transitions.filter((t) => t.high);
  check("the slot relay fired once", rises.length === 1, gpio.slots[relay]);
  check("no other slot moved", gpio.slots.every((s, i) => i === relay || s.transitions.length === 0), gpio.slots);
  check("the green LED lit", gpio.green.transitions.some((t) => t.high), gpio.green);
  await snap(page, "checked-out");
  const unsynced = Number(await page.locator("#unsynced").textContent());
  check("events wait to sync", unsynced >= 3, unsynced);

  // Check-in: the vehicle's code typed (no camera needed).
  await typeCode(c.vehicle_code);
  await step("check_in");
  await page.waitForSelector("#defects-box:not([hidden])");
  text = await page.locator("#vehicle-box").textContent();
  check("the check-in screen lists the open defect and the odometer", text.includes(c.open_defect) && text.includes(c.odometer), text);
  await page.click('.rate[data-rating="4"]');
  await page.waitForSelector('.rate.chosen[data-rating="4"]');
  const dmg = await page.locator("#damage").boundingBox();
  await page.mouse.click(dmg.x + dmg.width * 0.3, dmg.y + dmg.height * 0.6);
  await page.fill("#notes", "scratch on the rear door");
  await page.click("#photo");
  await page.waitForFunction(() => document.querySelector("#photo-state").textContent === "Photo taken");
  // Submitting unsigned is caught on the page.
  await page.click("#submit");
  check("an unsigned check-in is not sent", /sign/i.test(await result.textContent()), await result.textContent());
  const pad = await page.locator("#sigpad").boundingBox();
  await page.mouse.move(pad.x + 40, pad.y + 150);
  await page.mouse.down();
  for (let i = 1; i <= 20; i++) {
    await page.mouse.move(pad.x + 40 + i * 20, pad.y + 150 - Math.abs(Math.sin(i / 3)) * 100);
  }
  await page.mouse.up();
  await snap(page, "check-in-form");
  await page.click("#submit");
  await step("checked_in");
  text = await result.textContent();
  check("the screen confirms the check-in", /checked in/i.test(text), text);
  await snap(page, "checked-in");
  console.log(JSON.stringify({ ok: true, checks: checks.length }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e), checks }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
