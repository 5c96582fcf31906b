//! The device control plane's storage: enrollment-token listing, device status,
//! device groups, versioned desired config with its rollout, and the webhook
//! outbox. Every backend implements [`ControlStore`] and passes
//! `conformance_control.rs`.

use super::StorageError;
use crate::rollout::{Plan, RolloutState};
use async_trait::async_trait;
use fleet_protocol::control::StatusReport;
use serde::Serialize;
use std::time::Duration;
use uuid::Uuid;

/// An enrollment token as the listing shows it (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// Hex sha256 of the token: names it without revealing it.
    pub id: String,
    pub uses_left: u32,
    /// `None` for tokens issued before the count was kept.
    pub uses_total: Option<u32>,
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
}

/// A newly issued token: the secret is shown this once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    pub info: TokenInfo,
}

/// A device's registry entry with its latest status report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceRegistry {
    pub id: Uuid,
    pub name: String,
    pub enrolled_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    pub last_seen_ms: Option<i64>,
    pub enrolled_agent_version: Option<String>,
    pub group_id: Option<Uuid>,
    pub status: Option<StoredStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredStatus {
    pub reported_at_ms: i64,
    pub report: StatusReport,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceGroup {
    pub id: Uuid,
    pub name: String,
    pub created_at_ms: i64,
    pub devices: Vec<Uuid>,
}

/// A config version's rollout as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutRecord {
    pub group_id: Uuid,
    pub version: u32,
    pub previous_version: u32,
    pub plan: Plan,
    pub state: RolloutState,
    pub reason: Option<String>,
    pub updated_at_ms: i64,
}

/// A rollout of `version` moving from one state to another, with why.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutStep<'a> {
    pub version: u32,
    pub from: &'a RolloutState,
    pub to: &'a RolloutState,
    pub reason: Option<&'a str>,
}

/// What the rollout check needs to know about one member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberHealth {
    pub device_id: Uuid,
    pub last_seen_ms: Option<i64>,
    /// From the latest status report; 0 without one.
    pub applied_version: u32,
    pub failed_version: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    pub kinds: Vec<String>,
    pub format: String,
    pub created_at_ms: i64,
}

/// A delivery ready to send, with what sending needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    pub tenant_id: Uuid,
    pub delivery_id: Uuid,
    pub webhook_id: Uuid,
    pub url: String,
    pub format: String,
    pub secret: String,
    pub event_id: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRecord {
    pub id: Uuid,
    pub event_id: String,
    pub kind: String,
    pub state: String,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub next_attempt_at_ms: i64,
    pub delivered_at_ms: Option<i64>,
}

/// What one send attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered {
        status: u16,
    },
    /// Try again at `retry_at_ms`, or give up (`None`) at the attempt cap.
    Failed {
        status: Option<u16>,
        error: String,
        retry_at_ms: Option<i64>,
    },
}

/// A device not heard from since `last_seen_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilentDevice {
    pub tenant_id: Uuid,
    pub device_id: Uuid,
    pub name: String,
    pub last_seen_ms: i64,
}

#[async_trait]
pub trait ControlStore: Send + Sync + 'static {
    async fn issue_token(
        &self,
        tenant: Uuid,
        ttl: Duration,
        uses: u32,
        now_ms: i64,
    ) -> Result<IssuedToken, StorageError>;
    async fn list_tokens(&self, tenant: Uuid) -> Result<Vec<TokenInfo>, StorageError>;
    /// False when the tenant has no such token.
    async fn revoke_token(&self, tenant: Uuid, id: &str) -> Result<bool, StorageError>;

    async fn device_registry(
        &self,
        tenant: Uuid,
        device: Uuid,
    ) -> Result<Option<DeviceRegistry>, StorageError>;
    /// Keeps the latest report; true when it differs from the one before (other
    /// than in its time).
    async fn put_status(
        &self,
        tenant: Uuid,
        device: Uuid,
        report: &StatusReport,
        now_ms: i64,
    ) -> Result<bool, StorageError>;

    /// `Invalid` when the tenant already has a group of that name.
    async fn create_group(
        &self,
        tenant: Uuid,
        name: &str,
        now_ms: i64,
    ) -> Result<DeviceGroup, StorageError>;
    async fn list_groups(&self, tenant: Uuid) -> Result<Vec<DeviceGroup>, StorageError>;
    async fn group(&self, tenant: Uuid, group: Uuid) -> Result<Option<DeviceGroup>, StorageError>;
    /// Moves the devices into the group (out of any other). `UnknownDevice` when
    /// one is not the tenant's; nothing changes then.
    async fn assign_devices(
        &self,
        tenant: Uuid,
        group: Uuid,
        devices: &[Uuid],
    ) -> Result<DeviceGroup, StorageError>;
    async fn device_group(&self, tenant: Uuid, device: Uuid) -> Result<Option<Uuid>, StorageError>;

    /// Stores the next version of the group's config and starts its rollout; a
    /// rollout still in progress is superseded. Answers the new rollout.
    async fn create_config(
        &self,
        tenant: Uuid,
        group: Uuid,
        document: &serde_json::Value,
        plan: &Plan,
        now_ms: i64,
    ) -> Result<RolloutRecord, StorageError>;
    async fn config_document(
        &self,
        tenant: Uuid,
        group: Uuid,
        version: u32,
    ) -> Result<Option<serde_json::Value>, StorageError>;
    /// The group's newest rollout.
    async fn current_rollout(
        &self,
        tenant: Uuid,
        group: Uuid,
    ) -> Result<Option<RolloutRecord>, StorageError>;
    async fn list_rollouts(
        &self,
        tenant: Uuid,
        group: Uuid,
    ) -> Result<Vec<RolloutRecord>, StorageError>;
    /// Moves a rollout from `from` to `to` only if it is still in `from`, so two
    /// replicas deciding the same step apply it once. True when this call did.
    async fn transition_rollout(
        &self,
        tenant: Uuid,
        group: Uuid,
        step: &RolloutStep<'_>,
        now_ms: i64,
    ) -> Result<bool, StorageError>;
    async fn group_health(
        &self,
        tenant: Uuid,
        group: Uuid,
    ) -> Result<Vec<MemberHealth>, StorageError>;
    /// Groups with a rollout in progress, for the periodic check.
    async fn rolling_groups(&self) -> Result<Vec<(Uuid, Uuid)>, StorageError>;

    async fn create_webhook(
        &self,
        tenant: Uuid,
        url: &str,
        kinds: &[String],
        format: &str,
        secret: &str,
        now_ms: i64,
    ) -> Result<Webhook, StorageError>;
    async fn list_webhooks(&self, tenant: Uuid) -> Result<Vec<Webhook>, StorageError>;
    /// False when the tenant has no such webhook. Its pending deliveries go with it.
    async fn delete_webhook(&self, tenant: Uuid, id: Uuid) -> Result<bool, StorageError>;
    /// Queues `payload` for every webhook of the tenant that wants `kind`; an
    /// event id already queued for a webhook is not queued again. Answers how
    /// many deliveries were queued.
    async fn enqueue_webhook_event(
        &self,
        tenant: Uuid,
        kind: &str,
        event_id: &str,
        payload: &serde_json::Value,
        now_ms: i64,
    ) -> Result<u32, StorageError>;
    /// Pending deliveries due by `now_ms`, oldest first, across tenants.
    async fn due_deliveries(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StorageError>;
    async fn record_attempt(
        &self,
        tenant: Uuid,
        delivery: Uuid,
        outcome: &AttemptOutcome,
        now_ms: i64,
    ) -> Result<(), StorageError>;
    /// Newest first; `None` when the tenant has no such webhook.
    async fn list_deliveries(
        &self,
        tenant: Uuid,
        webhook: Uuid,
        limit: u32,
    ) -> Result<Option<Vec<DeliveryRecord>>, StorageError>;
    /// Devices (not revoked) last seen within `[since_ms, before_ms)`, across
    /// tenants, for the device-offline check.
    async fn silent_devices(
        &self,
        since_ms: i64,
        before_ms: i64,
        limit: u32,
    ) -> Result<Vec<SilentDevice>, StorageError>;
}
