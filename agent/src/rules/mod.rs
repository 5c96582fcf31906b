//! Rules: turn decoded signals into the few events a fleet needs. Pure and
//! versioned: [`RULES_VERSION`] changes whenever the same input would give
//! different events, and every trip summary names the version that made it.

pub mod engine;
pub mod sampling;
pub mod thinning;
pub mod trip;

use serde::{Deserialize, Serialize};

pub use engine::{ActiveDtc, Engine, RuleEvent, Signal};
pub use sampling::{Sampler, SamplingPolicy};
pub use thinning::PositionThinner;
pub use trip::{TripAccumulator, TripSample, TripSummary};

/// Bumped whenever the same input would produce different events.
pub const RULES_VERSION: u32 = 2;

/// The `[rules]` section of the agent config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    pub positions: PositionRules,
    pub trips: TripRules,
    pub idle: IdleRules,
    pub ignition: IgnitionRules,
    pub signals: SignalRules,
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
    /// Without engine-speed frames for this long, the engine counts as off.
    pub silence_off_s: f64,
}

impl Default for IgnitionRules {
    fn default() -> Self {
        Self {
            source: IgnitionSource::Auto,
            engine_on_rpm: 300.0,
            silence_off_s: 5.0,
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
}
