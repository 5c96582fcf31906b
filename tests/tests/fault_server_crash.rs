//! A server crash under load: 100 devices sync concurrently while `fleet-sync`
//! is SIGKILLed and restarted on the same data. Each device resends whatever
//! was not acknowledged, as the agent does; afterwards every acknowledged event
//! is stored and nothing twice. On SQLite, and on PostgreSQL when
//! `FLEET_TEST_PG_URL` names one (skipped without it; under `CI=true` it fails).

use anyhow::{ensure, Context, Result};
use ed25519_dalek::SigningKey;
use fleet_protocol::api::{BatchAck, EnrollRequest, EnrollResponse};
use fleet_protocol::{
    encode_batch, BatchHeader, BootId, Event, EventData, EventTime, Hlc, Kind, Priority,
};
use fleet_tests::faults::Profile;
use fleet_tests::services::ServerProcess;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

const DEVICES: usize = 100;
const BATCH: u64 = 20;

struct Device {
    id: Uuid,
    tenant: Uuid,
    key: SigningKey,
    boot: BootId,
}

async fn enroll(http: &reqwest::Client, url: &str, token: &str, name: &str) -> Result<Device> {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let public_key = fleet_protocol::auth::encode_public_key(&key.verifying_key());
    let proof = fleet_protocol::auth::sign_b64(
        &key,
        &fleet_protocol::auth::enroll_message(token, &public_key),
    );
    let req = EnrollRequest {
        token: token.to_owned(),
        public_key,
        name: Some(name.to_owned()),
        proof,
        agent_version: Some("crash-test".into()),
        kind: Default::default(),
    };
    let resp = http
        .post(format!("{url}{}", fleet_protocol::api::PATH_ENROLL))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&req)?)
        .send()
        .await?;
    ensure!(resp.status().is_success(), "enroll: {}", resp.status());
    let r: EnrollResponse = serde_json::from_slice(&resp.bytes().await?)?;
    Ok(Device {
        id: r.device_id,
        tenant: r.tenant_id,
        key,
        boot: BootId::random(),
    })
}

fn frame(d: &Device, first: u64) -> Result<Vec<u8>> {
    let now = fleet_sync::storage::now_ms();
    let events: Vec<Event> = (first..first + BATCH)
        .map(|seq| Event {
            seq,
            kind: Kind::known("note"),
            priority: Priority::Critical,
            time: EventTime {
                boot_id: d.boot,
                mono_ms: seq * 100,
                wall_ms: now,
                hlc: Hlc::new(now as u64, seq as u16),
            },
            config_version: 0,
            data: EventData::Json(serde_json::json!({ "seq": seq })),
        })
        .collect();
    let header = BatchHeader {
        tenant_id: d.tenant,
        device_id: d.id,
        first_seq: first,
        last_seq: first + BATCH - 1,
        anchors: Vec::new(),
    };
    Ok(encode_batch(&header, &events, 1)?)
}

/// Sends `batches` batches in order, each until acknowledged; answers the
/// highest seq the server acknowledged and how many attempts failed.
async fn sync(http: reqwest::Client, url: String, d: Device, batches: u64) -> Result<(Uuid, u64)> {
    let mut acked = 0u64;
    let mut failures = 0u64;
    let deadline = Instant::now() + Duration::from_secs(90);
    while acked < batches * BATCH {
        ensure!(
            Instant::now() < deadline,
            "device {} stuck at {acked}",
            d.id
        );
        let body = frame(&d, acked + 1)?;
        let auth = fleet_protocol::auth::sign_request(
            &d.key,
            d.id,
            "POST",
            fleet_protocol::api::PATH_BATCHES,
            fleet_sync::storage::now_ms(),
            &body,
        );
        let sent = http
            .post(format!("{url}{}", fleet_protocol::api::PATH_BATCHES))
            .header("authorization", auth)
            .header("content-type", fleet_protocol::api::CONTENT_TYPE_BATCH)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => {
                let ack: BatchAck = serde_json::from_slice(&resp.bytes().await?)?;
                ensure!(
                    ack.acked_seq >= acked,
                    "the ack went back from {acked} to {}",
                    ack.acked_seq
                );
                acked = ack.acked_seq;
            }
            _ => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    Ok((d.id, failures))
}

#[test]
fn a_server_killed_during_a_hundred_device_syncs_loses_and_doubles_nothing() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let server = ServerProcess::new(&tmp.path().join("server"), &logs)?;
    crash_under_syncs(server, "SQLite")
}

#[test]
fn a_postgres_server_killed_during_a_hundred_device_syncs_loses_and_doubles_nothing() -> Result<()>
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // A database of its own, reached through a role that row-level security binds.
    let Some(db) = rt.block_on(fleet_sync::storage::postgres::testing::empty_database()) else {
        return Ok(());
    };
    let tmp = tempfile::tempdir()?;
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let server = ServerProcess::new(&tmp.path().join("server"), &logs)?
        .with_database_url(&postgres_url(db.app_config()));
    let r = crash_under_syncs(server, "PostgreSQL");
    drop(db);
    r
}

fn postgres_url(c: &tokio_postgres::Config) -> String {
    let host = match &c.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    format!(
        "postgres://{}:{}@{host}:{}/{}",
        c.get_user().unwrap_or_default(),
        String::from_utf8_lossy(c.get_password().unwrap_or_default()),
        c.get_ports().first().copied().unwrap_or(5432),
        c.get_dbname().unwrap_or_default()
    )
}

/// Starts `server`, syncs 100 devices through it while it is SIGKILLed and
/// restarted, and checks every acknowledged event is stored once.
fn crash_under_syncs(mut server: ServerProcess, backend: &str) -> Result<()> {
    let crashes: usize = Profile::from_env().pick(1, 5);
    let batches: u64 = Profile::from_env().pick(10, 40);
    let started = Instant::now();
    let (tenant_id, api_key) = server.create_tenant("server crash")?;
    let token = server.create_token(&tenant_id, DEVICES as u32)?;
    server.start()?;
    let url = server.url();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let devices = rt.block_on(async {
        let mut out = Vec::new();
        for i in 0..DEVICES {
            out.push(enroll(&http, &url, &token, &format!("truck-{i}")).await?);
        }
        anyhow::Ok(out)
    })?;
    let progress = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = devices
        .into_iter()
        .map(|d| {
            let progress = progress.clone();
            let fut = sync(http.clone(), url.clone(), d, batches);
            rt.spawn(async move {
                let r = fut.await;
                progress.fetch_add(1, Ordering::Relaxed);
                r
            })
        })
        .collect();

    for _ in 0..crashes {
        std::thread::sleep(Duration::from_millis(400));
        server.kill()?;
        std::thread::sleep(Duration::from_millis(200));
        server.start()?;
    }
    let results = rt.block_on(async {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await??);
        }
        anyhow::Ok(out)
    })?;
    let failed_attempts: u64 = results.iter().map(|(_, f)| f).sum();
    ensure!(
        failed_attempts > 0,
        "no request failed: the kills landed after the devices had finished"
    );

    let listed = server.api_get(&api_key, "/api/v1/devices")?;
    let listed = listed.as_array().context("devices list")?;
    let mut checked = 0;
    for (id, _) in &results {
        let d = listed
            .iter()
            .find(|d| d["id"] == id.to_string().as_str())
            .with_context(|| format!("device {id} not listed"))?;
        ensure!(
            d["last_seq"].as_u64() == Some(batches * BATCH),
            "device {id}: last_seq {} after {} acknowledged",
            d["last_seq"],
            batches * BATCH
        );
        ensure!(
            d["event_count"].as_u64() == Some(batches * BATCH),
            "device {id}: {} events stored, {} acknowledged",
            d["event_count"],
            batches * BATCH
        );
        checked += batches * BATCH;
    }
    // One device in full: seqs 1..=n, each once.
    let (first, _) = results[0];
    let events = server.all_device_events(&api_key, &first.to_string())?;
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    ensure!(
        seqs == (1..=batches * BATCH).collect::<Vec<_>>(),
        "device {first}: seqs are not 1..={} once each",
        batches * BATCH
    );
    eprintln!(
        "server crash ({backend}): {crashes} SIGKILLs of fleet-sync under {DEVICES} syncing devices, \
         {failed_attempts} failed requests retried, {checked} acknowledged events checked, \
         0 lost, 0 duplicated, in {:?}",
        started.elapsed()
    );
    Ok(())
}
