//! The tenant's audit log (`GET /api/v1/audit`): who did what and when, newest
//! first, filtered and paged.

use super::auth::{Caller, Capability};
use super::error::{ApiError, ApiQuery};
use super::keys::parse_time;
use crate::storage::access::{AuditEntry, AuditQuery};
use crate::storage::rfc3339_ms;
use crate::AppState;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

pub const MAX_PAGE: u32 = 500;
const DEFAULT_PAGE: u32 = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    action: Option<String>,
    actor_key_id: Option<Uuid>,
    actor_user_id: Option<Uuid>,
    target: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// `next_before` of the previous page.
    before: Option<String>,
    limit: Option<u32>,
}

fn entry_json(e: &AuditEntry) -> Value {
    json!({
        "id": e.audit_id,
        "at": rfc3339_ms(e.at_ms),
        "actor": { "kind": e.actor_kind, "key_id": e.actor_key_id, "user_id": e.actor_user_id },
        "action": e.action,
        "target": e.target,
        "detail": e.detail,
        "request_id": e.request_id,
    })
}

fn cursor(e: &AuditEntry) -> String {
    format!("{}_{}", e.at_ms, e.audit_id.simple())
}

fn parse_cursor(s: &str) -> Result<(i64, Uuid), ApiError> {
    s.split_once('_')
        .and_then(|(at, id)| Some((at.parse().ok()?, Uuid::parse_str(id).ok()?)))
        .ok_or_else(|| {
            ApiError::bad_request(
                "bad_query",
                "before must be a next_before from an earlier page",
            )
        })
}

pub async fn query(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(f): ApiQuery<Filters>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadAudit)?;
    let limit = match f.limit {
        None => DEFAULT_PAGE,
        Some(0) => {
            return Err(ApiError::bad_request(
                "bad_query",
                "limit must be at least 1",
            ))
        }
        Some(n) => n.min(MAX_PAGE),
    };
    let q = AuditQuery {
        action: f.action,
        actor_key_id: f.actor_key_id,
        actor_user_id: f.actor_user_id,
        target: f.target,
        since_ms: f
            .since
            .as_deref()
            .map(|s| parse_time("since", s))
            .transpose()?,
        until_ms: f
            .until
            .as_deref()
            .map(|s| parse_time("until", s))
            .transpose()?,
        before: f.before.as_deref().map(parse_cursor).transpose()?,
        limit,
    };
    let entries = state.storage.query_audit(caller.tenant, q).await?;
    let next = (entries.len() as u32 == limit)
        .then(|| entries.last().map(cursor))
        .flatten();
    let out: Vec<Value> = entries.iter().map(entry_json).collect();
    Ok(Json(json!({ "entries": out, "next_before": next })))
}

/// The OpenAPI fragment of `/api/v1/audit`.
pub fn openapi() -> Value {
    use super::openapi::{json_response, nullable, schema_ref};
    let q = |name: &str, schema: Value, description: &str| json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": description });
    let uuid = json!({ "type": "string", "format": "uuid" });
    json!({
        "paths": {
            "/api/v1/audit": {
                "get": {
                    "operationId": "queryAudit",
                    "summary": "The audit log, newest first: approvals, configuration, credential and user changes, exports",
                    "tags": ["access"],
                    "x-capability": "read_audit",
                    "parameters": [
                        q("action", json!({ "type": "string" }), "e.g. user.create, key.revoke, tenant.settings"),
                        q("actor_key_id", uuid.clone(), "entries made with this key"),
                        q("actor_user_id", uuid.clone(), "entries made by this user"),
                        q("target", json!({ "type": "string" }), "e.g. user:UUID"),
                        q("since", json!({ "type": "string", "format": "date-time" }), "at or after"),
                        q("until", json!({ "type": "string", "format": "date-time" }), "before"),
                        q("before", json!({ "type": "string" }), "next_before of the previous page"),
                        q("limit", json!({ "type": "integer", "minimum": 1, "maximum": 4294967295u64 }), "at most 500 are returned")
                    ],
                    "responses": { "200": json_response("a page of entries", schema_ref("AuditPage")) }
                }
            }
        },
        "components": { "schemas": {
            "AuditEntry": {
                "type": "object",
                "required": ["id", "at", "actor", "action", "target", "detail", "request_id"],
                "properties": {
                    "id": uuid,
                    "at": { "type": "string", "format": "date-time" },
                    "actor": {
                        "type": "object",
                        "required": ["kind", "key_id", "user_id"],
                        "properties": {
                            "kind": { "type": "string", "enum": ["key", "operator", "cli"] },
                            "key_id": nullable(uuid.clone()),
                            "user_id": nullable(uuid.clone())
                        }
                    },
                    "action": { "type": "string" },
                    "target": { "type": "string" },
                    "detail": {},
                    "request_id": nullable(json!({ "type": "string" }))
                }
            },
            "AuditPage": {
                "type": "object",
                "required": ["entries", "next_before"],
                "properties": {
                    "entries": { "type": "array", "items": schema_ref("AuditEntry") },
                    "next_before": nullable(json!({ "type": "string" }))
                }
            }
        } }
    })
}
