//! The real sync loop and a real store against a fake sync server that keeps
//! events by (device, seq), acks the contiguous high-water mark, and — when told
//! to — misbehaves at random: drops connections before or after storing, delays,
//! answers 500, replays old acks, and acks less than it stored.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use ed25519_dalek::SigningKey;
use fleet_agent::clock::{SharedClock, SimClock};
use fleet_agent::identity::Identity;
use fleet_agent::store::{NewEvent, Store, StoreOptions};
use fleet_agent::sync::{run_sync, SyncOptions};
use fleet_protocol::api::{BatchAck, ErrorBody, ErrorDetail, TimeResponse};
use fleet_protocol::auth;
use fleet_protocol::{decode_batch, BootId, Event, EventData, Kind, Priority, TimeSource};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

#[derive(Clone, Copy, Default)]
struct Faults {
    /// Probability that a batch request meets some fault.
    rate: f64,
}

#[derive(Default)]
struct Seen {
    events: BTreeMap<u64, Event>,
    /// Seqs accounted for as evicted on the device.
    holes: BTreeSet<u64>,
    acks_sent: Vec<u64>,
    /// First seq of every batch the server received, in order.
    batch_starts: Vec<u64>,
    requests: usize,
    time_requests: usize,
    mismatches: Vec<u64>,
    bad_auth: usize,
    anchors: usize,
}

impl Seen {
    fn high_water(&self) -> u64 {
        let mut hw = 0;
        while self.events.contains_key(&(hw + 1)) || self.holes.contains(&(hw + 1)) {
            hw += 1;
        }
        hw
    }
}

struct Fake {
    device: Uuid,
    tenant: Uuid,
    public: ed25519_dalek::VerifyingKey,
    faults: Faults,
    rng: Mutex<StdRng>,
    seen: Mutex<Seen>,
}

type Shared = Arc<Fake>;

fn now_ms() -> i64 {
    fleet_agent::clock::wall_now_ms()
}

fn error(status: StatusCode, code: &str, server_time_ms: Option<i64>) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.into(),
            message: code.replace('_', " "),
            server_time_ms,
            acked_seq: None,
        },
    };
    (status, axum::Json(body)).into_response()
}

/// A response whose body breaks off: the client sees the connection fail.
fn dropped_connection() -> Response {
    let broken = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("connection dropped"))
    });
    Response::new(Body::from_stream(broken))
}

impl Fake {
    fn check_auth(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Option<Response> {
        let header = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let parsed = match auth::parse_header(header) {
            Ok(a) if a.device_id == self.device => a,
            _ => {
                self.seen.lock().unwrap().bad_auth += 1;
                return Some(error(StatusCode::UNAUTHORIZED, "unauthorized", None));
            }
        };
        let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
        let msg = auth::signing_message(method.as_str(), path, parsed.ts_ms, &parsed.nonce, body);
        if auth::verify(&self.public, &msg, &parsed.signature).is_err() {
            self.seen.lock().unwrap().bad_auth += 1;
            return Some(error(StatusCode::UNAUTHORIZED, "bad_signature", None));
        }
        if (parsed.ts_ms - now_ms()).abs() > auth::MAX_SKEW_MS {
            return Some(error(
                StatusCode::UNAUTHORIZED,
                "clock_skew",
                Some(now_ms()),
            ));
        }
        None
    }

    /// Store what the batch holds; return the contiguous high-water mark.
    fn ingest(&self, body: &[u8]) -> Result<u64, Box<Response>> {
        let batch = decode_batch(body)
            .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, e.code(), None)))?;
        if batch.header.device_id != self.device || batch.header.tenant_id != self.tenant {
            return Err(Box::new(error(
                StatusCode::FORBIDDEN,
                "foreign_batch",
                None,
            )));
        }
        assert!(
            batch.rejects.is_empty(),
            "the device sent events the codec rejects"
        );
        let mut seen = self.seen.lock().unwrap();
        seen.batch_starts.push(batch.header.first_seq);
        seen.anchors += batch.header.anchors.len();
        let present: BTreeSet<u64> = batch.events.iter().map(|e| e.seq).collect();
        for seq in batch.header.first_seq..=batch.header.last_seq {
            if !present.contains(&seq) {
                seen.holes.insert(seq);
            }
        }
        for e in batch.events {
            match seen.events.get(&e.seq) {
                Some(old) if *old != e => seen.mismatches.push(e.seq),
                Some(_) => {}
                None => {
                    seen.events.insert(e.seq, e);
                }
            }
        }
        Ok(seen.high_water())
    }

    fn ack(&self, acked_seq: u64) -> Response {
        self.seen.lock().unwrap().acks_sent.push(acked_seq);
        axum::Json(BatchAck {
            acked_seq,
            server_time_ms: now_ms(),
            stored: 0,
            duplicates: 0,
            quarantined: 0,
        })
        .into_response()
    }
}

async fn batches(
    State(fake): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    fake.seen.lock().unwrap().requests += 1;
    if let Some(refused) = fake.check_auth(&method, &uri, &headers, &body) {
        return refused;
    }
    let (fault, delay_ms) = {
        let mut rng = fake.rng.lock().unwrap();
        let fault = if rng.gen_bool(fake.faults.rate) {
            rng.gen_range(0..7)
        } else {
            usize::MAX
        };
        let delay_ms = if fake.faults.rate > 0.0 && rng.gen_bool(0.2) {
            rng.gen_range(1..150)
        } else {
            0
        };
        (fault, delay_ms)
    };
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    match fault {
        0 => return dropped_connection(),
        1 => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
        _ => {}
    }
    let hw = match fake.ingest(&body) {
        Ok(hw) => hw,
        Err(refusal) => return *refusal,
    };
    match fault {
        // Stored, but the answer never arrives.
        2 => dropped_connection(),
        3 => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None),
        // Processed twice, as a retried request racing the first would be.
        4 => {
            let again = fake.ingest(&body).unwrap_or(hw);
            fake.ack(again)
        }
        // An old ack replayed by something in between.
        5 => {
            let old = {
                let seen = fake.seen.lock().unwrap();
                let mut rng = fake.rng.lock().unwrap();
                if seen.acks_sent.is_empty() {
                    0
                } else {
                    seen.acks_sent[rng.gen_range(0..seen.acks_sent.len())]
                }
            };
            fake.ack(old)
        }
        // Acks less than it stored.
        6 => {
            let less = fake.rng.lock().unwrap().gen_range(0..=hw);
            fake.ack(less)
        }
        _ => fake.ack(hw),
    }
}

async fn time(
    State(fake): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    fake.seen.lock().unwrap().time_requests += 1;
    if let Some(refused) = fake.check_auth(&method, &uri, &headers, b"") {
        return refused;
    }
    axum::Json(TimeResponse {
        server_time_ms: now_ms(),
    })
    .into_response()
}

async fn docs() -> StatusCode {
    StatusCode::NO_CONTENT
}

struct Harness {
    fake: Shared,
    identity: Identity,
    _server: tokio::task::JoinHandle<()>,
}

async fn start_fake(faults: Faults, seed: u64) -> Harness {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let fake = Arc::new(Fake {
        device: Uuid::new_v4(),
        tenant: Uuid::new_v4(),
        public: key.verifying_key(),
        faults,
        rng: Mutex::new(StdRng::seed_from_u64(seed)),
        seen: Mutex::new(Seen::default()),
    });
    let app = Router::new()
        .route("/sync/v1/batches", post(batches))
        .route("/sync/v1/time", get(time))
        .route("/sync/v1/docs/{doc_id}/sync", post(docs))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let identity = Identity::new(
        fake.device,
        fake.tenant,
        "test-truck".into(),
        format!("http://{addr}"),
        key,
        None,
    );
    Harness {
        fake,
        identity,
        _server: server,
    }
}

/// A device clock that believes it is 1970: requests only authenticate once the
/// client corrects its timestamps from the server's answers.
fn clock_at_1970() -> SharedClock {
    Arc::new(SimClock::new(BootId::random(), 5_000, 0, 1.0))
}

fn options(seed: u64) -> SyncOptions {
    SyncOptions {
        batch_max_events: 64,
        zstd_level: 1,
        backoff_base: Duration::from_millis(2),
        backoff_max: Duration::from_millis(40),
        idle_poll: Duration::from_millis(10),
        request_timeout: Duration::from_secs(2),
        docs_interval: Duration::from_secs(3600),
        jitter_seed: Some(seed),
        ..SyncOptions::default()
    }
}

fn new_event(i: u64, clock: &SharedClock) -> NewEvent {
    NewEvent {
        kind: if i % 10 == 0 {
            Kind::known("ignition_on")
        } else {
            Kind::known("signal")
        },
        priority: if i % 10 == 0 {
            Priority::Critical
        } else {
            Priority::Telemetry
        },
        mono_ms: clock.mono_ms() + i,
        wall_ms: clock.wall_ms() + i as i64,
        config_version: 1,
        data: EventData::Json(serde_json::json!({ "i": i })),
    }
}

fn store_options() -> StoreOptions {
    StoreOptions {
        group_commit: Duration::from_millis(5),
        ..StoreOptions::default()
    }
}

async fn wait_until_acked(store: &Store, last: u64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if store.acked_seq().await.unwrap() >= last {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ack stuck at {} of {last}",
            store.acked_seq().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_server_still_gets_every_event_exactly_once() {
    let h = start_fake(Faults { rate: 0.35 }, 0x5eed).await;
    let dir = tempfile::tempdir().unwrap();
    let clock = clock_at_1970();
    let store = Store::open(dir.path(), clock.boot_id(), store_options()).unwrap();
    let (stop_tx, stop_rx) = watch::channel(false);
    let sync = tokio::spawn(run_sync(
        store.clone(),
        h.identity.clone(),
        clock.clone(),
        options(11),
        stop_rx,
    ));

    // Record while syncing, in bursts, so batches of every size go out.
    let total = 3_000u64;
    for i in 1..=total {
        store.submit(new_event(i, &clock)).await.unwrap();
        if i % 250 == 0 {
            store.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let last = store.flush().await.unwrap();
    assert_eq!(last, total);
    wait_until_acked(&store, last, Duration::from_secs(20)).await;
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), sync)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    let local = store.list_events(0, total as usize).await.unwrap();
    {
        let seen = h.fake.seen.lock().unwrap();
        assert_eq!(
            seen.high_water(),
            total,
            "server holds a contiguous run to the end"
        );
        assert_eq!(
            seen.events.len() as u64,
            total,
            "every event stored once, none twice"
        );
        assert!(seen.holes.is_empty(), "no event reported as evicted");
        assert!(
            seen.mismatches.is_empty(),
            "a resent event differed from the first copy: {:?}",
            seen.mismatches
        );
        assert_eq!(seen.bad_auth, 0, "every request was signed correctly");
        assert!(seen.anchors > 0, "batches carried the server-time anchor");
        let mut starts = seen.batch_starts.clone();
        starts.sort_unstable();
        starts.dedup();
        assert!(
            starts.len() < seen.batch_starts.len(),
            "the faults made the device resend batches"
        );
        for (e, acked) in &local {
            assert!(acked, "event {} not acked", e.seq);
            assert_eq!(
                seen.events.get(&e.seq),
                Some(e),
                "server copy of {} differs",
                e.seq
            );
        }
    }
    let anchors = store.anchors().await.unwrap();
    let anchor = anchors
        .iter()
        .find(|a| a.boot_id == clock.boot_id())
        .expect("anchor for this boot");
    assert_eq!(anchor.source, TimeSource::Server);
    assert!(
        (anchor.rebase(clock.mono_ms()) - now_ms()).abs() < 5_000,
        "rebased time is close to true time"
    );
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_sync_resumes_from_the_stored_ack_and_never_resends_acked_events() {
    let h = start_fake(Faults::default(), 1).await;
    let dir = tempfile::tempdir().unwrap();
    let clock: SharedClock = Arc::new(SimClock::new(BootId::random(), 1_000, now_ms(), 1.0));

    let store = Store::open(dir.path(), clock.boot_id(), store_options()).unwrap();
    for i in 1..=300 {
        store.submit(new_event(i, &clock)).await.unwrap();
    }
    store.flush().await.unwrap();
    let (stop_tx, stop_rx) = watch::channel(false);
    let sync = tokio::spawn(run_sync(
        store.clone(),
        h.identity.clone(),
        clock.clone(),
        options(2),
        stop_rx,
    ));
    wait_until_acked(&store, 300, Duration::from_secs(10)).await;
    stop_tx.send(true).unwrap();
    sync.await.unwrap().unwrap();
    store.close().await.unwrap();
    let starts_before = h.fake.seen.lock().unwrap().batch_starts.len();

    // The agent restarts: a new boot, the store reopened from disk.
    let clock: SharedClock = Arc::new(SimClock::new(BootId::random(), 1_000, now_ms(), 1.0));
    let store = Store::open(dir.path(), clock.boot_id(), store_options()).unwrap();
    assert_eq!(store.acked_seq().await.unwrap(), 300);
    for i in 301..=450 {
        store.submit(new_event(i, &clock)).await.unwrap();
    }
    store.flush().await.unwrap();
    let (stop_tx, stop_rx) = watch::channel(false);
    let sync = tokio::spawn(run_sync(
        store.clone(),
        h.identity.clone(),
        clock.clone(),
        options(3),
        stop_rx,
    ));
    wait_until_acked(&store, 450, Duration::from_secs(10)).await;
    stop_tx.send(true).unwrap();
    sync.await.unwrap().unwrap();

    {
        let seen = h.fake.seen.lock().unwrap();
        let after_restart = &seen.batch_starts[starts_before..];
        assert_eq!(
            after_restart.first(),
            Some(&301),
            "first batch after the restart starts after the ack"
        );
        assert!(
            after_restart.iter().all(|s| *s > 300),
            "an acked event was sent again: {after_restart:?}"
        );
        assert_eq!(seen.events.len(), 450);
    }
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_online_gate_stops_all_traffic_until_the_link_is_back() {
    let h = start_fake(Faults::default(), 2).await;
    let dir = tempfile::tempdir().unwrap();
    let clock: SharedClock = Arc::new(SimClock::new(BootId::random(), 1_000, now_ms(), 1.0));
    let store = Store::open(dir.path(), clock.boot_id(), store_options()).unwrap();
    for i in 1..=100 {
        store.submit(new_event(i, &clock)).await.unwrap();
    }
    store.flush().await.unwrap();

    let (online_tx, online_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let opts = SyncOptions {
        online: Some(online_rx),
        ..options(4)
    };
    let sync = tokio::spawn(run_sync(
        store.clone(),
        h.identity.clone(),
        clock.clone(),
        opts,
        stop_rx,
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    {
        let seen = h.fake.seen.lock().unwrap();
        assert_eq!(
            seen.requests + seen.time_requests,
            0,
            "requests were made while offline"
        );
    }
    assert_eq!(store.acked_seq().await.unwrap(), 0);

    online_tx.send(true).unwrap();
    wait_until_acked(&store, 100, Duration::from_secs(10)).await;

    online_tx.send(false).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = {
        let seen = h.fake.seen.lock().unwrap();
        seen.requests + seen.time_requests
    };
    for i in 101..=150 {
        store.submit(new_event(i, &clock)).await.unwrap();
    }
    store.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    {
        let seen = h.fake.seen.lock().unwrap();
        assert_eq!(
            seen.requests + seen.time_requests,
            before,
            "requests were made after the link dropped"
        );
    }
    online_tx.send(true).unwrap();
    wait_until_acked(&store, 150, Duration::from_secs(10)).await;
    stop_tx.send(true).unwrap();
    sync.await.unwrap().unwrap();
    store.close().await.unwrap();
}
