//! Batch ingest over loopback HTTP for one device, 5,000-event batches, against a
//! bare rusqlite loop writing the same rows with the same pragmas in the same run.
//!
//! `cargo bench -p fleet-sync --no-default-features --bench ingest [-- EVENTS]`

use fleet_protocol::{
    api, auth, encode_batch, BatchHeader, BootId, Event, EventData, EventTime, Hlc, Kind, Position,
    Priority,
};
use fleet_sync::storage::{now_ms, EnrollDevice};
use std::time::{Duration, Instant};

const BATCH: u64 = 5_000;

fn event(seq: u64, boot: BootId) -> Event {
    let t = seq as i64 * 1000;
    let (kind, data) = if seq % 50 == 0 {
        (
            Kind::known("signal"),
            EventData::Json(serde_json::json!({"rpm": 1450 + seq % 300, "coolant_c": 88})),
        )
    } else {
        let s = seq as i32;
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
            mono_ms: seq * 1000,
            wall_ms: 1_760_000_000_000 + t,
            hlc: Hlc::new(1_760_000_000_000 + seq * 1000, 0),
        },
        config_version: 1,
        data,
    }
}

/// The same rows written by hand: one prepared statement, one transaction per batch.
fn bare_rusqlite(dir: &std::path::Path, events: &[Event]) -> f64 {
    let conn = rusqlite::Connection::open(dir.join("bare.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch(
        "CREATE TABLE events (tenant_id BLOB NOT NULL, device_id BLOB NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, priority INTEGER NOT NULL,
            boot_id BLOB NOT NULL, mono_ms INTEGER NOT NULL, wall_ms INTEGER NOT NULL, hlc INTEGER NOT NULL, config_version INTEGER NOT NULL,
            time_ms INTEGER NOT NULL, time_source TEXT NOT NULL, data TEXT NOT NULL, received_at_ms INTEGER NOT NULL,
            PRIMARY KEY (tenant_id, device_id, seq)) WITHOUT ROWID;",
    )
    .unwrap();
    let (t, d) = ([1u8; 16], [2u8; 16]);
    let start = Instant::now();
    let mut conn = conn;
    for chunk in events.chunks(BATCH as usize) {
        let tx = conn.transaction().unwrap();
        {
            let mut st = tx
                .prepare_cached("INSERT INTO events VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)")
                .unwrap();
            for e in chunk {
                let data = serde_json::to_string(&e.data.to_json()).unwrap();
                st.execute(rusqlite::params![
                    t.as_slice(),
                    d.as_slice(),
                    e.seq as i64,
                    e.kind.as_str(),
                    e.priority as u8,
                    e.time.boot_id.0.as_slice(),
                    e.time.mono_ms as i64,
                    e.time.wall_ms,
                    e.time.hlc.0 as i64,
                    e.config_version,
                    e.time.wall_ms,
                    "device",
                    data,
                    0i64
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    events.len() as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let total: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(250_000);
    let batches = total.div_ceil(BATCH);
    let dir = tempfile::tempdir().unwrap();
    let storage = fleet_sync::open_sqlite(dir.path()).await.unwrap();
    let tenant = storage.create_tenant("bench").await.unwrap();
    let token = storage
        .create_enrollment_token(tenant.tenant_id, Duration::from_secs(60), 1)
        .await
        .unwrap();
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let device = storage
        .enroll_device(EnrollDevice {
            token: token.token,
            public_key: auth::encode_public_key(&key.verifying_key()),
            name: Some("bench".into()),
            agent_version: None,
            now_ms: now_ms(),
        })
        .await
        .unwrap();

    let boot = BootId::random();
    let events: Vec<Event> = (1..=batches * BATCH).map(|s| event(s, boot)).collect();
    let frames: Vec<Vec<u8>> = events
        .chunks(BATCH as usize)
        .map(|c| {
            let header = BatchHeader {
                tenant_id: device.tenant_id,
                device_id: device.device_id,
                first_seq: c[0].seq,
                last_seq: c[c.len() - 1].seq,
                anchors: vec![],
            };
            encode_batch(&header, c, 3).unwrap()
        })
        .collect();
    let wire: usize = frames.iter().map(Vec::len).sum();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(fleet_sync::serve(
        listener,
        fleet_sync::AppState::new(storage.clone()),
        async {
            let _ = stopped.await;
        },
    ));
    let client = reqwest::Client::new();
    let url = format!("http://{addr}{}", api::PATH_BATCHES);

    let start = Instant::now();
    let mut acked = 0;
    for frame in frames {
        let auth = auth::sign_request(
            &key,
            device.device_id,
            "POST",
            api::PATH_BATCHES,
            now_ms(),
            &frame,
        );
        let resp = client
            .post(&url)
            .header("authorization", auth)
            .header("content-type", api::CONTENT_TYPE_BATCH)
            .body(frame)
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "{}",
            resp.text().await.unwrap_or_default()
        );
        let ack: api::BatchAck = resp.json().await.unwrap();
        acked = ack.acked_seq;
    }
    let http_rate = events.len() as f64 / start.elapsed().as_secs_f64();
    assert_eq!(acked, events.len() as u64);
    let _ = stop.send(());
    server.await.unwrap().unwrap();

    let bare_rate = bare_rusqlite(dir.path(), &events);
    println!(
        "events: {} in batches of {BATCH}, {wire} bytes on the wire",
        events.len()
    );
    println!("fleet-sync over loopback HTTP: {http_rate:>10.0} events/s (target > 100000)");
    println!("bare rusqlite insert loop:     {bare_rate:>10.0} events/s");
    println!("ratio http/bare: {:.2}", http_rate / bare_rate);
}
