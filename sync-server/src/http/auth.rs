//! Who is calling the operator API and what they may do.
//!
//! Every `/api/v1` request carries an API key as `Authorization: Bearer KEY`, or
//! the session cookie of a user who logged in with a password (see
//! [`super::session`]). A key belongs to one tenant, has a [`Role`] and
//! optionally a narrower set of [`Capability`]s (its scopes), may expire and may
//! be revoked; a session has its user's role. Handlers take a
//! [`Caller`] and ask `caller.require(Capability::X)?`; they record what they
//! changed with [`AppState::audit`]. The server operator's key is separate
//! ([`Operator`]) and only creates and configures tenants.
//!
//! Keys are stored as their SHA-256; the secret is shown once, at creation.

use super::error::ApiError;
use super::limits::RateLimiter;
use super::session::{
    cookie, csrf_token, hash_password, parse_session_cookie, PasswordCost, CSRF_HEADER,
    SESSION_COOKIE,
};
use crate::storage::access::{ActorKind, AuditEntry, KeyAuth};
use crate::storage::now_ms;
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// What a role may do. The names are the wire names (`x-capability` in the
/// OpenAPI document, `scopes` of a key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    ReadFleet,
    ManageDevices,
    ManageConfig,
    ManageUsers,
    ManageKeys,
    ReadAudit,
    ViewCosts,
    ManageReservations,
    ApproveReservations,
    Custody,
    OperateKiosk,
}

impl Capability {
    pub const ALL: [Capability; 11] = [
        Capability::ReadFleet,
        Capability::ManageDevices,
        Capability::ManageConfig,
        Capability::ManageUsers,
        Capability::ManageKeys,
        Capability::ReadAudit,
        Capability::ViewCosts,
        Capability::ManageReservations,
        Capability::ApproveReservations,
        Capability::Custody,
        Capability::OperateKiosk,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::ReadFleet => "read_fleet",
            Capability::ManageDevices => "manage_devices",
            Capability::ManageConfig => "manage_config",
            Capability::ManageUsers => "manage_users",
            Capability::ManageKeys => "manage_keys",
            Capability::ReadAudit => "read_audit",
            Capability::ViewCosts => "view_costs",
            Capability::ManageReservations => "manage_reservations",
            Capability::ApproveReservations => "approve_reservations",
            Capability::Custody => "custody",
            Capability::OperateKiosk => "operate_kiosk",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Manager,
    Dispatcher,
    Driver,
    Technician,
    ReadOnly,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Admin,
        Role::Manager,
        Role::Dispatcher,
        Role::Driver,
        Role::Technician,
        Role::ReadOnly,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Manager => "manager",
            Role::Dispatcher => "dispatcher",
            Role::Driver => "driver",
            Role::Technician => "technician",
            Role::ReadOnly => "read_only",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The role → capability table.
    pub fn capabilities(self) -> &'static [Capability] {
        use Capability as C;
        match self {
            Role::Admin => &C::ALL,
            // Cost data is for managers and up; the audit log and credentials
            // for admins only.
            Role::Manager => &[
                C::ReadFleet,
                C::ManageDevices,
                C::ManageConfig,
                C::ViewCosts,
                C::ManageReservations,
                C::ApproveReservations,
                C::Custody,
                C::OperateKiosk,
            ],
            Role::Dispatcher => &[
                C::ReadFleet,
                C::ManageReservations,
                C::ApproveReservations,
                C::Custody,
            ],
            Role::Driver => &[C::ReadFleet, C::ManageReservations, C::Custody],
            Role::Technician => &[C::ReadFleet, C::ManageDevices, C::Custody, C::OperateKiosk],
            Role::ReadOnly => &[C::ReadFleet],
        }
    }

    pub fn has(self, cap: Capability) -> bool {
        self.capabilities().contains(&cap)
    }

    /// A key or user with role `self` may be handed out by someone with `other`
    /// only if it can do nothing `other` cannot.
    pub fn is_within(self, other: Role) -> bool {
        self.capabilities().iter().all(|c| other.has(*c))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Named features an operator can switch off per tenant; a feature not switched
/// off is on. Add a name here before calling [`Caller::require_feature`] with it.
pub const FEATURES: &[&str] = &[
    "cost_tracking",
    "live_stream",
    "device_control",
    "webhooks",
    "kiosk",
    "reservations",
    "labels",
];

/// A new API key: the secret to show once, and what is stored.
pub struct MintedKey {
    pub secret: String,
    pub hash: [u8; 32],
    pub prefix: String,
}

/// Characters of a key kept for display (`fk_` and eight more).
const PREFIX_LEN: usize = 11;

pub fn mint_key() -> MintedKey {
    let secret = crate::storage::random_secret("fk_");
    MintedKey {
        hash: hash_key(&secret),
        prefix: secret[..PREFIX_LEN].to_owned(),
        secret,
    }
}

pub fn hash_key(secret: &str) -> [u8; 32] {
    crate::storage::sha256(secret.trim().as_bytes())
}

/// Equality that takes the same time wherever the inputs differ.
pub fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The server-wide part of access control: the operator key, the rate limiters
/// and how sessions are made.
pub struct AccessState {
    operator_key_hash: Option<[u8; 32]>,
    pub key_limiter: RateLimiter,
    pub device_limiter: RateLimiter,
    /// Login attempts, per user and per client address.
    pub login_limiter: RateLimiter,
    /// The server speaks TLS itself, so session cookies are `Secure`.
    pub tls: std::sync::atomic::AtomicBool,
    pub session_ttl_ms: i64,
    pub password_cost: PasswordCost,
    decoy_hash: std::sync::OnceLock<String>,
}

/// A session lasts a working day unless the user logs out.
pub const SESSION_TTL_MS: i64 = 12 * 3_600_000;

impl AccessState {
    pub fn new(operator_key: Option<&str>) -> Self {
        AccessState {
            operator_key_hash: operator_key
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(hash_key),
            key_limiter: RateLimiter::default(),
            device_limiter: RateLimiter::default(),
            login_limiter: RateLimiter::default(),
            tls: std::sync::atomic::AtomicBool::new(false),
            session_ttl_ms: SESSION_TTL_MS,
            password_cost: PasswordCost::DEFAULT,
            decoy_hash: std::sync::OnceLock::new(),
        }
    }

    /// A password hash no password matches (well, one nobody knows), made at
    /// the server's cost so checking it takes as long as checking a real one.
    pub fn decoy_password_hash(&self) -> String {
        self.decoy_hash
            .get_or_init(|| {
                hash_password(self.password_cost, &crate::storage::random_secret("decoy_"))
            })
            .clone()
    }

    fn is_operator(&self, hash: &[u8; 32]) -> bool {
        self.operator_key_hash
            .as_ref()
            .is_some_and(|h| constant_time_eq(h, hash))
    }
}

impl Default for AccessState {
    fn default() -> Self {
        Self::new(None)
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized(
                "missing_api_key",
                "send the API key as `Authorization: Bearer KEY`",
            )
        })
}

/// The client's `X-Request-Id` when it is sensible, else a fresh one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic()))
        .map_or_else(|| Uuid::new_v4().to_string(), str::to_owned)
}

/// A key's use is written back at most this often.
const TOUCH_EVERY_MS: i64 = 60_000;

/// The authenticated caller of a tenant endpoint.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: Uuid,
    pub role: Role,
    /// The API key; for a user's session, the session's id.
    pub key_id: Uuid,
    pub user_id: Option<Uuid>,
    /// Set when the caller is a user's session rather than an API key.
    pub session_id: Option<Uuid>,
    /// The key's scopes; `None`: everything its role may do.
    pub scopes: Option<Vec<Capability>>,
    pub features: BTreeMap<String, bool>,
    pub request_id: String,
}

impl Caller {
    /// Whether the caller may use `cap`: its role has it and its key's scopes allow it.
    pub fn can(&self, cap: Capability) -> bool {
        self.role.has(cap) && self.scopes.as_ref().is_none_or(|s| s.contains(&cap))
    }

    /// 403 `forbidden` when the role lacks `cap`, 403 `out_of_scope` when the
    /// role has it but the key was limited to other capabilities.
    pub fn require(&self, cap: Capability) -> Result<(), ApiError> {
        if !self.role.has(cap) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("the {} role may not {cap}", self.role),
            ));
        }
        if !self.can(cap) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "out_of_scope",
                format!("this API key is not scoped for {cap}"),
            ));
        }
        Ok(())
    }

    /// 403 `feature_disabled` when the operator switched the feature off for this tenant.
    pub fn require_feature(&self, feature: &str) -> Result<(), ApiError> {
        if self.features.get(feature).copied().unwrap_or(true) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "feature_disabled",
                format!("the {feature} feature is not enabled for this tenant"),
            ))
        }
    }

    /// The capabilities this caller actually has.
    pub fn capabilities(&self) -> Vec<Capability> {
        Capability::ALL
            .into_iter()
            .filter(|c| self.can(*c))
            .collect()
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            if let Some(value) = cookie(&parts.headers, SESSION_COOKIE) {
                return session_caller(parts, state, value).await;
            }
        }
        let hash = hash_key(bearer(&parts.headers)?);
        let Some(KeyAuth {
            key,
            user_disabled,
            settings,
        }) = state.storage.key_by_hash(hash).await?
        else {
            if state.access.is_operator(&hash) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "tenant_key_required",
                    "the operator key only manages tenants; use one of the tenant's keys",
                ));
            }
            return Err(ApiError::unauthorized(
                "bad_api_key",
                "the API key is not valid",
            ));
        };
        let now = now_ms();
        if key.revoked_at_ms.is_some() {
            return Err(ApiError::unauthorized(
                "key_revoked",
                "this API key was revoked",
            ));
        }
        if key.expires_at_ms.is_some_and(|at| now >= at) {
            return Err(ApiError::unauthorized(
                "key_expired",
                "this API key has expired",
            ));
        }
        if user_disabled {
            return Err(ApiError::unauthorized(
                "user_disabled",
                "the user this API key belongs to is disabled",
            ));
        }
        let per_min = settings
            .api_rate_per_min
            .unwrap_or(state.settings.default_api_rate_per_min);
        state
            .access
            .key_limiter
            .check(key.key_id, per_min)
            .map_err(|wait| {
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("this API key may make {per_min} requests a minute"),
                )
                .with_retry_after(wait)
            })?;
        if key
            .last_used_ms
            .is_none_or(|at| now.saturating_sub(at) >= TOUCH_EVERY_MS)
        {
            let storage = state.storage.clone();
            let (tenant, key_id) = (key.tenant_id, key.key_id);
            tokio::spawn(async move {
                if let Err(e) = storage.touch_key(tenant, key_id, now).await {
                    tracing::warn!(%tenant, key = %key_id, "could not record key use: {e}");
                }
            });
        }
        Ok(Caller {
            tenant: key.tenant_id,
            role: key.role,
            key_id: key.key_id,
            user_id: key.user_id,
            session_id: None,
            scopes: key.scopes,
            features: settings.features,
            request_id: request_id(&parts.headers),
        })
    }
}

/// Whether a request may change something (and so needs the CSRF token when a
/// cookie authenticates it).
fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn session_invalid() -> ApiError {
    ApiError::unauthorized("session_invalid", "the session is not valid; log in again")
}

/// The caller of a request that a session cookie authenticates.
async fn session_caller(parts: &Parts, state: &AppState, value: &str) -> Result<Caller, ApiError> {
    let (tenant, secret) = parse_session_cookie(value).ok_or_else(session_invalid)?;
    let session = state
        .storage
        .session_by_hash(tenant, crate::storage::sha256(secret.as_bytes()))
        .await?
        .ok_or_else(session_invalid)?;
    if now_ms() >= session.expires_at_ms {
        return Err(ApiError::unauthorized(
            "session_expired",
            "the session has expired; log in again",
        ));
    }
    if changes_state(&parts.method) {
        let sent = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let want = csrf_token(secret);
        let same = sent.len() == want.len()
            && constant_time_eq(
                &crate::storage::sha256(sent.as_bytes()),
                &crate::storage::sha256(want.as_bytes()),
            );
        if !same {
            return Err(ApiError::forbidden(
                "csrf_failed",
                "a change made with a session cookie needs the session's X-CSRF-Token header",
            ));
        }
    }
    let user = state
        .storage
        .user(tenant, session.user_id)
        .await?
        .ok_or_else(session_invalid)?;
    if user.disabled {
        return Err(ApiError::unauthorized(
            "user_disabled",
            "this user is disabled",
        ));
    }
    let settings = state
        .storage
        .tenant_info(tenant)
        .await?
        .ok_or_else(session_invalid)?
        .settings;
    let per_min = settings
        .api_rate_per_min
        .unwrap_or(state.settings.default_api_rate_per_min);
    state
        .access
        .key_limiter
        .check(session.session_id, per_min)
        .map_err(|wait| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("a session may make {per_min} requests a minute"),
            )
            .with_retry_after(wait)
        })?;
    Ok(Caller {
        tenant,
        role: user.role,
        key_id: session.session_id,
        user_id: Some(user.user_id),
        session_id: Some(session.session_id),
        scopes: None,
        features: settings.features,
        request_id: request_id(&parts.headers),
    })
}

/// The server operator: the holder of `--operator-key-file` / `FLEET_OPERATOR_KEY`.
#[derive(Debug, Clone)]
pub struct Operator {
    pub request_id: String,
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let hash = hash_key(bearer(&parts.headers)?);
        if state.access.is_operator(&hash) {
            return Ok(Operator {
                request_id: request_id(&parts.headers),
            });
        }
        if state.access.operator_key_hash.is_none() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "operator_disabled",
                "this server has no operator key (start it with --operator-key-file)",
            ));
        }
        match state.storage.key_by_hash(hash).await? {
            Some(_) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "operator_only",
                "only the server operator's key may do this",
            )),
            None => Err(ApiError::unauthorized(
                "bad_api_key",
                "the API key is not valid",
            )),
        }
    }
}

/// The audit log's entry saying that the caller did `action` to `target`, for
/// a write that stores it in its own transaction.
pub fn audit_entry(
    caller: &Caller,
    action: &str,
    target: impl Into<String>,
    detail: serde_json::Value,
) -> AuditEntry {
    AuditEntry {
        tenant_id: caller.tenant,
        audit_id: Uuid::new_v4(),
        at_ms: now_ms(),
        actor_kind: if caller.session_id.is_some() {
            ActorKind::Session
        } else {
            ActorKind::Key
        },
        actor_key_id: caller.session_id.is_none().then_some(caller.key_id),
        actor_user_id: caller.user_id,
        action: action.to_owned(),
        target: target.into(),
        detail,
        request_id: Some(caller.request_id.clone()),
    }
}

impl AppState {
    /// Records in the caller's tenant's audit log that the caller did `action` to
    /// `target` (e.g. `"user.create"`, `"user:UUID"`).
    pub async fn audit(
        &self,
        caller: &Caller,
        action: &str,
        target: impl Into<String>,
        detail: serde_json::Value,
    ) -> Result<(), ApiError> {
        self.storage
            .record_audit(audit_entry(caller, action, target, detail))
            .await?;
        Ok(())
    }

    /// Records an operator's change to a tenant in that tenant's audit log.
    pub async fn audit_operator(
        &self,
        operator: &Operator,
        tenant: Uuid,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<(), ApiError> {
        self.storage
            .record_audit(AuditEntry {
                tenant_id: tenant,
                audit_id: Uuid::new_v4(),
                at_ms: now_ms(),
                actor_kind: ActorKind::Operator,
                actor_key_id: None,
                actor_user_id: None,
                action: action.to_owned(),
                target: format!("tenant:{tenant}"),
                detail,
                request_id: Some(operator.request_id.clone()),
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_can_read_the_fleet_and_only_admins_manage_credentials_and_read_audit() {
        for role in Role::ALL {
            assert!(role.has(Capability::ReadFleet), "{role}");
            let admin = role == Role::Admin;
            assert_eq!(role.has(Capability::ManageUsers), admin, "{role}");
            assert_eq!(role.has(Capability::ManageKeys), admin, "{role}");
            assert_eq!(role.has(Capability::ReadAudit), admin, "{role}");
        }
    }

    #[test]
    fn cost_data_is_for_managers_and_admins_only() {
        let allowed: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|r| r.has(Capability::ViewCosts))
            .collect();
        assert_eq!(allowed, vec![Role::Admin, Role::Manager]);
    }

    #[test]
    fn a_role_is_within_another_when_it_can_do_nothing_more() {
        for role in Role::ALL {
            assert!(role.is_within(Role::Admin));
            assert!(role.is_within(role));
            assert!(Role::ReadOnly.is_within(role));
        }
        assert!(!Role::Admin.is_within(Role::Manager));
        assert!(!Role::Driver.is_within(Role::Technician));
        assert!(!Role::Technician.is_within(Role::Driver));
        assert!(Role::Driver.is_within(Role::Dispatcher));
    }

    #[test]
    fn names_round_trip_and_match_serde() {
        for c in Capability::ALL {
            assert_eq!(Capability::parse(c.as_str()), Some(c));
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        assert_eq!(Role::parse("root"), None);
    }

    fn caller(role: Role, scopes: Option<Vec<Capability>>) -> Caller {
        Caller {
            tenant: Uuid::nil(),
            role,
            key_id: Uuid::nil(),
            user_id: None,
            session_id: None,
            scopes,
            features: BTreeMap::from([("kiosk".to_owned(), false)]),
            request_id: "r".into(),
        }
    }

    #[test]
    fn a_missing_role_capability_and_a_narrow_scope_are_refused_with_distinct_codes() {
        let c = caller(Role::Driver, None);
        assert_eq!(
            c.require(Capability::ManageUsers).unwrap_err().code,
            "forbidden"
        );
        let c = caller(Role::Admin, Some(vec![Capability::ReadFleet]));
        assert!(c.require(Capability::ReadFleet).is_ok());
        assert_eq!(
            c.require(Capability::ManageKeys).unwrap_err().code,
            "out_of_scope"
        );
        // A scope never adds what the role lacks.
        let c = caller(Role::ReadOnly, Some(vec![Capability::ManageKeys]));
        assert_eq!(
            c.require(Capability::ManageKeys).unwrap_err().code,
            "forbidden"
        );
        assert_eq!(c.capabilities(), vec![]);
    }

    #[test]
    fn features_are_on_unless_switched_off() {
        let c = caller(Role::Admin, None);
        assert!(c.require_feature("webhooks").is_ok());
        assert_eq!(
            c.require_feature("kiosk").unwrap_err().code,
            "feature_disabled"
        );
    }

    #[test]
    fn minted_keys_are_stored_by_hash_with_a_short_prefix() {
        let k = mint_key();
        assert!(k.secret.starts_with("fk_") && k.secret.len() > 40);
        assert_eq!(k.prefix.len(), PREFIX_LEN);
        assert!(k.secret.starts_with(&k.prefix));
        assert_eq!(k.hash, hash_key(&k.secret));
        assert_ne!(k.hash, mint_key().hash);
        assert!(constant_time_eq(&k.hash, &hash_key(&k.secret)));
        assert!(!constant_time_eq(&k.hash, &[0; 32]));
    }
}
