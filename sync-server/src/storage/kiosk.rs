//! What the server keeps for yard kiosks: each tenant's label signing key, the
//! labels it issued, its kiosk policy, custody holders and conflicts, and the
//! index of uploaded blobs. Every backend implements [`KioskStore`] and passes
//! `conformance_kiosk.rs`.

use super::StorageError;
use async_trait::async_trait;
use fleet_protocol::custody::{CustodyConflict, CustodyOp};
use fleet_protocol::label::LabelKind;
use fleet_protocol::snapshot::{KioskPolicy, WalkUp};
use serde::Serialize;
use uuid::Uuid;

/// A tenant's Ed25519 signing key as stored. The secret is stored as given: the
/// caller seals it (`crate::sealing`).
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSigningKey {
    pub secret: Vec<u8>,
    /// Base64, as in the enroll response.
    pub public_key: String,
    pub created_at_ms: i64,
}

impl std::fmt::Debug for StoredSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSigningKey")
            .field("secret", &"<redacted>")
            .field("public_key", &self.public_key)
            .field("created_at_ms", &self.created_at_ms)
            .finish()
    }
}

/// An issued label. `id` is what the label names: the asset or vehicle itself,
/// a key tag or a badge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabelRecord {
    pub id: Uuid,
    pub kind: LabelKind,
    /// The asset's or vehicle's name, the key's description, or the driver's name.
    pub name: String,
    /// Key tags: the asset the key opens.
    pub asset_id: Option<Uuid>,
    /// Key tags: the slot in the key box.
    pub slot: Option<u32>,
    pub short_code: String,
    /// The QR text.
    pub text: String,
    pub expires_at_s: Option<u32>,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// Who holds an asset, as the last merge of its custody document left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustodyHolder {
    pub asset_id: Uuid,
    /// The check-out in force, `None` when the asset is in.
    pub holder: Option<CustodyOp>,
    pub ops: u32,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConflictResolution {
    pub holder_badge: Option<Uuid>,
    pub note: String,
    /// The API key that resolved it.
    pub resolved_by: Option<Uuid>,
    pub resolved_at_ms: i64,
}

/// Two check-outs of one asset with no check-in between them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConflictRecord {
    pub id: Uuid,
    pub asset_id: Uuid,
    pub first: CustodyOp,
    pub second: CustodyOp,
    pub detected_at_ms: i64,
    pub resolution: Option<ConflictResolution>,
}

/// A complete, digest-checked blob in the tenant's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlobRecord {
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
    pub size: u64,
    pub content_type: String,
    pub device_id: Option<Uuid>,
    pub stored_at_ms: i64,
}

pub fn walk_up_str(w: WalkUp) -> &'static str {
    match w {
        WalkUp::Allow => "allow",
        WalkUp::Refuse => "refuse",
        WalkUp::Queue => "queue",
    }
}

pub fn parse_walk_up(s: &str) -> Option<WalkUp> {
    match s {
        "allow" => Some(WalkUp::Allow),
        "refuse" => Some(WalkUp::Refuse),
        "queue" => Some(WalkUp::Queue),
        _ => None,
    }
}

#[async_trait]
pub trait KioskStore: Send + Sync {
    /// The tenant's signing key; the first call stores `candidate` (secret,
    /// public key) and later calls return that one, whoever raced.
    async fn tenant_signing_key(
        &self,
        tenant: Uuid,
        candidate: StoredSigningKey,
    ) -> Result<StoredSigningKey, StorageError>;

    /// The tenant's stored signing key, if it has one; makes none.
    async fn stored_signing_key(
        &self,
        tenant: Uuid,
    ) -> Result<Option<StoredSigningKey>, StorageError>;

    /// Replaces the stored secret when it is still `old` (sealing a plain seed,
    /// or re-sealing after a key rotation); `false` when it was not.
    async fn replace_signing_secret(
        &self,
        tenant: Uuid,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StorageError>;

    /// Re-seals the stored secret under another key-encryption key: replaces it
    /// when it is still `old` and records `audit`, in one transaction. `false`,
    /// with nothing written, when the secret was no longer `old`.
    async fn reseal_signing_secret(
        &self,
        tenant: Uuid,
        old: &[u8],
        new: &[u8],
        audit: super::access::AuditEntry,
    ) -> Result<bool, StorageError>;

    /// Stores a new label; `Conflict` when the tenant already has a label with
    /// this id or short code.
    async fn insert_label(&self, tenant: Uuid, label: &LabelRecord) -> Result<(), StorageError>;
    async fn label(&self, tenant: Uuid, id: Uuid) -> Result<Option<LabelRecord>, StorageError>;
    /// By kind then creation time.
    async fn list_labels(&self, tenant: Uuid) -> Result<Vec<LabelRecord>, StorageError>;
    /// Marks the label revoked (once: a second call keeps the first time).
    /// `None` when the tenant has no such label.
    async fn revoke_label(
        &self,
        tenant: Uuid,
        id: Uuid,
        now_ms: i64,
    ) -> Result<Option<LabelRecord>, StorageError>;

    /// The tenant's kiosk policy, or the default when none was set.
    async fn kiosk_policy(&self, tenant: Uuid) -> Result<KioskPolicy, StorageError>;
    async fn set_kiosk_policy(
        &self,
        tenant: Uuid,
        policy: KioskPolicy,
        now_ms: i64,
    ) -> Result<(), StorageError>;

    /// Records an asset's custody after a merge: its holder, and every conflict
    /// not yet recorded (a conflict is known by its two event ids). Answers the
    /// conflicts that are new.
    async fn record_custody(
        &self,
        tenant: Uuid,
        asset: Uuid,
        holder: Option<CustodyOp>,
        ops: u32,
        conflicts: &[CustodyConflict],
        now_ms: i64,
    ) -> Result<Vec<ConflictRecord>, StorageError>;
    async fn custody_holders(&self, tenant: Uuid) -> Result<Vec<CustodyHolder>, StorageError>;
    /// Oldest first; resolved ones only when `include_resolved`.
    async fn custody_conflicts(
        &self,
        tenant: Uuid,
        include_resolved: bool,
    ) -> Result<Vec<ConflictRecord>, StorageError>;
    /// `None` when the tenant has no such conflict; `Conflict` when it was
    /// already resolved.
    async fn resolve_custody_conflict(
        &self,
        tenant: Uuid,
        id: Uuid,
        resolution: ConflictResolution,
    ) -> Result<Option<ConflictRecord>, StorageError>;

    /// Indexes a complete blob; indexing one already there keeps the first.
    async fn index_blob(&self, tenant: Uuid, blob: &BlobRecord) -> Result<(), StorageError>;
    async fn blob(&self, tenant: Uuid, sha256: &str) -> Result<Option<BlobRecord>, StorageError>;

    /// The newest odometer and fuel level of each asset whose gateway
    /// reported one, for the kiosk snapshot: the odometer from the newest day
    /// rollup that has one, timed by that day's last event; the fuel level as
    /// ingest last kept it. Retired assets and assets without a gateway are
    /// left out.
    async fn gateway_readings(&self, tenant: Uuid) -> Result<Vec<GatewayReadings>, StorageError>;
}

/// What a vehicle's gateway last reported, by asset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GatewayReadings {
    pub asset_id: Uuid,
    pub odometer_km: Option<f64>,
    pub odometer_at_ms: Option<i64>,
    pub fuel_pct: Option<f64>,
    pub fuel_at_ms: Option<i64>,
}

/// The snapshot's readings query, the same SQL on both backends but for the
/// placeholder: one row per asset, the newest day with an odometer found
/// through the `(tenant_id, device_id, day)` key.
pub(crate) fn gateway_readings_sql(tenant_param: &str) -> String {
    format!(
        "SELECT a.asset_id, d.odometer_max_km, d.last_ms, f.level_pct, f.time_ms
         FROM assets a
         LEFT JOIN vehicle_day d ON d.tenant_id = a.tenant_id AND d.device_id = a.device_id
             AND d.day = (SELECT max(x.day) FROM vehicle_day x WHERE x.tenant_id = a.tenant_id
                          AND x.device_id = a.device_id AND x.odometer_max_km IS NOT NULL)
         LEFT JOIN fuel_levels f ON f.tenant_id = a.tenant_id AND f.device_id = a.device_id
         WHERE a.tenant_id = {tenant_param} AND a.device_id IS NOT NULL AND a.retired_at_ms IS NULL
             AND (d.odometer_max_km IS NOT NULL OR f.level_pct IS NOT NULL)
         ORDER BY a.asset_id"
    )
}
