//! [`ControlStore`] on PostgreSQL: not written yet. Every call answers
//! [`StorageError::Unsupported`] (HTTP 501), so a PostgreSQL deployment says
//! plainly that the device control plane needs the SQLite backend for now.

use super::PgStorage;
use crate::rollout::Plan;
use crate::storage::control::{
    AttemptOutcome, ControlStore, DeliveryRecord, DeviceGroup, DeviceRegistry, DueDelivery,
    IssuedToken, MemberHealth, RolloutRecord, RolloutStep, SilentDevice, TokenInfo, Webhook,
};
use crate::storage::StorageError;
use async_trait::async_trait;
use fleet_protocol::control::StatusReport;
use std::time::Duration;
use uuid::Uuid;

const WHAT: &str = "the device control plane on PostgreSQL";

#[async_trait]
impl ControlStore for PgStorage {
    async fn issue_token(
        &self,
        _tenant: Uuid,
        _ttl: Duration,
        _uses: u32,
        _now_ms: i64,
    ) -> Result<IssuedToken, StorageError> {
        Err(StorageError::Unsupported(WHAT))
    }

    async fn list_tokens(&self, _tenant: Uuid) -> Result<Vec<TokenInfo>, StorageError> {
        Err(StorageError::Unsupported(WHAT))
    }

    async fn revoke_token(&self, _tenant: Uuid, _id: &str) -> Result<bool, StorageError> {
        Err(StorageError::Unsupported(WHAT))
    }

    async fn device_registry(
        &self,
        _tenant: Uuid,
        _device: Uuid,
    ) -> Result<Option<DeviceRegistry>, StorageError> {
        Err(StorageError::Unsupported(WHAT))
    }

    async fn put_status(
        &self,
        _tenant: Uuid,
        _device: Uuid,
        _report: &StatusReport,
        _now_ms: i64,
    ) -> Result<bool, StorageError> {
        Err(StorageError::Unsupported(WHAT))
    }

    async fn create_group(
        &self,
        _tenant: Uuid,
        _name: &str,
        _now_ms: i64,
    ) -> Result<DeviceGroup, StorageError> {
        Err(StorageError::Unsupported(WHAT))
    }

    async fn list_groups(&self, _tenant: Uuid) -> Result<Vec<DeviceGroup>, StorageError> {
        Err(StorageError::Unsupported(WHAT))
    }

    async fn group(
        &self,
        _tenant: Uuid,
        _group: Uuid,
    ) -> Result<Option<DeviceGroup>, StorageError> {
        Err(StorageError::Unsupported(WHAT))
    }

    async fn assign_devices(
        &self,
        _tenant: Uuid,
        _group: Uuid,
        _devices: &[Uuid],
    ) -> Result<DeviceGroup, StorageError> {
        Err(StorageError::Unsupported(WHAT))
    }

    async fn device_group(
        &self,
        _tenant: Uuid,
        _device: Uuid,
    ) -> Result<Option<Uuid>, StorageError> {
        Err(StorageError::Unsupported(WHAT))
    }

    async fn create_config(
        &self,
        _tenant: Uuid,
        _group: Uuid,
        _document: &serde_json::Value,
        _plan: &Plan,
        _now_ms: i64,
    ) -> Result<RolloutRecord, StorageError> {
        Err(StorageError::Unsupported(WHAT))
    }

    async fn config_document(
        &self,
        _tenant: Uuid,
        _group: Uuid,
        _version: u32,
    ) -> Result<Option<serde_json::Value>, StorageError> {
        Err(StorageError::Unsupported(WHAT))
    }

    async fn current_rollout(
        &self,
        _tenant: Uuid,
        _group: Uuid,
    ) -> Result<Option<RolloutRecord>, StorageError> {
        Err(StorageError::Unsupported(WHAT))
    }

    async fn list_rollouts(
        &self,
        _tenant: Uuid,
        _group: Uuid,
    ) -> Result<Vec<RolloutRecord>, StorageError> {
        Err(StorageError::Unsupported(WHAT))
    }

    async fn transition_rollout(
        &self,
        _tenant: Uuid,
        _group: Uuid,
        _step: &RolloutStep<'_>,
        _now_ms: i64,
    ) -> Result<bool, StorageError> {
        Err(StorageError::Unsupported(WHAT))
    }

    async fn group_health(
        &self,
        _tenant: Uuid,
        _group: Uuid,
    ) -> Result<Vec<MemberHealth>, StorageError> {
        Err(StorageError::Unsupported(WHAT))
    }

    async fn rolling_groups(&self) -> Result<Vec<(Uuid, Uuid)>, StorageError> {
        Err(StorageError::Unsupported(WHAT))
    }

    async fn create_webhook(
        &self,
        _tenant: Uuid,
        _url: &str,
        _kinds: &[String],
        _format: &str,
        _secret: &str,
        _now_ms: i64,
    ) -> Result<Webhook, StorageError> {
        Err(StorageError::Unsupported(WHAT))
    }

    async fn list_webhooks(&self, _tenant: Uuid) -> Result<Vec<Webhook>, StorageError> {
        Err(StorageError::Unsupported(WHAT))
    }

    async fn delete_webhook(&self, _tenant: Uuid, _id: Uuid) -> Result<bool, StorageError> {
        Err(StorageError::Unsupported(WHAT))
    }

    async fn enqueue_webhook_event(
        &self,
        _tenant: Uuid,
        _kind: &str,
        _event_id: &str,
        _payload: &serde_json::Value,
        _now_ms: i64,
    ) -> Result<u32, StorageError> {
        Err(StorageError::Unsupported(WHAT))
    }

    async fn due_deliveries(
        &self,
        _now_ms: i64,
        _limit: u32,
    ) -> Result<Vec<DueDelivery>, StorageError> {
        Err(StorageError::Unsupported(WHAT))
    }

    async fn record_attempt(
        &self,
        _tenant: Uuid,
        _delivery: Uuid,
        _outcome: &AttemptOutcome,
        _now_ms: i64,
    ) -> Result<(), StorageError> {
        Err(StorageError::Unsupported(WHAT))
    }

    async fn list_deliveries(
        &self,
        _tenant: Uuid,
        _webhook: Uuid,
        _limit: u32,
    ) -> Result<Option<Vec<DeliveryRecord>>, StorageError> {
        Err(StorageError::Unsupported(WHAT))
    }

    async fn silent_devices(
        &self,
        _since_ms: i64,
        _before_ms: i64,
        _limit: u32,
    ) -> Result<Vec<SilentDevice>, StorageError> {
        Err(StorageError::Unsupported(WHAT))
    }
}
