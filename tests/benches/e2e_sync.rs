//! End-to-end sync throughput on loopback: events per second from one device's
//! outbox to the server's durable storage. The real `fleet_sync` router and SQLite
//! storage serve 127.0.0.1:0 in this process; the real agent `Store` holds the
//! backlog and the real sync loop delivers it over HTTP with signed requests.
//! Target: 100,000 events/s with one device.
//!
//! Baseline, measured in the same run (before and after; the faster counts): a
//! bare rusqlite loop inserting the same rows into the server's events table (same
//! schema, WAL, synchronous=FULL), one transaction per batch of the size the sync
//! client sends. The ratio says what
//! the wire, the codec, auth and both stores cost on top of the server's last step.
//!
//! `cargo bench -p fleet-tests --bench e2e_sync` (`E2E_SYNC_EVENTS` sets the backlog).

use anyhow::{ensure, Context, Result};
use fleet_agent::clock::{SharedClock, SystemClock};
use fleet_agent::store::{NewEvent, Store, StoreOptions};
use fleet_agent::sync::{run_sync, SyncOptions};
use fleet_protocol::event::kinds;
use fleet_protocol::{BootId, EventData, Priority};
use fleet_tests::drive::drive;
use rusqlite::params;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const TARGET_EVENTS_PER_S: f64 = 100_000.0;
const WALL_OFFSET_MS: i64 = 1_717_000_000_000;

fn backlog_events() -> usize {
    std::env::var("E2E_SYNC_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

/// The backlog: GPS positions of a believable drive, repeated with advancing time.
fn new_events(n: usize) -> Vec<NewEvent> {
    let fixes = drive(7, 3_600);
    (0..n)
        .map(|i| {
            let f = &fixes[i % fixes.len()];
            let mono_ms = f.mono_ms + (i / fixes.len()) as u64 * 3_600_000;
            NewEvent {
                kind: kinds::POSITION,
                priority: Priority::Telemetry,
                mono_ms,
                wall_ms: WALL_OFFSET_MS + mono_ms as i64,
                config_version: 1,
                data: EventData::Position(f.position),
            }
        })
        .collect()
}

struct Measured {
    events: usize,
    seconds: f64,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }
}

async fn end_to_end(n: usize, batch: usize) -> Result<Measured> {
    let tmp = tempfile::tempdir()?;
    let storage = fleet_sync::open_sqlite(&tmp.path().join("server")).await?;
    let tenant = storage.create_tenant("bench").await?;
    let token = storage
        .create_enrollment_token(tenant.tenant_id, Duration::from_secs(600), 1)
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop_server, mut server_stopped) = watch::channel(false);
    let server = tokio::spawn(fleet_sync::serve(
        listener,
        fleet_sync::AppState::new(storage.clone()),
        async move {
            let _ = server_stopped.wait_for(|s| *s).await;
        },
    ));

    let agent_dir = tmp.path().join("agent");
    let identity =
        fleet_agent::identity::enroll(&url, &token.token, &agent_dir, Some("bench")).await?;
    let device_id = identity.device_id;
    let clock: SharedClock = Arc::new(SystemClock::new());
    let store = Store::open(&agent_dir, BootId::random(), StoreOptions::default())?;
    for ev in new_events(n) {
        store.submit(ev).await?;
    }
    let last = store.flush().await?;
    ensure!(last == n as u64, "the store committed {last} of {n} events");

    let (stop_sync, sync_stopped) = watch::channel(false);
    let opts = SyncOptions {
        batch_max_events: batch,
        idle_poll: Duration::from_millis(5),
        docs_interval: Duration::from_secs(3_600),
        ..SyncOptions::default()
    };
    let started = Instant::now();
    let sync = tokio::spawn(run_sync(store.clone(), identity, clock, opts, sync_stopped));
    let deadline = started + Duration::from_secs(600);
    while store.acked_seq().await? < last {
        ensure!(
            Instant::now() < deadline,
            "the backlog did not drain within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let seconds = started.elapsed().as_secs_f64();

    let _ = stop_sync.send(true);
    sync.await?.context("sync loop")?;
    let devices = storage.list_devices(tenant.tenant_id).await?;
    let stored = devices
        .iter()
        .find(|d| d.id == device_id)
        .map_or(0, |d| d.event_count);
    ensure!(
        stored as usize == n,
        "the server stored {stored} of {n} events"
    );
    let _ = stop_server.send(true);
    server.await??;
    store.close().await?;
    Ok(Measured { events: n, seconds })
}

/// The server's last step alone: the same rows into the same table, one
/// transaction per batch, with the server's pragmas.
fn bare_sqlite(n: usize, batch: usize) -> Result<Measured> {
    let tmp = tempfile::tempdir()?;
    let mut conn = rusqlite::Connection::open(tmp.path().join("bare.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE events (
             tenant_id BLOB NOT NULL, device_id BLOB NOT NULL, seq INTEGER NOT NULL,
             kind TEXT NOT NULL, priority INTEGER NOT NULL, boot_id BLOB NOT NULL,
             mono_ms INTEGER NOT NULL, wall_ms INTEGER NOT NULL, hlc INTEGER NOT NULL,
             config_version INTEGER NOT NULL, time_ms INTEGER NOT NULL, time_source TEXT NOT NULL,
             data TEXT NOT NULL, received_at_ms INTEGER NOT NULL,
             PRIMARY KEY (tenant_id, device_id, seq)
         ) WITHOUT ROWID;
         CREATE INDEX events_by_boot ON events (tenant_id, device_id, boot_id);",
    )?;
    let events = new_events(n);
    let (tenant, device, boot) = ([1u8; 16], [2u8; 16], [3u8; 16]);
    let started = Instant::now();
    for (chunk_no, chunk) in events.chunks(batch).enumerate() {
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (tenant_id, device_id, seq, kind, priority, boot_id, mono_ms, wall_ms, hlc,
                     config_version, time_ms, time_source, data, received_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                 ON CONFLICT (tenant_id, device_id, seq) DO NOTHING",
            )?;
            for (i, e) in chunk.iter().enumerate() {
                let seq = (chunk_no * batch + i + 1) as i64;
                let data = serde_json::to_string(&e.data.to_json())?;
                insert.execute(params![
                    tenant.as_slice(),
                    device.as_slice(),
                    seq,
                    e.kind.as_str(),
                    e.priority as u8,
                    boot.as_slice(),
                    e.mono_ms as i64,
                    e.wall_ms,
                    e.wall_ms << 16,
                    e.config_version,
                    e.wall_ms,
                    "device",
                    data,
                    WALL_OFFSET_MS
                ])?;
            }
        }
        tx.commit()?;
    }
    Ok(Measured {
        events: n,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn main() -> Result<()> {
    let n = backlog_events();
    let batch = SyncOptions::default().batch_max_events;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The baseline runs before and after, and the faster counts: a neighbour's load
    // on a shared machine then flatters the ratio less.
    let before = bare_sqlite(n, batch)?;
    let e2e = rt.block_on(end_to_end(n, batch))?;
    let after = bare_sqlite(n, batch)?;
    let baseline = if before.rate() >= after.rate() {
        before
    } else {
        after
    };
    println!(
        "e2e_sync: {n} events, batches of {batch}, one device, loopback, SQLite synchronous=FULL"
    );
    println!(
        "  baseline bare rusqlite insert: {:>10.0} events/s ({:.2} s)",
        baseline.rate(),
        baseline.seconds
    );
    println!(
        "  outbox -> HTTP -> server:      {:>10.0} events/s ({:.2} s)",
        e2e.rate(),
        e2e.seconds
    );
    println!(
        "e2e_sync: {:.0} events/s = {:.2} of the bare insert loop; target {TARGET_EVENTS_PER_S:.0}/s: {} (ratio to target {:.2})",
        e2e.rate(),
        e2e.rate() / baseline.rate(),
        if e2e.rate() >= TARGET_EVENTS_PER_S { "MET" } else { "MISSED" },
        e2e.rate() / TARGET_EVENTS_PER_S
    );
    Ok(())
}
