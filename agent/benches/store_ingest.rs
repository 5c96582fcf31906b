//! Local store ingest: events per second committed through `Store::submit` +
//! `flush` under the durability policy (group commit of 10,000 events, WAL,
//! synchronous=FULL), against a bare rusqlite loop inserting the same rows in
//! transactions of the same size with the same pragmas and schema, in the same run.
//!
//! `cargo bench -p fleet-agent --bench store_ingest` (set STORE_INGEST_EVENTS to
//! change the number of events per run). Target: ratio >= 0.8.

use fleet_agent::store::{
    rows, schema, BootId, EventData, Kind, NewEvent, Priority, Store, StoreOptions,
};
use fleet_protocol::{HlcClock, Position};
use rusqlite::{params, Connection};
use std::path::Path;
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;

/// A vehicle driving at about 14 m/s, one GNSS fix per second.
fn telemetry(n: usize) -> Vec<NewEvent> {
    let start_ms = 1_700_000_000_000i64;
    (0..n)
        .map(|i| {
            let t = i as i64;
            let wobble = ((i % 97) as i32 - 48) * 3;
            NewEvent {
                kind: Kind::known("position"),
                priority: Priority::Telemetry,
                mono_ms: 60_000 + i as u64 * 1_000,
                wall_ms: start_ms + t * 1_000,
                config_version: 1,
                data: EventData::Position(Position {
                    lat_e7: 525_200_000 + i as i32 * 90 + wobble,
                    lon_e7: 134_050_000 + i as i32 * 110 - wobble,
                    alt_dm: Some(340 + (i % 20) as i32),
                    speed_cms: Some(1_400 + (i % 50) as u32 * 3),
                    heading_cdeg: Some((4_500 + i * 7 % 900) as u16),
                    hdop_d: Some(8 + (i % 4) as u16),
                    sats: Some(9 + (i % 5) as u8),
                    fix: 2,
                }),
            }
        })
        .collect()
}

async fn through_store(dir: &Path, events: &[NewEvent]) -> Duration {
    let opts = StoreOptions::default();
    let store = Store::open(dir, BootId([1; 16]), opts).unwrap();
    let started = Instant::now();
    for ev in events {
        store.submit(ev.clone()).await.unwrap();
    }
    let last = store.flush().await.unwrap();
    let took = started.elapsed();
    assert_eq!(last, events.len() as u64);
    store.close().await.unwrap();
    took
}

/// The same pragmas, schema, rows and transaction size, with nothing around them.
fn bare_loop(dir: &Path, events: &[NewEvent], tx_size: usize) -> Duration {
    let conn = Connection::open(dir.join("bare.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.pragma_update(None, "foreign_keys", true).unwrap();
    for sql in schema::MIGRATIONS {
        conn.execute_batch(sql).unwrap();
    }
    conn.execute(
        "INSERT INTO boots (id, boot_id) VALUES (1, ?1)",
        [&[1u8; 16][..]],
    )
    .unwrap();
    let started = Instant::now();
    let mut hlc = HlcClock::default();
    let mut payload = Vec::new();
    for (chunk_no, chunk) in events.chunks(tx_size).enumerate() {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        {
            let mut stmt = conn
                .prepare_cached(
                    "INSERT INTO events (seq, boot, kind, priority, mono_ms, wall_ms, hlc, config_version, data) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .unwrap();
            for (i, ev) in chunk.iter().enumerate() {
                payload.clear();
                rows::encode_data(&ev.data, &mut payload);
                let seq = (chunk_no * tx_size + i + 1) as i64;
                stmt.execute(params![
                    seq,
                    1,
                    ev.kind.as_str(),
                    ev.priority as u8,
                    ev.mono_ms as i64,
                    ev.wall_ms,
                    hlc.tick(ev.wall_ms).0 as i64,
                    ev.config_version,
                    payload
                ])
                .unwrap();
            }
        }
        conn.execute_batch("COMMIT").unwrap();
    }
    started.elapsed()
}

fn per_second(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let n: usize = std::env::var("STORE_INGEST_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let events = telemetry(n);
    let tx_size = StoreOptions::default().group_commit_max_events;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (mut best_store, mut best_bare) = (Duration::MAX, Duration::MAX);
    // Alternate the two so that neither gets a warmer disk or cache.
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let bare = bare_loop(dir.path(), &events, tx_size);
        let store = rt.block_on(through_store(dir.path(), &events));
        println!(
            "round {round}: store {:.0} events/s, bare rusqlite {:.0} events/s",
            per_second(n, store),
            per_second(n, bare)
        );
        best_store = best_store.min(store);
        best_bare = best_bare.min(bare);
    }
    let (s, b) = (per_second(n, best_store), per_second(n, best_bare));
    println!(
        "store_ingest: {n} position events, transactions of {tx_size}, WAL + synchronous=FULL"
    );
    println!("  Store::submit + flush: {s:.0} events/s");
    println!("  bare rusqlite loop:    {b:.0} events/s");
    println!("  ratio: {:.2} (target >= 0.80)", s / b);
}
