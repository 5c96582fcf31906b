//! The asset catalog (vehicles, trailers, equipment, keys), the badges linked to
//! users, and the idempotency record of office custody requests. Every backend
//! implements [`AssetStore`] and passes `conformance_assets.rs`.
//!
//! An asset's id is the id its QR label carries. Other parts of the server read
//! the `assets` and `user_badges` tables in their own SQL; only this store writes
//! them.

use super::StorageError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetKind {
    Vehicle,
    Trailer,
    Equipment,
    Key,
}

impl AssetKind {
    pub const ALL: [AssetKind; 4] = [
        AssetKind::Vehicle,
        AssetKind::Trailer,
        AssetKind::Equipment,
        AssetKind::Key,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AssetKind::Vehicle => "vehicle",
            AssetKind::Trailer => "trailer",
            AssetKind::Equipment => "equipment",
            AssetKind::Key => "key",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The fields a user sets; the store keeps the times.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetFields {
    pub kind: Option<AssetKind>,
    pub name: String,
    pub make: Option<String>,
    pub model: Option<String>,
    pub vin: Option<String>,
    pub plate: Option<String>,
    pub vehicle_group: Option<String>,
    pub home_yard: Option<String>,
    pub department: Option<String>,
    pub cost_center: Option<String>,
    pub purchase_price_cents: Option<i64>,
    /// `YYYY-MM-DD`.
    pub purchase_date: Option<String>,
    pub device_id: Option<Uuid>,
    pub odometer_km: Option<f64>,
    pub engine_hours: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Asset {
    pub id: Uuid,
    pub kind: AssetKind,
    pub name: String,
    pub make: Option<String>,
    pub model: Option<String>,
    pub vin: Option<String>,
    pub plate: Option<String>,
    pub vehicle_group: Option<String>,
    pub home_yard: Option<String>,
    pub department: Option<String>,
    pub cost_center: Option<String>,
    pub purchase_price_cents: Option<i64>,
    pub purchase_date: Option<String>,
    pub device_id: Option<Uuid>,
    pub odometer_km: Option<f64>,
    pub engine_hours: Option<f64>,
    /// When the meter readings were taken.
    pub meter_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub retired_at_ms: Option<i64>,
}

impl Asset {
    /// A new asset from `fields` (kind defaults to vehicle), created at `now_ms`.
    /// Meter readings given here are taken at `now_ms`.
    pub fn new(id: Uuid, fields: AssetFields, now_ms: i64) -> Self {
        let meter_at_ms =
            (fields.odometer_km.is_some() || fields.engine_hours.is_some()).then_some(now_ms);
        Asset {
            id,
            kind: fields.kind.unwrap_or(AssetKind::Vehicle),
            name: fields.name,
            make: fields.make,
            model: fields.model,
            vin: fields.vin,
            plate: fields.plate,
            vehicle_group: fields.vehicle_group,
            home_yard: fields.home_yard,
            department: fields.department,
            cost_center: fields.cost_center,
            purchase_price_cents: fields.purchase_price_cents,
            purchase_date: fields.purchase_date,
            device_id: fields.device_id,
            odometer_km: fields.odometer_km,
            engine_hours: fields.engine_hours,
            meter_at_ms,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            retired_at_ms: None,
        }
    }

    /// This asset with its user-set fields replaced by `fields`; meters taken at
    /// `now_ms` when they changed.
    pub fn with_fields(&self, fields: AssetFields, now_ms: i64) -> Self {
        let meters_changed =
            fields.odometer_km != self.odometer_km || fields.engine_hours != self.engine_hours;
        let mut next = Asset::new(self.id, fields, now_ms);
        next.meter_at_ms = if meters_changed {
            (next.odometer_km.is_some() || next.engine_hours.is_some()).then_some(now_ms)
        } else {
            self.meter_at_ms
        };
        next.created_at_ms = self.created_at_ms;
        next.retired_at_ms = self.retired_at_ms;
        next
    }

    pub fn fields(&self) -> AssetFields {
        AssetFields {
            kind: Some(self.kind),
            name: self.name.clone(),
            make: self.make.clone(),
            model: self.model.clone(),
            vin: self.vin.clone(),
            plate: self.plate.clone(),
            vehicle_group: self.vehicle_group.clone(),
            home_yard: self.home_yard.clone(),
            department: self.department.clone(),
            cost_center: self.cost_center.clone(),
            purchase_price_cents: self.purchase_price_cents,
            purchase_date: self.purchase_date.clone(),
            device_id: self.device_id,
            odometer_km: self.odometer_km,
            engine_hours: self.engine_hours,
        }
    }
}

/// Which assets a listing returns. Text filters match exactly, except `q`, which
/// matches name, VIN, plate, make or model case-insensitively as a substring.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssetFilter {
    pub kind: Option<AssetKind>,
    pub vehicle_group: Option<String>,
    pub home_yard: Option<String>,
    pub q: Option<String>,
    pub include_retired: bool,
    /// Paging: assets ordered by (name, id), after this one.
    pub after: Option<(String, Uuid)>,
    pub limit: u32,
}

/// One row of an import: create (or replace) the asset with this id.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetUpsert {
    pub asset: Asset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ImportCounts {
    pub created: u32,
    pub updated: u32,
}

/// The answer recorded for an office custody request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub request_sha256: [u8; 32],
    pub status: u16,
    pub response: String,
}

#[async_trait]
pub trait AssetStore: Send + Sync {
    /// Stores a new asset. `Conflict` when the id, VIN or gateway is taken;
    /// `LimitReached` when it is a vehicle and the tenant is at `max_vehicles`
    /// (counting vehicles not retired).
    async fn create_asset(&self, tenant: Uuid, asset: &Asset) -> Result<(), StorageError>;
    async fn asset(&self, tenant: Uuid, id: Uuid) -> Result<Option<Asset>, StorageError>;
    /// The asset fitted with this gateway, retired or not.
    async fn asset_for_device(
        &self,
        tenant: Uuid,
        device: Uuid,
    ) -> Result<Option<Asset>, StorageError>;
    async fn list_assets(
        &self,
        tenant: Uuid,
        filter: &AssetFilter,
    ) -> Result<Vec<Asset>, StorageError>;
    /// Replaces a stored asset's fields (not its id or creation time). `None`
    /// when the tenant has no such asset; `Conflict` as for create;
    /// `LimitReached` when it becomes a vehicle past the limit.
    async fn update_asset(
        &self,
        tenant: Uuid,
        asset: &Asset,
    ) -> Result<Option<Asset>, StorageError>;
    /// Marks the asset retired (once: a second call keeps the first time) and
    /// frees its gateway. `None` when the tenant has no such asset.
    async fn retire_asset(
        &self,
        tenant: Uuid,
        id: Uuid,
        now_ms: i64,
    ) -> Result<Option<Asset>, StorageError>;
    /// Sets the meter readings, taken at `at_ms`, unless newer ones are stored.
    async fn set_meters(
        &self,
        tenant: Uuid,
        id: Uuid,
        odometer_km: Option<f64>,
        engine_hours: Option<f64>,
        at_ms: i64,
    ) -> Result<Option<Asset>, StorageError>;
    /// Creates or replaces every row in one transaction: all or nothing. The
    /// caller has matched rows to ids (by id or VIN) with [`Self::asset_ids_by_vin`].
    async fn import_assets(
        &self,
        tenant: Uuid,
        rows: Vec<AssetUpsert>,
    ) -> Result<ImportCounts, StorageError>;
    /// The ids of the tenant's assets that have a VIN, by VIN.
    async fn asset_ids_by_vin(&self, tenant: Uuid) -> Result<Vec<(String, Uuid)>, StorageError>;

    /// Links a badge to a user; `Conflict` when the badge belongs to another user.
    async fn link_badge(&self, tenant: Uuid, user: Uuid, badge: Uuid) -> Result<(), StorageError>;
    /// Whether a link was removed.
    async fn unlink_badge(
        &self,
        tenant: Uuid,
        user: Uuid,
        badge: Uuid,
    ) -> Result<bool, StorageError>;
    async fn badge_user(&self, tenant: Uuid, badge: Uuid) -> Result<Option<Uuid>, StorageError>;
    /// (user, badge) pairs, by user.
    async fn user_badges(&self, tenant: Uuid) -> Result<Vec<(Uuid, Uuid)>, StorageError>;

    /// The answer first given for this idempotency key, if any.
    async fn recorded_request(
        &self,
        tenant: Uuid,
        key: &str,
    ) -> Result<Option<RecordedRequest>, StorageError>;
    /// Records the answer for a key; when one is already there (a racing
    /// request), that one is returned instead and nothing is written.
    async fn record_request(
        &self,
        tenant: Uuid,
        key: &str,
        request: RecordedRequest,
        now_ms: i64,
    ) -> Result<RecordedRequest, StorageError>;
}
