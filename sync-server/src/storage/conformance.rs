//! The behaviour every storage backend must show. Each check takes a fresh,
//! empty `Arc<dyn Storage>`; a backend runs them all with
//! [`conformance_suite!`](crate::conformance_suite).

use super::{DeviceRecord, DocWrite, EnrollDevice, Storage, StorageError};
use fleet_protocol::batch::RejectedEvent;
use fleet_protocol::{
    Batch, BatchHeader, BootId, Event, EventData, EventTime, Hlc, Kind, Position, Priority,
    TimeAnchor, TimeSource,
};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

pub const NOW: i64 = 1_750_000_000_000;

pub struct Fixture {
    pub storage: Arc<dyn Storage>,
    pub device: DeviceRecord,
}

pub async fn enroll_one(storage: &Arc<dyn Storage>, tenant: Uuid, name: &str) -> DeviceRecord {
    let token = storage
        .create_enrollment_token(tenant, Duration::from_secs(3600), 1)
        .await
        .unwrap();
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    storage
        .enroll_device(EnrollDevice {
            token: token.token,
            public_key: fleet_protocol::auth::encode_public_key(&key.verifying_key()),
            name: Some(name.into()),
            agent_version: None,
            now_ms: super::now_ms(),
        })
        .await
        .unwrap()
}

pub async fn fixture(storage: Arc<dyn Storage>) -> Fixture {
    let tenant = storage.create_tenant("acme").await.unwrap();
    let device = enroll_one(&storage, tenant.tenant_id, "truck-1").await;
    Fixture { storage, device }
}

pub const BOOT: BootId = BootId([7; 16]);

pub fn event(seq: u64, mono_ms: u64) -> Event {
    Event {
        seq,
        kind: Kind::known("position"),
        priority: Priority::Telemetry,
        time: EventTime {
            boot_id: BOOT,
            mono_ms,
            wall_ms: 1_000_000 + mono_ms as i64,
            hlc: Hlc::new(1_000_000 + mono_ms, 0),
        },
        config_version: 1,
        data: EventData::Position(Position {
            lat_e7: 520_000_000 + seq as i32,
            lon_e7: 130_000_000,
            alt_dm: None,
            speed_cms: Some(1_000),
            heading_cdeg: Some(9_000),
            hdop_d: None,
            sats: Some(9),
            fix: 2,
        }),
    }
}

pub fn batch(d: &DeviceRecord, first: u64, last: u64, events: Vec<Event>) -> Batch {
    Batch {
        header: BatchHeader {
            tenant_id: d.tenant_id,
            device_id: d.device_id,
            first_seq: first,
            last_seq: last,
            anchors: vec![],
        },
        events,
        rejects: vec![],
    }
}

fn dense(d: &DeviceRecord, first: u64, last: u64) -> Batch {
    batch(
        d,
        first,
        last,
        (first..=last).map(|s| event(s, s * 1000)).collect(),
    )
}

pub async fn ingest_is_idempotent_by_device_and_seq(storage: Arc<dyn Storage>) {
    let f = fixture(storage).await;
    let first = f
        .storage
        .ingest_batch(&f.device, dense(&f.device, 1, 10), NOW)
        .await
        .unwrap();
    assert_eq!(
        (first.acked_seq, first.stored, first.duplicates),
        (10, 10, 0)
    );
    let again = f
        .storage
        .ingest_batch(&f.device, dense(&f.device, 1, 10), NOW)
        .await
        .unwrap();
    assert_eq!(
        (
            again.acked_seq,
            again.stored,
            again.duplicates,
            again.quarantined
        ),
        (10, 0, 10, 0)
    );
    let devices = f.storage.list_devices(f.device.tenant_id).await.unwrap();
    assert_eq!((devices[0].event_count, devices[0].last_seq), (10, 10));
    let events = f
        .storage
        .device_events(f.device.tenant_id, f.device.device_id, 0, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
}

pub async fn a_resent_seq_with_different_content_is_quarantined_not_overwritten(
    storage: Arc<dyn Storage>,
) {
    let f = fixture(storage).await;
    f.storage
        .ingest_batch(&f.device, dense(&f.device, 1, 3), NOW)
        .await
        .unwrap();
    let mut changed = dense(&f.device, 1, 3);
    changed.events[1].kind = Kind::known("ignition_on");
    changed.events[1].data = EventData::None;
    let out = f
        .storage
        .ingest_batch(&f.device, changed.clone(), NOW)
        .await
        .unwrap();
    assert_eq!(
        (out.stored, out.duplicates, out.quarantined, out.acked_seq),
        (0, 2, 1, 3)
    );
    let stored = f
        .storage
        .device_events(f.device.tenant_id, f.device.device_id, 1, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored[0].kind, "position", "the first version stays");
    let q = f
        .storage
        .list_quarantine(f.device.tenant_id, 100)
        .await
        .unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(
        (q[0].seq, q[0].reason_code.as_str(), q[0].kind.as_deref()),
        (2, "seq_conflict", Some("ignition_on"))
    );
    // The same conflicting resend is kept once.
    let out = f
        .storage
        .ingest_batch(&f.device, changed, NOW)
        .await
        .unwrap();
    assert_eq!(out.quarantined, 0);
    assert_eq!(
        f.storage.list_devices(f.device.tenant_id).await.unwrap()[0].quarantined_count,
        1
    );
}

pub async fn an_out_of_order_batch_is_stored_but_does_not_advance_the_ack(
    storage: Arc<dyn Storage>,
) {
    let f = fixture(storage).await;
    let later = f
        .storage
        .ingest_batch(&f.device, dense(&f.device, 11, 20), NOW)
        .await
        .unwrap();
    assert_eq!((later.acked_seq, later.stored), (0, 10));
    let earlier = f
        .storage
        .ingest_batch(&f.device, dense(&f.device, 1, 10), NOW)
        .await
        .unwrap();
    assert_eq!(earlier.acked_seq, 10);
    let resent = f
        .storage
        .ingest_batch(&f.device, dense(&f.device, 11, 20), NOW)
        .await
        .unwrap();
    assert_eq!(
        (resent.acked_seq, resent.stored, resent.duplicates),
        (20, 0, 10)
    );
}

pub async fn evicted_holes_are_counted_once_and_never_for_stored_seqs(storage: Arc<dyn Storage>) {
    let f = fixture(storage).await;
    // 1..=10 with 4..=6 evicted on the device.
    let holes = batch(
        &f.device,
        1,
        10,
        [1, 2, 3, 7, 8, 9, 10]
            .iter()
            .map(|&s| event(s, s * 1000))
            .collect(),
    );
    let out = f
        .storage
        .ingest_batch(&f.device, holes.clone(), NOW)
        .await
        .unwrap();
    assert_eq!((out.acked_seq, out.stored, out.evicted), (10, 7, 3));
    let out = f.storage.ingest_batch(&f.device, holes, NOW).await.unwrap();
    assert_eq!(out.evicted, 0, "a resend counts nothing twice");
    // A resend split differently, and one where a stored seq has since been evicted.
    let out = f
        .storage
        .ingest_batch(&f.device, batch(&f.device, 2, 5, vec![event(2, 2000)]), NOW)
        .await
        .unwrap();
    assert_eq!(out.evicted, 0, "3 is stored and 4..=5 already counted");
    let d = &f.storage.list_devices(f.device.tenant_id).await.unwrap()[0];
    assert_eq!((d.event_count, d.evicted_count, d.last_seq), (7, 3, 10));
}

pub async fn rejected_events_are_quarantined_and_the_rest_stored(storage: Arc<dyn Storage>) {
    let f = fixture(storage).await;
    let mut b = batch(&f.device, 1, 3, vec![event(1, 1000), event(3, 3000)]);
    b.rejects.push(RejectedEvent {
        seq: 2,
        kind: Some("position".into()),
        reason: "latitude 200 out of range".into(),
        raw: serde_json::json!({"lat": 200.0}),
    });
    let out = f.storage.ingest_batch(&f.device, b, NOW).await.unwrap();
    assert_eq!(
        (out.stored, out.quarantined, out.evicted, out.acked_seq),
        (2, 1, 0, 3)
    );
    let q = f
        .storage
        .list_quarantine(f.device.tenant_id, 10)
        .await
        .unwrap();
    assert_eq!((q[0].seq, q[0].reason_code.as_str()), (2, "invalid_event"));
    assert_eq!(q[0].raw, serde_json::json!({"lat": 200.0}));
}

fn anchor(mono_ms: u64, true_ms: i64, source: TimeSource, uncertainty_ms: u32) -> TimeAnchor {
    TimeAnchor {
        boot_id: BOOT,
        mono_ms,
        true_ms,
        source,
        uncertainty_ms,
    }
}

pub async fn anchor_rebase_gives_the_same_times_whatever_the_arrival_order(
    storage: Arc<dyn Storage>,
) {
    let base = 1_760_000_000_000;
    let batches = |d: &DeviceRecord| {
        let mut a = dense(d, 1, 5);
        a.header.anchors = vec![anchor(500, base + 500 + 40, TimeSource::Server, 40)];
        let mut b = dense(d, 6, 10);
        b.header.anchors = vec![anchor(7_000, base + 7_000, TimeSource::Gps, 5)];
        let c = dense(d, 11, 15);
        vec![a, b, c]
    };
    let mut results = Vec::new();
    for order in [[0usize, 1, 2], [2, 1, 0], [1, 2, 0]] {
        let tenant = storage.create_tenant("t").await.unwrap();
        let dev = enroll_one(&storage, tenant.tenant_id, "v").await;
        let all = batches(&dev);
        for i in order {
            storage
                .ingest_batch(&dev, all[i].clone(), NOW)
                .await
                .unwrap();
        }
        let events = storage
            .device_events(dev.tenant_id, dev.device_id, 0, 100)
            .await
            .unwrap()
            .unwrap();
        let times: Vec<(i64, String)> = events
            .iter()
            .map(|e| (e.time_ms, e.time_source.clone()))
            .collect();
        let pos = storage.list_vehicles(dev.tenant_id).await.unwrap()[0]
            .position
            .clone()
            .unwrap();
        results.push((times, pos.seq, pos.time_ms, pos.time_source));
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
    let (times, seq, pos_time, source) = &results[0];
    // The GPS anchor wins: event 1 at mono 1000 is base + 1000.
    assert_eq!(times[0], (base + 1_000, "gps".to_owned()));
    assert_eq!(
        (*seq, *pos_time, source.as_str()),
        (15, base + 15_000, "gps")
    );
}

pub async fn events_without_an_anchor_keep_the_device_clock(storage: Arc<dyn Storage>) {
    let f = fixture(storage).await;
    f.storage
        .ingest_batch(&f.device, dense(&f.device, 1, 2), NOW)
        .await
        .unwrap();
    let events = f
        .storage
        .device_events(f.device.tenant_id, f.device.device_id, 0, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (events[0].time_ms, events[0].time_source.as_str()),
        // A wall clock in 1970 is kept, and flagged as not to be trusted.
        (1_001_000, "device_implausible")
    );
}

pub async fn enrollment_tokens_expire_and_run_out_of_uses(storage: Arc<dyn Storage>) {
    let tenant = storage.create_tenant("acme").await.unwrap().tenant_id;
    let token = storage
        .create_enrollment_token(tenant, Duration::from_secs(60), 2)
        .await
        .unwrap();
    let enroll = |token: String, now_ms: i64| {
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        EnrollDevice {
            token,
            public_key: fleet_protocol::auth::encode_public_key(&key.verifying_key()),
            name: None,
            agent_version: None,
            now_ms,
        }
    };
    let now = super::now_ms();
    let first = enroll(token.token.clone(), now);
    let a = storage.enroll_device(first.clone()).await.unwrap();
    assert_eq!(a.tenant_id, tenant);
    // Enrolling the same key again is a retry, not a second use.
    assert_eq!(
        storage.enroll_device(first).await.unwrap().device_id,
        a.device_id
    );
    storage
        .enroll_device(enroll(token.token.clone(), now))
        .await
        .unwrap();
    assert!(matches!(
        storage
            .enroll_device(enroll(token.token.clone(), now))
            .await,
        Err(StorageError::TokenUsedUp)
    ));

    let short = storage
        .create_enrollment_token(tenant, Duration::from_secs(60), 5)
        .await
        .unwrap();
    assert!(matches!(
        storage
            .enroll_device(enroll(short.token, now + 61_000))
            .await,
        Err(StorageError::TokenExpired)
    ));
    assert!(matches!(
        storage
            .enroll_device(enroll("fe_nonsense".into(), now))
            .await,
        Err(StorageError::TokenInvalid)
    ));
    assert!(matches!(
        storage
            .create_enrollment_token(Uuid::new_v4(), Duration::from_secs(60), 1)
            .await,
        Err(StorageError::UnknownTenant)
    ));
}

pub async fn a_key_enrolled_in_one_tenant_cannot_join_another(storage: Arc<dyn Storage>) {
    let t1 = storage.create_tenant("one").await.unwrap().tenant_id;
    let t2 = storage.create_tenant("two").await.unwrap().tenant_id;
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let public_key = fleet_protocol::auth::encode_public_key(&key.verifying_key());
    for (tenant, expect_ok) in [(t1, true), (t2, false)] {
        let token = storage
            .create_enrollment_token(tenant, Duration::from_secs(60), 1)
            .await
            .unwrap();
        let r = storage
            .enroll_device(EnrollDevice {
                token: token.token,
                public_key: public_key.clone(),
                name: None,
                agent_version: None,
                now_ms: super::now_ms(),
            })
            .await;
        assert_eq!(r.is_ok(), expect_ok, "{r:?}");
    }
}

pub async fn a_revoked_device_is_refused(storage: Arc<dyn Storage>) {
    let f = fixture(storage).await;
    f.storage
        .accept_nonce(&f.device, "aa", NOW, NOW, NOW - 1)
        .await
        .unwrap();
    let revoked = f
        .storage
        .revoke_device(f.device.device_id, NOW)
        .await
        .unwrap();
    assert!(revoked.revoked);
    assert!(
        f.storage
            .device(f.device.device_id)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    assert!(matches!(
        f.storage
            .accept_nonce(&f.device, "bb", NOW, NOW, NOW - 1)
            .await,
        Err(StorageError::DeviceRevoked)
    ));
    assert!(matches!(
        f.storage
            .ingest_batch(&f.device, dense(&f.device, 1, 1), NOW)
            .await,
        Err(StorageError::DeviceRevoked)
    ));
    assert_eq!(
        f.storage.list_devices(f.device.tenant_id).await.unwrap()[0].event_count,
        0
    );
    assert!(matches!(
        f.storage.revoke_device(Uuid::new_v4(), NOW).await,
        Err(StorageError::UnknownDevice)
    ));
}

pub async fn a_nonce_is_accepted_once(storage: Arc<dyn Storage>) {
    let f = fixture(storage).await;
    f.storage
        .accept_nonce(&f.device, "n1", NOW, NOW, NOW - 300_000)
        .await
        .unwrap();
    assert!(matches!(
        f.storage
            .accept_nonce(&f.device, "n1", NOW, NOW + 10, NOW - 300_000)
            .await,
        Err(StorageError::Replayed)
    ));
    // Pruning forgets only nonces too old to pass the skew check anyway.
    let later = NOW + 3_600_000;
    f.storage
        .accept_nonce(&f.device, "n2", later, later, later - 300_000)
        .await
        .unwrap();
    assert!(matches!(
        f.storage
            .accept_nonce(&f.device, "n2", later, later, later - 300_000)
            .await,
        Err(StorageError::Replayed)
    ));
}

pub async fn tenants_never_see_each_others_data(storage: Arc<dyn Storage>) {
    let f = fixture(storage).await;
    f.storage
        .ingest_batch(&f.device, dense(&f.device, 1, 3), NOW)
        .await
        .unwrap();
    let other = f.storage.create_tenant("rival").await.unwrap();
    assert_eq!(
        f.storage.tenant_for_api_key(&other.api_key).await.unwrap(),
        Some(other.tenant_id)
    );
    assert_eq!(
        f.storage.tenant_for_api_key("fk_wrong").await.unwrap(),
        None
    );
    assert!(f
        .storage
        .list_devices(other.tenant_id)
        .await
        .unwrap()
        .is_empty());
    assert!(f
        .storage
        .list_vehicles(other.tenant_id)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        f.storage
            .device_events(other.tenant_id, f.device.device_id, 0, 10)
            .await
            .unwrap(),
        None
    );
    assert!(f
        .storage
        .load_doc(other.tenant_id, "vehicle-note/x")
        .await
        .unwrap()
        .is_none());
}

pub async fn documents_append_chunks_and_compact(storage: Arc<dyn Storage>) {
    let f = fixture(storage).await;
    let t = f.device.tenant_id;
    assert_eq!(f.storage.load_doc(t, "d/1").await.unwrap(), None);
    f.storage
        .save_doc(t, "d/1", Some(DocWrite::Append(b"ab".to_vec())), None, NOW)
        .await
        .unwrap();
    f.storage
        .save_doc(
            t,
            "d/1",
            Some(DocWrite::Append(b"cd".to_vec())),
            Some((f.device.device_id, b"s1".to_vec())),
            NOW,
        )
        .await
        .unwrap();
    let doc = f.storage.load_doc(t, "d/1").await.unwrap().unwrap();
    assert_eq!((doc.bytes.as_slice(), doc.chunks), (b"abcd".as_slice(), 2));
    f.storage
        .save_doc(
            t,
            "d/1",
            Some(DocWrite::Replace(b"xyz".to_vec())),
            None,
            NOW,
        )
        .await
        .unwrap();
    let doc = f.storage.load_doc(t, "d/1").await.unwrap().unwrap();
    assert_eq!((doc.bytes.as_slice(), doc.chunks), (b"xyz".as_slice(), 1));
    assert_eq!(
        f.storage
            .doc_sync_state(t, "d/1", f.device.device_id)
            .await
            .unwrap()
            .as_deref(),
        Some(b"s1".as_slice())
    );
}

/// A kiosk (migration 0013) is listed among the devices with its kind but
/// never among the vehicles or in the fleet reports; the kind is per tenant.
pub async fn a_kiosk_is_listed_as_a_device_but_not_as_a_vehicle(storage: Arc<dyn Storage>) {
    use fleet_protocol::api::DeviceKind;
    let tenant = storage.create_tenant("acme").await.unwrap().tenant_id;
    let other = storage.create_tenant("globex").await.unwrap().tenant_id;
    let truck = enroll_one(&storage, tenant, "truck-1").await;
    let kiosk = enroll_one(&storage, tenant, "yard-kiosk").await;
    storage
        .set_device_kind(tenant, kiosk.device_id, DeviceKind::Kiosk)
        .await
        .unwrap();

    let devices = storage.list_devices(tenant).await.unwrap();
    let kinds: Vec<(&str, DeviceKind)> =
        devices.iter().map(|d| (d.name.as_str(), d.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("truck-1", DeviceKind::Vehicle),
            ("yard-kiosk", DeviceKind::Kiosk)
        ]
    );
    let vehicles: Vec<Uuid> = storage
        .list_vehicles(tenant)
        .await
        .unwrap()
        .iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(vehicles, [truck.device_id]);
    let reported: Vec<Uuid> = storage
        .period_summary(tenant, 20_000, 20_010, 0)
        .await
        .unwrap()
        .iter()
        .map(|p| p.device_id)
        .collect();
    assert_eq!(reported, [truck.device_id], "reports list vehicles only");

    // Another tenant cannot mark this tenant's device, nor can anyone mark a
    // device that does not exist.
    assert!(matches!(
        storage
            .set_device_kind(other, truck.device_id, DeviceKind::Kiosk)
            .await,
        Err(StorageError::UnknownDevice)
    ));
    assert!(matches!(
        storage
            .set_device_kind(tenant, Uuid::new_v4(), DeviceKind::Kiosk)
            .await,
        Err(StorageError::UnknownDevice)
    ));
    assert_eq!(storage.list_vehicles(tenant).await.unwrap().len(), 1);
}

/// Runs every check above as its own `#[tokio::test]`; `$make` is an async
/// expression giving a fresh, empty `Arc<dyn Storage>`.
#[macro_export]
macro_rules! conformance_suite {
    // `$make` gives an `Option` of the pair: `None` skips the test (a backend
    // whose server is not there; it panics itself when that must fail).
    (optional $make:expr) => {
        $crate::conformance_suite!(@optional $make;
            ingest_is_idempotent_by_device_and_seq,
            a_resent_seq_with_different_content_is_quarantined_not_overwritten,
            an_out_of_order_batch_is_stored_but_does_not_advance_the_ack,
            evicted_holes_are_counted_once_and_never_for_stored_seqs,
            rejected_events_are_quarantined_and_the_rest_stored,
            anchor_rebase_gives_the_same_times_whatever_the_arrival_order,
            events_without_an_anchor_keep_the_device_clock,
            enrollment_tokens_expire_and_run_out_of_uses,
            a_key_enrolled_in_one_tenant_cannot_join_another,
            a_revoked_device_is_refused,
            a_nonce_is_accepted_once,
            tenants_never_see_each_others_data,
            documents_append_chunks_and_compact,
            a_kiosk_is_listed_as_a_device_but_not_as_a_vehicle,
        );
    };
    (@optional $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some((storage, _guard)) = $make.await else { return };
                $crate::storage::conformance::$name(storage).await;
            }
        )*
    };
    ($make:expr) => {
        $crate::conformance_suite!(@tests $make;
            ingest_is_idempotent_by_device_and_seq,
            a_resent_seq_with_different_content_is_quarantined_not_overwritten,
            an_out_of_order_batch_is_stored_but_does_not_advance_the_ack,
            evicted_holes_are_counted_once_and_never_for_stored_seqs,
            rejected_events_are_quarantined_and_the_rest_stored,
            anchor_rebase_gives_the_same_times_whatever_the_arrival_order,
            events_without_an_anchor_keep_the_device_clock,
            enrollment_tokens_expire_and_run_out_of_uses,
            a_key_enrolled_in_one_tenant_cannot_join_another,
            a_revoked_device_is_refused,
            a_nonce_is_accepted_once,
            tenants_never_see_each_others_data,
            documents_append_chunks_and_compact,
            a_kiosk_is_listed_as_a_device_but_not_as_a_vehicle,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (storage, _guard) = $make.await;
                $crate::storage::conformance::$name(storage).await;
            }
        )*
    };
}
