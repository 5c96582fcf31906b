//! Trip summaries that do not depend on the order their data arrives in.
//!
//! Every sample carries the span of time it stands for, and the accumulator only
//! combines samples with operations that commute (integer sums, minimum,
//! maximum), so any permutation of the same samples gives the same summary.

use serde::Serialize;

/// One observation during a trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TripSample {
    pub mono_ms: u64,
    /// The span of time this sample stands for.
    pub span_ms: u32,
    pub speed_cms: u32,
    pub lat_e7: Option<i32>,
    pub lon_e7: Option<i32>,
    /// Engine running while stationary.
    pub idle: bool,
    /// Vehicle odometer, metres, when the bus reports it.
    pub odometer_m: Option<u64>,
    /// Engine total fuel used, millilitres, when the bus reports it.
    pub fuel_total_ml: Option<u64>,
    /// Fuel rate, millilitres per hour.
    pub fuel_rate_mlph: Option<u32>,
}

type Place = (u64, i32, i32);

/// A commutative fold over trip samples.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TripAccumulator {
    first_ms: Option<u64>,
    last_ms: Option<u64>,
    start: Option<Place>,
    end: Option<Place>,
    travelled_mm: u64,
    idle_ms: u64,
    max_speed_cms: u32,
    odometer_m: Option<(u64, u64)>,
    fuel_total_ml: Option<(u64, u64)>,
    /// Microlitres: per-sample millilitres would round an idling engine's
    /// two millilitres a second down by half.
    fuel_rate_ul: u64,
    events: u32,
}

fn widen(range: Option<(u64, u64)>, v: u64) -> Option<(u64, u64)> {
    Some(range.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlaceSummary {
    pub lat: f64,
    pub lon: f64,
    pub mono_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TripSummary {
    pub rules_version: u32,
    pub start_mono_ms: u64,
    pub end_mono_ms: u64,
    pub duration_s: f64,
    pub distance_m: f64,
    /// `odometer` when the bus reported distance, `speed` when integrated.
    pub distance_source: &'static str,
    pub idle_s: f64,
    pub fuel_used_l: Option<f64>,
    pub max_speed_kmh: f64,
    pub start: Option<PlaceSummary>,
    pub end: Option<PlaceSummary>,
    /// The vehicle's odometer at the end of the trip, when the bus reports it.
    pub odometer_end_km: Option<f64>,
    /// Harsh-driving and speeding events during the trip.
    pub driving_events: u32,
}

/// Below this much fuel-counter movement (its resolution is 0.5 L), the
/// integrated fuel rate is the better measure.
const FUEL_COUNTER_MIN_ML: u64 = 5_000;

impl TripAccumulator {
    pub fn add(&mut self, s: &TripSample) {
        self.first_ms = Some(self.first_ms.map_or(s.mono_ms, |t| t.min(s.mono_ms)));
        self.last_ms = Some(self.last_ms.map_or(s.mono_ms, |t| t.max(s.mono_ms)));
        if let (Some(lat), Some(lon)) = (s.lat_e7, s.lon_e7) {
            let place = (s.mono_ms, lat, lon);
            self.start = Some(self.start.map_or(place, |p| p.min(place)));
            self.end = Some(self.end.map_or(place, |p| p.max(place)));
        }
        self.travelled_mm += u64::from(s.speed_cms) * u64::from(s.span_ms) / 100;
        if s.idle {
            self.idle_ms += u64::from(s.span_ms);
        }
        self.max_speed_cms = self.max_speed_cms.max(s.speed_cms);
        if let Some(o) = s.odometer_m {
            self.odometer_m = widen(self.odometer_m, o);
        }
        if let Some(f) = s.fuel_total_ml {
            self.fuel_total_ml = widen(self.fuel_total_ml, f);
        }
        if let Some(r) = s.fuel_rate_mlph {
            self.fuel_rate_ul += u64::from(r) * u64::from(s.span_ms) / 3_600;
        }
    }

    /// A harsh-driving or speeding event happened during the trip.
    pub fn add_event(&mut self) {
        self.events += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.first_ms.is_none()
    }

    pub fn summary(&self) -> TripSummary {
        let first = self.first_ms.unwrap_or(0);
        let last = self.last_ms.unwrap_or(first);
        let (distance_m, distance_source) = match self.odometer_m {
            Some((lo, hi)) if hi > lo => ((hi - lo) as f64, "odometer"),
            _ => (self.travelled_mm as f64 / 1000.0, "speed"),
        };
        let fuel_used_l = match self.fuel_total_ml {
            Some((lo, hi)) if hi - lo >= FUEL_COUNTER_MIN_ML => Some((hi - lo) as f64 / 1000.0),
            _ if self.fuel_rate_ul > 0 => {
                Some((self.fuel_rate_ul as f64 / 1000.0).round() / 1000.0)
            }
            _ => None,
        };
        let place = |p: Option<Place>| {
            p.map(|(t, lat, lon)| PlaceSummary {
                lat: f64::from(lat) / 1e7,
                lon: f64::from(lon) / 1e7,
                mono_ms: t,
            })
        };
        TripSummary {
            rules_version: super::RULES_VERSION,
            start_mono_ms: first,
            end_mono_ms: last,
            duration_s: (last - first) as f64 / 1000.0,
            distance_m,
            distance_source,
            idle_s: self.idle_ms as f64 / 1000.0,
            fuel_used_l,
            max_speed_kmh: f64::from(self.max_speed_cms) * 0.036,
            start: place(self.start),
            end: place(self.end),
            odometer_end_km: self.odometer_m.map(|(_, hi)| hi as f64 / 1000.0),
            driving_events: self.events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> impl Strategy<Value = TripSample> {
        (
            0u64..10_000_000,
            0u32..5_000,
            0u32..4_000,
            proptest::option::of((
                -900_000_000i32..900_000_000,
                -1_800_000_000i32..1_800_000_000,
            )),
            any::<bool>(),
            proptest::option::of(0u64..1_000_000_000),
            proptest::option::of(0u64..1_000_000_000),
            proptest::option::of(0u32..100_000_000),
        )
            .prop_map(|(t, span, v, place, idle, odo, fuel, rate)| TripSample {
                mono_ms: t,
                span_ms: span,
                speed_cms: v,
                lat_e7: place.map(|p| p.0),
                lon_e7: place.map(|p| p.1),
                idle,
                odometer_m: odo,
                fuel_total_ml: fuel,
                fuel_rate_mlph: rate,
            })
    }

    proptest! {
        #[test]
        fn trip_summary_does_not_depend_on_arrival_order(
            (samples, shuffled) in proptest::collection::vec(sample(), 1..80)
                .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle()))
        ) {
            let mut a = TripAccumulator::default();
            samples.iter().for_each(|s| a.add(s));
            let mut b = TripAccumulator::default();
            shuffled.iter().for_each(|s| b.add(s));
            prop_assert_eq!(a.summary(), b.summary());
        }
    }

    #[test]
    fn summary_prefers_the_odometer_and_counts_idle_time() {
        let mut acc = TripAccumulator::default();
        for i in 0..600u64 {
            acc.add(&TripSample {
                mono_ms: i * 1000,
                span_ms: 1000,
                speed_cms: if i < 60 { 0 } else { 1_000 },
                lat_e7: Some(519_000_000 + i as i32),
                lon_e7: Some(44_000_000),
                idle: i < 60,
                odometer_m: Some(100_000 + i * 10),
                fuel_total_ml: Some(2_000_000 + i * 10),
                fuel_rate_mlph: Some(20_000),
            });
        }
        let s = acc.summary();
        assert_eq!(s.distance_m, 5_990.0);
        assert_eq!(s.distance_source, "odometer");
        assert_eq!(s.idle_s, 60.0);
        assert_eq!(s.duration_s, 599.0);
        assert_eq!(s.fuel_used_l, Some(5.99));
        assert!((s.max_speed_kmh - 36.0).abs() < 1e-9);
        assert_eq!(s.start.expect("start").mono_ms, 0);
        assert_eq!(s.end.expect("end").mono_ms, 599_000);
    }
}
