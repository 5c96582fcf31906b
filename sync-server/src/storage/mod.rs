//! Everything the server keeps, behind one backend-neutral trait.
//!
//! Each backend (SQLite now, PostgreSQL later) implements [`Storage`] and passes
//! the one behaviour suite in `conformance.rs`. Methods take the caller's notion of
//! "now" where the answer depends on it, so the suite can test expiry and skew
//! without waiting.

use async_trait::async_trait;
use fleet_protocol::Batch;
use serde::Serialize;
use std::time::Duration;
use thiserror::Error;
use uuid::Uuid;

pub mod access;
pub mod analytics;
pub mod assets;
pub mod control;
pub mod inspections;
pub mod kiosk;
pub mod mail;
pub mod migration;
pub mod postgres;
pub mod reports;
pub mod reservations;
pub mod sessions;
pub mod sqlite;
pub mod stream;

#[cfg(test)]
pub mod conformance;
#[cfg(test)]
pub mod conformance_access;
#[cfg(test)]
pub mod conformance_analytics;
#[cfg(test)]
pub mod conformance_assets;
#[cfg(test)]
pub mod conformance_control;
#[cfg(test)]
pub mod conformance_inspections;
#[cfg(test)]
pub mod conformance_kiosk;
#[cfg(test)]
pub mod conformance_mail;
#[cfg(test)]
pub mod conformance_reservations;
#[cfg(test)]
pub mod conformance_sessions;
#[cfg(test)]
pub mod conformance_stream;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("no such tenant")]
    UnknownTenant,
    #[error("no such device")]
    UnknownDevice,
    #[error("enrollment token is not known")]
    TokenInvalid,
    #[error("enrollment token has expired")]
    TokenExpired,
    #[error("enrollment token has no uses left")]
    TokenUsedUp,
    #[error("this public key is already enrolled in another tenant")]
    KeyInUse,
    #[error("device credentials were revoked")]
    DeviceRevoked,
    #[error("request nonce was already used")]
    Replayed,
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("no such user")]
    UnknownUser,
    #[error("no such API key")]
    UnknownKey,
    #[error("{0}")]
    Conflict(String),
    #[error("the tenant's {limit} limit ({max}) is reached")]
    LimitReached { limit: &'static str, max: u64 },
    #[error("database schema version {found} is newer than this binary supports ({supported}); upgrade fleet-sync")]
    SchemaTooNew { found: u32, supported: u32 },
    #[error("{0} is not available yet")]
    Unsupported(&'static str),
    #[error("storage is shut down")]
    Closed,
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    #[error("storage backend failed: {0}")]
    Backend(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewTenant {
    pub tenant_id: Uuid,
    pub api_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewToken {
    pub token: String,
    /// RFC 3339, UTC.
    pub expires_at: String,
}

/// A device asking to join the tenant its token belongs to. The caller has already
/// checked the proof signature.
#[derive(Debug, Clone)]
pub struct EnrollDevice {
    pub token: String,
    /// Ed25519 public key, base64 as on the wire.
    pub public_key: String,
    pub name: Option<String>,
    pub agent_version: Option<String>,
    pub now_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub tenant_id: Uuid,
    pub device_id: Uuid,
    pub name: String,
    pub public_key: String,
    pub revoked: bool,
}

/// What one stored batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestOutcome {
    pub acked_seq: u64,
    pub stored: u32,
    pub duplicates: u32,
    pub quarantined: u32,
    pub evicted: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceSummary {
    pub id: Uuid,
    pub name: String,
    pub enrolled_at_ms: i64,
    pub last_seen_ms: Option<i64>,
    pub last_seq: u64,
    pub event_count: u64,
    pub evicted_count: u64,
    pub quarantined_count: u64,
    pub revoked: bool,
    /// Vehicle or kiosk (migration 0013); only vehicles are listed as vehicles.
    pub kind: fleet_protocol::api::DeviceKind,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    pub seq: u64,
    pub kind: String,
    pub priority: fleet_protocol::Priority,
    pub time_ms: i64,
    /// "gps", "ntp", "server" when rebased on an anchor, else "device", or
    /// "device_implausible" for a wall clock that cannot be right.
    pub time_source: String,
    pub boot_id: String,
    pub mono_ms: u64,
    pub wall_ms: i64,
    pub hlc: u64,
    pub config_version: u32,
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastPosition {
    pub seq: u64,
    pub lat: f64,
    pub lon: f64,
    pub speed_mps: Option<f64>,
    pub heading_deg: Option<f64>,
    pub time_ms: i64,
    pub time_source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VehicleSummary {
    pub id: Uuid,
    pub name: String,
    pub last_seen_ms: Option<i64>,
    pub revoked: bool,
    pub position: Option<LastPosition>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuarantinedEvent {
    pub device_id: Uuid,
    pub seq: u64,
    pub kind: Option<String>,
    /// Stable code: `invalid_event` or `seq_conflict`.
    pub reason_code: String,
    pub reason: String,
    pub raw: serde_json::Value,
    pub received_at_ms: i64,
}

/// A change to a stored automerge document.
#[derive(Debug, Clone)]
pub enum DocWrite {
    /// Append an incremental save to the chunks already stored.
    Append(Vec<u8>),
    /// Replace every chunk with one full save (compaction).
    Replace(Vec<u8>),
}

/// A stored automerge document: its chunks concatenated, ready for `load`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocBytes {
    pub bytes: Vec<u8>,
    pub chunks: u32,
}

#[async_trait]
pub trait Storage:
    access::AccessStore
    + analytics::AnalyticsStore
    + assets::AssetStore
    + control::ControlStore
    + kiosk::KioskStore
    + mail::MailStore
    + reports::ReportStore
    + reservations::ReservationStore
    + sessions::SessionStore
    + inspections::InspectionStore
    + Send
    + Sync
    + 'static
{
    /// Cheap check that the backend answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StorageError>;

    /// The live stream's log, when this backend keeps one.
    fn stream_store(&self) -> Option<&dyn stream::StreamStore> {
        None
    }

    async fn create_tenant(&self, name: &str) -> Result<NewTenant, StorageError>;
    async fn tenant_for_api_key(&self, api_key: &str) -> Result<Option<Uuid>, StorageError>;
    async fn create_enrollment_token(
        &self,
        tenant: Uuid,
        ttl: Duration,
        uses: u32,
    ) -> Result<NewToken, StorageError>;

    /// Consumes one use of the token atomically and registers the key. Enrolling
    /// the same key again under the same tenant returns the existing device without
    /// using the token again, so a device whose first answer was lost can retry.
    async fn enroll_device(&self, req: EnrollDevice) -> Result<DeviceRecord, StorageError>;
    async fn device(&self, device_id: Uuid) -> Result<Option<DeviceRecord>, StorageError>;
    /// Records what an enrolled device is; kiosks stay out of vehicle lists,
    /// the map and the reports. `UnknownDevice` when the tenant has no such device.
    async fn set_device_kind(
        &self,
        tenant: Uuid,
        device_id: Uuid,
        kind: fleet_protocol::api::DeviceKind,
    ) -> Result<(), StorageError>;
    async fn revoke_device(
        &self,
        device_id: Uuid,
        now_ms: i64,
    ) -> Result<DeviceRecord, StorageError>;
    /// Records a request nonce (and that the device was seen); `Replayed` when the
    /// device already used it. Nonces older than `keep_after_ms` may be pruned.
    async fn accept_nonce(
        &self,
        device: &DeviceRecord,
        nonce: &str,
        ts_ms: i64,
        now_ms: i64,
        keep_after_ms: i64,
    ) -> Result<(), StorageError>;

    /// Stores one decoded batch in one transaction. The caller has checked that
    /// the header names `device`.
    async fn ingest_batch(
        &self,
        device: &DeviceRecord,
        batch: Batch,
        now_ms: i64,
    ) -> Result<IngestOutcome, StorageError>;

    async fn list_devices(&self, tenant: Uuid) -> Result<Vec<DeviceSummary>, StorageError>;
    /// Events with seq > `after_seq`, ascending; `None` when the tenant has no such device.
    async fn device_events(
        &self,
        tenant: Uuid,
        device: Uuid,
        after_seq: u64,
        limit: u32,
    ) -> Result<Option<Vec<StoredEvent>>, StorageError>;
    async fn list_vehicles(&self, tenant: Uuid) -> Result<Vec<VehicleSummary>, StorageError>;
    async fn list_quarantine(
        &self,
        tenant: Uuid,
        limit: u32,
    ) -> Result<Vec<QuarantinedEvent>, StorageError>;

    async fn load_doc(&self, tenant: Uuid, doc_id: &str) -> Result<Option<DocBytes>, StorageError>;
    async fn doc_sync_state(
        &self,
        tenant: Uuid,
        doc_id: &str,
        device: Uuid,
    ) -> Result<Option<Vec<u8>>, StorageError>;
    /// Writes a document change and, when given, a device's sync state, atomically.
    async fn save_doc(
        &self,
        tenant: Uuid,
        doc_id: &str,
        write: Option<DocWrite>,
        sync_state: Option<(Uuid, Vec<u8>)>,
        now_ms: i64,
    ) -> Result<(), StorageError>;
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// 256 random bits, URL-safe base64 without padding, behind a readable prefix.
pub(crate) fn random_secret(prefix: &str) -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

pub fn rfc3339_ms(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// An opened backend, kept concrete for what only one of them has (PostgreSQL's
/// partition maintenance).
#[derive(Clone)]
pub enum Backend {
    Sqlite(std::sync::Arc<sqlite::SqliteStorage>),
    Postgres(std::sync::Arc<postgres::PgStorage>),
}

impl Backend {
    pub fn storage(&self) -> std::sync::Arc<dyn Storage> {
        match self {
            Backend::Sqlite(s) => s.clone(),
            Backend::Postgres(p) => p.clone(),
        }
    }

    pub fn postgres(&self) -> Option<&std::sync::Arc<postgres::PgStorage>> {
        match self {
            Backend::Postgres(p) => Some(p),
            Backend::Sqlite(_) => None,
        }
    }
}

/// Whether `url` names a PostgreSQL database rather than a SQLite file.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Opens and migrates the database `url_or_path` names: `postgres://…` (or
/// `postgresql://…`), else a SQLite file (`sqlite://PATH` or a plain path).
pub async fn open(url_or_path: &str) -> Result<Backend, StorageError> {
    if is_postgres_url(url_or_path) {
        let pg = postgres::PgStorage::connect(url_or_path).await?;
        return Ok(Backend::Postgres(std::sync::Arc::new(pg)));
    }
    let path =
        std::path::PathBuf::from(url_or_path.strip_prefix("sqlite://").unwrap_or(url_or_path));
    let db = tokio::task::spawn_blocking(move || sqlite::SqliteStorage::open(&path))
        .await
        .map_err(|e| StorageError::Backend(e.to_string()))??;
    Ok(Backend::Sqlite(std::sync::Arc::new(db)))
}
