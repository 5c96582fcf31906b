//! API keys of a tenant (`/api/v1/keys`) and the caller's own view (`/api/v1/me`).
//! The secret of a new key is in the creation answer and nowhere else.

use super::auth::{mint_key, Caller, Capability, Role};
use super::error::{ApiError, ApiJson, ApiPath};
use crate::storage::access::{ApiKey, NewKey};
use crate::storage::{now_ms, rfc3339_ms};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use uuid::Uuid;

pub(crate) fn time_json(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |m| Value::String(rfc3339_ms(m)))
}

/// An RFC 3339 time as Unix milliseconds.
pub(crate) fn parse_time(field: &str, s: &str) -> Result<i64, ApiError> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "bad_time",
                format!("{field} must be an RFC 3339 time such as 2030-01-31T12:00:00Z"),
            )
        })
}

/// 1 to `max` characters, none of them control characters, trimmed.
pub(crate) fn check_text(field: &str, s: &str, max: usize) -> Result<String, ApiError> {
    let t = s.trim();
    if t.is_empty() || t.chars().count() > max || t.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "bad_field",
            format!("{field} must be 1 to {max} printable characters"),
        ));
    }
    Ok(t.to_owned())
}

/// For PATCH bodies: a field that is absent is `None`, `null` is `Some(None)`.
pub(crate) fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

pub(crate) fn key_json(k: &ApiKey, now: i64) -> Value {
    let state = if k.revoked_at_ms.is_some() {
        "revoked"
    } else if k.expires_at_ms.is_some_and(|at| now >= at) {
        "expired"
    } else {
        "active"
    };
    json!({
        "id": k.key_id,
        "prefix": k.prefix,
        "name": k.name,
        "role": k.role,
        "scopes": k.scopes,
        "user_id": k.user_id,
        "created_by": k.created_by,
        "created_at": rfc3339_ms(k.created_at_ms),
        "expires_at": time_json(k.expires_at_ms),
        "revoked_at": time_json(k.revoked_at_ms),
        "last_used_at": time_json(k.last_used_ms),
        "state": state,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    name: String,
    role: Role,
    #[serde(default)]
    scopes: Option<Vec<Capability>>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    user_id: Option<Uuid>,
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<ApiJson<CreateKey>, ApiError>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Capability::ManageKeys)?;
    let ApiJson(req) = body?;
    let name = check_text("name", &req.name, 100)?;
    // Nobody hands out more than they have.
    if !req.role.is_within(caller.role) {
        return Err(ApiError::forbidden(
            "role_exceeds_caller",
            format!("a {} key may not create a {} key", caller.role, req.role),
        ));
    }
    if let Some(scopes) = &req.scopes {
        if scopes.is_empty() {
            return Err(ApiError::bad_request(
                "bad_scopes",
                "scopes must name at least one capability, or be left out",
            ));
        }
        if let Some(c) = scopes.iter().find(|c| !req.role.has(**c)) {
            return Err(ApiError::bad_request(
                "bad_scopes",
                format!("the {} role does not have {c}", req.role),
            ));
        }
        if let Some(c) = scopes.iter().find(|c| !caller.can(**c)) {
            return Err(ApiError::forbidden(
                "scope_exceeds_caller",
                format!("this key may not hand out {c}"),
            ));
        }
    } else if let Some(c) = req.role.capabilities().iter().find(|c| !caller.can(**c)) {
        // A scoped caller may only make keys scoped within its own scopes.
        return Err(ApiError::forbidden(
            "scope_exceeds_caller",
            format!("this key may not hand out {c}; give the new key scopes"),
        ));
    }
    let now = now_ms();
    let expires_at_ms = match &req.expires_at {
        None => None,
        Some(s) => {
            let at = parse_time("expires_at", s)?;
            if at <= now {
                return Err(ApiError::bad_request(
                    "bad_time",
                    "expires_at must be in the future",
                ));
            }
            Some(at)
        }
    };
    if let Some(u) = req.user_id {
        let user = state
            .storage
            .user(caller.tenant, u)
            .await?
            .ok_or_else(|| ApiError::not_found("user_not_found", "no such user"))?;
        if !req.role.is_within(user.role) {
            return Err(ApiError::bad_request(
                "role_exceeds_user",
                format!(
                    "{} is a {}; their keys may not be {}",
                    user.email, user.role, req.role
                ),
            ));
        }
    }
    let minted = mint_key();
    let mut scopes = req.scopes;
    if let Some(s) = scopes.as_mut() {
        s.sort();
        s.dedup();
    }
    let key = state
        .storage
        .create_key(
            caller.tenant,
            NewKey {
                key_hash: minted.hash,
                prefix: minted.prefix,
                name,
                role: req.role,
                scopes,
                user_id: req.user_id,
                created_by: Some(caller.key_id),
                expires_at_ms,
            },
            now,
        )
        .await?;
    state
        .audit(
            &caller,
            "key.create",
            format!("key:{}", key.key_id),
            json!({ "name": key.name, "role": key.role, "scopes": key.scopes, "user_id": key.user_id, "expires_at": time_json(key.expires_at_ms) }),
        )
        .await?;
    let mut body = key_json(&key, now);
    body["secret"] = Value::String(minted.secret);
    Ok((StatusCode::CREATED, Json(body)))
}

pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ManageKeys)?;
    let now = now_ms();
    let keys: Vec<Value> = state
        .storage
        .list_keys(caller.tenant)
        .await?
        .iter()
        .map(|k| key_json(k, now))
        .collect();
    Ok(Json(json!({ "keys": keys })))
}

pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ManageKeys)?;
    let key = state
        .storage
        .revoke_key(caller.tenant, id, now_ms())
        .await?;
    state
        .audit(
            &caller,
            "key.revoke",
            format!("key:{id}"),
            json!({ "name": key.name, "prefix": key.prefix }),
        )
        .await?;
    Ok(Json(key_json(&key, now_ms())))
}

/// Who the caller is: tenant, key, user, what it may do, the tenant's flags and limits.
pub async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let now = now_ms();
    // A user's session has no key to show.
    let key = match caller.session_id {
        Some(_) => None,
        None => Some(
            state
                .storage
                .list_keys(caller.tenant)
                .await?
                .into_iter()
                .find(|k| k.key_id == caller.key_id)
                .ok_or_else(|| ApiError::unauthorized("bad_api_key", "the API key is not valid"))?,
        ),
    };
    let user = match caller.user_id {
        Some(u) => state.storage.user(caller.tenant, u).await?,
        None => None,
    };
    let tenant = state.storage.tenant_info(caller.tenant).await?;
    Ok(Json(json!({
        "tenant_id": caller.tenant,
        "tenant_name": tenant.as_ref().map(|t| t.name.clone()),
        "role": caller.role,
        "capabilities": caller.capabilities(),
        "key": key.as_ref().map(|k| key_json(k, now)),
        "session": caller.session_id.is_some(),
        "user": user.as_ref().map(super::users::user_json),
        "features": super::tenants::features_json(&caller.features),
        "limits": tenant.map(|t| super::tenants::limits_json(&t.settings, &state.settings)),
    })))
}

/// The OpenAPI fragment of `/api/v1/keys` and `/api/v1/me`.
pub fn openapi() -> Value {
    use super::openapi::{
        error_response, json_body, json_response, nullable, schema_ref, uuid_param,
    };
    let time = json!({ "type": "string", "format": "date-time" });
    let uuid = json!({ "type": "string", "format": "uuid" });
    let key_props = json!({
        "id": uuid,
        "prefix": { "type": "string" },
        "name": { "type": "string" },
        "role": schema_ref("Role"),
        "scopes": nullable(json!({ "type": "array", "items": schema_ref("Capability") })),
        "user_id": nullable(uuid.clone()),
        "created_by": nullable(uuid.clone()),
        "created_at": time,
        "expires_at": nullable(time.clone()),
        "revoked_at": nullable(time.clone()),
        "last_used_at": nullable(time.clone()),
        "state": { "type": "string", "enum": ["active", "revoked", "expired"] }
    });
    let key_required = json!([
        "id",
        "prefix",
        "name",
        "role",
        "scopes",
        "user_id",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
        "state"
    ]);
    let mut new_key_props = key_props.clone();
    new_key_props["secret"] =
        json!({ "type": "string", "description": "the key itself; shown only in this answer" });
    let mut new_key_required = key_required.clone();
    new_key_required
        .as_array_mut()
        .unwrap()
        .push(json!("secret"));
    json!({
        "paths": {
            "/api/v1/keys": {
                "get": {
                    "operationId": "listKeys",
                    "summary": "The tenant's API keys (never their secrets)",
                    "tags": ["access"],
                    "x-capability": "manage_keys",
                    "responses": { "200": json_response("the keys", schema_ref("KeyList")) }
                },
                "post": {
                    "operationId": "createKey",
                    "summary": "Create an API key; the secret is in this answer only",
                    "description": "The key's role and scopes may not exceed the caller's; a key for a user may not exceed the user's role.",
                    "tags": ["access"],
                    "x-capability": "manage_keys",
                    "requestBody": json_body(schema_ref("CreateKey")),
                    "responses": {
                        "201": json_response("the new key with its secret", schema_ref("NewKey")),
                        "400": error_response("bad_json, bad_field, bad_scopes, bad_time, role_exceeds_user"),
                        "403": error_response("forbidden, out_of_scope, role_exceeds_caller, scope_exceeds_caller"),
                        "404": error_response("user_not_found")
                    }
                }
            },
            "/api/v1/keys/{id}": {
                "delete": {
                    "operationId": "revokeKey",
                    "summary": "Revoke an API key; its next request is refused with key_revoked",
                    "tags": ["access"],
                    "x-capability": "manage_keys",
                    "parameters": [uuid_param("id")],
                    "responses": {
                        "200": json_response("the revoked key", schema_ref("Key")),
                        "404": error_response("key_not_found")
                    }
                }
            },
            "/api/v1/me": {
                "get": {
                    "operationId": "whoAmI",
                    "summary": "The caller: tenant, role, capabilities, key, user, feature flags and limits",
                    "tags": ["access"],
                    "responses": { "200": json_response("the caller", schema_ref("Me")) }
                }
            }
        },
        "components": { "schemas": {
            "Key": { "type": "object", "required": key_required, "properties": key_props },
            "NewKey": { "type": "object", "required": new_key_required, "properties": new_key_props },
            "KeyList": { "type": "object", "required": ["keys"], "properties": { "keys": { "type": "array", "items": schema_ref("Key") } } },
            "CreateKey": {
                "type": "object",
                "required": ["name", "role"],
                "additionalProperties": false,
                "properties": {
                    "name": { "type": "string", "minLength": 1, "maxLength": 100 },
                    "role": schema_ref("Role"),
                    "scopes": { "type": "array", "minItems": 1, "items": schema_ref("Capability"), "description": "limit the key to these capabilities of its role" },
                    "expires_at": { "type": "string", "format": "date-time" },
                    "user_id": { "type": "string", "format": "uuid", "description": "the user the key belongs to" }
                }
            },
            "Me": {
                "type": "object",
                "required": ["tenant_id", "role", "capabilities", "key", "user", "features", "limits"],
                "properties": {
                    "tenant_id": uuid,
                    "tenant_name": nullable(json!({ "type": "string" })),
                    "role": schema_ref("Role"),
                    "capabilities": { "type": "array", "items": schema_ref("Capability") },
                    "key": schema_ref("Key"),
                    "user": { "anyOf": [schema_ref("User"), { "type": "null" }] },
                    "features": { "type": "object", "additionalProperties": { "type": "boolean" } },
                    "limits": { "anyOf": [schema_ref("Limits"), { "type": "null" }] }
                }
            }
        } }
    })
}
