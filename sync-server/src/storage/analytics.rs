//! Rollups, reports' raw figures and maintenance records. The rollups are
//! written by ingest (in its transaction, see `sqlite/analytics.rs` and
//! `postgres/analytics.rs`); everything here reads them or keeps the
//! maintenance records. Every backend passes `conformance_analytics.rs`.

use super::StorageError;
use crate::analytics::report::{AnalyticsSettings, VehiclePeriod};
use crate::analytics::rollup::{DayRollup, TripRow};
use async_trait::async_trait;
use serde::Serialize;
use uuid::Uuid;

/// The rollup columns of `vehicle_day`, in [`DayRollup`] field order.
pub(crate) const DAY_COLUMNS: &str = "events, covered_hours, first_ms, last_ms, engine_on_ms, driving_ms, idle_ms, trips, distance_m, fuel_used_l, \
    harsh_acceleration, harsh_braking, harsh_cornering, speeding_ms, dtc_set, fuel_drops, parked_fuel_drops, refuels, \
    odometer_min_km, odometer_max_km, engine_hours_min, engine_hours_max, cranking_weak, cranking_min_v, battery_low, hour_use_ms";

/// Every device of a tenant with its rollups summed over a range of days; the
/// placeholders are each backend's parameters.
pub(crate) const PERIOD_SELECT: &str = "SELECT d.device_id, coalesce(a.name, d.name), a.vehicle_group,
    count(v.day), sum(CASE WHEN v.engine_on_ms > {used} THEN 1 ELSE 0 END),
    sum(v.engine_on_ms), sum(v.driving_ms), sum(v.idle_ms), sum(v.trips), sum(v.distance_m), sum(v.fuel_used_l),
    sum(v.harsh_acceleration), sum(v.harsh_braking), sum(v.harsh_cornering), sum(v.speeding_ms), sum(v.dtc_set),
    sum(v.fuel_drops), sum(v.parked_fuel_drops), sum(v.refuels),
    min(v.odometer_min_km), max(v.odometer_max_km), min(v.engine_hours_min), max(v.engine_hours_max),
    max(CASE WHEN v.engine_on_ms > {used} THEN v.day END), max(v.day), a.purchase_price_cents
  FROM devices d
  LEFT JOIN assets a ON a.tenant_id = d.tenant_id AND a.device_id = d.device_id
  LEFT JOIN vehicle_day v ON v.tenant_id = d.tenant_id AND v.device_id = d.device_id AND v.day BETWEEN {from} AND {to}
  WHERE d.tenant_id = {tenant} AND d.kind = 'vehicle'
  GROUP BY d.device_id, d.name, a.name, a.vehicle_group, a.purchase_price_cents
  ORDER BY 2, 1";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultCount {
    pub device_id: Uuid,
    pub code: String,
    pub count: i64,
    pub last_day: i32,
}

/// A service schedule for one vehicle (`device_id`), a vehicle group, or, with
/// neither, every vehicle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceSchedule {
    pub id: Uuid,
    pub name: String,
    pub device_id: Option<Uuid>,
    pub vehicle_group: Option<String>,
    pub every_km: Option<f64>,
    pub every_engine_hours: Option<f64>,
    pub every_days: Option<i64>,
    pub created_at_ms: i64,
}

/// The last time a schedule was served on a vehicle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceRecord {
    pub schedule_id: Uuid,
    pub device_id: Uuid,
    pub done_at_ms: i64,
    pub odometer_km: Option<f64>,
    pub engine_hours: Option<f64>,
    pub work_order_id: Option<Uuid>,
}

pub const WORK_ORDER_STATUSES: [&str; 4] = ["open", "in_progress", "completed", "cancelled"];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkOrder {
    pub id: Uuid,
    pub device_id: Uuid,
    pub schedule_id: Option<Uuid>,
    pub title: String,
    /// `open`, `in_progress`, `completed` or `cancelled`.
    pub status: String,
    pub parts_cents: i64,
    pub labor_cents: i64,
    pub opened_at_ms: i64,
    pub closed_at_ms: Option<i64>,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRecord {
    pub id: Uuid,
    pub device_id: Uuid,
    /// `battery_weakening`, `recurring_fault` or `fuel_drop_parked`.
    pub kind: String,
    pub key: String,
    pub message: String,
    pub data: serde_json::Value,
    pub raised_at_ms: i64,
    pub notified_at_ms: Option<i64>,
    pub acknowledged_at_ms: Option<i64>,
}

#[async_trait]
pub trait AnalyticsStore {
    /// The tenant's settings, or the defaults when none were set.
    async fn analytics_settings(&self, tenant: Uuid) -> Result<AnalyticsSettings, StorageError>;
    /// The caller has validated `s`.
    async fn set_analytics_settings(
        &self,
        tenant: Uuid,
        s: &AnalyticsSettings,
        now_ms: i64,
    ) -> Result<(), StorageError>;

    /// Every device of the tenant (with its asset's name and group when one is
    /// fitted with it) and its rollups summed over local days `from..=to`; a day
    /// counts as used when its engine-on time is more than `used_min_ms`.
    async fn period_summary(
        &self,
        tenant: Uuid,
        from_day: i32,
        to_day: i32,
        used_min_ms: i64,
    ) -> Result<Vec<VehiclePeriod>, StorageError>;

    /// One device's stored days in `from..=to`, ascending (days without data
    /// have no row).
    async fn vehicle_days(
        &self,
        tenant: Uuid,
        device: Uuid,
        from_day: i32,
        to_day: i32,
    ) -> Result<Vec<(i32, DayRollup)>, StorageError>;

    /// Engine-on ms per local hour of each stored day in `from..=to`, of one
    /// device or all.
    async fn hour_use(
        &self,
        tenant: Uuid,
        from_day: i32,
        to_day: i32,
        device: Option<Uuid>,
    ) -> Result<Vec<(i32, [i64; 24])>, StorageError>;

    /// Trips that ended in `from_ms..to_ms`, newest first.
    async fn trips(
        &self,
        tenant: Uuid,
        from_ms: i64,
        to_ms: i64,
        device: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<(Uuid, TripRow)>, StorageError>;

    /// Fault codes set in local days `from..=to`, per device and code.
    async fn fault_summary(
        &self,
        tenant: Uuid,
        from_day: i32,
        to_day: i32,
    ) -> Result<Vec<FaultCount>, StorageError>;

    async fn create_service_schedule(
        &self,
        tenant: Uuid,
        s: &ServiceSchedule,
    ) -> Result<(), StorageError>;
    async fn service_schedules(&self, tenant: Uuid) -> Result<Vec<ServiceSchedule>, StorageError>;
    /// `false` when there was no such schedule.
    async fn delete_service_schedule(&self, tenant: Uuid, id: Uuid) -> Result<bool, StorageError>;
    /// Records (replaces) the last service of a schedule on a vehicle.
    /// `UnknownDevice` or `Invalid` when either is not the tenant's.
    async fn record_service(&self, tenant: Uuid, r: &ServiceRecord) -> Result<(), StorageError>;
    async fn service_records(&self, tenant: Uuid) -> Result<Vec<ServiceRecord>, StorageError>;

    /// `UnknownDevice` when the device is not the tenant's.
    async fn create_work_order(&self, tenant: Uuid, w: &WorkOrder) -> Result<(), StorageError>;
    /// Replaces a work order's mutable fields; `None` when there is no such order.
    async fn update_work_order(
        &self,
        tenant: Uuid,
        w: &WorkOrder,
    ) -> Result<Option<WorkOrder>, StorageError>;
    async fn work_order(&self, tenant: Uuid, id: Uuid) -> Result<Option<WorkOrder>, StorageError>;
    async fn work_orders(
        &self,
        tenant: Uuid,
        device: Option<Uuid>,
    ) -> Result<Vec<WorkOrder>, StorageError>;

    /// Newest first; with `open_only`, unacknowledged alerts only.
    async fn maintenance_alerts(
        &self,
        tenant: Uuid,
        open_only: bool,
    ) -> Result<Vec<AlertRecord>, StorageError>;
    /// `None` when there is no such alert.
    async fn acknowledge_alert(
        &self,
        tenant: Uuid,
        id: Uuid,
        now_ms: i64,
    ) -> Result<Option<AlertRecord>, StorageError>;
    /// Claims up to `limit` alerts of any tenant not yet sent on, marking them
    /// notified at `now_ms`; each is returned to exactly one caller, also when
    /// several replicas ask at once.
    async fn take_unnotified_alerts(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<(Uuid, AlertRecord)>, StorageError>;
}
