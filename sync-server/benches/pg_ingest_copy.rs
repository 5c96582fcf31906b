//! PostgreSQL ingest against a bare `COPY` of the same rows, in the same run.
//!
//! Many devices at once (one task each, the storage's own connection pool) send
//! five-minute batches through `Storage::ingest_batch`, the path a device's
//! `POST /sync/v1/batches` takes after decoding: device row lock, dedup lookup,
//! events, boot spans, last position and counters in one transaction, with
//! row-level security on. The baseline writes the very same event rows with
//! binary `COPY ... FROM STDIN`, one `COPY` per batch, over as many connections
//! as the pool has, into `bare_events`: a table partitioned and keyed like
//! `events` (default partition, same primary key, same BRIN index).
//!
//! Target (issue 5): ours ÷ COPY ≥ 0.5 events/s.
//!
//! `FLEET_TEST_PG_URL=postgres://… cargo bench -p fleet-sync --no-default-features --bench pg_ingest_copy [-- DEVICES BATCHES]`

use ed25519_dalek::SigningKey;
use fleet_protocol::{
    auth, Batch, BatchHeader, BootId, Event, EventData, EventTime, Hlc, Kind, Position, Priority,
};
use fleet_sync::storage::postgres::{testing, PgStorage};
use fleet_sync::storage::{now_ms, EnrollDevice, Storage};
use futures_util::pin_mut;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

/// Events in one batch: five minutes at 1 Hz plus an engine signal every 10 s.
const BATCH_EVENTS: u64 = 330;
/// Connections the baseline uses: the storage pool's size.
const COPY_CONNECTIONS: usize = 16;

fn event(seq: u64, boot: BootId, now: i64) -> Event {
    let s = seq as i32;
    let wall_ms = now - 3_600_000 + seq as i64 * 1_000;
    let (kind, data) = if seq % 11 == 0 {
        (
            Kind::known("signal"),
            EventData::Json(serde_json::json!({"rpm": 1_400 + seq % 300, "coolant_c": 88})),
        )
    } else {
        (
            Kind::known("position"),
            EventData::Position(Position {
                lat_e7: 525_200_000 + s * 90,
                lon_e7: 134_050_000 + s * 55,
                alt_dm: Some(340 + s % 7),
                speed_cms: Some(1_300 + (seq % 40) as u32),
                heading_cdeg: Some(4_500),
                hdop_d: Some(9),
                sats: Some(11),
                fix: 2,
            }),
        )
    };
    Event {
        seq,
        kind,
        priority: Priority::Telemetry,
        time: EventTime {
            boot_id: boot,
            mono_ms: seq * 1_000,
            wall_ms,
            hlc: Hlc::new(wall_ms as u64, 0),
        },
        config_version: 1,
        data,
    }
}

/// One device's batches.
fn batches(tenant: Uuid, device: Uuid, count: u64, now: i64) -> Vec<Batch> {
    let boot = BootId::random();
    (0..count)
        .map(|b| {
            let events: Vec<Event> = (b * BATCH_EVENTS + 1..=(b + 1) * BATCH_EVENTS)
                .map(|s| event(s, boot, now))
                .collect();
            Batch {
                header: BatchHeader {
                    tenant_id: tenant,
                    device_id: device,
                    first_seq: events[0].seq,
                    last_seq: events[events.len() - 1].seq,
                    anchors: vec![],
                },
                events,
                rejects: vec![],
            }
        })
        .collect()
}

/// The row `events` gets for `e` (time from the device clock, which is plausible here).
struct Row {
    tenant: Uuid,
    device: Uuid,
    seq: i64,
    kind: String,
    priority: i16,
    boot: Vec<u8>,
    mono_ms: i64,
    wall_ms: i64,
    hlc: i64,
    config_version: i64,
    data: String,
    received_at_ms: i64,
}

fn row(b: &Batch, e: &Event, now: i64) -> Row {
    Row {
        tenant: b.header.tenant_id,
        device: b.header.device_id,
        seq: e.seq as i64,
        kind: e.kind.as_str().to_owned(),
        priority: i16::from(e.priority as u8),
        boot: e.time.boot_id.0.to_vec(),
        mono_ms: e.time.mono_ms as i64,
        wall_ms: e.time.wall_ms,
        hlc: e.time.hlc.0 as i64,
        config_version: i64::from(e.config_version),
        data: serde_json::to_string(&e.data.to_json()).unwrap(),
        received_at_ms: now,
    }
}

const COPY_TYPES: [Type; 14] = [
    Type::UUID,
    Type::UUID,
    Type::INT8,
    Type::TEXT,
    Type::INT2,
    Type::BYTEA,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
];

async fn copy_batch(client: &tokio_postgres::Client, rows: &[Row]) {
    let sink = client
        .copy_in(
            "COPY bare_events (tenant_id, device_id, seq, kind, priority, boot_id, mono_ms, wall_ms, hlc,
                 config_version, time_ms, time_source, data, received_at_ms) FROM STDIN BINARY",
        )
        .await
        .unwrap();
    let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    pin_mut!(writer);
    for r in rows {
        let source = "device";
        let values: [&(dyn ToSql + Sync); 14] = [
            &r.tenant,
            &r.device,
            &r.seq,
            &r.kind,
            &r.priority,
            &r.boot,
            &r.mono_ms,
            &r.wall_ms,
            &r.hlc,
            &r.config_version,
            &r.wall_ms,
            &source,
            &r.data,
            &r.received_at_ms,
        ];
        writer.as_mut().write(&values).await.unwrap();
    }
    writer.finish().await.unwrap();
}

async fn ours(
    storage: Arc<PgStorage>,
    work: Vec<(fleet_sync::storage::DeviceRecord, Vec<Batch>)>,
) -> (u64, f64) {
    let started = Instant::now();
    let tasks: Vec<_> = work
        .into_iter()
        .map(|(device, batches)| {
            let storage = storage.clone();
            tokio::spawn(async move {
                let mut stored = 0u64;
                for b in batches {
                    let out = storage.ingest_batch(&device, b, now_ms()).await.unwrap();
                    stored += u64::from(out.stored);
                }
                stored
            })
        })
        .collect();
    let mut stored = 0;
    for t in tasks {
        stored += t.await.unwrap();
    }
    (stored, started.elapsed().as_secs_f64())
}

async fn bare_copy(config: &tokio_postgres::Config, batches: Vec<Vec<Row>>) -> (u64, f64) {
    let events: u64 = batches.iter().map(|b| b.len() as u64).sum();
    let queue = Arc::new(std::sync::Mutex::new(batches));
    let mut clients = Vec::new();
    for _ in 0..COPY_CONNECTIONS {
        clients.push(PgStorage::dedicated(config).await.unwrap());
    }
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let queue = queue.clone();
            tokio::spawn(async move {
                loop {
                    let Some(rows) = queue.lock().unwrap().pop() else {
                        return;
                    };
                    copy_batch(&client, &rows).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (events, started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<u64>().ok());
    let devices = args.next().unwrap_or(64);
    let per_device = args.next().unwrap_or(4);
    let Some(guard) = testing::empty_database().await else {
        eprintln!("pg_ingest_copy: set FLEET_TEST_PG_URL to a PostgreSQL superuser URL");
        return;
    };
    let storage = Arc::new(
        PgStorage::connect_with(guard.app_config().clone())
            .await
            .unwrap(),
    );
    let admin = PgStorage::dedicated(guard.app_config()).await.unwrap();
    admin
        .batch_execute(
            "CREATE TABLE bare_events (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE (time_ms);
             ALTER TABLE bare_events ADD PRIMARY KEY (tenant_id, device_id, seq, time_ms);
             CREATE TABLE bare_events_default PARTITION OF bare_events DEFAULT;
             CREATE INDEX bare_events_time_brin ON bare_events USING brin (time_ms);",
        )
        .await
        .unwrap();

    let tenant = storage.create_tenant("bench").await.unwrap();
    let token = storage
        .create_enrollment_token(tenant.tenant_id, Duration::from_secs(600), devices as u32)
        .await
        .unwrap();
    let now = now_ms();
    let mut work = Vec::new();
    let mut copy_rows = Vec::new();
    for i in 0..devices {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let device = storage
            .enroll_device(EnrollDevice {
                token: token.token.clone(),
                public_key: auth::encode_public_key(&key.verifying_key()),
                name: Some(format!("bench-{i}")),
                agent_version: None,
                now_ms: now,
            })
            .await
            .unwrap();
        let bs = batches(device.tenant_id, device.device_id, per_device, now);
        for b in &bs {
            copy_rows.push(b.events.iter().map(|e| row(b, e, now)).collect::<Vec<_>>());
        }
        work.push((device, bs));
    }
    let total = devices * per_device * BATCH_EVENTS;

    // The baseline runs before and after ours, each into an empty table, and
    // the faster counts: a neighbour's load then flatters the ratio less.
    let before = bare_copy(
        guard.app_config(),
        copy_rows
            .iter()
            .map(|b| b.iter().map(clone_row).collect())
            .collect(),
    )
    .await;
    admin.batch_execute("TRUNCATE bare_events").await.unwrap();
    let (stored, ours_s) = ours(storage.clone(), work).await;
    assert_eq!(stored, total, "ingest stored {stored} of {total} events");
    let after = bare_copy(guard.app_config(), copy_rows).await;
    let copy_s = before.1.min(after.1);
    let counted: i64 = admin
        .query_one("SELECT count(*) FROM bare_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(counted as u64, total);

    let ours_rate = total as f64 / ours_s;
    let copy_rate = total as f64 / copy_s;
    println!(
        "pg_ingest_copy: {devices} devices x {per_device} batches x {BATCH_EVENTS} events = {total} events"
    );
    println!("  binary COPY, {COPY_CONNECTIONS} connections, one COPY per batch: {copy_rate:>9.0} events/s ({copy_s:.2} s; runs {:.2} s and {:.2} s)", before.1, after.1);
    println!("  Storage::ingest_batch, one task per device:           {ours_rate:>9.0} events/s ({ours_s:.2} s)");
    println!(
        "pg_ingest_copy: ratio ours/COPY = {:.2} (target >= 0.5: {})",
        ours_rate / copy_rate,
        if ours_rate / copy_rate >= 0.5 {
            "MET"
        } else {
            "MISSED"
        }
    );
    drop(admin);
    drop(storage);
    drop(guard);
}

fn clone_row(r: &Row) -> Row {
    Row {
        tenant: r.tenant,
        device: r.device,
        seq: r.seq,
        kind: r.kind.clone(),
        priority: r.priority,
        boot: r.boot.clone(),
        mono_ms: r.mono_ms,
        wall_ms: r.wall_ms,
        hlc: r.hlc,
        config_version: r.config_version,
        data: r.data.clone(),
        received_at_ms: r.received_at_ms,
    }
}
