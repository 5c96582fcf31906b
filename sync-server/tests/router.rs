//! The HTTP API driven through `router(state).oneshot(request)`.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use ed25519_dalek::SigningKey;
use fleet_protocol::api::{self, EnrollRequest};
use fleet_protocol::{
    auth, encode_batch, BatchHeader, BootId, Event, EventData, EventTime, Hlc, Kind, Position,
    Priority,
};
use fleet_sync::storage::{now_ms, Storage};
use fleet_sync::{router, AppState};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use uuid::Uuid;

struct Env {
    app: Router,
    storage: Arc<dyn Storage>,
    api_key: String,
    tenant: Uuid,
    key: SigningKey,
    device: Uuid,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Reply { status, body }
}

async fn enroll(app: &Router, token: &str, key: &SigningKey, name: &str) -> Reply {
    let public_key = auth::encode_public_key(&key.verifying_key());
    let req = EnrollRequest {
        token: token.into(),
        proof: auth::sign_b64(key, &auth::enroll_message(token, &public_key)),
        public_key,
        name: Some(name.into()),
        agent_version: Some("test".into()),
        kind: Default::default(),
    };
    let req = Request::post(api::PATH_ENROLL)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(&req).unwrap()))
        .unwrap();
    send(app, req).await
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let storage = fleet_sync::open_sqlite(dir.path()).await.unwrap();
    let app = router(AppState::new(storage.clone()));
    let tenant = storage.create_tenant("acme").await.unwrap();
    let token = storage
        .create_enrollment_token(tenant.tenant_id, Duration::from_secs(600), 1)
        .await
        .unwrap();
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let r = enroll(&app, &token.token, &key, "truck-1").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    let device = Uuid::parse_str(r.json()["device_id"].as_str().unwrap()).unwrap();
    Env {
        app,
        storage,
        api_key: tenant.api_key,
        tenant: tenant.tenant_id,
        key,
        device,
        _dir: dir,
    }
}

impl Env {
    fn signed_at(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        ts_ms: i64,
    ) -> Request<Body> {
        let auth = auth::sign_request(&self.key, self.device, method.as_str(), path, ts_ms, &body);
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, auth)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap()
    }

    fn batch_request(&self, frame: Vec<u8>) -> Request<Body> {
        self.signed_at(
            Method::POST,
            api::PATH_BATCHES,
            api::CONTENT_TYPE_BATCH,
            frame,
            now_ms(),
        )
    }

    fn header(&self, first: u64, last: u64) -> BatchHeader {
        BatchHeader {
            tenant_id: self.tenant,
            device_id: self.device,
            first_seq: first,
            last_seq: last,
            anchors: vec![],
        }
    }

    fn frame(&self, first: u64, last: u64) -> Vec<u8> {
        let events: Vec<Event> = (first..=last).map(position).collect();
        encode_batch(&self.header(first, last), &events, 3).unwrap()
    }

    fn operator(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> Request<Body> {
        let b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {key}"));
        match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string()))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        }
    }

    async fn event_count(&self) -> u64 {
        self.storage.list_devices(self.tenant).await.unwrap()[0].event_count
    }
}

fn position(seq: u64) -> Event {
    Event {
        seq,
        kind: Kind::known("position"),
        priority: Priority::Telemetry,
        time: EventTime {
            boot_id: BootId([3; 16]),
            mono_ms: seq * 1000,
            wall_ms: 1_760_000_000_000 + seq as i64 * 1000,
            hlc: Hlc::new(1_760_000_000_000 + seq * 1000, 0),
        },
        config_version: 1,
        data: EventData::Position(Position {
            lat_e7: 525_200_000 + seq as i32 * 10,
            lon_e7: 134_050_000,
            alt_dm: Some(340),
            speed_cms: Some(1_250),
            heading_cdeg: Some(4_500),
            hdop_d: Some(9),
            sats: Some(11),
            fix: 2,
        }),
    }
}

#[tokio::test]
async fn a_good_batch_is_acked_up_to_its_last_seq() {
    let e = env().await;
    let r = send(&e.app, e.batch_request(e.frame(1, 50))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    let ack: api::BatchAck = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (ack.acked_seq, ack.stored, ack.duplicates, ack.quarantined),
        (50, 50, 0, 0)
    );
    let r = send(&e.app, e.batch_request(e.frame(1, 50))).await;
    let ack: api::BatchAck = serde_json::from_slice(&r.body).unwrap();
    assert_eq!((ack.acked_seq, ack.stored, ack.duplicates), (50, 0, 50));
}

#[tokio::test]
async fn malformed_truncated_and_corrupt_batches_are_refused_and_nothing_is_written() {
    let e = env().await;
    let good = e.frame(1, 20);
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x55;
    let cases: Vec<(Vec<u8>, &[&str])> = vec![
        (b"definitely not a batch".to_vec(), &["batch_malformed"]),
        (
            good[..good.len() / 2].to_vec(),
            &["batch_truncated", "batch_corrupt"],
        ),
        (good[..5].to_vec(), &["batch_truncated"]),
        (
            flipped,
            &["batch_corrupt", "batch_truncated", "batch_malformed"],
        ),
        (Vec::new(), &["batch_truncated"]),
    ];
    for (frame, codes) in cases {
        let r = send(&e.app, e.batch_request(frame)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(
            codes.contains(&r.code().as_str()),
            "unexpected code {}",
            r.code()
        );
        assert!(!r.json()["error"]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(e.event_count().await, 0);
}

#[tokio::test]
async fn an_oversized_batch_is_refused_with_413_before_it_is_read() {
    let e = env().await;
    let big = vec![0u8; (8 << 20) + 1];
    let r = send(&e.app, e.batch_request(big.clone())).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large")
    );
    let mut req = e.batch_request(big);
    req.headers_mut().insert(
        header::CONTENT_LENGTH,
        ((8 << 20) + 1).to_string().parse().unwrap(),
    );
    let r = send(&e.app, req).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large")
    );
    assert_eq!(e.event_count().await, 0);
}

#[tokio::test]
async fn a_batch_naming_another_tenant_or_device_is_refused() {
    let e = env().await;
    for header in [
        BatchHeader {
            tenant_id: Uuid::new_v4(),
            ..e.header(1, 1)
        },
        BatchHeader {
            device_id: Uuid::new_v4(),
            ..e.header(1, 1)
        },
    ] {
        let frame = encode_batch(&header, &[position(1)], 3).unwrap();
        let r = send(&e.app, e.batch_request(frame)).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::FORBIDDEN, "tenant_mismatch")
        );
    }
    assert_eq!(e.event_count().await, 0);
}

#[tokio::test]
async fn a_batch_with_one_bad_event_stores_the_rest_and_quarantines_it() {
    let e = env().await;
    let mut events: Vec<Event> = (1..=5).map(position).collect();
    if let EventData::Position(p) = &mut events[2].data {
        p.lat_e7 = 2_000_000_000;
    }
    let frame = encode_batch(&e.header(1, 5), &events, 3).unwrap();
    let r = send(&e.app, e.batch_request(frame)).await;
    let ack: api::BatchAck = serde_json::from_slice(&r.body).unwrap();
    assert_eq!((ack.acked_seq, ack.stored, ack.quarantined), (5, 4, 1));
    let q = send(
        &e.app,
        e.operator(Method::GET, "/api/v1/quarantine", &e.api_key, None),
    )
    .await
    .json();
    let q = &q["quarantined"][0];
    assert_eq!(
        (q["seq"].as_u64(), q["reason_code"].as_str()),
        (Some(3), Some("invalid_event"))
    );
    assert!(q["reason"].as_str().unwrap().contains("latitude"));
    let devices = send(
        &e.app,
        e.operator(Method::GET, "/api/v1/devices", &e.api_key, None),
    )
    .await
    .json();
    assert_eq!(
        (
            devices[0]["event_count"].as_u64(),
            devices[0]["quarantined_count"].as_u64()
        ),
        (Some(4), Some(1))
    );
}

#[tokio::test]
async fn a_replayed_request_is_refused() {
    let e = env().await;
    let req = e.batch_request(e.frame(1, 3));
    let mut copy = Request::post(api::PATH_BATCHES)
        .body(Body::from(e.frame(1, 3)))
        .unwrap();
    *copy.headers_mut() = req.headers().clone();
    assert_eq!(send(&e.app, req).await.status, StatusCode::OK);
    let r = send(&e.app, copy).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::UNAUTHORIZED, "replayed_request")
    );
}

#[tokio::test]
async fn a_tampered_body_fails_the_signature_check() {
    let e = env().await;
    let mut req = e.batch_request(e.frame(1, 3));
    *req.body_mut() = Body::from(e.frame(1, 4));
    let r = send(&e.app, req).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::UNAUTHORIZED, "bad_signature")
    );
    let r = send(
        &e.app,
        Request::post(api::PATH_BATCHES)
            .header(header::CONTENT_TYPE, api::CONTENT_TYPE_BATCH)
            .body(Body::from(e.frame(1, 1)))
            .unwrap(),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::UNAUTHORIZED, "missing_authorization")
    );
}

#[tokio::test]
async fn a_revoked_device_is_refused_on_its_next_request() {
    let e = env().await;
    assert_eq!(
        send(&e.app, e.batch_request(e.frame(1, 2))).await.status,
        StatusCode::OK
    );
    e.storage.revoke_device(e.device, now_ms()).await.unwrap();
    let r = send(&e.app, e.batch_request(e.frame(3, 4))).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::UNAUTHORIZED, "device_revoked")
    );
    assert_eq!(e.event_count().await, 2);
}

#[tokio::test]
async fn clock_skew_is_answered_with_the_server_time() {
    let e = env().await;
    let before = now_ms();
    let req = e.signed_at(
        Method::POST,
        api::PATH_BATCHES,
        api::CONTENT_TYPE_BATCH,
        e.frame(1, 1),
        before - 10 * 60_000,
    );
    let r = send(&e.app, req).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::UNAUTHORIZED, "clock_skew")
    );
    let server = r.json()["error"]["server_time_ms"].as_i64().unwrap();
    assert!(server >= before && server <= now_ms());
}

#[tokio::test]
async fn enrollment_refuses_used_up_unknown_tokens_and_bad_proofs() {
    let e = env().await;
    let token = e
        .storage
        .create_enrollment_token(e.tenant, Duration::from_secs(60), 1)
        .await
        .unwrap();
    let k = SigningKey::generate(&mut rand::rngs::OsRng);
    assert_eq!(
        enroll(&e.app, &token.token, &k, "van-2").await.status,
        StatusCode::OK
    );
    let r = enroll(
        &e.app,
        &token.token,
        &SigningKey::generate(&mut rand::rngs::OsRng),
        "van-3",
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "enrollment_token_used_up")
    );
    let r = enroll(
        &e.app,
        "fe_unknown",
        &SigningKey::generate(&mut rand::rngs::OsRng),
        "van-4",
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::UNAUTHORIZED, "enrollment_token_invalid")
    );

    let fresh = e
        .storage
        .create_enrollment_token(e.tenant, Duration::from_secs(60), 1)
        .await
        .unwrap();
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let other = SigningKey::generate(&mut rand::rngs::OsRng);
    let public_key = auth::encode_public_key(&key.verifying_key());
    let forged = json!({
        "token": fresh.token,
        "public_key": public_key,
        "proof": auth::sign_b64(&other, &auth::enroll_message(&fresh.token, &public_key)),
    });
    let r = send(
        &e.app,
        Request::post(api::PATH_ENROLL)
            .body(Body::from(forged.to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::UNAUTHORIZED, "bad_proof")
    );
    let r = send(
        &e.app,
        Request::post(api::PATH_ENROLL)
            .body(Body::from("{\"token\":1}"))
            .unwrap(),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "bad_json")
    );
}

#[tokio::test]
async fn another_tenants_key_sees_404_never_the_data() {
    let e = env().await;
    send(&e.app, e.batch_request(e.frame(1, 3))).await;
    let rival = e.storage.create_tenant("rival").await.unwrap();
    let path = format!("/api/v1/devices/{}/events", e.device);
    let r = send(&e.app, e.operator(Method::GET, &path, &rival.api_key, None)).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "device_not_found")
    );
    let note = format!("/api/v1/vehicles/{}/note", e.device);
    let r = send(
        &e.app,
        e.operator(
            Method::PUT,
            &note,
            &rival.api_key,
            Some(json!({"text": "hijack"})),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = send(&e.app, e.operator(Method::GET, &note, &rival.api_key, None)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        send(
            &e.app,
            e.operator(Method::GET, "/api/v1/vehicles", &rival.api_key, None)
        )
        .await
        .json(),
        json!([])
    );
    let r = send(
        &e.app,
        e.operator(Method::GET, "/api/v1/devices", "fk_wrong", None),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::UNAUTHORIZED, "bad_api_key")
    );
}

#[tokio::test]
async fn device_events_page_by_seq_and_refuse_bad_parameters() {
    let e = env().await;
    send(&e.app, e.batch_request(e.frame(1, 25))).await;
    let base = format!("/api/v1/devices/{}/events", e.device);
    let page = send(
        &e.app,
        e.operator(
            Method::GET,
            &format!("{base}?after_seq=5&limit=10"),
            &e.api_key,
            None,
        ),
    )
    .await
    .json();
    let seqs: Vec<u64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ev| ev["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (6..=15).collect::<Vec<_>>());
    assert_eq!(page["next_after_seq"], json!(15));
    let ev = &page["events"][0];
    assert_eq!(
        (
            ev["kind"].as_str(),
            ev["priority"].as_str(),
            ev["time_source"].as_str()
        ),
        (Some("position"), Some("telemetry"), Some("device"))
    );
    assert!(
        ev["time"].as_str().unwrap().starts_with("2025-10-09T"),
        "{}",
        ev["time"]
    );
    assert!((ev["data"]["lat"].as_f64().unwrap() - 52.520006).abs() < 1e-9);
    let last = send(
        &e.app,
        e.operator(
            Method::GET,
            &format!("{base}?after_seq=20"),
            &e.api_key,
            None,
        ),
    )
    .await
    .json();
    assert_eq!(
        (
            last["events"].as_array().unwrap().len(),
            &last["next_after_seq"]
        ),
        (5, &Value::Null)
    );
    for bad in ["?limit=abc", "?after_seq=-1", "?limit=0", "?offset=3"] {
        let r = send(
            &e.app,
            e.operator(Method::GET, &format!("{base}{bad}"), &e.api_key, None),
        )
        .await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::BAD_REQUEST, "bad_query"),
            "{bad}"
        );
    }
    let r = send(
        &e.app,
        e.operator(
            Method::GET,
            "/api/v1/devices/not-a-uuid/events",
            &e.api_key,
            None,
        ),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "bad_id")
    );
}

#[tokio::test]
async fn vehicles_show_their_last_position_and_status() {
    let e = env().await;
    let r = send(
        &e.app,
        e.operator(Method::GET, "/api/v1/vehicles", &e.api_key, None),
    )
    .await
    .json();
    assert_eq!(
        (r[0]["name"].as_str(), &r[0]["position"]),
        (Some("truck-1"), &Value::Null)
    );
    send(&e.app, e.batch_request(e.frame(1, 10))).await;
    let r = send(
        &e.app,
        e.operator(Method::GET, "/api/v1/vehicles", &e.api_key, None),
    )
    .await
    .json();
    let p = &r[0]["position"];
    assert_eq!(p["seq"], json!(10));
    assert_eq!(
        (p["speed_mps"].as_f64(), p["heading_deg"].as_f64()),
        (Some(12.5), Some(45.0))
    );
    assert_eq!(r[0]["online"], json!(true));
    assert!(r[0]["last_seen"].is_string());
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_in_the_error_shape() {
    let e = env().await;
    let r = send(&e.app, Request::get("/nope").body(Body::empty()).unwrap()).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let r = send(
        &e.app,
        Request::delete("/api/v1/devices")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    let r = send(
        &e.app,
        Request::get(api::PATH_TIME).body(Body::empty()).unwrap(),
    )
    .await;
    assert!(r.json()["server_time_ms"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(
        send(
            &e.app,
            Request::get("/healthz").body(Body::empty()).unwrap()
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        send(&e.app, Request::get("/readyz").body(Body::empty()).unwrap())
            .await
            .status,
        StatusCode::OK
    );
    let page = send(&e.app, Request::get("/").body(Body::empty()).unwrap()).await;
    assert!(String::from_utf8_lossy(&page.body).contains("/dashboard/app.js"));
}

#[tokio::test]
async fn an_office_note_reaches_the_device_over_doc_sync_and_the_reply_merges_back() {
    use automerge::sync::{self, SyncDoc};
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ReadDoc, ROOT};
    let e = env().await;
    let note = format!("/api/v1/vehicles/{}/note", e.device);
    let r = send(
        &e.app,
        e.operator(
            Method::PUT,
            &note,
            &e.api_key,
            Some(json!({"text": "check tyres"})),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());

    let path = format!("{}vehicle-note/{}/sync", api::PATH_DOCS_PREFIX, e.device);
    let mut doc = AutoCommit::new();
    let mut state = sync::State::new();
    let mut edited = false;
    for _ in 0..20 {
        let msg = doc
            .sync()
            .generate_sync_message(&mut state)
            .map(sync::Message::encode)
            .unwrap_or_default();
        let empty = msg.is_empty();
        let r = send(
            &e.app,
            e.signed_at(
                Method::POST,
                &path,
                api::CONTENT_TYPE_AUTOMERGE_SYNC,
                msg,
                now_ms(),
            ),
        )
        .await;
        match r.status {
            StatusCode::OK => doc
                .sync()
                .receive_sync_message(&mut state, sync::Message::decode(&r.body).unwrap())
                .unwrap(),
            StatusCode::NO_CONTENT if empty && edited => break,
            StatusCode::NO_CONTENT if empty => {
                let (_, text) = doc.get(ROOT, "text").unwrap().expect("note synced");
                assert_eq!(doc.text(&text).unwrap(), "check tyres");
                doc.update_text(&text, "check tyres: done").unwrap();
                edited = true;
            }
            StatusCode::NO_CONTENT => {}
            s => panic!("doc sync answered {s}: {:?}", r.json()),
        }
    }
    assert!(edited, "sync never settled");
    let r = send(&e.app, e.operator(Method::GET, &note, &e.api_key, None))
        .await
        .json();
    assert_eq!(r["text"], json!("check tyres: done"));

    let bad = format!("{}..%2Fetc/sync", api::PATH_DOCS_PREFIX);
    let r = send(
        &e.app,
        e.signed_at(
            Method::POST,
            &bad,
            api::CONTENT_TYPE_AUTOMERGE_SYNC,
            Vec::new(),
            now_ms(),
        ),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "bad_doc_id")
    );
}

#[tokio::test]
async fn a_kiosk_enrolls_as_a_device_but_is_not_listed_among_the_vehicles() {
    let e = env().await;
    let token = e
        .storage
        .create_enrollment_token(e.tenant, Duration::from_secs(600), 2)
        .await
        .unwrap();
    let enroll_as = |kind: &str| {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let public_key = auth::encode_public_key(&key.verifying_key());
        let body = json!({
            "token": token.token,
            "proof": auth::sign_b64(&key, &auth::enroll_message(&token.token, &public_key)),
            "public_key": public_key,
            "name": "yard-kiosk",
            "kind": kind,
        });
        Request::post(api::PATH_ENROLL)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap()
    };
    // A kind the server does not know is bad input and enrolls nothing.
    let r = send(&e.app, enroll_as("boat")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.json());
    let r = send(&e.app, enroll_as("kiosk")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());

    let devices = send(
        &e.app,
        e.operator(Method::GET, "/api/v1/devices", &e.api_key, None),
    )
    .await
    .json();
    let kinds: Vec<(&str, &str)> = devices
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["name"].as_str().unwrap(), d["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [("truck-1", "vehicle"), ("yard-kiosk", "kiosk")]);
    let vehicles = send(
        &e.app,
        e.operator(Method::GET, "/api/v1/vehicles", &e.api_key, None),
    )
    .await
    .json();
    let names: Vec<&str> = vehicles
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["truck-1"]);
}
