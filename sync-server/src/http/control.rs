//! The operator side of the device control plane (`/api/v1/…`): enrollment
//! tokens, the device registry and revocation, device groups, versioned desired
//! config with staged rollout, and webhooks. Another tenant's ids answer 404.

use super::auth::{Caller, Capability};
use super::error::ApiError;
use super::{audited_removal, path_uuid, read_body};
use crate::live::{LiveEvent, LiveKind};
use crate::rollout::{self, Decision, Member, Plan, RolloutState};
use crate::storage::control::{DeviceGroup, RolloutRecord, RolloutStep, TokenInfo, Webhook};
use crate::storage::{now_ms, random_secret, rfc3339_ms};
use crate::webhooks;
use crate::AppState;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fleet_protocol::control::DesiredConfig;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

const MAX_BODY: usize = 64 << 10;
const MAX_TOKEN_TTL_S: u64 = 90 * 86_400;
const MAX_TOKEN_USES: u32 = 10_000;
const MAX_GROUP_NAME: usize = 100;
const MAX_WEBHOOK_URL: usize = 2048;
const DELIVERY_PAGE: u32 = 200;

async fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    shape: &str,
) -> Result<T, ApiError> {
    let bytes = read_body(headers, body, limit, "request_too_large").await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request("bad_json", format!("expected {shape}: {e}")))
}

fn created(v: Value) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

fn opt_time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |m| Value::String(rfc3339_ms(m)))
}

// ---- enrollment tokens ----

fn token_json(t: &TokenInfo, now: i64) -> Value {
    json!({
        "id": t.id,
        "uses_left": t.uses_left,
        "uses_total": t.uses_total,
        "expires_at": rfc3339_ms(t.expires_at_ms),
        "expired": now >= t.expires_at_ms,
        "created_at": rfc3339_ms(t.created_at_ms),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTokenBody {
    ttl_s: u64,
    uses: u32,
}

pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Capability::ManageDevices)?;
    let req: NewTokenBody =
        json_body(&headers, body, MAX_BODY, "{\"ttl_s\": int, \"uses\": int}").await?;
    if req.ttl_s == 0 || req.ttl_s > MAX_TOKEN_TTL_S {
        return Err(ApiError::bad_request(
            "bad_ttl",
            format!("ttl_s must be 1 to {MAX_TOKEN_TTL_S}"),
        ));
    }
    if req.uses == 0 || req.uses > MAX_TOKEN_USES {
        return Err(ApiError::bad_request(
            "bad_uses",
            format!("uses must be 1 to {MAX_TOKEN_USES}"),
        ));
    }
    let now = now_ms();
    let issued = state
        .storage
        .issue_token(caller.tenant, Duration::from_secs(req.ttl_s), req.uses, now)
        .await?;
    state
        .audit(
            &caller,
            "enrollment_token.create",
            format!("enrollment_token:{}", issued.info.id),
            json!({ "uses": req.uses, "ttl_s": req.ttl_s }),
        )
        .await?;
    let mut out = token_json(&issued.info, now);
    out["token"] = Value::String(issued.token);
    Ok(created(out))
}

pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ManageDevices)?;
    let now = now_ms();
    let list = state.storage.list_tokens(caller.tenant).await?;
    Ok(Json(json!({
        "tokens": list.iter().map(|t| token_json(t, now)).collect::<Vec<_>>()
    })))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    caller.require(Capability::ManageDevices)?;
    let Path(id) = id.map_err(|e| ApiError::bad_request("bad_path", e.body_text()))?;
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(
            "bad_id",
            "a token id is 64 hex digits",
        ));
    }
    let revoked = state.storage.revoke_token(caller.tenant, &id).await?;
    audited_removal(
        &state,
        &caller,
        revoked,
        ApiError::not_found("token_not_found", "no such enrollment token"),
        "enrollment_token.revoke",
        format!("enrollment_token:{id}"),
    )
    .await
}

// ---- devices ----

pub async fn device(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let id = path_uuid(id)?;
    let d = state
        .storage
        .device_registry(caller.tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("device_not_found", "no such device"))?;
    let now = now_ms();
    let online = d.revoked_at_ms.is_none()
        && d.last_seen_ms
            .is_some_and(|s| now - s <= state.settings.offline_after_ms);
    let status = d.status.as_ref().map(|s| {
        let r = &s.report;
        json!({
            "reported_at": rfc3339_ms(s.reported_at_ms),
            "agent_version": r.agent_version,
            "queue_depth": r.queue_depth,
            "oldest_unsynced": opt_time(r.oldest_unsynced_ms),
            "disk_used_bytes": r.disk_used_bytes,
            "disk_budget_bytes": r.disk_budget_bytes,
            "clock_offset_ms": r.clock_offset_ms,
            "evictions": r.evictions,
            "config_version": r.config_version,
            "config_error": r.config_error,
            "hardware": r.hardware,
        })
    });
    Ok(Json(json!({
        "id": d.id,
        "name": d.name,
        "enrolled_at": rfc3339_ms(d.enrolled_at_ms),
        "revoked": d.revoked_at_ms.is_some(),
        "revoked_at": opt_time(d.revoked_at_ms),
        "last_seen": opt_time(d.last_seen_ms),
        "online": online,
        "agent_version": d.status.as_ref().map(|s| s.report.agent_version.clone()).or(d.enrolled_agent_version),
        "group_id": d.group_id,
        "status": status,
    })))
}

pub async fn revoke_device(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ManageDevices)?;
    let id = path_uuid(id)?;
    match state.storage.device(id).await? {
        Some(d) if d.tenant_id == caller.tenant => {}
        _ => return Err(ApiError::not_found("device_not_found", "no such device")),
    }
    let now = now_ms();
    let d = state.storage.revoke_device(id, now).await?;
    state
        .audit(
            &caller,
            "device.revoke",
            format!("device:{id}"),
            json!({ "name": d.name }),
        )
        .await?;
    tracing::info!(tenant = %caller.tenant, device = %id, "device revoked");
    Ok(Json(json!({ "id": id, "revoked": true })))
}

// ---- device groups ----

fn group_json(g: &DeviceGroup) -> Value {
    json!({
        "id": g.id,
        "name": g.name,
        "created_at": rfc3339_ms(g.created_at_ms),
        "devices": g.devices,
    })
}

fn rollout_json(r: &RolloutRecord) -> Value {
    let (state, stage, percent) = match &r.state {
        RolloutState::Rolling { stage, .. } => (
            "rolling",
            Some(stage + 1),
            r.plan.stages.get(*stage).copied(),
        ),
        other => (other.name(), None, None),
    };
    json!({
        "version": r.version,
        "previous_version": r.previous_version,
        "state": state,
        "stage": stage,
        "stage_percent": percent,
        "stages": r.plan.stages,
        "min_soak_s": r.plan.min_soak_ms / 1000,
        "failure_threshold": r.plan.failure_threshold,
        "silent_after_s": r.plan.silent_after_ms / 1000,
        "reason": r.reason,
        "updated_at": rfc3339_ms(r.updated_at_ms),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGroupBody {
    name: String,
}

pub async fn create_group(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Capability::ManageDevices)?;
    let req: NewGroupBody = json_body(&headers, body, MAX_BODY, "{\"name\": string}").await?;
    let name = req.name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_GROUP_NAME
        || name.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request(
            "bad_group_name",
            format!("name must be 1 to {MAX_GROUP_NAME} printable characters"),
        ));
    }
    let g = state
        .storage
        .create_group(caller.tenant, name, now_ms())
        .await
        .map_err(|e| match e {
            crate::storage::StorageError::Invalid(m) => {
                ApiError::new(StatusCode::CONFLICT, "group_name_taken", m)
            }
            other => other.into(),
        })?;
    state
        .audit(
            &caller,
            "device_group.create",
            format!("device_group:{}", g.id),
            json!({ "name": g.name }),
        )
        .await?;
    Ok(created(group_json(&g)))
}

pub async fn list_groups(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let groups = state.storage.list_groups(caller.tenant).await?;
    Ok(Json(json!({
        "groups": groups.iter().map(group_json).collect::<Vec<_>>()
    })))
}

async fn own_group(state: &AppState, tenant: Uuid, id: Uuid) -> Result<DeviceGroup, ApiError> {
    state
        .storage
        .group(tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("group_not_found", "no such device group"))
}

pub async fn get_group(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let g = own_group(&state, caller.tenant, path_uuid(id)?).await?;
    let rollouts = state.storage.list_rollouts(caller.tenant, g.id).await?;
    let members = members(&state, caller.tenant, g.id).await?;
    let now = now_ms();
    let rollouts: Vec<Value> = rollouts
        .iter()
        .map(|r| {
            let mut v = rollout_json(r);
            if let RolloutState::Rolling { stage, .. } = r.state {
                let h = rollout::stage_health(r.version, &r.plan, stage, &members, now);
                v["health"] = json!({
                    "offered": h.offered, "applied": h.applied, "failed": h.failed,
                    "silent": h.silent, "pending": h.pending,
                });
            }
            v
        })
        .collect();
    let mut out = group_json(&g);
    out["rollouts"] = Value::Array(rollouts);
    Ok(Json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    devices: Vec<Uuid>,
}

pub async fn assign_devices(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ManageDevices)?;
    let group = own_group(&state, caller.tenant, path_uuid(id)?).await?;
    let req: AssignBody = json_body(&headers, body, MAX_BODY, "{\"devices\": [uuid, …]}").await?;
    if req.devices.is_empty() || req.devices.len() > 1000 {
        return Err(ApiError::bad_request(
            "bad_devices",
            "devices must list 1 to 1000 device ids",
        ));
    }
    let g = state
        .storage
        .assign_devices(caller.tenant, group.id, &req.devices)
        .await?;
    state
        .audit(
            &caller,
            "device_group.assign",
            format!("device_group:{}", g.id),
            json!({ "devices": req.devices }),
        )
        .await?;
    Ok(Json(group_json(&g)))
}

// ---- desired config and rollout ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutBody {
    #[serde(default)]
    stages: Option<Vec<u8>>,
    #[serde(default)]
    min_soak_s: Option<i64>,
    #[serde(default)]
    failure_threshold: Option<f64>,
    #[serde(default)]
    silent_after_s: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewConfigBody {
    config: Value,
    #[serde(default)]
    rollout: Option<RolloutBody>,
}

pub async fn create_config(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Capability::ManageConfig)?;
    let group = own_group(&state, caller.tenant, path_uuid(id)?).await?;
    let req: NewConfigBody = json_body(
        &headers,
        body,
        fleet_protocol::control::MAX_CONFIG_BYTES,
        "{\"config\": {…}, \"rollout\": {\"stages\", \"min_soak_s\", \"failure_threshold\", \"silent_after_s\"}}",
    )
    .await?;
    let config_bytes = serde_json::to_vec(&req.config).unwrap_or_default();
    let config = DesiredConfig::from_json(&config_bytes)
        .map_err(|problems| ApiError::bad_request("invalid_config", problems.join("; ")))?;
    let d = Plan::default();
    let r = req.rollout.unwrap_or(RolloutBody {
        stages: None,
        min_soak_s: None,
        failure_threshold: None,
        silent_after_s: None,
    });
    let plan = Plan {
        stages: r.stages.unwrap_or(d.stages),
        min_soak_ms: r
            .min_soak_s
            .map_or(d.min_soak_ms, |s| s.saturating_mul(1000)),
        failure_threshold: r.failure_threshold.unwrap_or(d.failure_threshold),
        silent_after_ms: r
            .silent_after_s
            .map_or(d.silent_after_ms, |s| s.saturating_mul(1000)),
    };
    let problems = plan.problems();
    if !problems.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_rollout",
            problems.join("; "),
        ));
    }
    // Stored in its canonical form: what the agent will parse.
    let document = serde_json::to_value(&config).unwrap_or(Value::Null);
    let rollout = state
        .storage
        .create_config(caller.tenant, group.id, &document, &plan, now_ms())
        .await?;
    state
        .audit(
            &caller,
            "config.create",
            format!("device_group:{}", group.id),
            json!({ "version": rollout.version, "stages": plan.stages }),
        )
        .await?;
    tracing::info!(tenant = %caller.tenant, group = %group.id, version = rollout.version, "config rollout started");
    Ok(created(rollout_json(&rollout)))
}

pub async fn get_config(
    State(state): State<AppState>,
    caller: Caller,
    Path((group, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let group = Uuid::parse_str(&group)
        .map_err(|_| ApiError::bad_request("bad_id", format!("{group:?} is not a UUID")))?;
    let version: u32 = version
        .parse()
        .map_err(|_| ApiError::bad_request("bad_version", "version must be a positive integer"))?;
    own_group(&state, caller.tenant, group).await?;
    let doc = state
        .storage
        .config_document(caller.tenant, group, version)
        .await?
        .ok_or_else(|| ApiError::not_found("config_not_found", "no such config version"))?;
    Ok(Json(json!({ "version": version, "config": doc })))
}

async fn members(state: &AppState, tenant: Uuid, group: Uuid) -> Result<Vec<Member>, ApiError> {
    Ok(state
        .storage
        .group_health(tenant, group)
        .await?
        .into_iter()
        .map(|m| Member {
            device_id: m.device_id,
            last_seen_ms: m.last_seen_ms,
            applied_version: m.applied_version,
            failed_version: m.failed_version,
        })
        .collect())
}

/// Moves the group's rolling config on if its devices say so: the next stage,
/// done, or aborted. Called after each status report and periodically.
pub async fn check_rollout(state: &AppState, tenant: Uuid, group: Uuid) -> Result<(), ApiError> {
    let Some(r) = state.storage.current_rollout(tenant, group).await? else {
        return Ok(());
    };
    if !matches!(r.state, RolloutState::Rolling { .. }) {
        return Ok(());
    }
    let members = members(state, tenant, group).await?;
    let now = now_ms();
    let (to, reason, action) = match rollout::evaluate(r.version, &r.plan, &r.state, &members, now)
    {
        Decision::Stay => return Ok(()),
        Decision::Advance { stage } => (
            RolloutState::Rolling {
                stage,
                stage_started_ms: now,
            },
            None,
            "config.rollout.advance",
        ),
        Decision::Complete => (RolloutState::Completed, None, "config.rollout.complete"),
        Decision::Abort { reason } => (RolloutState::Aborted, Some(reason), "config.rollout.abort"),
    };
    let moved = state
        .storage
        .transition_rollout(
            tenant,
            group,
            &RolloutStep {
                version: r.version,
                from: &r.state,
                to: &to,
                reason: reason.as_deref(),
            },
            now,
        )
        .await?;
    if !moved {
        return Ok(());
    }
    let detail = json!({
        "version": r.version,
        "state": to.name(),
        "stage": match &to { RolloutState::Rolling { stage, .. } => Some(stage + 1), _ => None },
        "previous_version": r.previous_version,
        "reason": reason,
        "automatic": true,
    });
    if let Some(why) = &reason {
        tracing::warn!(%tenant, %group, version = r.version, "config rollout aborted: {why}");
    } else {
        tracing::info!(%tenant, %group, version = r.version, state = to.name(), "config rollout moved on");
    }
    state
        .storage
        .record_audit(crate::storage::access::AuditEntry {
            tenant_id: tenant,
            audit_id: Uuid::new_v4(),
            at_ms: now,
            actor_kind: crate::storage::access::ActorKind::Cli,
            actor_key_id: None,
            actor_user_id: None,
            action: action.to_owned(),
            target: format!("device_group:{group}"),
            detail: detail.clone(),
            request_id: None,
        })
        .await?;
    state.live.publish(
        tenant,
        LiveEvent {
            kind: LiveKind::DeviceStatus,
            vehicle: None,
            data: json!({ "rollout": detail, "group_id": group }),
        },
    );
    Ok(())
}

/// [`check_rollout`] for every group with a rollout in progress.
pub async fn check_rolling_groups(state: &AppState) {
    let groups = match state.storage.rolling_groups().await {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list rolling configs");
            return;
        }
    };
    for (tenant, group) in groups {
        if let Err(e) = check_rollout(state, tenant, group).await {
            tracing::warn!(%tenant, %group, code = e.code, "rollout check failed: {}", e.message);
        }
    }
}

// ---- webhooks ----

fn webhook_json(w: &Webhook) -> Value {
    json!({
        "id": w.id,
        "url": w.url,
        "events": w.kinds,
        "format": w.format,
        "created_at": rfc3339_ms(w.created_at_ms),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewWebhookBody {
    url: String,
    events: Vec<String>,
    #[serde(default)]
    format: Option<String>,
}

pub async fn create_webhook(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Capability::ManageConfig)?;
    let req: NewWebhookBody = json_body(
        &headers,
        body,
        MAX_BODY,
        "{\"url\": string, \"events\": [kind, …], \"format\": string}",
    )
    .await?;
    let url = req.url.trim();
    if url.len() > MAX_WEBHOOK_URL {
        return Err(ApiError::bad_request("bad_url", "url is too long"));
    }
    webhooks::check_url(url, state.settings.allow_private_webhooks)
        .map_err(|e| ApiError::bad_request("bad_url", e.to_string()))?;
    let mut kinds = req.events.clone();
    kinds.sort();
    kinds.dedup();
    if kinds.is_empty() {
        return Err(ApiError::bad_request(
            "bad_events",
            "events must name at least one kind",
        ));
    }
    if let Some(bad) = kinds
        .iter()
        .find(|k| !webhooks::KINDS.contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(
            "bad_events",
            format!(
                "unknown event kind {bad:?}; known: {}",
                webhooks::KINDS.join(", ")
            ),
        ));
    }
    let format = req.format.unwrap_or_else(|| "json".into());
    if !webhooks::format::FORMATS.contains(&format.as_str()) {
        return Err(ApiError::bad_request(
            "bad_format",
            format!(
                "format must be one of {}",
                webhooks::format::FORMATS.join(", ")
            ),
        ));
    }
    let secret = random_secret("whsec_");
    let hook = state
        .storage
        .create_webhook(caller.tenant, url, &kinds, &format, &secret, now_ms())
        .await?;
    state
        .audit(
            &caller,
            "webhook.create",
            format!("webhook:{}", hook.id),
            json!({ "url": hook.url, "events": hook.kinds, "format": hook.format }),
        )
        .await?;
    let mut out = webhook_json(&hook);
    out["secret"] = Value::String(secret);
    Ok(created(out))
}

pub async fn list_webhooks(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ManageConfig)?;
    let hooks = state.storage.list_webhooks(caller.tenant).await?;
    Ok(Json(json!({
        "webhooks": hooks.iter().map(webhook_json).collect::<Vec<_>>()
    })))
}

pub async fn delete_webhook(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    caller.require(Capability::ManageConfig)?;
    let id = path_uuid(id)?;
    let removed = state.storage.delete_webhook(caller.tenant, id).await?;
    audited_removal(
        &state,
        &caller,
        removed,
        ApiError::not_found("webhook_not_found", "no such webhook"),
        "webhook.delete",
        format!("webhook:{id}"),
    )
    .await
}

pub async fn webhook_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ManageConfig)?;
    let id = path_uuid(id)?;
    let list = state
        .storage
        .list_deliveries(caller.tenant, id, DELIVERY_PAGE)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook_not_found", "no such webhook"))?;
    let out: Vec<Value> = list
        .iter()
        .map(|d| {
            json!({
                "id": d.id,
                "event_id": d.event_id,
                "kind": d.kind,
                "state": d.state,
                "attempts": d.attempts,
                "last_status": d.last_status,
                "last_error": d.last_error,
                "created_at": rfc3339_ms(d.created_at_ms),
                "next_attempt_at": (d.state == "pending").then(|| rfc3339_ms(d.next_attempt_at_ms)),
                "delivered_at": opt_time(d.delivered_at_ms),
            })
        })
        .collect();
    Ok(Json(json!({ "deliveries": out })))
}

// The fragment's building blocks, in the shapes `http::openapi` merges.
fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn error_response(description: &str) -> Value {
    json_response(description, schema_ref("Error"))
}

fn json_req(schema: Value) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema } } })
}

fn uuid_param(name: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } })
}

fn nullable(schema: Value) -> Value {
    json!({ "anyOf": [schema, { "type": "null" }] })
}

/// The OpenAPI fragment of the control-plane endpoints.
pub fn openapi() -> Value {
    let uuid = json!({ "type": "string", "format": "uuid" });
    let time = json!({ "type": "string", "format": "date-time" });
    let positive = json!({ "type": "number", "exclusiveMinimum": 0 });
    let op = |id: &str, summary: &str, cap: &str, extra: Value| {
        let mut o = json!({
            "operationId": id,
            "summary": summary,
            "tags": ["control"],
            "x-capability": cap,
        });
        if let (Some(o), Some(e)) = (o.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        o
    };
    let ok = |d: &str, s: &str| json!({ "200": json_response(d, schema_ref(s)) });
    let created = |d: &str, s: &str| json!({ "201": json_response(d, schema_ref(s)), "400": error_response("bad input") });
    let id = || json!([uuid_param("id")]);
    json!({
        "paths": {
            "/api/v1/enrollment-tokens": {
                "get": op("listEnrollmentTokens", "Enrollment tokens with their uses left and expiry (never the secret)", "manage_devices",
                    json!({ "responses": ok("the tokens", "TokenList") })),
                "post": op("createEnrollmentToken", "Issue an enrollment token; the secret is in this answer only", "manage_devices",
                    json!({ "requestBody": json_req(json!({ "type": "object", "required": ["ttl_s", "uses"], "additionalProperties": false,
                        "properties": { "ttl_s": { "type": "integer", "minimum": 1, "maximum": MAX_TOKEN_TTL_S },
                                        "uses": { "type": "integer", "minimum": 1, "maximum": MAX_TOKEN_USES } } })),
                        "responses": created("the token and its secret", "Token") }))
            },
            "/api/v1/enrollment-tokens/{id}": {
                "delete": op("revokeEnrollmentToken", "Revoke a token: it enrolls nobody from now on", "manage_devices",
                    json!({ "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string", "pattern": "^[0-9a-f]{64}$" } }],
                        "responses": { "204": { "description": "revoked" }, "404": error_response("no such token") } }))
            },
            "/api/v1/devices/{id}": {
                "get": op("getDevice", "A device's registry entry and its latest status report", "read_fleet",
                    json!({ "parameters": id(), "responses": { "200": json_response("the device", schema_ref("DeviceRegistry")), "404": error_response("no such device") } }))
            },
            "/api/v1/devices/{id}/revoke": {
                "post": op("revokeDevice", "Revoke a device's credentials; its next request is refused", "manage_devices",
                    json!({ "parameters": id(), "responses": { "200": json_response("revoked", json!({ "type": "object" })), "404": error_response("no such device") } }))
            },
            "/api/v1/device-groups": {
                "get": op("listDeviceGroups", "Device groups and their members", "read_fleet",
                    json!({ "responses": ok("the groups", "DeviceGroupList") })),
                "post": op("createDeviceGroup", "Create a device group", "manage_devices",
                    json!({ "requestBody": json_req(json!({ "type": "object", "required": ["name"], "additionalProperties": false,
                        "properties": { "name": { "type": "string", "minLength": 1, "maxLength": MAX_GROUP_NAME } } })),
                        "responses": { "201": json_response("the group", schema_ref("DeviceGroup")), "400": error_response("bad input"),
                                       "409": error_response("group_name_taken: the tenant has a group of that name") } }))
            },
            "/api/v1/device-groups/{id}": {
                "get": op("getDeviceGroup", "A group with its config rollouts, newest first, and the health of one in progress", "read_fleet",
                    json!({ "parameters": id(), "responses": { "200": json_response("the group", schema_ref("DeviceGroup")), "404": error_response("no such group") } }))
            },
            "/api/v1/device-groups/{id}/devices": {
                "post": op("assignDevices", "Move devices into the group (out of any other)", "manage_devices",
                    json!({ "parameters": id(), "requestBody": json_req(json!({ "type": "object", "required": ["devices"], "additionalProperties": false,
                        "properties": { "devices": { "type": "array", "items": uuid, "minItems": 1, "maxItems": 1000 } } })),
                        "responses": { "200": json_response("the group", schema_ref("DeviceGroup")), "400": error_response("bad input"), "404": error_response("no such group or device") } }))
            },
            "/api/v1/device-groups/{id}/config": {
                "post": op("createConfig", "Store the group's next desired-config version and start its staged rollout", "manage_config",
                    json!({ "parameters": id(), "requestBody": json_req(json!({ "type": "object", "required": ["config"], "additionalProperties": false,
                        "properties": {
                            "config": schema_ref("DesiredConfig"),
                            "rollout": { "type": "object", "additionalProperties": false, "properties": {
                                "stages": { "type": "array", "minItems": 1, "maxItems": 10, "uniqueItems": true, "contains": { "const": 100 }, "items": { "type": "integer", "minimum": 1, "maximum": 100 }, "description": "percent per stage, strictly ascending, ending in 100 (default [10, 100])" },
                                "min_soak_s": { "type": "integer", "minimum": 0, "maximum": 30 * 86_400, "description": "a stage lasts at least this long (default 600)" },
                                "failure_threshold": { "type": "number", "minimum": 0, "maximum": 1, "description": "abort above this share of failed or silent stage devices (default 0.2)" },
                                "silent_after_s": { "type": "integer", "minimum": 1, "maximum": 30 * 86_400, "description": "a stage device not seen this long counts as failed (default 900)" } } } } })),
                        "responses": { "201": json_response("the rollout", schema_ref("Rollout")), "400": error_response("invalid_config or invalid_rollout"), "404": error_response("no such group") } }))
            },
            "/api/v1/device-groups/{id}/config/{version}": {
                "get": op("getConfig", "One stored config version", "read_fleet",
                    json!({ "parameters": [uuid_param("id"), { "name": "version", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 1, "maximum": u32::MAX } }],
                        "responses": { "200": json_response("the config", json!({ "type": "object" })), "404": error_response("no such group or version") } }))
            },
            "/api/v1/webhooks": {
                "get": op("listWebhooks", "The tenant's webhooks (never their secrets)", "manage_config",
                    json!({ "responses": ok("the webhooks", "WebhookList") })),
                "post": op("createWebhook", "Add a webhook; the signing secret is in this answer only", "manage_config",
                    json!({ "requestBody": json_req(json!({ "type": "object", "required": ["url", "events"], "additionalProperties": false,
                        "properties": {
                            "url": { "type": "string", "format": "uri", "maxLength": MAX_WEBHOOK_URL },
                            "events": { "type": "array", "minItems": 1, "items": { "type": "string", "enum": webhooks::KINDS } },
                            "format": { "type": "string", "enum": webhooks::format::FORMATS } } })),
                        "responses": created("the webhook and its secret", "Webhook") }))
            },
            "/api/v1/webhooks/{id}": {
                "delete": op("deleteWebhook", "Remove a webhook and its pending deliveries", "manage_config",
                    json!({ "parameters": id(), "responses": { "204": { "description": "removed" }, "404": error_response("no such webhook") } }))
            },
            "/api/v1/webhooks/{id}/deliveries": {
                "get": op("listWebhookDeliveries", "The webhook's delivery log, newest first", "manage_config",
                    json!({ "parameters": id(), "responses": { "200": json_response("the deliveries", schema_ref("DeliveryList")), "404": error_response("no such webhook") } }))
            }
        },
        "components": { "schemas": {
            "Token": { "type": "object", "required": ["id", "uses_left", "expires_at", "expired"], "properties": {
                "id": { "type": "string" }, "token": { "type": "string" }, "uses_left": { "type": "integer" },
                "uses_total": nullable(json!({ "type": "integer" })), "expires_at": time, "expired": { "type": "boolean" }, "created_at": time } },
            "TokenList": { "type": "object", "required": ["tokens"], "properties": { "tokens": { "type": "array", "items": schema_ref("Token") } } },
            "DeviceRegistry": { "type": "object", "required": ["id", "name", "revoked", "online", "status"], "properties": {
                "id": uuid, "name": { "type": "string" }, "enrolled_at": time, "revoked": { "type": "boolean" },
                "revoked_at": nullable(time.clone()), "last_seen": nullable(time.clone()), "online": { "type": "boolean" },
                "agent_version": nullable(json!({ "type": "string" })), "group_id": nullable(uuid.clone()),
                "status": nullable(json!({ "type": "object", "description": "the latest status report: queue_depth, oldest_unsynced, disk_used_bytes, disk_budget_bytes, clock_offset_ms, evictions, config_version, config_error, hardware {can_up, gps_fix, camera}" })) } },
            "DeviceGroup": { "type": "object", "required": ["id", "name", "devices"], "properties": {
                "id": uuid, "name": { "type": "string" }, "created_at": time, "devices": { "type": "array", "items": uuid },
                "rollouts": { "type": "array", "items": schema_ref("Rollout") } } },
            "DeviceGroupList": { "type": "object", "required": ["groups"], "properties": { "groups": { "type": "array", "items": schema_ref("DeviceGroup") } } },
            "Rollout": { "type": "object", "required": ["version", "previous_version", "state", "stages"], "properties": {
                "version": { "type": "integer" }, "previous_version": { "type": "integer" },
                "state": { "type": "string", "enum": ["rolling", "completed", "aborted", "superseded"] },
                "stage": nullable(json!({ "type": "integer" })), "stage_percent": nullable(json!({ "type": "integer" })),
                "stages": { "type": "array", "items": { "type": "integer" } }, "reason": nullable(json!({ "type": "string" })) } },
            "DesiredConfig": { "type": "object", "additionalProperties": false, "properties": {
                "sampling": { "type": "object", "description": "per signal, the agent's [rules.signals.NAME] shape (on_change: min_period_s at most max_period_s)",
                    "propertyNames": { "enum": fleet_protocol::control::SIGNALS },
                    "additionalProperties": { "oneOf": [
                        { "type": "object", "additionalProperties": false, "required": ["mode"], "properties": { "mode": { "const": "off" } } },
                        { "type": "object", "additionalProperties": false, "required": ["mode", "period_s"], "properties": { "mode": { "const": "interval" }, "period_s": positive } },
                        { "type": "object", "additionalProperties": false, "required": ["mode", "deadband", "min_period_s", "max_period_s"], "properties": {
                            "mode": { "const": "on_change" }, "deadband": { "type": "number", "minimum": 0 }, "min_period_s": positive, "max_period_s": positive } }
                    ] } },
                "thresholds": { "type": "object", "additionalProperties": false, "properties": {
                    "harsh_acceleration_mps2": positive, "harsh_braking_mps2": positive, "harsh_cornering_mps2": positive,
                    "speeding_limit_kmh": { "type": "number", "minimum": 0, "description": "0 turns speeding events off" },
                    "idle_after_s": positive, "fuel_drop_pct": { "type": "number", "exclusiveMinimum": 0, "maximum": 100 },
                    "battery_low_v": positive, "geofence_hysteresis_m": { "type": "number", "minimum": 0 } } },
                "geofences": { "type": "object", "description": "a GeoJSON FeatureCollection of Polygon and MultiPolygon features; each ring closed (it ends where it starts)",
                    "required": ["type", "features"], "properties": {
                        "type": { "const": "FeatureCollection" },
                        "features": { "type": "array", "items": { "type": "object", "required": ["geometry"], "properties": {
                            "geometry": { "type": "object", "required": ["type", "coordinates"], "properties": {
                                "type": { "enum": ["Polygon", "MultiPolygon"] }, "coordinates": { "type": "array", "minItems": 1 } } } } } } } },
                "kiosk": { "type": "object", "additionalProperties": false, "properties": {
                    "require_reservation": { "type": "boolean", "default": false },
                    "allow_offline_checkout": { "type": "boolean", "default": true },
                    "max_checkout_hours": { "type": "integer", "minimum": 1, "maximum": u32::MAX } } } } },
            "Webhook": { "type": "object", "required": ["id", "url", "events", "format"], "properties": {
                "id": uuid, "url": { "type": "string" }, "events": { "type": "array", "items": { "type": "string" } },
                "format": { "type": "string" }, "secret": { "type": "string" }, "created_at": time } },
            "WebhookList": { "type": "object", "required": ["webhooks"], "properties": { "webhooks": { "type": "array", "items": schema_ref("Webhook") } } },
            "DeliveryList": { "type": "object", "required": ["deliveries"], "properties": { "deliveries": { "type": "array", "items": {
                "type": "object", "required": ["id", "event_id", "kind", "state", "attempts"], "properties": {
                    "id": uuid, "event_id": { "type": "string" }, "kind": { "type": "string" },
                    "state": { "type": "string", "enum": ["pending", "delivered", "failed"] }, "attempts": { "type": "integer" },
                    "last_status": nullable(json!({ "type": "integer" })), "last_error": nullable(json!({ "type": "string" })) } } } } }
        } }
    })
}
