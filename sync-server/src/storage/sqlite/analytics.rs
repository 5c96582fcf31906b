//! [`AnalyticsStore`] on SQLite, and the rollup update ingest makes in its
//! transaction.

use super::conn::backend;
use super::lease::{claim_due, Claim};
use super::{blob, uuid_at, SqliteStorage};
use crate::analytics::local_day;
use crate::analytics::maintenance::{self as rules, NewAlert};
use crate::analytics::report::{AnalyticsSettings, VehiclePeriod};
use crate::analytics::rollup::{self, DayRollup, TripRow};
use crate::storage::analytics::{
    AlertRecord, AnalyticsStore, FaultCount, ServiceRecord, ServiceSchedule, WorkOrder,
    DAY_COLUMNS, PERIOD_SELECT,
};
use crate::storage::StorageError;
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use uuid::Uuid;

fn conversion(i: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
}

fn opt_uuid_at(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<Uuid>> {
    match r.get::<_, Option<Vec<u8>>>(i)? {
        Some(b) => Uuid::from_slice(&b).map(Some).map_err(|e| conversion(i, e)),
        None => Ok(None),
    }
}

fn hours_at(r: &Row<'_>, i: usize) -> rusqlite::Result<[i64; 24]> {
    let s: String = r.get(i)?;
    serde_json::from_str(&s).map_err(|e| conversion(i, e))
}

/// A day row from `DAY_COLUMNS` starting at column `o`.
fn day_at(r: &Row<'_>, o: usize) -> rusqlite::Result<DayRollup> {
    Ok(DayRollup {
        events: r.get(o)?,
        covered_hours: r.get(o + 1)?,
        first_ms: r.get(o + 2)?,
        last_ms: r.get(o + 3)?,
        engine_on_ms: r.get(o + 4)?,
        driving_ms: r.get(o + 5)?,
        idle_ms: r.get(o + 6)?,
        trips: r.get(o + 7)?,
        distance_m: r.get(o + 8)?,
        fuel_used_l: r.get(o + 9)?,
        harsh_acceleration: r.get(o + 10)?,
        harsh_braking: r.get(o + 11)?,
        harsh_cornering: r.get(o + 12)?,
        speeding_ms: r.get(o + 13)?,
        dtc_set: r.get(o + 14)?,
        fuel_drops: r.get(o + 15)?,
        parked_fuel_drops: r.get(o + 16)?,
        refuels: r.get(o + 17)?,
        odometer_min_km: r.get(o + 18)?,
        odometer_max_km: r.get(o + 19)?,
        engine_hours_min: r.get(o + 20)?,
        engine_hours_max: r.get(o + 21)?,
        cranking_weak: r.get(o + 22)?,
        cranking_min_v: r.get(o + 23)?,
        battery_low: r.get(o + 24)?,
        hour_use_ms: hours_at(r, o + 25)?,
    })
}

fn settings_in(c: &Connection, t: &[u8]) -> Result<AnalyticsSettings, StorageError> {
    Ok(c
        .prepare_cached(
            "SELECT utc_offset_min, target_hours_per_day, used_day_min_minutes, fuel_price_cents_per_l, depreciation_years, \
             rental_rate_cents_per_day, fault_repeat_count, fault_repeat_days FROM analytics_settings WHERE tenant_id = ?1",
        )
        .map_err(backend)?
        .query_row(params![t], |r| {
            Ok(AnalyticsSettings {
                utc_offset_min: r.get(0)?,
                target_hours_per_day: r.get(1)?,
                used_day_min_minutes: r.get(2)?,
                fuel_price_cents_per_l: r.get(3)?,
                depreciation_years: r.get(4)?,
                rental_rate_cents_per_day: r.get(5)?,
                fault_repeat_count: r.get(6)?,
                fault_repeat_days: r.get(7)?,
            })
        })
        .optional()
        .map_err(backend)?
        .unwrap_or_default())
}

/// Folds the events this batch newly stored into the device's rollups, trips,
/// fault days and fuel level, and raises maintenance alerts; runs inside the
/// ingest transaction.
pub(super) fn fold_ingested(
    tx: &Transaction<'_>,
    t: &[u8],
    d: &[u8],
    stored: &[(&fleet_protocol::Event, i64)],
    now_ms: i64,
) -> Result<(), StorageError> {
    if stored.is_empty() {
        return Ok(());
    }
    let events = rollup::observed(stored);
    let s = settings_in(tx, t)?;
    let off = s.utc_offset_min;
    let mut f = rollup::fold(&events, off);

    if !f.fuel_levels.is_empty() {
        let prev: Option<(i64, f64)> = tx
            .prepare_cached("SELECT time_ms, level_pct FROM fuel_levels WHERE tenant_id = ?1 AND device_id = ?2")
            .map_err(backend)?
            .query_row(params![t, d], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(backend)?;
        let (times, newest) = rollup::refuels(prev, &f.fuel_levels);
        for at in times {
            f.days.entry(local_day(at, off)).or_default().refuels += 1;
        }
        if let Some((time_ms, level)) = newest.filter(|n| Some(*n) != prev) {
            tx.prepare_cached(
                "INSERT INTO fuel_levels (tenant_id, device_id, level_pct, time_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tenant_id, device_id) DO UPDATE SET level_pct = excluded.level_pct, time_ms = excluded.time_ms",
            )
            .map_err(backend)?
            .execute(params![t, d, level, time_ms])
            .map_err(backend)?;
        }
    }

    for (day, delta) in &f.days {
        let mut row: DayRollup = tx
            .prepare_cached(&format!(
                "SELECT {DAY_COLUMNS} FROM vehicle_day WHERE tenant_id = ?1 AND device_id = ?2 AND day = ?3"
            ))
            .map_err(backend)?
            .query_row(params![t, d, day], |r| day_at(r, 0))
            .optional()
            .map_err(backend)?
            .unwrap_or_default();
        row.merge(delta);
        write_day(tx, t, d, *day, &row)?;
    }

    for trip in &f.trips {
        tx.prepare_cached(
            "INSERT INTO trips (tenant_id, device_id, end_seq, start_ms, end_ms, distance_m, idle_ms, fuel_used_l, max_speed_kmh, driving_events)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING",
        )
        .map_err(backend)?
        .execute(params![
            t,
            d,
            trip.end_seq as i64,
            trip.start_ms,
            trip.end_ms,
            trip.distance_m,
            trip.idle_ms,
            trip.fuel_used_l,
            trip.max_speed_kmh,
            trip.driving_events
        ])
        .map_err(backend)?;
    }

    let mut alerts: Vec<NewAlert> = f
        .parked_fuel_drops
        .iter()
        .map(rules::parked_fuel_drop_alert)
        .collect();

    let mut latest_fault_day: std::collections::BTreeMap<&str, i32> = Default::default();
    for ((code, day), n) in &f.faults {
        tx.prepare_cached(
            "INSERT INTO fault_days (tenant_id, device_id, code, day, count) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (tenant_id, device_id, code, day) DO UPDATE SET count = count + excluded.count",
        )
        .map_err(backend)?
        .execute(params![t, d, code, day, n])
        .map_err(backend)?;
        let e = latest_fault_day.entry(code).or_insert(*day);
        *e = (*e).max(*day);
    }
    for (code, day) in latest_fault_day {
        let count: i64 = tx
            .prepare_cached(
                "SELECT coalesce(sum(count), 0) FROM fault_days WHERE tenant_id = ?1 AND device_id = ?2 AND code = ?3 AND day BETWEEN ?4 AND ?5",
            )
            .map_err(backend)?
            .query_row(
                params![t, d, code, i64::from(day) - s.fault_repeat_days + 1, day],
                |r| r.get(0),
            )
            .map_err(backend)?;
        if count >= s.fault_repeat_count {
            alerts.push(rules::recurring_fault_alert(
                code,
                count,
                s.fault_repeat_days,
            ));
        }
    }

    if f.battery_events {
        if let Some(last) = f.days.keys().next_back() {
            let mut q = tx
                .prepare_cached(
                    "SELECT day, cranking_min_v FROM vehicle_day WHERE tenant_id = ?1 AND device_id = ?2 AND day BETWEEN ?3 AND ?4 AND cranking_min_v IS NOT NULL",
                )
                .map_err(backend)?;
            let points = q
                .query_map(
                    params![t, d, last - rules::BATTERY_TREND_DAYS + 1, last],
                    |r| Ok((r.get::<_, i32>(0)?, r.get::<_, f64>(1)?)),
                )
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            if let Some(slope) = rules::battery_weakening(&points) {
                alerts.push(rules::battery_alert(slope, &points));
            }
        }
    }

    for a in alerts {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO maintenance_alerts (tenant_id, alert_id, device_id, kind, key, message, data, raised_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .map_err(backend)?
        .execute(params![
            t,
            blob(&Uuid::new_v4()),
            d,
            a.kind,
            a.key,
            a.message,
            a.data.to_string(),
            now_ms
        ])
        .map_err(backend)?;
    }
    Ok(())
}

pub(crate) fn write_day(
    c: &Connection,
    t: &[u8],
    d: &[u8],
    day: i32,
    r: &DayRollup,
) -> Result<(), StorageError> {
    let hours =
        serde_json::to_string(&r.hour_use_ms).map_err(|e| StorageError::Backend(e.to_string()))?;
    c.prepare_cached(&format!(
        "INSERT OR REPLACE INTO vehicle_day (tenant_id, device_id, day, {DAY_COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29)"
    ))
    .map_err(backend)?
    .execute(params![
        t,
        d,
        day,
        r.events,
        r.covered_hours,
        r.first_ms,
        r.last_ms,
        r.engine_on_ms,
        r.driving_ms,
        r.idle_ms,
        r.trips,
        r.distance_m,
        r.fuel_used_l,
        r.harsh_acceleration,
        r.harsh_braking,
        r.harsh_cornering,
        r.speeding_ms,
        r.dtc_set,
        r.fuel_drops,
        r.parked_fuel_drops,
        r.refuels,
        r.odometer_min_km,
        r.odometer_max_km,
        r.engine_hours_min,
        r.engine_hours_max,
        r.cranking_weak,
        r.cranking_min_v,
        r.battery_low,
        hours
    ])
    .map_err(backend)?;
    Ok(())
}

fn period_at(r: &Row<'_>) -> rusqlite::Result<VehiclePeriod> {
    let z = |i: usize| -> rusqlite::Result<i64> { Ok(r.get::<_, Option<i64>>(i)?.unwrap_or(0)) };
    let zf = |i: usize| -> rusqlite::Result<f64> { Ok(r.get::<_, Option<f64>>(i)?.unwrap_or(0.0)) };
    Ok(VehiclePeriod {
        device_id: uuid_at(r, 0)?,
        name: r.get(1)?,
        group: r.get(2)?,
        days_with_data: z(3)?,
        days_used: z(4)?,
        engine_on_ms: z(5)?,
        driving_ms: z(6)?,
        idle_ms: z(7)?,
        trips: z(8)?,
        distance_m: zf(9)?,
        fuel_used_l: zf(10)?,
        harsh_acceleration: z(11)?,
        harsh_braking: z(12)?,
        harsh_cornering: z(13)?,
        speeding_ms: z(14)?,
        dtc_set: z(15)?,
        fuel_drops: z(16)?,
        parked_fuel_drops: z(17)?,
        refuels: z(18)?,
        odometer_min_km: r.get(19)?,
        odometer_max_km: r.get(20)?,
        engine_hours_min: r.get(21)?,
        engine_hours_max: r.get(22)?,
        last_used_day: r.get(23)?,
        last_data_day: r.get(24)?,
        purchase_price_cents: r.get(25)?,
    })
}

const SCHEDULE_COLUMNS: &str =
    "schedule_id, name, device_id, vehicle_group, every_km, every_engine_hours, every_days, created_at_ms";

fn schedule_at(r: &Row<'_>) -> rusqlite::Result<ServiceSchedule> {
    Ok(ServiceSchedule {
        id: uuid_at(r, 0)?,
        name: r.get(1)?,
        device_id: opt_uuid_at(r, 2)?,
        vehicle_group: r.get(3)?,
        every_km: r.get(4)?,
        every_engine_hours: r.get(5)?,
        every_days: r.get(6)?,
        created_at_ms: r.get(7)?,
    })
}

const WORK_ORDER_COLUMNS: &str = "work_order_id, device_id, schedule_id, title, status, parts_cents, labor_cents, opened_at_ms, closed_at_ms, updated_at_ms";

fn work_order_at(r: &Row<'_>) -> rusqlite::Result<WorkOrder> {
    Ok(WorkOrder {
        id: uuid_at(r, 0)?,
        device_id: uuid_at(r, 1)?,
        schedule_id: opt_uuid_at(r, 2)?,
        title: r.get(3)?,
        status: r.get(4)?,
        parts_cents: r.get(5)?,
        labor_cents: r.get(6)?,
        opened_at_ms: r.get(7)?,
        closed_at_ms: r.get(8)?,
        updated_at_ms: r.get(9)?,
    })
}

const ALERT_COLUMNS: &str =
    "alert_id, device_id, kind, key, message, data, raised_at_ms, notified_at_ms, acknowledged_at_ms";

fn alert_at(r: &Row<'_>) -> rusqlite::Result<AlertRecord> {
    let data: String = r.get(5)?;
    Ok(AlertRecord {
        id: uuid_at(r, 0)?,
        device_id: uuid_at(r, 1)?,
        kind: r.get(2)?,
        key: r.get(3)?,
        message: r.get(4)?,
        data: serde_json::from_str(&data).map_err(|e| conversion(5, e))?,
        raised_at_ms: r.get(6)?,
        notified_at_ms: r.get(7)?,
        acknowledged_at_ms: r.get(8)?,
    })
}

fn device_known(c: &Connection, t: &[u8], d: &Uuid) -> Result<bool, StorageError> {
    c.prepare_cached("SELECT 1 FROM devices WHERE tenant_id = ?1 AND device_id = ?2")
        .map_err(backend)?
        .query_row(params![t, blob(d)], |_| Ok(()))
        .optional()
        .map_err(backend)
        .map(|o| o.is_some())
}

fn collect<T>(
    rows: rusqlite::MappedRows<'_, impl FnMut(&Row<'_>) -> rusqlite::Result<T>>,
) -> Result<Vec<T>, StorageError> {
    rows.collect::<Result<Vec<_>, _>>().map_err(backend)
}

#[async_trait]
impl AnalyticsStore for SqliteStorage {
    async fn analytics_settings(&self, tenant: Uuid) -> Result<AnalyticsSettings, StorageError> {
        self.pool.read(move |c| settings_in(c, blob(&tenant))).await
    }

    async fn set_analytics_settings(
        &self,
        tenant: Uuid,
        s: &AnalyticsSettings,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let s = s.clone();
        self.pool
            .write(move |c| {
                c.execute(
                    "INSERT OR REPLACE INTO analytics_settings (tenant_id, utc_offset_min, target_hours_per_day, used_day_min_minutes,
                         fuel_price_cents_per_l, depreciation_years, rental_rate_cents_per_day, fault_repeat_count, fault_repeat_days, updated_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        blob(&tenant),
                        s.utc_offset_min,
                        s.target_hours_per_day,
                        s.used_day_min_minutes,
                        s.fuel_price_cents_per_l,
                        s.depreciation_years,
                        s.rental_rate_cents_per_day,
                        s.fault_repeat_count,
                        s.fault_repeat_days,
                        now_ms
                    ],
                )
                .map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn period_summary(
        &self,
        tenant: Uuid,
        from_day: i32,
        to_day: i32,
        used_min_ms: i64,
    ) -> Result<Vec<VehiclePeriod>, StorageError> {
        self.pool
            .read(move |c| {
                let sql = PERIOD_SELECT
                    .replace("{used}", "?4")
                    .replace("{from}", "?2")
                    .replace("{to}", "?3")
                    .replace("{tenant}", "?1");
                let mut q = c.prepare_cached(&sql).map_err(backend)?;
                let rows = q
                    .query_map(
                        params![blob(&tenant), from_day, to_day, used_min_ms],
                        period_at,
                    )
                    .map_err(backend)?;
                collect(rows)
            })
            .await
    }

    async fn vehicle_days(
        &self,
        tenant: Uuid,
        device: Uuid,
        from_day: i32,
        to_day: i32,
    ) -> Result<Vec<(i32, DayRollup)>, StorageError> {
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare_cached(&format!(
                        "SELECT day, {DAY_COLUMNS} FROM vehicle_day WHERE tenant_id = ?1 AND device_id = ?2 AND day BETWEEN ?3 AND ?4 ORDER BY day"
                    ))
                    .map_err(backend)?;
                let rows = q
                    .query_map(params![blob(&tenant), blob(&device), from_day, to_day], |r| {
                        Ok((r.get(0)?, day_at(r, 1)?))
                    })
                    .map_err(backend)?;
                collect(rows)
            })
            .await
    }

    async fn hour_use(
        &self,
        tenant: Uuid,
        from_day: i32,
        to_day: i32,
        device: Option<Uuid>,
    ) -> Result<Vec<(i32, [i64; 24])>, StorageError> {
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare_cached(
                        "SELECT day, hour_use_ms FROM vehicle_day WHERE tenant_id = ?1 AND day BETWEEN ?2 AND ?3
                         AND (?4 IS NULL OR device_id = ?4) AND engine_on_ms > 0",
                    )
                    .map_err(backend)?;
                let rows = q
                    .query_map(
                        params![blob(&tenant), from_day, to_day, device.as_ref().map(blob)],
                        |r| Ok((r.get(0)?, hours_at(r, 1)?)),
                    )
                    .map_err(backend)?;
                collect(rows)
            })
            .await
    }

    async fn trips(
        &self,
        tenant: Uuid,
        from_ms: i64,
        to_ms: i64,
        device: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<(Uuid, TripRow)>, StorageError> {
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare_cached(
                        "SELECT device_id, end_seq, start_ms, end_ms, distance_m, idle_ms, fuel_used_l, max_speed_kmh, driving_events
                         FROM trips WHERE tenant_id = ?1 AND end_ms >= ?2 AND end_ms < ?3 AND (?4 IS NULL OR device_id = ?4)
                         ORDER BY end_ms DESC, device_id LIMIT ?5",
                    )
                    .map_err(backend)?;
                let rows = q
                    .query_map(
                        params![blob(&tenant), from_ms, to_ms, device.as_ref().map(blob), limit],
                        |r| {
                            Ok((
                                uuid_at(r, 0)?,
                                TripRow {
                                    end_seq: r.get::<_, i64>(1)? as u64,
                                    start_ms: r.get(2)?,
                                    end_ms: r.get(3)?,
                                    distance_m: r.get(4)?,
                                    idle_ms: r.get(5)?,
                                    fuel_used_l: r.get(6)?,
                                    max_speed_kmh: r.get(7)?,
                                    driving_events: r.get(8)?,
                                },
                            ))
                        },
                    )
                    .map_err(backend)?;
                collect(rows)
            })
            .await
    }

    async fn fault_summary(
        &self,
        tenant: Uuid,
        from_day: i32,
        to_day: i32,
    ) -> Result<Vec<FaultCount>, StorageError> {
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare_cached(
                        "SELECT device_id, code, sum(count), max(day) FROM fault_days WHERE tenant_id = ?1 AND day BETWEEN ?2 AND ?3
                         GROUP BY device_id, code ORDER BY device_id, sum(count) DESC, code",
                    )
                    .map_err(backend)?;
                let rows = q
                    .query_map(params![blob(&tenant), from_day, to_day], |r| {
                        Ok(FaultCount {
                            device_id: uuid_at(r, 0)?,
                            code: r.get(1)?,
                            count: r.get(2)?,
                            last_day: r.get(3)?,
                        })
                    })
                    .map_err(backend)?;
                collect(rows)
            })
            .await
    }

    async fn create_service_schedule(
        &self,
        tenant: Uuid,
        s: &ServiceSchedule,
    ) -> Result<(), StorageError> {
        let s = s.clone();
        self.pool
            .write(move |c| {
                let t = blob(&tenant);
                if let Some(d) = &s.device_id {
                    if !device_known(c, t, d)? {
                        return Err(StorageError::UnknownDevice);
                    }
                }
                c.execute(
                    &format!("INSERT INTO maintenance_schedules (tenant_id, {SCHEDULE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                    params![
                        t,
                        blob(&s.id),
                        s.name,
                        s.device_id.as_ref().map(blob),
                        s.vehicle_group,
                        s.every_km,
                        s.every_engine_hours,
                        s.every_days,
                        s.created_at_ms
                    ],
                )
                .map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn service_schedules(&self, tenant: Uuid) -> Result<Vec<ServiceSchedule>, StorageError> {
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare_cached(&format!(
                        "SELECT {SCHEDULE_COLUMNS} FROM maintenance_schedules WHERE tenant_id = ?1 ORDER BY created_at_ms, schedule_id"
                    ))
                    .map_err(backend)?;
                let rows = q.query_map(params![blob(&tenant)], schedule_at).map_err(backend)?;
                collect(rows)
            })
            .await
    }

    async fn delete_service_schedule(&self, tenant: Uuid, id: Uuid) -> Result<bool, StorageError> {
        self.pool
            .write(move |c| {
                let tx = c.transaction().map_err(backend)?;
                tx.execute(
                    "DELETE FROM maintenance_services WHERE tenant_id = ?1 AND schedule_id = ?2",
                    params![blob(&tenant), blob(&id)],
                )
                .map_err(backend)?;
                let n = tx
                    .execute(
                        "DELETE FROM maintenance_schedules WHERE tenant_id = ?1 AND schedule_id = ?2",
                        params![blob(&tenant), blob(&id)],
                    )
                    .map_err(backend)?;
                tx.commit().map_err(backend)?;
                Ok(n == 1)
            })
            .await
    }

    async fn record_service(&self, tenant: Uuid, r: &ServiceRecord) -> Result<(), StorageError> {
        let r = r.clone();
        self.pool
            .write(move |c| {
                let t = blob(&tenant);
                if !device_known(c, t, &r.device_id)? {
                    return Err(StorageError::UnknownDevice);
                }
                let known: Option<i64> = c
                    .query_row(
                        "SELECT 1 FROM maintenance_schedules WHERE tenant_id = ?1 AND schedule_id = ?2",
                        params![t, blob(&r.schedule_id)],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                if known.is_none() {
                    return Err(StorageError::Invalid("no such service schedule".into()));
                }
                c.execute(
                    "INSERT OR REPLACE INTO maintenance_services (tenant_id, schedule_id, device_id, done_at_ms, odometer_km, engine_hours, work_order_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        t,
                        blob(&r.schedule_id),
                        blob(&r.device_id),
                        r.done_at_ms,
                        r.odometer_km,
                        r.engine_hours,
                        r.work_order_id.as_ref().map(blob)
                    ],
                )
                .map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn service_records(&self, tenant: Uuid) -> Result<Vec<ServiceRecord>, StorageError> {
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare_cached(
                        "SELECT schedule_id, device_id, done_at_ms, odometer_km, engine_hours, work_order_id
                         FROM maintenance_services WHERE tenant_id = ?1",
                    )
                    .map_err(backend)?;
                let rows = q
                    .query_map(params![blob(&tenant)], |r| {
                        Ok(ServiceRecord {
                            schedule_id: uuid_at(r, 0)?,
                            device_id: uuid_at(r, 1)?,
                            done_at_ms: r.get(2)?,
                            odometer_km: r.get(3)?,
                            engine_hours: r.get(4)?,
                            work_order_id: opt_uuid_at(r, 5)?,
                        })
                    })
                    .map_err(backend)?;
                collect(rows)
            })
            .await
    }

    async fn create_work_order(&self, tenant: Uuid, w: &WorkOrder) -> Result<(), StorageError> {
        let w = w.clone();
        self.pool
            .write(move |c| {
                let t = blob(&tenant);
                if !device_known(c, t, &w.device_id)? {
                    return Err(StorageError::UnknownDevice);
                }
                c.execute(
                    &format!("INSERT INTO work_orders (tenant_id, {WORK_ORDER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
                    params![
                        t,
                        blob(&w.id),
                        blob(&w.device_id),
                        w.schedule_id.as_ref().map(blob),
                        w.title,
                        w.status,
                        w.parts_cents,
                        w.labor_cents,
                        w.opened_at_ms,
                        w.closed_at_ms,
                        w.updated_at_ms
                    ],
                )
                .map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn update_work_order(
        &self,
        tenant: Uuid,
        w: &WorkOrder,
    ) -> Result<Option<WorkOrder>, StorageError> {
        let w = w.clone();
        self.pool
            .write(move |c| {
                let n = c
                    .execute(
                        "UPDATE work_orders SET title = ?3, status = ?4, parts_cents = ?5, labor_cents = ?6, closed_at_ms = ?7, updated_at_ms = ?8
                         WHERE tenant_id = ?1 AND work_order_id = ?2",
                        params![
                            blob(&tenant),
                            blob(&w.id),
                            w.title,
                            w.status,
                            w.parts_cents,
                            w.labor_cents,
                            w.closed_at_ms,
                            w.updated_at_ms
                        ],
                    )
                    .map_err(backend)?;
                if n == 0 {
                    return Ok(None);
                }
                c.query_row(
                    &format!("SELECT {WORK_ORDER_COLUMNS} FROM work_orders WHERE tenant_id = ?1 AND work_order_id = ?2"),
                    params![blob(&tenant), blob(&w.id)],
                    work_order_at,
                )
                .optional()
                .map_err(backend)
            })
            .await
    }

    async fn work_order(&self, tenant: Uuid, id: Uuid) -> Result<Option<WorkOrder>, StorageError> {
        self.pool
            .read(move |c| {
                c.query_row(
                    &format!("SELECT {WORK_ORDER_COLUMNS} FROM work_orders WHERE tenant_id = ?1 AND work_order_id = ?2"),
                    params![blob(&tenant), blob(&id)],
                    work_order_at,
                )
                .optional()
                .map_err(backend)
            })
            .await
    }

    async fn work_orders(
        &self,
        tenant: Uuid,
        device: Option<Uuid>,
    ) -> Result<Vec<WorkOrder>, StorageError> {
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare_cached(&format!(
                        "SELECT {WORK_ORDER_COLUMNS} FROM work_orders WHERE tenant_id = ?1 AND (?2 IS NULL OR device_id = ?2)
                         ORDER BY opened_at_ms DESC, work_order_id"
                    ))
                    .map_err(backend)?;
                let rows = q
                    .query_map(params![blob(&tenant), device.as_ref().map(blob)], work_order_at)
                    .map_err(backend)?;
                collect(rows)
            })
            .await
    }

    async fn maintenance_alerts(
        &self,
        tenant: Uuid,
        open_only: bool,
    ) -> Result<Vec<AlertRecord>, StorageError> {
        self.pool
            .read(move |c| {
                let mut q = c
                    .prepare_cached(&format!(
                        "SELECT {ALERT_COLUMNS} FROM maintenance_alerts WHERE tenant_id = ?1 AND (?2 = 0 OR acknowledged_at_ms IS NULL)
                         ORDER BY raised_at_ms DESC, alert_id LIMIT 1000"
                    ))
                    .map_err(backend)?;
                let rows = q
                    .query_map(params![blob(&tenant), open_only], alert_at)
                    .map_err(backend)?;
                collect(rows)
            })
            .await
    }

    async fn acknowledge_alert(
        &self,
        tenant: Uuid,
        id: Uuid,
        now_ms: i64,
    ) -> Result<Option<AlertRecord>, StorageError> {
        self.pool
            .write(move |c| {
                c.execute(
                    "UPDATE maintenance_alerts SET acknowledged_at_ms = ?3 WHERE tenant_id = ?1 AND alert_id = ?2 AND acknowledged_at_ms IS NULL",
                    params![blob(&tenant), blob(&id), now_ms],
                )
                .map_err(backend)?;
                c.query_row(
                    &format!("SELECT {ALERT_COLUMNS} FROM maintenance_alerts WHERE tenant_id = ?1 AND alert_id = ?2"),
                    params![blob(&tenant), blob(&id)],
                    alert_at,
                )
                .optional()
                .map_err(backend)
            })
            .await
    }

    async fn take_unnotified_alerts(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<(Uuid, AlertRecord)>, StorageError> {
        self.pool
            .write(move |c| {
                let due = format!(
                    "SELECT tenant_id, {ALERT_COLUMNS} FROM maintenance_alerts WHERE notified_at_ms IS NULL
                     ORDER BY raised_at_ms LIMIT ?2"
                );
                // Not a lease: the mark is for good, an alert is announced once.
                let claim = Claim {
                    due: &due,
                    mark: "UPDATE maintenance_alerts SET notified_at_ms = ?3 WHERE tenant_id = ?1 AND alert_id = ?2",
                };
                claim_due(
                    c,
                    &claim,
                    now_ms,
                    now_ms,
                    limit,
                    |r| {
                        let data: String = r.get(6)?;
                        Ok((
                            uuid_at(r, 0)?,
                            AlertRecord {
                                id: uuid_at(r, 1)?,
                                device_id: uuid_at(r, 2)?,
                                kind: r.get(3)?,
                                key: r.get(4)?,
                                message: r.get(5)?,
                                data: serde_json::from_str(&data).map_err(|e| conversion(6, e))?,
                                raised_at_ms: r.get(7)?,
                                notified_at_ms: Some(now_ms),
                                acknowledged_at_ms: r.get(9)?,
                            },
                        ))
                    },
                    |(tenant, a)| (*tenant, *a.id.as_bytes()),
                )
            })
            .await
    }
}
