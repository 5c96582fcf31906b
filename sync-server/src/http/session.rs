//! Dashboard login with a user's password (`/api/v1/session`) and passwords
//! (`PUT /api/v1/users/{id}/password`).
//!
//! A login answers an HttpOnly, `SameSite=Strict` cookie (`Secure` when the
//! server speaks TLS) holding the tenant id and a random secret; the server
//! keeps only the secret's SHA-256 and an expiry. A request with that cookie
//! and no `Authorization` header is the user, with the user's role, under the
//! same tenant and capability rules as an API key. A request that changes
//! anything must also send the session's CSRF token (answered at login and in
//! the readable `fleet_csrf` cookie) as `X-CSRF-Token`; a cross-site page can
//! read neither.
//!
//! Every failed login answers the same 401 `invalid_credentials`, whether the
//! tenant, the user or the password was wrong or the user is disabled, and
//! takes about as long. Attempts are limited per user and per client address.

use super::auth::{Caller, Capability};
use super::error::{ApiError, ApiJson, ApiPath};
use super::users::{check_email, user_json};
use crate::storage::access::{ActorKind, AuditEntry};
use crate::storage::sessions::Session;
use crate::storage::{now_ms, rfc3339_ms, sha256, StorageError};
use crate::AppState;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, Extensions, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;
use uuid::Uuid;

/// The cookie that carries the session: `TENANT_ID.SECRET`.
pub const SESSION_COOKIE: &str = "fleet_session";
/// The cookie the dashboard reads the CSRF token from after a reload.
pub const CSRF_COOKIE: &str = "fleet_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Login attempts a minute for one user (tenant and email) and for one address.
pub const LOGINS_PER_MIN_PER_USER: u32 = 5;
pub const LOGINS_PER_MIN_PER_ADDRESS: u32 = 20;

const MIN_PASSWORD_CHARS: usize = 10;
const MAX_PASSWORD_BYTES: usize = 1024;

/// How hard a password is to guess from its stored hash.
#[derive(Debug, Clone, Copy)]
pub struct PasswordCost {
    pub memory_kib: u32,
    pub iterations: u32,
}

impl PasswordCost {
    /// OWASP's argon2id baseline: 19 MiB, two passes, one lane.
    pub const DEFAULT: PasswordCost = PasswordCost {
        memory_kib: 19 * 1024,
        iterations: 2,
    };

    fn hasher(self) -> Argon2<'static> {
        let params = argon2::Params::new(self.memory_kib, self.iterations, 1, None)
            .expect("argon2 parameters are valid");
        Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
    }
}

/// The argon2id PHC string of `password` (a fresh random salt).
pub fn hash_password(cost: PasswordCost, password: &str) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    cost.hasher()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2id hashes any password")
        .to_string()
}

/// Whether `password` matches `phc`; a damaged PHC string matches nothing.
pub fn verify_password(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A password's rules: long enough to resist guessing, short enough to hash.
pub fn check_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::bad_request(
            "bad_password",
            format!(
                "a password has at least {MIN_PASSWORD_CHARS} characters and at most {MAX_PASSWORD_BYTES} bytes"
            ),
        ));
    }
    Ok(())
}

/// The CSRF token of a session: derived from its secret, so only a holder of
/// the cookie (or of the login answer) knows it and the server stores nothing.
pub fn csrf_token(secret: &str) -> String {
    let mut input = b"fleet-csrf:".to_vec();
    input.extend_from_slice(secret.as_bytes());
    hex(&sha256(&input))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The tenant and secret of a session cookie's value.
pub fn parse_session_cookie(value: &str) -> Option<(Uuid, &str)> {
    let (tenant, secret) = value.split_once('.')?;
    let tenant = Uuid::parse_str(tenant).ok()?;
    (!secret.is_empty() && secret.len() <= 128).then_some((tenant, secret))
}

/// The client's address, as `serve` and `serve_tls` hand it to handlers.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, crate::tls::TlsListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, crate::tls::TlsListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// Whether cookies get `Secure`: the server speaks TLS itself, or a proxy in
/// front of it says the client used https.
fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    state.access.tls.load(std::sync::atomic::Ordering::Relaxed)
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn set_cookie(
    name: &str,
    value: &str,
    max_age_s: i64,
    http_only: bool,
    secure: bool,
) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; Max-Age={max_age_s}; SameSite=Strict");
    if http_only {
        c.push_str("; HttpOnly");
    }
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).expect("cookie values are header-safe")
}

fn internal(message: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthorized("invalid_credentials", "invalid credentials")
}

/// A stable id for a rate-limit bucket named by text.
fn bucket(kind: &str, name: &str) -> Uuid {
    let h = sha256(format!("{kind}\0{name}").as_bytes());
    Uuid::from_slice(&h[..16]).expect("16 bytes")
}

fn limited(wait: std::time::Duration) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many login attempts; wait and try again",
    )
    .with_retry_after(wait)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The tenant's id, or its name when no other tenant has that name.
    tenant: String,
    email: String,
    password: String,
}

async fn find_tenant(state: &AppState, tenant: &str) -> Result<Option<Uuid>, ApiError> {
    let tenant = tenant.trim();
    if let Ok(id) = Uuid::parse_str(tenant) {
        return Ok(state.storage.tenant_info(id).await?.map(|t| t.tenant_id));
    }
    let mut named = state
        .storage
        .list_tenants()
        .await?
        .into_iter()
        .filter(|t| t.name == tenant);
    Ok(match (named.next(), named.next()) {
        (Some(t), None) => Some(t.tenant_id),
        _ => None,
    })
}

async fn audit_session(
    state: &AppState,
    tenant: Uuid,
    user: Uuid,
    action: &str,
    target: String,
    detail: Value,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    state
        .storage
        .record_audit(AuditEntry {
            tenant_id: tenant,
            audit_id: Uuid::new_v4(),
            at_ms: now_ms(),
            actor_kind: ActorKind::Session,
            actor_key_id: None,
            actor_user_id: Some(user),
            action: action.to_owned(),
            target,
            detail,
            request_id: headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .filter(|v| v.len() <= 128)
                .map(str::to_owned),
        })
        .await?;
    Ok(())
}

/// `POST /api/v1/session`: logs a user in.
pub async fn login(
    State(state): State<AppState>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Result<ApiJson<Login>, ApiError>,
) -> Result<Response, ApiError> {
    let ApiJson(req) = body?;
    if let Some(ConnectInfo(ClientAddr(addr))) = extensions.get::<ConnectInfo<ClientAddr>>() {
        state
            .access
            .login_limiter
            .check(
                bucket("address", &addr.ip().to_string()),
                LOGINS_PER_MIN_PER_ADDRESS,
            )
            .map_err(limited)?;
    }
    let email = check_email(&req.email).map_err(|_| invalid_credentials())?;
    state
        .access
        .login_limiter
        .check(
            bucket("user", &format!("{}\0{email}", req.tenant.trim())),
            LOGINS_PER_MIN_PER_USER,
        )
        .map_err(limited)?;
    if req.password.len() > MAX_PASSWORD_BYTES {
        return Err(invalid_credentials());
    }
    let found = match find_tenant(&state, &req.tenant).await? {
        Some(tenant) => state
            .storage
            .login_user(tenant, &email)
            .await?
            .map(|(user, phc)| (tenant, user, phc)),
        None => None,
    };
    // Without a stored password, verify against a decoy so that an unknown
    // user takes as long as a wrong password.
    let phc = match &found {
        Some((_, _, Some(phc))) => phc.clone(),
        _ => state.access.decoy_password_hash(),
    };
    let password = req.password;
    let matches = tokio::task::spawn_blocking(move || verify_password(&phc, &password))
        .await
        .map_err(|e| internal(format!("password check: {e}")))?;
    let Some((tenant, user_id, Some(_))) = found else {
        return Err(invalid_credentials());
    };
    let user = state.storage.user(tenant, user_id).await?;
    let Some(user) = user.filter(|u| matches && !u.disabled) else {
        audit_session(
            &state,
            tenant,
            user_id,
            "session.login_failed",
            format!("user:{user_id}"),
            json!({}),
            &headers,
        )
        .await?;
        return Err(invalid_credentials());
    };

    let secret = crate::storage::random_secret("fs_");
    let now = now_ms();
    let ttl = state.access.session_ttl_ms;
    let session = Session {
        tenant_id: tenant,
        session_id: Uuid::new_v4(),
        user_id,
        created_at_ms: now,
        expires_at_ms: now + ttl,
    };
    match state
        .storage
        .create_session(sha256(secret.as_bytes()), &session, now)
        .await
    {
        Ok(()) => {}
        // Deleted between the check and now.
        Err(StorageError::UnknownUser) => return Err(invalid_credentials()),
        Err(e) => return Err(e.into()),
    }
    audit_session(
        &state,
        tenant,
        user_id,
        "session.login",
        format!("session:{}", session.session_id),
        json!({ "expires_at": rfc3339_ms(session.expires_at_ms) }),
        &headers,
    )
    .await?;
    let secure = secure(&state, &headers);
    let csrf = csrf_token(&secret);
    let max_age = ttl / 1000;
    let mut resp = Json(json!({
        "tenant_id": tenant,
        "user": user_json(&user),
        "expires_at": rfc3339_ms(session.expires_at_ms),
        "csrf_token": csrf,
    }))
    .into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(
            SESSION_COOKIE,
            &format!("{tenant}.{secret}"),
            max_age,
            true,
            secure,
        ),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(CSRF_COOKIE, &csrf, max_age, false, secure),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `DELETE /api/v1/session`: ends the caller's session and clears its cookies.
pub async fn logout(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (Some(session_id), Some(user)) = (caller.session_id, caller.user_id) else {
        return Err(ApiError::bad_request(
            "not_a_session",
            "this request is authenticated by an API key, not a session",
        ));
    };
    let secret = cookie(&headers, SESSION_COOKIE)
        .and_then(parse_session_cookie)
        .map(|(_, s)| s)
        .ok_or_else(|| ApiError::unauthorized("session_invalid", "no session cookie"))?;
    state
        .storage
        .delete_session(caller.tenant, sha256(secret.as_bytes()))
        .await?;
    audit_session(
        &state,
        caller.tenant,
        user,
        "session.logout",
        format!("session:{session_id}"),
        json!({}),
        &headers,
    )
    .await?;
    let secure = secure(&state, &headers);
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", 0, true, secure),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(CSRF_COOKIE, "", 0, false, secure),
    );
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPassword {
    password: String,
}

/// `PUT /api/v1/users/{id}/password`: a tenant admin sets a user's password,
/// which ends the user's sessions.
pub async fn set_password(
    State(state): State<AppState>,
    caller: Caller,
    id: ApiPath<Uuid>,
    body: Result<ApiJson<SetPassword>, ApiError>,
) -> Result<StatusCode, ApiError> {
    caller.require(Capability::ManageUsers)?;
    let ApiPath(user_id) = id;
    let ApiJson(req) = body?;
    check_password(&req.password)?;
    let user = state
        .storage
        .user(caller.tenant, user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("user_not_found", "no such user"))?;
    if !user.role.is_within(caller.role) {
        return Err(ApiError::forbidden(
            "role_exceeds_caller",
            format!("a {} may not set a {}'s password", caller.role, user.role),
        ));
    }
    let cost = state.access.password_cost;
    let phc = tokio::task::spawn_blocking(move || hash_password(cost, &req.password))
        .await
        .map_err(|e| internal(format!("password hash: {e}")))?;
    match state
        .storage
        .set_password(caller.tenant, user_id, &phc, now_ms())
        .await
    {
        Ok(()) => {}
        Err(StorageError::UnknownUser) => {
            return Err(ApiError::not_found("user_not_found", "no such user"))
        }
        Err(e) => return Err(e.into()),
    }
    state
        .audit(
            &caller,
            "user.set_password",
            format!("user:{user_id}"),
            json!({}),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The OpenAPI fragment of `/api/v1/session` and `/api/v1/users/{id}/password`.
pub fn openapi() -> Value {
    use super::openapi::{error_response, json_body, json_response, uuid_param};
    json!({
        "paths": {
            "/api/v1/session": {
                "post": {
                    "operationId": "login",
                    "summary": "Log a user in with a password; sets the fleet_session (HttpOnly) and fleet_csrf cookies",
                    "description": "Changes made with the session cookie must send the csrf_token as X-CSRF-Token. Every failure is 401 invalid_credentials.",
                    "tags": ["access"],
                    "security": [],
                    "requestBody": json_body(json!({
                        "type": "object",
                        "required": ["tenant", "email", "password"],
                        "additionalProperties": false,
                        "properties": {
                            "tenant": { "type": "string", "description": "the tenant's id, or its name when no other tenant has it" },
                            "email": { "type": "string" },
                            "password": { "type": "string" }
                        }
                    })),
                    "responses": {
                        "200": json_response("logged in", json!({
                            "type": "object",
                            "required": ["tenant_id", "user", "expires_at", "csrf_token"],
                            "properties": {
                                "tenant_id": { "type": "string", "format": "uuid" },
                                "user": { "$ref": "#/components/schemas/User" },
                                "expires_at": { "type": "string", "format": "date-time" },
                                "csrf_token": { "type": "string" }
                            }
                        })),
                        "400": error_response("bad_json"),
                        "401": error_response("invalid_credentials"),
                        "429": error_response("rate_limited")
                    }
                },
                "delete": {
                    "operationId": "logout",
                    "summary": "End the caller's session and clear its cookies",
                    "tags": ["access"],
                    "security": [{ "session": [] }],
                    "responses": {
                        "204": { "description": "logged out" },
                        "400": error_response("not_a_session: the caller used an API key"),
                        "403": error_response("csrf_failed")
                    }
                }
            },
            "/api/v1/users/{id}/password": {
                "put": {
                    "operationId": "setUserPassword",
                    "summary": "Set a user's password (argon2id); ends the user's sessions",
                    "tags": ["access"],
                    "x-capability": "manage_users",
                    "parameters": [uuid_param("id")],
                    "requestBody": json_body(json!({
                        "type": "object",
                        "required": ["password"],
                        "additionalProperties": false,
                        "properties": { "password": { "type": "string", "minLength": MIN_PASSWORD_CHARS } }
                    })),
                    "responses": {
                        "204": { "description": "the password is set" },
                        "400": error_response("bad_json, bad_password"),
                        "403": error_response("forbidden, out_of_scope, role_exceeds_caller"),
                        "404": error_response("user_not_found")
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: PasswordCost = PasswordCost {
        memory_kib: 64,
        iterations: 1,
    };

    #[test]
    fn a_password_verifies_against_its_own_hash_only() {
        let phc = hash_password(CHEAP, "correct horse battery");
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password(&phc, "correct horse battery"));
        assert!(!verify_password(&phc, "correct horse batterz"));
        assert!(!verify_password("not a hash", "correct horse battery"));
        assert_ne!(phc, hash_password(CHEAP, "correct horse battery"));
    }

    #[test]
    fn short_and_huge_passwords_are_refused() {
        assert_eq!(check_password("short").unwrap_err().code, "bad_password");
        assert!(check_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
        assert!(check_password("ten chars!").is_ok());
    }

    #[test]
    fn cookies_are_found_among_others_and_session_values_parse() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; fleet_session=x.y"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("fleet_csrf=z"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("x.y"));
        assert_eq!(cookie(&h, CSRF_COOKIE), Some("z"));
        assert_eq!(cookie(&h, "b"), None);
        let t = Uuid::new_v4();
        assert_eq!(
            parse_session_cookie(&format!("{t}.fs_abc")),
            Some((t, "fs_abc"))
        );
        assert_eq!(parse_session_cookie("x.y"), None);
        assert_eq!(parse_session_cookie(&format!("{t}.")), None);
    }

    #[test]
    fn the_csrf_token_depends_on_the_session_secret() {
        assert_eq!(csrf_token("a"), csrf_token("a"));
        assert_ne!(csrf_token("a"), csrf_token("b"));
        assert_eq!(csrf_token("a").len(), 64);
    }
}
