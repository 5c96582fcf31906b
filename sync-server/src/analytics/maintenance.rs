//! Maintenance: when a service falls due, predicted from each vehicle's own
//! usage rate, and the alert rules (weakening cranking voltage, recurring
//! fault codes).

use serde::Serialize;

/// What a schedule asks for: a service every so many km, engine hours or days
/// (any that are set; the first reached is due).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub every_km: Option<f64>,
    pub every_engine_hours: Option<f64>,
    pub every_days: Option<i64>,
}

/// The vehicle's meters at its last service (or when it was first seen) and now,
/// and its usage per day over the recent window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Usage {
    pub last_service_day: i32,
    pub last_service_km: Option<f64>,
    pub last_service_hours: Option<f64>,
    pub today: i32,
    pub odometer_km: Option<f64>,
    pub engine_hours: Option<f64>,
    pub km_per_day: Option<f64>,
    pub hours_per_day: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Due {
    /// The predicted local day the service falls due, when any criterion can say.
    pub due_day: Option<i32>,
    /// `distance`, `engine_hours` or `time`: the criterion reached first.
    pub due_by: Option<&'static str>,
    pub km_left: Option<f64>,
    pub engine_hours_left: Option<f64>,
    pub days_left: Option<i64>,
    pub overdue: bool,
}

fn days_until(left: f64, per_day: Option<f64>) -> Option<i64> {
    if left <= 0.0 {
        return Some(0);
    }
    per_day
        .filter(|r| *r > 0.0)
        .map(|r| (left / r).ceil() as i64)
}

/// When the service falls due: for each criterion, what is left divided by the
/// vehicle's own rate per day; the earliest wins.
pub fn predict(i: &Interval, u: &Usage) -> Due {
    let mut best: Option<(i64, &'static str)> = None;
    let mut consider = |days: Option<i64>, by: &'static str| {
        if let Some(d) = days {
            if best.is_none_or(|(b, _)| d < b) {
                best = Some((d, by));
            }
        }
    };
    let km_left = match (i.every_km, u.odometer_km) {
        (Some(every), Some(now)) => Some(every - (now - u.last_service_km.unwrap_or(now))),
        _ => None,
    };
    if let Some(left) = km_left {
        consider(days_until(left, u.km_per_day), "distance");
    }
    let hours_left = match (i.every_engine_hours, u.engine_hours) {
        (Some(every), Some(now)) => Some(every - (now - u.last_service_hours.unwrap_or(now))),
        _ => None,
    };
    if let Some(left) = hours_left {
        consider(days_until(left, u.hours_per_day), "engine_hours");
    }
    let days_left = i
        .every_days
        .map(|every| every - i64::from(u.today - u.last_service_day));
    if let Some(left) = days_left {
        consider(Some(left.max(0)), "time");
    }
    let overdue = km_left.is_some_and(|l| l <= 0.0)
        || hours_left.is_some_and(|l| l <= 0.0)
        || days_left.is_some_and(|l| l <= 0);
    Due {
        due_day: best.map(|(d, _)| u.today + d as i32),
        due_by: best.map(|(_, by)| by),
        km_left: km_left.map(super::report::round2),
        engine_hours_left: hours_left.map(super::report::round2),
        days_left,
        overdue,
    }
}

/// Least-squares slope of the daily minimum cranking voltage, volts per day.
pub fn voltage_slope(points: &[(i32, f64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| f64::from(p.0)).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (f64::from(p.0) - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = points
        .iter()
        .map(|p| (f64::from(p.0) - mx) * (p.1 - my))
        .sum();
    Some(sxy / sxx)
}

/// A cranking voltage falling by this much per day or faster is weakening.
pub const WEAKENING_V_PER_DAY: f64 = -0.02;

/// Whether the daily minimum cranking voltages over the last weeks show a
/// battery getting weaker: at least three days and a slope of
/// [`WEAKENING_V_PER_DAY`] or steeper.
pub fn battery_weakening(points: &[(i32, f64)]) -> Option<f64> {
    voltage_slope(points).filter(|s| *s <= WEAKENING_V_PER_DAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_due_date_follows_the_vehicles_own_rate() {
        // Serviced at 10000 km, now 14000 km, every 5000 km: 1000 km left at
        // 100 km/day is 10 days. Every 180 days, 30 days since: 150 days left.
        let i = Interval {
            every_km: Some(5000.0),
            every_engine_hours: None,
            every_days: Some(180),
        };
        let u = Usage {
            last_service_day: 100,
            last_service_km: Some(10_000.0),
            today: 130,
            odometer_km: Some(14_000.0),
            km_per_day: Some(100.0),
            ..Default::default()
        };
        let d = predict(&i, &u);
        assert_eq!(d.due_day, Some(140));
        assert_eq!(d.due_by, Some("distance"));
        assert_eq!(d.km_left, Some(1000.0));
        assert_eq!(d.days_left, Some(150));
        assert!(!d.overdue);
        // A parked vehicle (no usage) falls due by time.
        let parked = Usage {
            km_per_day: Some(0.0),
            ..u
        };
        assert_eq!(predict(&i, &parked).due_by, Some("time"));
        // Past the distance: overdue, due today.
        let past = Usage {
            odometer_km: Some(15_500.0),
            ..u
        };
        let d = predict(&i, &past);
        assert!(d.overdue);
        assert_eq!(d.due_day, Some(130));
    }

    #[test]
    fn a_falling_cranking_voltage_is_weakening_and_a_steady_one_is_not() {
        let falling = [(1, 10.4), (5, 10.2), (9, 10.0), (13, 9.8)];
        assert!((battery_weakening(&falling).unwrap() + 0.05).abs() < 1e-9);
        let steady = [(1, 10.4), (5, 10.5), (9, 10.4)];
        assert_eq!(battery_weakening(&steady), None);
        assert_eq!(battery_weakening(&falling[..2]), None);
    }
}

/// An alert to raise: at most one open alert per vehicle, kind and key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewAlert {
    pub kind: &'static str,
    pub key: String,
    pub message: String,
    pub data: serde_json::Value,
}

pub fn parked_fuel_drop_alert(d: &super::rollup::ParkedFuelDrop) -> NewAlert {
    NewAlert {
        kind: "fuel_drop_parked",
        key: format!("seq:{}", d.seq),
        message: format!(
            "fuel level fell {:.1} points with the ignition off",
            d.drop_pct
        ),
        data: serde_json::json!({"seq": d.seq, "time_ms": d.time_ms, "drop_pct": d.drop_pct}),
    }
}

pub fn recurring_fault_alert(code: &str, count: i64, days: i64) -> NewAlert {
    NewAlert {
        kind: "recurring_fault",
        key: code.to_owned(),
        message: format!("fault {code} was set {count} times in {days} days"),
        data: serde_json::json!({"code": code, "count": count, "days": days}),
    }
}

pub fn battery_alert(slope_v_per_day: f64, points: &[(i32, f64)]) -> NewAlert {
    let last = points.iter().max_by_key(|p| p.0).map(|p| p.1);
    NewAlert {
        kind: "battery_weakening",
        key: "battery".to_owned(),
        message: format!(
            "cranking voltage is falling {:.3} V a day over {} days with weak cranks",
            -slope_v_per_day,
            points.len()
        ),
        data: serde_json::json!({
            "slope_v_per_day": super::report::round4(slope_v_per_day),
            "days": points.len(),
            "last_min_voltage_v": last,
        }),
    }
}

/// Days of daily cranking minima the battery trend looks back over.
pub const BATTERY_TREND_DAYS: i32 = 30;
