//! `fleet-sync demo` runs a yard kiosk: the agent's kiosk code, enrolled like
//! the simulated trucks, with a simulated camera and GPIO, worked by scripted
//! yard staff who hold the tenant's real signed labels up to the camera. A
//! check-out made that way reaches the server's custody board within seconds,
//! the key-box relay of its slot fired, and the kiosk UI's URL is printed.

use anyhow::{Context, Result};
use fleet_tests::process::{bin, free_port, Guarded};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// From the demo's start to the first kiosk check-out on the board; the demo
/// takes about six seconds for it on a debug build.
const CHECKOUT_WITHIN: Duration = Duration::from_secs(45);

async fn get_json(http: &reqwest::Client, url: &str, key: Option<&str>) -> Result<Value> {
    let mut req = http.get(url);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let r = req.send().await?;
    let status = r.status();
    let body = r.bytes().await?;
    anyhow::ensure!(status.is_success(), "{url}: {status}");
    Ok(serde_json::from_slice(&body)?)
}

fn api_key(data: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data.join("demo.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["api_key"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn a_kiosk_check_out_in_the_demo_reaches_the_custody_board_within_seconds() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let (port, kiosk_port) = (free_port()?, free_port()?);
    let mut cmd = Command::new(bin("fleet-sync")?);
    cmd.arg("demo")
        .arg("--data")
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--vehicles", "1", "--seed", "3"])
        .args(["--kiosk-port", &kiosk_port.to_string()])
        .env_remove("FLEET_DATABASE_URL")
        .env_remove("FLEET_DATA")
        .env_remove("FLEET_LISTEN")
        .env("RUST_LOG", "info");
    let log = tmp.path().join("demo.log");
    let started = Instant::now();
    let mut demo = Guarded::spawn("fleet-sync demo", cmd, &log)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let server = format!("http://127.0.0.1:{port}");

    let entry = loop {
        if let Some(status) = demo.exited()? {
            anyhow::bail!("the demo exited ({status}):\n{}", demo.log_tail(40));
        }
        if started.elapsed() > CHECKOUT_WITHIN {
            anyhow::bail!(
                "no kiosk check-out on the custody board within {CHECKOUT_WITHIN:?}:\n{}",
                demo.log_tail(40)
            );
        }
        if let Some(key) = api_key(&data) {
            let url = format!("{server}/api/v1/custody/board");
            if let Ok(board) = get_json(&http, &url, Some(&key)).await {
                let found = board["out"]
                    .as_array()
                    .and_then(|out| out.iter().find(|e| e["via"] == "yard-kiosk-1").cloned());
                if let Some(e) = found {
                    break e;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "first kiosk check-out on the board {:.1} s after the demo started",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(entry["kind"], "vehicle", "{entry}");
    assert_eq!(
        entry["asset_name"], "truck-01",
        "the yard's only truck: {entry}"
    );
    let holder = entry["holder_name"].as_str().unwrap_or_default();
    assert!(
        ["Dana Driver", "Devi Driver"].contains(&holder),
        "a seeded driver holds it: {entry}"
    );

    // The kiosk's touch UI is where the demo said, and its key box released
    // the key: the truck's slot relay and the green LED went high.
    let ui = format!("http://127.0.0.1:{kiosk_port}/");
    let printed = std::fs::read_to_string(&log)?;
    assert!(
        printed.contains(&format!("yard kiosk UI:   {ui}")),
        "the demo prints the kiosk UI: {printed}"
    );
    let gpio = get_json(&http, &format!("{ui}api/gpio"), None)
        .await
        .context("the kiosk's simulated GPIO")?;
    let fired = |line: &Value| {
        line["transitions"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["high"] == true))
    };
    assert!(
        fired(&gpio["slots"][0]),
        "slot 1 holds truck-01's key: {gpio}"
    );
    assert!(fired(&gpio["green"]), "{gpio}");
    assert!(
        gpio["slots"]
            .as_array()
            .is_some_and(|s| s.iter().skip(1).all(|l| !fired(l))),
        "no other slot opened: {gpio}"
    );
    demo.kill()?;
    Ok(())
}
