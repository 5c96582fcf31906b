//! The server side of yard kiosks over real HTTP: labels issued by an operator
//! verify with the tenant key a device got at enrollment, a revoked badge shows
//! in the next signed snapshot, blob uploads resume after a cut and refuse bad
//! digests and oversize bodies, and two kiosks' offline check-outs of one asset
//! raise exactly one custody conflict that an operator resolves.

use automerge::sync::{self, SyncDoc};
use automerge::AutoCommit;
use fleet_protocol::auth::{body_digest, sign_request};
use fleet_protocol::custody::{custody_doc_id, CustodyAction, CustodyOp};
use fleet_protocol::label::{self, LabelError, LabelKind};
use fleet_protocol::snapshot::SignedSnapshot;
use fleet_tests::api_server::{ApiServer, EnrolledDevice};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

const BLOB_CAP: usize = 256 << 10;

async fn start() -> ApiServer {
    ApiServer::start_sqlite_with(|dir| fleet_sync::Settings {
        blob_dir: Some(dir.join("blobs")),
        max_blob_bytes: BLOB_CAP,
        ..fleet_sync::Settings::default()
    })
    .await
}

/// A signed device request; blob uploads sign an empty body.
async fn device(
    s: &ApiServer,
    d: &EnrolledDevice,
    method: reqwest::Method,
    path_and_query: &str,
    body: Vec<u8>,
    sign_body: bool,
) -> reqwest::Response {
    let signed: &[u8] = if sign_body { &body } else { b"" };
    let authz = sign_request(
        &d.key,
        d.id,
        method.as_str(),
        path_and_query,
        fleet_sync::storage::now_ms(),
        signed,
    );
    let mut req = s
        .http
        .request(method, format!("{}{path_and_query}", s.url))
        .header("authorization", authz);
    if !body.is_empty() {
        req = req
            .header("content-type", "application/octet-stream")
            .body(body);
    }
    req.send().await.unwrap()
}

/// The kiosk's signed snapshot of the north yard, not yet verified.
async fn signed_snapshot(s: &ApiServer, d: &EnrolledDevice) -> SignedSnapshot {
    let r = device(
        s,
        d,
        reqwest::Method::GET,
        "/sync/v1/snapshot?yard=north",
        Vec::new(),
        true,
    )
    .await;
    assert_eq!(r.status(), 200);
    SignedSnapshot::from_json(&r.bytes().await.unwrap()).unwrap()
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn issued_labels_verify_with_the_enrolled_tenant_key_and_a_revoked_badge_shows_in_the_next_snapshot(
) {
    let s = start().await;
    let (tenant, api_key) = s.tenant("acme").await;
    let kiosk = s.enroll_over_http(tenant, "kiosk-north").await;
    let trust = kiosk.trust();
    let post = reqwest::Method::POST;

    let (st, van) = s
        .json(
            &api_key,
            post.clone(),
            "/api/v1/labels",
            Some(json!({"kind": "vehicle", "name": "Van 7"})),
        )
        .await;
    assert_eq!(st, 201, "{van}");
    let van_id: Uuid = van["id"].as_str().unwrap().parse().unwrap();
    let (st, key_tag) = s
        .json(
            &api_key,
            post.clone(),
            "/api/v1/labels",
            Some(json!({"kind": "key", "asset_id": van_id, "slot": 4})),
        )
        .await;
    assert_eq!(st, 201, "{key_tag}");
    let (st, badge) = s
        .json(
            &api_key,
            post.clone(),
            "/api/v1/labels",
            Some(json!({"kind": "badge", "driver_name": "Ana Díaz"})),
        )
        .await;
    assert_eq!(st, 201, "{badge}");
    let badge_id: Uuid = badge["id"].as_str().unwrap().parse().unwrap();

    for (l, kind) in [
        (&van, LabelKind::Vehicle),
        (&key_tag, LabelKind::Key),
        (&badge, LabelKind::Badge),
    ] {
        let text = l["text"].as_str().unwrap();
        assert!(text.len() <= 135, "{} characters", text.len());
        let verified = label::verify(text, &trust).unwrap();
        assert_eq!(verified.kind, kind);
        assert_eq!(verified.id.to_string(), l["id"].as_str().unwrap());
        assert_eq!(verified.short_code(), l["short_code"].as_str().unwrap());
    }

    // Another tenant's kiosk refuses these labels for that reason, not another.
    let (other, _) = s.tenant("globex").await;
    let foreign_kiosk = s.enroll_over_http(other, "kiosk-elsewhere").await;
    assert_eq!(
        label::verify(badge["text"].as_str().unwrap(), &foreign_kiosk.trust()),
        Err(LabelError::ForeignTenant)
    );

    // Bad input is refused and writes nothing.
    let (st, err) = s
        .json(
            &api_key,
            post.clone(),
            "/api/v1/labels",
            Some(json!({"kind": "badge"})),
        )
        .await;
    assert_eq!((st, code(&err)), (400, "bad_label"));
    let (st, err) = s
        .json(
            &api_key,
            post.clone(),
            "/api/v1/labels",
            Some(json!({"kind": "vehicle", "name": "Van 7", "asset_id": van_id})),
        )
        .await;
    assert_eq!((st, code(&err)), (409, "label_exists"));
    let (_, list) = s
        .json(&api_key, reqwest::Method::GET, "/api/v1/labels", None)
        .await;
    assert_eq!(list["labels"].as_array().unwrap().len(), 3);

    // The tenant key endpoint agrees with the enroll response.
    let r = device(
        &s,
        &kiosk,
        reqwest::Method::GET,
        "/sync/v1/tenant-key",
        Vec::new(),
        true,
    )
    .await;
    let tk: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(
        tk["public_key"].as_str(),
        kiosk.enrolled.tenant_public_key.as_deref()
    );

    let first = signed_snapshot(&s, &kiosk)
        .await
        .verify(&trust, fleet_sync::storage::now_ms())
        .unwrap();
    assert_eq!(first.yard, "north");
    assert!(!first.badge(badge_id).unwrap().revoked);
    assert_eq!(
        first.resolve_short_code(badge["short_code"].as_str().unwrap()),
        Some(badge_id)
    );
    assert_eq!(first.keys[0].slot, 4);
    assert_eq!(first.asset(van_id).unwrap().name, "Van 7");
    assert!(first.reservations.is_empty());

    let (st, revoked) = s
        .json(
            &api_key,
            post.clone(),
            &format!("/api/v1/labels/{badge_id}/revoke"),
            None,
        )
        .await;
    assert_eq!(st, 200, "{revoked}");
    assert!(revoked["revoked_at"].is_string());
    let (st, err) = s
        .json(
            &api_key,
            post,
            &format!("/api/v1/labels/{van_id}/revoke"),
            None,
        )
        .await;
    assert_eq!((st, code(&err)), (409, "label_not_revocable"));

    // The next snapshot: newer than the one held, and the badge is revoked.
    let mut next = None;
    for _ in 0..50 {
        let offered = signed_snapshot(&s, &kiosk).await;
        match offered.verify_replacing(
            &trust,
            fleet_sync::storage::now_ms(),
            Some(first.generated_at_ms),
        ) {
            Ok(snap) => {
                next = Some(snap);
                break;
            }
            // Served within the same millisecond: not newer yet.
            Err(fleet_protocol::snapshot::SnapshotError::Rollback { .. }) => {
                tokio::time::sleep(Duration::from_millis(2)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    let next = next.expect("a newer snapshot");
    assert!(next.badge(badge_id).unwrap().revoked);
    assert_eq!(
        next.resolve_short_code(badge["short_code"].as_str().unwrap()),
        None
    );
    // And the older one can't be handed back.
    assert!(matches!(
        signed_snapshot(&s, &kiosk).await.verify_replacing(
            &trust,
            fleet_sync::storage::now_ms(),
            Some(i64::MAX)
        ),
        Err(fleet_protocol::snapshot::SnapshotError::Rollback { .. })
    ));
}

/// Sends the request head and `part` of a `len`-byte body, then drops the
/// connection, as a kiosk losing its uplink mid-upload does.
async fn cut_upload(
    s: &ApiServer,
    d: &EnrolledDevice,
    path_and_query: &str,
    len: usize,
    part: &[u8],
) {
    let authz = sign_request(
        &d.key,
        d.id,
        "PUT",
        path_and_query,
        fleet_sync::storage::now_ms(),
        b"",
    );
    let mut sock = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "PUT {path_and_query} HTTP/1.1\r\nhost: {}\r\nauthorization: {authz}\r\ncontent-type: image/jpeg\r\ncontent-length: {len}\r\n\r\n",
        s.addr
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(part).await.unwrap();
    sock.flush().await.unwrap();
    drop(sock);
}

async fn upload_offset(s: &ApiServer, d: &EnrolledDevice, sha: &str) -> (u64, bool) {
    let r = device(
        s,
        d,
        reqwest::Method::HEAD,
        &format!("/sync/v1/blobs/{sha}"),
        Vec::new(),
        false,
    )
    .await;
    assert_eq!(r.status(), 200);
    let h = |n: &str| r.headers().get(n).unwrap().to_str().unwrap().to_owned();
    (
        h("upload-offset").parse().unwrap(),
        h("upload-complete") == "?1",
    )
}

#[tokio::test]
async fn a_blob_upload_resumes_after_a_cut_and_bad_digests_and_oversize_bodies_are_refused() {
    let s = start().await;
    let (tenant, api_key) = s.tenant("acme").await;
    let kiosk = s.enroll_over_http(tenant, "kiosk-north").await;
    let photo: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let sha = body_digest(&photo);
    let total = photo.len();
    let put = reqwest::Method::PUT;

    cut_upload(
        &s,
        &kiosk,
        &format!("/sync/v1/blobs/{sha}?offset=0&total={total}"),
        total,
        &photo[..90_000],
    )
    .await;
    // The server keeps what arrived before the cut.
    let mut have = 0;
    for _ in 0..200 {
        have = upload_offset(&s, &kiosk, &sha).await.0;
        if have == 90_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(have, 90_000);

    // Resuming anywhere else is refused and changes nothing.
    let r = device(
        &s,
        &kiosk,
        put.clone(),
        &format!("/sync/v1/blobs/{sha}?offset=10&total={total}"),
        photo[10..].to_vec(),
        false,
    )
    .await;
    assert_eq!(r.status(), 409);
    assert_eq!(upload_offset(&s, &kiosk, &sha).await, (90_000, false));

    let r = device(
        &s,
        &kiosk,
        put.clone(),
        &format!("/sync/v1/blobs/{sha}?offset={have}&total={total}"),
        photo[have as usize..].to_vec(),
        false,
    )
    .await;
    assert_eq!(r.status(), 201);
    assert_eq!(upload_offset(&s, &kiosk, &sha).await, (total as u64, true));

    let r = s
        .http
        .get(format!("{}/api/v1/blobs/{sha}", s.url))
        .header("authorization", format!("Bearer {api_key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), photo.as_slice());
    // Another tenant does not see it.
    let (_, other_key) = s.tenant("globex").await;
    let (st, err) = s
        .json(
            &other_key,
            reqwest::Method::GET,
            &format!("/api/v1/blobs/{sha}"),
            None,
        )
        .await;
    assert_eq!((st, code(&err)), (404, "blob_not_found"));

    // Bytes that are not what the digest names: discarded, 422.
    let mut forged = photo.clone();
    forged[0] ^= 1;
    let claimed = body_digest(&forged[1..]);
    let r = device(
        &s,
        &kiosk,
        put.clone(),
        &format!("/sync/v1/blobs/{claimed}?total={total}"),
        forged,
        false,
    )
    .await;
    assert_eq!(r.status(), 422);
    let e: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(code(&e), "blob_digest_mismatch");
    assert_eq!(upload_offset(&s, &kiosk, &claimed).await, (0, false));

    // Over the cap: refused before a byte is kept, declared or not.
    let big = vec![7u8; BLOB_CAP + 1];
    let big_sha = body_digest(&big);
    let r = device(
        &s,
        &kiosk,
        put.clone(),
        &format!("/sync/v1/blobs/{big_sha}?total={}", big.len()),
        big.clone(),
        false,
    )
    .await;
    assert_eq!(r.status(), 413);
    let r = device(
        &s,
        &kiosk,
        put,
        &format!("/sync/v1/blobs/{big_sha}?total=1000"),
        big,
        false,
    )
    .await;
    assert!(r.status() == 413 || r.status() == 400, "{}", r.status());
    assert_eq!(upload_offset(&s, &kiosk, &big_sha).await, (0, false));
}

/// Runs automerge's sync protocol between a kiosk's document and the server
/// until neither has anything to say.
async fn sync_doc(s: &ApiServer, d: &EnrolledDevice, doc_id: &str, doc: &mut AutoCommit) {
    let mut state = sync::State::new();
    let path = format!("/sync/v1/docs/{}/sync", doc_id.replace('/', "%2F"));
    for _ in 0..20 {
        let msg = doc.sync().generate_sync_message(&mut state);
        let body = msg.map(sync::Message::encode).unwrap_or_default();
        let sent_something = !body.is_empty();
        let r = device(s, d, reqwest::Method::POST, &path, body, true).await;
        assert!(r.status().is_success(), "{}", r.status());
        let reply = r.bytes().await.unwrap();
        if reply.is_empty() {
            if !sent_something {
                return;
            }
            continue;
        }
        let m = sync::Message::decode(&reply).unwrap();
        doc.sync().receive_sync_message(&mut state, m).unwrap();
    }
    panic!("document sync did not settle");
}

#[tokio::test]
async fn two_kiosks_offline_check_outs_merged_at_the_server_raise_one_conflict_an_operator_resolves(
) {
    let s = start().await;
    let (tenant, api_key) = s.tenant("acme").await;
    let north = s.enroll_over_http(tenant, "kiosk-north").await;
    let south = s.enroll_over_http(tenant, "kiosk-south").await;
    let asset = Uuid::new_v4();
    let doc_id = custody_doc_id(asset);
    let op = |kiosk: &str, at_ms: i64| CustodyOp {
        op: CustodyAction::CheckOut,
        kiosk: kiosk.into(),
        badge: Uuid::new_v4(),
        at_ms,
        event_id: Uuid::new_v4(),
    };
    let (first, second) = (op("kiosk-north", 1_000), op("kiosk-south", 2_000));

    // Both start the asset's document offline and check it out.
    let mut a = fleet_agent::kiosk::custody::new_doc();
    fleet_agent::kiosk::custody::append(&doc_id, &mut a, &first).unwrap();
    let mut b = fleet_agent::kiosk::custody::new_doc();
    fleet_agent::kiosk::custody::append(&doc_id, &mut b, &second).unwrap();

    sync_doc(&s, &north, &doc_id, &mut a).await;
    let (_, none) = s
        .json(
            &api_key,
            reqwest::Method::GET,
            "/api/v1/custody/conflicts",
            None,
        )
        .await;
    assert!(
        none["conflicts"].as_array().unwrap().is_empty(),
        "one check-out is no conflict"
    );
    sync_doc(&s, &south, &doc_id, &mut b).await;
    // North hears of South's check-out; that merge adds nothing new at the server.
    sync_doc(&s, &north, &doc_id, &mut a).await;
    assert_eq!(fleet_agent::kiosk::custody::read_ops(&a).len(), 2);

    let (st, list) = s
        .json(
            &api_key,
            reqwest::Method::GET,
            "/api/v1/custody/conflicts",
            None,
        )
        .await;
    assert_eq!(st, 200);
    let conflicts = list["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{list}");
    let c = &conflicts[0];
    assert_eq!(c["asset_id"].as_str().unwrap(), asset.to_string());
    assert_eq!(
        c["first"]["event_id"].as_str().unwrap(),
        first.event_id.to_string()
    );
    assert_eq!(
        c["second"]["event_id"].as_str().unwrap(),
        second.event_id.to_string()
    );

    let (_, custody) = s
        .json(&api_key, reqwest::Method::GET, "/api/v1/custody", None)
        .await;
    let held = &custody["assets"][0];
    assert_eq!(held["asset_id"].as_str().unwrap(), asset.to_string());
    assert_eq!(
        held["holder"]["badge"].as_str().unwrap(),
        second.badge.to_string()
    );

    let id = c["id"].as_str().unwrap();
    let path = format!("/api/v1/custody/conflicts/{id}/resolve");
    let (st, err) = s
        .json(
            &api_key,
            reqwest::Method::POST,
            &path,
            Some(json!({"holder_badge": second.badge, "note": " "})),
        )
        .await;
    assert_eq!((st, code(&err)), (400, "bad_note"));
    let (st, resolved) = s
        .json(
            &api_key,
            reqwest::Method::POST,
            &path,
            Some(json!({"holder_badge": second.badge, "note": "north's driver never left"})),
        )
        .await;
    assert_eq!(st, 200, "{resolved}");
    assert_eq!(
        resolved["resolution"]["holder_badge"].as_str().unwrap(),
        second.badge.to_string()
    );
    let (st, err) = s
        .json(
            &api_key,
            reqwest::Method::POST,
            &path,
            Some(json!({"holder_badge": null, "note": "again"})),
        )
        .await;
    assert_eq!((st, code(&err)), (409, "already_resolved"));
    let (_, open) = s
        .json(
            &api_key,
            reqwest::Method::GET,
            "/api/v1/custody/conflicts",
            None,
        )
        .await;
    assert!(open["conflicts"].as_array().unwrap().is_empty());
    let (_, all) = s
        .json(
            &api_key,
            reqwest::Method::GET,
            "/api/v1/custody/conflicts?include_resolved=true",
            None,
        )
        .await;
    assert_eq!(all["conflicts"].as_array().unwrap().len(), 1);
}
