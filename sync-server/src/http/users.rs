//! Users of a tenant (`/api/v1/users`), managed by its admins. A user signs in
//! with API keys made for them; disabling or deleting the user stops those keys.

use super::auth::{Caller, Capability, Role};
use super::error::{ApiError, ApiJson, ApiPath};
use super::keys::check_text;
use crate::storage::access::{NewUser, User, UserPatch};
use crate::storage::{now_ms, rfc3339_ms};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

pub(crate) fn user_json(u: &User) -> Value {
    json!({
        "id": u.user_id,
        "email": u.email,
        "name": u.name,
        "role": u.role,
        "disabled": u.disabled,
        "created_at": rfc3339_ms(u.created_at_ms),
    })
}

pub(crate) fn check_email(s: &str) -> Result<String, ApiError> {
    let e = s.trim();
    let ok = e.len() <= 254
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(e.split_once('@'), Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
    if !ok {
        return Err(ApiError::bad_request(
            "bad_email",
            "email must look like name@example.com",
        ));
    }
    Ok(e.to_lowercase())
}

fn check_role(caller: &Caller, role: Role) -> Result<(), ApiError> {
    if role.is_within(caller.role) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "role_exceeds_caller",
            format!("a {} may not make a {}", caller.role, role),
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    email: String,
    name: String,
    role: Role,
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<ApiJson<CreateUser>, ApiError>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Capability::ManageUsers)?;
    let ApiJson(req) = body?;
    let email = check_email(&req.email)?;
    let name = check_text("name", &req.name, 100)?;
    check_role(&caller, req.role)?;
    let user = state
        .storage
        .create_user(
            caller.tenant,
            NewUser {
                email,
                name,
                role: req.role,
            },
            state.settings.default_max_users,
            now_ms(),
        )
        .await?;
    state
        .audit(
            &caller,
            "user.create",
            format!("user:{}", user.user_id),
            json!({ "email": user.email, "role": user.role }),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(user_json(&user))))
}

pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ManageUsers)?;
    let users: Vec<Value> = state
        .storage
        .list_users(caller.tenant)
        .await?
        .iter()
        .map(user_json)
        .collect();
    Ok(Json(json!({ "users": users })))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ManageUsers)?;
    let user = state
        .storage
        .user(caller.tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("user_not_found", "no such user"))?;
    Ok(Json(user_json(&user)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    disabled: Option<bool>,
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    body: Result<ApiJson<UpdateUser>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Capability::ManageUsers)?;
    let ApiJson(req) = body?;
    let name = req
        .name
        .as_deref()
        .map(|n| check_text("name", n, 100))
        .transpose()?;
    if let Some(role) = req.role {
        check_role(&caller, role)?;
    }
    let user = state
        .storage
        .update_user(
            caller.tenant,
            id,
            UserPatch {
                name,
                role: req.role,
                disabled: req.disabled,
            },
        )
        .await?;
    state
        .audit(
            &caller,
            "user.update",
            format!("user:{id}"),
            json!({ "role": req.role, "disabled": req.disabled, "name_changed": req.name.is_some() }),
        )
        .await?;
    Ok(Json(user_json(&user)))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    caller.require(Capability::ManageUsers)?;
    state
        .storage
        .delete_user(caller.tenant, id, now_ms())
        .await?;
    state
        .audit(&caller, "user.delete", format!("user:{id}"), json!({}))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The OpenAPI fragment of `/api/v1/users`.
pub fn openapi() -> Value {
    use super::openapi::{error_response, json_body, json_response, schema_ref, uuid_param};
    let user_errors = |extra: &str| error_response(&format!("user_not_found{extra}"));
    json!({
        "paths": {
            "/api/v1/users": {
                "get": {
                    "operationId": "listUsers",
                    "summary": "The tenant's users",
                    "tags": ["access"],
                    "x-capability": "manage_users",
                    "responses": { "200": json_response("the users", schema_ref("UserList")) }
                },
                "post": {
                    "operationId": "createUser",
                    "summary": "Add a user",
                    "tags": ["access"],
                    "x-capability": "manage_users",
                    "requestBody": json_body(schema_ref("CreateUser")),
                    "responses": {
                        "201": json_response("the new user", schema_ref("User")),
                        "400": error_response("bad_json, bad_email, bad_field"),
                        "403": error_response("forbidden, out_of_scope, role_exceeds_caller, limit_reached (max_users)"),
                        "409": error_response("conflict: the email is taken")
                    }
                }
            },
            "/api/v1/users/{id}": {
                "get": {
                    "operationId": "getUser",
                    "summary": "One user",
                    "tags": ["access"],
                    "x-capability": "manage_users",
                    "parameters": [uuid_param("id")],
                    "responses": { "200": json_response("the user", schema_ref("User")), "404": user_errors("") }
                },
                "patch": {
                    "operationId": "updateUser",
                    "summary": "Rename, change the role of, disable or enable a user",
                    "tags": ["access"],
                    "x-capability": "manage_users",
                    "parameters": [uuid_param("id")],
                    "requestBody": json_body(schema_ref("UpdateUser")),
                    "responses": { "200": json_response("the user", schema_ref("User")), "404": user_errors("") }
                },
                "delete": {
                    "operationId": "deleteUser",
                    "summary": "Delete a user and revoke their keys",
                    "tags": ["access"],
                    "x-capability": "manage_users",
                    "parameters": [uuid_param("id")],
                    "responses": { "204": { "description": "deleted" }, "404": user_errors("") }
                }
            }
        },
        "components": { "schemas": {
            "User": {
                "type": "object",
                "required": ["id", "email", "name", "role", "disabled", "created_at"],
                "properties": {
                    "id": { "type": "string", "format": "uuid" },
                    "email": { "type": "string" },
                    "name": { "type": "string" },
                    "role": schema_ref("Role"),
                    "disabled": { "type": "boolean" },
                    "created_at": { "type": "string", "format": "date-time" }
                }
            },
            "UserList": { "type": "object", "required": ["users"], "properties": { "users": { "type": "array", "items": schema_ref("User") } } },
            "CreateUser": {
                "type": "object",
                "required": ["email", "name", "role"],
                "additionalProperties": false,
                "properties": {
                    "email": { "type": "string", "format": "email", "maxLength": 254 },
                    "name": { "type": "string", "minLength": 1, "maxLength": 100 },
                    "role": schema_ref("Role")
                }
            },
            "UpdateUser": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "name": { "type": "string", "minLength": 1, "maxLength": 100 },
                    "role": schema_ref("Role"),
                    "disabled": { "type": "boolean" }
                }
            }
        } }
    })
}
