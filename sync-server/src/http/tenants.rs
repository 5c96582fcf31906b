//! Tenants, for the server operator only (`/api/v1/tenants`): create one (its
//! first admin key is in the answer, once), list them, set their feature flags
//! and limits.

use super::auth::{hash_key, Operator, FEATURES};
use super::error::{ApiError, ApiJson, ApiPath};
use super::keys::{check_text, double_option};
use crate::storage::access::{SettingsPatch, TenantInfo, TenantSettings};
use crate::storage::{now_ms, rfc3339_ms};
use crate::{AppState, Settings};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Every known feature with whether it is on, and any other flag that was set.
pub(crate) fn features_json(set: &BTreeMap<String, bool>) -> Value {
    let mut all: BTreeMap<&str, bool> = FEATURES.iter().map(|f| (*f, true)).collect();
    for (k, v) in set {
        all.insert(k, *v);
    }
    json!(all)
}

/// The limits in force: the tenant's own, else the server default (`null`: none).
pub(crate) fn limits_json(s: &TenantSettings, server: &Settings) -> Value {
    json!({
        "max_vehicles": s.max_vehicles,
        "max_users": s.max_users.or(server.default_max_users),
        "api_rate_per_min": s.api_rate_per_min.unwrap_or(server.default_api_rate_per_min),
    })
}

fn tenant_json(t: &TenantInfo, server: &Settings) -> Value {
    json!({
        "id": t.tenant_id,
        "name": t.name,
        "created_at": rfc3339_ms(t.created_at_ms),
        "features": features_json(&t.settings.features),
        "limits": limits_json(&t.settings, server),
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LimitsPatch {
    #[serde(default, deserialize_with = "double_option")]
    max_vehicles: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double_option")]
    max_users: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double_option")]
    api_rate_per_min: Option<Option<u32>>,
}

/// Largest value a limit may be set to.
const MAX_LIMIT: u64 = 1 << 40;

fn settings_patch(
    features: BTreeMap<String, bool>,
    limits: LimitsPatch,
) -> Result<SettingsPatch, ApiError> {
    if let Some(f) = features.keys().find(|f| !FEATURES.contains(&f.as_str())) {
        return Err(ApiError::bad_request(
            "unknown_feature",
            format!("{f:?} is not a feature; known: {}", FEATURES.join(", ")),
        ));
    }
    for (name, v) in [
        ("max_vehicles", limits.max_vehicles),
        ("max_users", limits.max_users),
    ] {
        if v.flatten().is_some_and(|v| v > MAX_LIMIT) {
            return Err(ApiError::bad_request(
                "bad_limit",
                format!("{name} must be at most {MAX_LIMIT}, or null for none"),
            ));
        }
    }
    if limits.api_rate_per_min.flatten() == Some(0) {
        return Err(ApiError::bad_request(
            "bad_limit",
            "api_rate_per_min must be at least 1, or null for the server default",
        ));
    }
    Ok(SettingsPatch {
        features,
        max_vehicles: limits.max_vehicles,
        max_users: limits.max_users,
        api_rate_per_min: limits.api_rate_per_min,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    name: String,
    #[serde(default)]
    features: BTreeMap<String, bool>,
    #[serde(default)]
    limits: Option<LimitsPatch>,
}

pub async fn create(
    State(state): State<AppState>,
    operator: Operator,
    ApiJson(req): ApiJson<CreateTenant>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = check_text("name", &req.name, 200)?;
    let patch = settings_patch(req.features, req.limits.unwrap_or_default())?;
    let made = state.storage.create_tenant(&name).await?;
    state
        .storage
        .update_tenant_settings(made.tenant_id, patch, now_ms())
        .await?;
    let key = state
        .storage
        .key_by_hash(hash_key(&made.api_key))
        .await?
        .ok_or_else(|| {
            crate::storage::StorageError::Corrupt("a new tenant's admin key is missing".into())
        })?;
    let info = state
        .storage
        .tenant_info(made.tenant_id)
        .await?
        .ok_or(crate::storage::StorageError::UnknownTenant)?;
    state
        .audit_operator(
            &operator,
            made.tenant_id,
            "tenant.create",
            json!({ "name": name }),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "tenant": tenant_json(&info, &state.settings),
            "admin_key": { "id": key.key.key_id, "prefix": key.key.prefix, "secret": made.api_key },
        })),
    ))
}

pub async fn list(
    State(state): State<AppState>,
    _operator: Operator,
) -> Result<Json<Value>, ApiError> {
    let tenants: Vec<Value> = state
        .storage
        .list_tenants()
        .await?
        .iter()
        .map(|t| tenant_json(t, &state.settings))
        .collect();
    Ok(Json(json!({ "tenants": tenants })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    #[serde(default)]
    features: BTreeMap<String, bool>,
    #[serde(default)]
    limits: Option<LimitsPatch>,
}

pub async fn update(
    State(state): State<AppState>,
    operator: Operator,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<UpdateTenant>,
) -> Result<Json<Value>, ApiError> {
    let features = req.features.clone();
    let patch = settings_patch(req.features, req.limits.unwrap_or_default())?;
    let settings = state
        .storage
        .update_tenant_settings(id, patch, now_ms())
        .await?;
    state
        .audit_operator(
            &operator,
            id,
            "tenant.settings",
            json!({ "features": features, "limits": limits_json(&settings, &state.settings) }),
        )
        .await?;
    let info = state
        .storage
        .tenant_info(id)
        .await?
        .ok_or(crate::storage::StorageError::UnknownTenant)?;
    Ok(Json(tenant_json(&info, &state.settings)))
}

/// The OpenAPI fragment of `/api/v1/tenants` (operator key only).
pub fn openapi() -> Value {
    use super::openapi::{
        error_response, json_body, json_response, nullable, schema_ref, uuid_param,
    };
    let limit = |max: u64| nullable(json!({ "type": "integer", "minimum": 0, "maximum": max }));
    json!({
        "paths": {
            "/api/v1/tenants": {
                "get": {
                    "operationId": "listTenants",
                    "summary": "Every tenant with its feature flags and limits",
                    "tags": ["operator"],
                    "x-capability": "operator",
                    "responses": { "200": json_response("the tenants", schema_ref("TenantList")) }
                },
                "post": {
                    "operationId": "createTenant",
                    "summary": "Create a tenant; its first admin key is in this answer only",
                    "tags": ["operator"],
                    "x-capability": "operator",
                    "requestBody": json_body(schema_ref("CreateTenant")),
                    "responses": {
                        "201": json_response("the tenant and its admin key", schema_ref("NewTenant")),
                        "400": error_response("bad_json, bad_field, unknown_feature, bad_limit")
                    }
                }
            },
            "/api/v1/tenants/{id}": {
                "patch": {
                    "operationId": "updateTenant",
                    "summary": "Switch feature flags and set or clear limits (null clears)",
                    "tags": ["operator"],
                    "x-capability": "operator",
                    "parameters": [uuid_param("id")],
                    "requestBody": json_body(schema_ref("UpdateTenant")),
                    "responses": {
                        "200": json_response("the tenant", schema_ref("Tenant")),
                        "400": error_response("bad_json, unknown_feature, bad_limit"),
                        "404": error_response("tenant_not_found")
                    }
                }
            }
        },
        "components": { "schemas": {
            "Features": {
                "type": "object",
                "description": format!("feature name -> on; known features: {}", FEATURES.join(", ")),
                "additionalProperties": { "type": "boolean" }
            },
            "FeaturesPatch": {
                "type": "object",
                "properties": FEATURES.iter().map(|f| (f.to_string(), json!({ "type": "boolean" }))).collect::<serde_json::Map<_, _>>(),
                "additionalProperties": false
            },
            "Limits": {
                "type": "object",
                "required": ["max_vehicles", "max_users", "api_rate_per_min"],
                "properties": {
                    "max_vehicles": nullable(json!({ "type": "integer", "minimum": 0 })),
                    "max_users": nullable(json!({ "type": "integer", "minimum": 0 })),
                    "api_rate_per_min": { "type": "integer", "minimum": 1 }
                }
            },
            "LimitsPatch": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "max_vehicles": limit(MAX_LIMIT),
                    "max_users": limit(MAX_LIMIT),
                    "api_rate_per_min": nullable(json!({ "type": "integer", "minimum": 1, "maximum": u32::MAX }))
                }
            },
            "Tenant": {
                "type": "object",
                "required": ["id", "name", "created_at", "features", "limits"],
                "properties": {
                    "id": { "type": "string", "format": "uuid" },
                    "name": { "type": "string" },
                    "created_at": { "type": "string", "format": "date-time" },
                    "features": schema_ref("Features"),
                    "limits": schema_ref("Limits")
                }
            },
            "TenantList": { "type": "object", "required": ["tenants"], "properties": { "tenants": { "type": "array", "items": schema_ref("Tenant") } } },
            "CreateTenant": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": false,
                "properties": {
                    "name": { "type": "string", "minLength": 1, "maxLength": 200 },
                    "features": schema_ref("FeaturesPatch"),
                    "limits": schema_ref("LimitsPatch")
                }
            },
            "UpdateTenant": {
                "type": "object",
                "additionalProperties": false,
                "properties": { "features": schema_ref("FeaturesPatch"), "limits": schema_ref("LimitsPatch") }
            },
            "NewTenant": {
                "type": "object",
                "required": ["tenant", "admin_key"],
                "properties": {
                    "tenant": schema_ref("Tenant"),
                    "admin_key": {
                        "type": "object",
                        "required": ["id", "prefix", "secret"],
                        "properties": {
                            "id": { "type": "string", "format": "uuid" },
                            "prefix": { "type": "string" },
                            "secret": { "type": "string" }
                        }
                    }
                }
            }
        } }
    })
}
