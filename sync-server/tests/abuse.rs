//! Abuse of the two APIs, against the real router on a SQLite file and, with
//! `FLEET_TEST_PG_URL`, on PostgreSQL (through a role row-level security
//! binds): forged, expired, tampered, replayed and revoked device credentials
//! and batches that name another tenant; for every operation in the OpenAPI
//! document that takes a body, malformed, deeply nested, oversized and
//! SQL-laden bodies; and another tenant's ids in every id field of those
//! bodies. Each is refused with a 4xx in the one error shape, and the database
//! is the same afterwards, table by table, row by row. (Another tenant's ids in
//! every path are the access matrix's part: sync-server/tests/access_matrix.rs.)

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use ed25519_dalek::SigningKey;
use fleet_protocol::{
    encode_batch, BatchHeader, BootId, Event, EventData, EventTime, Hlc, Kind, Priority,
};
use fleet_sync::storage::postgres::testing::Guard;
use fleet_sync::storage::sqlite::SqliteStorage;
use fleet_sync::storage::{now_ms, EnrollDevice, Storage};
use fleet_sync::{router, AppState};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::collections::BTreeSet;
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

type Dump = BTreeMap<String, Vec<String>>;

/// Request nonces and "last seen" or "last used" times are authentication
/// bookkeeping, not stored data: the dumps leave them out.
fn bookkeeping_column(name: &str) -> bool {
    name.contains("last_seen") || name.contains("last_used")
}

/// Every row of every table, as text (SQLite).
fn dump_sqlite(db: &Path) -> Dump {
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
                    if bookkeeping_column(n) {
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

/// Every row of every table, as JSON text (PostgreSQL, read as the superuser so
/// row-level security hides nothing).
async fn dump_postgres(client: &tokio_postgres::Client) -> Dump {
    let tables = client
        .query(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
             ORDER BY c.relname",
            &[],
        )
        .await
        .expect("listing tables");
    let mut out = BTreeMap::new();
    for t in tables {
        let t: String = t.get(0);
        if t == "request_nonces" {
            continue;
        }
        let rows = client
            .query(&format!("SELECT row_to_json(t)::text FROM \"{t}\" t"), &[])
            .await
            .unwrap_or_else(|e| panic!("dumping {t}: {e}"));
        let mut rows: Vec<String> = rows
            .iter()
            .map(|r| {
                let mut v: Value = serde_json::from_str(r.get::<_, &str>(0)).unwrap();
                if let Some(o) = v.as_object_mut() {
                    o.retain(|k, _| !bookkeeping_column(k));
                }
                v.to_string()
            })
            .collect();
        rows.sort();
        out.insert(t, rows);
    }
    out
}

fn assert_same(before: &Dump, after: &Dump, what: &str) {
    for (t, rows) in after {
        assert_eq!(before.get(t), Some(rows), "{what}: table {t} changed");
    }
    assert_eq!(
        before.len(),
        after.len(),
        "{what}: tables appeared or vanished"
    );
}

enum Db {
    Sqlite(std::path::PathBuf),
    Postgres(tokio_postgres::Client),
}

struct World {
    app: Router,
    db: Db,
    storage: Arc<dyn Storage>,
    _dir: tempfile::TempDir,
    _guard: Option<Guard>,
}

impl World {
    async fn dump(&self) -> Dump {
        match &self.db {
            Db::Sqlite(path) => dump_sqlite(path),
            Db::Postgres(client) => dump_postgres(client).await,
        }
    }
}

fn world_on(
    storage: Arc<dyn Storage>,
    db: Db,
    dir: tempfile::TempDir,
    guard: Option<Guard>,
) -> World {
    let app = router(AppState::new(storage.clone()).with_operator_key(OPERATOR_KEY));
    World {
        app,
        db,
        storage,
        _dir: dir,
        _guard: guard,
    }
}

async fn sqlite_world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fleet.db");
    let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::open(&db).unwrap());
    world_on(storage, Db::Sqlite(db), dir, None)
}

/// A fresh PostgreSQL database; `None` (skipped) without `FLEET_TEST_PG_URL`,
/// a failure under `CI=true`.
async fn postgres_world() -> Option<World> {
    let (storage, guard) = fleet_sync::storage::postgres::testing::fresh().await?;
    let (client, conn) = guard
        .admin_config()
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connecting as the superuser for the dumps");
    tokio::spawn(conn);
    Some(world_on(
        storage,
        Db::Postgres(client),
        tempfile::tempdir().unwrap(),
        Some(guard),
    ))
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
async fn forged_expired_tampered_replayed_and_revoked_device_credentials_store_nothing_on_sqlite() {
    device_credentials(sqlite_world().await).await;
}

#[tokio::test]
async fn forged_expired_tampered_replayed_and_revoked_device_credentials_store_nothing_on_postgres()
{
    if let Some(w) = postgres_world().await {
        device_credentials(w).await;
    }
}

async fn device_credentials(w: World) {
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
        let before = w.dump().await;
        let r = send(&w.app, req).await;
        assert_eq!(r.status, status, "{what}: {}", r.text());
        assert_eq!(r.error_code(), code, "{what}");
        assert_same(&before, &w.dump().await, what);
    }

    // Revoked: refused from the next request on, with a valid signature.
    w.storage.revoke_device(dev.id, now_ms()).await.unwrap();
    let before = w.dump().await;
    let r = send(
        &w.app,
        batch_request(&sign(&dev.key, dev.id, now_ms(), &next), next.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert_eq!(r.error_code(), "device_revoked");
    assert_same(&before, &w.dump().await, "revoked device");
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
async fn malformed_nested_oversized_and_sql_laden_bodies_get_a_4xx_and_change_nothing_on_sqlite() {
    bad_bodies(sqlite_world().await).await;
}

#[tokio::test]
async fn malformed_nested_oversized_and_sql_laden_bodies_get_a_4xx_and_change_nothing_on_postgres()
{
    if let Some(w) = postgres_world().await {
        bad_bodies(w).await;
    }
}

async fn bad_bodies(w: World) {
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
            let before = w.dump().await;
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
                &w.dump().await,
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
    let after = w.dump().await;
    assert!(after.contains_key("devices") && after.contains_key("events"));
    eprintln!(
        "abuse: {} operations with bodies, {refused} malformed, nested or oversized requests refused \
         with nothing stored; SQL metacharacters accepted as text by {sql_stored_verbatim}",
        ops.len()
    );
}

async fn api(w: &World, method: &str, uri: &str, key: &str, body: Option<&Value>) -> Reply {
    let mut req = Request::builder()
        .method(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap())
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {key}"));
    let body = match body {
        Some(v) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    send(&w.app, req.body(body).unwrap()).await
}

/// `POST`s `body` and answers the new record's `id`.
async fn made(w: &World, key: &str, uri: &str, body: Option<Value>) -> (Uuid, Value) {
    let r = api(w, "post", uri, key, body.as_ref()).await;
    assert!(
        r.status.is_success(),
        "seeding {uri}: {} {}",
        r.status,
        r.text()
    );
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    let id = v["id"]
        .as_str()
        .or_else(|| v["badge"]["id"].as_str())
        .or_else(|| v["label"]["id"].as_str())
        .unwrap_or_else(|| panic!("seeding {uri}: no id in {v}"))
        .parse()
        .unwrap();
    (id, v)
}

/// One tenant's records of every kind a body can refer to.
struct Records {
    tenant: Uuid,
    admin: String,
    ids: BTreeMap<&'static str, Uuid>,
}

async fn records(w: &World, name: &str) -> Records {
    let r = api(
        w,
        "post",
        "/api/v1/tenants",
        OPERATOR_KEY,
        Some(&json!({ "name": name })),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    let tenant: Uuid = v["tenant"]["id"].as_str().unwrap().parse().unwrap();
    let admin = v["admin_key"]["secret"].as_str().unwrap().to_owned();
    let key = admin.as_str();
    let mut ids = BTreeMap::new();
    ids.insert(
        "key",
        v["admin_key"]["id"].as_str().unwrap().parse().unwrap(),
    );
    let vehicle = device(&w.storage, tenant, &format!("{name}-truck"))
        .await
        .id;
    ids.insert("vehicle", vehicle);
    let (user, _) = made(
        w,
        key,
        "/api/v1/users",
        Some(json!({ "email": format!("dana@{name}.example"), "name": "Dana", "role": "driver" })),
    )
    .await;
    ids.insert("user", user);
    let (asset, _) = made(
        w,
        key,
        "/api/v1/assets",
        Some(json!({ "kind": "vehicle", "name": format!("{name} van"), "device_id": vehicle })),
    )
    .await;
    ids.insert("asset", asset);
    let (badge, _) = made(w, key, &format!("/api/v1/users/{user}/badges"), None).await;
    ids.insert("badge", badge);
    let (form, _) = made(
        w,
        key,
        "/api/v1/inspections/forms",
        Some(json!({ "vehicle_type": "van", "name": "Pre-trip",
                     "items": [{ "id": "brakes", "label": "Brakes" }] })),
    )
    .await;
    ids.insert("form", form);
    let (inspection, v) = made(
        w,
        key,
        "/api/v1/inspections",
        Some(json!({ "id": Uuid::new_v4(), "asset_id": asset, "form_id": form, "driver": "Dana",
                     "results": [{ "item": "brakes", "ok": false }],
                     "defects": [{ "item": "brakes", "description": "soft pedal", "severity": "unsafe" }] })),
    )
    .await;
    ids.insert("inspection", inspection);
    if let Some(d) = v["defects"][0]["id"].as_str() {
        ids.insert("defect", d.parse().unwrap());
    }
    let (schedule, _) = made(
        w,
        key,
        "/api/v1/maintenance/schedules",
        Some(json!({ "name": "Service", "vehicle_id": vehicle, "every_days": 90 })),
    )
    .await;
    ids.insert("schedule", schedule);
    let (work_order, _) = made(
        w,
        key,
        "/api/v1/maintenance/work-orders",
        Some(json!({ "vehicle_id": vehicle, "title": "Brakes", "schedule_id": schedule })),
    )
    .await;
    ids.insert("work_order", work_order);
    let start = now_ms() + 86_400_000;
    let (reservation, _) = made(
        w,
        key,
        "/api/v1/reservations",
        Some(json!({ "vehicle_id": asset, "user_id": user, "start_ms": start, "end_ms": start + 3_600_000 })),
    )
    .await;
    ids.insert("reservation", reservation);
    let (group, _) = made(
        w,
        key,
        "/api/v1/device-groups",
        Some(json!({ "name": format!("{name} group") })),
    )
    .await;
    ids.insert("group", group);
    let (webhook, _) = made(
        w,
        key,
        "/api/v1/webhooks",
        Some(json!({ "url": "https://hooks.example/fleet", "events": ["fault"] })),
    )
    .await;
    ids.insert("webhook", webhook);
    Records { tenant, admin, ids }
}

/// The kind of record an id field names, from its name and the operation;
/// `None` for an id the caller makes up for a new record.
fn id_kind(path: &str, field: &str) -> Option<&'static str> {
    let base = field.trim_end_matches('s').trim_end_matches("_id");
    // Reservations and calendars book vehicles from the asset catalog.
    let booking = path.starts_with("/api/v1/reservations") || path == "/api/v1/calendar/tokens";
    Some(match base {
        "vehicle" | "id" if booking => "asset",
        "vehicle" | "device" => "vehicle",
        "user" | "driver" | "approver" => "user",
        "asset" => "asset",
        "badge" | "holder_badge" => "badge",
        "form" => "form",
        "schedule" => "schedule",
        "work_order" => "work_order",
        "reservation" => "reservation",
        "group" | "device_group" => "group",
        "webhook" => "webhook",
        "defect" => "defect",
        "inspection" => "inspection",
        "key" => "key",
        _ => return None,
    })
}

/// The kind of record a path's `{id}` names.
fn path_kind(path: &str) -> Option<&'static str> {
    let prefixes = [
        ("/api/v1/assets/", "asset"),
        ("/api/v1/device-groups/", "group"),
        ("/api/v1/inspections/defects/", "defect"),
        ("/api/v1/maintenance/work-orders/", "work_order"),
        ("/api/v1/reservations/", "reservation"),
        ("/api/v1/users/", "user"),
        ("/api/v1/vehicles/", "vehicle"),
        ("/api/v1/webhooks/", "webhook"),
        ("/api/v1/keys/", "key"),
    ];
    prefixes
        .iter()
        .find(|(p, _)| path.starts_with(p))
        .map(|(_, k)| *k)
}

/// Top-level properties that hold ids: `format: uuid`, or arrays of them.
fn id_fields(spec: &Value, schema: &Value) -> Vec<(String, bool)> {
    let schema = resolve(spec, schema);
    let mut out = Vec::new();
    if let Some(props) = schema["properties"].as_object() {
        for (name, p) in props {
            let p = resolve(spec, p);
            if p["format"] == "uuid" {
                out.push((name.clone(), false));
            } else if resolve(spec, &p["items"])["format"] == "uuid" {
                out.push((name.clone(), true));
            }
        }
    }
    out
}

/// A body the caller's own records make plausible: its required fields (ids of
/// the caller's own records of the right kind, the first value of each enum,
/// times ahead), plus what an operation needs beyond its schema.
fn own_body(spec: &Value, path: &str, schema: &Value, own: &Records) -> Value {
    let schema = resolve(spec, schema);
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let soon = now_ms() + 2 * 86_400_000;
    let mut obj = serde_json::Map::new();
    for (name, p) in schema["properties"].as_object().into_iter().flatten() {
        let p = resolve(spec, p);
        let own_id = |n: &str| {
            id_kind(path, n)
                .and_then(|k| own.ids.get(k))
                .map_or_else(|| json!(Uuid::new_v4()), |id| json!(id))
        };
        if !required.contains(name.as_str()) {
            continue;
        }
        let v = if p["format"] == "uuid" {
            own_id(name)
        } else if resolve(spec, &p["items"])["format"] == "uuid" {
            json!([own_id(name)])
        } else if let Some(first) = p["enum"].as_array().and_then(|e| e.first()) {
            first.clone()
        } else if name.ends_with("_ms") {
            json!(if name.starts_with("end") {
                soon + 3_600_000
            } else {
                soon
            })
        } else if p["format"] == "date-time" {
            json!("2030-01-02T03:04:05Z")
        } else {
            match p["type"].as_str() {
                Some("integer") => json!(1),
                Some("number") => json!(1.5),
                Some("boolean") => json!(false),
                Some("array") => json!([]),
                Some("object") => json!({}),
                _ if p["format"] == "email" => json!("sam@alpha.example"),
                _ if p["format"] == "uri" => json!("https://hooks.example/x"),
                _ => json!("text"),
            }
        };
        obj.insert(name.clone(), v);
    }
    // Rules the schema does not say: an interval, every form item answered.
    match path {
        "/api/v1/maintenance/schedules" => {
            obj.insert("every_days".into(), json!(30));
        }
        "/api/v1/inspections" => {
            obj.insert("results".into(), json!([{ "item": "brakes", "ok": true }]));
            obj.insert("form_id".into(), json!(own.ids["form"]));
        }
        // Custody goes to exactly one of a badge or a user.
        "/api/v1/custody/check-out" | "/api/v1/custody/check-in" => {
            obj.insert("user_id".into(), json!(own.ids["user"]));
        }
        // A key label is the one that names an asset.
        "/api/v1/labels" => {
            obj.insert("kind".into(), json!("key"));
            obj.insert("name".into(), json!("Van key"));
            obj.insert("slot".into(), json!(1));
        }
        // An admin key belongs to no user: the driver is named.
        "/api/v1/reservations" => {
            obj.insert("user_id".into(), json!(own.ids["user"]));
        }
        _ => {}
    }
    Value::Object(obj)
}

#[tokio::test]
async fn another_tenants_ids_in_body_fields_are_refused_as_unknown_and_store_nothing_on_sqlite() {
    foreign_ids_in_bodies(sqlite_world().await).await;
}

#[tokio::test]
async fn another_tenants_ids_in_body_fields_are_refused_as_unknown_and_store_nothing_on_postgres() {
    if let Some(w) = postgres_world().await {
        foreign_ids_in_bodies(w).await;
    }
}

/// For every id field of every body: the other tenant's id is answered exactly
/// as an id nobody has (same status and code, so the answer says nothing about
/// the other tenant), with a code that names the unknown record
/// (`*_not_found`, `unknown_*`), nothing stored and the id not echoed.
/// Ids the caller makes up for a new record are answered as a fresh id would be.
async fn foreign_ids_in_bodies(w: World) {
    let alpha = records(&w, "alpha").await;
    let bravo = records(&w, "bravo").await;
    let spec: Value =
        serde_json::from_slice(&api(&w, "get", "/api/v1/openapi.json", "", None).await.body)
            .unwrap();
    let mut failures = Vec::new();
    let mut fields_checked = 0;
    let mut own_accepted = 0;
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for (method, path, schema) in operations_with_bodies(&spec) {
        if path.starts_with("/api/v1/tenants") {
            continue;
        }
        let fields = id_fields(&spec, &schema);
        if fields.is_empty() {
            continue;
        }
        let uri = match path_kind(&path).and_then(|k| alpha.ids.get(k)) {
            Some(id) => path.replace("{id}", &id.to_string()),
            None => fill_path(&path),
        };
        let own = own_body(&spec, &path, &schema, &alpha);
        for (field, many) in &fields {
            let Some(kind) = id_kind(&path, field) else {
                continue;
            };
            let foreign_id = bravo.ids[kind];
            let with = |id: Uuid| {
                let mut b = own.clone();
                if field == "badge_id" {
                    b.as_object_mut().unwrap().remove("user_id");
                }
                b[field.as_str()] = if *many { json!([id]) } else { json!(id) };
                b
            };
            let what = format!("{method} {path} with bravo's {kind} in {field}");
            let before = w.dump().await;
            let foreign = api(&w, &method, &uri, &alpha.admin, Some(&with(foreign_id))).await;
            let after = w.dump().await;
            let unknown = api(&w, &method, &uri, &alpha.admin, Some(&with(Uuid::new_v4()))).await;
            fields_checked += 1;
            if foreign.status.is_server_error() {
                failures.push(format!("{what}: {} {}", foreign.status, foreign.text()));
                continue;
            }
            if foreign.text().contains(&foreign_id.to_string()) {
                failures.push(format!("{what}: the answer echoes it: {}", foreign.text()));
            }
            if foreign.status.is_success() {
                failures.push(format!(
                    "{what}: accepted ({}): {}",
                    foreign.status,
                    foreign.text()
                ));
                continue;
            }
            let code = foreign.error_code();
            // A user the caller cannot see is, like an unknown one, a user
            // without a badge of this tenant.
            if !code.contains("not_found")
                && !code.starts_with("unknown_")
                && code != "user_has_no_badge"
            {
                failures.push(format!(
                    "{what}: refused for something else than the id: {}",
                    foreign.text()
                ));
            }
            *statuses.entry(foreign.status.as_u16()).or_default() += 1;
            if (foreign.status, foreign.error_code()) != (unknown.status, unknown.error_code()) {
                failures.push(format!(
                    "{what}: answered {} {} but an unknown id gets {} {}",
                    foreign.status,
                    foreign.text(),
                    unknown.status,
                    unknown.text()
                ));
            }
            if before != after {
                let changed: Vec<&String> = after
                    .iter()
                    .filter(|(t, rows)| before.get(*t) != Some(rows))
                    .map(|(t, _)| t)
                    .collect();
                failures.push(format!("{what}: tables changed: {changed:?}"));
            }
        }
        // The same body with the caller's own ids: what the refusals above are
        // measured against (most are accepted; the rest refuse for their own
        // reasons, which the unknown-id comparison above already covers).
        let r = api(&w, &method, &uri, &alpha.admin, Some(&own)).await;
        if r.status.is_success() {
            own_accepted += 1;
        }
    }
    // Nothing of bravo's changed hands: its vehicle, user and asset are as they were.
    let bravo_vehicle = api(
        &w,
        "get",
        &format!("/api/v1/vehicles/{}", bravo.ids["vehicle"]),
        &bravo.admin,
        None,
    )
    .await;
    assert_eq!(
        bravo_vehicle.status,
        StatusCode::OK,
        "{}",
        bravo_vehicle.text()
    );
    assert!(!bravo_vehicle.text().contains(&alpha.tenant.to_string()));
    assert!(
        fields_checked >= 15,
        "only {fields_checked} id fields found"
    );
    assert!(
        failures.is_empty(),
        "{} of {fields_checked} id fields went wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "abuse: {fields_checked} id fields in request bodies refused another tenant's id as unknown \
         with nothing stored (statuses {statuses:?}); {own_accepted} operations accepted the same \
         bodies with the caller's own ids"
    );
}
