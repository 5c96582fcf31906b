//! Two kiosks offline the whole working day, then the network returns.
//!
//! Labels are issued and the walk-up policy set over the operator API; two real
//! `fleet-agent run` kiosks enrolled against a real `fleet-sync` pull the yard's
//! signed snapshot while online. The server is then stopped, and through the
//! kiosks' local APIs
//! (scans posted as label texts) they do 50 check-outs and check-ins between
//! them, one vehicle checked out at both. The server comes back: every event
//! reaches it exactly once, the custody documents merge so both kiosks' and
//! the server's reading of who holds what agree, and exactly one custody
//! conflict is raised.

use anyhow::{bail, Context, Result};
use fleet_tests::process::{free_port, wait_for, Guarded};
use fleet_tests::services::{AgentDir, ServerProcess};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

/// Vehicles checked out and in at each kiosk, one after another.
const ROUND_TRIPS_EACH: usize = 12;
const SIGNATURE: &str = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=";

/// One request to the operator API with the tenant's key.
fn operator(url: &str, key: &str, method: &str, path: &str, body: Value) -> Result<Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = reqwest::Client::new();
        let resp = client
            .request(method.parse()?, format!("{url}{path}"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{method} {path} answered {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    })
}

/// One request to a kiosk's local API: (status, JSON body).
fn call(port: u16, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    let status = reply
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .context("no status line")?;
    let json = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("null");
    Ok((status, serde_json::from_str(json).unwrap_or(Value::Null)))
}

fn post(port: u16, path: &str, body: Option<Value>) -> Result<Value> {
    let (status, v) = call(port, "POST", path, body)?;
    if status != 200 {
        bail!("POST {path} on kiosk :{port} answered {status}: {v}");
    }
    Ok(v)
}

struct Kiosk {
    agent: AgentDir,
    run: Guarded,
    port: u16,
}

impl Kiosk {
    fn scan(&self, text: &str) -> Result<Value> {
        post(self.port, "/api/scan", Some(json!({ "text": text })))
    }

    fn check_out(&self, badge: &str, key_tag: &str) -> Result<()> {
        self.scan(badge)?;
        let v = self.scan(key_tag)?;
        if v["step"] != "confirm" {
            bail!("expected the confirm step, got {v}");
        }
        let v = post(self.port, "/api/confirm", None)?;
        if v["last"]["code"] != "checked_out" {
            bail!("check-out not done: {v}");
        }
        Ok(())
    }

    fn check_in(&self, vehicle: &str) -> Result<()> {
        let v = self.scan(vehicle)?;
        if v["step"] != "check_in" {
            bail!("expected the check-in step, got {v}");
        }
        post(self.port, "/api/checkin/rating", Some(json!({"rating": 5})))?;
        post(
            self.port,
            "/api/checkin/signature",
            Some(json!({"png": SIGNATURE})),
        )?;
        let v = post(self.port, "/api/checkin/submit", None)?;
        if v["last"]["code"] != "checked_in" {
            bail!("check-in not done: {v}");
        }
        Ok(())
    }
}

fn start_kiosk(tmp: &Path, name: &str, server: &ServerProcess, token: &str) -> Result<Kiosk> {
    let data = tmp.join(name);
    std::fs::create_dir_all(&data)?;
    let mut agent = AgentDir::new(&data, tmp)?;
    agent.enroll(&server.url(), token, name)?;
    let port = free_port()?;
    let config = tmp.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "version = 1\n[metrics]\nenabled = false\n[device]\nrole = \"kiosk\"\n\
             [sync]\nbackoff_base_ms = 100\nbackoff_max_ms = 500\nidle_poll_ms = 200\n\
             docs_interval_ms = 300\n[kiosk]\nui_port = {port}\nname = \"{name}\"\nyard = \"north\"\n"
        ),
    )?;
    let mut run = agent.run(&["--config", config.to_str().context("utf-8 path")?])?;
    // Online long enough to pull the yard's snapshot and the tenant key.
    wait_for(
        "the kiosk's snapshot",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            if let Some(status) = run.exited()? {
                bail!("{name} exited ({status}): {}", run.log_tail(30));
            }
            let state = call(port, "GET", "/api/state", None).ok();
            Ok(state
                .filter(|(s, v)| *s == 200 && v["snapshot"]["usable"] == true)
                .map(|_| ()))
        },
    )
    .with_context(|| format!("{name} log:\n{}", run.log_tail(30)))?;
    Ok(Kiosk { agent, run, port })
}

#[test]
fn two_offline_kiosks_sync_every_event_once_and_raise_the_one_custody_conflict() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut server = ServerProcess::new(&tmp.path().join("server"), tmp.path())?;
    server.start()?;
    let (tenant, api_key) = server.create_tenant("Yard Co")?;
    let token = server.create_token(&tenant, 2)?;

    let url = server.url();
    operator(
        &url,
        &api_key,
        "PUT",
        "/api/v1/kiosk-policy",
        json!({"walk_up": "allow", "grace_minutes": 15, "max_checkout_hours": 8}),
    )?;
    let issue = |body: Value| operator(&url, &api_key, "POST", "/api/v1/labels", body);
    let badge_text = issue(json!({"kind": "badge", "driver_name": "Pat Driver"}))?["text"]
        .as_str()
        .context("badge text")?
        .to_owned();
    // (vehicle id, vehicle label, key tag label)
    let mut vehicles = Vec::new();
    for i in 0..=2 * ROUND_TRIPS_EACH {
        let van = issue(json!({"kind": "vehicle", "name": format!("Van {i}")}))?;
        let id = van["id"].as_str().context("vehicle id")?.to_owned();
        let tag = issue(json!({"kind": "key", "asset_id": id, "slot": i % 8 + 1}))?;
        vehicles.push((
            id,
            van["text"].as_str().context("text")?.to_owned(),
            tag["text"].as_str().context("text")?.to_owned(),
        ));
    }
    let tag_text = |i: usize| vehicles[i].2.clone();
    let van_text = |i: usize| vehicles[i].1.clone();

    let mut a = start_kiosk(tmp.path(), "kiosk-a", &server, &token)?;
    let mut b = start_kiosk(tmp.path(), "kiosk-b", &server, &token)?;

    // The network goes away for the whole day.
    server.kill()?;
    let mut operations = 0;
    for i in 0..ROUND_TRIPS_EACH {
        a.check_out(&badge_text, &tag_text(i))?;
        b.check_out(&badge_text, &tag_text(ROUND_TRIPS_EACH + i))?;
        a.check_in(&van_text(i))?;
        b.check_in(&van_text(ROUND_TRIPS_EACH + i))?;
        operations += 4;
    }
    // The last van is taken at both kiosks: neither can know of the other.
    let contested = 2 * ROUND_TRIPS_EACH;
    a.check_out(&badge_text, &tag_text(contested))?;
    b.check_out(&badge_text, &tag_text(contested))?;
    operations += 2;
    assert_eq!(operations, 50);
    for k in [&a, &b] {
        let state = call(k.port, "GET", "/api/state", None)?.1;
        assert_eq!(state["online"], false, "{state}");
        assert!(state["unsynced"].as_u64().unwrap_or(0) >= 25, "{state}");
    }

    // The network returns.
    server.start()?;
    let devices = [a.agent.device_id()?, b.agent.device_id()?];
    for (k, device) in [&a, &b].into_iter().zip(&devices) {
        let local = k.agent.events()?;
        let want: BTreeSet<u64> = local.iter().map(|e| e.seq).collect();
        let got = wait_for(
            "every kiosk event at the server",
            Duration::from_secs(30),
            Duration::from_millis(200),
            || {
                let evs = server.all_device_events(&api_key, device)?;
                Ok((evs.len() >= want.len()).then_some(evs))
            },
        )?;
        let seqs: Vec<u64> = got.iter().filter_map(|e| e["seq"].as_u64()).collect();
        assert_eq!(seqs.len(), want.len(), "no duplicates at the server");
        assert_eq!(seqs.iter().copied().collect::<BTreeSet<_>>(), want);
        let kinds = |k: &str| got.iter().filter(|e| e["kind"] == k).count();
        assert_eq!(kinds("checkout"), ROUND_TRIPS_EACH + 1);
        assert_eq!(kinds("checkin"), ROUND_TRIPS_EACH);
    }

    // Custody: both offline check-outs of the contested van survive the merge,
    // the later one holds it, and one conflict is raised.
    let contested_van = vehicles[contested].0.clone();
    let conflicts = wait_for(
        "the custody conflict",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || {
            let c = server.api_get(&api_key, "/api/v1/custody/conflicts")?;
            let list = c["conflicts"].as_array().cloned().unwrap_or_default();
            Ok((!list.is_empty()).then_some(list))
        },
    )?;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0]["asset_id"], json!(contested_van));
    let kiosks: BTreeSet<&str> = [&conflicts[0]["first"], &conflicts[0]["second"]]
        .iter()
        .filter_map(|op| op["kiosk"].as_str())
        .collect();
    assert_eq!(kiosks, BTreeSet::from(["kiosk-a", "kiosk-b"]));
    let custody = server.api_get(&api_key, "/api/v1/custody")?;
    let held: Vec<&Value> = custody["assets"]
        .as_array()
        .context("assets")?
        .iter()
        .filter(|a| !a["holder"].is_null())
        .collect();
    assert_eq!(held.len(), 1, "only the contested van is out: {custody}");
    assert_eq!(held[0]["asset_id"], json!(contested_van));

    // Kiosk A learns of B's later check-out through the merged document: the
    // van it handed out is now held, by its reading too, from kiosk B.
    for k in [&a, &b] {
        wait_for(
            "the merged custody at the kiosk",
            Duration::from_secs(20),
            Duration::from_millis(300),
            || {
                post(k.port, "/api/cancel", None)?;
                let v = k.scan(&van_text(contested))?;
                Ok((v["flow"]["checkin"]["holder"]["kiosk"] == "kiosk-b").then_some(()))
            },
        )?;
        post(k.port, "/api/cancel", None)?;
    }
    a.run.kill()?;
    b.run.kill()?;
    Ok(())
}
