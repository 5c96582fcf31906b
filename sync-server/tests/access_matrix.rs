//! The cross-tenant access matrix, driven by the OpenAPI document: every
//! `/api/v1` operation × every role (and the operator) × ids of the caller's own
//! tenant and of another. A role without the operation's `x-capability` gets
//! 403; no answer carries the other tenant's data; the other tenant's data is
//! unchanged afterwards. Runs on SQLite and, with `FLEET_TEST_PG_URL`, on
//! PostgreSQL. New endpoints join the matrix through their OpenAPI fragment.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use fleet_sync::http::auth::{Capability, Role};
use fleet_sync::storage::{now_ms, EnrollDevice, Storage};
use fleet_sync::{router, AppState};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use uuid::Uuid;

const OPERATOR_KEY: &str = "operator-key-for-the-matrix-test";

struct Reply {
    status: StatusCode,
    text: String,
}

async fn call(app: &Router, method: &str, uri: &str, key: &str, body: Option<Value>) -> Reply {
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
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    Reply {
        status,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// One tenant as the matrix sees it: a key per role, and ids of its objects.
struct Tenant {
    id: Uuid,
    keys: BTreeMap<&'static str, String>,
    key_id: Uuid,
    user_id: Uuid,
    vehicle_id: Uuid,
}

async fn tenant(app: &Router, storage: &Arc<dyn Storage>, name: &str) -> Tenant {
    let r = call(
        app,
        "post",
        "/api/v1/tenants",
        OPERATOR_KEY,
        Some(json!({ "name": name })),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let made: Value = serde_json::from_str(&r.text).unwrap();
    let id: Uuid = made["tenant"]["id"].as_str().unwrap().parse().unwrap();
    let admin = made["admin_key"]["secret"].as_str().unwrap().to_owned();
    let mut keys = BTreeMap::new();
    for role in Role::ALL {
        let r = call(
            app,
            "post",
            "/api/v1/keys",
            &admin,
            Some(json!({ "name": format!("{name} {role}"), "role": role })),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let k: Value = serde_json::from_str(&r.text).unwrap();
        keys.insert(role.as_str(), k["secret"].as_str().unwrap().to_owned());
    }
    // A key of its own for the revoke requests, so the role keys stay valid.
    let r = call(
        app,
        "post",
        "/api/v1/keys",
        &admin,
        Some(json!({ "name": format!("{name} spare"), "role": "read_only" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let key_id = serde_json::from_str::<Value>(&r.text).unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let r = call(
        app,
        "post",
        "/api/v1/users",
        &admin,
        Some(json!({ "email": format!("dana@{name}.example"), "name": format!("{name} user"), "role": "driver" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let user_id = serde_json::from_str::<Value>(&r.text).unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let token = storage
        .create_enrollment_token(id, Duration::from_secs(600), 1)
        .await
        .unwrap();
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let vehicle_id = storage
        .enroll_device(EnrollDevice {
            token: token.token,
            public_key: fleet_protocol::auth::encode_public_key(&key.verifying_key()),
            name: Some(format!("{name}-truck")),
            agent_version: None,
            now_ms: now_ms(),
        })
        .await
        .unwrap()
        .device_id;
    let r = call(
        app,
        "patch",
        &format!("/api/v1/vehicles/{vehicle_id}"),
        &admin,
        Some(json!({ "costs": { "purchase_price": 98765.43, "currency": "EUR" } })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    Tenant {
        id,
        keys,
        key_id,
        user_id,
        vehicle_id,
    }
}

/// The id a path parameter stands for, from `t`.
fn id_for(path: &str, t: &Tenant) -> Uuid {
    if path.starts_with("/api/v1/users") {
        t.user_id
    } else if path.starts_with("/api/v1/keys") {
        t.key_id
    } else if path.starts_with("/api/v1/tenants") {
        t.id
    } else {
        t.vehicle_id
    }
}

fn concrete(path: &str, t: &Tenant) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                id_for(path, t).to_string()
            } else {
                seg.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn required(op: &Value) -> Option<Vec<String>> {
    match &op["x-capability"] {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => Some(a.iter().map(|v| v.as_str().unwrap().to_owned()).collect()),
        _ => None,
    }
}

fn role_may(role: Option<Role>, needs: &Option<Vec<String>>) -> bool {
    match (role, needs) {
        // The operator key reaches only the operator's operations.
        (None, n) => n
            .as_ref()
            .is_some_and(|n| n.iter().all(|c| c == "operator")),
        (_, None) => true,
        (Some(r), Some(n)) => n
            .iter()
            .all(|c| Capability::parse(c).is_some_and(|c| r.has(c))),
    }
}

async fn run_matrix(storage: Arc<dyn Storage>) {
    let app = router(AppState::new(storage.clone()).with_operator_key(OPERATOR_KEY));
    let a = tenant(&app, &storage, "alpha").await;
    let b = tenant(&app, &storage, "bravo").await;
    let spec: Value = serde_json::from_str(
        &call(&app, "get", "/api/v1/openapi.json", "", None)
            .await
            .text,
    )
    .unwrap();
    // What must never show in an answer to one of alpha's callers.
    let foreign = [
        b.id.to_string(),
        b.user_id.to_string(),
        b.vehicle_id.to_string(),
        b.key_id.to_string(),
        "bravo".to_owned(),
    ];
    let mut callers: Vec<(Option<Role>, String)> = Role::ALL
        .into_iter()
        .map(|r| (Some(r), a.keys[r.as_str()].clone()))
        .collect();
    callers.push((None, OPERATOR_KEY.to_owned()));
    let mut failures = Vec::new();
    let mut checked = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1") || path == "/api/v1/openapi.json" {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            // A public operation (login) has no caller to check.
            if op["security"].as_array().is_some_and(Vec::is_empty) {
                continue;
            }
            let needs = required(op);
            let with_body = matches!(method.as_str(), "post" | "put" | "patch");
            let ids: &[&Tenant] = if path.contains('{') { &[&a, &b] } else { &[&a] };
            for (role, key) in &callers {
                for t in ids {
                    let uri = concrete(path, t);
                    let r = call(&app, method, &uri, key, with_body.then(|| json!({}))).await;
                    checked += 1;
                    let who = role.map_or("operator", Role::as_str);
                    let allowed = role_may(*role, &needs);
                    if !allowed && r.status != StatusCode::FORBIDDEN {
                        failures.push(format!(
                            "{method} {uri} as {who}: expected 403, got {} {}",
                            r.status, r.text
                        ));
                    }
                    if allowed
                        && r.status == StatusCode::FORBIDDEN
                        && !r.text.contains("feature_disabled")
                    {
                        failures.push(format!("{method} {uri} as {who}: refused: {}", r.text));
                    }
                    // 501: an operation this backend does not have yet, said as such.
                    if r.status.is_server_error() && r.status != StatusCode::NOT_IMPLEMENTED {
                        failures.push(format!("{method} {uri} as {who}: {} {}", r.status, r.text));
                    }
                    // The operator sees every tenant by design; tenant callers never
                    // see another's data.
                    if role.is_some() {
                        if let Some(leak) = foreign.iter().find(|f| r.text.contains(f.as_str())) {
                            failures.push(format!(
                                "{method} {uri} as {who}: answer names {leak}: {}",
                                r.text
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 100, "only {checked} requests");
    // bravo's data survived alpha's requests.
    let bravo_admin = &b.keys["admin"];
    let users = call(&app, "get", "/api/v1/users", bravo_admin, None).await;
    assert!(
        users.text.contains(&b.user_id.to_string()),
        "{}",
        users.text
    );
    assert!(!users.text.contains("\"disabled\":true"), "{}", users.text);
    let keys = call(&app, "get", "/api/v1/keys", bravo_admin, None).await;
    assert!(!keys.text.contains("\"revoked\""), "{}", keys.text);
    let v = call(
        &app,
        "get",
        &format!("/api/v1/vehicles/{}", b.vehicle_id),
        bravo_admin,
        None,
    )
    .await;
    assert!(v.text.contains("98765.43"), "{}", v.text);
    assert!(
        failures.is_empty(),
        "{} of {checked} requests went wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Cost fields are shown to admins and managers only, and left out for others.
async fn run_costs(storage: Arc<dyn Storage>) {
    let app = router(AppState::new(storage.clone()).with_operator_key(OPERATOR_KEY));
    let a = tenant(&app, &storage, "alpha").await;
    for role in Role::ALL {
        let list = call(
            &app,
            "get",
            "/api/v1/vehicles",
            &a.keys[role.as_str()],
            None,
        )
        .await;
        let one = call(
            &app,
            "get",
            &format!("/api/v1/vehicles/{}", a.vehicle_id),
            &a.keys[role.as_str()],
            None,
        )
        .await;
        for r in [&list, &one] {
            assert_eq!(r.status, StatusCode::OK, "{role}: {}", r.text);
            let sees = matches!(role, Role::Admin | Role::Manager);
            assert_eq!(r.text.contains("\"costs\""), sees, "{role}: {}", r.text);
            assert_eq!(r.text.contains("98765.43"), sees, "{role}: {}", r.text);
        }
    }
}

#[tokio::test]
async fn no_role_reaches_past_its_capabilities_or_into_another_tenant_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let storage =
        fleet_sync::storage::sqlite::SqliteStorage::open(&dir.path().join("fleet.db")).unwrap();
    run_matrix(Arc::new(storage)).await;
}

#[tokio::test]
async fn cost_fields_are_shown_only_to_managers_and_admins_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let storage =
        fleet_sync::storage::sqlite::SqliteStorage::open(&dir.path().join("fleet.db")).unwrap();
    run_costs(Arc::new(storage)).await;
}

#[tokio::test]
async fn no_role_reaches_past_its_capabilities_or_into_another_tenant_on_postgres() {
    let Some((storage, _guard)) = fleet_sync::storage::postgres::testing::fresh().await else {
        eprintln!("FLEET_TEST_PG_URL is not set; skipping the PostgreSQL matrix");
        return;
    };
    run_matrix(storage).await;
}
