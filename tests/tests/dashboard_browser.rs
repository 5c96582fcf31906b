//! The dashboard in a real browser: headless Chromium (Debian's `chromium`,
//! through `playwright-core` from tests/browser) drives the embedded pages of a
//! running fleet-sync through the main journeys in
//! tests/browser/dashboard_journeys.mjs. Screenshots of every page land in
//! `$CARGO_TARGET_DIR/dashboard-screenshots/<journey>/` (the path is printed).
//!
//! `fleet-sync demo` serves the journeys that need moving vehicles and the seeded
//! catalog; the custody journey runs the server in this process so it can plant
//! a conflict two kiosks would have made and check the stored resolution.
//!
//! Skipped when Chromium, node or tests/browser/node_modules is missing, unless
//! CI=true (tests/run installs them).

use anyhow::{Context, Result};
use fleet_protocol::custody::{CustodyAction, CustodyConflict, CustodyOp};
use fleet_sync::storage::Storage;
use fleet_tests::process::{bin, free_port, run_output, wait_for, Guarded};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

const CHROMIUM: &str = "/usr/bin/chromium";
/// Vehicles the demo runs for these journeys, and the yards it fences.
const VEHICLES: usize = 3;
const YARDS: usize = 3;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Why the browser test cannot run here, if it cannot.
fn missing_peer() -> Option<String> {
    if !Path::new(CHROMIUM).is_file() {
        return Some(format!("{CHROMIUM} is missing (apt install chromium)"));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node is missing (apt install nodejs)".into());
    }
    if !browser_dir()
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        return Some("playwright-core is missing (npm ci in tests/browser)".into());
    }
    None
}

/// True when the test should go on; a missing peer fails only in CI.
fn peer_ready() -> bool {
    match missing_peer() {
        None => true,
        Some(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("dashboard browser test cannot run in CI: {why}")
        }
        Some(why) => {
            eprintln!("skipping the dashboard browser test: {why}");
            false
        }
    }
}

fn screenshots(journey: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("dashboard-screenshots").join(journey)
}

/// Runs one journey of dashboard_journeys.mjs and returns its verdict.
fn journey(dir: &Path, name: &str, mut case: Value) -> Result<Value> {
    let shots = screenshots(name);
    case["journey"] = json!(name);
    case["chromium"] = json!(CHROMIUM);
    case["screenshots"] = json!(shots);
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, serde_json::to_vec(&case)?)?;
    let mut node = Command::new("node");
    node.current_dir(browser_dir())
        .arg("dashboard_journeys.mjs")
        .arg(&file);
    let out = run_output(node, Duration::from_secs(150))?;
    let verdict: Value = serde_json::from_str(out.lines().last().unwrap_or(""))
        .with_context(|| format!("the journey printed {out:?}"))?;
    println!("{name}: screenshots in {}", shots.display());
    Ok(verdict)
}

/// `fleet-sync demo` on a loopback port with a few fast vehicles.
struct Demo {
    run: Guarded,
    url: String,
    key: String,
    /// The demo manager's dashboard login: tenant, email, password.
    login: Value,
}

impl Demo {
    fn start(dir: &Path) -> Result<Demo> {
        let port = free_port()?;
        let data = dir.join("demo");
        let mut cmd = Command::new(bin("fleet-sync")?);
        cmd.arg("demo")
            .arg("--data")
            .arg(&data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--vehicles")
            .arg(VEHICLES.to_string())
            .arg("--speed")
            // The yard kiosk runs too: the journeys count the vehicles, and a
            // kiosk is a device but not a vehicle, so it must not be among them.
            .arg("10")
            // Any free port for the kiosk's touch UI: journeys run side by side.
            .args(["--kiosk-port", "0"]);
        let mut run = Guarded::spawn("fleet-sync demo", cmd, &dir.join("demo.log"))?;
        let url = format!("http://127.0.0.1:{port}");
        let (key, login) = wait_for(
            "the demo to serve",
            Duration::from_secs(60),
            Duration::from_millis(200),
            || {
                if let Some(status) = run.exited()? {
                    anyhow::bail!("the demo exited ({status}): {}", run.log_tail(30));
                }
                // The demo prints its dashboard link once the tenant is seeded.
                if !run.log_tail(200).contains("dashboard:") {
                    return Ok(None);
                }
                let f: Value = serde_json::from_slice(&std::fs::read(data.join("demo.json"))?)?;
                Ok(f["api_key"]
                    .as_str()
                    .map(|k| (k.to_owned(), f["login"].clone())))
            },
        )?;
        Ok(Demo {
            run,
            url,
            key,
            login,
        })
    }

    fn get(&self, path: &str) -> Result<Value> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let r = reqwest::Client::new()
                .get(format!("{}{path}", self.url))
                .bearer_auth(&self.key)
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "GET {path}: {}", r.status());
            Ok(serde_json::from_slice(&r.bytes().await?)?)
        })
    }
}

#[test]
fn simulated_vehicles_move_on_the_live_map_and_every_page_renders() -> Result<()> {
    if !peer_ready() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let mut demo = Demo::start(tmp.path())?;
    let verdict = journey(
        tmp.path(),
        "tour",
        json!({ "url": demo.url, "key": demo.key, "vehicles": VEHICLES, "kiosks": 1, "yards": YARDS }),
    )
    .with_context(|| demo.run.log_tail(30))?;
    assert_eq!(verdict["ok"], true, "{verdict}");
    demo.run.kill()?;
    Ok(())
}

#[test]
fn a_utilization_report_opens_with_a_bar_per_vehicle_and_exports_its_csv() -> Result<()> {
    if !peer_ready() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let mut demo = Demo::start(tmp.path())?;
    // The report covers every vehicle in the catalog, driven or not.
    let report = demo.get("/api/v1/analytics/utilization")?;
    let vehicles = report["vehicles"].as_array().map_or(0, Vec::len);
    assert_eq!(vehicles, VEHICLES, "{report}");
    let verdict = journey(
        tmp.path(),
        "analytics",
        json!({ "url": demo.url, "key": demo.key, "vehicles": VEHICLES }),
    )
    .with_context(|| demo.run.log_tail(30))?;
    assert_eq!(verdict["ok"], true, "{verdict}");
    assert_eq!(verdict["csv_rows"], VEHICLES, "{verdict}");
    demo.run.kill()?;
    Ok(())
}

#[test]
fn a_booked_vehicle_is_approved_and_shows_in_the_calendar_and_its_ics_feed() -> Result<()> {
    if !peer_ready() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let mut demo = Demo::start(tmp.path())?;
    // Tomorrow evening (UTC, as the page is told): after the seeded bookings' day shifts.
    let day = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        / 86_400
        + 1;
    let date = civil_date(day as i64);
    let verdict = journey(
        tmp.path(),
        "booking",
        json!({
            "url": demo.url,
            "key": demo.key,
            "vehicle_name": "truck-03",
            "driver": "Dana Driver",
            "start_local": format!("{date}T18:00"),
            "end_local": format!("{date}T20:30"),
        }),
    )
    .with_context(|| demo.run.log_tail(30))?;
    assert_eq!(verdict["ok"], true, "{verdict}");
    // The server holds what the page showed: approved, for that vehicle and driver.
    let id = verdict["reservation"]
        .as_str()
        .context("a reservation id")?;
    let r = demo.get(&format!("/api/v1/reservations/{id}"))?;
    assert_eq!(r["status"], "approved", "{r}");
    assert_eq!(r["start"], format!("{date}T18:00:00Z"), "{r}");
    demo.run.kill()?;
    Ok(())
}

#[test]
fn a_manager_signs_in_with_a_password_approves_a_booking_and_signing_out_ends_the_session(
) -> Result<()> {
    if !peer_ready() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let mut demo = Demo::start(tmp.path())?;
    let login = demo.login.clone();
    let password = login["password"]
        .as_str()
        .context("the demo prints a password")?;
    let date = civil_date(
        (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
            / 86_400
            + 2) as i64,
    );
    // A tablet held upright: the form and the pages must work at this width too.
    let verdict = journey(
        tmp.path(),
        "login",
        json!({
            "url": demo.url,
            "tenant": login["tenant"],
            "email": login["email"],
            "password": password,
            "wrong_password": format!("{password}-not"),
            "viewport": { "width": 820, "height": 1180 },
            "vehicle_name": "truck-02",
            "driver": "Morgan Manager",
            "start_local": format!("{date}T18:00"),
            "end_local": format!("{date}T20:30"),
        }),
    )
    .with_context(|| demo.run.log_tail(30))?;
    assert_eq!(verdict["ok"], true, "{verdict}");

    // The booking was made and approved by the session's user.
    let id = verdict["reservation"]
        .as_str()
        .context("a reservation id")?;
    let r = demo.get(&format!("/api/v1/reservations/{id}"))?;
    assert_eq!(r["status"], "approved", "{r}");
    // The signed-out session's cookie opens nothing any more.
    let old = verdict["old_session"].as_str().context("the old cookie")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, body) = rt.block_on(async {
        let r = reqwest::Client::new()
            .get(format!("{}/api/v1/me", demo.url))
            .header("cookie", format!("fleet_session={old}"))
            .send()
            .await?;
        let status = r.status().as_u16();
        anyhow::Ok((status, serde_json::from_slice::<Value>(&r.bytes().await?)?))
    })?;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "session_invalid", "{body}");
    demo.run.kill()?;
    Ok(())
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01 (Howard Hinnant's algorithm).
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custody_conflict_from_two_kiosks_is_resolved_on_the_custody_board() -> Result<()> {
    if !peer_ready() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let storage: Arc<dyn Storage> = fleet_sync::open_backend(None, tmp.path()).await?.storage();
    let tenant = storage.create_tenant("yard").await?;
    let now = fleet_sync::storage::now_ms();
    // Two kiosks, offline, each checked the same key out to a different driver.
    let op = |kiosk: &str, at_ms: i64| CustodyOp {
        op: CustodyAction::CheckOut,
        kiosk: kiosk.into(),
        badge: Uuid::new_v4(),
        at_ms,
        event_id: Uuid::new_v4(),
    };
    let (first, second) = (
        op("kiosk-north", now - 3_600_000),
        op("kiosk-south", now - 1_800_000),
    );
    let asset = Uuid::new_v4();
    let conflict = CustodyConflict {
        first: first.clone(),
        second: second.clone(),
    };
    let recorded = storage
        .record_custody(
            tenant.tenant_id,
            asset,
            Some(second.clone()),
            2,
            &[conflict],
            now,
        )
        .await?;
    assert_eq!(recorded.len(), 1);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(fleet_sync::serve(
        listener,
        fleet_sync::AppState::new(storage.clone()),
        async move {
            let _ = stopped.await;
        },
    ));
    let note = "Devi had it; the north kiosk was offline";
    let case = json!({
        "url": url,
        "key": tenant.api_key,
        "conflict": recorded[0].id,
        "holder_badge": second.badge,
        "note": note,
    });
    let dir = tmp.path().to_owned();
    let verdict = tokio::task::spawn_blocking(move || journey(&dir, "custody", case)).await??;
    assert_eq!(verdict["ok"], true, "{verdict}");

    let conflicts = storage.custody_conflicts(tenant.tenant_id, true).await?;
    let resolution = conflicts[0]
        .resolution
        .as_ref()
        .context("the conflict is resolved")?;
    assert_eq!(resolution.note, note);
    assert_eq!(resolution.holder_badge, Some(second.badge));
    assert!(storage
        .custody_conflicts(tenant.tenant_id, false)
        .await?
        .is_empty());
    let _ = stop.send(());
    server.await??;
    Ok(())
}
