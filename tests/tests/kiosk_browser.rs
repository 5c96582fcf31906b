//! The kiosk's touch UI in a real browser: `fleet-agent run` as a kiosk with
//! simulated GPIO and an image-folder camera, driven by headless Chromium
//! (Debian's `chromium`, through `playwright-core` from tests/browser) through
//! refusals, a check-out and a check-in with a drawn signature. The script
//! asserts what the screen says and what the slot relay did; this test then
//! checks the events the kiosk recorded. Screenshots: target/kiosk-browser/.
//!
//! Skipped when Chromium, node or tests/browser/node_modules is missing, unless
//! CI=true (tests/run installs them).

use anyhow::{Context, Result};
use ed25519_dalek::SigningKey;
use fleet_protocol::label::{short_code, Label, LabelKind, TenantTrust};
use fleet_protocol::snapshot::{
    KioskPolicy, Snapshot, SnapshotAsset, SnapshotBadge, SnapshotDefect, SnapshotKey,
    SnapshotReservation, WalkUp,
};
use fleet_tests::process::{free_port, run_output, wait_for};
use fleet_tests::services::AgentDir;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

const CHROMIUM: &str = "/usr/bin/chromium";

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

/// A yard with the driver Dana (and revoked Eve), the van "Van 7" whose key is
/// in slot 2, and Dana's reservation of it covering now.
struct Yard {
    key: SigningKey,
    trust: TenantTrust,
    snap: Snapshot,
    dana: Uuid,
    eve: Uuid,
    van: Uuid,
    van_key: Uuid,
}

fn yard(now_ms: i64) -> Yard {
    let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let tenant = Uuid::new_v4();
    let trust = TenantTrust::new(tenant, key.verifying_key());
    let (dana, eve, van, van_key) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let mut snap = Snapshot::empty(tenant, "north", now_ms - 60_000, now_ms + 3_600_000);
    snap.policy = KioskPolicy {
        walk_up: WalkUp::Refuse,
        grace_minutes: 15,
        max_checkout_hours: 8,
    };
    snap.badges = vec![
        SnapshotBadge {
            id: dana,
            driver_name: "Dana Driver".into(),
            revoked: false,
        },
        SnapshotBadge {
            id: eve,
            driver_name: "Eve Example".into(),
            revoked: true,
        },
    ];
    snap.assets = vec![SnapshotAsset {
        id: van,
        kind: LabelKind::Vehicle,
        name: "Van 7".into(),
        short_code: short_code(van),
        unsafe_defect: false,
        odometer_km: Some(48_211.0),
        odometer_at_ms: Some(now_ms - 60_000),
        fuel_pct: None,
        fuel_at_ms: None,
    }];
    snap.keys = vec![SnapshotKey {
        id: van_key,
        asset: van,
        slot: 2,
        revoked: false,
    }];
    snap.reservations = vec![SnapshotReservation {
        id: Uuid::new_v4(),
        vehicle: van,
        badge: dana,
        start_ms: now_ms - 300_000,
        end_ms: now_ms + 3_600_000,
    }];
    // Not unsafe: the van still goes out, and its check-in screen lists it.
    snap.defects = vec![SnapshotDefect::new(
        van,
        Some("mirror"),
        "left mirror cracked",
        false,
    )];
    for id in [dana, eve, van, van_key] {
        snap.short_codes.insert(short_code(id), id);
    }
    Yard {
        key,
        trust,
        snap,
        dana,
        eve,
        van,
        van_key,
    }
}

#[test]
fn a_driver_checks_out_and_in_on_the_touch_screen_and_the_relay_fires_once() -> Result<()> {
    if let Some(why) = missing_peer() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("kiosk browser test cannot run in CI: {why}");
        }
        eprintln!("skipping the kiosk browser test: {why}");
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("kiosk");
    let camera = tmp.path().join("camera");
    std::fs::create_dir_all(&data)?;
    std::fs::create_dir_all(&camera)?;
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let y = yard(now_ms);
    std::fs::write(
        data.join(fleet_agent::kiosk::TRUST_FILE),
        serde_json::to_vec(&y.trust)?,
    )?;
    std::fs::write(
        data.join(fleet_agent::kiosk::SNAPSHOT_FILE),
        y.snap.sign(&y.key).to_json(),
    )?;
    // The simulated camera sees the yard (no label): the photo's subject.
    let gray: Vec<u8> = (0..320u32 * 240).map(|i| (i % 320 / 2) as u8).collect();
    std::fs::write(
        camera.join("yard.jpg"),
        fleet_agent::kiosk::checkin::jpeg(&gray, 320, 240, 1 << 20)?,
    )?;
    let port = free_port()?;
    let config = tmp.path().join("kiosk.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\n[metrics]\nenabled = false\n[device]\nrole = \"kiosk\"\n\
             [kiosk]\nui_port = {port}\nname = \"gate-1\"\nyard = \"north\"\nslots = 4\n\
             [kiosk.camera]\nsource = \"folder\"\npath = {:?}\nfps = 2.0\n",
            camera.display().to_string()
        ),
    )?;
    let mut agent = AgentDir::new(&data, tmp.path())?;
    let mut run = agent.run(&["--config", config.to_str().context("utf-8 path")?])?;
    let url = format!("http://127.0.0.1:{port}/");
    wait_for(
        "the kiosk UI",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            if let Some(status) = run.exited()? {
                anyhow::bail!("fleet-agent exited ({status}): {}", run.log_tail(30));
            }
            Ok(get_status(port, "/api/state").ok().filter(|s| *s == 200))
        },
    )?;

    let mut forged = Label::new(LabelKind::Key, y.van_key)
        .sign(&y.key)
        .into_bytes();
    let i = forged.len() / 2;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let screenshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/kiosk-browser");
    let case = json!({
        "url": url,
        "chromium": CHROMIUM,
        "screenshots": screenshots,
        "badge_code": short_code(y.dana),
        "revoked_badge_code": short_code(y.eve),
        "driver": "Dana Driver",
        "key_text": Label::new(LabelKind::Key, y.van_key).sign(&y.key),
        "forged_text": String::from_utf8(forged)?,
        "vehicle_code": short_code(y.van),
        "vehicle_name": "Van 7",
        "slot": 2,
        "open_defect": "mirror: left mirror cracked",
        "odometer": "Odometer 48,211 km",
    });
    let case_file = tmp.path().join("case.json");
    std::fs::write(&case_file, serde_json::to_vec(&case)?)?;
    let mut node = Command::new("node");
    node.current_dir(browser_dir())
        .arg("kiosk_journey.mjs")
        .arg(&case_file);
    let out = run_output(node, Duration::from_secs(120)).with_context(|| {
        format!(
            "the browser journey failed; kiosk log:\n{}",
            run.log_tail(40)
        )
    })?;
    let verdict: serde_json::Value = serde_json::from_str(out.lines().last().unwrap_or(""))
        .with_context(|| format!("the journey printed {out:?}"))?;
    assert_eq!(verdict["ok"], true, "{verdict}");

    run.kill()?;
    let kinds: Vec<String> = agent.events()?.into_iter().map(|e| e.kind).collect();
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    assert_eq!(count("checkout"), 1, "{kinds:?}");
    assert_eq!(count("checkin"), 1, "{kinds:?}");
    assert_eq!(count("scan_refused"), 2, "{kinds:?}");
    Ok(())
}

/// The status of one GET to the kiosk, over a plain connection it closes.
fn get_status(port: u16, path: &str) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)?;
    Ok(std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}
