//! Abuse of the two APIs, against the real router on a SQLite file: forged,
//! expired, tampered, replayed and revoked device credentials and batches that
//! name another tenant; and, for every operation in the OpenAPI document that
//! takes a body, malformed, deeply nested, oversized and SQL-laden bodies.
//! Each is refused with a 4xx in the one error shape, and the database is the
//! same afterwards, table by table, row by row. (Another tenant's ids in every
//! path are the access matrix's part: sync-server/tests/access_matrix.rs.)

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use ed25519_dalek::SigningKey;
use fleet_protocol::{
    encode_batch, BatchHeader, BootId, Event, EventData, EventTime, Hlc, Kind, Priority,
};
use fleet_sync::storage::sqlite::SqliteStorage;
use fleet_sync::storage::{now_ms, EnrollDevice, Storage};
use fleet_sync::{router, AppState};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use uuid::Uuid;

const OPERATOR_KEY: &str = "operator-key-for-the-abuse-test";
/// Strings a careless query builder would turn into SQL.
const SQL_METACHARACTERS: &str = "x'); DROP TABLE devices; -- \" ` \\ %_ ; SELECT 1/0 /*";

struct Reply {
    status: StatusCode,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The one error shape: `{"error": {"code", "message"}}`, a snake_case code.
    fn error_code(&self) -> String {
        let v: Value = serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{}: error body is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        });
        let code = v["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no error.code in {v}", self.status));
        assert!(v["error"]["message"].is_string(), "no error.message in {v}");
        assert!(
            !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "error code {code:?} is not snake_case"
        );
        code.to_owned()
    }
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let resp = app.clone().oneshot(req).await.expect("router");
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body")
        .to_vec();
    Reply { status, body }
}

/// Every row of every table, as text; request nonces and "last seen" or "last
/// used" times are authentication bookkeeping, not stored data, and are left out.
fn dump(db: &Path) -> BTreeMap<String, Vec<String>> {
    let conn = rusqlite::Connection::open(db).expect("open dump connection");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut out = BTreeMap::new();
    for t in tables {
        if t == "request_nonces" {
            continue;
        }
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let mut rows: Vec<String> = stmt
            .query_map([], |r| {
                let mut line = String::new();
                for (i, n) in names.iter().enumerate() {
                    if n.contains("last_seen") || n.contains("last_used") {
                        continue;
                    }
                    let v: rusqlite::types::Value = r.get(i)?;
                    line.push_str(&format!("{n}={v:?};"));
                }
                Ok(line)
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        rows.sort();
        out.insert(t, rows);
    }
    out
}

fn assert_same(
    before: &BTreeMap<String, Vec<String>>,
    after: &BTreeMap<String, Vec<String>>,
    what: &str,
) {
    for (t, rows) in after {
        assert_eq!(before.get(t), Some(rows), "{what}: table {t} changed");
    }
    assert_eq!(
        before.len(),
        after.len(),
        "{what}: tables appeared or vanished"
    );
}

struct World {
    app: Router,
    db: std::path::PathBuf,
    storage: Arc<dyn Storage>,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fleet.db");
    let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::open(&db).unwrap());
    let app = router(AppState::new(storage.clone()).with_operator_key(OPERATOR_KEY));
    World {
        app,
        db,
        storage,
        _dir: dir,
    }
}

struct Device {
    id: Uuid,
    tenant: Uuid,
    key: SigningKey,
}

async fn device(storage: &Arc<dyn Storage>, tenant: Uuid, name: &str) -> Device {
    let token = storage
        .create_enrollment_token(tenant, Duration::from_secs(600), 1)
        .await
        .unwrap();
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let rec = storage
        .enroll_device(EnrollDevice {
            token: token.token,
            public_key: fleet_protocol::auth::encode_public_key(&key.verifying_key()),
            name: Some(name.into()),
            agent_version: None,
            now_ms: now_ms(),
        })
        .await
        .unwrap();
    Device {
        id: rec.device_id,
        tenant,
        key,
    }
}

fn batch(tenant: Uuid, device: Uuid, first: u64, n: u64, text: &str) -> Vec<u8> {
    let now = now_ms();
    let boot = BootId::random();
    let events: Vec<Event> = (first..first + n)
        .map(|seq| Event {
            seq,
            kind: Kind::known("note"),
            priority: Priority::Critical,
            time: EventTime {
                boot_id: boot,
                mono_ms: seq * 1000,
                wall_ms: now,
                hlc: Hlc::new(now as u64, seq as u16),
            },
            config_version: 0,
            data: EventData::Json(json!({ "text": text })),
        })
        .collect();
    let header = BatchHeader {
        tenant_id: tenant,
        device_id: device,
        first_seq: first,
        last_seq: first + n - 1,
        anchors: Vec::new(),
    };
    encode_batch(&header, &events, 1).unwrap()
}

fn batch_request(auth: &str, body: Vec<u8>) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(fleet_protocol::api::PATH_BATCHES)
        .header(header::AUTHORIZATION, auth)
        .header(
            header::CONTENT_TYPE,
            fleet_protocol::api::CONTENT_TYPE_BATCH,
        )
        .body(Body::from(body))
        .unwrap()
}

fn sign(key: &SigningKey, id: Uuid, ts: i64, body: &[u8]) -> String {
    fleet_protocol::auth::sign_request(key, id, "POST", fleet_protocol::api::PATH_BATCHES, ts, body)
}

#[tokio::test]
async fn forged_expired_tampered_replayed_and_revoked_device_credentials_store_nothing() {
    let w = world().await;
    let a = w.storage.create_tenant("alpha").await.unwrap().tenant_id;
    let b = w.storage.create_tenant("bravo").await.unwrap().tenant_id;
    let dev = device(&w.storage, a, "truck-a").await;
    let other = device(&w.storage, b, "truck-b").await;

    // The baseline: a properly signed batch is stored.
    let body = batch(dev.tenant, dev.id, 1, 3, "ok");
    let good_auth = sign(&dev.key, dev.id, now_ms(), &body);
    let r = send(&w.app, batch_request(&good_auth, body.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    let forger = SigningKey::generate(&mut rand::rngs::OsRng);
    let next = batch(dev.tenant, dev.id, 4, 2, "next");
    let hour = 3_600_000;
    let cases: Vec<(&str, Request<Body>, StatusCode, &str)> = vec![
        (
            "no authorization",
            Request::builder()
                .method(Method::POST)
                .uri(fleet_protocol::api::PATH_BATCHES)
                .header(
                    header::CONTENT_TYPE,
                    fleet_protocol::api::CONTENT_TYPE_BATCH,
                )
                .body(Body::from(next.clone()))
                .unwrap(),
            StatusCode::UNAUTHORIZED,
            "missing_authorization",
        ),
        (
            "garbage authorization",
            batch_request("FleetDevice id=1,ts=x,nonce=zz,sig=!!", next.clone()),
            StatusCode::UNAUTHORIZED,
            "bad_authorization",
        ),
        (
            "signed by a key the server never registered",
            batch_request(&sign(&forger, dev.id, now_ms(), &next), next.clone()),
            StatusCode::UNAUTHORIZED,
            "bad_signature",
        ),
        (
            "a device id nobody enrolled",
            batch_request(
                &sign(&dev.key, Uuid::new_v4(), now_ms(), &next),
                next.clone(),
            ),
            StatusCode::UNAUTHORIZED,
            "unknown_device",
        ),
        (
            "signed an hour ago",
            batch_request(
                &sign(&dev.key, dev.id, now_ms() - hour, &next),
                next.clone(),
            ),
            StatusCode::UNAUTHORIZED,
            "clock_skew",
        ),
        (
            "signed an hour ahead",
            batch_request(
                &sign(&dev.key, dev.id, now_ms() + hour, &next),
                next.clone(),
            ),
            StatusCode::UNAUTHORIZED,
            "clock_skew",
        ),
        (
            "a signature over another body",
            batch_request(&sign(&dev.key, dev.id, now_ms(), &body), next.clone()),
            StatusCode::UNAUTHORIZED,
            "bad_signature",
        ),
        (
            "the first request replayed as it was",
            batch_request(&good_auth, body.clone()),
            StatusCode::UNAUTHORIZED,
            "replayed_request",
        ),
        (
            "another tenant's device signing this tenant's batch",
            {
                let theirs = batch(dev.tenant, dev.id, 4, 2, "spoof");
                batch_request(&sign(&other.key, other.id, now_ms(), &theirs), theirs)
            },
            StatusCode::FORBIDDEN,
            "tenant_mismatch",
        ),
    ];
    for (what, req, status, code) in cases {
        let before = dump(&w.db);
        let r = send(&w.app, req).await;
        assert_eq!(r.status, status, "{what}: {}", r.text());
        assert_eq!(r.error_code(), code, "{what}");
        assert_same(&before, &dump(&w.db), what);
    }

    // Revoked: refused from the next request on, with a valid signature.
    w.storage.revoke_device(dev.id, now_ms()).await.unwrap();
    let before = dump(&w.db);
    let r = send(
        &w.app,
        batch_request(&sign(&dev.key, dev.id, now_ms(), &next), next.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert_eq!(r.error_code(), "device_revoked");
    assert_same(&before, &dump(&w.db), "revoked device");
}

/// The OpenAPI operations that take a JSON body: `(method, path template)`.
fn operations_with_bodies(spec: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if let Some(content) = op["requestBody"]["content"].as_object() {
                if let Some(schema) = content.get("application/json") {
                    out.push((method.clone(), path.clone(), schema["schema"].clone()));
                }
            }
        }
    }
    out
}

/// `$ref`s into `components/schemas` followed to the schema they name.
fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap_or_default();
            resolve(spec, &spec["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// A body with every string property (and string array) set to SQL
/// metacharacters and every other property a plausible value.
fn sql_laden(spec: &Value, schema: &Value) -> Value {
    let schema = resolve(spec, schema);
    let mut obj = serde_json::Map::new();
    if let Some(props) = schema["properties"].as_object() {
        for (name, p) in props {
            let p = resolve(spec, p);
            let v = match p["type"].as_str() {
                Some("string") => match p["enum"].as_array().and_then(|e| e.first()) {
                    Some(first) if name != "name" => first.clone(),
                    _ => json!(SQL_METACHARACTERS),
                },
                Some("integer") => json!(1),
                Some("number") => json!(1.5),
                Some("boolean") => json!(true),
                Some("array") => json!([SQL_METACHARACTERS]),
                Some("object") => sql_laden(spec, p),
                _ => json!(SQL_METACHARACTERS),
            };
            obj.insert(name.clone(), v);
        }
    }
    Value::Object(obj)
}

fn fill_path(template: &str) -> String {
    template
        .split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                Uuid::new_v4().to_string()
            } else {
                seg.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn malformed_nested_oversized_and_sql_laden_bodies_get_a_4xx_and_change_nothing() {
    let w = world().await;
    let made = send(
        &w.app,
        Request::builder()
            .method(Method::POST)
            .uri("/api/v1/tenants")
            .header(header::AUTHORIZATION, format!("Bearer {OPERATOR_KEY}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({ "name": "alpha" }).to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
    let made: Value = serde_json::from_slice(&made.body).unwrap();
    let admin = made["admin_key"]["secret"].as_str().unwrap().to_owned();
    let tenant: Uuid = made["tenant"]["id"].as_str().unwrap().parse().unwrap();
    device(&w.storage, tenant, "truck").await;
    let spec: Value = serde_json::from_slice(
        &send(
            &w.app,
            Request::builder()
                .uri("/api/v1/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .body,
    )
    .unwrap();

    let nested = "[".repeat(100_000) + &"]".repeat(100_000);
    let oversized = format!("{{\"name\":\"{}\"}}", "x".repeat(32 << 20));
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("truncated JSON", b"{\"name\": \"x".to_vec()),
        ("not JSON", b"\x00\xff<xml/>".to_vec()),
        ("a JSON array, not an object", b"[1,2,3]".to_vec()),
        ("100,000 levels of nesting", nested.into_bytes()),
        ("a 32 MiB body", oversized.into_bytes()),
    ];
    let ops = operations_with_bodies(&spec);
    assert!(ops.len() >= 10, "only {} operations take a body", ops.len());
    let mut refused = 0;
    let mut sql_stored_verbatim = 0;
    for (method, template, schema) in &ops {
        if template == "/api/v1/tenants" && method == "post" {
            // The operator's own operation: another tenant is a legitimate write.
            continue;
        }
        let key = if template.starts_with("/api/v1/tenants") {
            OPERATOR_KEY.to_owned()
        } else {
            admin.clone()
        };
        let uri = fill_path(template);
        for (what, body) in &bodies {
            let before = dump(&w.db);
            let r = send(
                &w.app,
                Request::builder()
                    .method(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap())
                    .uri(&uri)
                    .header(header::AUTHORIZATION, format!("Bearer {key}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body.clone()))
                    .unwrap(),
            )
            .await;
            assert!(
                r.status.is_client_error(),
                "{method} {template} with {what}: {} {}",
                r.status,
                r.text().chars().take(300).collect::<String>()
            );
            r.error_code();
            assert_same(
                &before,
                &dump(&w.db),
                &format!("{method} {template} with {what}"),
            );
            refused += 1;
        }

        // SQL metacharacters in every string field: refused, or, where the
        // body is otherwise valid, stored as the text it is (never a 500).
        let body = sql_laden(&spec, schema);
        let r = send(
            &w.app,
            Request::builder()
                .method(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap())
                .uri(&uri)
                .header(header::AUTHORIZATION, format!("Bearer {key}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await;
        assert!(
            !r.status.is_server_error(),
            "{method} {template} with SQL metacharacters: {} {}",
            r.status,
            r.text()
        );
        if r.status.is_success() {
            sql_stored_verbatim += 1;
        } else {
            r.error_code();
        }
    }
    // The metacharacters did nothing to the schema: every table still there.
    let after = dump(&w.db);
    assert!(after.contains_key("devices") && after.contains_key("events"));
    eprintln!(
        "abuse: {} operations with bodies, {refused} malformed, nested or oversized requests refused \
         with nothing stored; SQL metacharacters accepted as text by {sql_stored_verbatim}",
        ops.len()
    );
}
