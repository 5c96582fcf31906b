//! The device control plane over real HTTP: staged config rollouts that complete
//! and that abort, revocation, and a real `fleet-agent` applying its group's
//! config and stamping new events with the version.

mod fake_device;

use anyhow::{ensure, Context, Result};
use fake_device::{start_server, FakeDevice, Server};
use fleet_sync::rollout::in_stage;
use fleet_sync::Settings;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use uuid::Uuid;

async fn group_with(server: &Server, name: &str, devices: &[&FakeDevice]) -> Result<String> {
    let g = server
        .expect(
            201,
            "POST",
            "/api/v1/device-groups",
            Some(json!({ "name": name })),
        )
        .await?;
    let id = g["id"].as_str().context("group id")?.to_owned();
    let ids: Vec<Uuid> = devices.iter().map(|d| d.id).collect();
    server
        .expect(
            200,
            "POST",
            &format!("/api/v1/device-groups/{id}/devices"),
            Some(json!({ "devices": ids })),
        )
        .await?;
    Ok(id)
}

async fn rollout(server: &Server, group: &str) -> Result<Value> {
    let g = server
        .expect(200, "GET", &format!("/api/v1/device-groups/{group}"), None)
        .await?;
    Ok(g["rollouts"][0].clone())
}

async fn fleet(server: &Server, n: usize) -> Result<Vec<FakeDevice>> {
    let token = server.token(n as u32).await?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(FakeDevice::enroll(server, &token, &format!("truck-{i}")).await?);
    }
    Ok(out)
}

#[tokio::test]
async fn a_staged_rollout_reaches_its_first_stage_then_everyone_and_completes() -> Result<()> {
    let server = start_server(Settings::default()).await?;
    let devices = fleet(&server, 12).await?;
    let group = group_with(&server, "north", &devices.iter().collect::<Vec<_>>()).await?;
    let created = server
        .expect(
            201,
            "POST",
            &format!("/api/v1/device-groups/{group}/config"),
            Some(json!({
                "config": { "thresholds": { "harsh_braking_mps2": 4.0 },
                            "sampling": { "coolant_temp_c": { "mode": "interval", "period_s": 30 } } },
                "rollout": { "stages": [50, 100], "min_soak_s": 0, "failure_threshold": 0.3 }
            })),
        )
        .await?;
    assert_eq!(created["version"], 1);
    assert_eq!(created["state"], "rolling");

    // Stage 1: exactly the devices whose stable hash is in the first half.
    let mut have = vec![0u32; devices.len()];
    for (i, d) in devices.iter().enumerate() {
        let offer = d.pull_config(have[i]).await?;
        assert_eq!(
            offer.is_some(),
            in_stage(d.id, 50),
            "device {i} in the first stage: {}",
            in_stage(d.id, 50)
        );
        if let Some(o) = offer {
            assert_eq!(o.version, 1);
            assert_eq!(o.config.thresholds.harsh_braking_mps2, Some(4.0));
            have[i] = o.version;
        }
    }
    let staged = devices.iter().filter(|d| in_stage(d.id, 50)).count();
    let r = rollout(&server, &group).await?;
    if staged > 0 {
        assert_eq!(r["stage"], 1, "{r}");
        assert_eq!(r["health"]["pending"], staged, "{r}");
    }
    for (i, d) in devices.iter().enumerate() {
        assert_eq!(d.report(have[i], None).await?, 200);
    }
    let r = rollout(&server, &group).await?;
    assert_eq!(
        (r["state"].as_str(), r["stage"].as_u64()),
        (Some("rolling"), Some(2)),
        "{r}"
    );

    // Stage 2: everyone.
    for (i, d) in devices.iter().enumerate() {
        if let Some(o) = d.pull_config(have[i]).await? {
            have[i] = o.version;
        }
        assert_eq!(have[i], 1, "device {i} runs version 1 in the last stage");
        assert_eq!(d.report(have[i], None).await?, 200);
    }
    let r = rollout(&server, &group).await?;
    assert_eq!(r["state"], "completed", "{r}");
    for (i, d) in devices.iter().enumerate() {
        assert!(
            d.pull_config(have[i]).await?.is_none(),
            "device {i} is up to date"
        );
    }
    let registry = server
        .expect(
            200,
            "GET",
            &format!("/api/v1/devices/{}", devices[0].id),
            None,
        )
        .await?;
    assert_eq!(registry["status"]["config_version"], 1);
    assert_eq!(registry["group_id"], group.as_str());
    Ok(())
}

#[tokio::test]
async fn a_staged_rollout_aborts_when_its_devices_fail_and_everyone_keeps_the_previous_version(
) -> Result<()> {
    let server = start_server(Settings::default()).await?;
    let devices = fleet(&server, 16).await?;
    let group = group_with(&server, "south", &devices.iter().collect::<Vec<_>>()).await?;
    let path = format!("/api/v1/device-groups/{group}/config");
    // Version 1 goes to everyone at once.
    server
        .expect(
            201,
            "POST",
            &path,
            Some(
                json!({ "config": { "thresholds": { "speeding_limit_kmh": 90 } },
                         "rollout": { "stages": [100], "min_soak_s": 0 } }),
            ),
        )
        .await?;
    for d in &devices {
        assert_eq!(d.pull_config(0).await?.map(|o| o.version), Some(1));
        d.report(1, None).await?;
    }
    assert_eq!(rollout(&server, &group).await?["state"], "completed");

    // Version 2 reaches a quarter of the group, whose devices cannot apply it.
    server
        .expect(
            201,
            "POST",
            &path,
            Some(json!({ "config": { "thresholds": { "speeding_limit_kmh": 80 } },
                         "rollout": { "stages": [25, 100], "min_soak_s": 3600, "failure_threshold": 0.2 } })),
        )
        .await?;
    let staged: Vec<&FakeDevice> = devices.iter().filter(|d| in_stage(d.id, 25)).collect();
    ensure!(
        !staged.is_empty(),
        "no device of 16 hashed into the 25 % stage"
    );
    for d in &devices {
        let offer = d.pull_config(1).await?;
        assert_eq!(offer.map(|o| o.version), in_stage(d.id, 25).then_some(2));
    }
    for d in &staged {
        d.report(1, Some(2)).await?;
    }
    let r = rollout(&server, &group).await?;
    assert_eq!(r["state"], "aborted", "{r}");
    let reason = r["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("failed to apply version 2"), "{reason}");

    // Everyone, including a device that had taken version 2, is offered version 1.
    for d in &devices {
        assert!(d.pull_config(1).await?.is_none());
    }
    assert_eq!(devices[0].pull_config(2).await?.map(|o| o.version), Some(1));
    let audit = server
        .expect(
            200,
            "GET",
            "/api/v1/audit?action=config.rollout.abort",
            None,
        )
        .await?;
    let entries = audit["entries"].as_array().context("entries")?;
    assert_eq!(entries.len(), 1, "{audit}");
    assert_eq!(entries[0]["detail"]["version"], 2);
    Ok(())
}

#[tokio::test]
async fn a_revoked_device_is_refused_on_its_next_request() -> Result<()> {
    let server = start_server(Settings::default()).await?;
    let devices = fleet(&server, 2).await?;
    assert_eq!(devices[0].report(0, None).await?, 200);
    let other = start_server(Settings::default()).await?;
    let (status, _) = other
        .api(
            "POST",
            &format!("/api/v1/devices/{}/revoke", devices[0].id),
            None,
        )
        .await?;
    assert_eq!(status, 404, "another tenant cannot revoke it");
    server
        .expect(
            200,
            "POST",
            &format!("/api/v1/devices/{}/revoke", devices[0].id),
            None,
        )
        .await?;
    let (status, body) = devices[0]
        .signed(
            "POST",
            "/sync/v1/status",
            "application/json",
            b"{}".to_vec(),
        )
        .await?;
    assert_eq!(status, 401);
    let err: Value = serde_json::from_slice(&body)?;
    assert_eq!(err["error"]["code"], "device_revoked");
    assert_eq!(
        devices[1].report(0, None).await?,
        200,
        "its neighbour is unaffected"
    );
    let registry = server
        .expect(
            200,
            "GET",
            &format!("/api/v1/devices/{}", devices[0].id),
            None,
        )
        .await?;
    assert_eq!(registry["revoked"], true);
    Ok(())
}

#[tokio::test]
async fn enrollment_tokens_list_uses_left_and_a_revoked_token_enrolls_nobody() -> Result<()> {
    let server = start_server(Settings::default()).await?;
    let created = server
        .expect(
            201,
            "POST",
            "/api/v1/enrollment-tokens",
            Some(json!({ "ttl_s": 60, "uses": 2 })),
        )
        .await?;
    let token = created["token"].as_str().context("token")?;
    FakeDevice::enroll(&server, token, "first").await?;
    let list = server
        .expect(200, "GET", "/api/v1/enrollment-tokens", None)
        .await?;
    assert_eq!(list["tokens"][0]["uses_left"], 1);
    assert_eq!(list["tokens"][0]["uses_total"], 2);
    assert_eq!(list["tokens"][0]["expired"], false);
    assert!(
        list["tokens"][0].get("token").is_none(),
        "the secret is shown once"
    );
    let id = created["id"].as_str().context("id")?;
    server
        .expect(
            204,
            "DELETE",
            &format!("/api/v1/enrollment-tokens/{id}"),
            None,
        )
        .await?;
    assert!(FakeDevice::enroll(&server, token, "second").await.is_err());
    for bad in [
        json!({ "ttl_s": 0, "uses": 1 }),
        json!({ "ttl_s": 60, "uses": 0 }),
        json!({ "ttl": 60 }),
    ] {
        let (status, v) = server
            .api("POST", "/api/v1/enrollment-tokens", Some(bad))
            .await?;
        assert_eq!(status, 400, "{v}");
    }
    let (status, v) = server
        .api(
            "POST",
            &format!("/api/v1/device-groups/{}/config", Uuid::new_v4()),
            Some(json!({ "config": {} })),
        )
        .await?;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("group_not_found"))
    );
    Ok(())
}

/// A real agent: it applies its group's config, reports the version, stamps new
/// events with it, and refuses a config its rules cannot take, which aborts the
/// rollout.
#[tokio::test]
async fn a_real_agent_applies_its_groups_config_and_reports_a_refused_one() -> Result<()> {
    let server = start_server(Settings::default()).await?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("agent");
    let bin = fleet_tests::process::bin("fleet-agent")?;
    let token = server.token(1).await?;
    let enroll = tokio::process::Command::new(&bin)
        .args(["enroll", "--data"])
        .arg(&data)
        .args([
            "--server",
            &server.url,
            "--token",
            &token,
            "--name",
            "real-truck",
        ])
        .output()
        .await?;
    ensure!(
        enroll.status.success(),
        "enroll: {}",
        String::from_utf8_lossy(&enroll.stderr)
    );
    let device = fleet_agent::identity::Identity::load(&data)?.device_id;
    let log = std::fs::File::create(dir.path().join("agent.log"))?;
    let mut agent = tokio::process::Command::new(&bin)
        .args(["run", "--data"])
        .arg(&data)
        .args(["--simulate", "--seed", "3", "--speed", "10"])
        .env("FLEET_SYNC__CONTROL_INTERVAL_MS", "300")
        .env("FLEET_SYNC__IDLE_POLL_MS", "100")
        .env("FLEET_METRICS__ENABLED", "false")
        .env("RUST_LOG", "info")
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;

    let g = server
        .expect(
            201,
            "POST",
            "/api/v1/device-groups",
            Some(json!({ "name": "real" })),
        )
        .await?;
    let group = g["id"].as_str().context("group")?.to_owned();
    server
        .expect(
            200,
            "POST",
            &format!("/api/v1/device-groups/{group}/devices"),
            Some(json!({ "devices": [device] })),
        )
        .await?;
    let log_tail = || std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();
    // Events carry the local config's version (1) until a desired config applies,
    // so the check that matters is for version 2.
    for (version, braking) in [(1, 4.0), (2, 4.5)] {
        server
            .expect(
                201,
                "POST",
                &format!("/api/v1/device-groups/{group}/config"),
                Some(json!({ "config": { "thresholds": { "harsh_braking_mps2": braking } },
                             "rollout": { "stages": [100], "min_soak_s": 0, "failure_threshold": 0 } })),
            )
            .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let d = server
                .expect(200, "GET", &format!("/api/v1/devices/{device}"), None)
                .await?;
            let events = server
                .expect(
                    200,
                    "GET",
                    &format!("/api/v1/devices/{device}/events?limit=1000"),
                    None,
                )
                .await?;
            let stamped = events["events"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["config_version"] == version));
            if d["status"]["config_version"] == version && stamped {
                assert_eq!(d["status"]["agent_version"], env!("CARGO_PKG_VERSION"));
                assert!(d["status"]["disk_budget_bytes"].as_u64() > Some(0), "{d}");
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "the agent never reported version {version} with stamped events: {d}\n{}",
                log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(rollout(&server, &group).await?["state"], "completed");
    }
    ensure!(
        std::fs::read_to_string(data.join("desired-config.json"))?.contains("\"version\": 2"),
        "the applied config is kept in the data directory"
    );

    // Above the agent's plausibility limit: the protocol lets it through, the
    // agent's rules refuse it, and one failure of one device aborts.
    server
        .expect(
            201,
            "POST",
            &format!("/api/v1/device-groups/{group}/config"),
            Some(
                json!({ "config": { "thresholds": { "harsh_braking_mps2": 15.0 } },
                         "rollout": { "stages": [100], "min_soak_s": 0, "failure_threshold": 0 } }),
            ),
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = server
            .expect(200, "GET", &format!("/api/v1/devices/{device}"), None)
            .await?;
        if d["status"]["config_error"]["version"] == 3 {
            assert_eq!(
                d["status"]["config_version"], 2,
                "it keeps running version 2"
            );
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "no refusal reported: {d}\n{}",
            log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(rollout(&server, &group).await?["state"], "aborted");
    agent.start_kill()?;
    let _ = agent.wait().await;
    Ok(())
}
