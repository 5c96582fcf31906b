//! Inspections (DVIR) under `/api/v1/inspections…`: checklist forms per vehicle
//! type, inspections submitted through the API or by devices (a kiosk check-in,
//! or an `inspection` event), their defects, and a mechanic's signed repair.
//! An open unsafe defect blocks handout: the snapshot flags the asset and
//! kiosks refuse the check-out.

use super::auth::{Caller, Capability};
use super::error::{ApiError, ApiQuery};
use super::{path_uuid, read_body};
use crate::storage::inspections::{
    DefectRecord, DefectRepair, FormItem, InspectionForm, InspectionRecord, InspectionSource,
    ItemResult, Severity,
};
use crate::storage::{now_ms, rfc3339_ms, DeviceRecord, Storage, StorageError};
use crate::AppState;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

const MAX_BODY: usize = 64 << 10;
const MAX_NAME: usize = 100;
const MAX_TEXT: usize = 2000;
const MAX_ITEMS: usize = 100;
const MAX_DEFECTS: usize = 50;
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// Why a submission is refused: a stable code and a message. Nothing is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: &'static str,
    pub message: String,
}

fn refused(code: &'static str, message: impl Into<String>) -> Refused {
    Refused {
        code,
        message: message.into(),
    }
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        ApiError::bad_request(r.code, r.message)
    }
}

fn text(s: &str, what: &str, max: usize, required: bool) -> Result<String, Refused> {
    let t = s.trim();
    if (required && t.is_empty())
        || t.chars().count() > max
        || t.chars().any(|c| c.is_control() && c != '\n')
    {
        let least = if required { 1 } else { 0 };
        return Err(refused(
            "bad_text",
            format!("{what} must be {least} to {max} printable characters"),
        ));
    }
    Ok(t.to_owned())
}

fn sha256_hex(s: &str, what: &str) -> Result<String, Refused> {
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(refused(
            "bad_signature",
            format!("{what} must be the 64-hex-digit SHA-256 of an uploaded blob"),
        ))
    }
}

fn time_ms(s: &str, what: &str) -> Result<i64, Refused> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| refused("bad_time", format!("{what} must be an RFC 3339 time")))?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| refused("bad_time", format!("{what} is out of range")))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewForm {
    pub vehicle_type: String,
    pub name: String,
    pub items: Vec<FormItem>,
}

/// Checks a form; pure.
pub fn check_form(req: &NewForm, id: Uuid, now_ms: i64) -> Result<InspectionForm, Refused> {
    let vehicle_type = text(&req.vehicle_type, "vehicle_type", MAX_NAME, true)?;
    let name = text(&req.name, "name", MAX_NAME, true)?;
    if req.items.is_empty() || req.items.len() > MAX_ITEMS {
        return Err(refused(
            "bad_form",
            format!("a form has 1 to {MAX_ITEMS} items"),
        ));
    }
    let mut items = Vec::with_capacity(req.items.len());
    for i in &req.items {
        let item_id = text(&i.id, "an item id", 40, true)?;
        if items.iter().any(|x: &FormItem| x.id == item_id) {
            return Err(refused(
                "bad_form",
                format!("item id {item_id:?} appears twice"),
            ));
        }
        items.push(FormItem {
            id: item_id,
            label: text(&i.label, "an item label", MAX_NAME, true)?,
        });
    }
    Ok(InspectionForm {
        id,
        vehicle_type,
        name,
        items,
        created_at_ms: now_ms,
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDefect {
    pub item: Option<String>,
    pub description: String,
    pub severity: Severity,
}

/// An inspection as the API and an `inspection` event carry it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewInspection {
    /// The submitter's id, so a retry stores nothing twice; a new one when absent.
    pub id: Option<Uuid>,
    pub asset_id: Uuid,
    pub form_id: Option<Uuid>,
    pub driver: String,
    /// SHA-256 of the driver's signature, a PNG uploaded as a blob.
    pub signature_sha256: Option<String>,
    pub odometer_km: Option<f64>,
    #[serde(default)]
    pub notes: String,
    #[serde(default)]
    pub results: Vec<ItemResult>,
    #[serde(default)]
    pub defects: Vec<NewDefect>,
    /// RFC 3339; now when absent.
    pub inspected_at: Option<String>,
}

/// Checks a submission against its form (when it names one); pure. Blob and
/// asset existence are checked by the caller.
pub fn check_inspection(
    req: &NewInspection,
    form: Option<&InspectionForm>,
    source: InspectionSource,
    device_id: Option<Uuid>,
    now_ms: i64,
) -> Result<InspectionRecord, Refused> {
    let driver = text(&req.driver, "driver", MAX_NAME, true)?;
    let notes = text(&req.notes, "notes", MAX_TEXT, false)?;
    let signature_sha256 = req
        .signature_sha256
        .as_deref()
        .map(|s| sha256_hex(s, "signature_sha256"))
        .transpose()?;
    if let Some(km) = req.odometer_km {
        if !km.is_finite() || !(0.0..=10_000_000.0).contains(&km) {
            return Err(refused(
                "bad_odometer",
                "odometer_km must be 0 to 10,000,000",
            ));
        }
    }
    let inspected_at_ms = match req.inspected_at.as_deref() {
        Some(s) => time_ms(s, "inspected_at")?,
        None => now_ms,
    };
    if req.results.len() > MAX_ITEMS || req.defects.len() > MAX_DEFECTS {
        return Err(refused(
            "bad_inspection",
            format!("at most {MAX_ITEMS} results and {MAX_DEFECTS} defects"),
        ));
    }
    let known = |item: &str| form.is_none_or(|f| f.items.iter().any(|i| i.id == item));
    let mut results: Vec<ItemResult> = Vec::with_capacity(req.results.len());
    for r in &req.results {
        if !known(&r.item) {
            return Err(refused(
                "unknown_item",
                format!("the form has no item {:?}", r.item),
            ));
        }
        if results.iter().any(|x| x.item == r.item) {
            return Err(refused(
                "bad_inspection",
                format!("item {:?} is answered twice", r.item),
            ));
        }
        results.push(ItemResult {
            item: text(&r.item, "a result's item", 40, true)?,
            ok: r.ok,
        });
    }
    if let Some(f) = form {
        if let Some(missing) = f
            .items
            .iter()
            .find(|i| !results.iter().any(|r| r.item == i.id))
        {
            return Err(refused(
                "incomplete_inspection",
                format!("item {:?} ({}) is not answered", missing.id, missing.label),
            ));
        }
    }
    let id = req.id.unwrap_or_else(Uuid::new_v4);
    let mut defects = Vec::with_capacity(req.defects.len());
    for (n, d) in req.defects.iter().enumerate() {
        let item = d
            .item
            .as_deref()
            .map(|i| text(i, "a defect's item", 40, true))
            .transpose()?;
        if let Some(i) = &item {
            if !known(i) {
                return Err(refused(
                    "unknown_item",
                    format!("the form has no item {i:?}"),
                ));
            }
        }
        defects.push(DefectRecord {
            id: defect_id(id, n),
            inspection_id: id,
            asset_id: req.asset_id,
            item,
            description: text(&d.description, "a defect's description", MAX_TEXT, true)?,
            severity: d.severity,
            created_at_ms: inspected_at_ms,
            repair: None,
        });
    }
    Ok(InspectionRecord {
        id,
        asset_id: req.asset_id,
        form_id: req.form_id,
        source,
        device_id,
        driver,
        signature_sha256,
        odometer_km: req.odometer_km,
        notes,
        results,
        inspected_at_ms,
        created_at_ms: now_ms,
        defects,
    })
}

/// The n-th defect of an inspection gets an id derived from the inspection's,
/// so a resent submission names the same defects.
fn defect_id(inspection: Uuid, n: usize) -> Uuid {
    let mut bytes =
        crate::storage::sha256(&[inspection.as_bytes().as_slice(), &n.to_be_bytes()].concat());
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut b = [0u8; 16];
    b.copy_from_slice(&bytes[..16]);
    Uuid::from_bytes(b)
}

/// The inspection a device event carries, if it is one: an `inspection` event
/// (the [`NewInspection`] shape), or a kiosk `checkin`, which is a post-trip
/// inspection whose damage marks are safe defects. Pure.
pub fn from_event(
    device: Uuid,
    kind: &str,
    data: &Value,
    event_ms: i64,
    now_ms: i64,
) -> Option<Result<InspectionRecord, Refused>> {
    match kind {
        "inspection" => Some(
            serde_json::from_value::<NewInspection>(data.clone())
                .map_err(|e| refused("bad_inspection", e.to_string()))
                .and_then(|mut req| {
                    if req.inspected_at.is_none() {
                        req.inspected_at = Some(rfc3339_ms(event_ms));
                    }
                    if req.id.is_none() {
                        return Err(refused(
                            "bad_inspection",
                            "a device inspection needs its id",
                        ));
                    }
                    check_inspection(&req, None, InspectionSource::Device, Some(device), now_ms)
                }),
        ),
        "checkin" => {
            let id = data.get("event_id")?.as_str()?.parse::<Uuid>().ok()?;
            let asset = data.get("asset")?.as_str()?.parse::<Uuid>().ok()?;
            let s = |k: &str| data.get(k).and_then(Value::as_str).unwrap_or("");
            let defects = data
                .get("damage")
                .and_then(Value::as_array)
                .map(|marks| {
                    marks
                        .iter()
                        .take(MAX_DEFECTS)
                        .map(|m| NewDefect {
                            item: None,
                            description: match m.get("note").and_then(Value::as_str) {
                                Some(n) if !n.trim().is_empty() => n.to_owned(),
                                _ => "damage marked at check-in".to_owned(),
                            },
                            severity: Severity::Safe,
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut notes = s("notes").to_owned();
            if let Some(r) = data.get("rating").and_then(Value::as_u64) {
                notes = format!("condition {r}/5. {notes}").trim().to_owned();
            }
            let req = NewInspection {
                id: Some(id),
                asset_id: asset,
                form_id: None,
                driver: match data.get("badge").and_then(Value::as_str) {
                    Some(b) => format!("badge {b}"),
                    None => "unknown driver".to_owned(),
                },
                signature_sha256: data
                    .get("signature")
                    .and_then(|v| v.get("sha256"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                odometer_km: data.get("odometer_km").and_then(Value::as_f64),
                notes: notes.chars().take(MAX_TEXT).collect(),
                results: Vec::new(),
                defects,
                inspected_at: Some(rfc3339_ms(event_ms)),
            };
            Some(check_inspection(
                &req,
                None,
                InspectionSource::Kiosk,
                Some(device),
                now_ms,
            ))
        }
        _ => None,
    }
}

/// The inspections a batch carries, read before it is stored.
pub fn inspections_in(
    device: Uuid,
    batch: &fleet_protocol::Batch,
    now_ms: i64,
) -> Vec<InspectionRecord> {
    batch
        .events
        .iter()
        .filter_map(|e| {
            let data = e.data.to_json();
            match from_event(device, e.kind.as_str(), &data, e.time.wall_ms, now_ms)? {
                Ok(i) => Some(i),
                Err(r) => {
                    tracing::warn!(%device, seq = e.seq, code = r.code, "inspection event not recorded: {}", r.message);
                    None
                }
            }
        })
        .collect()
}

/// Stores the inspections of a stored batch. Failures are logged, not
/// returned: the events are stored either way, and a resend records them.
pub async fn record_from_device(
    state: &AppState,
    device: &DeviceRecord,
    inspections: Vec<InspectionRecord>,
) {
    for i in inspections {
        match state.storage.record_inspection(device.tenant_id, &i).await {
            Ok((stored, true)) => {
                let unsafe_count = stored
                    .defects
                    .iter()
                    .filter(|d| d.severity == Severity::Unsafe)
                    .count();
                tracing::debug!(device = %device.device_id, inspection = %stored.id, unsafe_count, "inspection recorded");
            }
            Ok((_, false)) => {}
            Err(e) => {
                tracing::warn!(device = %device.device_id, inspection = %i.id, "inspection not recorded: {e}");
            }
        }
    }
}

fn item_json(i: &FormItem) -> Value {
    json!({ "id": i.id, "label": i.label })
}

pub fn form_json(f: &InspectionForm) -> Value {
    json!({
        "id": f.id,
        "vehicle_type": f.vehicle_type,
        "name": f.name,
        "items": f.items.iter().map(item_json).collect::<Vec<_>>(),
        "created_at_ms": f.created_at_ms,
        "created_at": rfc3339_ms(f.created_at_ms),
    })
}

pub fn defect_json(d: &DefectRecord) -> Value {
    json!({
        "id": d.id,
        "inspection_id": d.inspection_id,
        "asset_id": d.asset_id,
        "item": d.item,
        "description": d.description,
        "severity": d.severity,
        "created_at_ms": d.created_at_ms,
        "created_at": rfc3339_ms(d.created_at_ms),
        "repair": d.repair.as_ref().map(|r| json!({
            "mechanic": r.mechanic,
            "note": r.note,
            "signature_sha256": r.signature_sha256,
            "repaired_at_ms": r.repaired_at_ms,
            "repaired_at": rfc3339_ms(r.repaired_at_ms),
        })),
    })
}

pub fn inspection_json(i: &InspectionRecord) -> Value {
    json!({
        "id": i.id,
        "asset_id": i.asset_id,
        "form_id": i.form_id,
        "source": i.source,
        "device_id": i.device_id,
        "driver": i.driver,
        "signature_sha256": i.signature_sha256,
        "odometer_km": i.odometer_km,
        "notes": i.notes,
        "results": i.results,
        "inspected_at_ms": i.inspected_at_ms,
        "inspected_at": rfc3339_ms(i.inspected_at_ms),
        "created_at_ms": i.created_at_ms,
        "defects": i.defects.iter().map(defect_json).collect::<Vec<_>>(),
    })
}

async fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    let bytes = read_body(headers, body, MAX_BODY, "request_too_large").await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request("bad_json", format!("request body is not valid: {e}")))
}

async fn check_blob(storage: &dyn Storage, tenant: Uuid, sha: &str) -> Result<(), ApiError> {
    if storage.blob(tenant, sha).await?.is_none() {
        return Err(ApiError::bad_request(
            "unknown_blob",
            format!("no uploaded blob {sha}: upload the signature first"),
        ));
    }
    Ok(())
}

pub async fn list_forms(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let forms = state.storage.inspection_forms(caller.tenant).await?;
    Ok(Json(
        json!({ "forms": forms.iter().map(form_json).collect::<Vec<_>>() }),
    ))
}

pub async fn create_form(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Capability::ManageConfig)?;
    let req: NewForm = json_body(&headers, body).await?;
    let form = check_form(&req, Uuid::new_v4(), now_ms())?;
    state
        .storage
        .insert_inspection_form(caller.tenant, &form)
        .await?;
    state
        .audit(
            &caller,
            "inspection_form.create",
            format!("inspection_form:{}", form.id),
            json!({ "vehicle_type": form.vehicle_type, "name": form.name, "items": form.items.len() }),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(form_json(&form))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    asset_id: Option<Uuid>,
    limit: Option<u32>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<ApiQuery<ListQuery>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let ApiQuery(q) = q?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(
            "bad_query",
            format!("limit must be 1 to {MAX_PAGE}"),
        ));
    }
    let list = state
        .storage
        .list_inspections(caller.tenant, q.asset_id, limit)
        .await?;
    Ok(Json(
        json!({ "inspections": list.iter().map(inspection_json).collect::<Vec<_>>() }),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let id = path_uuid(id)?;
    match state.storage.inspection(caller.tenant, id).await? {
        Some(i) => Ok(Json(inspection_json(&i))),
        None => Err(ApiError::not_found(
            "inspection_not_found",
            "no such inspection",
        )),
    }
}

pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Capability::Custody)?;
    let req: NewInspection = json_body(&headers, body).await?;
    // Only the tenant's own assets are inspected; another tenant's asset id is
    // answered as an unknown one.
    if !super::kiosk::is_tenant_asset(state.storage.as_ref(), caller.tenant, req.asset_id).await? {
        return Err(ApiError::not_found("asset_not_found", "no such asset"));
    }
    let form = match req.form_id {
        Some(f) => Some(
            state
                .storage
                .inspection_form(caller.tenant, f)
                .await?
                .ok_or_else(|| ApiError::bad_request("unknown_form", "no such inspection form"))?,
        ),
        None => None,
    };
    let record = check_inspection(&req, form.as_ref(), InspectionSource::Api, None, now_ms())?;
    if let Some(sha) = &record.signature_sha256 {
        check_blob(&*state.storage, caller.tenant, sha).await?;
    }
    let (stored, created) = state
        .storage
        .record_inspection(caller.tenant, &record)
        .await?;
    if created {
        state
            .audit(
                &caller,
                "inspection.submit",
                format!("inspection:{}", stored.id),
                json!({
                    "asset_id": stored.asset_id,
                    "defects": stored.defects.len(),
                    "unsafe": stored.defects.iter().filter(|d| d.severity == Severity::Unsafe).count(),
                }),
            )
            .await?;
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(inspection_json(&stored))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefectQuery {
    asset_id: Option<Uuid>,
}

pub async fn open_defects(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<ApiQuery<DefectQuery>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let ApiQuery(q) = q?;
    let defects = state
        .storage
        .open_defects(caller.tenant, q.asset_id)
        .await?;
    Ok(Json(
        json!({ "defects": defects.iter().map(defect_json).collect::<Vec<_>>() }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairBody {
    mechanic: String,
    #[serde(default)]
    note: String,
    signature_sha256: String,
}

pub async fn repair(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ManageDevices)?;
    let id = path_uuid(id)?;
    let req: RepairBody = json_body(&headers, body).await?;
    let repair = DefectRepair {
        mechanic: text(&req.mechanic, "mechanic", MAX_NAME, true)?,
        note: text(&req.note, "note", MAX_TEXT, false)?,
        signature_sha256: Some(sha256_hex(&req.signature_sha256, "signature_sha256")?),
        repaired_at_ms: now_ms(),
    };
    if let Some(sha) = &repair.signature_sha256 {
        check_blob(&*state.storage, caller.tenant, sha).await?;
    }
    let fixed = match state
        .storage
        .repair_defect(caller.tenant, id, &repair)
        .await
    {
        Ok(Some(d)) => d,
        Ok(None) => {
            return Err(ApiError::not_found(
                "defect_not_found",
                format!("no defect {id}"),
            ))
        }
        Err(StorageError::Conflict(m)) => {
            return Err(ApiError::new(StatusCode::CONFLICT, "already_repaired", m))
        }
        Err(e) => return Err(e.into()),
    };
    state
        .audit(
            &caller,
            "defect.repair",
            format!("defect:{id}"),
            json!({ "asset_id": fixed.asset_id, "mechanic": repair.mechanic, "severity": fixed.severity }),
        )
        .await?;
    Ok(Json(defect_json(&fixed)))
}

/// The OpenAPI fragment of the inspection endpoints.
pub fn openapi() -> Value {
    use super::openapi::{error_response, json_body, json_response, schema_ref, uuid_param};
    let ok = |name: &str| json_response("ok", schema_ref(name));
    let uuid = json!({"type": "string", "format": "uuid"});
    let nullable_uuid = json!({"type": ["string", "null"], "format": "uuid"});
    let sha = json!({"type": "string", "pattern": "^[0-9a-fA-F]{64}$"});
    json!({
        "paths": {
            "/api/v1/inspections": {
                "get": {
                    "operationId": "listInspections",
                    "summary": "Inspections, newest first, one asset's when asked",
                    "x-capability": "read_fleet",
                    "tags": ["inspections"],
                    "parameters": [
                        {"name": "asset_id", "in": "query", "required": false, "schema": uuid},
                        {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE}}
                    ],
                    "responses": {"200": ok("InspectionList"), "400": error_response("bad_query")}
                },
                "post": {
                    "operationId": "submitInspection",
                    "summary": "Submit an inspection (DVIR) with its defects; an unsafe defect blocks handout until repaired. Resending an id answers the stored one with 200",
                    "x-capability": "custody",
                    "tags": ["inspections"],
                    "requestBody": json_body(schema_ref("NewInspection")),
                    "responses": {
                        "201": ok("Inspection"),
                        "200": ok("Inspection"),
                        "400": error_response("bad_json, bad_text, bad_signature, bad_odometer, bad_time, bad_inspection, unknown_item, incomplete_inspection, unknown_form or unknown_blob"),
                        "404": error_response("asset_not_found")
                    }
                }
            },
            "/api/v1/inspections/{id}": {
                "get": {
                    "operationId": "getInspection",
                    "summary": "One inspection with its defects and their repairs",
                    "x-capability": "read_fleet",
                    "tags": ["inspections"],
                    "parameters": [uuid_param("id")],
                    "responses": {"200": ok("Inspection"), "404": error_response("inspection_not_found")}
                }
            },
            "/api/v1/inspections/forms": {
                "get": {
                    "operationId": "listInspectionForms",
                    "summary": "Checklist forms, by vehicle type",
                    "x-capability": "read_fleet",
                    "tags": ["inspections"],
                    "responses": {"200": ok("InspectionFormList")}
                },
                "post": {
                    "operationId": "createInspectionForm",
                    "summary": "Add a checklist form for a vehicle type",
                    "x-capability": "manage_config",
                    "tags": ["inspections"],
                    "requestBody": json_body(json!({
                        "type": "object", "required": ["vehicle_type", "name", "items"], "additionalProperties": false,
                        "properties": {
                            "vehicle_type": {"type": "string", "minLength": 1, "maxLength": MAX_NAME},
                            "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME},
                            "items": {"type": "array", "minItems": 1, "maxItems": MAX_ITEMS, "items": schema_ref("InspectionFormItem")}
                        }
                    })),
                    "responses": {"201": ok("InspectionForm"), "400": error_response("bad_json, bad_text or bad_form")}
                }
            },
            "/api/v1/inspections/defects": {
                "get": {
                    "operationId": "listOpenDefects",
                    "summary": "Defects not yet repaired, oldest first",
                    "x-capability": "read_fleet",
                    "tags": ["inspections"],
                    "parameters": [{"name": "asset_id", "in": "query", "required": false, "schema": uuid}],
                    "responses": {"200": ok("DefectList"), "400": error_response("bad_query")}
                }
            },
            "/api/v1/inspections/defects/{id}/repair": {
                "post": {
                    "operationId": "repairDefect",
                    "summary": "A mechanic signs a defect's repair (once; audited)",
                    "x-capability": "manage_devices",
                    "tags": ["inspections"],
                    "parameters": [uuid_param("id")],
                    "requestBody": json_body(json!({
                        "type": "object", "required": ["mechanic", "signature_sha256"], "additionalProperties": false,
                        "properties": {
                            "mechanic": super::openapi::printable_text(1, MAX_NAME, true),
                            "note": super::openapi::printable_text(0, MAX_TEXT, true),
                            "signature_sha256": {"description": "a blob uploaded first (POST /api/v1/blobs)", "allOf": [sha]}
                        }
                    })),
                    "responses": {
                        "200": ok("Defect"),
                        "400": error_response("bad_json, bad_text, bad_signature or unknown_blob"),
                        "404": error_response("defect_not_found"),
                        "409": error_response("already_repaired")
                    }
                }
            }
        },
        "components": {
            "schemas": {
                "InspectionFormItem": {
                    "type": "object", "required": ["id", "label"], "additionalProperties": false,
                    "properties": {
                        "id": {"type": "string", "minLength": 1, "maxLength": 40},
                        "label": {"type": "string", "minLength": 1, "maxLength": MAX_NAME}
                    }
                },
                "InspectionForm": {
                    "type": "object", "required": ["id", "vehicle_type", "name", "items", "created_at_ms", "created_at"],
                    "properties": {
                        "id": uuid,
                        "vehicle_type": {"type": "string"},
                        "name": {"type": "string"},
                        "items": {"type": "array", "items": schema_ref("InspectionFormItem")},
                        "created_at_ms": {"type": "integer", "format": "int64"},
                        "created_at": {"type": "string", "format": "date-time"}
                    }
                },
                "InspectionFormList": {
                    "type": "object", "required": ["forms"],
                    "properties": {"forms": {"type": "array", "items": schema_ref("InspectionForm")}}
                },
                "NewInspection": {
                    "type": "object", "required": ["asset_id", "driver"], "additionalProperties": false,
                    "properties": {
                        "id": {"type": "string", "format": "uuid", "description": "the submitter's id: a retry with it stores nothing twice"},
                        "asset_id": uuid,
                        "form_id": uuid,
                        "driver": {"type": "string", "minLength": 1, "maxLength": MAX_NAME},
                        "signature_sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$", "description": "an uploaded PNG blob: the driver's signature"},
                        "odometer_km": {"type": "number", "minimum": 0, "maximum": 10_000_000},
                        "notes": {"type": "string", "maxLength": MAX_TEXT},
                        "results": {"type": "array", "maxItems": MAX_ITEMS, "items": {
                            "type": "object", "required": ["item", "ok"], "additionalProperties": false,
                            "properties": {"item": {"type": "string"}, "ok": {"type": "boolean"}}
                        }},
                        "defects": {"type": "array", "maxItems": MAX_DEFECTS, "items": {
                            "type": "object", "required": ["description", "severity"], "additionalProperties": false,
                            "properties": {
                                "item": {"type": "string"},
                                "description": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
                                "severity": {"type": "string", "enum": ["safe", "unsafe"]}
                            }
                        }},
                        "inspected_at": {"type": "string", "format": "date-time"}
                    }
                },
                "Defect": {
                    "type": "object", "required": ["id", "inspection_id", "asset_id", "description", "severity", "created_at_ms", "repair"],
                    "properties": {
                        "id": uuid,
                        "inspection_id": uuid,
                        "asset_id": uuid,
                        "item": {"type": ["string", "null"]},
                        "description": {"type": "string"},
                        "severity": {"type": "string", "enum": ["safe", "unsafe"]},
                        "created_at_ms": {"type": "integer", "format": "int64"},
                        "created_at": {"type": "string", "format": "date-time"},
                        "repair": {"type": ["object", "null"], "properties": {
                            "mechanic": {"type": "string"},
                            "note": {"type": "string"},
                            "signature_sha256": {"type": ["string", "null"]},
                            "repaired_at_ms": {"type": "integer", "format": "int64"},
                            "repaired_at": {"type": "string", "format": "date-time"}
                        }}
                    }
                },
                "DefectList": {
                    "type": "object", "required": ["defects"],
                    "properties": {"defects": {"type": "array", "items": schema_ref("Defect")}}
                },
                "Inspection": {
                    "type": "object", "required": ["id", "asset_id", "source", "driver", "results", "defects", "inspected_at_ms"],
                    "properties": {
                        "id": uuid,
                        "asset_id": uuid,
                        "form_id": nullable_uuid,
                        "source": {"type": "string", "enum": ["api", "kiosk", "device"]},
                        "device_id": nullable_uuid,
                        "driver": {"type": "string"},
                        "signature_sha256": {"type": ["string", "null"]},
                        "odometer_km": {"type": ["number", "null"]},
                        "notes": {"type": "string"},
                        "results": {"type": "array", "items": {"type": "object", "properties": {"item": {"type": "string"}, "ok": {"type": "boolean"}}}},
                        "inspected_at_ms": {"type": "integer", "format": "int64"},
                        "inspected_at": {"type": "string", "format": "date-time"},
                        "created_at_ms": {"type": "integer", "format": "int64"},
                        "defects": {"type": "array", "items": schema_ref("Defect")}
                    }
                },
                "InspectionList": {
                    "type": "object", "required": ["inspections"],
                    "properties": {"inspections": {"type": "array", "items": schema_ref("Inspection")}}
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> InspectionForm {
        check_form(
            &NewForm {
                vehicle_type: "van".into(),
                name: "Van pre-trip".into(),
                items: vec![
                    FormItem {
                        id: "brakes".into(),
                        label: "Brakes".into(),
                    },
                    FormItem {
                        id: "lights".into(),
                        label: "Lights".into(),
                    },
                ],
            },
            Uuid::new_v4(),
            1,
        )
        .unwrap()
    }

    fn submission() -> NewInspection {
        serde_json::from_value(json!({
            "asset_id": Uuid::new_v4(),
            "driver": "Dana",
            "results": [{"item": "brakes", "ok": false}, {"item": "lights", "ok": true}],
            "defects": [{"item": "brakes", "description": "pedal soft", "severity": "unsafe"}],
        }))
        .unwrap()
    }

    #[test]
    fn a_submission_is_checked_against_its_form() {
        let f = form();
        let ok = check_inspection(&submission(), Some(&f), InspectionSource::Api, None, 7).unwrap();
        assert_eq!(ok.defects.len(), 1);
        assert_eq!(ok.defects[0].severity, Severity::Unsafe);
        assert_eq!(ok.inspected_at_ms, 7);

        let mut missing = submission();
        missing.results.pop();
        let r = check_inspection(&missing, Some(&f), InspectionSource::Api, None, 7).unwrap_err();
        assert_eq!(r.code, "incomplete_inspection");
        assert!(r.message.contains("lights"), "{}", r.message);

        let mut stray = submission();
        stray.defects[0].item = Some("wipers".into());
        let r = check_inspection(&stray, Some(&f), InspectionSource::Api, None, 7).unwrap_err();
        assert_eq!(r.code, "unknown_item");

        let mut bad_sig = submission();
        bad_sig.signature_sha256 = Some("not-a-digest".into());
        let r = check_inspection(&bad_sig, None, InspectionSource::Api, None, 7).unwrap_err();
        assert_eq!(r.code, "bad_signature");

        let mut blank = submission();
        blank.driver = "   ".into();
        assert_eq!(
            check_inspection(&blank, None, InspectionSource::Api, None, 7)
                .unwrap_err()
                .code,
            "bad_text"
        );
    }

    #[test]
    fn a_resent_submission_names_the_same_defects() {
        let mut s = submission();
        s.id = Some(Uuid::new_v4());
        let a = check_inspection(&s, None, InspectionSource::Api, None, 1).unwrap();
        let b = check_inspection(&s, None, InspectionSource::Api, None, 2).unwrap();
        assert_eq!(a.defects[0].id, b.defects[0].id);
        assert_ne!(a.defects[0].id, defect_id(a.id, 1));
    }

    #[test]
    fn a_kiosk_check_in_is_a_post_trip_inspection_with_its_damage_as_safe_defects() {
        let device = Uuid::new_v4();
        let event_id = Uuid::new_v4();
        let asset = Uuid::new_v4();
        let data = json!({
            "event_id": event_id, "kiosk": "k1", "asset": asset, "badge": Uuid::nil(),
            "rating": 4, "notes": "fine", "damage": [{"x": 0.1, "y": 0.2, "note": "dent"}, {"x": 0.5, "y": 0.5, "note": ""}],
            "signature": {"sha256": "ab".repeat(32), "bytes": 10}, "odometer_km": 1200.5,
        });
        let i = from_event(device, "checkin", &data, 1_750_000_000_000, 9)
            .unwrap()
            .unwrap();
        assert_eq!(i.id, event_id);
        assert_eq!(i.asset_id, asset);
        assert_eq!(i.source, InspectionSource::Kiosk);
        assert_eq!(i.device_id, Some(device));
        assert_eq!(i.odometer_km, Some(1200.5));
        assert_eq!(i.notes, "condition 4/5. fine");
        assert_eq!(
            i.signature_sha256.as_deref(),
            Some("ab".repeat(32).as_str())
        );
        let d: Vec<_> = i
            .defects
            .iter()
            .map(|d| (d.description.as_str(), d.severity))
            .collect();
        assert_eq!(
            d,
            vec![
                ("dent", Severity::Safe),
                ("damage marked at check-in", Severity::Safe)
            ]
        );
        assert!(from_event(device, "checkout", &data, 0, 0).is_none());
    }

    #[test]
    fn a_device_inspection_event_needs_its_id_and_may_mark_unsafe_defects() {
        let device = Uuid::new_v4();
        let mut data = serde_json::to_value(json!({
            "asset_id": Uuid::new_v4(), "driver": "Dana",
            "defects": [{"description": "tyre cut", "severity": "unsafe"}],
        }))
        .unwrap();
        let r = from_event(device, "inspection", &data, 5, 9)
            .unwrap()
            .unwrap_err();
        assert_eq!(r.code, "bad_inspection");
        data["id"] = json!(Uuid::new_v4());
        let i = from_event(device, "inspection", &data, 5, 9)
            .unwrap()
            .unwrap();
        assert_eq!(i.source, InspectionSource::Device);
        assert_eq!(i.inspected_at_ms, 5);
        assert_eq!(i.defects[0].severity, Severity::Unsafe);
        data["severity_typo"] = json!(1);
        assert!(from_event(device, "inspection", &data, 5, 9)
            .unwrap()
            .is_err());
    }
}
