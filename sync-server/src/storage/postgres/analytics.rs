//! [`AnalyticsStore`] on PostgreSQL, and the rollup update ingest makes in its
//! transaction (the device's row is locked there, so one device's days are
//! updated by one batch at a time).

use super::lease::Claim;
use super::{pg, pool_err, PgStorage, PgTx};
use crate::analytics::local_day;
use crate::analytics::maintenance::{self as rules, NewAlert};
use crate::analytics::report::{AnalyticsSettings, VehiclePeriod};
use crate::analytics::rollup::{self, DayRollup, TripRow};
use crate::storage::analytics::{
    AlertRecord, AnalyticsStore, FaultCount, ServiceRecord, ServiceSchedule, WorkOrder, DAY_COLUMNS,
};
use crate::storage::StorageError;
use async_trait::async_trait;
use tokio_postgres::Row;
use uuid::Uuid;

fn corrupt(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("{what}: {e}"))
}

fn hours(s: &str) -> Result<[i64; 24], StorageError> {
    serde_json::from_str(s).map_err(|e| corrupt("hour_use_ms", e))
}

fn day_at(r: &Row, o: usize) -> Result<DayRollup, StorageError> {
    Ok(DayRollup {
        events: r.get(o),
        covered_hours: r.get(o + 1),
        first_ms: r.get(o + 2),
        last_ms: r.get(o + 3),
        engine_on_ms: r.get(o + 4),
        driving_ms: r.get(o + 5),
        idle_ms: r.get(o + 6),
        trips: r.get(o + 7),
        distance_m: r.get(o + 8),
        fuel_used_l: r.get(o + 9),
        harsh_acceleration: r.get(o + 10),
        harsh_braking: r.get(o + 11),
        harsh_cornering: r.get(o + 12),
        speeding_ms: r.get(o + 13),
        dtc_set: r.get(o + 14),
        fuel_drops: r.get(o + 15),
        parked_fuel_drops: r.get(o + 16),
        refuels: r.get(o + 17),
        odometer_min_km: r.get(o + 18),
        odometer_max_km: r.get(o + 19),
        engine_hours_min: r.get(o + 20),
        engine_hours_max: r.get(o + 21),
        cranking_weak: r.get(o + 22),
        cranking_min_v: r.get(o + 23),
        battery_low: r.get(o + 24),
        hour_use_ms: hours(r.get(o + 25))?,
    })
}

const SETTINGS_SELECT: &str = "SELECT utc_offset_min, target_hours_per_day, used_day_min_minutes, fuel_price_cents_per_l, depreciation_years, \
     rental_rate_cents_per_day, fault_repeat_count, fault_repeat_days FROM analytics_settings WHERE tenant_id = $1";

/// The settings in `row` (a row of [`SETTINGS_SELECT`]), the defaults without one.
fn settings_of(row: Option<&Row>) -> AnalyticsSettings {
    match row {
        Some(r) => AnalyticsSettings {
            utc_offset_min: r.get::<_, i64>(0) as i32,
            target_hours_per_day: r.get(1),
            used_day_min_minutes: r.get(2),
            fuel_price_cents_per_l: r.get(3),
            depreciation_years: r.get(4),
            rental_rate_cents_per_day: r.get(5),
            fault_repeat_count: r.get(6),
            fault_repeat_days: r.get(7),
        },
        None => AnalyticsSettings::default(),
    }
}

pub(super) async fn settings_in(tx: &PgTx, t: Uuid) -> Result<AnalyticsSettings, StorageError> {
    let q = tx.prepare_cached(SETTINGS_SELECT).await.map_err(pg)?;
    Ok(settings_of(
        tx.query_opt(&q, &[&t]).await.map_err(pg)?.as_ref(),
    ))
}

/// What a batch's newly stored events add to the device's rollups, trips, fault
/// days and fuel level, before it is merged into what is stored.
pub(super) struct Folding {
    f: rollup::Fold,
    s: AnalyticsSettings,
}

/// The stored rows a [`Folding`] merges into.
pub(super) struct Stored {
    days: std::collections::BTreeMap<i32, DayRollup>,
    fuel: Option<(i64, f64)>,
}

/// Folds the events this batch newly stored; `None` when it stored none.
pub(super) fn fold_new(
    stored: &[(&fleet_protocol::Event, i64)],
    s: AnalyticsSettings,
) -> Option<Folding> {
    if stored.is_empty() {
        return None;
    }
    let events = rollup::observed(stored);
    let f = rollup::fold(&events, s.utc_offset_min);
    Some(Folding { f, s })
}

/// Reads the stored rollups of the days the fold touches (and those its fuel
/// samples fall on, where a refuel may be counted) and the last fuel level.
/// Reads only, so ingest sends them with its own writes; the device's row lock
/// keeps them current until the transaction ends.
pub(super) async fn load_stored(
    tx: &PgTx,
    t: Uuid,
    d: Uuid,
    folding: &Folding,
) -> Result<Stored, StorageError> {
    let f = &folding.f;
    let off = folding.s.utc_offset_min;
    let mut days: Vec<i64> = f
        .days
        .keys()
        .map(|d| i64::from(*d))
        .chain(
            f.fuel_levels
                .iter()
                .map(|(at, _)| i64::from(local_day(*at, off))),
        )
        .collect();
    days.sort_unstable();
    days.dedup();
    let day_sql = format!(
        "SELECT day, {DAY_COLUMNS} FROM vehicle_day WHERE tenant_id = $1 AND device_id = $2 AND day = ANY($3)"
    );
    let (day_q, fuel_q) = futures_util::try_join!(
        tx.prepare_cached(&day_sql),
        tx.prepare_cached(
            "SELECT time_ms, level_pct FROM fuel_levels WHERE tenant_id = $1 AND device_id = $2"
        ),
    )
    .map_err(pg)?;
    let (day_rows, fuel) = futures_util::try_join!(
        async { tx.query(&day_q, &[&t, &d, &days]).await.map_err(pg) },
        async {
            if f.fuel_levels.is_empty() {
                return Ok(None);
            }
            Ok(tx
                .query_opt(&fuel_q, &[&t, &d])
                .await
                .map_err(pg)?
                .map(|r| (r.get::<_, i64>(0), r.get::<_, f64>(1))))
        },
    )?;
    let mut stored = std::collections::BTreeMap::new();
    for r in &day_rows {
        stored.insert(r.get::<_, i64>(0) as i32, day_at(r, 1)?);
    }
    Ok(Stored { days: stored, fuel })
}

/// Merges the fold into the stored rows and writes rollups, trips, fault days
/// and fuel level, then raises maintenance alerts; runs inside the ingest
/// transaction after [`load_stored`]. Statements that do not depend on each
/// other's results are sent together.
pub(super) async fn write_folded(
    tx: &PgTx,
    t: Uuid,
    d: Uuid,
    folding: Folding,
    mut stored: Stored,
    now_ms: i64,
) -> Result<(), StorageError> {
    let Folding { mut f, s } = folding;
    let off = s.utc_offset_min;

    let mut fuel_write: Option<(i64, f64)> = None;
    if !f.fuel_levels.is_empty() {
        let prev = stored.fuel;
        let (times, newest) = rollup::refuels(prev, &f.fuel_levels);
        for at in times {
            f.days.entry(local_day(at, off)).or_default().refuels += 1;
        }
        fuel_write = newest.filter(|n| Some(*n) != prev);
    }

    let mut merged = Vec::with_capacity(f.days.len());
    for (day, delta) in &f.days {
        let mut row = stored.days.remove(day).unwrap_or_default();
        row.merge(delta);
        let hours = serde_json::to_string(&row.hour_use_ms)
            .map_err(|e| StorageError::Backend(e.to_string()))?;
        merged.push((i64::from(*day), row, hours));
    }

    let upsert_sql = upsert_day_sql();
    let (upsert, trip_q, fault_q, fuel_q) = futures_util::try_join!(
        tx.prepare_cached(&upsert_sql),
        tx.prepare_cached(
            "INSERT INTO trips (tenant_id, device_id, end_seq, start_ms, end_ms, distance_m, idle_ms, fuel_used_l, max_speed_kmh, driving_events)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
        ),
        tx.prepare_cached(
            "INSERT INTO fault_days (tenant_id, device_id, code, day, count) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id, device_id, code, day) DO UPDATE SET count = fault_days.count + excluded.count",
        ),
        tx.prepare_cached(
            "INSERT INTO fuel_levels (tenant_id, device_id, level_pct, time_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id, device_id) DO UPDATE SET level_pct = excluded.level_pct, time_ms = excluded.time_ms",
        ),
    )
    .map_err(pg)?;
    let fuel = async {
        match fuel_write {
            Some((time_ms, level)) => tx
                .execute(&fuel_q, &[&t, &d, &level, &time_ms])
                .await
                .map(drop),
            None => Ok(()),
        }
    };
    let (upsert, trip_q, fault_q) = (&upsert, &trip_q, &fault_q);
    let days =
        futures_util::future::try_join_all(merged.iter().map(|(day, row, hours)| async move {
            tx.execute(
                upsert,
                &[
                    &t,
                    &d,
                    day,
                    &row.events,
                    &row.covered_hours,
                    &row.first_ms,
                    &row.last_ms,
                    &row.engine_on_ms,
                    &row.driving_ms,
                    &row.idle_ms,
                    &row.trips,
                    &row.distance_m,
                    &row.fuel_used_l,
                    &row.harsh_acceleration,
                    &row.harsh_braking,
                    &row.harsh_cornering,
                    &row.speeding_ms,
                    &row.dtc_set,
                    &row.fuel_drops,
                    &row.parked_fuel_drops,
                    &row.refuels,
                    &row.odometer_min_km,
                    &row.odometer_max_km,
                    &row.engine_hours_min,
                    &row.engine_hours_max,
                    &row.cranking_weak,
                    &row.cranking_min_v,
                    &row.battery_low,
                    hours,
                ],
            )
            .await
        }));
    let trip_ends: Vec<i64> = f.trips.iter().map(|t| t.end_seq as i64).collect();
    let trips = futures_util::future::try_join_all(f.trips.iter().zip(&trip_ends).map(
        |(trip, end_seq)| async move {
            tx.execute(
                trip_q,
                &[
                    &t,
                    &d,
                    end_seq,
                    &trip.start_ms,
                    &trip.end_ms,
                    &trip.distance_m,
                    &trip.idle_ms,
                    &trip.fuel_used_l,
                    &trip.max_speed_kmh,
                    &trip.driving_events,
                ],
            )
            .await
        },
    ));
    let fault_rows: Vec<(&str, i64, &i64)> = f
        .faults
        .iter()
        .map(|((code, day), n)| (code.as_str(), i64::from(*day), n))
        .collect();
    let faults =
        futures_util::future::try_join_all(fault_rows.iter().map(|(code, day, n)| async move {
            tx.execute(fault_q, &[&t, &d, code, day, *n]).await
        }));
    futures_util::try_join!(fuel, days, trips, faults).map_err(pg)?;

    let mut alerts: Vec<NewAlert> = f
        .parked_fuel_drops
        .iter()
        .map(rules::parked_fuel_drop_alert)
        .collect();

    // Recurrence counts read the fault days written above.
    let mut latest_fault_day: std::collections::BTreeMap<&str, i64> = Default::default();
    for (code, day, _) in &fault_rows {
        let e = latest_fault_day.entry(code).or_insert(*day);
        *e = (*e).max(*day);
    }
    let windows: Vec<(&str, i64, i64)> = latest_fault_day
        .into_iter()
        .map(|(code, day)| (code, day - s.fault_repeat_days + 1, day))
        .collect();
    let counts = futures_util::future::try_join_all(windows.iter().map(|(code, from, to)| async move {
        let r = tx
            .query_one(
                "SELECT coalesce(sum(count), 0)::bigint FROM fault_days WHERE tenant_id = $1 AND device_id = $2 AND code = $3 AND day BETWEEN $4 AND $5",
                &[&t, &d, code, from, to],
            )
            .await?;
        Ok::<_, tokio_postgres::Error>((*code, r.get::<_, i64>(0)))
    }));
    let battery_window = match f.days.keys().next_back() {
        Some(last) if f.battery_events => Some((
            i64::from(last - rules::BATTERY_TREND_DAYS + 1),
            i64::from(*last),
        )),
        _ => None,
    };
    let battery = async {
        let Some((from, to)) = battery_window else {
            return Ok(Vec::new());
        };
        Ok(tx
            .query(
                "SELECT day, cranking_min_v FROM vehicle_day WHERE tenant_id = $1 AND device_id = $2 AND day BETWEEN $3 AND $4 AND cranking_min_v IS NOT NULL",
                &[&t, &d, &from, &to],
            )
            .await?
            .iter()
            .map(|r| (r.get::<_, i64>(0) as i32, r.get::<_, f64>(1)))
            .collect::<Vec<(i32, f64)>>())
    };
    let (counts, points) = futures_util::try_join!(counts, battery).map_err(pg)?;
    for (code, count) in counts {
        if count >= s.fault_repeat_count {
            alerts.push(rules::recurring_fault_alert(
                code,
                count,
                s.fault_repeat_days,
            ));
        }
    }
    if battery_window.is_some() {
        if let Some(slope) = rules::battery_weakening(&points) {
            alerts.push(rules::battery_alert(slope, &points));
        }
    }

    let alert_rows: Vec<(Uuid, String)> = alerts
        .iter()
        .map(|a| (Uuid::new_v4(), a.data.to_string()))
        .collect();
    futures_util::future::try_join_all(alerts.iter().zip(&alert_rows).map(|(a, (id, data))| async move {
        tx.execute(
            "INSERT INTO maintenance_alerts (tenant_id, alert_id, device_id, kind, key, message, data, raised_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            &[&t, id, &d, &a.kind, &a.key, &a.message, data, &now_ms],
        )
        .await
    }))
    .await
    .map_err(pg)?;
    Ok(())
}

fn upsert_day_sql() -> String {
    let cols: Vec<&str> = DAY_COLUMNS.split(',').map(str::trim).collect();
    let params: Vec<String> = (4..4 + cols.len()).map(|i| format!("${i}")).collect();
    let set: Vec<String> = cols.iter().map(|c| format!("{c} = excluded.{c}")).collect();
    format!(
        "INSERT INTO vehicle_day (tenant_id, device_id, day, {DAY_COLUMNS}) VALUES ($1, $2, $3, {})
         ON CONFLICT (tenant_id, device_id, day) DO UPDATE SET {}",
        params.join(", "),
        set.join(", ")
    )
}

/// The shared `PERIOD_SELECT` for PostgreSQL, with the same columns: the window's rows
/// are summed per device first, where `vehicle_day_report` (migration 0010)
/// holds every summed column, and only the 1,000-odd sums are joined to the
/// devices and assets; joining first made PostgreSQL hash and group every day
/// row by five columns. Bigint sums come back as numeric and are cast back.
const PERIOD_SUMMARY: &str = "SELECT d.device_id, coalesce(a.name, d.name), a.vehicle_group,
    v.days, v.used, v.engine_on_ms, v.driving_ms, v.idle_ms, v.trips, v.distance_m, v.fuel_used_l,
    v.harsh_acceleration, v.harsh_braking, v.harsh_cornering, v.speeding_ms, v.dtc_set,
    v.fuel_drops, v.parked_fuel_drops, v.refuels,
    v.odometer_min_km, v.odometer_max_km, v.engine_hours_min, v.engine_hours_max,
    v.last_used_day, v.last_data_day, a.purchase_price_cents
  FROM devices d
  LEFT JOIN assets a ON a.tenant_id = d.tenant_id AND a.device_id = d.device_id
  LEFT JOIN (
    SELECT device_id, count(*) AS days, count(*) FILTER (WHERE engine_on_ms > $4) AS used,
        sum(engine_on_ms)::bigint AS engine_on_ms, sum(driving_ms)::bigint AS driving_ms,
        sum(idle_ms)::bigint AS idle_ms, sum(trips)::bigint AS trips,
        sum(distance_m) AS distance_m, sum(fuel_used_l) AS fuel_used_l,
        sum(harsh_acceleration)::bigint AS harsh_acceleration, sum(harsh_braking)::bigint AS harsh_braking,
        sum(harsh_cornering)::bigint AS harsh_cornering, sum(speeding_ms)::bigint AS speeding_ms,
        sum(dtc_set)::bigint AS dtc_set, sum(fuel_drops)::bigint AS fuel_drops,
        sum(parked_fuel_drops)::bigint AS parked_fuel_drops, sum(refuels)::bigint AS refuels,
        min(odometer_min_km) AS odometer_min_km, max(odometer_max_km) AS odometer_max_km,
        min(engine_hours_min) AS engine_hours_min, max(engine_hours_max) AS engine_hours_max,
        max(day) FILTER (WHERE engine_on_ms > $4) AS last_used_day, max(day) AS last_data_day
      FROM vehicle_day
      WHERE tenant_id = $1 AND day BETWEEN $2 AND $3
      GROUP BY device_id
  ) v ON v.device_id = d.device_id
  WHERE d.tenant_id = $1 AND d.kind = 'vehicle'
  ORDER BY 2, 1";

fn period_at(r: &Row) -> VehiclePeriod {
    let z = |i: usize| r.get::<_, Option<i64>>(i).unwrap_or(0);
    let zf = |i: usize| r.get::<_, Option<f64>>(i).unwrap_or(0.0);
    VehiclePeriod {
        device_id: r.get(0),
        name: r.get(1),
        group: r.get(2),
        days_with_data: z(3),
        days_used: z(4),
        engine_on_ms: z(5),
        driving_ms: z(6),
        idle_ms: z(7),
        trips: z(8),
        distance_m: zf(9),
        fuel_used_l: zf(10),
        harsh_acceleration: z(11),
        harsh_braking: z(12),
        harsh_cornering: z(13),
        speeding_ms: z(14),
        dtc_set: z(15),
        fuel_drops: z(16),
        parked_fuel_drops: z(17),
        refuels: z(18),
        odometer_min_km: r.get(19),
        odometer_max_km: r.get(20),
        engine_hours_min: r.get(21),
        engine_hours_max: r.get(22),
        last_used_day: r.get::<_, Option<i64>>(23).map(|d| d as i32),
        last_data_day: r.get::<_, Option<i64>>(24).map(|d| d as i32),
        purchase_price_cents: r.get(25),
    }
}

const SCHEDULE_COLUMNS: &str =
    "schedule_id, name, device_id, vehicle_group, every_km, every_engine_hours, every_days, created_at_ms";

fn schedule_at(r: &Row) -> ServiceSchedule {
    ServiceSchedule {
        id: r.get(0),
        name: r.get(1),
        device_id: r.get(2),
        vehicle_group: r.get(3),
        every_km: r.get(4),
        every_engine_hours: r.get(5),
        every_days: r.get(6),
        created_at_ms: r.get(7),
    }
}

const WORK_ORDER_COLUMNS: &str = "work_order_id, device_id, schedule_id, title, status, parts_cents, labor_cents, opened_at_ms, closed_at_ms, updated_at_ms";

fn work_order_at(r: &Row) -> WorkOrder {
    WorkOrder {
        id: r.get(0),
        device_id: r.get(1),
        schedule_id: r.get(2),
        title: r.get(3),
        status: r.get(4),
        parts_cents: r.get(5),
        labor_cents: r.get(6),
        opened_at_ms: r.get(7),
        closed_at_ms: r.get(8),
        updated_at_ms: r.get(9),
    }
}

const ALERT_COLUMNS: &str =
    "alert_id, device_id, kind, key, message, data, raised_at_ms, notified_at_ms, acknowledged_at_ms";

fn alert_at(r: &Row, o: usize) -> Result<AlertRecord, StorageError> {
    Ok(AlertRecord {
        id: r.get(o),
        device_id: r.get(o + 1),
        kind: r.get(o + 2),
        key: r.get(o + 3),
        message: r.get(o + 4),
        data: serde_json::from_str(r.get(o + 5)).map_err(|e| corrupt("alert data", e))?,
        raised_at_ms: r.get(o + 6),
        notified_at_ms: r.get(o + 7),
        acknowledged_at_ms: r.get(o + 8),
    })
}

async fn device_known(tx: &PgTx, t: Uuid, d: Uuid) -> Result<bool, StorageError> {
    Ok(tx
        .query_opt(
            "SELECT 1 FROM devices WHERE tenant_id = $1 AND device_id = $2",
            &[&t, &d],
        )
        .await
        .map_err(pg)?
        .is_some())
}

impl PgStorage {
    /// A read-only transaction that sees due alerts and report schedules of
    /// every tenant (the `analytics_worker` policy).
    async fn analytics_worker_tx(&self) -> Result<PgTx, StorageError> {
        let conn = self.pool.get().await.map_err(pool_err)?;
        conn.batch_execute("BEGIN READ ONLY; SET LOCAL app.analytics_worker = 'on'")
            .await
            .map_err(pg)?;
        Ok(PgTx { conn: Some(conn) })
    }
}

#[async_trait]
impl AnalyticsStore for PgStorage {
    async fn analytics_settings(&self, tenant: Uuid) -> Result<AnalyticsSettings, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let s = settings_in(&tx, tenant).await?;
        tx.commit().await?;
        Ok(s)
    }

    async fn set_analytics_settings(
        &self,
        tenant: Uuid,
        s: &AnalyticsSettings,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        tx.execute(
            "INSERT INTO analytics_settings (tenant_id, utc_offset_min, target_hours_per_day, used_day_min_minutes,
                 fuel_price_cents_per_l, depreciation_years, rental_rate_cents_per_day, fault_repeat_count, fault_repeat_days, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (tenant_id) DO UPDATE SET utc_offset_min = excluded.utc_offset_min, target_hours_per_day = excluded.target_hours_per_day,
                 used_day_min_minutes = excluded.used_day_min_minutes, fuel_price_cents_per_l = excluded.fuel_price_cents_per_l,
                 depreciation_years = excluded.depreciation_years, rental_rate_cents_per_day = excluded.rental_rate_cents_per_day,
                 fault_repeat_count = excluded.fault_repeat_count, fault_repeat_days = excluded.fault_repeat_days, updated_at_ms = excluded.updated_at_ms",
            &[
                &tenant,
                &i64::from(s.utc_offset_min),
                &s.target_hours_per_day,
                &s.used_day_min_minutes,
                &s.fuel_price_cents_per_l,
                &s.depreciation_years,
                &s.rental_rate_cents_per_day,
                &s.fault_repeat_count,
                &s.fault_repeat_days,
                &now_ms,
            ],
        )
        .await
        .map_err(pg)?;
        tx.commit().await
    }

    async fn period_summary(
        &self,
        tenant: Uuid,
        from_day: i32,
        to_day: i32,
        used_min_ms: i64,
    ) -> Result<Vec<VehiclePeriod>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let q = tx.prepare_cached(PERIOD_SUMMARY).await.map_err(pg)?;
        let rows = tx
            .query(
                &q,
                &[
                    &tenant,
                    &i64::from(from_day),
                    &i64::from(to_day),
                    &used_min_ms,
                ],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(rows.iter().map(period_at).collect())
    }

    async fn vehicle_days(
        &self,
        tenant: Uuid,
        device: Uuid,
        from_day: i32,
        to_day: i32,
    ) -> Result<Vec<(i32, DayRollup)>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                &format!("SELECT day, {DAY_COLUMNS} FROM vehicle_day WHERE tenant_id = $1 AND device_id = $2 AND day BETWEEN $3 AND $4 ORDER BY day"),
                &[&tenant, &device, &i64::from(from_day), &i64::from(to_day)],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        rows.iter()
            .map(|r| Ok((r.get::<_, i64>(0) as i32, day_at(r, 1)?)))
            .collect()
    }

    async fn hour_use(
        &self,
        tenant: Uuid,
        from_day: i32,
        to_day: i32,
        device: Option<Uuid>,
    ) -> Result<Vec<(i32, [i64; 24])>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                "SELECT day, hour_use_ms FROM vehicle_day WHERE tenant_id = $1 AND day BETWEEN $2 AND $3
                 AND ($4::uuid IS NULL OR device_id = $4) AND engine_on_ms > 0",
                &[&tenant, &i64::from(from_day), &i64::from(to_day), &device],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        rows.iter()
            .map(|r| Ok((r.get::<_, i64>(0) as i32, hours(r.get(1))?)))
            .collect()
    }

    async fn trips(
        &self,
        tenant: Uuid,
        from_ms: i64,
        to_ms: i64,
        device: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<(Uuid, TripRow)>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                "SELECT device_id, end_seq, start_ms, end_ms, distance_m, idle_ms, fuel_used_l, max_speed_kmh, driving_events
                 FROM trips WHERE tenant_id = $1 AND end_ms >= $2 AND end_ms < $3 AND ($4::uuid IS NULL OR device_id = $4)
                 ORDER BY end_ms DESC, device_id LIMIT $5",
                &[&tenant, &from_ms, &to_ms, &device, &i64::from(limit)],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    TripRow {
                        end_seq: r.get::<_, i64>(1) as u64,
                        start_ms: r.get(2),
                        end_ms: r.get(3),
                        distance_m: r.get(4),
                        idle_ms: r.get(5),
                        fuel_used_l: r.get(6),
                        max_speed_kmh: r.get(7),
                        driving_events: r.get(8),
                    },
                )
            })
            .collect())
    }

    async fn fault_summary(
        &self,
        tenant: Uuid,
        from_day: i32,
        to_day: i32,
    ) -> Result<Vec<FaultCount>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                "SELECT device_id, code, sum(count)::bigint, max(day) FROM fault_days WHERE tenant_id = $1 AND day BETWEEN $2 AND $3
                 GROUP BY device_id, code ORDER BY device_id, sum(count) DESC, code",
                &[&tenant, &i64::from(from_day), &i64::from(to_day)],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(|r| FaultCount {
                device_id: r.get(0),
                code: r.get(1),
                count: r.get(2),
                last_day: r.get::<_, i64>(3) as i32,
            })
            .collect())
    }

    async fn create_service_schedule(
        &self,
        tenant: Uuid,
        s: &ServiceSchedule,
    ) -> Result<(), StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        if let Some(d) = s.device_id {
            if !device_known(&tx, tenant, d).await? {
                return Err(StorageError::UnknownDevice);
            }
        }
        tx.execute(
            &format!("INSERT INTO maintenance_schedules (tenant_id, {SCHEDULE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
            &[
                &tenant,
                &s.id,
                &s.name,
                &s.device_id,
                &s.vehicle_group,
                &s.every_km,
                &s.every_engine_hours,
                &s.every_days,
                &s.created_at_ms,
            ],
        )
        .await
        .map_err(pg)?;
        tx.commit().await
    }

    async fn service_schedules(&self, tenant: Uuid) -> Result<Vec<ServiceSchedule>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                &format!("SELECT {SCHEDULE_COLUMNS} FROM maintenance_schedules WHERE tenant_id = $1 ORDER BY created_at_ms, schedule_id"),
                &[&tenant],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(rows.iter().map(schedule_at).collect())
    }

    async fn delete_service_schedule(&self, tenant: Uuid, id: Uuid) -> Result<bool, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        tx.execute(
            "DELETE FROM maintenance_services WHERE tenant_id = $1 AND schedule_id = $2",
            &[&tenant, &id],
        )
        .await
        .map_err(pg)?;
        let n = tx
            .execute(
                "DELETE FROM maintenance_schedules WHERE tenant_id = $1 AND schedule_id = $2",
                &[&tenant, &id],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn record_service(&self, tenant: Uuid, r: &ServiceRecord) -> Result<(), StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        if !device_known(&tx, tenant, r.device_id).await? {
            return Err(StorageError::UnknownDevice);
        }
        let known = tx
            .query_opt(
                "SELECT 1 FROM maintenance_schedules WHERE tenant_id = $1 AND schedule_id = $2",
                &[&tenant, &r.schedule_id],
            )
            .await
            .map_err(pg)?;
        if known.is_none() {
            return Err(StorageError::Invalid("no such service schedule".into()));
        }
        tx.execute(
            "INSERT INTO maintenance_services (tenant_id, schedule_id, device_id, done_at_ms, odometer_km, engine_hours, work_order_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (tenant_id, schedule_id, device_id) DO UPDATE SET done_at_ms = excluded.done_at_ms,
                 odometer_km = excluded.odometer_km, engine_hours = excluded.engine_hours, work_order_id = excluded.work_order_id",
            &[
                &tenant,
                &r.schedule_id,
                &r.device_id,
                &r.done_at_ms,
                &r.odometer_km,
                &r.engine_hours,
                &r.work_order_id,
            ],
        )
        .await
        .map_err(pg)?;
        tx.commit().await
    }

    async fn service_records(&self, tenant: Uuid) -> Result<Vec<ServiceRecord>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                "SELECT schedule_id, device_id, done_at_ms, odometer_km, engine_hours, work_order_id
                 FROM maintenance_services WHERE tenant_id = $1",
                &[&tenant],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(|r| ServiceRecord {
                schedule_id: r.get(0),
                device_id: r.get(1),
                done_at_ms: r.get(2),
                odometer_km: r.get(3),
                engine_hours: r.get(4),
                work_order_id: r.get(5),
            })
            .collect())
    }

    async fn create_work_order(&self, tenant: Uuid, w: &WorkOrder) -> Result<(), StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        if !device_known(&tx, tenant, w.device_id).await? {
            return Err(StorageError::UnknownDevice);
        }
        tx.execute(
            &format!("INSERT INTO work_orders (tenant_id, {WORK_ORDER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"),
            &[
                &tenant,
                &w.id,
                &w.device_id,
                &w.schedule_id,
                &w.title,
                &w.status,
                &w.parts_cents,
                &w.labor_cents,
                &w.opened_at_ms,
                &w.closed_at_ms,
                &w.updated_at_ms,
            ],
        )
        .await
        .map_err(pg)?;
        tx.commit().await
    }

    async fn update_work_order(
        &self,
        tenant: Uuid,
        w: &WorkOrder,
    ) -> Result<Option<WorkOrder>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let row = tx
            .query_opt(
                &format!(
                    "UPDATE work_orders SET title = $3, status = $4, parts_cents = $5, labor_cents = $6, closed_at_ms = $7, updated_at_ms = $8
                     WHERE tenant_id = $1 AND work_order_id = $2 RETURNING {WORK_ORDER_COLUMNS}"
                ),
                &[
                    &tenant,
                    &w.id,
                    &w.title,
                    &w.status,
                    &w.parts_cents,
                    &w.labor_cents,
                    &w.closed_at_ms,
                    &w.updated_at_ms,
                ],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(row.as_ref().map(work_order_at))
    }

    async fn work_order(&self, tenant: Uuid, id: Uuid) -> Result<Option<WorkOrder>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let row = tx
            .query_opt(
                &format!("SELECT {WORK_ORDER_COLUMNS} FROM work_orders WHERE tenant_id = $1 AND work_order_id = $2"),
                &[&tenant, &id],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(row.as_ref().map(work_order_at))
    }

    async fn work_orders(
        &self,
        tenant: Uuid,
        device: Option<Uuid>,
    ) -> Result<Vec<WorkOrder>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                &format!(
                    "SELECT {WORK_ORDER_COLUMNS} FROM work_orders WHERE tenant_id = $1 AND ($2::uuid IS NULL OR device_id = $2)
                     ORDER BY opened_at_ms DESC, work_order_id"
                ),
                &[&tenant, &device],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        Ok(rows.iter().map(work_order_at).collect())
    }

    async fn maintenance_alerts(
        &self,
        tenant: Uuid,
        open_only: bool,
    ) -> Result<Vec<AlertRecord>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        let rows = tx
            .query(
                &format!(
                    "SELECT {ALERT_COLUMNS} FROM maintenance_alerts WHERE tenant_id = $1 AND (NOT $2 OR acknowledged_at_ms IS NULL)
                     ORDER BY raised_at_ms DESC, alert_id LIMIT 1000"
                ),
                &[&tenant, &open_only],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        rows.iter().map(|r| alert_at(r, 0)).collect()
    }

    async fn acknowledge_alert(
        &self,
        tenant: Uuid,
        id: Uuid,
        now_ms: i64,
    ) -> Result<Option<AlertRecord>, StorageError> {
        let tx = self.tenant_tx(tenant).await?;
        tx.execute(
            "UPDATE maintenance_alerts SET acknowledged_at_ms = $3 WHERE tenant_id = $1 AND alert_id = $2 AND acknowledged_at_ms IS NULL",
            &[&tenant, &id, &now_ms],
        )
        .await
        .map_err(pg)?;
        let row = tx
            .query_opt(
                &format!("SELECT {ALERT_COLUMNS} FROM maintenance_alerts WHERE tenant_id = $1 AND alert_id = $2"),
                &[&tenant, &id],
            )
            .await
            .map_err(pg)?;
        tx.commit().await?;
        row.map(|r| alert_at(&r, 0)).transpose()
    }

    async fn take_unnotified_alerts(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<(Uuid, AlertRecord)>, StorageError> {
        // Not a lease: the mark is for good, an alert is announced once.
        let returning = ALERT_COLUMNS
            .split(", ")
            .map(|c| format!("a.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let claim_sql = format!(
            "WITH claimed AS (
                 SELECT alert_id FROM maintenance_alerts WHERE tenant_id = $1 AND notified_at_ms IS NULL
                 ORDER BY raised_at_ms LIMIT $3 FOR UPDATE SKIP LOCKED)
             UPDATE maintenance_alerts a SET notified_at_ms = $4 FROM claimed
             WHERE a.tenant_id = $1 AND a.alert_id = claimed.alert_id RETURNING {returning}"
        );
        let claim = Claim {
            tenants_due: "SELECT tenant_id FROM maintenance_alerts WHERE notified_at_ms IS NULL \
                          GROUP BY tenant_id ORDER BY min(raised_at_ms) LIMIT $2",
            claim: &claim_sql,
        };
        let finder = self.analytics_worker_tx().await?;
        self.claim_leased(finder, &claim, now_ms, now_ms, limit, |tenant, r| {
            Ok((tenant, alert_at(r, 0)?))
        })
        .await
    }
}
