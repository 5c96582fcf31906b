//! The OpenAPI 3.1 document at `/api/v1/openapi.json`, merged from the fragment
//! each HTTP module exposes as `pub fn openapi() -> serde_json::Value` (`paths`
//! and `components.schemas`). Every operation names the capability it needs as
//! `x-capability` (a name, or a list of names that are all needed); operator-only
//! operations say `operator`; operations without it need only a valid key, or
//! none where `security` is empty.
//!
//! A module's fragment is added to [`fragments`] with one line.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

/// Every module's fragment.
pub fn fragments() -> Vec<Value> {
    vec![
        base(),
        super::operator::openapi(),
        super::keys::openapi(),
        super::users::openapi(),
        super::session::openapi(),
        super::tenants::openapi(),
        super::audit::openapi(),
        super::stream::openapi(),
        super::kiosk::openapi(),
        super::reservations::openapi(),
        super::inspections::openapi(),
        super::assets::openapi(),
        super::blobs::openapi(),
        super::control::openapi(),
        super::analytics::openapi(),
        super::maintenance::openapi(),
        super::reports::openapi(),
    ]
}

/// A `$ref` to a schema of `components.schemas`.
pub fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A JSON response with the given schema.
pub fn json_response(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

/// An error response (the one error shape), listing the codes it may carry.
pub fn error_response(description: &str) -> Value {
    json_response(description, schema_ref("Error"))
}

/// A JSON request body with the given schema.
pub fn json_body(schema: Value) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema } } })
}

/// A UUID path parameter.
pub fn uuid_param(name: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } })
}

/// A string the server trims and then wants 1 to `max` characters long.
pub fn trimmed_text(max: usize) -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": max, "pattern": "\\S" })
}

/// Control characters (Unicode `Cc`, Rust's `char::is_control`) as a regex class body.
const CONTROL: &str = "\\u0000-\\u001f\\u007f-\\u009f";

/// Text the server trims and then wants `min` to `max` characters long, with no
/// control characters (`newlines`: but for `\n`).
pub fn printable_text(min: usize, max: usize, newlines: bool) -> Value {
    let class = if newlines {
        // Control characters but `\n` (U+000A).
        "\\u0000-\\u0009\\u000b-\\u001f\\u007f-\\u009f".to_owned()
    } else {
        CONTROL.to_owned()
    };
    let pattern = if min == 0 {
        format!("^[^{class}]*$")
    } else {
        format!("^[^{class}]*[^\\s{class}][^{class}]*$")
    };
    json!({ "type": "string", "minLength": min, "maxLength": max, "pattern": pattern })
}

/// A string, or `null`.
pub fn nullable(mut schema: Value) -> Value {
    match schema.get("type").cloned() {
        Some(Value::String(t)) => {
            schema["type"] = json!([t, "null"]);
            schema
        }
        _ => json!({ "anyOf": [schema, { "type": "null" }] }),
    }
}

fn base() -> Value {
    json!({
        "paths": {
            "/api/v1/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "tags": ["meta"],
                    "security": [],
                    "responses": { "200": json_response("the OpenAPI document", json!({ "type": "object" })) }
                }
            }
        },
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "a tenant's API key (fk_…), or the operator key for /api/v1/tenants" },
                "session": { "type": "apiKey", "in": "cookie", "name": "fleet_session", "description": "a user's session from POST /api/v1/session; changes also need X-CSRF-Token" }
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": { "type": "string", "pattern": "^[a-z0-9_]+$" },
                                "message": { "type": "string" },
                                "server_time_ms": { "type": "integer" },
                                "acked_seq": { "type": "integer" }
                            }
                        }
                    }
                },
                "Role": { "type": "string", "enum": crate::http::auth::Role::ALL.map(|r| r.as_str()) },
                "Capability": { "type": "string", "enum": crate::http::auth::Capability::ALL.map(|c| c.as_str()) }
            }
        }
    })
}

/// Errors any authenticated operation may answer with.
fn common_errors(op: &mut Map<String, Value>, authenticated: bool) {
    let responses = op
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("responses is an object");
    let mut add = |code: &str, text: &str| {
        responses
            .entry(code.to_owned())
            .or_insert_with(|| error_response(text));
    };
    add(
        "400",
        "bad input: bad_json, bad_query, bad_id, bad_path, bad_field, …",
    );
    add("413", "body_too_large");
    add(
        "415",
        "unsupported_media_type: send Content-Type: application/json",
    );
    if authenticated {
        add(
            "401",
            "missing_api_key, bad_api_key, key_revoked, key_expired, user_disabled",
        );
        add("403", "forbidden (role), out_of_scope (key scopes), feature_disabled, operator_only, tenant_key_required");
        add("404", "no such object in the caller's tenant");
        add("429", "rate_limited; Retry-After says when to try again");
    }
    add("500", "internal_error");
    add("503", "storage_unavailable");
}

/// Merges `fragments` into one document.
pub fn merge(fragments: Vec<Value>) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    let mut security_schemes = Map::new();
    for f in fragments {
        if let Some(p) = f.get("paths").and_then(Value::as_object) {
            for (path, item) in p {
                let entry = paths
                    .entry(path.clone())
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .expect("path items are objects");
                if let Some(ops) = item.as_object() {
                    for (method, op) in ops {
                        entry.insert(method.clone(), op.clone());
                    }
                }
            }
        }
        let components = f.get("components");
        for (into, key) in [
            (&mut schemas, "schemas"),
            (&mut security_schemes, "securitySchemes"),
        ] {
            if let Some(s) = components
                .and_then(|c| c.get(key))
                .and_then(Value::as_object)
            {
                into.extend(s.clone());
            }
        }
    }
    for item in paths.values_mut() {
        for (method, op) in item.as_object_mut().expect("path items are objects") {
            if !matches!(
                method.as_str(),
                "get" | "put" | "post" | "delete" | "patch" | "head" | "options"
            ) {
                continue;
            }
            let Some(op) = op.as_object_mut() else {
                continue;
            };
            let public = op
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty);
            common_errors(op, !public);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "fleet-sync operator API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every error is {\"error\": {\"code\", \"message\"}} with a stable snake_case code. Authenticate with `Authorization: Bearer KEY`."
        },
        "servers": [{ "url": "/" }],
        "security": [{ "bearer": [] }, { "session": [] }],
        "paths": paths,
        "components": { "schemas": schemas, "securitySchemes": security_schemes }
    })
}

/// The merged document, built once.
pub fn spec() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| merge(fragments()))
}

/// `GET /api/v1/openapi.json`: public, so clients can discover the API.
pub async fn document() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(spec()).expect("the document serialises"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use std::collections::BTreeSet;
    use tower::ServiceExt;

    const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

    /// `/api/v1/…` path literals given to `.route(` anywhere in the crate's source.
    fn routed_paths() -> BTreeSet<String> {
        fn walk(dir: &std::path::Path, out: &mut BTreeSet<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    for (i, _) in text.match_indices(".route(") {
                        let rest = text[i + 7..].trim_start();
                        if let Some(lit) = rest.strip_prefix('"') {
                            let path = &lit[..lit.find('"').unwrap()];
                            if path.starts_with("/api/v1") {
                                out.insert(path.to_owned());
                            }
                        }
                    }
                }
            }
        }
        let mut out = BTreeSet::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut out,
        );
        out
    }

    fn concrete(path: &str) -> String {
        path.split('/')
            .map(|seg| {
                if seg.starts_with('{') {
                    uuid::Uuid::new_v4().to_string()
                } else {
                    seg.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    #[test]
    fn every_operation_names_its_capability_or_is_public() {
        let caps: Vec<&str> = crate::http::auth::Capability::ALL
            .iter()
            .map(|c| c.as_str())
            .chain(["operator"])
            .collect();
        for (path, item) in spec()["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let names: Vec<&str> = match &op["x-capability"] {
                    Value::String(s) => vec![s.as_str()],
                    Value::Array(a) => a.iter().map(|v| v.as_str().unwrap()).collect(),
                    Value::Null => vec![],
                    other => panic!("{method} {path}: x-capability {other}"),
                };
                for n in names {
                    assert!(caps.contains(&n), "{method} {path}: unknown capability {n}");
                }
                assert!(op["responses"].is_object(), "{method} {path}");
            }
        }
    }

    #[test]
    fn every_routed_api_path_is_documented() {
        let documented: BTreeSet<String> = spec()["paths"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let routed = routed_paths();
        assert!(routed.contains("/api/v1/users"), "{routed:?}");
        let missing: Vec<_> = routed.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "routes missing from the OpenAPI document: {missing:?}"
        );
    }

    #[tokio::test]
    async fn every_documented_operation_is_routed_and_no_other_method_is() {
        let dir = tempfile::tempdir().unwrap();
        let storage =
            crate::storage::sqlite::SqliteStorage::open(&dir.path().join("fleet.db")).unwrap();
        let app = crate::router(crate::AppState::new(std::sync::Arc::new(storage)));
        for (path, item) in spec()["paths"].as_object().unwrap() {
            if !path.starts_with("/api/v1") {
                continue;
            }
            let uri = concrete(path);
            for method in METHODS {
                let req = Request::builder()
                    .method(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap())
                    .uri(&uri)
                    .body(Body::empty())
                    .unwrap();
                let res = app.clone().oneshot(req).await.unwrap();
                let status = res.status();
                let body = axum::body::to_bytes(res.into_body(), 1 << 20)
                    .await
                    .unwrap();
                let code = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
                let routed = !(status == StatusCode::METHOD_NOT_ALLOWED
                    || (status == StatusCode::NOT_FOUND && code.as_deref() == Some("not_found")));
                let documented = item.get(method).is_some();
                assert_eq!(
                    routed, documented,
                    "{method} {path}: routed {routed}, documented {documented} ({status} {code:?})"
                );
            }
        }
    }
}
