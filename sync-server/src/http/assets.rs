//! The asset catalog (`/api/v1/assets…`): vehicles, trailers, equipment and
//! keys; CSV import and export; QR codes and PDF label sheets; driver badges;
//! office check-out and check-in with `Idempotency-Key`; the custody board; and
//! one vehicle's overview page.
//!
//! An asset's id is the id its QR label carries: its label is issued through the
//! kiosk label code, so a kiosk accepts it offline.

use super::auth::{Caller, Capability};
use super::error::ApiError;
use super::kiosk::{issue_label, IssueLabel};
use super::{path_uuid, read_body};
use crate::labels::qr::QrMatrix;
use crate::labels::sheet::{self, Paper, SheetLabel};
use crate::storage::assets::{
    Asset, AssetFields, AssetFilter, AssetKind, AssetUpsert, RecordedRequest,
};
use crate::storage::kiosk::LabelRecord;
use crate::storage::reservations::ReservationFilter;
use crate::storage::{now_ms, rfc3339_ms, sha256, Storage, StorageError};
use crate::AppState;
use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ObjType, ReadDoc, ROOT};
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fleet_protocol::custody::{
    custody_doc_id, CustodyAction, CustodyOp, CUSTODY_BASE_ACTOR, FIELD_AT_MS, FIELD_BADGE,
    FIELD_EVENT_ID, FIELD_KIOSK, FIELD_OP, OPS_KEY,
};
use fleet_protocol::label::LabelKind;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use uuid::Uuid;

const MAX_BODY: usize = 16 << 10;
/// A CSV import of some thousands of assets.
const MAX_CSV: usize = 4 << 20;
const MAX_TEXT: usize = 200;
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;
/// Custody ops written from the office carry this in place of a kiosk id.
pub const OFFICE_KIOSK: &str = "office";
const MAX_IDEMPOTENCY_KEY: usize = 200;

fn bad(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, msg)
}

fn conflict(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, code, msg)
}

fn not_found() -> ApiError {
    ApiError::not_found("asset_not_found", "no such asset")
}

/// The JSON shape of an asset; the purchase price only for callers who may see costs.
pub fn asset_json(a: &Asset, costs: bool) -> Value {
    let mut v = json!({
        "id": a.id,
        "kind": a.kind,
        "name": a.name,
        "make": a.make,
        "model": a.model,
        "vin": a.vin,
        "plate": a.plate,
        "vehicle_group": a.vehicle_group,
        "home_yard": a.home_yard,
        "department": a.department,
        "cost_center": a.cost_center,
        "purchase_date": a.purchase_date,
        "device_id": a.device_id,
        "odometer_km": a.odometer_km,
        "engine_hours": a.engine_hours,
        "meter_at_ms": a.meter_at_ms,
        "created_at_ms": a.created_at_ms,
        "created_at": rfc3339_ms(a.created_at_ms),
        "updated_at_ms": a.updated_at_ms,
        "retired_at_ms": a.retired_at_ms,
        "retired_at": a.retired_at_ms.map(rfc3339_ms),
    });
    if costs {
        v["purchase_price_cents"] = json!(a.purchase_price_cents);
    }
    v
}

fn clean_text(v: Option<String>, field: &str) -> Result<Option<String>, ApiError> {
    match v.map(|s| s.trim().to_owned()) {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) if s.chars().count() > MAX_TEXT || s.chars().any(char::is_control) => Err(bad(
            "bad_asset",
            format!("{field} must be at most {MAX_TEXT} printable characters"),
        )),
        Some(s) => Ok(Some(s)),
    }
}

fn valid_date(s: &str) -> bool {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt).is_ok()
}

/// Checks and normalises user-set fields; the message names the field.
pub fn check_fields(mut f: AssetFields) -> Result<AssetFields, String> {
    let text = |v: Option<String>, field: &str| clean_text(v, field).map_err(|e| e.message.clone());
    f.name = text(Some(f.name), "name")?.ok_or("name is required")?;
    f.make = text(f.make, "make")?;
    f.model = text(f.model, "model")?;
    f.vin = text(f.vin, "vin")?.map(|v| v.to_uppercase());
    if let Some(vin) = &f.vin {
        if vin.len() > 32 || !vin.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err("vin must be letters and digits (at most 32)".into());
        }
    }
    f.plate = text(f.plate, "plate")?;
    f.vehicle_group = text(f.vehicle_group, "vehicle_group")?;
    f.home_yard = text(f.home_yard, "home_yard")?;
    f.department = text(f.department, "department")?;
    f.cost_center = text(f.cost_center, "cost_center")?;
    f.purchase_date = text(f.purchase_date, "purchase_date")?;
    if let Some(d) = &f.purchase_date {
        if !valid_date(d) {
            return Err("purchase_date must be YYYY-MM-DD".into());
        }
    }
    if f.purchase_price_cents.is_some_and(|p| p < 0) {
        return Err("purchase_price_cents must not be negative".into());
    }
    for (v, field) in [
        (f.odometer_km, "odometer_km"),
        (f.engine_hours, "engine_hours"),
    ] {
        if v.is_some_and(|v| !v.is_finite() || !(0.0..=1e8).contains(&v)) {
            return Err(format!("{field} must be 0 to 100000000"));
        }
    }
    if f.device_id.is_some() && f.kind.unwrap_or(AssetKind::Vehicle) != AssetKind::Vehicle {
        return Err("only a vehicle has a gateway (device_id)".into());
    }
    Ok(f)
}

fn storage_error(e: StorageError) -> ApiError {
    match e {
        StorageError::Conflict(m) => conflict("asset_conflict", m),
        other => other.into(),
    }
}

async fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
) -> Result<(T, Vec<u8>), ApiError> {
    let bytes = read_body(headers, body, MAX_BODY, "request_too_large").await?;
    let v = serde_json::from_slice(&bytes)
        .map_err(|e| bad("bad_json", format!("request body is not valid: {e}")))?;
    Ok((v, bytes))
}

/// A gateway named on an asset must be one of the tenant's devices.
async fn check_device(state: &AppState, tenant: Uuid, f: &AssetFields) -> Result<(), ApiError> {
    if let Some(d) = f.device_id {
        match state.storage.device(d).await? {
            Some(dev) if dev.tenant_id == tenant => {}
            _ => {
                return Err(bad(
                    "unknown_device",
                    "device_id is not a device of this tenant",
                ))
            }
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAsset {
    pub id: Option<Uuid>,
    #[serde(flatten)]
    pub fields: AssetFields,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub kind: Option<String>,
    pub group: Option<String>,
    pub yard: Option<String>,
    pub q: Option<String>,
    pub include_retired: Option<bool>,
    pub after: Option<Uuid>,
    pub limit: Option<u32>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let Query(q) = query.map_err(|e| bad("bad_query", e.body_text()))?;
    let kind = match q.kind.as_deref() {
        None => None,
        Some(k) => Some(AssetKind::parse(k).ok_or_else(|| {
            bad(
                "bad_query",
                "kind must be vehicle, trailer, equipment or key",
            )
        })?),
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(bad("bad_query", format!("limit must be 1 to {MAX_LIMIT}")));
    }
    let after = match q.after {
        None => None,
        Some(id) => {
            let a = state
                .storage
                .asset(caller.tenant, id)
                .await?
                .ok_or_else(|| bad("bad_query", "after names no asset"))?;
            Some((a.name, a.id))
        }
    };
    let filter = AssetFilter {
        kind,
        vehicle_group: q.group,
        home_yard: q.yard,
        q: q.q,
        include_retired: q.include_retired.unwrap_or(false),
        after,
        limit,
    };
    let assets = state.storage.list_assets(caller.tenant, &filter).await?;
    let costs = caller.can(Capability::ViewCosts);
    let next = (assets.len() == limit as usize).then(|| assets.last().map(|a| a.id));
    Ok(Json(json!({
        "assets": assets.iter().map(|a| asset_json(a, costs)).collect::<Vec<_>>(),
        "next_after": next.flatten(),
    })))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Capability::ManageDevices)?;
    let (req, _): (NewAsset, _) = json_body(&headers, body).await?;
    if req.fields.purchase_price_cents.is_some() {
        caller.require(Capability::ViewCosts)?;
    }
    let fields = check_fields(req.fields).map_err(|m| bad("bad_asset", m))?;
    check_device(&state, caller.tenant, &fields).await?;
    let asset = Asset::new(req.id.unwrap_or_else(Uuid::new_v4), fields, now_ms());
    state
        .storage
        .create_asset(caller.tenant, &asset)
        .await
        .map_err(storage_error)?;
    state
        .audit(
            &caller,
            "asset.create",
            format!("asset:{}", asset.id),
            json!({ "kind": asset.kind, "name": asset.name }),
        )
        .await?;
    let costs = caller.can(Capability::ViewCosts);
    Ok((StatusCode::CREATED, Json(asset_json(&asset, costs))).into_response())
}

async fn load(state: &AppState, tenant: Uuid, id: Uuid) -> Result<Asset, ApiError> {
    state.storage.asset(tenant, id).await?.ok_or_else(not_found)
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let a = load(&state, caller.tenant, path_uuid(id)?).await?;
    Ok(Json(asset_json(&a, caller.can(Capability::ViewCosts))))
}

/// Replaces every user-set field. A caller who may not see costs keeps the
/// stored price and may not send one.
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ManageDevices)?;
    let id = path_uuid(id)?;
    let (mut fields, _): (AssetFields, _) = json_body(&headers, body).await?;
    let costs = caller.can(Capability::ViewCosts);
    if fields.purchase_price_cents.is_some() && !costs {
        caller.require(Capability::ViewCosts)?;
    }
    let old = load(&state, caller.tenant, id).await?;
    if old.retired_at_ms.is_some() {
        return Err(conflict("asset_retired", "a retired asset is not changed"));
    }
    if !costs {
        fields.purchase_price_cents = old.purchase_price_cents;
    }
    let fields = check_fields(fields).map_err(|m| bad("bad_asset", m))?;
    check_device(&state, caller.tenant, &fields).await?;
    let next = old.with_fields(fields, now_ms());
    let stored = state
        .storage
        .update_asset(caller.tenant, &next)
        .await
        .map_err(storage_error)?
        .ok_or_else(not_found)?;
    state
        .audit(
            &caller,
            "asset.update",
            format!("asset:{id}"),
            json!({ "name": stored.name }),
        )
        .await?;
    Ok(Json(asset_json(&stored, costs)))
}

pub async fn retire(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ManageDevices)?;
    let id = path_uuid(id)?;
    let a = state
        .storage
        .retire_asset(caller.tenant, id, now_ms())
        .await?
        .ok_or_else(not_found)?;
    state
        .audit(&caller, "asset.retire", format!("asset:{id}"), json!({}))
        .await?;
    Ok(Json(asset_json(&a, caller.can(Capability::ViewCosts))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meters {
    pub odometer_km: Option<f64>,
    pub engine_hours: Option<f64>,
    /// Take the gateway's latest reported odometer and engine hours instead.
    #[serde(default)]
    pub from_gateway: bool,
}

/// The latest odometer and engine-hours readings among a device's recent
/// events, with the time of the newer one.
async fn gateway_meters(
    storage: &dyn Storage,
    tenant: Uuid,
    device: Uuid,
) -> Result<(Option<f64>, Option<f64>, Option<i64>), StorageError> {
    let events = recent_events(storage, tenant, device).await?;
    let mut odo = None;
    let mut hours = None;
    let mut at = None;
    for e in events.iter().rev() {
        if odo.is_none() && e.kind == "odometer" {
            odo = e.data.get("odometer_km").and_then(Value::as_f64);
            at = at.max(Some(e.time_ms));
        }
        if hours.is_none() && e.kind == "engine_hours" {
            hours = e.data.get("engine_hours_h").and_then(Value::as_f64);
            at = at.max(Some(e.time_ms));
        }
    }
    Ok((odo, hours, at))
}

/// How far back the vehicle page and meter refresh look in a device's log.
const RECENT_EVENTS: u32 = 1000;

async fn recent_events(
    storage: &dyn Storage,
    tenant: Uuid,
    device: Uuid,
) -> Result<Vec<crate::storage::StoredEvent>, StorageError> {
    let last = storage
        .list_devices(tenant)
        .await?
        .into_iter()
        .find(|d| d.id == device)
        .map_or(0, |d| d.last_seq);
    Ok(storage
        .device_events(
            tenant,
            device,
            last.saturating_sub(u64::from(RECENT_EVENTS)),
            RECENT_EVENTS,
        )
        .await?
        .unwrap_or_default())
}

pub async fn put_meters(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ManageDevices)?;
    let id = path_uuid(id)?;
    let (m, _): (Meters, _) = json_body(&headers, body).await?;
    let asset = load(&state, caller.tenant, id).await?;
    let (odo, hours, at) = if m.from_gateway {
        if m.odometer_km.is_some() || m.engine_hours.is_some() {
            return Err(bad("bad_meters", "give readings or from_gateway, not both"));
        }
        let device = asset
            .device_id
            .ok_or_else(|| conflict("no_gateway", "this asset has no gateway fitted"))?;
        let (odo, hours, at) = gateway_meters(&*state.storage, caller.tenant, device).await?;
        let at = at.ok_or_else(|| {
            conflict(
                "no_readings",
                "the gateway has reported no odometer or engine hours",
            )
        })?;
        (odo, hours, at)
    } else {
        for v in [m.odometer_km, m.engine_hours].into_iter().flatten() {
            if !v.is_finite() || !(0.0..=1e8).contains(&v) {
                return Err(bad("bad_meters", "readings must be 0 to 100000000"));
            }
        }
        if m.odometer_km.is_none() && m.engine_hours.is_none() {
            return Err(bad(
                "bad_meters",
                "give odometer_km, engine_hours or from_gateway",
            ));
        }
        (m.odometer_km, m.engine_hours, now_ms())
    };
    let a = state
        .storage
        .set_meters(caller.tenant, id, odo, hours, at)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(asset_json(&a, caller.can(Capability::ViewCosts))))
}

// ---- CSV ----------------------------------------------------------------

/// Columns of the CSV export and import, in order.
pub const CSV_COLUMNS: [&str; 20] = [
    "id",
    "kind",
    "name",
    "make",
    "model",
    "vin",
    "plate",
    "vehicle_group",
    "home_yard",
    "department",
    "cost_center",
    "purchase_price_cents",
    "purchase_date",
    "device_id",
    "odometer_km",
    "engine_hours",
    "meter_at_ms",
    "created_at_ms",
    "updated_at_ms",
    "retired_at_ms",
];

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_default()
}

/// Every asset as CSV, retired ones included. Without cost access the price
/// column is empty.
pub fn assets_csv(assets: &[Asset], costs: bool) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CSV_COLUMNS)?;
    for a in assets {
        w.write_record([
            a.id.to_string(),
            a.kind.as_str().to_owned(),
            a.name.clone(),
            opt(&a.make),
            opt(&a.model),
            opt(&a.vin),
            opt(&a.plate),
            opt(&a.vehicle_group),
            opt(&a.home_yard),
            opt(&a.department),
            opt(&a.cost_center),
            if costs {
                opt(&a.purchase_price_cents)
            } else {
                String::new()
            },
            opt(&a.purchase_date),
            opt(&a.device_id),
            opt(&a.odometer_km),
            opt(&a.engine_hours),
            opt(&a.meter_at_ms),
            a.created_at_ms.to_string(),
            a.updated_at_ms.to_string(),
            opt(&a.retired_at_ms),
        ])?;
    }
    w.into_inner().map_err(|e| e.into_error().into())
}

/// One row of an import, checked: its line and what it sets.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvRow {
    pub line: u64,
    pub id: Option<Uuid>,
    pub fields: AssetFields,
    /// Whether the row had a price column value (absent keeps the stored one).
    pub has_price: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RowError {
    pub line: u64,
    pub message: String,
}

/// Parses an import file. Columns are matched by header name; `id`, the times
/// and `meter_at_ms` are optional, unknown columns are refused. Pure.
pub fn parse_csv(bytes: &[u8]) -> Result<Vec<CsvRow>, Vec<RowError>> {
    let mut r = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(bytes);
    let headers = match r.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            return Err(vec![RowError {
                line: 1,
                message: e.to_string(),
            }])
        }
    };
    let mut errors = Vec::new();
    let mut col = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        if !CSV_COLUMNS.contains(&h) {
            errors.push(RowError {
                line: 1,
                message: format!("unknown column {h:?}"),
            });
        } else if col.insert(h.to_owned(), i).is_some() {
            errors.push(RowError {
                line: 1,
                message: format!("column {h:?} appears twice"),
            });
        }
    }
    if !col.contains_key("name") {
        errors.push(RowError {
            line: 1,
            message: "the name column is required".into(),
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut rows = Vec::new();
    for rec in r.records() {
        let rec = match rec {
            Ok(rec) => rec,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(RowError {
                    line,
                    message: e.to_string(),
                });
                continue;
            }
        };
        let line = rec.position().map_or(0, |p| p.line());
        let get = |name: &str| {
            col.get(name)
                .and_then(|&i| rec.get(i))
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        match csv_row(line, &get) {
            Ok(row) => rows.push(row),
            Err(message) => errors.push(RowError { line, message }),
        }
    }
    if rows.is_empty() && errors.is_empty() {
        errors.push(RowError {
            line: 1,
            message: "the file has no rows".into(),
        });
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

fn csv_row(line: u64, get: &dyn Fn(&str) -> Option<String>) -> Result<CsvRow, String> {
    fn num<T: std::str::FromStr>(v: Option<String>, field: &str) -> Result<Option<T>, String> {
        v.map(|s| {
            s.parse()
                .map_err(|_| format!("{field} {s:?} is not a number"))
        })
        .transpose()
    }
    fn uuid(v: Option<String>, field: &str) -> Result<Option<Uuid>, String> {
        v.map(|s| Uuid::parse_str(&s).map_err(|_| format!("{field} {s:?} is not a UUID")))
            .transpose()
    }
    let kind = get("kind")
        .map(|k| {
            AssetKind::parse(&k)
                .ok_or_else(|| format!("kind {k:?} is not vehicle, trailer, equipment or key"))
        })
        .transpose()?;
    let fields = AssetFields {
        kind: Some(kind.unwrap_or(AssetKind::Vehicle)),
        name: get("name").unwrap_or_default(),
        make: get("make"),
        model: get("model"),
        vin: get("vin"),
        plate: get("plate"),
        vehicle_group: get("vehicle_group"),
        home_yard: get("home_yard"),
        department: get("department"),
        cost_center: get("cost_center"),
        purchase_price_cents: num(get("purchase_price_cents"), "purchase_price_cents")?,
        purchase_date: get("purchase_date"),
        device_id: uuid(get("device_id"), "device_id")?,
        odometer_km: num(get("odometer_km"), "odometer_km")?,
        engine_hours: num(get("engine_hours"), "engine_hours")?,
    };
    Ok(CsvRow {
        line,
        id: uuid(get("id"), "id")?,
        has_price: fields.purchase_price_cents.is_some(),
        fields: check_fields(fields)?,
    })
}

pub async fn export_csv(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = state
            .storage
            .list_assets(
                caller.tenant,
                &AssetFilter {
                    include_retired: true,
                    after: after.clone(),
                    limit: MAX_LIMIT,
                    ..AssetFilter::default()
                },
            )
            .await?;
        let full = page.len() == MAX_LIMIT as usize;
        after = page.last().map(|a| (a.name.clone(), a.id));
        all.extend(page);
        if !full {
            break;
        }
    }
    let body = assets_csv(&all, caller.can(Capability::ViewCosts)).map_err(|e| {
        tracing::error!(error = %e, "asset CSV export failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "CSV export failed",
        )
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"assets.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}

/// Creates or updates a row's asset: by id when given, else by VIN when a
/// stored asset has it, else a new asset. The whole file in one transaction.
pub async fn import_csv(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Capability::ManageDevices)?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !ct.starts_with("text/csv") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the file as text/csv",
        ));
    }
    let bytes = read_body(&headers, body, MAX_CSV, "request_too_large").await?;
    let rows = match parse_csv(&bytes) {
        Ok(rows) => rows,
        Err(errors) => return Err(import_refused(errors)),
    };
    let costs = caller.can(Capability::ViewCosts);
    if rows.iter().any(|r| r.has_price) && !costs {
        caller.require(Capability::ViewCosts)?;
    }
    let by_vin: HashMap<String, Uuid> = state
        .storage
        .asset_ids_by_vin(caller.tenant)
        .await?
        .into_iter()
        .collect();
    let now = now_ms();
    let mut upserts = Vec::with_capacity(rows.len());
    let mut errors = Vec::new();
    let mut seen = HashMap::new();
    for row in rows {
        let id = row
            .id
            .or_else(|| row.fields.vin.as_ref().and_then(|v| by_vin.get(v).copied()))
            .unwrap_or_else(Uuid::new_v4);
        if let Some(first) = seen.insert(id, row.line) {
            errors.push(RowError {
                line: row.line,
                message: format!("names the same asset as line {first}"),
            });
            continue;
        }
        if let Err(e) = check_device(&state, caller.tenant, &row.fields).await {
            errors.push(RowError {
                line: row.line,
                message: e.message.clone(),
            });
            continue;
        }
        let asset = match state.storage.asset(caller.tenant, id).await? {
            Some(old) => {
                let mut fields = row.fields;
                if !row.has_price {
                    fields.purchase_price_cents = old.purchase_price_cents;
                }
                old.with_fields(fields, now)
            }
            None => Asset::new(id, row.fields, now),
        };
        upserts.push((row.line, AssetUpsert { asset }));
    }
    if !errors.is_empty() {
        return Err(import_refused(errors));
    }
    let lines: Vec<u64> = upserts.iter().map(|(l, _)| *l).collect();
    let counts = match state
        .storage
        .import_assets(caller.tenant, upserts.into_iter().map(|(_, u)| u).collect())
        .await
    {
        Ok(c) => c,
        Err(StorageError::Conflict(m)) | Err(StorageError::Invalid(m)) => {
            // The store does not say which row; the file is refused whole.
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "import_conflict",
                format!("{m}; nothing was imported"),
            ));
        }
        Err(e @ StorageError::LimitReached { .. }) => return Err(e.into()),
        Err(e) => return Err(e.into()),
    };
    state
        .audit(
            &caller,
            "asset.import",
            format!("tenant:{}", caller.tenant),
            json!({ "created": counts.created, "updated": counts.updated, "rows": lines.len() }),
        )
        .await?;
    Ok(Json(json!({ "created": counts.created, "updated": counts.updated })).into_response())
}

fn import_refused(errors: Vec<RowError>) -> ApiError {
    let summary = errors
        .iter()
        .take(20)
        .map(|e| format!("line {}: {}", e.line, e.message))
        .collect::<Vec<_>>()
        .join("; ");
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_rows",
        format!(
            "{} row(s) are invalid; nothing was imported: {summary}",
            errors.len()
        ),
    )
}

// ---- QR codes and label sheets ------------------------------------------

/// The asset's label, issued on first use (asset labels name the asset itself).
async fn asset_label(state: &AppState, tenant: Uuid, a: &Asset) -> Result<LabelRecord, ApiError> {
    if let Some(l) = state.storage.label(tenant, a.id).await? {
        return Ok(l);
    }
    let req = IssueLabel {
        kind: if a.kind == AssetKind::Vehicle {
            LabelKind::Vehicle
        } else {
            LabelKind::Asset
        },
        name: Some(a.name.chars().take(100).collect()),
        driver_name: None,
        asset_id: Some(a.id),
        slot: None,
        expires_at: None,
    };
    match issue_label(&*state.storage, tenant, &req).await {
        Ok(Ok(l)) => Ok(l),
        Ok(Err(refused)) => Err(refused.into()),
        // Issued by a racing request: read that one.
        Err(StorageError::Conflict(_)) => state
            .storage
            .label(tenant, a.id)
            .await?
            .ok_or_else(|| conflict("label_exists", "the label's short code is taken")),
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QrQuery {
    pub format: Option<String>,
}

fn qr_response(text: &str, format: Option<&str>) -> Result<Response, ApiError> {
    let m = QrMatrix::encode(text).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            e.to_string(),
        )
    })?;
    match format.unwrap_or("svg") {
        "svg" => Ok(([(header::CONTENT_TYPE, "image/svg+xml")], m.svg()).into_response()),
        "png" => {
            let png = m.png(8).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    e.to_string(),
                )
            })?;
            Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
        }
        _ => Err(bad("bad_format", "format must be svg or png")),
    }
}

pub async fn asset_qr(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<QrQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let id = path_uuid(id)?;
    let Query(q) = query.map_err(|e| bad("bad_query", e.body_text()))?;
    if !matches!(q.format.as_deref(), None | Some("svg") | Some("png")) {
        return Err(bad("bad_format", "format must be svg or png"));
    }
    let a = load(&state, caller.tenant, id).await?;
    if a.retired_at_ms.is_some() {
        return Err(conflict("asset_retired", "a retired asset gets no label"));
    }
    // Issuing the label on first use writes it: that needs the right to issue.
    if state.storage.label(caller.tenant, id).await?.is_none() {
        caller.require(Capability::ManageDevices)?;
    }
    let label = asset_label(&state, caller.tenant, &a).await?;
    qr_response(&label.text, q.format.as_deref())
}

pub async fn badge_qr(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<QrQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let id = path_uuid(id)?;
    let Query(q) = query.map_err(|e| bad("bad_query", e.body_text()))?;
    let label = badge_label(&*state.storage, caller.tenant, id).await?;
    qr_response(&label.text, q.format.as_deref())
}

async fn badge_label(
    storage: &dyn Storage,
    tenant: Uuid,
    id: Uuid,
) -> Result<LabelRecord, ApiError> {
    match storage.label(tenant, id).await? {
        Some(l) if l.kind == LabelKind::Badge && l.revoked_at_ms.is_none() => Ok(l),
        Some(l) if l.kind == LabelKind::Badge => {
            Err(conflict("badge_revoked", "this badge was revoked"))
        }
        _ => Err(ApiError::not_found("badge_not_found", "no such badge")),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SheetRequest {
    #[serde(default)]
    pub asset_ids: Vec<Uuid>,
    #[serde(default)]
    pub badge_ids: Vec<Uuid>,
    #[serde(default)]
    pub paper: Paper,
}

pub async fn label_sheet(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Capability::ManageDevices)?;
    let (req, _): (SheetRequest, _) = json_body(&headers, body).await?;
    let n = req.asset_ids.len() + req.badge_ids.len();
    if n == 0 || n > sheet::MAX_LABELS {
        return Err(bad(
            "bad_sheet",
            format!("name 1 to {} assets or badges", sheet::MAX_LABELS),
        ));
    }
    // Check everything before issuing anything.
    let mut assets = Vec::with_capacity(req.asset_ids.len());
    for (i, id) in req.asset_ids.iter().enumerate() {
        // Named by its place in the list, not its id: an id the caller cannot
        // see is not repeated back.
        let a = state
            .storage
            .asset(caller.tenant, *id)
            .await?
            .ok_or_else(|| {
                ApiError::not_found("asset_not_found", format!("asset_ids[{i}]: no such asset"))
            })?;
        if a.retired_at_ms.is_some() {
            return Err(conflict("asset_retired", format!("asset {id} is retired")));
        }
        assets.push(a);
    }
    let mut labels = Vec::with_capacity(n);
    for id in &req.badge_ids {
        let l = badge_label(&*state.storage, caller.tenant, *id).await?;
        labels.push(l);
    }
    let mut sheet_labels = Vec::with_capacity(n);
    for a in &assets {
        let l = asset_label(&state, caller.tenant, a).await?;
        sheet_labels.push(SheetLabel {
            text: l.text,
            short_code: l.short_code,
            name: a.name.clone(),
        });
    }
    sheet_labels.extend(labels.into_iter().map(|l| SheetLabel {
        text: l.text,
        short_code: l.short_code,
        name: l.name,
    }));
    let pdf = tokio::task::spawn_blocking(move || sheet::render(&sheet_labels, req.paper))
        .await
        .map_err(|e| StorageError::Backend(format!("label sheet task: {e}")))?
        .map_err(|e| bad("bad_sheet", e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf"),
            (
                header::CONTENT_DISPOSITION,
                "inline; filename=\"labels.pdf\"",
            ),
        ],
        pdf,
    )
        .into_response())
}

// ---- badges ---------------------------------------------------------------

pub async fn issue_badge(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    caller.require(Capability::ManageUsers)?;
    let user_id = path_uuid(id)?;
    let user = state
        .storage
        .user(caller.tenant, user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("user_not_found", "no such user"))?;
    let req = IssueLabel {
        kind: LabelKind::Badge,
        name: None,
        driver_name: Some(user.name.chars().take(100).collect()),
        asset_id: None,
        slot: None,
        expires_at: None,
    };
    let label = match issue_label(&*state.storage, caller.tenant, &req).await {
        Ok(Ok(l)) => l,
        Ok(Err(refused)) => return Err(refused.into()),
        Err(e) => return Err(e.into()),
    };
    state
        .storage
        .link_badge(caller.tenant, user_id, label.id)
        .await
        .map_err(storage_error)?;
    state
        .audit(
            &caller,
            "badge.issue",
            format!("user:{user_id}"),
            json!({ "badge_id": label.id }),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(badge_json(user_id, &label))).into_response())
}

fn badge_json(user: Uuid, l: &LabelRecord) -> Value {
    json!({
        "id": l.id,
        "user_id": user,
        "name": l.name,
        "short_code": l.short_code,
        "created_at_ms": l.created_at_ms,
        "revoked_at_ms": l.revoked_at_ms,
    })
}

pub async fn list_badges(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let user_id = path_uuid(id)?;
    let mut out = Vec::new();
    for (u, badge) in state.storage.user_badges(caller.tenant).await? {
        if u != user_id {
            continue;
        }
        if let Some(l) = state.storage.label(caller.tenant, badge).await? {
            out.push(badge_json(u, &l));
        }
    }
    Ok(Json(json!({ "badges": out })))
}

// ---- office custody ---------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustodyRequest {
    pub asset_id: Uuid,
    /// Who takes or returns it: a badge, or a user with a badge.
    pub badge_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
}

/// Office custody writes in this process, one at a time, so a check and its
/// write see the same holder.
static OFFICE_CUSTODY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The custody document with `op` appended, as an incremental save: the same
/// document kiosks sync, so the server's merge folds office and kiosk ops alike.
fn append_op(stored: Option<&[u8]>, op: &CustodyOp) -> Result<Vec<u8>, automerge::AutomergeError> {
    let mut doc = match stored {
        Some(bytes) => AutoCommit::load(bytes)?,
        None => {
            // Every replica starts from the same first change (see the protocol).
            let mut d = AutoCommit::new().with_actor(ActorId::from(CUSTODY_BASE_ACTOR.as_slice()));
            d.put_object(ROOT, OPS_KEY, ObjType::List)?;
            d.commit_with(automerge::transaction::CommitOptions::default().with_time(0));
            d
        }
    };
    let fresh = stored.is_none();
    doc.set_actor(ActorId::random());
    let list = match doc.get(ROOT, OPS_KEY)? {
        Some((automerge::Value::Object(ObjType::List), id)) => id,
        _ => doc.put_object(ROOT, OPS_KEY, ObjType::List)?,
    };
    let at = doc.length(&list);
    let m = doc.insert_object(&list, at, ObjType::Map)?;
    doc.put(&m, FIELD_OP, op.op.as_str())?;
    doc.put(&m, FIELD_KIOSK, op.kiosk.as_str())?;
    doc.put(&m, FIELD_BADGE, op.badge.to_string())?;
    doc.put(&m, FIELD_AT_MS, op.at_ms)?;
    doc.put(&m, FIELD_EVENT_ID, op.event_id.to_string())?;
    doc.commit();
    // A new document is saved whole (its first change included), a loaded
    // one as the change made here.
    Ok(if fresh {
        doc.save()
    } else {
        doc.save_incremental()
    })
}

async fn resolve_badge(
    state: &AppState,
    tenant: Uuid,
    req: &CustodyRequest,
) -> Result<Uuid, ApiError> {
    match (req.badge_id, req.user_id) {
        (Some(b), None) => {
            badge_label(&*state.storage, tenant, b).await?;
            Ok(b)
        }
        (None, Some(u)) => {
            // An unknown user (or another tenant's) is not found, like an
            // unknown badge; a known one without a badge is 422 below.
            if state.storage.user(tenant, u).await?.is_none() {
                return Err(ApiError::not_found("user_not_found", "no such user"));
            }
            for (user, badge) in state.storage.user_badges(tenant).await? {
                if user == u
                    && state
                        .storage
                        .label(tenant, badge)
                        .await?
                        .is_some_and(|l| l.revoked_at_ms.is_none())
                {
                    return Ok(badge);
                }
            }
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "user_has_no_badge",
                "this user has no badge; issue one first",
            ))
        }
        _ => Err(bad(
            "bad_custody",
            "give exactly one of badge_id and user_id",
        )),
    }
}

async fn office_custody(
    state: &AppState,
    caller: &Caller,
    action: CustodyAction,
    req: &CustodyRequest,
) -> Result<(StatusCode, Value), ApiError> {
    let badge = resolve_badge(state, caller.tenant, req).await?;
    let _one_at_a_time = OFFICE_CUSTODY.lock().await;
    let asset = load(state, caller.tenant, req.asset_id).await?;
    if asset.retired_at_ms.is_some() {
        return Err(conflict("asset_retired", "this asset is retired"));
    }
    let holder = state
        .storage
        .custody_holders(caller.tenant)
        .await?
        .into_iter()
        .find(|h| h.asset_id == asset.id)
        .and_then(|h| h.holder);
    match action {
        CustodyAction::CheckOut => {
            if let Some(h) = &holder {
                return Err(conflict(
                    "already_checked_out",
                    format!(
                        "this asset is out since {} (badge {})",
                        rfc3339_ms(h.at_ms),
                        h.badge
                    ),
                ));
            }
            let unsafe_defects = state.storage.open_unsafe_defects(caller.tenant).await?;
            if let Some((_, summary)) = unsafe_defects.iter().find(|(a, _)| *a == asset.id) {
                return Err(conflict(
                    "unsafe_defect",
                    format!("this vehicle has an open unsafe defect: {summary}"),
                ));
            }
        }
        CustodyAction::CheckIn => {
            if holder.is_none() {
                return Err(conflict("not_checked_out", "this asset is not checked out"));
            }
        }
    }
    let op = CustodyOp {
        op: action,
        kiosk: OFFICE_KIOSK.into(),
        badge,
        at_ms: now_ms(),
        event_id: Uuid::new_v4(),
    };
    let doc_id = custody_doc_id(asset.id);
    let stored = state.storage.load_doc(caller.tenant, &doc_id).await?;
    let op2 = op.clone();
    let bytes = tokio::task::spawn_blocking(move || {
        append_op(stored.as_ref().map(|d| d.bytes.as_slice()), &op2)
    })
    .await
    .map_err(|e| StorageError::Backend(format!("custody task: {e}")))?
    .map_err(|e| StorageError::Corrupt(format!("custody document {}: {e}", asset.id)))?;
    let write = crate::storage::DocWrite::Append(bytes);
    state
        .storage
        .save_doc(caller.tenant, &doc_id, Some(write), None, op.at_ms)
        .await?;
    crate::custody::after_merge(state, caller.tenant, &doc_id).await?;
    state
        .audit(
            caller,
            match action {
                CustodyAction::CheckOut => "custody.check_out",
                CustodyAction::CheckIn => "custody.check_in",
            },
            format!("asset:{}", asset.id),
            json!({ "badge_id": badge, "event_id": op.event_id }),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        json!({
            "asset_id": asset.id,
            "op": action,
            "badge_id": badge,
            "event_id": op.event_id,
            "at_ms": op.at_ms,
            "at": rfc3339_ms(op.at_ms),
        }),
    ))
}

/// Runs `req` once per `Idempotency-Key`: a retry with the same body gets the
/// first answer; the same key with another body is refused.
async fn idempotent(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    action: CustodyAction,
    raw: &[u8],
) -> Result<Response, ApiError> {
    let req: CustodyRequest = serde_json::from_slice(raw)
        .map_err(|e| bad("bad_json", format!("request body is not valid: {e}")))?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k = v
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
                .ok_or_else(|| {
                    bad(
                        "bad_idempotency_key",
                        format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
                    )
                })?;
            Some(k.to_owned())
        }
    };
    // The request's identity: what it does and to what, whatever the JSON spacing.
    let canonical = json!({ "action": action, "asset_id": req.asset_id, "badge_id": req.badge_id, "user_id": req.user_id });
    let digest = sha256(canonical.to_string().as_bytes());
    if let Some(k) = &key {
        if let Some(first) = state.storage.recorded_request(caller.tenant, k).await? {
            return replay(first, digest);
        }
    }
    let (status, body) = match office_custody(state, caller, action, &req).await {
        Ok(ok) => ok,
        // Refusals that depend on the moment (already out, a defect) are not
        // recorded: a retry after the cause is gone may succeed.
        Err(e) => return Err(e),
    };
    let answer = RecordedRequest {
        request_sha256: digest,
        status: status.as_u16(),
        response: body.to_string(),
    };
    let kept = match &key {
        Some(k) => {
            state
                .storage
                .record_request(caller.tenant, k, answer, now_ms())
                .await?
        }
        None => answer,
    };
    replay(kept, digest)
}

fn replay(first: RecordedRequest, digest: [u8; 32]) -> Result<Response, ApiError> {
    if first.request_sha256 != digest {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request",
        ));
    }
    let status = StatusCode::from_u16(first.status).unwrap_or(StatusCode::OK);
    Ok((
        status,
        [(header::CONTENT_TYPE, "application/json")],
        first.response,
    )
        .into_response())
}

pub async fn check_out(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Capability::Custody)?;
    let raw = read_body(&headers, body, MAX_BODY, "request_too_large").await?;
    idempotent(&state, &caller, &headers, CustodyAction::CheckOut, &raw).await
}

pub async fn check_in(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Capability::Custody)?;
    let raw = read_body(&headers, body, MAX_BODY, "request_too_large").await?;
    idempotent(&state, &caller, &headers, CustodyAction::CheckIn, &raw).await
}

// ---- custody board ------------------------------------------------------------

/// Who has what, since when, when it is due back and whether it is overdue
/// (the kiosk policy's longest checkout), with the open conflicts: one call.
pub async fn board(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let tenant = caller.tenant;
    let now = now_ms();
    let policy = state.storage.kiosk_policy(tenant).await?;
    let max_ms = i64::from(policy.max_checkout_hours) * 3_600_000;
    let badges: HashMap<Uuid, Uuid> = state
        .storage
        .user_badges(tenant)
        .await?
        .into_iter()
        .map(|(u, b)| (b, u))
        .collect();
    let labels: HashMap<Uuid, LabelRecord> = state
        .storage
        .list_labels(tenant)
        .await?
        .into_iter()
        .map(|l| (l.id, l))
        .collect();
    let mut out = Vec::new();
    for h in state.storage.custody_holders(tenant).await? {
        let Some(op) = h.holder else { continue };
        let asset = state.storage.asset(tenant, h.asset_id).await?;
        let name = asset
            .as_ref()
            .map(|a| a.name.clone())
            .or_else(|| labels.get(&h.asset_id).map(|l| l.name.clone()));
        let due = op.at_ms.saturating_add(max_ms);
        out.push(json!({
            "asset_id": h.asset_id,
            "asset_name": name,
            "kind": asset.as_ref().map(|a| a.kind),
            "badge_id": op.badge,
            "holder_name": labels.get(&op.badge).map(|l| l.name.clone()),
            "user_id": badges.get(&op.badge),
            "via": op.kiosk,
            "since_ms": op.at_ms,
            "since": rfc3339_ms(op.at_ms),
            "due_back_ms": due,
            "due_back": rfc3339_ms(due),
            "overdue": now > due,
        }));
    }
    let conflicts = state.storage.custody_conflicts(tenant, false).await?;
    Ok(Json(json!({
        "now_ms": now,
        "out": out,
        "conflicts": conflicts.iter().map(|c| json!({
            "id": c.id,
            "asset_id": c.asset_id,
            "first": c.first,
            "second": c.second,
            "detected_at_ms": c.detected_at_ms,
        })).collect::<Vec<_>>(),
    })))
}

// ---- vehicle page ---------------------------------------------------------------

/// How many trips, faults, reservations and inspections the page shows.
const PAGE_ITEMS: usize = 10;

/// One vehicle's page: catalog fields, last position, status, open faults,
/// custody, recent trips, reservations and inspections. `id` is the asset id,
/// or the id of a gateway that has no asset (shown as a vehicle named after it).
pub async fn overview(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let tenant = caller.tenant;
    let id = path_uuid(id)?;
    let asset = match state.storage.asset(tenant, id).await? {
        Some(a) => Some(a),
        None => state.storage.asset_for_device(tenant, id).await?,
    };
    let device_id = match &asset {
        Some(a) => a.device_id,
        None => match state.storage.device(id).await? {
            Some(d) if d.tenant_id == tenant => Some(d.device_id),
            _ => return Err(ApiError::not_found("vehicle_not_found", "no such vehicle")),
        },
    };
    let vehicle_id = asset.as_ref().map_or(id, |a| a.id);
    let costs = caller.can(Capability::ViewCosts);

    let mut position = Value::Null;
    let mut status = json!({ "device_id": device_id, "last_seen_ms": null, "ignition": null });
    let mut faults = Vec::new();
    let mut trips = Vec::new();
    let mut name = asset.as_ref().map(|a| a.name.clone());
    if let Some(dev) = device_id {
        if let Some(v) = state
            .storage
            .list_vehicles(tenant)
            .await?
            .into_iter()
            .find(|v| v.id == dev)
        {
            position = serde_json::to_value(&v.position).unwrap_or(Value::Null);
            status["last_seen_ms"] = json!(v.last_seen_ms);
            status["last_seen"] = json!(v.last_seen_ms.map(rfc3339_ms));
            status["revoked"] = json!(v.revoked);
            name.get_or_insert(v.name);
        }
        let events = recent_events(&*state.storage, tenant, dev).await?;
        let mut active: Vec<&crate::storage::StoredEvent> = Vec::new();
        for e in &events {
            match e.kind.as_str() {
                "ignition_on" => status["ignition"] = json!("on"),
                "ignition_off" => status["ignition"] = json!("off"),
                "dtc_set" => active.push(e),
                "dtc_clear" => {
                    let code = e.data.get("code");
                    active.retain(|f| code.is_none() || f.data.get("code") != code);
                }
                _ => {}
            }
        }
        faults = active
            .iter()
            .rev()
            .take(PAGE_ITEMS)
            .map(|e| json!({ "seq": e.seq, "time_ms": e.time_ms, "data": e.data }))
            .collect();
        trips = events
            .iter()
            .rev()
            .filter(|e| e.kind == "trip_end")
            .take(PAGE_ITEMS)
            .map(|e| json!({ "seq": e.seq, "end_ms": e.time_ms, "data": e.data }))
            .collect();
    }
    let custody = state
        .storage
        .custody_holders(tenant)
        .await?
        .into_iter()
        .find(|h| h.asset_id == vehicle_id)
        .and_then(|h| h.holder);
    let reservations = state
        .storage
        .list_reservations(
            tenant,
            &ReservationFilter {
                vehicle_id: Some(vehicle_id),
                from_ms: Some(now_ms()),
                limit: PAGE_ITEMS as u32,
                ..ReservationFilter::default()
            },
        )
        .await?;
    let inspections = state
        .storage
        .list_inspections(tenant, Some(vehicle_id), PAGE_ITEMS as u32)
        .await?;
    let defects = state.storage.open_defects(tenant, Some(vehicle_id)).await?;
    Ok(Json(json!({
        "id": vehicle_id,
        "name": name,
        "asset": asset.as_ref().map(|a| asset_json(a, costs)),
        "position": position,
        "status": status,
        "open_faults": faults,
        "custody": custody.map(|op| json!({
            "badge_id": op.badge,
            "via": op.kiosk,
            "since_ms": op.at_ms,
            "since": rfc3339_ms(op.at_ms),
        })),
        "recent_trips": trips,
        "reservations": serde_json::to_value(&reservations).unwrap_or(Value::Null),
        "inspections": serde_json::to_value(&inspections).unwrap_or(Value::Null),
        "open_defects": serde_json::to_value(&defects).unwrap_or(Value::Null),
    })))
}

// ---- OpenAPI ------------------------------------------------------------------

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// The OpenAPI fragment of the asset, label-sheet, badge, office custody and
/// vehicle-page endpoints.
pub fn openapi() -> Value {
    // Two lists of this many ids (about 40 bytes each) fit in MAX_BODY.
    const SHEET_IDS_PER_LIST: usize = MAX_BODY / 82;
    let ok = |schema: &str| json!({"description": "ok", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    let id_param = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}});
    let format_param = json!({"name": "format", "in": "query", "required": false, "schema": {"type": "string", "enum": ["svg", "png"], "default": "svg"}});
    let images = json!({"description": "the QR image of the signed label", "content": {"image/svg+xml": {"schema": {"type": "string"}}, "image/png": {"schema": {"type": "string", "format": "binary"}}}});
    let json_body = |schema: &str| json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    let idem = json!({"name": "Idempotency-Key", "in": "header", "required": false, "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY, "pattern": "^[!-~]([ -~]*[!-~])?$"}, "description": "visible ASCII; the same key and body answer the first answer again; the same key with another body is refused (422 idempotency_key_reused)"});
    let text = |max: usize| json!({"type": ["string", "null"], "maxLength": max});
    let custody_op = |summary: &str, id: &str| {
        json!({
            "operationId": id,
            "summary": summary,
            "x-capability": "custody",
            "tags": ["custody"],
            "parameters": [idem.clone()],
            "requestBody": json_body("OfficeCustodyRequest"),
            "responses": {
                "201": {"description": "recorded in the asset's custody document", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OfficeCustodyResult"}}}},
                "404": error_response("asset_not_found, badge_not_found, user_not_found"),
                "409": error_response("already_checked_out, not_checked_out, unsafe_defect, asset_retired, badge_revoked"),
                "422": error_response("idempotency_key_reused, user_has_no_badge")
            }
        })
    };
    json!({
        "paths": {
            "/api/v1/assets": {
                "get": {
                    "operationId": "listAssets",
                    "summary": "The asset catalog, by name; filters and keyset paging (after = the last id of the previous page)",
                    "x-capability": "read_fleet",
                    "tags": ["assets"],
                    "parameters": [
                        {"name": "kind", "in": "query", "schema": {"type": "string", "enum": ["vehicle", "trailer", "equipment", "key"]}},
                        {"name": "group", "in": "query", "schema": {"type": "string"}},
                        {"name": "yard", "in": "query", "schema": {"type": "string"}},
                        {"name": "q", "in": "query", "schema": {"type": "string"}, "description": "substring of name, VIN, plate, make or model"},
                        {"name": "include_retired", "in": "query", "schema": {"type": "boolean"}},
                        {"name": "after", "in": "query", "schema": {"type": "string", "format": "uuid"}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}}
                    ],
                    "responses": {"200": ok("AssetList")}
                },
                "post": {
                    "operationId": "createAsset",
                    "summary": "Add a vehicle, trailer, equipment or key; vehicles count against max_vehicles",
                    "x-capability": "manage_devices",
                    "tags": ["assets"],
                    "requestBody": json_body("NewAsset"),
                    "responses": {
                        "201": ok("Asset"),
                        "400": error_response("bad_json, bad_asset, unknown_device"),
                        "403": error_response("limit_reached; purchase_price_cents needs view_costs"),
                        "409": error_response("asset_conflict: the id, VIN or gateway is taken")
                    }
                }
            },
            "/api/v1/assets/export.csv": {
                "get": {
                    "operationId": "exportAssetsCsv",
                    "summary": "Every asset as CSV (retired ones too); the price column is empty without view_costs",
                    "x-capability": "read_fleet",
                    "tags": ["assets"],
                    "responses": {"200": {"description": "CSV with a header row", "content": {"text/csv": {"schema": {"type": "string"}}}}}
                }
            },
            "/api/v1/assets/import": {
                "post": {
                    "operationId": "importAssetsCsv",
                    "summary": "Create or update assets from CSV (by id, else VIN); one transaction: a bad row imports nothing",
                    "x-capability": "manage_devices",
                    "tags": ["assets"],
                    "requestBody": {"required": true, "content": {"text/csv": {"schema": {
                        "type": "string",
                        "description": format!("a header row naming columns of {} (name is required), then one row per asset", CSV_COLUMNS.join(", ")),
                        "pattern": "^name\\r?\\n([A-Za-z0-9][A-Za-z0-9 ._-]{0,60}\\r?\\n){1,20}$"
                    }}}},
                    "responses": {
                        "200": ok("AssetImportResult"),
                        "415": error_response("unsupported_media_type: send text/csv"),
                        "422": error_response("invalid_rows (each with its line number), import_conflict")
                    }
                }
            },
            "/api/v1/assets/{id}": {
                "get": {
                    "operationId": "getAsset",
                    "summary": "One asset",
                    "x-capability": "read_fleet",
                    "tags": ["assets"],
                    "parameters": [id_param.clone()],
                    "responses": {"200": ok("Asset"), "404": error_response("asset_not_found")}
                },
                "put": {
                    "operationId": "replaceAsset",
                    "summary": "Replace an asset's fields (the price is kept for callers without view_costs)",
                    "x-capability": "manage_devices",
                    "tags": ["assets"],
                    "parameters": [id_param.clone()],
                    "requestBody": json_body("AssetFields"),
                    "responses": {
                        "200": ok("Asset"),
                        "404": error_response("asset_not_found"),
                        "409": error_response("asset_conflict, asset_retired")
                    }
                }
            },
            "/api/v1/assets/{id}/retire": {
                "post": {
                    "operationId": "retireAsset",
                    "summary": "Retire an asset (kept, hidden from lists by default, its gateway freed)",
                    "x-capability": "manage_devices",
                    "tags": ["assets"],
                    "parameters": [id_param.clone()],
                    "responses": {"200": ok("Asset"), "404": error_response("asset_not_found")}
                }
            },
            "/api/v1/assets/{id}/meters": {
                "put": {
                    "operationId": "setAssetMeters",
                    "summary": "Set odometer and engine hours by hand, or from the gateway's latest reports",
                    "x-capability": "manage_devices",
                    "tags": ["assets"],
                    "parameters": [id_param.clone()],
                    "requestBody": json_body("AssetMeters"),
                    "responses": {
                        "200": ok("Asset"),
                        "400": error_response("bad_meters"),
                        "404": error_response("asset_not_found"),
                        "409": error_response("no_gateway, no_readings")
                    }
                }
            },
            "/api/v1/assets/{id}/qr-code": {
                "get": {
                    "operationId": "assetQrCode",
                    "summary": "The asset's signed label as a QR image (the label is issued on first use, which needs manage_devices)",
                    "x-capability": "read_fleet",
                    "tags": ["assets"],
                    "parameters": [id_param.clone(), format_param.clone()],
                    "responses": {"200": images.clone(), "400": error_response("bad_format"), "404": error_response("asset_not_found"), "409": error_response("asset_retired")}
                }
            },
            "/api/v1/badges/{id}/qr-code": {
                "get": {
                    "operationId": "badgeQrCode",
                    "summary": "A driver badge as a QR image",
                    "x-capability": "read_fleet",
                    "tags": ["assets"],
                    "parameters": [id_param.clone(), format_param],
                    "responses": {"200": images, "404": error_response("badge_not_found"), "409": error_response("badge_revoked")}
                }
            },
            "/api/v1/users/{id}/badges": {
                "get": {
                    "operationId": "listUserBadges",
                    "summary": "The badges linked to a user",
                    "x-capability": "read_fleet",
                    "tags": ["assets"],
                    "parameters": [id_param.clone()],
                    "responses": {"200": ok("BadgeList")}
                },
                "post": {
                    "operationId": "issueUserBadge",
                    "summary": "Issue a signed driver badge for a user and link it",
                    "x-capability": "manage_users",
                    "tags": ["assets"],
                    "parameters": [id_param.clone()],
                    "responses": {"201": ok("Badge"), "404": error_response("user_not_found")}
                }
            },
            "/api/v1/labels/sheet": {
                "post": {
                    "operationId": "labelSheet",
                    "summary": "A printable PDF of labels (QR, short code, name), A4 or Letter, 12 a page",
                    "x-capability": "manage_devices",
                    "tags": ["assets"],
                    "requestBody": json_body("LabelSheetRequest"),
                    "responses": {
                        "200": {"description": "the sheet", "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}},
                        "400": error_response("bad_sheet"),
                        "404": error_response("asset_not_found, badge_not_found"),
                        "409": error_response("asset_retired, badge_revoked")
                    }
                }
            },
            "/api/v1/custody/check-out": {"post": custody_op("Office check-out of an asset to a badge (or a user's badge)", "officeCheckOut")},
            "/api/v1/custody/check-in": {"post": custody_op("Office check-in of an asset", "officeCheckIn")},
            "/api/v1/custody/board": {
                "get": {
                    "operationId": "custodyBoard",
                    "summary": "Who has what, since when, due back, overdue, and the open conflicts",
                    "x-capability": "read_fleet",
                    "tags": ["custody"],
                    "responses": {"200": ok("CustodyBoard")}
                }
            },
            "/api/v1/vehicles/{id}/overview": {
                "get": {
                    "operationId": "vehicleOverview",
                    "summary": "One vehicle's page: catalog, position, status, faults, custody, trips, reservations, inspections",
                    "x-capability": "read_fleet",
                    "tags": ["assets"],
                    "parameters": [id_param],
                    "responses": {"200": ok("VehicleOverview"), "404": error_response("vehicle_not_found")}
                }
            }
        },
        "components": {
            "schemas": {
                "AssetFields": {
                    "type": "object", "required": ["name"], "additionalProperties": false,
                    "properties": {
                        "kind": {"type": "string", "enum": ["vehicle", "trailer", "equipment", "key"], "default": "vehicle"},
                        "name": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
                        "make": text(MAX_TEXT), "model": text(MAX_TEXT),
                        "vin": {"type": ["string", "null"], "maxLength": 32, "pattern": "^[A-Za-z0-9]*$"},
                        "plate": text(MAX_TEXT), "vehicle_group": text(MAX_TEXT), "home_yard": text(MAX_TEXT),
                        "department": text(MAX_TEXT), "cost_center": text(MAX_TEXT),
                        "purchase_price_cents": {"type": ["integer", "null"], "minimum": 0, "description": "needs view_costs"},
                        "purchase_date": {"type": ["string", "null"], "format": "date"},
                        "device_id": {"type": ["string", "null"], "format": "uuid", "description": "the gateway fitted to this vehicle"},
                        "odometer_km": {"type": ["number", "null"], "minimum": 0, "maximum": 1e8},
                        "engine_hours": {"type": ["number", "null"], "minimum": 0, "maximum": 1e8}
                    }
                },
                "NewAsset": {
                    "allOf": [{"$ref": "#/components/schemas/AssetFields"}],
                    "properties": {"id": {"type": "string", "format": "uuid", "description": "the id its label will carry; new when absent"}}
                },
                "Asset": {
                    "type": "object",
                    "required": ["id", "kind", "name", "created_at_ms", "updated_at_ms"],
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "kind": {"type": "string", "enum": ["vehicle", "trailer", "equipment", "key"]},
                        "name": {"type": "string"},
                        "make": text(MAX_TEXT), "model": text(MAX_TEXT), "vin": text(32), "plate": text(MAX_TEXT),
                        "vehicle_group": text(MAX_TEXT), "home_yard": text(MAX_TEXT),
                        "department": text(MAX_TEXT), "cost_center": text(MAX_TEXT),
                        "purchase_price_cents": {"type": ["integer", "null"], "description": "present only with view_costs"},
                        "purchase_date": {"type": ["string", "null"]},
                        "device_id": {"type": ["string", "null"], "format": "uuid"},
                        "odometer_km": {"type": ["number", "null"]},
                        "engine_hours": {"type": ["number", "null"]},
                        "meter_at_ms": {"type": ["integer", "null"]},
                        "created_at_ms": {"type": "integer"}, "created_at": {"type": "string", "format": "date-time"},
                        "updated_at_ms": {"type": "integer"},
                        "retired_at_ms": {"type": ["integer", "null"]}, "retired_at": {"type": ["string", "null"], "format": "date-time"}
                    }
                },
                "AssetList": {
                    "type": "object", "required": ["assets"],
                    "properties": {
                        "assets": {"type": "array", "items": {"$ref": "#/components/schemas/Asset"}},
                        "next_after": {"type": ["string", "null"], "format": "uuid"}
                    }
                },
                "AssetImportResult": {
                    "type": "object", "required": ["created", "updated"],
                    "properties": {"created": {"type": "integer"}, "updated": {"type": "integer"}}
                },
                "AssetMeters": {
                    "type": "object", "additionalProperties": false,
                    "properties": {
                        "odometer_km": {"type": "number", "minimum": 0, "maximum": 1e8},
                        "engine_hours": {"type": "number", "minimum": 0, "maximum": 1e8},
                        "from_gateway": {"type": "boolean"}
                    },
                    "description": "odometer_km, engine_hours or both; or from_gateway true and no readings",
                    "anyOf": [
                        {"properties": {"from_gateway": {"const": true}, "odometer_km": false, "engine_hours": false}, "required": ["from_gateway"]},
                        {"properties": {"from_gateway": {"const": false}}, "anyOf": [{"required": ["odometer_km"]}, {"required": ["engine_hours"]}]}
                    ]
                },
                "Badge": {
                    "type": "object", "required": ["id", "user_id", "short_code"],
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "user_id": {"type": "string", "format": "uuid"},
                        "name": {"type": "string"},
                        "short_code": {"type": "string"},
                        "created_at_ms": {"type": "integer"},
                        "revoked_at_ms": {"type": ["integer", "null"]}
                    }
                },
                "BadgeList": {
                    "type": "object", "required": ["badges"],
                    "properties": {"badges": {"type": "array", "items": {"$ref": "#/components/schemas/Badge"}}}
                },
                "LabelSheetRequest": {
                    "type": "object", "additionalProperties": false,
                    "properties": {
                        "asset_ids": {"type": "array", "maxItems": SHEET_IDS_PER_LIST, "items": {"type": "string", "format": "uuid"}},
                        "badge_ids": {"type": "array", "maxItems": SHEET_IDS_PER_LIST, "items": {"type": "string", "format": "uuid"}},
                        "paper": {"type": "string", "enum": ["a4", "letter"], "default": "a4"}
                    },
                    "description": format!("1 to {} assets and badges together, in a body of at most {MAX_BODY} bytes (about {SHEET_IDS_PER_LIST} ids in each list)", sheet::MAX_LABELS),
                    "anyOf": [{"required": ["asset_ids"], "properties": {"asset_ids": {"minItems": 1}}}, {"required": ["badge_ids"], "properties": {"badge_ids": {"minItems": 1}}}]
                },
                "OfficeCustodyRequest": {
                    "type": "object", "required": ["asset_id"], "additionalProperties": false,
                    "properties": {
                        "asset_id": {"type": "string", "format": "uuid"},
                        "badge_id": {"type": "string", "format": "uuid"},
                        "user_id": {"type": "string", "format": "uuid"}
                    },
                    "description": "exactly one of badge_id and user_id",
                    "oneOf": [{"required": ["badge_id"], "properties": {"user_id": false}}, {"required": ["user_id"], "properties": {"badge_id": false}}]
                },
                "OfficeCustodyResult": {
                    "type": "object", "required": ["asset_id", "op", "badge_id", "event_id", "at_ms"],
                    "properties": {
                        "asset_id": {"type": "string", "format": "uuid"},
                        "op": {"type": "string", "enum": ["check_out", "check_in"]},
                        "badge_id": {"type": "string", "format": "uuid"},
                        "event_id": {"type": "string", "format": "uuid"},
                        "at_ms": {"type": "integer"},
                        "at": {"type": "string", "format": "date-time"}
                    }
                },
                "CustodyBoard": {
                    "type": "object", "required": ["now_ms", "out", "conflicts"],
                    "properties": {
                        "now_ms": {"type": "integer"},
                        "out": {"type": "array", "items": {
                            "type": "object",
                            "properties": {
                                "asset_id": {"type": "string", "format": "uuid"},
                                "asset_name": {"type": ["string", "null"]},
                                "kind": {"type": ["string", "null"]},
                                "badge_id": {"type": "string", "format": "uuid"},
                                "holder_name": {"type": ["string", "null"]},
                                "user_id": {"type": ["string", "null"], "format": "uuid"},
                                "via": {"type": "string", "description": "the kiosk id, or office"},
                                "since_ms": {"type": "integer"}, "since": {"type": "string", "format": "date-time"},
                                "due_back_ms": {"type": "integer"}, "due_back": {"type": "string", "format": "date-time"},
                                "overdue": {"type": "boolean"}
                            }
                        }},
                        "conflicts": {"type": "array", "items": {"type": "object"}}
                    }
                },
                "VehicleOverview": {
                    "type": "object", "required": ["id", "status"],
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "name": {"type": ["string", "null"]},
                        "asset": {"oneOf": [{"$ref": "#/components/schemas/Asset"}, {"type": "null"}]},
                        "position": {"type": ["object", "null"]},
                        "status": {"type": "object", "properties": {
                            "device_id": {"type": ["string", "null"], "format": "uuid"},
                            "last_seen_ms": {"type": ["integer", "null"]},
                            "ignition": {"type": ["string", "null"], "enum": ["on", "off", null]}
                        }},
                        "open_faults": {"type": "array", "items": {"type": "object"}},
                        "custody": {"type": ["object", "null"]},
                        "recent_trips": {"type": "array", "items": {"type": "object"}},
                        "reservations": {"type": "array", "items": {"type": "object"}},
                        "inspections": {"type": "array", "items": {"type": "object"}},
                        "open_defects": {"type": "array", "items": {"type": "object"}}
                    }
                }
            }
        }
    })
}
