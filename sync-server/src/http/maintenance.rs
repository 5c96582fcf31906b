//! Maintenance (`/api/v1/maintenance/…`): service schedules by distance,
//! engine hours or time; when each falls due, predicted from each vehicle's own
//! usage rate; services done; work orders whose parts and labor feed the cost
//! report; and the alerts ingest raises (weakening cranking voltage, recurring
//! fault codes, fuel drops while parked), which a background task sends on to
//! the live stream and the tenant's webhooks.

use super::auth::{Caller, Capability};
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use super::openapi::{error_response, json_body, json_response, schema_ref, uuid_param};
use crate::analytics::maintenance::{predict, Interval, Usage};
use crate::analytics::{day_string, local_day};
use crate::live::{LiveEvent, LiveKind};
use crate::storage::analytics::{ServiceRecord, ServiceSchedule, WorkOrder, WORK_ORDER_STATUSES};
use crate::storage::{now_ms, rfc3339_ms, StorageError};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

const MAX_NAME: usize = 200;
const MAX_AMOUNT_CENTS: i64 = 100_000_000_000;
/// Days of rollups a vehicle's usage rate is measured over.
pub const RATE_WINDOW_DAYS: i32 = 30;
/// Days back the newest meter reading is looked for.
const METER_LOOKBACK_DAYS: i32 = 365;

fn bad(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, msg)
}

fn not_found_vehicle(e: StorageError) -> ApiError {
    match e {
        StorageError::UnknownDevice => ApiError::not_found("vehicle_not_found", "no such vehicle"),
        StorageError::Invalid(m) => ApiError::not_found("schedule_not_found", m),
        e => e.into(),
    }
}

fn check_name(what: &str, name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(bad(
            "bad_name",
            format!("{what} must be 1..={MAX_NAME} characters"),
        ));
    }
    Ok(name.to_owned())
}

fn positive(name: &str, v: Option<f64>) -> Result<Option<f64>, ApiError> {
    match v {
        Some(x) if !(x.is_finite() && x > 0.0 && x <= 10_000_000.0) => Err(bad(
            "bad_interval",
            format!("{name} must be a number above 0"),
        )),
        v => Ok(v),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSchedule {
    name: String,
    vehicle_id: Option<Uuid>,
    vehicle_group: Option<String>,
    every_km: Option<f64>,
    every_engine_hours: Option<f64>,
    every_days: Option<i64>,
}

fn schedule_json(s: &ServiceSchedule) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "vehicle_id": s.device_id,
        "vehicle_group": s.vehicle_group,
        "every_km": s.every_km,
        "every_engine_hours": s.every_engine_hours,
        "every_days": s.every_days,
        "created_at_ms": s.created_at_ms,
        "created_at": rfc3339_ms(s.created_at_ms),
    })
}

pub async fn list_schedules(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let list = state.storage.service_schedules(caller.tenant).await?;
    Ok(Json(
        json!({"schedules": list.iter().map(schedule_json).collect::<Vec<_>>()}),
    ))
}

pub async fn create_schedule(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<ApiJson<NewSchedule>, ApiError>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Capability::ManageDevices)?;
    let ApiJson(req) = body?;
    let name = check_name("name", &req.name)?;
    if req.vehicle_id.is_some() && req.vehicle_group.is_some() {
        return Err(bad(
            "bad_target",
            "a schedule names a vehicle_id or a vehicle_group, not both",
        ));
    }
    let group = req
        .vehicle_group
        .map(|g| check_name("vehicle_group", &g))
        .transpose()?;
    let every_km = positive("every_km", req.every_km)?;
    let every_engine_hours = positive("every_engine_hours", req.every_engine_hours)?;
    if req.every_days.is_some_and(|d| !(1..=36_500).contains(&d)) {
        return Err(bad("bad_interval", "every_days must be 1..=36500"));
    }
    if every_km.is_none() && every_engine_hours.is_none() && req.every_days.is_none() {
        return Err(bad(
            "bad_interval",
            "give at least one of every_km, every_engine_hours, every_days",
        ));
    }
    let s = ServiceSchedule {
        id: Uuid::new_v4(),
        name,
        device_id: req.vehicle_id,
        vehicle_group: group,
        every_km,
        every_engine_hours,
        every_days: req.every_days,
        created_at_ms: now_ms(),
    };
    state
        .storage
        .create_service_schedule(caller.tenant, &s)
        .await
        .map_err(not_found_vehicle)?;
    state
        .audit(
            &caller,
            "maintenance.schedule.create",
            format!("schedule:{}", s.id),
            schedule_json(&s),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(schedule_json(&s))))
}

pub async fn delete_schedule(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<ApiPath<Uuid>, ApiError>,
) -> Result<StatusCode, ApiError> {
    caller.require(Capability::ManageDevices)?;
    let ApiPath(id) = id?;
    if !state
        .storage
        .delete_service_schedule(caller.tenant, id)
        .await?
    {
        return Err(ApiError::not_found(
            "schedule_not_found",
            "no such schedule",
        ));
    }
    state
        .audit(
            &caller,
            "maintenance.schedule.delete",
            format!("schedule:{id}"),
            json!({}),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Each schedule × each vehicle it covers, with when it falls due.
pub async fn due(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let s = state.storage.analytics_settings(caller.tenant).await?;
    let today = local_day(now_ms(), s.utc_offset_min);
    let used = s.used_min_ms();
    let recent = state
        .storage
        .period_summary(caller.tenant, today - RATE_WINDOW_DAYS + 1, today, used)
        .await?;
    let meters: BTreeMap<Uuid, _> = state
        .storage
        .period_summary(caller.tenant, today - METER_LOOKBACK_DAYS, today, used)
        .await?
        .into_iter()
        .map(|v| (v.device_id, v))
        .collect();
    let services: BTreeMap<(Uuid, Uuid), ServiceRecord> = state
        .storage
        .service_records(caller.tenant)
        .await?
        .into_iter()
        .map(|r| ((r.schedule_id, r.device_id), r))
        .collect();
    let mut out = Vec::new();
    for sched in state.storage.service_schedules(caller.tenant).await? {
        let interval = Interval {
            every_km: sched.every_km,
            every_engine_hours: sched.every_engine_hours,
            every_days: sched.every_days,
        };
        for v in recent
            .iter()
            .filter(|v| match (&sched.device_id, &sched.vehicle_group) {
                (Some(d), _) => *d == v.device_id,
                (None, Some(g)) => v.group.as_deref() == Some(g.as_str()),
                (None, None) => true,
            })
        {
            let m = meters.get(&v.device_id);
            let last = services.get(&(sched.id, v.device_id));
            let rate = |lo: Option<f64>, hi: Option<f64>| match (lo, hi) {
                (Some(lo), Some(hi)) => Some((hi - lo).max(0.0) / f64::from(RATE_WINDOW_DAYS)),
                _ => None,
            };
            let usage = Usage {
                last_service_day: local_day(
                    last.map_or(sched.created_at_ms, |r| r.done_at_ms),
                    s.utc_offset_min,
                ),
                last_service_km: last.and_then(|r| r.odometer_km),
                last_service_hours: last.and_then(|r| r.engine_hours),
                today,
                odometer_km: m.and_then(|m| m.odometer_max_km),
                engine_hours: m.and_then(|m| m.engine_hours_max),
                km_per_day: rate(v.odometer_min_km, v.odometer_max_km),
                hours_per_day: rate(v.engine_hours_min, v.engine_hours_max),
            };
            let d = predict(&interval, &usage);
            out.push(json!({
                "schedule_id": sched.id,
                "schedule": sched.name,
                "vehicle_id": v.device_id,
                "vehicle": v.name,
                "due_day": d.due_day.map(day_string),
                "due_by": d.due_by,
                "overdue": d.overdue,
                "km_left": d.km_left,
                "engine_hours_left": d.engine_hours_left,
                "days_left": d.days_left,
                "km_per_day": usage.km_per_day.map(crate::analytics::report::round2),
                "engine_hours_per_day": usage.hours_per_day.map(crate::analytics::report::round2),
                "odometer_km": usage.odometer_km,
                "engine_hours": usage.engine_hours,
                "last_service_ms": last.map(|r| r.done_at_ms),
            }));
        }
    }
    Ok(Json(json!({
        "rate_window_days": RATE_WINDOW_DAYS,
        "rule": "for each criterion, left / (the vehicle's own use per day over the rate window); the earliest is the due day",
        "due": out,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewService {
    schedule_id: Uuid,
    vehicle_id: Uuid,
    /// RFC 3339; default now.
    done_at: Option<String>,
    odometer_km: Option<f64>,
    engine_hours: Option<f64>,
    work_order_id: Option<Uuid>,
}

fn parse_time(s: &str) -> Result<i64, ApiError> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| bad("bad_time", "done_at must be RFC 3339"))?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// The vehicle's newest meter readings from its rollups.
async fn current_meters(
    state: &AppState,
    tenant: Uuid,
    device: Uuid,
) -> Result<(Option<f64>, Option<f64>), ApiError> {
    let s = state.storage.analytics_settings(tenant).await?;
    let today = local_day(now_ms(), s.utc_offset_min);
    let m = state
        .storage
        .period_summary(tenant, today - METER_LOOKBACK_DAYS, today, s.used_min_ms())
        .await?
        .into_iter()
        .find(|v| v.device_id == device);
    Ok(m.map_or((None, None), |m| (m.odometer_max_km, m.engine_hours_max)))
}

pub async fn record_service(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<ApiJson<NewService>, ApiError>,
) -> Result<(StatusCode, Json<ServiceRecord>), ApiError> {
    caller.require(Capability::ManageDevices)?;
    let ApiJson(req) = body?;
    let done_at_ms = req
        .done_at
        .as_deref()
        .map(parse_time)
        .transpose()?
        .unwrap_or_else(now_ms);
    for (name, v) in [
        ("odometer_km", req.odometer_km),
        ("engine_hours", req.engine_hours),
    ] {
        if v.is_some_and(|x| !(x.is_finite() && x >= 0.0)) {
            return Err(bad("bad_meter", format!("{name} must be 0 or more")));
        }
    }
    // The work order it closes must be one of this tenant's (storage checks the
    // schedule and vehicle).
    if let Some(id) = req.work_order_id {
        state
            .storage
            .work_order(caller.tenant, id)
            .await?
            .ok_or_else(|| ApiError::not_found("work_order_not_found", "no such work order"))?;
    }
    let (odo, hours) = if req.odometer_km.is_none() || req.engine_hours.is_none() {
        current_meters(&state, caller.tenant, req.vehicle_id).await?
    } else {
        (None, None)
    };
    let r = ServiceRecord {
        schedule_id: req.schedule_id,
        device_id: req.vehicle_id,
        done_at_ms,
        odometer_km: req.odometer_km.or(odo),
        engine_hours: req.engine_hours.or(hours),
        work_order_id: req.work_order_id,
    };
    state
        .storage
        .record_service(caller.tenant, &r)
        .await
        .map_err(not_found_vehicle)?;
    state
        .audit(
            &caller,
            "maintenance.service",
            format!("vehicle:{}", r.device_id),
            serde_json::to_value(&r).unwrap_or_default(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(r)))
}

fn work_order_json(w: &WorkOrder, costs: bool) -> Value {
    let mut v = json!({
        "id": w.id,
        "vehicle_id": w.device_id,
        "schedule_id": w.schedule_id,
        "title": w.title,
        "status": w.status,
        "opened_at_ms": w.opened_at_ms,
        "opened_at": rfc3339_ms(w.opened_at_ms),
        "closed_at_ms": w.closed_at_ms,
        "closed_at": w.closed_at_ms.map(rfc3339_ms),
        "updated_at_ms": w.updated_at_ms,
    });
    if costs {
        v["parts_cents"] = json!(w.parts_cents);
        v["labor_cents"] = json!(w.labor_cents);
        v["total_cents"] = json!(w.parts_cents + w.labor_cents);
    }
    v
}

fn sees_costs(caller: &Caller) -> bool {
    caller.can(Capability::ViewCosts) && caller.require_feature("cost_tracking").is_ok()
}

fn check_status(s: &str) -> Result<String, ApiError> {
    if WORK_ORDER_STATUSES.contains(&s) {
        Ok(s.to_owned())
    } else {
        Err(bad(
            "bad_status",
            format!("status must be one of {}", WORK_ORDER_STATUSES.join(", ")),
        ))
    }
}

fn check_cents(name: &str, v: Option<i64>, caller: &Caller) -> Result<Option<i64>, ApiError> {
    match v {
        None => Ok(None),
        Some(_) if !sees_costs(caller) => Err(ApiError::forbidden(
            "forbidden",
            "parts and labor costs are for callers who may see costs",
        )),
        Some(c) if (0..=MAX_AMOUNT_CENTS).contains(&c) => Ok(Some(c)),
        Some(_) => Err(bad(
            "bad_amount",
            format!("{name} must be 0..={MAX_AMOUNT_CENTS}"),
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWorkOrder {
    vehicle_id: Uuid,
    title: String,
    schedule_id: Option<Uuid>,
    status: Option<String>,
    parts_cents: Option<i64>,
    labor_cents: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkOrderPatch {
    title: Option<String>,
    status: Option<String>,
    parts_cents: Option<i64>,
    labor_cents: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkOrderQuery {
    vehicle: Option<Uuid>,
}

pub async fn list_work_orders(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<ApiQuery<WorkOrderQuery>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let ApiQuery(q) = q?;
    let costs = sees_costs(&caller);
    let list = state.storage.work_orders(caller.tenant, q.vehicle).await?;
    Ok(Json(json!({
        "work_orders": list.iter().map(|w| work_order_json(w, costs)).collect::<Vec<_>>()
    })))
}

pub async fn create_work_order(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<ApiJson<NewWorkOrder>, ApiError>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Capability::ManageDevices)?;
    let ApiJson(req) = body?;
    let title = check_name("title", &req.title)?;
    let status = check_status(req.status.as_deref().unwrap_or("open"))?;
    let parts = check_cents("parts_cents", req.parts_cents, &caller)?.unwrap_or(0);
    let labor = check_cents("labor_cents", req.labor_cents, &caller)?.unwrap_or(0);
    let now = now_ms();
    let closed = matches!(status.as_str(), "completed" | "cancelled").then_some(now);
    let w = WorkOrder {
        id: Uuid::new_v4(),
        device_id: req.vehicle_id,
        schedule_id: req.schedule_id,
        title,
        status,
        parts_cents: parts,
        labor_cents: labor,
        opened_at_ms: now,
        closed_at_ms: closed,
        updated_at_ms: now,
    };
    if let Some(sid) = w.schedule_id {
        let known = state.storage.service_schedules(caller.tenant).await?;
        if !known.iter().any(|s| s.id == sid) {
            return Err(ApiError::not_found(
                "schedule_not_found",
                "no such schedule",
            ));
        }
    }
    state
        .storage
        .create_work_order(caller.tenant, &w)
        .await
        .map_err(not_found_vehicle)?;
    completed(&state, &caller, &w).await?;
    state
        .audit(
            &caller,
            "maintenance.work_order.create",
            format!("work_order:{}", w.id),
            work_order_json(&w, true),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(work_order_json(&w, sees_costs(&caller))),
    ))
}

/// A completed work order for a schedule is that schedule's service, at the
/// vehicle's meters now.
async fn completed(state: &AppState, caller: &Caller, w: &WorkOrder) -> Result<(), ApiError> {
    let (Some(sid), "completed") = (w.schedule_id, w.status.as_str()) else {
        return Ok(());
    };
    let (odo, hours) = current_meters(state, caller.tenant, w.device_id).await?;
    let r = ServiceRecord {
        schedule_id: sid,
        device_id: w.device_id,
        done_at_ms: w.closed_at_ms.unwrap_or_else(now_ms),
        odometer_km: odo,
        engine_hours: hours,
        work_order_id: Some(w.id),
    };
    match state.storage.record_service(caller.tenant, &r).await {
        // The schedule was deleted meanwhile: the order still completes.
        Ok(()) | Err(StorageError::Invalid(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn find_work_order(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<WorkOrder, ApiError> {
    state
        .storage
        .work_order(caller.tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("work_order_not_found", "no such work order"))
}

pub async fn get_work_order(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<ApiPath<Uuid>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let ApiPath(id) = id?;
    let w = find_work_order(&state, &caller, id).await?;
    Ok(Json(work_order_json(&w, sees_costs(&caller))))
}

pub async fn update_work_order(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<ApiPath<Uuid>, ApiError>,
    body: Result<ApiJson<WorkOrderPatch>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ManageDevices)?;
    let ApiPath(id) = id?;
    let ApiJson(req) = body?;
    let title = req
        .title
        .as_deref()
        .map(|t| check_name("title", t))
        .transpose()?;
    let status = req.status.as_deref().map(check_status).transpose()?;
    let parts = check_cents("parts_cents", req.parts_cents, &caller)?;
    let labor = check_cents("labor_cents", req.labor_cents, &caller)?;
    let old = find_work_order(&state, &caller, id).await?;
    let now = now_ms();
    let status = status.unwrap_or(old.status.clone());
    let closing = matches!(status.as_str(), "completed" | "cancelled");
    let w = WorkOrder {
        title: title.unwrap_or(old.title.clone()),
        closed_at_ms: if closing {
            old.closed_at_ms.or(Some(now))
        } else {
            None
        },
        status,
        parts_cents: parts.unwrap_or(old.parts_cents),
        labor_cents: labor.unwrap_or(old.labor_cents),
        updated_at_ms: now,
        ..old.clone()
    };
    let w = state
        .storage
        .update_work_order(caller.tenant, &w)
        .await?
        .ok_or_else(|| ApiError::not_found("work_order_not_found", "no such work order"))?;
    if old.status != "completed" {
        completed(&state, &caller, &w).await?;
    }
    state
        .audit(
            &caller,
            "maintenance.work_order.update",
            format!("work_order:{id}"),
            work_order_json(&w, true),
        )
        .await?;
    Ok(Json(work_order_json(&w, sees_costs(&caller))))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertQuery {
    /// Only unacknowledged alerts (default true).
    open: Option<bool>,
}

fn alert_json(a: &crate::storage::analytics::AlertRecord) -> Value {
    json!({
        "id": a.id,
        "vehicle_id": a.device_id,
        "kind": a.kind,
        "key": a.key,
        "message": a.message,
        "data": a.data,
        "raised_at_ms": a.raised_at_ms,
        "raised_at": rfc3339_ms(a.raised_at_ms),
        "acknowledged_at_ms": a.acknowledged_at_ms,
    })
}

pub async fn list_alerts(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<ApiQuery<AlertQuery>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let ApiQuery(q) = q?;
    let list = state
        .storage
        .maintenance_alerts(caller.tenant, q.open.unwrap_or(true))
        .await?;
    Ok(Json(
        json!({"alerts": list.iter().map(alert_json).collect::<Vec<_>>()}),
    ))
}

pub async fn acknowledge_alert(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<ApiPath<Uuid>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ManageDevices)?;
    let ApiPath(id) = id?;
    let a = state
        .storage
        .acknowledge_alert(caller.tenant, id, now_ms())
        .await?
        .ok_or_else(|| ApiError::not_found("alert_not_found", "no such alert"))?;
    state
        .audit(
            &caller,
            "maintenance.alert.acknowledge",
            format!("alert:{id}"),
            json!({}),
        )
        .await?;
    Ok(Json(alert_json(&a)))
}

/// Alerts handed on per pass.
const ALERT_BATCH: u32 = 100;

/// Sends new alerts to the live stream and the tenant's webhooks. Each alert
/// is claimed by one replica only (`take_unnotified_alerts`).
pub async fn notify_alerts(state: &AppState) -> Result<usize, StorageError> {
    let taken = state
        .storage
        .take_unnotified_alerts(now_ms(), ALERT_BATCH)
        .await?;
    for (tenant, a) in &taken {
        let data = alert_json(a);
        state.live.publish(
            *tenant,
            LiveEvent {
                kind: LiveKind::Maintenance,
                vehicle: Some(a.device_id),
                data: data.clone(),
            },
        );
        let name = state
            .storage
            .device(a.device_id)
            .await
            .ok()
            .flatten()
            .map(|d| d.name)
            .unwrap_or_default();
        let event_id = format!("alert:{}", a.id);
        let body = crate::webhooks::payload(
            &event_id,
            crate::webhooks::KIND_MAINTENANCE_ALERT,
            &a.kind,
            *tenant,
            Some((a.device_id, &name)),
            a.raised_at_ms,
            data,
        );
        if let Err(e) = crate::webhooks::enqueue(
            state,
            *tenant,
            crate::webhooks::KIND_MAINTENANCE_ALERT,
            &event_id,
            &body,
        )
        .await
        {
            tracing::error!(%tenant, alert = %a.id, error = %e, "maintenance alert webhook could not be queued");
        }
    }
    Ok(taken.len())
}

/// Runs [`notify_alerts`] every `every` until the returned sender is dropped.
pub fn spawn_alert_notifier(state: AppState, every: Duration) -> watch::Sender<bool> {
    let (tx, mut rx) = watch::channel(false);
    tokio::spawn(async move {
        loop {
            if let Err(e) = notify_alerts(&state).await {
                tracing::warn!(error = %e, "maintenance alerts could not be sent on");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                changed = rx.changed() => {
                    if changed.is_err() || *rx.borrow() {
                        return;
                    }
                }
            }
        }
    });
    tx
}

pub fn openapi() -> Value {
    let id = uuid_param("id");
    let name = super::openapi::trimmed_text(MAX_NAME);
    let cents = json!({"type": "integer", "minimum": 0, "maximum": MAX_AMOUNT_CENTS});
    let interval = json!({"type": "number", "exclusiveMinimum": 0, "maximum": 10_000_000});
    json!({
        "paths": {
            "/api/v1/maintenance/schedules": {
                "get": {
                    "operationId": "listServiceSchedules",
                    "summary": "Service schedules",
                    "x-capability": "read_fleet",
                    "tags": ["maintenance"],
                    "responses": {"200": json_response("schedules", json!({"type": "object", "properties": {"schedules": {"type": "array", "items": schema_ref("ServiceSchedule")}}}))}
                },
                "post": {
                    "operationId": "createServiceSchedule",
                    "summary": "A service every so many km, engine hours or days, for one vehicle, a vehicle group or every vehicle",
                    "x-capability": "manage_devices",
                    "tags": ["maintenance"],
                    "requestBody": json_body(schema_ref("NewServiceSchedule")),
                    "responses": {
                        "201": json_response("created", schema_ref("ServiceSchedule")),
                        "400": error_response("bad_json, bad_name, bad_target, bad_interval"),
                        "404": error_response("vehicle_not_found")
                    }
                }
            },
            "/api/v1/maintenance/schedules/{id}": {
                "delete": {
                    "operationId": "deleteServiceSchedule",
                    "summary": "Delete a schedule and its service records",
                    "x-capability": "manage_devices",
                    "tags": ["maintenance"],
                    "parameters": [id],
                    "responses": {"204": {"description": "deleted"}, "404": error_response("schedule_not_found")}
                }
            },
            "/api/v1/maintenance/due": {
                "get": {
                    "operationId": "maintenanceDue",
                    "summary": "When each schedule falls due on each vehicle, predicted from its own usage rate",
                    "x-capability": "read_fleet",
                    "tags": ["maintenance"],
                    "responses": {"200": json_response("due", json!({"type": "object", "properties": {"due": {"type": "array", "items": schema_ref("ServiceDue")}}}))}
                }
            },
            "/api/v1/maintenance/services": {
                "post": {
                    "operationId": "recordService",
                    "summary": "Record that a schedule was served on a vehicle (meters default to its newest readings)",
                    "x-capability": "manage_devices",
                    "tags": ["maintenance"],
                    "requestBody": json_body(json!({"type": "object", "required": ["schedule_id", "vehicle_id"], "properties": {
                        "schedule_id": {"type": "string", "format": "uuid"}, "vehicle_id": {"type": "string", "format": "uuid"},
                        "done_at": {"type": "string", "format": "date-time"}, "odometer_km": {"type": "number"},
                        "engine_hours": {"type": "number"}, "work_order_id": {"type": "string", "format": "uuid"}
                    }})),
                    "responses": {
                        "201": json_response("recorded", json!({"type": "object"})),
                        "400": error_response("bad_json, bad_time, bad_meter"),
                        "404": error_response("vehicle_not_found, schedule_not_found, work_order_not_found")
                    }
                }
            },
            "/api/v1/maintenance/work-orders": {
                "get": {
                    "operationId": "listWorkOrders",
                    "summary": "Work orders, newest first; parts and labor only for callers who may see costs",
                    "x-capability": "read_fleet",
                    "tags": ["maintenance"],
                    "parameters": [{"name": "vehicle", "in": "query", "schema": {"type": "string", "format": "uuid"}}],
                    "responses": {"200": json_response("work orders", json!({"type": "object", "properties": {"work_orders": {"type": "array", "items": schema_ref("WorkOrder")}}})), "400": error_response("bad_query")}
                },
                "post": {
                    "operationId": "createWorkOrder",
                    "summary": "Open a work order; completed with a schedule_id, it records that schedule's service",
                    "x-capability": "manage_devices",
                    "tags": ["maintenance"],
                    "requestBody": json_body(json!({"type": "object", "required": ["vehicle_id", "title"], "additionalProperties": false, "properties": {
                        "vehicle_id": {"type": "string", "format": "uuid"}, "title": name,
                        "schedule_id": {"type": "string", "format": "uuid"},
                        "status": {"type": "string", "enum": WORK_ORDER_STATUSES},
                        "parts_cents": cents, "labor_cents": cents
                    }})),
                    "responses": {
                        "201": json_response("created", schema_ref("WorkOrder")),
                        "400": error_response("bad_json, bad_name, bad_status, bad_amount"),
                        "403": error_response("forbidden: costs given by a caller who may not see costs"),
                        "404": error_response("vehicle_not_found, schedule_not_found")
                    }
                }
            },
            "/api/v1/maintenance/work-orders/{id}": {
                "get": {
                    "operationId": "getWorkOrder",
                    "summary": "One work order",
                    "x-capability": "read_fleet",
                    "tags": ["maintenance"],
                    "parameters": [id],
                    "responses": {"200": json_response("work order", schema_ref("WorkOrder")), "404": error_response("work_order_not_found")}
                },
                "patch": {
                    "operationId": "updateWorkOrder",
                    "summary": "Change a work order's title, status, parts or labor",
                    "x-capability": "manage_devices",
                    "tags": ["maintenance"],
                    "parameters": [id],
                    "requestBody": json_body(json!({"type": "object", "additionalProperties": false, "properties": {
                        "title": name, "status": {"type": "string", "enum": WORK_ORDER_STATUSES},
                        "parts_cents": cents, "labor_cents": cents
                    }})),
                    "responses": {
                        "200": json_response("updated", schema_ref("WorkOrder")),
                        "400": error_response("bad_json, bad_name, bad_status, bad_amount"),
                        "404": error_response("work_order_not_found")
                    }
                }
            },
            "/api/v1/maintenance/alerts": {
                "get": {
                    "operationId": "listMaintenanceAlerts",
                    "summary": "Maintenance alerts: battery_weakening, recurring_fault, fuel_drop_parked",
                    "x-capability": "read_fleet",
                    "tags": ["maintenance"],
                    "parameters": [{"name": "open", "in": "query", "schema": {"type": "boolean"}, "description": "only unacknowledged (default true)"}],
                    "responses": {"200": json_response("alerts", json!({"type": "object", "properties": {"alerts": {"type": "array", "items": schema_ref("MaintenanceAlert")}}})), "400": error_response("bad_query")}
                }
            },
            "/api/v1/maintenance/alerts/{id}/acknowledge": {
                "post": {
                    "operationId": "acknowledgeMaintenanceAlert",
                    "summary": "Acknowledge an alert; the same condition may raise a new one afterwards",
                    "x-capability": "manage_devices",
                    "tags": ["maintenance"],
                    "parameters": [id],
                    "responses": {"200": json_response("acknowledged", schema_ref("MaintenanceAlert")), "404": error_response("alert_not_found")}
                }
            }
        },
        "components": {"schemas": {
            "NewServiceSchedule": {"type": "object", "required": ["name"], "additionalProperties": false, "properties": {
                "name": name, "vehicle_id": {"type": "string", "format": "uuid"},
                "vehicle_group": name, "every_km": interval, "every_engine_hours": interval,
                "every_days": {"type": "integer", "minimum": 1, "maximum": 36_500}
            },
            "description": "at least one of every_km, every_engine_hours and every_days; a vehicle_id or a vehicle_group, not both",
            "anyOf": [{"required": ["every_km"]}, {"required": ["every_engine_hours"]}, {"required": ["every_days"]}],
            "not": {"required": ["vehicle_id", "vehicle_group"]}},
            "ServiceSchedule": {"type": "object", "properties": {
                "id": {"type": "string", "format": "uuid"}, "name": {"type": "string"},
                "vehicle_id": {"type": ["string", "null"], "format": "uuid"}, "vehicle_group": {"type": ["string", "null"]},
                "every_km": {"type": ["number", "null"]}, "every_engine_hours": {"type": ["number", "null"]},
                "every_days": {"type": ["integer", "null"]}, "created_at_ms": {"type": "integer"}
            }},
            "ServiceDue": {"type": "object", "properties": {
                "schedule_id": {"type": "string", "format": "uuid"}, "vehicle_id": {"type": "string", "format": "uuid"},
                "due_day": {"type": ["string", "null"], "format": "date"},
                "due_by": {"type": ["string", "null"], "enum": ["distance", "engine_hours", "time", null]},
                "overdue": {"type": "boolean"}, "km_left": {"type": ["number", "null"]},
                "engine_hours_left": {"type": ["number", "null"]}, "days_left": {"type": ["integer", "null"]},
                "km_per_day": {"type": ["number", "null"]}
            }},
            "WorkOrder": {"type": "object", "properties": {
                "id": {"type": "string", "format": "uuid"}, "vehicle_id": {"type": "string", "format": "uuid"},
                "schedule_id": {"type": ["string", "null"], "format": "uuid"}, "title": {"type": "string"},
                "status": {"type": "string", "enum": WORK_ORDER_STATUSES},
                "parts_cents": {"type": "integer"}, "labor_cents": {"type": "integer"}, "total_cents": {"type": "integer"},
                "opened_at_ms": {"type": "integer"}, "closed_at_ms": {"type": ["integer", "null"]}
            }},
            "MaintenanceAlert": {"type": "object", "properties": {
                "id": {"type": "string", "format": "uuid"}, "vehicle_id": {"type": "string", "format": "uuid"},
                "kind": {"type": "string", "enum": ["battery_weakening", "recurring_fault", "fuel_drop_parked"]},
                "key": {"type": "string"}, "message": {"type": "string"}, "data": {"type": "object"},
                "raised_at_ms": {"type": "integer"}, "acknowledged_at_ms": {"type": ["integer", "null"]}
            }}
        }}
    })
}
