//! Scan-to-relay latency: a key tag's label handed to the kiosk flow (badge
//! already scanned), the driver's confirm, the check-out event committed and
//! fsynced, the custody document saved, and the slot relay high on the
//! simulated GPIO. Baseline in the same run: one fsynced SQLite insert in WAL
//! with synchronous=FULL, the least a durable record can cost on this disk.
//!
//! `cargo bench -p fleet-agent --bench scan_to_relay` (SCAN_TO_RELAY_N sets the
//! number of check-outs, 200 by default). Target: median < 150 ms.

use ed25519_dalek::SigningKey;
use fleet_agent::clock::{Clock, SystemClock};
use fleet_agent::kiosk::flow::Input;
use fleet_agent::kiosk::outputs::Signals;
use fleet_agent::kiosk::{BlobSink, Kiosk, KioskParts};
use fleet_agent::store::{Store, StoreOptions};
use fleet_hal::gpio::KioskPins;
use fleet_protocol::label::{self, Label, LabelKind, TenantTrust};
use fleet_protocol::snapshot::{
    KioskPolicy, Snapshot, SnapshotAsset, SnapshotBadge, SnapshotKey, WalkUp,
};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

const SLOTS: usize = 8;

struct NoBlobs;

impl BlobSink for NoBlobs {
    fn put(&self, _: &[u8], _: &str) -> Result<String, String> {
        Err("no images in this benchmark".into())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn bare_inserts(dir: &std::path::Path, n: usize) -> Vec<Duration> {
    let c = rusqlite::Connection::open(dir.join("bare.db")).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE ev (seq INTEGER PRIMARY KEY, kind TEXT, data BLOB);",
    )
    .unwrap();
    let body = vec![7u8; 300];
    (0..n)
        .map(|i| {
            let t = std::time::Instant::now();
            c.execute(
                "INSERT INTO ev (seq, kind, data) VALUES (?1, 'checkout', ?2)",
                rusqlite::params![i as i64 + 1, body],
            )
            .unwrap();
            t.elapsed()
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("SCAN_TO_RELAY_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SystemClock::new());
    let now = clock.wall_ms();

    let key = SigningKey::from_bytes(&[5u8; 32]);
    let tenant = Uuid::new_v4();
    let trust = TenantTrust::new(tenant, key.verifying_key());
    let mut snap = Snapshot::empty(tenant, "bench", now, now + 3_600_000);
    snap.policy = KioskPolicy {
        walk_up: WalkUp::Allow,
        grace_minutes: 15,
        max_checkout_hours: 8,
    };
    let badge = Uuid::new_v4();
    snap.badges.push(SnapshotBadge {
        id: badge,
        driver_name: "Bench Driver".into(),
        revoked: false,
    });
    let mut key_tags = Vec::new();
    for i in 0..n {
        let (asset, tag) = (Uuid::new_v4(), Uuid::new_v4());
        snap.assets.push(SnapshotAsset {
            id: asset,
            kind: LabelKind::Vehicle,
            name: format!("Van {i}"),
            short_code: label::short_code(asset),
            unsafe_defect: false,
            odometer_km: None,
            odometer_at_ms: None,
            fuel_pct: None,
            fuel_at_ms: None,
        });
        snap.keys.push(SnapshotKey {
            id: tag,
            asset,
            slot: (i % SLOTS) as u32 + 1,
            revoked: false,
        });
        key_tags.push(Label::new(LabelKind::Key, tag).sign(&key));
    }
    let badge_text = Label::new(LabelKind::Badge, badge).sign(&key);

    let store = Store::open(dir.path(), clock.boot_id(), StoreOptions::default()).unwrap();
    let (pins, sim) = KioskPins::simulated(SLOTS);
    let kiosk = Kiosk::new(KioskParts {
        store: store.clone(),
        clock: clock.clone(),
        kiosk_id: "bench".into(),
        yard: "bench".into(),
        trust: Some(trust),
        signals: Signals::new(pins, Duration::from_millis(50)).unwrap(),
        sim: Some(sim.clone()),
        blobs: Arc::new(NoBlobs),
        config_version: 1,
        location: None,
    });
    kiosk.set_snapshot(Some(snap));

    let mut kiosk_times = Vec::with_capacity(n);
    for (i, tag) in key_tags.iter().enumerate() {
        kiosk.handle(Input::Scan(badge_text.clone())).await.unwrap();
        let slot = &sim.slots[i % SLOTS];
        let before = slot.transitions().len();
        let t0 = tokio::time::Instant::now();
        kiosk.handle(Input::Scan(tag.clone())).await.unwrap();
        kiosk.handle(Input::Confirm).await.unwrap();
        let rise = slot.transitions()[before..]
            .iter()
            .find(|t| t.high)
            .expect("the relay went high")
            .at;
        kiosk_times.push(rise - t0);
        // Let the pulse end before the slot is used again.
        tokio::time::sleep(Duration::from_millis(if (i + 1) % SLOTS == 0 {
            60
        } else {
            0
        }))
        .await;
    }
    let stats = store.stats().await.unwrap();
    assert!(stats.last_seq >= n as u64, "every check-out recorded");
    store.close().await.unwrap();
    let mut bare = bare_inserts(dir.path(), n);

    kiosk_times.sort();
    bare.sort();
    let (k50, k95) = (
        percentile(&kiosk_times, 0.5),
        percentile(&kiosk_times, 0.95),
    );
    let (b50, b95) = (percentile(&bare, 0.5), percentile(&bare, 0.95));
    println!("scan_to_relay: {n} check-outs, simulated GPIO, store and custody fsynced");
    println!(
        "  kiosk  scan -> relay high: median {:.2} ms, p95 {:.2} ms",
        ms(k50),
        ms(k95)
    );
    println!(
        "  bare fsynced SQLite insert: median {:.2} ms, p95 {:.2} ms",
        ms(b50),
        ms(b95)
    );
    println!(
        "  ratio (kiosk / bare insert): median {:.1}x, p95 {:.1}x",
        ms(k50) / ms(b50).max(1e-6),
        ms(k95) / ms(b95).max(1e-6)
    );
    println!(
        "  target median < 150 ms: {}",
        if ms(k50) < 150.0 { "met" } else { "NOT met" }
    );
}
