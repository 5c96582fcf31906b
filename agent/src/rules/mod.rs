//! Rules: turn decoded signals into the few events a fleet needs. Pure and
//! versioned: [`RULES_VERSION`] changes whenever the same input would give
//! different events, and every trip summary names the version that made it.

pub mod engine;
pub mod fuel;
pub mod geofence;
pub mod harsh;
pub mod meters;
pub mod power;
pub mod sampling;
pub mod speeding;
pub mod thinning;
pub mod trip;

use serde::{Deserialize, Serialize};

pub use engine::{ActiveDtc, Engine, RuleEvent, Signal};
pub use geofence::{Geofence, GeofenceError, GeofenceSet};
pub use sampling::{Sampler, SamplingPolicy};
pub use thinning::PositionThinner;
pub use trip::{TripAccumulator, TripSample, TripSummary};

/// Bumped whenever the same input would produce different events.
/// 3: harsh driving, speeding, geofences, fuel drops, battery and cranking,
/// meter readings; ignition from bus activity; trips from wheel speed alone.
pub const RULES_VERSION: u32 = 3;

/// The `[rules]` section of the agent config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    pub positions: PositionRules,
    pub trips: TripRules,
    pub idle: IdleRules,
    pub ignition: IgnitionRules,
    pub signals: SignalRules,
    pub harsh: HarshRules,
    pub speeding: SpeedingRules,
    pub geofences: GeofenceRules,
    pub fuel_drop: FuelDropRules,
    pub battery: BatteryRules,
    pub meters: MeterRules,
}

impl RulesConfig {
    /// What is wrong with these rules, one line each, for `fleet-agent validate`;
    /// reads and parses the geofence file.
    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        let mut positive = |name: &str, v: f64| {
            if !(v.is_finite() && v > 0.0) {
                errs.push(format!("rules.{name} {v} must be above 0"));
            }
        };
        let p = &self.positions;
        positive("positions.tolerance_m", p.tolerance_m);
        positive("positions.max_gap_moving_s", p.max_gap_moving_s);
        let t = &self.trips;
        positive("trips.start_speed_kmh", t.start_speed_kmh);
        positive("trips.stop_speed_kmh", t.stop_speed_kmh);
        let h = &self.harsh;
        positive("harsh.acceleration_mps2", h.acceleration_mps2);
        positive("harsh.braking_mps2", h.braking_mps2);
        positive("harsh.cornering_mps2", h.cornering_mps2);
        positive("harsh.max_plausible_mps2", h.max_plausible_mps2);
        positive("fuel_drop.drop_pct", self.fuel_drop.drop_pct);
        positive("fuel_drop.within_min", self.fuel_drop.within_min);
        positive("fuel_drop.smoothing_s", self.fuel_drop.smoothing_s);
        positive("battery.low_v", self.battery.low_v);
        positive("battery.cranking_weak_v", self.battery.cranking_weak_v);
        positive("meters.every_h", self.meters.every_h);
        positive("meters.max_speed_kmh", self.meters.max_speed_kmh);
        if t.stop_speed_kmh > t.start_speed_kmh {
            errs.push(format!(
                "rules.trips.stop_speed_kmh {} is above start_speed_kmh {}: a trip would end as it starts",
                t.stop_speed_kmh, t.start_speed_kmh
            ));
        }
        if !(h.release_ratio > 0.0 && h.release_ratio <= 1.0) {
            errs.push(format!(
                "rules.harsh.release_ratio {} must be within (0, 1]",
                h.release_ratio
            ));
        }
        for (name, v) in [
            ("harsh.acceleration_mps2", h.acceleration_mps2),
            ("harsh.braking_mps2", h.braking_mps2),
            ("harsh.cornering_mps2", h.cornering_mps2),
        ] {
            if v >= h.max_plausible_mps2 {
                errs.push(format!(
                    "rules.{name} {v} is not below harsh.max_plausible_mps2 {}: it could never fire",
                    h.max_plausible_mps2
                ));
            }
        }
        let s = &self.speeding;
        if s.limit_kmh < 0.0 || s.tolerance_kmh < 0.0 || s.hysteresis_kmh < 0.0 {
            errs.push("rules.speeding limit_kmh, tolerance_kmh and hysteresis_kmh must not be negative (limit_kmh = 0 turns speeding off)".into());
        }
        if self.geofences.hysteresis_m < 0.0 {
            errs.push("rules.geofences.hysteresis_m must not be negative".into());
        }
        if let Some(file) = &self.geofences.file {
            if let Err(e) = GeofenceSet::load(file) {
                errs.push(format!("rules.geofences.file: {e}"));
            }
        }
        if self.meters.rebase_after == 0 {
            errs.push("rules.meters.rebase_after must be at least 1".into());
        }
        errs
    }
}

/// `[rules.positions]`: GPS curve thinning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PositionRules {
    /// A dropped fix lies at most this far from the line through the kept ones.
    pub tolerance_m: f64,
    /// While moving, keep a fix at least this often (a live map wants ~10 s).
    pub max_gap_moving_s: f64,
    /// While stationary with the ignition on (idling, waiting at a light), keep a
    /// fix at least this often: a heartbeat that keeps a live map fresh.
    pub max_gap_stopped_s: f64,
    /// While stationary with the ignition off, keep a fix at least this often.
    pub max_gap_parked_s: f64,
}

impl Default for PositionRules {
    fn default() -> Self {
        Self {
            tolerance_m: 12.0,
            max_gap_moving_s: 10.0,
            max_gap_stopped_s: 30.0,
            max_gap_parked_s: 3_600.0,
        }
    }
}

/// `[rules.trips]`: when a trip starts and ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TripRules {
    /// A trip starts once the vehicle has moved faster than this...
    pub start_speed_kmh: f64,
    /// ...for this long.
    pub start_after_s: f64,
    /// A trip ends once the vehicle has been slower than this...
    pub stop_speed_kmh: f64,
    /// ...for this long, or at once when the ignition goes off (if `use_ignition`).
    pub stop_after_s: f64,
    pub use_ignition: bool,
}

impl Default for TripRules {
    fn default() -> Self {
        Self {
            start_speed_kmh: 8.0,
            start_after_s: 5.0,
            stop_speed_kmh: 3.0,
            stop_after_s: 180.0,
            use_ignition: true,
        }
    }
}

/// `[rules.idle]`: engine running while stationary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdleRules {
    pub after_s: f64,
    pub max_speed_kmh: f64,
}

impl Default for IdleRules {
    fn default() -> Self {
        Self {
            after_s: 180.0,
            max_speed_kmh: 2.0,
        }
    }
}

/// Where the ignition state comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IgnitionSource {
    /// The ignition sense wire when one reports, otherwise engine speed.
    Auto,
    Wire,
    EngineSpeed,
}

/// `[rules.ignition]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IgnitionRules {
    pub source: IgnitionSource,
    /// Engine speed above which the engine counts as running.
    pub engine_on_rpm: f64,
    /// Without engine-speed readings for this long (or three of their usual
    /// intervals, for slowly polled OBD adapters), the engine counts as off.
    pub silence_off_s: f64,
    /// With no wire and no engine speed on the bus, a bus busier than this many
    /// frames per second counts as ignition on (ECUs only talk when powered).
    pub bus_active_fps: f64,
}

impl Default for IgnitionRules {
    fn default() -> Self {
        Self {
            source: IgnitionSource::Auto,
            engine_on_rpm: 300.0,
            silence_off_s: 5.0,
            bus_active_fps: 5.0,
        }
    }
}

/// `[rules.harsh]`: harsh acceleration, braking and cornering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HarshRules {
    /// Forward acceleration above this is harsh, m/s².
    pub acceleration_mps2: f64,
    /// Deceleration above this is harsh, m/s² (a positive number).
    pub braking_mps2: f64,
    /// Sideways acceleration above this is harsh, m/s².
    pub cornering_mps2: f64,
    /// An episode must stay above its threshold this long to count.
    pub min_duration_s: f64,
    /// An episode ends once the value falls below this share of the threshold.
    pub release_ratio: f64,
    /// GPS speed changes faster than this are receiver glitches, not driving.
    pub max_plausible_mps2: f64,
    /// Below this speed the GPS course is too noisy to turn into a yaw rate, m/s.
    pub cornering_min_speed_mps: f64,
}

impl Default for HarshRules {
    fn default() -> Self {
        Self {
            acceleration_mps2: 3.0,
            braking_mps2: 3.5,
            cornering_mps2: 4.0,
            // Two 1 Hz fixes in a row: one fix alone is too easily noise.
            min_duration_s: 1.5,
            release_ratio: 0.7,
            max_plausible_mps2: 12.0,
            cornering_min_speed_mps: 5.0,
        }
    }
}

/// `[rules.speeding]`: one event per episode above a configured limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpeedingRules {
    /// 0 turns speeding events off.
    pub limit_kmh: f64,
    /// An episode starts above `limit_kmh + tolerance_kmh`...
    pub tolerance_kmh: f64,
    /// ...and lasts until the speed is back under `limit_kmh + tolerance_kmh - hysteresis_kmh`.
    pub hysteresis_kmh: f64,
    /// Shorter episodes (overtaking, a speedometer blip) are not reported.
    pub min_duration_s: f64,
}

impl Default for SpeedingRules {
    fn default() -> Self {
        Self {
            limit_kmh: 90.0,
            tolerance_kmh: 5.0,
            hysteresis_kmh: 5.0,
            min_duration_s: 10.0,
        }
    }
}

/// `[rules.geofences]`: polygons from a local GeoJSON file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeofenceRules {
    /// A GeoJSON FeatureCollection of Polygon and MultiPolygon features.
    pub file: Option<std::path::PathBuf>,
    /// A vehicle counts as inside only this far past the border, and as outside
    /// only this far beyond it, so GPS noise along a fence makes no events, m.
    pub hysteresis_m: f64,
}

impl Default for GeofenceRules {
    fn default() -> Self {
        Self {
            file: None,
            hysteresis_m: 15.0,
        }
    }
}

/// `[rules.fuel_drop]`: fuel level falling while the vehicle stands (theft).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FuelDropRules {
    /// A drop of more than this many percent of the tank...
    pub drop_pct: f64,
    /// ...within this many minutes, while stationary, is an event.
    pub within_min: f64,
    /// Level readings are smoothed with a median over this window against slosh.
    pub smoothing_s: f64,
}

impl Default for FuelDropRules {
    fn default() -> Self {
        Self {
            drop_pct: 5.0,
            within_min: 30.0,
            smoothing_s: 60.0,
        }
    }
}

/// `[rules.battery]`: thresholds for a 12 V system; a 24 V system (detected from
/// its first readings) uses twice these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatteryRules {
    /// With the ignition off, below this...
    pub low_v: f64,
    /// ...for this long is a low-battery event.
    pub low_after_s: f64,
    /// Re-armed once the voltage is back above `low_v + recover_v`.
    pub recover_v: f64,
    /// The lowest voltage while the starter turns below this is weak cranking.
    pub cranking_weak_v: f64,
}

impl Default for BatteryRules {
    fn default() -> Self {
        Self {
            low_v: 11.8,
            low_after_s: 300.0,
            recover_v: 0.4,
            cranking_weak_v: 9.6,
        }
    }
}

/// `[rules.meters]`: odometer and engine-hours readings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeterRules {
    /// Besides every trip end, record the meters at least this often.
    pub every_h: f64,
    /// Faster than this, an odometer step is a glitch, km/h.
    pub max_speed_kmh: f64,
    /// A reading that goes backwards or jumps is ignored, unless this many
    /// consecutive readings agree with it (a replaced or reset ECU).
    pub rebase_after: u32,
}

impl Default for MeterRules {
    fn default() -> Self {
        Self {
            every_h: 24.0,
            max_speed_kmh: 200.0,
            rebase_after: 10,
        }
    }
}

/// `[rules.signals]`: a sampling policy per signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalRules {
    pub engine_speed_rpm: SamplingPolicy,
    pub wheel_speed_kmh: SamplingPolicy,
    pub coolant_temp_c: SamplingPolicy,
    pub fuel_level_pct: SamplingPolicy,
    pub engine_hours_h: SamplingPolicy,
    pub odometer_km: SamplingPolicy,
    pub fuel_rate_lph: SamplingPolicy,
    pub fuel_used_l: SamplingPolicy,
    pub battery_v: SamplingPolicy,
    pub accel_pedal_pct: SamplingPolicy,
    pub engine_load_pct: SamplingPolicy,
}

impl Default for SignalRules {
    fn default() -> Self {
        let change =
            |deadband: f64, min_period_s: f64, max_period_s: f64| SamplingPolicy::OnChange {
                deadband,
                min_period_s,
                max_period_s,
            };
        Self {
            engine_speed_rpm: change(300.0, 30.0, 900.0),
            wheel_speed_kmh: SamplingPolicy::Off,
            coolant_temp_c: change(3.0, 60.0, 900.0),
            fuel_level_pct: change(2.0, 60.0, 900.0),
            engine_hours_h: SamplingPolicy::Interval { period_s: 900.0 },
            odometer_km: SamplingPolicy::Interval { period_s: 900.0 },
            fuel_rate_lph: SamplingPolicy::Off,
            fuel_used_l: SamplingPolicy::Interval { period_s: 900.0 },
            battery_v: change(0.5, 60.0, 900.0),
            accel_pedal_pct: SamplingPolicy::Off,
            engine_load_pct: SamplingPolicy::Off,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_section_reads_partial_toml_and_rejects_unknown_keys() {
        let cfg: RulesConfig = toml::from_str(
            "[trips]\nstop_after_s = 60\n[signals.coolant_temp_c]\nmode = \"interval\"\nperiod_s = 30\n",
        )
        .expect("valid");
        assert_eq!(cfg.trips.stop_after_s, 60.0);
        assert_eq!(
            cfg.trips.start_speed_kmh,
            TripRules::default().start_speed_kmh
        );
        assert_eq!(
            cfg.signals.coolant_temp_c,
            SamplingPolicy::Interval { period_s: 30.0 }
        );
        let err = toml::from_str::<RulesConfig>("[trips]\nstop_after = 60\n").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn defaults_are_valid_and_bad_values_and_geofence_files_are_named() {
        assert_eq!(RulesConfig::default().problems(), Vec::<String>::new());
        let dir = tempfile::tempdir().expect("tempdir");
        let fences = dir.path().join("fences.geojson");
        std::fs::write(&fences, r#"{"type":"FeatureCollection","features":[{"type":"Feature",
            "id":"depot","geometry":{"type":"Polygon","coordinates":[[[4,51],[5,51],[5,52],[4,51]]]}}]}"#)
            .expect("write");
        let cfg: RulesConfig = toml::from_str(&format!(
            "[harsh]\nbraking_mps2 = 15\n[trips]\nstop_speed_kmh = 20\n[geofences]\nfile = {:?}\n",
            fences.display().to_string()
        ))
        .expect("parses");
        let problems = cfg.problems().join("\n");
        assert!(problems.contains("harsh.braking_mps2 15"), "{problems}");
        assert!(problems.contains("stop_speed_kmh 20"), "{problems}");
        assert!(!problems.contains("geofences"), "a good file: {problems}");
        std::fs::write(&fences, "{\"type\":\"Feature\"}").expect("write");
        let problems = cfg.problems().join("\n");
        assert!(
            problems.contains("rules.geofences.file: geofence 0: a feature without a geometry"),
            "{problems}"
        );
    }
}
