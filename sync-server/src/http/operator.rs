//! The operator API (`/api/v1/…`): Bearer API key, everything scoped to the key's
//! tenant. Another tenant's ids answer 404, exactly like ids that don't exist.

use super::auth::{Caller, Capability};
use super::error::ApiError;
use super::read_body;
use crate::docs;
use crate::storage::{now_ms, rfc3339_ms, StoredEvent, VehicleSummary};
use crate::AppState;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};
use std::collections::HashMap;
use uuid::Uuid;

pub const MAX_EVENTS_PAGE: u32 = 1000;
const DEFAULT_EVENTS_PAGE: u32 = 100;
const MAX_QUARANTINE_PAGE: u32 = 1000;
const MAX_NOTE_BYTES: usize = 64 << 10;
/// Below this speed a vehicle counts as standing still.
const MOVING_MPS: f64 = 1.0;
/// A vehicle standing still for longer than this is parked rather than idle.
const PARKED_AFTER_MS: i64 = 5 * 60_000;

fn opt_time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |m| Value::String(rfc3339_ms(m)))
}

fn path_id(p: Result<Path<String>, PathRejection>) -> Result<Uuid, ApiError> {
    let Path(raw) = p.map_err(|e| ApiError::bad_request("bad_path", e.body_text()))?;
    Uuid::parse_str(&raw)
        .map_err(|_| ApiError::bad_request("bad_id", format!("{raw:?} is not a UUID")))
}

pub async fn devices(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let tenant = caller.tenant;
    let list = state.storage.list_devices(tenant).await?;
    let out: Vec<Value> = list
        .into_iter()
        .map(|d| {
            json!({
                "id": d.id,
                "name": d.name,
                "enrolled_at": rfc3339_ms(d.enrolled_at_ms),
                "last_seen": opt_time(d.last_seen_ms),
                "last_seq": d.last_seq,
                "event_count": d.event_count,
                "evicted_count": d.evicted_count,
                "quarantined_count": d.quarantined_count,
                "revoked": d.revoked,
            })
        })
        .collect();
    Ok(Json(Value::Array(out)))
}

fn parse_u64(q: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    q.get(name)
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ApiError::bad_request(
                    "bad_query",
                    format!("{name} must be a non-negative integer, got {v:?}"),
                )
            })
        })
        .transpose()
}

fn event_json(e: StoredEvent) -> Value {
    json!({
        "seq": e.seq,
        "kind": e.kind,
        "priority": e.priority,
        "time": rfc3339_ms(e.time_ms),
        "time_ms": e.time_ms,
        "time_source": e.time_source,
        "boot_id": e.boot_id,
        "mono_ms": e.mono_ms,
        "wall_ms": e.wall_ms,
        "hlc": e.hlc,
        "config_version": e.config_version,
        "data": e.data,
    })
}

pub async fn device_events(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let tenant = caller.tenant;
    let device = path_id(id)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
    if let Some(unknown) = q
        .keys()
        .find(|k| !matches!(k.as_str(), "after_seq" | "limit"))
    {
        return Err(ApiError::bad_request(
            "bad_query",
            format!("unknown parameter {unknown:?}; use after_seq and limit"),
        ));
    }
    let after_seq = parse_u64(&q, "after_seq")?.unwrap_or(0);
    let limit = match parse_u64(&q, "limit")? {
        None => DEFAULT_EVENTS_PAGE,
        Some(0) => {
            return Err(ApiError::bad_request(
                "bad_query",
                "limit must be at least 1",
            ))
        }
        Some(n) => n.min(u64::from(MAX_EVENTS_PAGE)) as u32,
    };
    let events = state
        .storage
        .device_events(tenant, device, after_seq, limit)
        .await?
        .ok_or_else(|| ApiError::not_found("device_not_found", "no such device"))?;
    // The next page starts after the last event returned; a short page is the end.
    let next = if events.len() as u32 == limit {
        events.last().map(|e| e.seq)
    } else {
        None
    };
    let events: Vec<Value> = events.into_iter().map(event_json).collect();
    Ok(Json(json!({ "events": events, "next_after_seq": next })))
}

/// driving / idle / parked / offline, from the last report and the last position.
pub fn vehicle_status(v: &VehicleSummary, now_ms: i64, offline_after_ms: i64) -> &'static str {
    match v.last_seen_ms {
        Some(seen) if now_ms - seen <= offline_after_ms => {}
        _ => return "offline",
    }
    match &v.position {
        Some(p)
            if p.speed_mps.unwrap_or(0.0) >= MOVING_MPS
                && now_ms - p.time_ms <= offline_after_ms =>
        {
            "driving"
        }
        Some(p) if now_ms - p.time_ms <= PARKED_AFTER_MS => "idle",
        _ => "parked",
    }
}

pub async fn vehicles(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let tenant = caller.tenant;
    let list = state.storage.list_vehicles(tenant).await?;
    let now = now_ms();
    let out: Vec<Value> = list
        .into_iter()
        .map(|v| {
            let status = vehicle_status(&v, now, state.settings.offline_after_ms);
            json!({
                "id": v.id,
                "name": v.name,
                "last_seen": opt_time(v.last_seen_ms),
                "online": status != "offline",
                "status": status,
                "revoked": v.revoked,
                "position": v.position.map(|p| json!({
                    "lat": p.lat,
                    "lon": p.lon,
                    "speed_mps": p.speed_mps,
                    "heading_deg": p.heading_deg,
                    "time": rfc3339_ms(p.time_ms),
                    "time_source": p.time_source,
                    "seq": p.seq,
                })),
            })
        })
        .collect();
    Ok(Json(Value::Array(out)))
}

pub async fn quarantine(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let tenant = caller.tenant;
    let list = state
        .storage
        .list_quarantine(tenant, MAX_QUARANTINE_PAGE)
        .await?;
    let out: Vec<Value> = list
        .into_iter()
        .map(|q| {
            json!({
                "device_id": q.device_id,
                "seq": q.seq,
                "kind": q.kind,
                "reason_code": q.reason_code,
                "reason": q.reason,
                "raw": q.raw,
                "received_at": rfc3339_ms(q.received_at_ms),
            })
        })
        .collect();
    Ok(Json(json!({ "quarantined": out })))
}

/// The vehicle, if it belongs to this tenant.
async fn own_vehicle(state: &AppState, tenant: Uuid, id: Uuid) -> Result<(), ApiError> {
    match state.storage.device(id).await? {
        Some(d) if d.tenant_id == tenant => Ok(()),
        _ => Err(ApiError::not_found("vehicle_not_found", "no such vehicle")),
    }
}

pub async fn get_note(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let tenant = caller.tenant;
    let vehicle = path_id(id)?;
    own_vehicle(&state, tenant, vehicle).await?;
    let doc = state
        .storage
        .load_doc(tenant, &docs::note_doc_id(vehicle))
        .await?;
    let text = docs::note_text(doc.as_ref().map(|d| d.bytes.as_slice()))?;
    Ok(Json(json!({ "text": text })))
}

pub async fn put_note(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::Custody)?;
    let tenant = caller.tenant;
    let vehicle = path_id(id)?;
    own_vehicle(&state, tenant, vehicle).await?;
    let bytes = read_body(&headers, body, MAX_NOTE_BYTES, "request_too_large").await?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NoteBody {
        text: String,
    }
    let NoteBody { text } = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request("bad_json", format!("expected {{\"text\": string}}: {e}"))
    })?;
    let doc_id = docs::note_doc_id(vehicle);
    let lock = state.docs.lock_for(tenant, &doc_id);
    let _guard = lock.lock().await;
    let doc = state.storage.load_doc(tenant, &doc_id).await?;
    let write = docs::set_note_text(
        doc.as_ref().map(|d| d.bytes.as_slice()),
        doc.as_ref().map_or(0, |d| d.chunks),
        &text,
    )?;
    if write.is_some() {
        state
            .storage
            .save_doc(tenant, &doc_id, write, None, now_ms())
            .await?;
    }
    Ok(Json(json!({ "text": text })))
}
