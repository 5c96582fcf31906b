//! The operator side of yard kiosks (`/api/v1/…`): issuing and revoking signed
//! labels, the tenant's kiosk policy, custody holders and conflicts. Also the
//! tenant signing key every label and snapshot is signed with, which the CLI
//! (`fleet-sync admin label issue`) and the device endpoints share.

use super::auth::{Caller, Capability};
use super::error::ApiError;
use super::{path_uuid, read_body};
use crate::sealing::{Opened, SealError, Sealing};
use crate::storage::kiosk::{ConflictRecord, ConflictResolution, LabelRecord, StoredSigningKey};
use crate::storage::{now_ms, rfc3339_ms, Storage, StorageError};
use crate::AppState;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ed25519_dalek::SigningKey;
use fleet_protocol::auth::encode_public_key;
use fleet_protocol::label::{short_code, Label, LabelKind};
use fleet_protocol::snapshot::KioskPolicy;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

const MAX_BODY: usize = 16 << 10;
const MAX_NAME: usize = 100;
const MAX_NOTE: usize = 1000;
/// Key boxes number their slots from 1; no box has more.
const MAX_SLOT: u32 = 10_000;
/// Ids to try when a new id's short code is already taken in the tenant.
const SHORT_CODE_TRIES: usize = 4;

/// The tenant's label and snapshot signing key, made on first use, kept as
/// this process seals keys ([`crate::sealing::process_sealing`]).
pub async fn tenant_signing_key(
    storage: &dyn Storage,
    tenant: Uuid,
) -> Result<SigningKey, StorageError> {
    tenant_signing_key_with(storage, crate::sealing::process_sealing(), tenant).await
}

/// [`tenant_signing_key`] with the sealing given. A plain seed found while a
/// key-encryption key is set is sealed in place; without a key in production
/// no new key is made. Sealing errors say which key is needed.
pub async fn tenant_signing_key_with(
    storage: &dyn Storage,
    sealing: &Sealing,
    tenant: Uuid,
) -> Result<SigningKey, StorageError> {
    let sealed = |e: SealError| StorageError::Corrupt(e.to_string());
    let stored = match storage.stored_signing_key(tenant).await? {
        Some(k) => k,
        None => {
            let candidate = SigningKey::generate(&mut rand::rngs::OsRng);
            let secret = match sealing.seal_new(tenant, &candidate.to_bytes()) {
                Ok(s) => s,
                Err(e) => return Err(StorageError::Invalid(e.to_string())),
            };
            storage
                .tenant_signing_key(
                    tenant,
                    StoredSigningKey {
                        secret,
                        public_key: encode_public_key(&candidate.verifying_key()),
                        created_at_ms: now_ms(),
                    },
                )
                .await?
        }
    };
    let Opened::Seed { seed, reseal } = sealing.open(tenant, &stored.secret).map_err(sealed)?;
    if let Some(new) = reseal {
        if storage
            .replace_signing_secret(tenant, &stored.secret, &new)
            .await?
        {
            tracing::info!(%tenant, "tenant signing key sealed at rest");
        }
    }
    Ok(SigningKey::from_bytes(&seed))
}

/// A label to issue, as the API and the CLI take it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueLabel {
    pub kind: LabelKind,
    /// Assets and vehicles: the name; keys: a description; badges: the driver.
    pub name: Option<String>,
    /// Badges: the driver's name (same as `name`).
    pub driver_name: Option<String>,
    /// Assets and vehicles: the id the label names (a new one when absent);
    /// keys: the asset the key opens (required).
    pub asset_id: Option<Uuid>,
    /// Keys: the key-box slot (required).
    pub slot: Option<u32>,
    /// RFC 3339; the label is refused after it.
    pub expires_at: Option<String>,
}

/// Why a label request is refused: a stable code and a message.
#[derive(Debug)]
pub struct LabelRefused {
    pub code: &'static str,
    pub message: String,
}

impl From<LabelRefused> for ApiError {
    fn from(r: LabelRefused) -> Self {
        ApiError::bad_request(r.code, r.message)
    }
}

fn refused(code: &'static str, message: impl Into<String>) -> LabelRefused {
    LabelRefused {
        code,
        message: message.into(),
    }
}

fn clean_name(s: Option<&str>, what: &str) -> Result<Option<String>, LabelRefused> {
    match s.map(str::trim) {
        None => Ok(None),
        Some(n)
            if n.is_empty() || n.chars().count() > MAX_NAME || n.chars().any(char::is_control) =>
        {
            Err(refused(
                "bad_name",
                format!("{what} must be 1 to {MAX_NAME} printable characters"),
            ))
        }
        Some(n) => Ok(Some(n.to_owned())),
    }
}

/// The checked parts of a label request: what a label row needs besides its id.
#[derive(Debug)]
struct Checked {
    kind: LabelKind,
    name: String,
    fixed_id: Option<Uuid>,
    asset_id: Option<Uuid>,
    slot: Option<u32>,
    expires_at_s: Option<u32>,
}

fn check(req: &IssueLabel, now_ms: i64) -> Result<Checked, LabelRefused> {
    let name = clean_name(req.name.as_deref(), "name")?;
    let driver = clean_name(req.driver_name.as_deref(), "driver_name")?;
    let expires_at_s = match req.expires_at.as_deref() {
        None => None,
        Some(s) => {
            let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|_| refused("bad_expiry", "expires_at must be an RFC 3339 time"))?;
            let secs = t.unix_timestamp();
            if secs * 1000 <= now_ms {
                return Err(refused("bad_expiry", "expires_at is in the past"));
            }
            Some(
                u32::try_from(secs).map_err(|_| {
                    refused("bad_expiry", "expires_at must be before the year 2106")
                })?,
            )
        }
    };
    let no = |field: &str, kind: LabelKind| {
        refused(
            "bad_label",
            format!("{field} does not apply to a {kind} label"),
        )
    };
    match req.kind {
        LabelKind::Asset | LabelKind::Vehicle => {
            if req.slot.is_some() {
                return Err(no("slot", req.kind));
            }
            if driver.is_some() {
                return Err(no("driver_name", req.kind));
            }
            Ok(Checked {
                kind: req.kind,
                name: name.ok_or_else(|| {
                    refused("bad_label", "an asset or vehicle label needs a name")
                })?,
                fixed_id: req.asset_id,
                asset_id: None,
                slot: None,
                expires_at_s,
            })
        }
        LabelKind::Key => {
            if driver.is_some() {
                return Err(no("driver_name", req.kind));
            }
            let asset = req
                .asset_id
                .ok_or_else(|| refused("bad_label", "a key label needs the asset_id it opens"))?;
            let slot = req
                .slot
                .ok_or_else(|| refused("bad_label", "a key label needs its key-box slot"))?;
            if slot == 0 || slot > MAX_SLOT {
                return Err(refused("bad_slot", format!("slot must be 1 to {MAX_SLOT}")));
            }
            Ok(Checked {
                kind: req.kind,
                name: name.unwrap_or_else(|| format!("key of {asset}")),
                fixed_id: None,
                asset_id: Some(asset),
                slot: Some(slot),
                expires_at_s,
            })
        }
        LabelKind::Badge => {
            if req.slot.is_some() {
                return Err(no("slot", req.kind));
            }
            if req.asset_id.is_some() {
                return Err(no("asset_id", req.kind));
            }
            let name = match (name, driver) {
                (Some(a), Some(b)) if a != b => {
                    return Err(refused("bad_label", "name and driver_name differ"))
                }
                (a, b) => a
                    .or(b)
                    .ok_or_else(|| refused("bad_label", "a badge label needs the driver_name"))?,
            };
            Ok(Checked {
                kind: req.kind,
                name,
                fixed_id: None,
                asset_id: None,
                slot: None,
                expires_at_s,
            })
        }
    }
}

/// Whether `id` names one of the tenant's assets: an entry in the asset
/// catalog, or a vehicle or asset tag issued here (such tags mint their own
/// ids). Another tenant's ids are not found either way.
pub async fn is_tenant_asset(
    storage: &dyn Storage,
    tenant: Uuid,
    id: Uuid,
) -> Result<bool, StorageError> {
    if storage.asset(tenant, id).await?.is_some() {
        return Ok(true);
    }
    Ok(storage
        .label(tenant, id)
        .await?
        .is_some_and(|l| matches!(l.kind, LabelKind::Vehicle | LabelKind::Asset)))
}

/// Checks, signs and stores a label. `Ok(Err(_))` is a refused request (nothing
/// written); `Err(_)` a storage failure.
pub async fn issue_label(
    storage: &dyn Storage,
    tenant: Uuid,
    req: &IssueLabel,
) -> Result<Result<LabelRecord, LabelRefused>, StorageError> {
    let now = now_ms();
    let checked = match check(req, now) {
        Ok(c) => c,
        Err(r) => return Ok(Err(r)),
    };
    // A key label binds one of the tenant's own assets; another tenant's asset
    // id is answered as an unknown one.
    if let Some(asset) = checked.asset_id {
        if !is_tenant_asset(storage, tenant, asset).await? {
            return Ok(Err(refused(
                "unknown_asset",
                "asset_id is not an asset of this tenant",
            )));
        }
    }
    let key = tenant_signing_key(storage, tenant).await?;
    let tries = if checked.fixed_id.is_some() {
        1
    } else {
        SHORT_CODE_TRIES
    };
    let mut last = None;
    for _ in 0..tries {
        let id = checked.fixed_id.unwrap_or_else(Uuid::new_v4);
        let label = Label {
            kind: checked.kind,
            id,
            expires_at_s: checked.expires_at_s,
        };
        let record = LabelRecord {
            id,
            kind: checked.kind,
            name: checked.name.clone(),
            asset_id: checked.asset_id,
            slot: checked.slot,
            short_code: short_code(id),
            text: label.sign(&key),
            expires_at_s: checked.expires_at_s,
            created_at_ms: now,
            revoked_at_ms: None,
        };
        match storage.insert_label(tenant, &record).await {
            Ok(()) => return Ok(Ok(record)),
            Err(StorageError::Conflict(m)) => last = Some(m),
            Err(e) => return Err(e),
        }
    }
    Err(StorageError::Conflict(last.unwrap_or_default()))
}

pub fn label_json(l: &LabelRecord) -> Value {
    json!({
        "id": l.id,
        "kind": l.kind,
        "name": l.name,
        "asset_id": l.asset_id,
        "slot": l.slot,
        "short_code": l.short_code,
        "text": l.text,
        "expires_at": l.expires_at_s.map(|s| rfc3339_ms(i64::from(s) * 1000)),
        "created_at": rfc3339_ms(l.created_at_ms),
        "revoked_at": l.revoked_at_ms.map(rfc3339_ms),
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

pub async fn create_label(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Capability::ManageDevices)?;
    let req: IssueLabel = json_body(&headers, body).await?;
    let label = match issue_label(&*state.storage, caller.tenant, &req).await {
        Ok(Ok(l)) => l,
        Ok(Err(refused)) => return Err(refused.into()),
        Err(StorageError::Conflict(_)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "label_exists",
                "a label for this id, or with its short code, already exists",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    state
        .audit(
            &caller,
            "label.issue",
            format!("label:{}", label.id),
            json!({ "kind": label.kind, "name": label.name }),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(label_json(&label))).into_response())
}

pub async fn list_labels(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let labels = state.storage.list_labels(caller.tenant).await?;
    Ok(Json(json!({
        "labels": labels.iter().map(label_json).collect::<Vec<_>>()
    })))
}

pub async fn revoke_label(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ManageDevices)?;
    let id = path_uuid(id)?;
    let label = state
        .storage
        .label(caller.tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("label_not_found", "no such label"))?;
    if !matches!(label.kind, LabelKind::Badge | LabelKind::Key) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "label_not_revocable",
            "only badge and key labels are revoked; an asset label names the asset itself",
        ));
    }
    let label = state
        .storage
        .revoke_label(caller.tenant, id, now_ms())
        .await?
        .ok_or_else(|| ApiError::not_found("label_not_found", "no such label"))?;
    state
        .audit(
            &caller,
            "label.revoke",
            format!("label:{id}"),
            json!({ "kind": label.kind }),
        )
        .await?;
    Ok(Json(label_json(&label)))
}

pub async fn get_policy(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<KioskPolicy>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    Ok(Json(state.storage.kiosk_policy(caller.tenant).await?))
}

pub async fn put_policy(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<KioskPolicy>, ApiError> {
    caller.require(Capability::ManageConfig)?;
    let policy: KioskPolicy = json_body(&headers, body).await?;
    if policy.grace_minutes > 24 * 60 {
        return Err(ApiError::bad_request(
            "bad_policy",
            "grace_minutes must be at most 1440",
        ));
    }
    if policy.max_checkout_hours == 0 || policy.max_checkout_hours > 24 * 90 {
        return Err(ApiError::bad_request(
            "bad_policy",
            "max_checkout_hours must be 1 to 2160",
        ));
    }
    state
        .storage
        .set_kiosk_policy(caller.tenant, policy, now_ms())
        .await?;
    state
        .audit(
            &caller,
            "kiosk_policy.set",
            format!("tenant:{}", caller.tenant),
            serde_json::to_value(policy).expect("policy serialises"),
        )
        .await?;
    Ok(Json(policy))
}

pub async fn custody(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let holders = state.storage.custody_holders(caller.tenant).await?;
    Ok(Json(json!({
        "assets": holders.iter().map(|h| json!({
            "asset_id": h.asset_id,
            "holder": h.holder,
            "ops": h.ops,
            "updated_at": rfc3339_ms(h.updated_at_ms),
        })).collect::<Vec<_>>()
    })))
}

fn conflict_json(c: &ConflictRecord) -> Value {
    json!({
        "id": c.id,
        "asset_id": c.asset_id,
        "first": c.first,
        "second": c.second,
        "detected_at": rfc3339_ms(c.detected_at_ms),
        "resolution": c.resolution.as_ref().map(|r| json!({
            "holder_badge": r.holder_badge,
            "note": r.note,
            "resolved_by": r.resolved_by,
            "resolved_at": rfc3339_ms(r.resolved_at_ms),
        })),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConflictsQuery {
    #[serde(default)]
    include_resolved: bool,
}

pub async fn conflicts(
    State(state): State<AppState>,
    caller: Caller,
    super::error::ApiQuery(q): super::error::ApiQuery<ConflictsQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let list = state
        .storage
        .custody_conflicts(caller.tenant, q.include_resolved)
        .await?;
    Ok(Json(json!({
        "conflicts": list.iter().map(conflict_json).collect::<Vec<_>>()
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    /// The badge that holds the asset now; `null` when it is back in the yard.
    holder_badge: Option<Uuid>,
    note: String,
}

pub async fn resolve_conflict(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::Custody)?;
    let id = path_uuid(id)?;
    let req: ResolveBody = json_body(&headers, body).await?;
    let note = req.note.trim();
    if note.is_empty() || note.chars().count() > MAX_NOTE {
        return Err(ApiError::bad_request(
            "bad_note",
            format!("note must be 1 to {MAX_NOTE} characters: say what happened"),
        ));
    }
    let resolution = ConflictResolution {
        holder_badge: req.holder_badge,
        note: note.to_owned(),
        resolved_by: Some(caller.key_id),
        resolved_at_ms: now_ms(),
    };
    let resolved = match state
        .storage
        .resolve_custody_conflict(caller.tenant, id, resolution)
        .await
    {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(ApiError::not_found(
                "custody_conflict_not_found",
                "no such custody conflict",
            ))
        }
        Err(StorageError::Conflict(m)) => {
            return Err(ApiError::new(StatusCode::CONFLICT, "already_resolved", m))
        }
        Err(e) => return Err(e.into()),
    };
    state
        .audit(
            &caller,
            "custody_conflict.resolve",
            format!("custody_conflict:{id}"),
            json!({ "asset_id": resolved.asset_id, "holder_badge": req.holder_badge, "note": note }),
        )
        .await?;
    Ok(Json(conflict_json(&resolved)))
}

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// The OpenAPI fragment of the kiosk operator endpoints.
pub fn openapi() -> Value {
    let ok = |schema: &str| json!({"description": "ok", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    let id_param = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}});
    json!({
        "paths": {
            "/api/v1/labels": {
                "post": {
                    "operationId": "issueLabel",
                    "summary": "Issue a signed QR label (asset, vehicle, key tag or driver badge)",
                    "x-capability": "manage_devices",
                    "tags": ["kiosk"],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/IssueLabel"}}}},
                    "responses": {
                        "201": {"description": "issued", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/KioskLabel"}}}},
                        "400": error_response("bad request: bad_json, bad_label, bad_name, bad_slot, bad_expiry"),
                        "409": error_response("label_exists: a label for this asset id already exists")
                    }
                },
                "get": {
                    "operationId": "listLabels",
                    "summary": "Every label the tenant issued",
                    "x-capability": "read_fleet",
                    "tags": ["kiosk"],
                    "responses": {"200": ok("KioskLabelList")}
                }
            },
            "/api/v1/labels/{id}/revoke": {
                "post": {
                    "operationId": "revokeLabel",
                    "summary": "Revoke a badge or key label; the next kiosk snapshot refuses it",
                    "x-capability": "manage_devices",
                    "tags": ["kiosk"],
                    "parameters": [id_param],
                    "responses": {
                        "200": ok("KioskLabel"),
                        "404": error_response("label_not_found"),
                        "409": error_response("label_not_revocable: asset and vehicle labels are not revoked")
                    }
                }
            },
            "/api/v1/kiosk-policy": {
                "get": {
                    "operationId": "getKioskPolicy",
                    "summary": "The tenant's kiosk policy (walk-ups, grace, longest checkout)",
                    "x-capability": "read_fleet",
                    "tags": ["kiosk"],
                    "responses": {"200": ok("KioskPolicy")}
                },
                "put": {
                    "operationId": "setKioskPolicy",
                    "summary": "Set the tenant's kiosk policy; kiosks get it with their next snapshot",
                    "x-capability": "manage_config",
                    "tags": ["kiosk"],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/KioskPolicy"}}}},
                    "responses": {"200": ok("KioskPolicy"), "400": error_response("bad_json or bad_policy")}
                }
            },
            "/api/v1/custody": {
                "get": {
                    "operationId": "listCustody",
                    "summary": "Who holds each asset, from its merged custody document",
                    "x-capability": "read_fleet",
                    "tags": ["kiosk"],
                    "responses": {"200": ok("CustodyList")}
                }
            },
            "/api/v1/custody/conflicts": {
                "get": {
                    "operationId": "listCustodyConflicts",
                    "summary": "Custody conflicts: two check-outs of one asset with no check-in between",
                    "x-capability": "read_fleet",
                    "tags": ["kiosk"],
                    "parameters": [{"name": "include_resolved", "in": "query", "required": false, "schema": {"type": "boolean", "default": false}}],
                    "responses": {"200": ok("CustodyConflictList"), "400": error_response("bad_query")}
                }
            },
            "/api/v1/custody/conflicts/{id}/resolve": {
                "post": {
                    "operationId": "resolveCustodyConflict",
                    "summary": "Resolve a custody conflict: who holds the asset now, and why (audited)",
                    "x-capability": "custody",
                    "tags": ["kiosk"],
                    "parameters": [id_param],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["note"], "additionalProperties": false,
                        "properties": {
                            "holder_badge": {"type": ["string", "null"], "format": "uuid"},
                            "note": {"type": "string", "minLength": 1, "maxLength": MAX_NOTE}
                        }
                    }}}},
                    "responses": {
                        "200": ok("CustodyConflict"),
                        "400": error_response("bad_json or bad_note"),
                        "404": error_response("custody_conflict_not_found"),
                        "409": error_response("already_resolved")
                    }
                }
            }
        },
        "components": {
            "schemas": {
                "IssueLabel": {
                    "type": "object", "required": ["kind"], "additionalProperties": false,
                    "properties": {
                        "kind": {"type": "string", "enum": ["asset", "vehicle", "key", "badge"]},
                        "name": super::openapi::printable_text(1, MAX_NAME, false),
                        "driver_name": super::openapi::printable_text(1, MAX_NAME, false),
                        "asset_id": {"type": "string", "format": "uuid"},
                        "slot": {"type": "integer", "minimum": 1, "maximum": MAX_SLOT},
                        "expires_at": {"type": "string", "format": "date-time", "description": "in the future and before 2106"}
                    },
                    "description": "an asset or vehicle label has a name (and may fix its asset_id); a key label the asset_id it opens and its slot; a badge the driver_name (or name: both, then the same)",
                    "anyOf": [
                        {"properties": {"kind": {"enum": ["asset", "vehicle"]}, "slot": false, "driver_name": false}, "required": ["name"]},
                        {"properties": {"kind": {"const": "key"}, "driver_name": false}, "required": ["asset_id", "slot"]},
                        {"properties": {"kind": {"const": "badge"}, "slot": false, "asset_id": false, "name": false}, "required": ["driver_name"]},
                        {"properties": {"kind": {"const": "badge"}, "slot": false, "asset_id": false, "driver_name": false}, "required": ["name"]}
                    ]
                },
                "KioskLabel": {
                    "type": "object",
                    "required": ["id", "kind", "name", "short_code", "text", "created_at"],
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "kind": {"type": "string", "enum": ["asset", "vehicle", "key", "badge"]},
                        "name": {"type": "string"},
                        "asset_id": {"type": ["string", "null"], "format": "uuid"},
                        "slot": {"type": ["integer", "null"]},
                        "short_code": {"type": "string", "description": "printed under the QR, typed at a kiosk when the camera fails"},
                        "text": {"type": "string", "description": "the QR text: base45, signed by the tenant key"},
                        "expires_at": {"type": ["string", "null"], "format": "date-time"},
                        "created_at": {"type": "string", "format": "date-time"},
                        "revoked_at": {"type": ["string", "null"], "format": "date-time"}
                    }
                },
                "KioskLabelList": {
                    "type": "object", "required": ["labels"],
                    "properties": {"labels": {"type": "array", "items": {"$ref": "#/components/schemas/KioskLabel"}}}
                },
                "KioskPolicy": {
                    "type": "object", "required": ["walk_up", "grace_minutes", "max_checkout_hours"], "additionalProperties": false,
                    "properties": {
                        "walk_up": {"type": "string", "enum": ["allow", "refuse", "queue"]},
                        "grace_minutes": {"type": "integer", "minimum": 0, "maximum": 1440},
                        "max_checkout_hours": {"type": "integer", "minimum": 1, "maximum": 2160}
                    }
                },
                "CustodyOp": {
                    "type": "object", "required": ["op", "kiosk", "badge", "at_ms", "event_id"],
                    "properties": {
                        "op": {"type": "string", "enum": ["check_out", "check_in"]},
                        "kiosk": {"type": "string"},
                        "badge": {"type": "string", "format": "uuid"},
                        "at_ms": {"type": "integer", "format": "int64"},
                        "event_id": {"type": "string", "format": "uuid"}
                    }
                },
                "CustodyList": {
                    "type": "object", "required": ["assets"],
                    "properties": {"assets": {"type": "array", "items": {
                        "type": "object", "required": ["asset_id", "holder", "ops", "updated_at"],
                        "properties": {
                            "asset_id": {"type": "string", "format": "uuid"},
                            "holder": {"oneOf": [{"$ref": "#/components/schemas/CustodyOp"}, {"type": "null"}]},
                            "ops": {"type": "integer"},
                            "updated_at": {"type": "string", "format": "date-time"}
                        }
                    }}}
                },
                "CustodyConflict": {
                    "type": "object", "required": ["id", "asset_id", "first", "second", "detected_at", "resolution"],
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "asset_id": {"type": "string", "format": "uuid"},
                        "first": {"$ref": "#/components/schemas/CustodyOp"},
                        "second": {"$ref": "#/components/schemas/CustodyOp"},
                        "detected_at": {"type": "string", "format": "date-time"},
                        "resolution": {"type": ["object", "null"], "properties": {
                            "holder_badge": {"type": ["string", "null"], "format": "uuid"},
                            "note": {"type": "string"},
                            "resolved_by": {"type": ["string", "null"], "format": "uuid"},
                            "resolved_at": {"type": "string", "format": "date-time"}
                        }}
                    }
                },
                "CustodyConflictList": {
                    "type": "object", "required": ["conflicts"],
                    "properties": {"conflicts": {"type": "array", "items": {"$ref": "#/components/schemas/CustodyConflict"}}}
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(kind: LabelKind) -> IssueLabel {
        IssueLabel {
            kind,
            name: None,
            driver_name: None,
            asset_id: None,
            slot: None,
            expires_at: None,
        }
    }

    #[test]
    fn each_kind_needs_its_own_fields_and_refuses_the_others() {
        let now = 1_750_000_000_000;
        let mut key = req(LabelKind::Key);
        key.asset_id = Some(Uuid::new_v4());
        assert_eq!(
            check(&key, now).unwrap_err().message,
            "a key label needs its key-box slot"
        );
        key.slot = Some(3);
        assert_eq!(check(&key, now).unwrap().slot, Some(3));
        key.slot = Some(0);
        assert_eq!(check(&key, now).unwrap_err().code, "bad_slot");

        let mut badge = req(LabelKind::Badge);
        assert_eq!(check(&badge, now).unwrap_err().code, "bad_label");
        badge.driver_name = Some("  Ana  ".into());
        assert_eq!(check(&badge, now).unwrap().name, "Ana");
        badge.slot = Some(1);
        assert_eq!(check(&badge, now).unwrap_err().code, "bad_label");

        let mut van = req(LabelKind::Vehicle);
        van.name = Some("Van\u{7}".into());
        assert_eq!(check(&van, now).unwrap_err().code, "bad_name");
        van.name = Some("Van 7".into());
        van.expires_at = Some("2020-01-01T00:00:00Z".into());
        assert_eq!(check(&van, now).unwrap_err().code, "bad_expiry");
        van.expires_at = Some("2030-01-01T00:00:00Z".into());
        assert_eq!(check(&van, now).unwrap().expires_at_s, Some(1_893_456_000));
    }
}
