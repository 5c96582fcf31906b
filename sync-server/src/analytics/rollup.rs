//! Stored events folded into per-vehicle-per-day rollups.
//!
//! Every field of a [`DayRollup`] combines with [`DayRollup::merge`] by sums,
//! minimum, maximum or bitwise or, so the rollup of a set of events does not
//! depend on the batches they arrived in or their order. Ingest folds only
//! the events it newly stored, so a resent batch adds nothing.

use super::{local_day, local_ms, DAY_MS, HOUR_MS};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// A stored event as ingest hands it over: its seq, kind, its time on the
/// server's timeline and its data.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub seq: u64,
    pub kind: &'a str,
    pub time_ms: i64,
    pub data: &'a Value,
}

/// One vehicle's (device's) day.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DayRollup {
    pub events: i64,
    /// Bit h is set when some event fell in local hour h.
    pub covered_hours: i64,
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
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
    pub cranking_weak: i64,
    pub cranking_min_v: Option<f64>,
    pub battery_low: i64,
    /// Engine-on milliseconds in each local hour of the day.
    pub hour_use_ms: [i64; 24],
}

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn min_i(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn max_i(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl DayRollup {
    /// Adds `o` into `self`; commutative and associative.
    pub fn merge(&mut self, o: &DayRollup) {
        self.events += o.events;
        self.covered_hours |= o.covered_hours;
        self.first_ms = min_i(self.first_ms, o.first_ms);
        self.last_ms = max_i(self.last_ms, o.last_ms);
        self.engine_on_ms += o.engine_on_ms;
        self.driving_ms += o.driving_ms;
        self.idle_ms += o.idle_ms;
        self.trips += o.trips;
        self.distance_m += o.distance_m;
        self.fuel_used_l += o.fuel_used_l;
        self.harsh_acceleration += o.harsh_acceleration;
        self.harsh_braking += o.harsh_braking;
        self.harsh_cornering += o.harsh_cornering;
        self.speeding_ms += o.speeding_ms;
        self.dtc_set += o.dtc_set;
        self.fuel_drops += o.fuel_drops;
        self.parked_fuel_drops += o.parked_fuel_drops;
        self.refuels += o.refuels;
        self.odometer_min_km = min_opt(self.odometer_min_km, o.odometer_min_km);
        self.odometer_max_km = max_opt(self.odometer_max_km, o.odometer_max_km);
        self.engine_hours_min = min_opt(self.engine_hours_min, o.engine_hours_min);
        self.engine_hours_max = max_opt(self.engine_hours_max, o.engine_hours_max);
        self.cranking_weak += o.cranking_weak;
        self.cranking_min_v = min_opt(self.cranking_min_v, o.cranking_min_v);
        self.battery_low += o.battery_low;
        for (a, b) in self.hour_use_ms.iter_mut().zip(o.hour_use_ms.iter()) {
            *a += b;
        }
    }

    pub fn harsh_events(&self) -> i64 {
        self.harsh_acceleration + self.harsh_braking + self.harsh_cornering
    }
}

/// A finished trip, from its `trip_end` summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TripRow {
    pub end_seq: u64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub distance_m: f64,
    pub idle_ms: i64,
    pub fuel_used_l: Option<f64>,
    pub max_speed_kmh: Option<f64>,
    pub driving_events: i64,
}

/// A fuel drop reported while the ignition was off.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParkedFuelDrop {
    pub seq: u64,
    pub time_ms: i64,
    pub drop_pct: f64,
}

/// What a set of newly stored events adds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fold {
    pub days: BTreeMap<i32, DayRollup>,
    pub trips: Vec<TripRow>,
    /// (fault code, local day) → times it was set.
    pub faults: BTreeMap<(String, i32), i64>,
    /// Fuel level samples (time, percent), for [`refuels`].
    pub fuel_levels: Vec<(i64, f64)>,
    pub parked_fuel_drops: Vec<ParkedFuelDrop>,
    /// Some `cranking_weak` or `battery_low` event was folded.
    pub battery_events: bool,
}

/// A rise of at least this many percentage points between two fuel level
/// samples is a refuel.
pub const REFUEL_MIN_RISE_PCT: f64 = 10.0;

fn num(data: &Value, key: &str) -> Option<f64> {
    data.get(key)
        .and_then(Value::as_f64)
        .filter(|v| v.is_finite())
}

fn secs_ms(data: &Value, key: &str) -> i64 {
    num(data, key).map_or(0, |s| (s.max(0.0) * 1000.0).round() as i64)
}

/// A fault code's stable name: `SPN 520 FMI 3` for J1939, the code itself
/// (`P0301`) for OBD-II.
pub fn fault_code(data: &Value) -> String {
    if let (Some(spn), Some(fmi)) = (
        data.get("spn").and_then(Value::as_u64),
        data.get("fmi").and_then(Value::as_u64),
    ) {
        return format!("SPN {spn} FMI {fmi}");
    }
    match data.get("code").and_then(Value::as_str) {
        Some(c) if !c.is_empty() && c.len() <= 32 => c.to_owned(),
        _ => "unknown".to_owned(),
    }
}

impl Fold {
    fn day(&mut self, day: i32) -> &mut DayRollup {
        self.days.entry(day).or_default()
    }

    /// Calls `f(day, hour, ms)` for each local hour that `start..end` touches.
    fn spread(start: i64, end: i64, off: i32, mut f: impl FnMut(i32, usize, i64)) {
        let mut t = start;
        while t < end {
            let local = local_ms(t, off);
            let next_hour = local.div_euclid(HOUR_MS) * HOUR_MS + HOUR_MS;
            let seg_end = end.min(t + (next_hour - local));
            let day = local.div_euclid(DAY_MS) as i32;
            let hour = (local.rem_euclid(DAY_MS) / HOUR_MS) as usize;
            f(day, hour, seg_end - t);
            t = seg_end;
        }
    }

    /// Engine-on time over `start..end`, `on_ms` of its `end - start`, spread
    /// over days and hours in proportion; `also` gets each day's share (in
    /// parts of the whole interval) for the fields that go with it.
    fn engine_on(
        &mut self,
        start: i64,
        end: i64,
        on_ms: i64,
        off: i32,
        mut also: impl FnMut(&mut DayRollup, i64, i64),
    ) {
        let total = end - start;
        if total <= 0 {
            return;
        }
        let mut cum = 0i64;
        let mut segments = Vec::new();
        Self::spread(start, end, off, |day, hour, ms| {
            // Cumulative rounding: the shares add up to `on_ms` exactly.
            let before = (i128::from(cum) * i128::from(on_ms) / i128::from(total)) as i64;
            cum += ms;
            let after = (i128::from(cum) * i128::from(on_ms) / i128::from(total)) as i64;
            segments.push((day, hour, ms, after - before));
        });
        for (day, hour, ms, share) in segments {
            let d = self.day(day);
            d.engine_on_ms += share;
            d.hour_use_ms[hour] += share;
            also(d, share, ms);
        }
    }

    fn meters(&mut self, day: i32, data: &Value) {
        let d = self.day(day);
        for key in ["odometer_km", "odometer_end_km"] {
            if let Some(v) = num(data, key).filter(|v| *v >= 0.0) {
                d.odometer_min_km = min_opt(d.odometer_min_km, Some(v));
                d.odometer_max_km = max_opt(d.odometer_max_km, Some(v));
            }
        }
        if let Some(v) = num(data, "engine_hours_h").filter(|v| *v >= 0.0) {
            d.engine_hours_min = min_opt(d.engine_hours_min, Some(v));
            d.engine_hours_max = max_opt(d.engine_hours_max, Some(v));
        }
    }

    fn add(&mut self, e: &Observed<'_>, off: i32) {
        let day = local_day(e.time_ms, off);
        let hour = (local_ms(e.time_ms, off).rem_euclid(DAY_MS) / HOUR_MS) as u32;
        {
            let d = self.day(day);
            d.events += 1;
            d.covered_hours |= 1 << hour;
            d.first_ms = min_i(d.first_ms, Some(e.time_ms));
            d.last_ms = max_i(d.last_ms, Some(e.time_ms));
        }
        self.meters(day, e.data);
        let data = e.data;
        match e.kind {
            "trip_end" => {
                let duration = secs_ms(data, "duration_s");
                let idle = secs_ms(data, "idle_s").min(duration);
                let distance = num(data, "distance_m").unwrap_or(0.0).max(0.0);
                let fuel = num(data, "fuel_used_l").filter(|f| *f >= 0.0);
                let start = e.time_ms - duration;
                let driving = duration - idle;
                let total = duration.max(1) as f64;
                self.engine_on(start, e.time_ms, driving, off, |d, share, ms| {
                    d.driving_ms += share;
                    d.distance_m += distance * ms as f64 / total;
                    d.fuel_used_l += fuel.unwrap_or(0.0) * ms as f64 / total;
                });
                if duration == 0 {
                    let d = self.day(day);
                    d.distance_m += distance;
                    d.fuel_used_l += fuel.unwrap_or(0.0);
                }
                self.day(day).trips += 1;
                self.trips.push(TripRow {
                    end_seq: e.seq,
                    start_ms: start,
                    end_ms: e.time_ms,
                    distance_m: distance,
                    idle_ms: idle,
                    fuel_used_l: fuel,
                    max_speed_kmh: num(data, "max_speed_kmh"),
                    driving_events: data
                        .get("driving_events")
                        .and_then(Value::as_i64)
                        .unwrap_or(0),
                });
            }
            "idle" => {
                let duration = secs_ms(data, "duration_s");
                self.engine_on(
                    e.time_ms - duration,
                    e.time_ms,
                    duration,
                    off,
                    |d, share, _| {
                        d.idle_ms += share;
                    },
                );
            }
            "harsh_acceleration" => self.day(day).harsh_acceleration += 1,
            "harsh_braking" => self.day(day).harsh_braking += 1,
            "harsh_cornering" => self.day(day).harsh_cornering += 1,
            "speeding" => self.day(day).speeding_ms += secs_ms(data, "duration_s"),
            "dtc_set" => {
                self.day(day).dtc_set += 1;
                *self.faults.entry((fault_code(data), day)).or_default() += 1;
            }
            "fuel_drop" => {
                let d = self.day(day);
                d.fuel_drops += 1;
                if data.get("ignition").and_then(Value::as_bool) == Some(false) {
                    d.parked_fuel_drops += 1;
                    self.parked_fuel_drops.push(ParkedFuelDrop {
                        seq: e.seq,
                        time_ms: e.time_ms,
                        drop_pct: num(data, "drop_pct").unwrap_or(0.0),
                    });
                }
            }
            "cranking_weak" => {
                let d = self.day(day);
                d.cranking_weak += 1;
                d.cranking_min_v = min_opt(d.cranking_min_v, num(data, "min_voltage_v"));
                self.battery_events = true;
            }
            "battery_low" => {
                self.day(day).battery_low += 1;
                self.battery_events = true;
            }
            "signal" => {
                if let Some(level) = num(data, "fuel_level_pct") {
                    self.fuel_levels.push((e.time_ms, level));
                }
            }
            _ => {}
        }
    }
}

static NO_DATA: Value = Value::Null;

/// Ingest's newly stored events with their server-timeline times, as
/// [`Observed`]: positions carry no data the rollups read.
pub fn observed<'a>(stored: &'a [(&'a fleet_protocol::Event, i64)]) -> Vec<Observed<'a>> {
    stored
        .iter()
        .map(|(e, time_ms)| Observed {
            seq: e.seq,
            kind: e.kind.as_str(),
            time_ms: *time_ms,
            data: match &e.data {
                fleet_protocol::EventData::Json(v) => v,
                _ => &NO_DATA,
            },
        })
        .collect()
}

/// Folds newly stored events into per-day deltas, trips and fault days.
pub fn fold(events: &[Observed<'_>], utc_offset_min: i32) -> Fold {
    let mut out = Fold::default();
    for e in events {
        out.add(e, utc_offset_min);
    }
    out
}

/// Refuels among fuel level samples: a rise of [`REFUEL_MIN_RISE_PCT`] or more
/// over the previous sample. `prev` is the newest sample already known;
/// samples older than it are ignored (the level has moved on). Returns the
/// refuel times and the new newest sample.
pub fn refuels(prev: Option<(i64, f64)>, samples: &[(i64, f64)]) -> (Vec<i64>, Option<(i64, f64)>) {
    let mut sorted: Vec<(i64, f64)> = samples
        .iter()
        .copied()
        .filter(|(t, _)| prev.is_none_or(|(p, _)| *t > p))
        .collect();
    sorted.sort_by_key(|s| s.0);
    let mut last = prev;
    let mut out = Vec::new();
    for s in sorted {
        if let Some((_, level)) = last {
            if s.1 - level >= REFUEL_MIN_RISE_PCT {
                out.push(s.0);
            }
        }
        last = Some(s);
    }
    (out, last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: i64 = 1_772_409_600_000; // 2026-03-02T00:00:00Z, a Monday

    fn ev<'a>(seq: u64, kind: &'a str, time_ms: i64, data: &'a Value) -> Observed<'a> {
        Observed {
            seq,
            kind,
            time_ms,
            data,
        }
    }

    #[test]
    fn a_trip_over_midnight_is_split_between_its_days_by_time() {
        // 23:30 to 00:30 local, 600 s of it idle: 3000 s driving split 1500/1500.
        let data = json!({"duration_s": 3600.0, "idle_s": 600.0, "distance_m": 40000.0, "fuel_used_l": 4.0});
        let end = T0 + 30 * 60_000;
        let f = fold(&[ev(7, "trip_end", end, &data)], 0);
        let before = &f.days[&(local_day(T0, 0) - 1)];
        let after = &f.days[&local_day(T0, 0)];
        assert_eq!(before.driving_ms, 1_500_000);
        assert_eq!(after.driving_ms, 1_500_000);
        assert_eq!(before.hour_use_ms[23], 1_500_000);
        assert_eq!(after.hour_use_ms[0], 1_500_000);
        assert!((before.distance_m - 20_000.0).abs() < 1e-6);
        assert!((after.fuel_used_l - 2.0).abs() < 1e-9);
        assert_eq!((before.trips, after.trips), (0, 1));
        assert_eq!(f.trips[0].start_ms, T0 - 30 * 60_000);
    }

    #[test]
    fn merging_in_any_order_gives_the_same_day() {
        let a = json!({"duration_s": 900.0});
        let b = json!({"spn": 520, "fmi": 3});
        let c = json!({"odometer_km": 1200.5});
        let d = json!({"odometer_km": 1180.0, "engine_hours_h": 300.0});
        let events = [
            ev(1, "idle", T0 + 3_600_000, &a),
            ev(2, "dtc_set", T0 + 7_200_000, &b),
            ev(3, "odometer", T0 + 9_000_000, &c),
            ev(4, "ignition_off", T0 + 1_000, &d),
        ];
        let mut whole = DayRollup::default();
        for x in fold(&events, 0).days.values() {
            whole.merge(x);
        }
        let mut parts = DayRollup::default();
        for e in events.iter().rev() {
            for x in fold(std::slice::from_ref(e), 0).days.values() {
                parts.merge(x);
            }
        }
        assert_eq!(whole, parts);
        assert_eq!(whole.events, 4);
        assert_eq!(whole.idle_ms, 900_000);
        assert_eq!(whole.engine_on_ms, 900_000);
        assert_eq!(whole.odometer_min_km, Some(1180.0));
        assert_eq!(whole.odometer_max_km, Some(1200.5));
        assert_eq!(whole.covered_hours, 0b111);
    }

    #[test]
    fn a_fuel_drop_with_the_ignition_off_is_a_parked_drop() {
        let parked = json!({"drop_pct": 12.5, "ignition": false});
        let driving = json!({"drop_pct": 8.0, "ignition": true});
        let f = fold(
            &[
                ev(1, "fuel_drop", T0, &parked),
                ev(2, "fuel_drop", T0 + 1, &driving),
            ],
            0,
        );
        let d = &f.days[&local_day(T0, 0)];
        assert_eq!((d.fuel_drops, d.parked_fuel_drops), (2, 1));
        assert_eq!(f.parked_fuel_drops[0].seq, 1);
    }

    #[test]
    fn refuels_are_rises_of_ten_points_after_the_newest_known_level() {
        let (r, last) = refuels(
            Some((100, 20.0)),
            &[(300, 85.0), (50, 5.0), (200, 18.0), (400, 90.0)],
        );
        assert_eq!(r, vec![300]);
        assert_eq!(last, Some((400, 90.0)));
        let (r, _) = refuels(None, &[(1, 30.0)]);
        assert!(r.is_empty());
    }

    #[test]
    fn fault_codes_are_named_by_spn_and_fmi_or_by_their_code() {
        assert_eq!(fault_code(&json!({"spn": 100, "fmi": 1})), "SPN 100 FMI 1");
        assert_eq!(fault_code(&json!({"code": "P0301"})), "P0301");
        assert_eq!(fault_code(&json!({})), "unknown");
    }
}
