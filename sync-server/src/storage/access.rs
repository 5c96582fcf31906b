//! Who may do what: users, API keys, per-tenant feature flags and limits, the
//! audit log and vehicles' cost profiles. One trait, one implementation per
//! backend, checked by `conformance_access.rs`.

use super::StorageError;
use crate::http::auth::{Capability, Role};
use async_trait::async_trait;
use serde::Serialize;
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub role: Role,
}

/// A change to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

/// An API key as stored: never the secret, only its hash and display prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub tenant_id: Uuid,
    pub key_id: Uuid,
    pub prefix: String,
    pub name: String,
    pub role: Role,
    /// The capabilities the key is limited to; `None` means all its role has.
    pub scopes: Option<Vec<Capability>>,
    pub user_id: Option<Uuid>,
    pub created_by: Option<Uuid>,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
    pub last_used_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewKey {
    pub key_hash: [u8; 32],
    pub prefix: String,
    pub name: String,
    pub role: Role,
    pub scopes: Option<Vec<Capability>>,
    pub user_id: Option<Uuid>,
    pub created_by: Option<Uuid>,
    pub expires_at_ms: Option<i64>,
}

/// Feature flags and limits of one tenant. A flag missing from `features` is on;
/// a limit of `None` leaves the server default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TenantSettings {
    pub features: BTreeMap<String, bool>,
    pub max_vehicles: Option<u64>,
    pub max_users: Option<u64>,
    pub api_rate_per_min: Option<u32>,
}

/// A change to a tenant's settings. Flags are merged in; for limits, `Some(None)`
/// removes the limit and `None` leaves it.
#[derive(Debug, Clone, Default)]
pub struct SettingsPatch {
    pub features: BTreeMap<String, bool>,
    pub max_vehicles: Option<Option<u64>>,
    pub max_users: Option<Option<u64>>,
    pub api_rate_per_min: Option<Option<u32>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantInfo {
    pub tenant_id: Uuid,
    pub name: String,
    pub created_at_ms: i64,
    pub settings: TenantSettings,
}

/// What a presented key resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAuth {
    pub key: ApiKey,
    /// The key belongs to a user who is disabled.
    pub user_disabled: bool,
    pub settings: TenantSettings,
}

/// Who did something recorded in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A tenant's API key (`actor_key_id`, and `actor_user_id` when it is a user's).
    Key,
    /// The server operator's key.
    Operator,
    /// `fleet-sync admin` on the server itself.
    Cli,
    /// A user's dashboard session (`actor_user_id`).
    Session,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Key => "key",
            ActorKind::Operator => "operator",
            ActorKind::Cli => "cli",
            ActorKind::Session => "session",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "key" => Some(ActorKind::Key),
            "operator" => Some(ActorKind::Operator),
            "cli" => Some(ActorKind::Cli),
            "session" => Some(ActorKind::Session),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub tenant_id: Uuid,
    pub audit_id: Uuid,
    pub at_ms: i64,
    pub actor_kind: ActorKind,
    pub actor_key_id: Option<Uuid>,
    pub actor_user_id: Option<Uuid>,
    /// Dotted, stable: `user.create`, `key.revoke`, `tenant.settings`, ….
    pub action: String,
    /// What was acted on, e.g. `user:UUID`.
    pub target: String,
    pub detail: serde_json::Value,
    pub request_id: Option<String>,
}

/// Filters of an audit query; entries come newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub action: Option<String>,
    pub actor_key_id: Option<Uuid>,
    pub actor_user_id: Option<Uuid>,
    pub target: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Continue after this entry (the last of the previous page).
    pub before: Option<(i64, Uuid)>,
    pub limit: u32,
}

/// What a vehicle cost, in cents of `currency`. Every field may be unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CostProfile {
    pub purchase_price_cents: Option<i64>,
    /// `YYYY-MM-DD`.
    pub purchase_date: Option<String>,
    pub fuel_cost_cents: Option<i64>,
    pub maintenance_cost_cents: Option<i64>,
    /// ISO 4217, e.g. `EUR`.
    pub currency: Option<String>,
}

#[async_trait]
pub trait AccessStore: Send + Sync {
    /// The key with this sha256, whatever its state (the caller decides what a
    /// revoked or expired key means), with its tenant's settings.
    async fn key_by_hash(&self, key_hash: [u8; 32]) -> Result<Option<KeyAuth>, StorageError>;
    /// Records that a key was used (callers throttle this).
    async fn touch_key(&self, tenant: Uuid, key_id: Uuid, now_ms: i64) -> Result<(), StorageError>;
    /// `UnknownTenant`, or `UnknownUser` when `user_id` is not the tenant's.
    async fn create_key(
        &self,
        tenant: Uuid,
        key: NewKey,
        now_ms: i64,
    ) -> Result<ApiKey, StorageError>;
    async fn list_keys(&self, tenant: Uuid) -> Result<Vec<ApiKey>, StorageError>;
    /// Revoking twice keeps the first time. `UnknownKey` for another tenant's key.
    async fn revoke_key(
        &self,
        tenant: Uuid,
        key_id: Uuid,
        now_ms: i64,
    ) -> Result<ApiKey, StorageError>;

    /// `LimitReached` at the tenant's `max_users` (or `default_max_users` when it
    /// has none), `Conflict` for an email the tenant already has.
    async fn create_user(
        &self,
        tenant: Uuid,
        user: NewUser,
        default_max_users: Option<u64>,
        now_ms: i64,
    ) -> Result<User, StorageError>;
    async fn list_users(&self, tenant: Uuid) -> Result<Vec<User>, StorageError>;
    async fn user(&self, tenant: Uuid, user_id: Uuid) -> Result<Option<User>, StorageError>;
    async fn update_user(
        &self,
        tenant: Uuid,
        user_id: Uuid,
        patch: UserPatch,
    ) -> Result<User, StorageError>;
    /// Deletes the user and revokes their keys.
    async fn delete_user(
        &self,
        tenant: Uuid,
        user_id: Uuid,
        now_ms: i64,
    ) -> Result<(), StorageError>;

    async fn list_tenants(&self) -> Result<Vec<TenantInfo>, StorageError>;
    async fn tenant_info(&self, tenant: Uuid) -> Result<Option<TenantInfo>, StorageError>;
    async fn update_tenant_settings(
        &self,
        tenant: Uuid,
        patch: SettingsPatch,
        now_ms: i64,
    ) -> Result<TenantSettings, StorageError>;
    /// Devices that count against `max_vehicles` (enrolled and not revoked).
    async fn count_vehicles(&self, tenant: Uuid) -> Result<u64, StorageError>;

    async fn record_audit(&self, entry: AuditEntry) -> Result<(), StorageError>;
    async fn query_audit(
        &self,
        tenant: Uuid,
        query: AuditQuery,
    ) -> Result<Vec<AuditEntry>, StorageError>;

    /// `UnknownDevice` unless the tenant has the device.
    async fn set_vehicle_costs(
        &self,
        tenant: Uuid,
        device: Uuid,
        costs: CostProfile,
        now_ms: i64,
    ) -> Result<CostProfile, StorageError>;
    async fn vehicle_costs(
        &self,
        tenant: Uuid,
    ) -> Result<BTreeMap<Uuid, CostProfile>, StorageError>;
}
