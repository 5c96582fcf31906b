//! The operator API (`/api/v1/…`): Bearer API key, everything scoped to the key's
//! tenant. Another tenant's ids answer 404, exactly like ids that don't exist.

use super::auth::{Caller, Capability};
use super::error::ApiError;
use super::error::{ApiJson, ApiPath};
use super::keys::double_option;
use super::{path_uuid, read_body};
use crate::docs;
use crate::storage::access::CostProfile;
use crate::storage::{now_ms, rfc3339_ms, StoredEvent, VehicleSummary};
use crate::AppState;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};
use std::collections::BTreeMap;
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
                "kind": d.kind,
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
    let device = path_uuid(id)?;
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

fn vehicle_json(
    v: VehicleSummary,
    now: i64,
    offline_after_ms: i64,
    costs: Option<&BTreeMap<Uuid, CostProfile>>,
) -> Value {
    let status = vehicle_status(&v, now, offline_after_ms);
    let mut out = json!({
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
    });
    // Cost fields are left out, not nulled, for callers who may not see them.
    if let Some(costs) = costs {
        out["costs"] = costs_json(costs.get(&v.id).cloned().unwrap_or_default());
    }
    out
}

fn cents_json(c: Option<i64>) -> Value {
    c.map_or(Value::Null, |c| json!(c as f64 / 100.0))
}

fn costs_json(c: CostProfile) -> Value {
    json!({
        "purchase_price": cents_json(c.purchase_price_cents),
        "purchase_date": c.purchase_date,
        "fuel_cost": cents_json(c.fuel_cost_cents),
        "maintenance_cost": cents_json(c.maintenance_cost_cents),
        "currency": c.currency,
    })
}

/// The tenant's cost profiles when the caller may see them.
async fn visible_costs(
    state: &AppState,
    caller: &Caller,
) -> Result<Option<BTreeMap<Uuid, CostProfile>>, ApiError> {
    if caller.can(Capability::ViewCosts) && caller.require_feature("cost_tracking").is_ok() {
        Ok(Some(state.storage.vehicle_costs(caller.tenant).await?))
    } else {
        Ok(None)
    }
}

pub async fn vehicles(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let list = state.storage.list_vehicles(caller.tenant).await?;
    let costs = visible_costs(&state, &caller).await?;
    let now = now_ms();
    let out: Vec<Value> = list
        .into_iter()
        .map(|v| vehicle_json(v, now, state.settings.offline_after_ms, costs.as_ref()))
        .collect();
    Ok(Json(Value::Array(out)))
}

async fn one_vehicle(state: &AppState, caller: &Caller, id: Uuid) -> Result<Value, ApiError> {
    let v = state
        .storage
        .list_vehicles(caller.tenant)
        .await?
        .into_iter()
        .find(|v| v.id == id)
        .ok_or_else(|| ApiError::not_found("vehicle_not_found", "no such vehicle"))?;
    let costs = visible_costs(state, caller).await?;
    Ok(vehicle_json(
        v,
        now_ms(),
        state.settings.offline_after_ms,
        costs.as_ref(),
    ))
}

pub async fn vehicle(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    Ok(Json(one_vehicle(&state, &caller, id).await?))
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CostsPatch {
    #[serde(default, deserialize_with = "double_option")]
    purchase_price: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double_option")]
    purchase_date: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    fuel_cost: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double_option")]
    maintenance_cost: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double_option")]
    currency: Option<Option<String>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VehiclePatch {
    costs: CostsPatch,
}

/// Largest amount accepted, in currency units.
const MAX_AMOUNT: f64 = 1e12;

fn cents(field: &str, v: Option<Option<f64>>, old: Option<i64>) -> Result<Option<i64>, ApiError> {
    match v {
        None => Ok(old),
        Some(None) => Ok(None),
        Some(Some(x)) if x.is_finite() && (0.0..=MAX_AMOUNT).contains(&x) => {
            Ok(Some((x * 100.0).round() as i64))
        }
        Some(Some(_)) => Err(ApiError::bad_request(
            "bad_amount",
            format!("{field} must be a number from 0 to {MAX_AMOUNT}"),
        )),
    }
}

pub async fn update_vehicle(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    body: Result<ApiJson<VehiclePatch>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ManageDevices)?;
    caller.require(Capability::ViewCosts)?;
    caller.require_feature("cost_tracking")?;
    let ApiJson(req) = body?;
    let old = state
        .storage
        .vehicle_costs(caller.tenant)
        .await?
        .remove(&id)
        .unwrap_or_default();
    let c = req.costs;
    let purchase_date = match c.purchase_date {
        None => old.purchase_date,
        Some(None) => None,
        Some(Some(d)) => {
            let fmt = time::macros::format_description!("[year]-[month]-[day]");
            time::Date::parse(&d, &fmt).map_err(|_| {
                ApiError::bad_request(
                    "bad_date",
                    "purchase_date must be a date such as 2024-03-01",
                )
            })?;
            Some(d)
        }
    };
    let currency = match c.currency {
        None => old.currency,
        Some(None) => None,
        Some(Some(cur)) if cur.len() == 3 && cur.bytes().all(|b| b.is_ascii_uppercase()) => {
            Some(cur)
        }
        Some(Some(_)) => {
            return Err(ApiError::bad_request(
                "bad_currency",
                "currency must be an ISO 4217 code such as EUR",
            ))
        }
    };
    let costs = CostProfile {
        purchase_price_cents: cents("purchase_price", c.purchase_price, old.purchase_price_cents)?,
        purchase_date,
        fuel_cost_cents: cents("fuel_cost", c.fuel_cost, old.fuel_cost_cents)?,
        maintenance_cost_cents: cents(
            "maintenance_cost",
            c.maintenance_cost,
            old.maintenance_cost_cents,
        )?,
        currency,
    };
    state
        .storage
        .set_vehicle_costs(caller.tenant, id, costs.clone(), now_ms())
        .await
        .map_err(|e| match e {
            crate::storage::StorageError::UnknownDevice => {
                ApiError::not_found("vehicle_not_found", "no such vehicle")
            }
            e => e.into(),
        })?;
    state
        .audit(
            &caller,
            "vehicle.costs",
            format!("vehicle:{id}"),
            costs_json(costs),
        )
        .await?;
    Ok(Json(one_vehicle(&state, &caller, id).await?))
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
    let vehicle = path_uuid(id)?;
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
    let vehicle = path_uuid(id)?;
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

/// The OpenAPI fragment of the fleet views: devices, their events, vehicles
/// (with cost profiles), notes and the quarantine.
pub fn openapi() -> Value {
    use super::openapi::{
        error_response, json_body, json_response, nullable, schema_ref, uuid_param,
    };
    let time = json!({ "type": "string", "format": "date-time" });
    let uuid = json!({ "type": "string", "format": "uuid" });
    let int = json!({ "type": "integer", "minimum": 0 });
    let money = nullable(json!({ "type": "number", "minimum": 0, "maximum": MAX_AMOUNT }));
    let q = |name: &str, description: &str| {
        json!({ "name": name, "in": "query", "required": false, "description": description,
                "schema": { "type": "integer", "minimum": 0, "maximum": i64::MAX } })
    };
    json!({
        "paths": {
            "/api/v1/devices": {
                "get": {
                    "operationId": "listDevices",
                    "summary": "The tenant's devices with their sync counters",
                    "tags": ["fleet"],
                    "x-capability": "read_fleet",
                    "responses": { "200": json_response("the devices", json!({ "type": "array", "items": schema_ref("DeviceSummary") })) }
                }
            },
            "/api/v1/devices/{id}/events": {
                "get": {
                    "operationId": "deviceEvents",
                    "summary": "A device's events by seq, a page at a time",
                    "tags": ["fleet"],
                    "x-capability": "read_fleet",
                    "parameters": [uuid_param("id"), q("after_seq", "events after this seq"),
                        { "name": "limit", "in": "query", "required": false, "description": "page size; above 1000 is 1000",
                          "schema": { "type": "integer", "minimum": 1, "maximum": i64::MAX } }],
                    "responses": {
                        "200": json_response("a page of events", schema_ref("EventPage")),
                        "404": error_response("device_not_found")
                    }
                }
            },
            "/api/v1/vehicles": {
                "get": {
                    "operationId": "listVehicles",
                    "summary": "Vehicles with their last position and status; `costs` only for callers with view_costs",
                    "tags": ["fleet"],
                    "x-capability": "read_fleet",
                    "responses": { "200": json_response("the vehicles", json!({ "type": "array", "items": schema_ref("Vehicle") })) }
                }
            },
            "/api/v1/vehicles/{id}": {
                "get": {
                    "operationId": "getVehicle",
                    "summary": "One vehicle; `costs` only for callers with view_costs",
                    "tags": ["fleet"],
                    "x-capability": "read_fleet",
                    "parameters": [uuid_param("id")],
                    "responses": { "200": json_response("the vehicle", schema_ref("Vehicle")), "404": error_response("vehicle_not_found") }
                },
                "patch": {
                    "operationId": "updateVehicle",
                    "summary": "Set a vehicle's cost profile (a field given as null is cleared)",
                    "tags": ["fleet"],
                    "x-capability": ["manage_devices", "view_costs"],
                    "parameters": [uuid_param("id")],
                    "requestBody": json_body(schema_ref("VehiclePatch")),
                    "responses": {
                        "200": json_response("the vehicle", schema_ref("Vehicle")),
                        "400": error_response("bad_json, bad_amount, bad_date, bad_currency"),
                        "404": error_response("vehicle_not_found")
                    }
                }
            },
            "/api/v1/vehicles/{id}/note": {
                "get": {
                    "operationId": "getNote",
                    "summary": "The vehicle's shared note",
                    "tags": ["fleet"],
                    "x-capability": "read_fleet",
                    "parameters": [uuid_param("id")],
                    "responses": { "200": json_response("the note", schema_ref("Note")), "404": error_response("vehicle_not_found") }
                },
                "put": {
                    "operationId": "putNote",
                    "summary": "Replace the vehicle's note; drivers' offline edits merge with it",
                    "tags": ["fleet"],
                    "x-capability": "custody",
                    "parameters": [uuid_param("id")],
                    "requestBody": json_body(schema_ref("Note")),
                    "responses": { "200": json_response("the note", schema_ref("Note")), "404": error_response("vehicle_not_found") }
                }
            },
            "/api/v1/quarantine": {
                "get": {
                    "operationId": "listQuarantine",
                    "summary": "Events the server set aside, with the reason",
                    "tags": ["fleet"],
                    "x-capability": "read_fleet",
                    "responses": { "200": json_response("the quarantined events", schema_ref("QuarantineList")) }
                }
            }
        },
        "components": { "schemas": {
            "DeviceSummary": {
                "type": "object",
                "required": ["id", "name", "enrolled_at", "last_seen", "last_seq", "event_count", "evicted_count", "quarantined_count", "revoked", "kind"],
                "properties": {
                    "id": uuid, "name": { "type": "string" }, "enrolled_at": time, "last_seen": nullable(time.clone()),
                    "last_seq": int, "event_count": int, "evicted_count": int, "quarantined_count": int, "revoked": { "type": "boolean" },
                    "kind": { "type": "string", "enum": ["vehicle", "kiosk"], "description": "what the device enrolled as; kiosks are not listed as vehicles" }
                }
            },
            "Event": {
                "type": "object",
                "required": ["seq", "kind", "priority", "time", "time_source", "boot_id", "mono_ms", "wall_ms", "hlc", "config_version", "data"],
                "properties": {
                    "seq": int, "kind": { "type": "string" }, "priority": {}, "time": time, "time_ms": { "type": "integer" },
                    "time_source": { "type": "string" }, "boot_id": { "type": "string" }, "mono_ms": int,
                    "wall_ms": { "type": "integer" }, "hlc": int, "config_version": int, "data": {}
                }
            },
            "EventPage": {
                "type": "object",
                "required": ["events", "next_after_seq"],
                "properties": { "events": { "type": "array", "items": schema_ref("Event") }, "next_after_seq": nullable(int.clone()) }
            },
            "Costs": {
                "type": "object",
                "description": "amounts in units of `currency`",
                "required": ["purchase_price", "purchase_date", "fuel_cost", "maintenance_cost", "currency"],
                "properties": {
                    "purchase_price": money, "purchase_date": nullable(json!({ "type": "string", "format": "date" })),
                    "fuel_cost": money, "maintenance_cost": money, "currency": nullable(json!({ "type": "string", "pattern": "^[A-Z]{3}$" }))
                }
            },
            "CostsPatch": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "purchase_price": money, "purchase_date": nullable(json!({ "type": "string", "format": "date" })),
                    "fuel_cost": money, "maintenance_cost": money, "currency": nullable(json!({ "type": "string", "pattern": "^[A-Z]{3}$" }))
                }
            },
            "VehiclePatch": {
                "type": "object", "required": ["costs"], "additionalProperties": false,
                "properties": { "costs": schema_ref("CostsPatch") }
            },
            "Vehicle": {
                "type": "object",
                "required": ["id", "name", "last_seen", "online", "status", "revoked", "position"],
                "properties": {
                    "id": uuid, "name": { "type": "string" }, "last_seen": nullable(time.clone()),
                    "online": { "type": "boolean" },
                    "status": { "type": "string", "enum": ["driving", "idle", "parked", "offline"] },
                    "revoked": { "type": "boolean" },
                    "position": { "anyOf": [{ "type": "null" }, {
                        "type": "object",
                        "required": ["lat", "lon", "time", "time_source", "seq"],
                        "properties": {
                            "lat": { "type": "number" }, "lon": { "type": "number" },
                            "speed_mps": nullable(json!({ "type": "number" })), "heading_deg": nullable(json!({ "type": "number" })),
                            "time": time, "time_source": { "type": "string" }, "seq": int
                        }
                    }] },
                    "costs": schema_ref("Costs")
                }
            },
            "Note": {
                "type": "object", "required": ["text"], "additionalProperties": false,
                "properties": { "text": { "type": "string", "maxLength": 65536 } }
            },
            "QuarantineList": {
                "type": "object",
                "required": ["quarantined"],
                "properties": { "quarantined": { "type": "array", "items": {
                    "type": "object",
                    "required": ["device_id", "seq", "kind", "reason_code", "reason", "raw", "received_at"],
                    "properties": {
                        "device_id": uuid, "seq": int, "kind": nullable(json!({ "type": "string" })),
                        "reason_code": { "type": "string" }, "reason": { "type": "string" }, "raw": {}, "received_at": time
                    }
                } } }
            }
        } }
    })
}
