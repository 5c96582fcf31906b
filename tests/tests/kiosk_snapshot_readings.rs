//! A vehicle's gateway readings and open defects, from the server to the kiosk
//! screen and the check-in record: a gateway's odometer and fuel events are
//! ingested by a real `fleet-sync` (SQLite, and PostgreSQL when
//! `FLEET_TEST_PG_URL` is set), defects are reported through the
//! inspections API, and a kiosk pulls its signed snapshot over HTTP. The kiosk
//! (the agent's own engine, simulated lines) then checks a van out and in: the
//! check-in screen shows the van's readings and its open defect, and the
//! check-in event carries the readings with their times. A truck with an open
//! unsafe defect is refused with what the defect is, and its day-old fuel
//! reading is too old to show.

use fleet_agent::clock::{SharedClock, SystemClock};
use fleet_agent::kiosk::flow::Input;
use fleet_agent::kiosk::outputs::Signals;
use fleet_agent::kiosk::policy::{recent_meters, DEFAULT_METER_MAX_AGE_MS};
use fleet_agent::kiosk::{BlobSink, Kiosk, KioskParts};
use fleet_agent::store::Store;
use fleet_hal::gpio::KioskPins;
use fleet_protocol::event::kinds;
use fleet_protocol::label::TenantTrust;
use fleet_protocol::snapshot::Snapshot;
use fleet_protocol::{
    Batch, BatchHeader, BootId, Event, EventData, EventTime, Hlc, Kind, Priority,
};
use fleet_sync::storage::{DeviceRecord, Storage};
use fleet_tests::api_server::ApiServer;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

const SIGNATURE: &str = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=";
const MIN_MS: i64 = 60_000;

/// The served API and a yard tenant, whose admin key every call uses.
struct Server {
    api: ApiServer,
    key: String,
    tenant: Uuid,
}

impl Server {
    async fn start(storage: Arc<dyn Storage>) -> Server {
        let api = ApiServer::start(storage).await;
        let (tenant, key) = api.tenant("yard").await;
        Server { api, key, tenant }
    }

    async fn api(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let (status, v) = self.api.json(&self.key, method, path, Some(body)).await;
        assert!((200..300).contains(&status), "{path}: {status} {v}");
        v
    }

    /// A gateway, enrolled straight into storage (its key is not needed: its
    /// events are ingested as the sync endpoint would).
    async fn gateway(&self, name: &str) -> DeviceRecord {
        self.api.enroll_in_storage(self.tenant, name).await
    }

    /// `(kind, data, wall_ms)` events from `device`, as one batch from seq 1.
    async fn report(&self, device: &DeviceRecord, events: &[(&'static str, Value, i64)]) {
        let events: Vec<Event> = events
            .iter()
            .enumerate()
            .map(|(i, (kind, data, wall_ms))| Event {
                seq: i as u64 + 1,
                kind: Kind::known(kind),
                priority: Priority::Normal,
                time: EventTime {
                    boot_id: BootId([9; 16]),
                    mono_ms: 1_000 + i as u64,
                    wall_ms: *wall_ms,
                    hlc: Hlc::new(*wall_ms as u64, 0),
                },
                config_version: 1,
                data: EventData::Json(data.clone()),
            })
            .collect();
        let batch = Batch {
            header: BatchHeader {
                tenant_id: device.tenant_id,
                device_id: device.device_id,
                first_seq: 1,
                last_seq: events.len() as u64,
                anchors: vec![],
            },
            events,
            rejects: vec![],
        };
        self.api
            .storage
            .ingest_batch(device, batch, fleet_sync::storage::now_ms())
            .await
            .unwrap();
    }

    /// A vehicle label and its catalog entry (same id) fitted with `gateway`;
    /// answers the id and the QR text.
    async fn vehicle(&self, name: &str, gateway: Uuid) -> (Uuid, String) {
        use reqwest::Method as M;
        let label = self
            .api(
                M::POST,
                "/api/v1/labels",
                json!({"kind": "vehicle", "name": name}),
            )
            .await;
        let id = label["id"].as_str().unwrap().to_owned();
        self.api(
            M::POST,
            "/api/v1/assets",
            json!({"id": id, "kind": "vehicle", "name": name, "device_id": gateway}),
        )
        .await;
        (
            id.parse().unwrap(),
            label["text"].as_str().unwrap().to_owned(),
        )
    }

    async fn defect(&self, asset: Uuid, item: &str, description: &str, severity: &str) {
        self.api(
            reqwest::Method::POST,
            "/api/v1/inspections",
            json!({"asset_id": asset, "driver": "Yard check", "defects": [
                {"item": item, "description": description, "severity": severity}]}),
        )
        .await;
    }

    /// Enrolls a kiosk over HTTP and pulls its yard's signed snapshot, verified
    /// with the key enrollment handed over.
    async fn kiosk_snapshot(&self) -> (TenantTrust, Snapshot) {
        let kiosk = self.api.enroll_over_http(self.tenant, "gate").await;
        let snap = self.api.snapshot(&kiosk).await;
        (kiosk.trust(), snap)
    }
}

struct NoBlobs;

impl BlobSink for NoBlobs {
    fn put(&self, bytes: &[u8], _content_type: &str) -> Result<String, String> {
        Ok(format!("{:064x}", bytes.len()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_readings_and_open_defects_reach_the_kiosk_screen_and_its_check_in_record() {
    let dir = tempfile::tempdir().unwrap();
    let storage = fleet_sync::open_sqlite(dir.path()).await.unwrap();
    readings_and_defects_reach_the_kiosk(storage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_readings_and_open_defects_reach_the_kiosk_on_postgres() {
    let Some((storage, _guard)) = fleet_sync::storage::postgres::testing::fresh().await else {
        return;
    };
    readings_and_defects_reach_the_kiosk(storage).await;
}

async fn readings_and_defects_reach_the_kiosk(storage: Arc<dyn Storage>) {
    use reqwest::Method as M;
    let s = Server::start(storage).await;
    let now = fleet_sync::storage::now_ms();
    let (van_gw, truck_gw) = (s.gateway("van-7-gw").await, s.gateway("truck-3-gw").await);
    s.report(
        &van_gw,
        &[
            (
                "odometer",
                json!({"odometer_km": 48_211.4}),
                now - 40 * MIN_MS,
            ),
            ("signal", json!({"fuel_level_pct": 71.0}), now - 30 * MIN_MS),
            ("signal", json!({"fuel_level_pct": 62.5}), now - 15 * MIN_MS),
        ],
    )
    .await;
    s.report(
        &truck_gw,
        &[(
            "signal",
            json!({"fuel_level_pct": 40.0}),
            now - 20 * 60 * MIN_MS,
        )],
    )
    .await;
    let (van, van_text) = s.vehicle("Van 7", van_gw.device_id).await;
    let (truck, truck_text) = s.vehicle("Truck 3", truck_gw.device_id).await;
    s.defect(van, "mirror", "left mirror cracked", "safe").await;
    s.defect(truck, "brakes", "brake pedal soft", "unsafe")
        .await;
    s.api(
        M::PUT,
        "/api/v1/kiosk-policy",
        json!({"walk_up": "allow", "grace_minutes": 15, "max_checkout_hours": 8}),
    )
    .await;
    let badge = s
        .api(
            M::POST,
            "/api/v1/labels",
            json!({"kind": "badge", "driver_name": "Pat Driver"}),
        )
        .await["text"]
        .as_str()
        .unwrap()
        .to_owned();

    // The server's side: the newest readings with their times, the defects.
    let (trust, snap) = s.kiosk_snapshot().await;
    let v = snap.asset(van).expect("van in the snapshot");
    assert_eq!(v.odometer_km, Some(48_211.4));
    let odo_at = v.odometer_at_ms.expect("odometer time");
    assert!(
        (now - 40 * MIN_MS..=now).contains(&odo_at),
        "the odometer is timed within its day's events: {odo_at}"
    );
    assert_eq!(
        (v.fuel_pct, v.fuel_at_ms),
        (Some(62.5), Some(now - 15 * MIN_MS))
    );
    let t = snap.asset(truck).expect("truck");
    assert!(t.unsafe_defect);
    assert_eq!(
        (t.odometer_km, t.fuel_pct),
        (None, Some(40.0)),
        "the truck's gateway reported no odometer"
    );
    assert_eq!(
        recent_meters(t, now, DEFAULT_METER_MAX_AGE_MS),
        Default::default(),
        "a twenty-hour-old fuel level is not shown"
    );

    // The kiosk's side.
    let dir = tempfile::tempdir().unwrap();
    let clock: SharedClock = Arc::new(SystemClock::new());
    let store = Store::open(dir.path(), clock.boot_id(), Default::default()).unwrap();
    let (pins, sim) = KioskPins::simulated(4);
    let kiosk = Kiosk::new(KioskParts {
        store: store.clone(),
        clock,
        kiosk_id: "gate".into(),
        yard: "default".into(),
        trust: Some(trust),
        signals: Signals::new(pins, Duration::from_millis(50)).unwrap(),
        sim: Some(sim),
        blobs: Arc::new(NoBlobs),
        config_version: 1,
        location: Some((52.5, 13.4)),
    });
    kiosk.set_snapshot(Some(snap));

    // The truck is refused, and the screen says why.
    for text in [&badge, &truck_text] {
        kiosk.handle(Input::Scan(text.clone())).await.unwrap();
    }
    let screen = kiosk.view().await;
    assert_eq!(screen["step"], "refused");
    assert_eq!(
        screen["flow"]["reason"]["defects"],
        json!(["brakes: brake pedal soft"])
    );
    assert_eq!(
        screen["last"]["message"],
        "Truck 3 has an open safety defect and cannot be handed out: brakes: brake pedal soft."
    );

    // The van goes out and comes back.
    for input in [
        Input::Scan(badge.clone()),
        Input::Scan(van_text.clone()),
        Input::Confirm,
        Input::Scan(van_text.clone()),
        Input::Rating(4),
    ] {
        kiosk.handle(input).await.unwrap();
    }
    let screen = kiosk.view().await;
    assert_eq!(screen["step"], "check_in");
    let shown = &screen["vehicle"];
    assert_eq!(shown["meters"]["odometer_km"], 48_211.4);
    assert_eq!(shown["meters"]["fuel_pct"], 62.5);
    assert_eq!(
        shown["defects"],
        json!([{"asset": van, "item": "mirror", "note": "left mirror cracked", "unsafe": false}])
    );
    kiosk.sign(SIGNATURE).await.unwrap();
    kiosk.handle(Input::Submit).await.unwrap();

    store.flush().await.unwrap();
    let events = store.list_events(0, 100).await.unwrap();
    let checkin = events
        .iter()
        .map(|(e, _)| e)
        .find(|e| e.kind == kinds::CHECKIN)
        .expect("a check-in event");
    let d = checkin.data.to_json();
    assert_eq!(d["asset"], json!(van));
    assert_eq!(d["odometer_km"], 48_211.4);
    assert_eq!(d["odometer_at_ms"], odo_at);
    assert_eq!(d["fuel_pct"], 62.5);
    assert_eq!(d["fuel_at_ms"], now - 15 * MIN_MS);
    assert_eq!(d["rating"], 4);
    let count = |k| events.iter().filter(|(e, _)| e.kind == k).count();
    assert_eq!(
        (
            count(kinds::SCAN_REFUSED),
            count(kinds::CHECKOUT),
            count(kinds::CHECKIN)
        ),
        (1, 1, 1),
        "the truck refused, the van out and back"
    );
}
