//! Analytics reports (`/api/v1/analytics/…`): utilization, idle assets, trips,
//! cost per km with TCO and ROI, the usage heatmap and the tenant's analytics
//! settings. Every report reads the rollups ingest keeps, answers JSON, and
//! CSV with `?format=csv`. Formulas are in `docs/ANALYTICS.md` and returned
//! next to the numbers.

use super::auth::{Caller, Capability};
use super::error::{ApiError, ApiJson, ApiQuery};
use super::openapi::{error_response, json_body, json_response, schema_ref};
use crate::analytics::report::{
    self, AnalyticsSettings, VehiclePeriod, COST_PER_KM_FORMULA, DEPRECIATION_FORMULA,
    FUEL_COST_FORMULA, ROI_FORMULA, TCO_FORMULA, UTILIZATION_DAYS_FORMULA,
    UTILIZATION_HOURS_FORMULA,
};
use crate::analytics::{csv, day_start_ms, day_string, local_day, parse_day};
use crate::storage::{now_ms, rfc3339_ms};
use crate::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The longest window a report covers.
pub const MAX_WINDOW_DAYS: i32 = 400;
const DEFAULT_WINDOW_DAYS: i32 = 30;
const MAX_TRIPS_LISTED: u32 = 500;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// First local day, `YYYY-MM-DD`; default: 29 days before `to`.
    from: Option<String>,
    /// Last local day, inclusive; default: today.
    to: Option<String>,
    /// One vehicle (device id) only.
    vehicle: Option<Uuid>,
    /// `json` (default) or `csv`.
    format: Option<String>,
    /// Idle report: days without use, default 7.
    days: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Json,
    Csv,
    /// The summary report only.
    Pdf,
}

fn format_of(q: &ReportQuery) -> Result<Format, ApiError> {
    match q.format.as_deref() {
        None | Some("json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        Some(f) => Err(ApiError::bad_request(
            "bad_format",
            format!("format {f:?} is not json or csv"),
        )),
    }
}

/// A report's window of local days, `from..=to`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from: i32,
    pub to: i32,
}

impl Window {
    pub fn days(&self) -> i64 {
        i64::from(self.to - self.from + 1)
    }

    fn json(&self) -> Value {
        json!({"from": day_string(self.from), "to": day_string(self.to), "days": self.days()})
    }
}

fn window(q: &ReportQuery, s: &AnalyticsSettings) -> Result<Window, ApiError> {
    let parse = |name: &str, v: &Option<String>| -> Result<Option<i32>, ApiError> {
        v.as_deref()
            .map(|d| {
                parse_day(d).ok_or_else(|| {
                    ApiError::bad_request(
                        "bad_date",
                        format!("{name} must be a date such as 2026-03-01"),
                    )
                })
            })
            .transpose()
    };
    let today = local_day(now_ms(), s.utc_offset_min);
    let to = parse("to", &q.to)?.unwrap_or(today);
    let from = parse("from", &q.from)?.unwrap_or(to - DEFAULT_WINDOW_DAYS + 1);
    if from > to {
        return Err(ApiError::bad_request("bad_window", "from is after to"));
    }
    if to - from + 1 > MAX_WINDOW_DAYS {
        return Err(ApiError::bad_request(
            "bad_window",
            format!("a report covers at most {MAX_WINDOW_DAYS} days"),
        ));
    }
    Ok(Window { from, to })
}

fn csv_response(name: &str, body: String) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.csv\""),
            ),
        ],
        body,
    )
        .into_response()
}

fn opt_day(d: Option<i32>) -> Value {
    d.map_or(Value::Null, |d| json!(day_string(d)))
}

async fn vehicles_in(
    state: &AppState,
    caller: &Caller,
    w: Window,
    vehicle: Option<Uuid>,
    s: &AnalyticsSettings,
) -> Result<Vec<VehiclePeriod>, ApiError> {
    let mut all = state
        .storage
        .period_summary(caller.tenant, w.from, w.to, s.used_min_ms())
        .await?;
    if let Some(v) = vehicle {
        all.retain(|p| p.device_id == v);
        if all.is_empty() {
            return Err(ApiError::not_found("vehicle_not_found", "no such vehicle"));
        }
    }
    Ok(all)
}

/// Reads the caller's query after its capability was checked.
async fn prepare(
    state: &AppState,
    caller: &Caller,
    q: Result<ApiQuery<ReportQuery>, ApiError>,
) -> Result<(ReportQuery, AnalyticsSettings, Window, Format), ApiError> {
    let ApiQuery(q) = q?;
    let format = format_of(&q)?;
    let s = state.storage.analytics_settings(caller.tenant).await?;
    let w = window(&q, &s)?;
    Ok((q, s, w, format))
}

fn utilization_json(u: &report::Utilization) -> Value {
    serde_json::to_value(u).unwrap_or_default()
}

/// The utilization report: per vehicle, per group and for the fleet.
pub async fn utilization_report(
    state: &AppState,
    caller: &Caller,
    w: Window,
    vehicle: Option<Uuid>,
    s: &AnalyticsSettings,
) -> Result<Value, ApiError> {
    let vehicles = vehicles_in(state, caller, w, vehicle, s).await?;
    let days = w.days();
    let rows: Vec<Value> = vehicles
        .iter()
        .map(|v| {
            let mut row = utilization_json(&report::utilization(days, &[v], s));
            row["id"] = json!(v.device_id);
            row["name"] = json!(v.name);
            row["group"] = json!(v.group);
            row["last_used_day"] = opt_day(v.last_used_day);
            row
        })
        .collect();
    let mut groups: BTreeMap<Option<&str>, Vec<&VehiclePeriod>> = BTreeMap::new();
    for v in &vehicles {
        groups.entry(v.group.as_deref()).or_default().push(v);
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(g, members)| {
            let mut row = utilization_json(&report::utilization(days, &members, s));
            row["group"] = json!(g);
            row["vehicles"] = json!(members.len());
            row
        })
        .collect();
    let all: Vec<&VehiclePeriod> = vehicles.iter().collect();
    Ok(json!({
        "window": w.json(),
        "target_hours_per_day": s.target_hours_per_day,
        "used_day_min_minutes": s.used_day_min_minutes,
        "formula": {"hours": UTILIZATION_HOURS_FORMULA, "days": UTILIZATION_DAYS_FORMULA},
        "fleet": utilization_json(&report::utilization(days, &all, s)),
        "groups": groups,
        "vehicles": rows,
    }))
}

const UTILIZATION_COLUMNS: [&str; 12] = [
    "id",
    "name",
    "group",
    "days_in_window",
    "days_with_data",
    "days_no_data",
    "days_used",
    "engine_on_hours",
    "target_hours",
    "hours_utilization",
    "days_utilization",
    "last_used_day",
];

const DAILY_COLUMNS: [&str; 7] = [
    "day",
    "state",
    "engine_on_hours",
    "driving_hours",
    "idle_hours",
    "events",
    "coverage_hours",
];

pub async fn utilization(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<ApiQuery<ReportQuery>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let (q, s, w, format) = prepare(&state, &caller, q).await?;
    let mut out = utilization_report(&state, &caller, w, q.vehicle, &s).await?;
    if let Some(v) = q.vehicle {
        // Each day of the window, with its completeness: "no data" is never "unused".
        let stored: BTreeMap<i32, _> = state
            .storage
            .vehicle_days(caller.tenant, v, w.from, w.to)
            .await?
            .into_iter()
            .collect();
        let daily: Vec<Value> = (w.from..=w.to)
            .map(|day| {
                let r = stored.get(&day).cloned().unwrap_or_default();
                json!({
                    "day": day_string(day),
                    "state": report::day_state(r.events, r.engine_on_ms, &s),
                    "engine_on_hours": report::round4(r.engine_on_ms as f64 / 3_600_000.0),
                    "driving_hours": report::round4(r.driving_ms as f64 / 3_600_000.0),
                    "idle_hours": report::round4(r.idle_ms as f64 / 3_600_000.0),
                    "events": r.events,
                    "coverage_hours": r.covered_hours.count_ones(),
                })
            })
            .collect();
        if format == Format::Csv {
            return Ok(csv_response(
                "utilization-daily",
                csv::render(&DAILY_COLUMNS, &daily),
            ));
        }
        out["daily"] = Value::Array(daily);
    }
    if format == Format::Csv {
        let rows = out["vehicles"].as_array().cloned().unwrap_or_default();
        return Ok(csv_response(
            "utilization",
            csv::render(&UTILIZATION_COLUMNS, &rows),
        ));
    }
    Ok(Json(out).into_response())
}

const IDLE_COLUMNS: [&str; 8] = [
    "status",
    "id",
    "name",
    "group",
    "days_with_data",
    "days_no_data",
    "last_used_day",
    "last_data_day",
];

/// Vehicles not used for `days` (idle) and, apart from them, vehicles whose
/// data has gaps in those days.
pub async fn idle(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<ApiQuery<ReportQuery>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let ApiQuery(q) = q?;
    let format = format_of(&q)?;
    let days = q.days.unwrap_or(7);
    if !(1..=365).contains(&days) {
        return Err(ApiError::bad_request("bad_days", "days must be 1..=365"));
    }
    let s = state.storage.analytics_settings(caller.tenant).await?;
    let today = local_day(now_ms(), s.utc_offset_min);
    let w = Window {
        from: today - days + 1,
        to: today,
    };
    let recent = vehicles_in(&state, &caller, w, q.vehicle, &s).await?;
    // When each was last used, over the last year.
    let lookback = state
        .storage
        .period_summary(caller.tenant, today - 365, today, s.used_min_ms())
        .await?;
    let last: BTreeMap<Uuid, (Option<i32>, Option<i32>)> = lookback
        .iter()
        .map(|v| (v.device_id, (v.last_used_day, v.last_data_day)))
        .collect();
    let mut idle = Vec::new();
    let mut gaps = Vec::new();
    for v in &recent {
        let (last_used, last_data) = last.get(&v.device_id).copied().unwrap_or_default();
        let row = |status: &str| {
            json!({
                "status": status,
                "id": v.device_id,
                "name": v.name,
                "group": v.group,
                "days_with_data": v.days_with_data,
                "days_no_data": w.days() - v.days_with_data,
                "last_used_day": opt_day(last_used),
                "last_data_day": opt_day(last_data),
            })
        };
        if v.days_with_data > 0 && v.days_used == 0 {
            idle.push(row("idle"));
        }
        if v.days_with_data < w.days() {
            gaps.push(row("data_gap"));
        }
    }
    if format == Format::Csv {
        let rows: Vec<Value> = idle.iter().chain(gaps.iter()).cloned().collect();
        return Ok(csv_response("idle", csv::render(&IDLE_COLUMNS, &rows)));
    }
    Ok(Json(json!({
        "window": w.json(),
        "days": days,
        "rule": "idle: data on some day of the window and no day used; a vehicle without data is listed under data_gaps only",
        "idle": idle,
        "data_gaps": gaps,
    }))
    .into_response())
}

const TRIP_COLUMNS: [&str; 13] = [
    "id",
    "name",
    "group",
    "trips",
    "distance_km",
    "driving_hours",
    "idle_hours",
    "idle_pct",
    "fuel_used_l",
    "harsh_per_100km",
    "speeding_minutes",
    "faults_set",
    "refuels",
];

pub async fn trips(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<ApiQuery<ReportQuery>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let (q, s, w, format) = prepare(&state, &caller, q).await?;
    let vehicles = vehicles_in(&state, &caller, w, q.vehicle, &s).await?;
    let faults = state
        .storage
        .fault_summary(caller.tenant, w.from, w.to)
        .await?;
    let rows: Vec<Value> = vehicles
        .iter()
        .map(|v| {
            let mut row = serde_json::to_value(report::trip_figures(v)).unwrap_or_default();
            row["id"] = json!(v.device_id);
            row["name"] = json!(v.name);
            row["group"] = json!(v.group);
            row["faults_set"] = json!(v.dtc_set);
            row["refuels"] = json!(v.refuels);
            row["fuel_drops"] = json!(v.fuel_drops);
            row["harsh_events"] = json!({
                "acceleration": v.harsh_acceleration,
                "braking": v.harsh_braking,
                "cornering": v.harsh_cornering,
            });
            row["faults"] = Value::Array(
                faults
                    .iter()
                    .filter(|f| f.device_id == v.device_id)
                    .map(|f| json!({"code": f.code, "count": f.count, "last_day": day_string(f.last_day)}))
                    .collect(),
            );
            row
        })
        .collect();
    if format == Format::Csv {
        return Ok(csv_response("trips", csv::render(&TRIP_COLUMNS, &rows)));
    }
    let list = state
        .storage
        .trips(
            caller.tenant,
            day_start_ms(w.from, s.utc_offset_min),
            day_start_ms(w.to + 1, s.utc_offset_min),
            q.vehicle,
            MAX_TRIPS_LISTED,
        )
        .await?;
    let list: Vec<Value> = list
        .into_iter()
        .map(|(device, t)| {
            let duration = t.end_ms - t.start_ms;
            json!({
                "vehicle_id": device,
                "start_ms": t.start_ms,
                "end_ms": t.end_ms,
                "start": rfc3339_ms(t.start_ms),
                "end": rfc3339_ms(t.end_ms),
                "duration_s": duration / 1000,
                "distance_km": report::round2(t.distance_m / 1000.0),
                "idle_s": t.idle_ms / 1000,
                "idle_pct": (duration > 0).then(|| report::round2(t.idle_ms as f64 * 100.0 / duration as f64)),
                "fuel_used_l": t.fuel_used_l,
                "max_speed_kmh": t.max_speed_kmh,
                "driving_events": t.driving_events,
            })
        })
        .collect();
    Ok(Json(json!({
        "window": w.json(),
        "formula": {
            "idle_pct": "idle_pct = idle / (driving + idle) * 100",
            "harsh_per_100km": "harsh_per_100km = harsh events / distance_km * 100",
        },
        "vehicles": rows,
        "trips": list,
        "trips_listed_max": MAX_TRIPS_LISTED,
    }))
    .into_response())
}

const COST_COLUMNS: [&str; 13] = [
    "id",
    "name",
    "group",
    "fuel_cents",
    "maintenance_cents",
    "depreciation_cents",
    "total_cents",
    "meter_distance_km",
    "cost_per_km_cents",
    "cost_per_mile_cents",
    "savings_cents",
    "roi",
    "currency",
];

/// Costs of each vehicle over a window; only for callers who may see costs.
pub async fn cost_report(
    state: &AppState,
    caller: &Caller,
    w: Window,
    vehicle: Option<Uuid>,
    s: &AnalyticsSettings,
) -> Result<Value, ApiError> {
    let vehicles = vehicles_in(state, caller, w, vehicle, s).await?;
    let profiles = state.storage.vehicle_costs(caller.tenant).await?;
    let from_ms = day_start_ms(w.from, s.utc_offset_min);
    let to_ms = day_start_ms(w.to + 1, s.utc_offset_min);
    let mut maintenance: BTreeMap<Uuid, i64> = BTreeMap::new();
    for o in state.storage.work_orders(caller.tenant, vehicle).await? {
        if o.status == "completed" && o.closed_at_ms.is_some_and(|c| c >= from_ms && c < to_ms) {
            *maintenance.entry(o.device_id).or_default() += o.parts_cents + o.labor_cents;
        }
    }
    let rows: Vec<Value> = vehicles
        .iter()
        .map(|v| {
            let profile = profiles.get(&v.device_id);
            let price = v
                .purchase_price_cents
                .or(profile.and_then(|p| p.purchase_price_cents));
            let c = report::cost_figures(
                v,
                w.days(),
                maintenance.get(&v.device_id).copied().unwrap_or(0),
                price,
                s,
            );
            let mut row = serde_json::to_value(c).unwrap_or_default();
            row["id"] = json!(v.device_id);
            row["name"] = json!(v.name);
            row["group"] = json!(v.group);
            row["currency"] = json!(profile.and_then(|p| p.currency.clone()));
            row
        })
        .collect();
    Ok(json!({
        "window": w.json(),
        "formula": {
            "cost_per_km": COST_PER_KM_FORMULA,
            "cost_per_mile": "cost_per_mile = cost_per_km * 1.609344",
            "tco": TCO_FORMULA,
            "roi": ROI_FORMULA,
            "fuel": FUEL_COST_FORMULA,
            "depreciation": DEPRECIATION_FORMULA,
            "maintenance": "maintenance = parts + labor of work orders completed in the window",
        },
        "fuel_price_cents_per_l": s.fuel_price_cents_per_l,
        "rental_rate_cents_per_day": s.rental_rate_cents_per_day,
        "depreciation_years": s.depreciation_years,
        "vehicles": rows,
    }))
}

pub async fn costs(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<ApiQuery<ReportQuery>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(Capability::ReadFleet)?;
    caller.require(Capability::ViewCosts)?;
    caller.require_feature("cost_tracking")?;
    let (q, s, w, format) = prepare(&state, &caller, q).await?;
    let out = cost_report(&state, &caller, w, q.vehicle, &s).await?;
    if format == Format::Csv {
        let rows = out["vehicles"].as_array().cloned().unwrap_or_default();
        return Ok(csv_response("costs", csv::render(&COST_COLUMNS, &rows)));
    }
    Ok(Json(out).into_response())
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

pub async fn heatmap(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<ApiQuery<ReportQuery>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let (q, s, w, format) = prepare(&state, &caller, q).await?;
    if let Some(v) = q.vehicle {
        vehicles_in(&state, &caller, w, Some(v), &s).await?;
    }
    let days = state
        .storage
        .hour_use(caller.tenant, w.from, w.to, q.vehicle)
        .await?;
    let m = report::heatmap(&days);
    if format == Format::Csv {
        let mut columns = vec!["weekday".to_owned()];
        columns.extend((0..24).map(|h| format!("h{h:02}")));
        let rows: Vec<Value> = m
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let mut o = serde_json::Map::new();
                o.insert("weekday".into(), json!(WEEKDAYS[i]));
                for (h, v) in row.iter().enumerate() {
                    o.insert(format!("h{h:02}"), json!(v));
                }
                Value::Object(o)
            })
            .collect();
        let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
        return Ok(csv_response("heatmap", csv::render(&cols, &rows)));
    }
    Ok(Json(json!({
        "window": w.json(),
        "unit": "engine_on_hours",
        "weekdays": WEEKDAYS,
        "hours": m,
        "utc_offset_min": s.utc_offset_min,
    }))
    .into_response())
}

const SUMMARY_COLUMNS: [&str; 11] = [
    "id",
    "name",
    "group",
    "days_with_data",
    "days_used",
    "engine_on_hours",
    "hours_utilization",
    "distance_km",
    "fuel_used_l",
    "total_cents",
    "cost_per_km_cents",
];

/// One page per fleet: utilization, distance and fuel per vehicle, and, for
/// callers who may see costs, TCO and cost per km.
pub async fn summary(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<ApiQuery<ReportQuery>, ApiError>,
) -> Result<Response, ApiError> {
    caller.require(Capability::ReadFleet)?;
    let ApiQuery(mut q) = q?;
    let pdf = q.format.as_deref() == Some("pdf");
    if pdf {
        q.format = None;
    }
    let format = if pdf { Format::Pdf } else { format_of(&q)? };
    let s = state.storage.analytics_settings(caller.tenant).await?;
    let w = window(&q, &s)?;
    let util = utilization_report(&state, &caller, w, q.vehicle, &s).await?;
    let trips = vehicles_in(&state, &caller, w, q.vehicle, &s).await?;
    let with_costs =
        caller.can(Capability::ViewCosts) && caller.require_feature("cost_tracking").is_ok();
    let costs = if with_costs {
        Some(cost_report(&state, &caller, w, q.vehicle, &s).await?)
    } else {
        None
    };
    let rows: Vec<Value> = util["vehicles"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|u| {
            let id = u["id"].clone();
            let t = trips.iter().find(|v| json!(v.device_id) == id);
            let mut row = json!({
                "id": id,
                "name": u["name"],
                "group": u["group"],
                "days_with_data": u["days_with_data"],
                "days_used": u["days_used"],
                "engine_on_hours": u["engine_on_hours"],
                "hours_utilization": u["hours_utilization"],
                "distance_km": t.map(|v| report::round2(v.distance_m / 1000.0)),
                "fuel_used_l": t.map(|v| report::round2(v.fuel_used_l)),
            });
            if let Some(c) = &costs {
                if let Some(c) = c["vehicles"]
                    .as_array()
                    .and_then(|a| a.iter().find(|c| c["id"] == id))
                {
                    row["total_cents"] = c["total_cents"].clone();
                    row["cost_per_km_cents"] = c["cost_per_km_cents"].clone();
                }
            }
            row
        })
        .collect();
    match format {
        Format::Csv => {
            let cols: Vec<&str> = SUMMARY_COLUMNS
                .iter()
                .copied()
                .filter(|c| with_costs || !c.contains("cents"))
                .collect();
            Ok(csv_response("summary", csv::render(&cols, &rows)))
        }
        Format::Pdf => {
            let fleet = &util["fleet"];
            let num = |v: &Value| v.as_f64().map_or("-".to_owned(), |x| format!("{x}"));
            let mut lines = vec![
                format!("Window {} to {} ({} days)", day_string(w.from), day_string(w.to), w.days()),
                format!(
                    "Fleet: {} engine-on hours, hours utilization {}, days used {} of {} with data ({} without)",
                    num(&fleet["engine_on_hours"]),
                    num(&fleet["hours_utilization"]),
                    fleet["days_used"],
                    fleet["days_with_data"],
                    fleet["days_no_data"]
                ),
                format!("{UTILIZATION_HOURS_FORMULA}"),
                String::new(),
            ];
            let mut head = format!(
                "{:<28} {:>5} {:>5} {:>8} {:>6} {:>9} {:>8}",
                "vehicle", "data", "used", "hours", "util", "km", "fuel l"
            );
            if with_costs {
                head.push_str(&format!(" {:>10} {:>8}", "tco", "per km"));
                lines.insert(3, COST_PER_KM_FORMULA.to_owned());
            }
            lines.push(head);
            for r in &rows {
                let name: String = r["name"]
                    .as_str()
                    .unwrap_or_default()
                    .chars()
                    .take(28)
                    .collect();
                let mut line = format!(
                    "{:<28} {:>5} {:>5} {:>8} {:>6} {:>9} {:>8}",
                    name,
                    r["days_with_data"],
                    r["days_used"],
                    num(&r["engine_on_hours"]),
                    num(&r["hours_utilization"]),
                    num(&r["distance_km"]),
                    num(&r["fuel_used_l"])
                );
                if with_costs {
                    let money = |v: &Value| {
                        v.as_f64()
                            .map_or("-".to_owned(), |c| format!("{:.2}", c / 100.0))
                    };
                    line.push_str(&format!(
                        " {:>10} {:>8}",
                        money(&r["total_cents"]),
                        money(&r["cost_per_km_cents"])
                    ));
                }
                lines.push(line);
            }
            let body = crate::analytics::pdf::render("Fleet summary", &lines);
            Ok((
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/pdf".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"summary.pdf\"".to_owned(),
                    ),
                ],
                body,
            )
                .into_response())
        }
        Format::Json => Ok(Json(json!({
            "window": w.json(),
            "fleet": util["fleet"],
            "formula": util["formula"],
            "costs_included": with_costs,
            "vehicles": rows,
        }))
        .into_response()),
    }
}

pub async fn get_settings(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<AnalyticsSettings>, ApiError> {
    caller.require(Capability::ReadFleet)?;
    Ok(Json(state.storage.analytics_settings(caller.tenant).await?))
}

pub async fn put_settings(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<ApiJson<AnalyticsSettings>, ApiError>,
) -> Result<Json<AnalyticsSettings>, ApiError> {
    caller.require(Capability::ManageConfig)?;
    let ApiJson(s) = body?;
    s.validate()
        .map_err(|m| ApiError::bad_request("bad_settings", m))?;
    state
        .storage
        .set_analytics_settings(caller.tenant, &s, now_ms())
        .await?;
    state
        .audit(
            &caller,
            "analytics.settings",
            "analytics_settings".to_owned(),
            serde_json::to_value(&s).unwrap_or_default(),
        )
        .await?;
    Ok(Json(s))
}

pub fn openapi() -> Value {
    let report_params = |extra: Vec<Value>| {
        let mut p = vec![
            json!({"name": "from", "in": "query", "schema": {"type": "string", "format": "date"}, "description": "first local day; default 29 days before to"}),
            json!({"name": "to", "in": "query", "schema": {"type": "string", "format": "date"}, "description": "last local day, inclusive; default today"}),
            json!({"name": "vehicle", "in": "query", "schema": {"type": "string", "format": "uuid"}}),
            json!({"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "csv"]}}),
        ];
        p.extend(extra);
        Value::Array(p)
    };
    let csv_ok = |schema: &str| {
        json!({"description": "the report", "content": {
            "application/json": {"schema": schema_ref(schema)},
            "text/csv": {"schema": {"type": "string"}}
        }})
    };
    let report = |id: &str, summary: &str, schema: &str, cap: Value, extra: Vec<Value>| {
        json!({"get": {
            "operationId": id,
            "summary": summary,
            "x-capability": cap,
            "tags": ["analytics"],
            "parameters": report_params(extra),
            "responses": {
                "200": csv_ok(schema),
                "400": error_response("bad_query, bad_date, bad_window, bad_format"),
                "404": error_response("vehicle_not_found")
            }
        }})
    };
    let util_props = json!({
        "days_in_window": {"type": "integer"}, "days_with_data": {"type": "integer"},
        "days_no_data": {"type": "integer"}, "days_used": {"type": "integer"},
        "engine_on_hours": {"type": "number"}, "target_hours": {"type": "number"},
        "hours_utilization": {"type": ["number", "null"]}, "days_utilization": {"type": ["number", "null"]}
    });
    let window = json!({"type": "object", "properties": {"from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"}, "days": {"type": "integer"}}});
    json!({
        "paths": {
            "/api/v1/analytics/utilization": report("analyticsUtilization",
                "Utilization per vehicle, group and fleet: engine-on hours against the daily target, days used against days with data; with vehicle, each day's state (used, unused, no_data)",
                "UtilizationReport", json!("read_fleet"), vec![]),
            "/api/v1/analytics/idle": report("analyticsIdle",
                "Vehicles with data but no use for `days` (default 7), and data gaps listed apart",
                "IdleReport", json!("read_fleet"),
                vec![json!({"name": "days", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 365}})]),
            "/api/v1/analytics/trips": report("analyticsTrips",
                "Trips per vehicle: distance, driving and idle time, idle %, fuel, harsh events per 100 km, speeding time, fault codes; and the trips themselves",
                "TripsReport", json!("read_fleet"), vec![]),
            "/api/v1/analytics/costs": report("analyticsCosts",
                "Cost per km and mile, TCO and ROI per vehicle, with the formulas",
                "CostReport", json!(["read_fleet", "view_costs"]), vec![]),
            "/api/v1/analytics/heatmap": report("analyticsHeatmap",
                "Engine-on hours by weekday and local hour",
                "Heatmap", json!("read_fleet"), vec![]),
            "/api/v1/analytics/summary": {"get": {
                "operationId": "analyticsSummary",
                "summary": "The summary report: utilization, distance and fuel per vehicle, with TCO and cost per km for callers who may see costs; JSON, CSV or PDF",
                "x-capability": "read_fleet",
                "tags": ["analytics"],
                "parameters": [
                    {"name": "from", "in": "query", "schema": {"type": "string", "format": "date"}},
                    {"name": "to", "in": "query", "schema": {"type": "string", "format": "date"}},
                    {"name": "vehicle", "in": "query", "schema": {"type": "string", "format": "uuid"}},
                    {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "csv", "pdf"]}}
                ],
                "responses": {
                    "200": {"description": "the report", "content": {
                        "application/json": {"schema": {"type": "object"}},
                        "text/csv": {"schema": {"type": "string"}},
                        "application/pdf": {"schema": {"type": "string", "format": "binary"}}
                    }},
                    "400": error_response("bad_query, bad_date, bad_window, bad_format"),
                    "404": error_response("vehicle_not_found")
                }
            }},
            "/api/v1/analytics/settings": {
                "get": {
                    "operationId": "getAnalyticsSettings",
                    "summary": "The tenant's analytics settings (time zone offset, targets, prices)",
                    "x-capability": "read_fleet",
                    "tags": ["analytics"],
                    "responses": {"200": json_response("settings", schema_ref("AnalyticsSettings"))}
                },
                "put": {
                    "operationId": "setAnalyticsSettings",
                    "summary": "Set the tenant's analytics settings; rollups made from now on use the new time zone offset",
                    "x-capability": "manage_config",
                    "tags": ["analytics"],
                    "requestBody": json_body(schema_ref("AnalyticsSettings")),
                    "responses": {
                        "200": json_response("settings", schema_ref("AnalyticsSettings")),
                        "400": error_response("bad_json, bad_settings")
                    }
                }
            }
        },
        "components": {"schemas": {
            "AnalyticsSettings": {
                "type": "object",
                "required": ["utc_offset_min", "target_hours_per_day", "used_day_min_minutes", "depreciation_years", "fault_repeat_count", "fault_repeat_days"],
                "properties": {
                    "utc_offset_min": {"type": "integer", "minimum": -840, "maximum": 840},
                    "target_hours_per_day": {"type": "number", "exclusiveMinimum": 0, "maximum": 24},
                    "used_day_min_minutes": {"type": "integer", "minimum": 0, "maximum": 1440},
                    "fuel_price_cents_per_l": {"type": ["integer", "null"], "minimum": 0, "maximum": 100_000_000},
                    "depreciation_years": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
                    "rental_rate_cents_per_day": {"type": ["integer", "null"], "minimum": 0, "maximum": 100_000_000},
                    "fault_repeat_count": {"type": "integer", "minimum": 1, "maximum": 1000},
                    "fault_repeat_days": {"type": "integer", "minimum": 1, "maximum": 366}
                }
            },
            "Utilization": {"type": "object", "properties": util_props},
            "UtilizationReport": {"type": "object", "properties": {
                "window": window,
                "formula": {"type": "object"},
                "fleet": schema_ref("Utilization"),
                "groups": {"type": "array", "items": {"type": "object"}},
                "vehicles": {"type": "array", "items": {"type": "object", "properties": {
                    "id": {"type": "string", "format": "uuid"}, "name": {"type": "string"},
                    "group": {"type": ["string", "null"]}, "last_used_day": {"type": ["string", "null"]}
                }}},
                "daily": {"type": "array", "items": {"type": "object", "properties": {
                    "day": {"type": "string", "format": "date"},
                    "state": {"type": "string", "enum": ["used", "unused", "no_data"]},
                    "engine_on_hours": {"type": "number"}, "coverage_hours": {"type": "integer"}
                }}}
            }},
            "IdleReport": {"type": "object", "properties": {
                "window": window, "days": {"type": "integer"},
                "idle": {"type": "array", "items": {"type": "object"}},
                "data_gaps": {"type": "array", "items": {"type": "object"}}
            }},
            "TripsReport": {"type": "object", "properties": {
                "window": window, "formula": {"type": "object"},
                "vehicles": {"type": "array", "items": {"type": "object"}},
                "trips": {"type": "array", "items": {"type": "object", "properties": {
                    "vehicle_id": {"type": "string", "format": "uuid"},
                    "start_ms": {"type": "integer"}, "end_ms": {"type": "integer"},
                    "distance_km": {"type": "number"}, "idle_pct": {"type": ["number", "null"]}
                }}}
            }},
            "CostReport": {"type": "object", "properties": {
                "window": window, "formula": {"type": "object"},
                "vehicles": {"type": "array", "items": {"type": "object", "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "fuel_cents": {"type": ["integer", "null"]}, "maintenance_cents": {"type": "integer"},
                    "depreciation_cents": {"type": ["integer", "null"]}, "total_cents": {"type": "integer"},
                    "meter_distance_km": {"type": ["number", "null"]},
                    "cost_per_km_cents": {"type": ["number", "null"]}, "cost_per_mile_cents": {"type": ["number", "null"]},
                    "savings_cents": {"type": ["integer", "null"]}, "roi": {"type": ["number", "null"]}
                }}}
            }},
            "Heatmap": {"type": "object", "properties": {
                "window": window, "unit": {"type": "string"},
                "weekdays": {"type": "array", "items": {"type": "string"}},
                "hours": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}
            }}
        }}
    })
}
