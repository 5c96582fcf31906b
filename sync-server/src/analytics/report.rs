//! Report arithmetic over rollups. Every ratio says what it divides by, and a
//! day with no data is never counted as a day unused.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A tenant's analytics settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalyticsSettings {
    /// The tenant's zone as a fixed offset from UTC, minutes; days and hours
    /// in every report are local to it.
    pub utc_offset_min: i32,
    /// Engine-on hours a vehicle is expected to work per day with data.
    pub target_hours_per_day: f64,
    /// Engine-on minutes above which a day counts as used.
    pub used_day_min_minutes: i64,
    pub fuel_price_cents_per_l: Option<i64>,
    /// Straight-line depreciation of the purchase price over this many years.
    pub depreciation_years: f64,
    /// What renting an equivalent vehicle would cost per day used: the saving
    /// that ROI weighs against costs.
    pub rental_rate_cents_per_day: Option<i64>,
    /// A fault code set this many times within `fault_repeat_days` raises an alert.
    pub fault_repeat_count: i64,
    pub fault_repeat_days: i64,
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        AnalyticsSettings {
            utc_offset_min: 0,
            target_hours_per_day: 8.0,
            used_day_min_minutes: 30,
            fuel_price_cents_per_l: None,
            depreciation_years: 5.0,
            rental_rate_cents_per_day: None,
            fault_repeat_count: 3,
            fault_repeat_days: 30,
        }
    }
}

impl AnalyticsSettings {
    pub fn validate(&self) -> Result<(), String> {
        if !(-14 * 60..=14 * 60).contains(&self.utc_offset_min) {
            return Err("utc_offset_min must be within -840..=840".into());
        }
        if !(self.target_hours_per_day > 0.0 && self.target_hours_per_day <= 24.0) {
            return Err("target_hours_per_day must be more than 0 and at most 24".into());
        }
        if !(0..=1440).contains(&self.used_day_min_minutes) {
            return Err("used_day_min_minutes must be within 0..=1440".into());
        }
        if !(self.depreciation_years > 0.0 && self.depreciation_years <= 100.0) {
            return Err("depreciation_years must be more than 0 and at most 100".into());
        }
        for (name, v) in [
            ("fuel_price_cents_per_l", self.fuel_price_cents_per_l),
            ("rental_rate_cents_per_day", self.rental_rate_cents_per_day),
        ] {
            if v.is_some_and(|v| !(0..=100_000_000).contains(&v)) {
                return Err(format!("{name} must be within 0..=100000000"));
            }
        }
        if !(1..=1000).contains(&self.fault_repeat_count)
            || !(1..=366).contains(&self.fault_repeat_days)
        {
            return Err("fault_repeat_count must be 1..=1000 and fault_repeat_days 1..=366".into());
        }
        Ok(())
    }

    pub fn used_min_ms(&self) -> i64 {
        self.used_day_min_minutes * 60_000
    }
}

/// One vehicle's rollups summed over a window of days.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VehiclePeriod {
    pub device_id: Uuid,
    pub name: String,
    pub group: Option<String>,
    pub days_with_data: i64,
    pub days_used: i64,
    pub engine_on_ms: i64,
    pub driving_ms: i64,
    pub idle_ms: i64,
    pub trips: i64,
    pub distance_m: f64,
    pub fuel_used_l: f64,
    pub harsh_acceleration: i64,
    pub harsh_braking: i64,
    pub harsh_cornering: i64,
    pub speeding_ms: i64,
    pub dtc_set: i64,
    pub fuel_drops: i64,
    pub parked_fuel_drops: i64,
    pub refuels: i64,
    pub odometer_min_km: Option<f64>,
    pub odometer_max_km: Option<f64>,
    pub engine_hours_min: Option<f64>,
    pub engine_hours_max: Option<f64>,
    pub last_used_day: Option<i32>,
    pub last_data_day: Option<i32>,
    /// From the vehicle's asset record, when it has one.
    pub purchase_price_cents: Option<i64>,
}

pub const UTILIZATION_HOURS_FORMULA: &str =
    "hours_utilization = engine_on_hours / (target_hours_per_day * days_with_data)";
pub const UTILIZATION_DAYS_FORMULA: &str =
    "days_utilization = days_used / days_with_data, a day used when engine-on time > used_day_min_minutes";
pub const COST_PER_KM_FORMULA: &str =
    "cost_per_km = (fuel + maintenance + depreciation) / meter_distance_km";
pub const TCO_FORMULA: &str = "tco = fuel + maintenance + depreciation";
pub const ROI_FORMULA: &str =
    "roi = (savings - costs) / costs, savings = days_used * rental_rate_per_day";
pub const FUEL_COST_FORMULA: &str = "fuel = fuel_used_l * fuel_price_per_l";
pub const DEPRECIATION_FORMULA: &str =
    "depreciation = purchase_price / (depreciation_years * 365.25) * days_in_window";

fn ratio(num: f64, den: f64) -> Option<f64> {
    (den > 0.0).then(|| round4(num / den))
}

pub fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Utilization of one vehicle or group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Utilization {
    pub days_in_window: i64,
    pub days_with_data: i64,
    pub days_no_data: i64,
    pub days_used: i64,
    pub engine_on_hours: f64,
    pub target_hours: f64,
    /// `None` when there is no day with data to measure against.
    pub hours_utilization: Option<f64>,
    pub days_utilization: Option<f64>,
}

pub fn utilization(
    days_in_window: i64,
    vehicles: &[&VehiclePeriod],
    s: &AnalyticsSettings,
) -> Utilization {
    let with_data: i64 = vehicles.iter().map(|v| v.days_with_data).sum();
    let used: i64 = vehicles.iter().map(|v| v.days_used).sum();
    let on_ms: i64 = vehicles.iter().map(|v| v.engine_on_ms).sum();
    let hours = on_ms as f64 / 3_600_000.0;
    let target = s.target_hours_per_day * with_data as f64;
    Utilization {
        days_in_window: days_in_window * vehicles.len() as i64,
        days_with_data: with_data,
        days_no_data: days_in_window * vehicles.len() as i64 - with_data,
        days_used: used,
        engine_on_hours: round4(hours),
        target_hours: round4(target),
        hours_utilization: ratio(hours, target),
        days_utilization: ratio(used as f64, with_data as f64),
    }
}

/// The state of one vehicle's day in the utilization detail.
pub fn day_state(events: i64, engine_on_ms: i64, s: &AnalyticsSettings) -> &'static str {
    if events == 0 {
        "no_data"
    } else if engine_on_ms > s.used_min_ms() {
        "used"
    } else {
        "unused"
    }
}

/// Trip figures for one vehicle over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TripFigures {
    pub trips: i64,
    pub distance_km: f64,
    pub driving_hours: f64,
    pub idle_hours: f64,
    /// idle / (driving + idle)
    pub idle_pct: Option<f64>,
    pub fuel_used_l: f64,
    /// Harsh events per 100 km driven.
    pub harsh_per_100km: Option<f64>,
    pub speeding_minutes: f64,
}

pub fn trip_figures(v: &VehiclePeriod) -> TripFigures {
    let km = v.distance_m / 1000.0;
    let harsh = (v.harsh_acceleration + v.harsh_braking + v.harsh_cornering) as f64;
    TripFigures {
        trips: v.trips,
        distance_km: round2(km),
        driving_hours: round4(v.driving_ms as f64 / 3_600_000.0),
        idle_hours: round4(v.idle_ms as f64 / 3_600_000.0),
        idle_pct: ratio(v.idle_ms as f64 * 100.0, (v.driving_ms + v.idle_ms) as f64).map(round2),
        fuel_used_l: round2(v.fuel_used_l),
        harsh_per_100km: ratio(harsh * 100.0, km).map(round2),
        speeding_minutes: round2(v.speeding_ms as f64 / 60_000.0),
    }
}

/// What a vehicle cost over a window, all in cents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostFigures {
    pub fuel_cents: Option<i64>,
    pub maintenance_cents: i64,
    pub depreciation_cents: Option<i64>,
    pub total_cents: i64,
    /// From the vehicle's own odometer readings in the window.
    pub meter_distance_km: Option<f64>,
    pub cost_per_km_cents: Option<f64>,
    pub cost_per_mile_cents: Option<f64>,
    pub savings_cents: Option<i64>,
    pub roi: Option<f64>,
}

pub const KM_PER_MILE: f64 = 1.609_344;

pub fn cost_figures(
    v: &VehiclePeriod,
    days_in_window: i64,
    maintenance_cents: i64,
    purchase_price_cents: Option<i64>,
    s: &AnalyticsSettings,
) -> CostFigures {
    let fuel = s
        .fuel_price_cents_per_l
        .map(|p| (v.fuel_used_l * p as f64).round() as i64);
    let depreciation = purchase_price_cents.map(|p| {
        (p as f64 / (s.depreciation_years * 365.25) * days_in_window as f64).round() as i64
    });
    let total = fuel.unwrap_or(0) + maintenance_cents + depreciation.unwrap_or(0);
    let meter = match (v.odometer_min_km, v.odometer_max_km) {
        (Some(lo), Some(hi)) if hi > lo => Some(round2(hi - lo)),
        _ => None,
    };
    let per_km = meter.and_then(|km| ratio(total as f64, km)).map(round2);
    let savings = s.rental_rate_cents_per_day.map(|r| r * v.days_used);
    let roi = savings.and_then(|sv| ratio((sv - total) as f64, total as f64));
    CostFigures {
        fuel_cents: fuel,
        maintenance_cents,
        depreciation_cents: depreciation,
        total_cents: total,
        meter_distance_km: meter,
        cost_per_km_cents: per_km,
        cost_per_mile_cents: per_km.map(|c| round2(c * KM_PER_MILE)),
        savings_cents: savings,
        roi,
    }
}

/// Engine-on hours by weekday (Monday = 0) and local hour.
pub fn heatmap(days: &[(i32, [i64; 24])]) -> [[f64; 24]; 7] {
    let mut ms = [[0i64; 24]; 7];
    for (day, hours) in days {
        let w = usize::from(super::weekday(*day));
        for (h, v) in hours.iter().enumerate() {
            ms[w][h] += v;
        }
    }
    let mut out = [[0.0; 24]; 7];
    for (w, row) in ms.iter().enumerate() {
        for (h, v) in row.iter().enumerate() {
            out[w][h] = round4(*v as f64 / 3_600_000.0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(days_with_data: i64, days_used: i64, hours: f64) -> VehiclePeriod {
        VehiclePeriod {
            days_with_data,
            days_used,
            engine_on_ms: (hours * 3_600_000.0) as i64,
            ..Default::default()
        }
    }

    #[test]
    fn utilization_divides_by_days_with_data_only() {
        let s = AnalyticsSettings::default();
        // 10-day window, 4 days with data, 2 used, 12 h on: 12 / (8 * 4) = 0.375.
        let a = v(4, 2, 12.0);
        let u = utilization(10, &[&a], &s);
        assert_eq!(u.days_no_data, 6);
        assert_eq!(u.hours_utilization, Some(0.375));
        assert_eq!(u.days_utilization, Some(0.5));
        let none = v(0, 0, 0.0);
        let u = utilization(10, &[&none], &s);
        assert_eq!((u.hours_utilization, u.days_utilization), (None, None));
    }

    #[test]
    fn a_day_is_used_only_above_the_threshold_and_never_without_data() {
        let s = AnalyticsSettings::default();
        assert_eq!(day_state(0, 0, &s), "no_data");
        assert_eq!(day_state(3, 30 * 60_000, &s), "unused");
        assert_eq!(day_state(3, 30 * 60_000 + 1, &s), "used");
    }

    #[test]
    fn cost_per_km_uses_the_meter_distance() {
        let s = AnalyticsSettings {
            fuel_price_cents_per_l: Some(180),
            depreciation_years: 5.0,
            rental_rate_cents_per_day: Some(10_000),
            ..Default::default()
        };
        let p = VehiclePeriod {
            fuel_used_l: 100.0,
            odometer_min_km: Some(1000.0),
            odometer_max_km: Some(1500.0),
            days_used: 5,
            ..Default::default()
        };
        // fuel 100 l * 180 = 18000; depreciation 3652500 / (5 * 365.25) * 10 = 20000;
        // maintenance 12000: total 50000 over 500 km = 100 cents/km; savings 50000, ROI 0.
        let c = cost_figures(&p, 10, 12_000, Some(3_652_500), &s);
        assert_eq!(c.fuel_cents, Some(18_000));
        assert_eq!(c.depreciation_cents, Some(20_000));
        assert_eq!(c.total_cents, 50_000);
        assert_eq!(c.cost_per_km_cents, Some(100.0));
        assert_eq!(c.cost_per_mile_cents, Some(160.93));
        assert_eq!(c.roi, Some(0.0));
    }

    #[test]
    fn heatmap_sums_hours_by_weekday() {
        let monday = crate::analytics::parse_day("2026-03-02").unwrap();
        let mut h = [0i64; 24];
        h[9] = 1_800_000;
        let m = heatmap(&[(monday, h), (monday + 7, h), (monday + 1, h)]);
        assert_eq!(m[0][9], 1.0);
        assert_eq!(m[1][9], 0.5);
        assert_eq!(m[2][9], 0.0);
    }

    #[test]
    fn settings_refuse_out_of_range_values() {
        let s = AnalyticsSettings {
            utc_offset_min: 900,
            ..Default::default()
        };
        assert!(s.validate().is_err());
        assert!(AnalyticsSettings::default().validate().is_ok());
    }
}
