//! The device control plane on the wire: the status a device reports after its
//! sync rounds, and the desired configuration a device group rolls out.
//!
//! [`DesiredConfig`] is the one schema both sides check: the server validates an
//! upload with [`DesiredConfig::problems`] before storing it, and the agent checks
//! the same document again before applying it, so a config the server accepted
//! is one the agent can take.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// `POST`: a signed [`StatusReport`]; answered with [`StatusAck`].
pub const PATH_STATUS: &str = "/sync/v1/status";
/// `GET ?have=N`: a signed request for the config meant for this device;
/// [`ConfigOffer`], or 204 when the device already has that version.
pub const PATH_CONFIG: &str = "/sync/v1/config";

/// Largest desired-config document accepted, in bytes of JSON.
pub const MAX_CONFIG_BYTES: usize = 256 << 10;

/// What a device knows about itself, sent after a sync round.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusReport {
    pub agent_version: String,
    /// Events recorded but not yet acknowledged by the server.
    pub queue_depth: u64,
    /// Wall-clock estimate of the oldest unacknowledged event.
    pub oldest_unsynced_ms: Option<i64>,
    pub disk_used_bytes: u64,
    pub disk_budget_bytes: u64,
    /// Server time minus the device's wall clock, when the server's time is known.
    pub clock_offset_ms: Option<i64>,
    /// Unacknowledged events deleted to stay within the disk budget, ever.
    pub evictions: u64,
    /// The desired-config version the device runs; 0 for none.
    pub config_version: u32,
    /// The last version the device refused or could not apply, and why.
    pub config_error: Option<ConfigApplyError>,
    pub hardware: HardwareStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigApplyError {
    pub version: u32,
    pub message: String,
}

/// What the device found; `None` where it has no such hardware configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareStatus {
    pub can_up: Option<bool>,
    pub gps_fix: Option<bool>,
    pub camera: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusAck {
    pub server_time_ms: i64,
}

/// The config version meant for a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigOffer {
    pub group_id: Uuid,
    pub version: u32,
    pub config: DesiredConfig,
    pub server_time_ms: i64,
}

/// Signals a sampling policy may name (the agent's `[rules.signals]`).
pub const SIGNALS: &[&str] = &[
    "engine_speed_rpm",
    "wheel_speed_kmh",
    "coolant_temp_c",
    "fuel_level_pct",
    "engine_hours_h",
    "odometer_km",
    "fuel_rate_lph",
    "fuel_used_l",
    "battery_v",
    "accel_pedal_pct",
    "engine_load_pct",
];

/// The desired configuration of a device group. Every section is optional: what
/// is absent keeps the device's local setting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredConfig {
    /// Per signal (one of [`SIGNALS`]), the same shape as the agent's
    /// `[rules.signals.NAME]`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sampling: BTreeMap<String, SamplingPolicy>,
    #[serde(default)]
    pub thresholds: Thresholds,
    /// A GeoJSON FeatureCollection of Polygon and MultiPolygon features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geofences: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kiosk: Option<KioskPolicy>,
}

/// The agent's `SamplingPolicy`, in the same serde shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum SamplingPolicy {
    Off,
    Interval {
        period_s: f64,
    },
    OnChange {
        deadband: f64,
        min_period_s: f64,
        max_period_s: f64,
    },
}

/// Rule thresholds, each overriding the agent's `[rules]` value of that name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harsh_acceleration_mps2: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harsh_braking_mps2: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harsh_cornering_mps2: Option<f64>,
    /// 0 turns speeding events off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speeding_limit_kmh: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_after_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel_drop_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_low_v: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geofence_hysteresis_m: Option<f64>,
}

/// How a yard kiosk of the group behaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KioskPolicy {
    /// Hand out a key only against a reservation.
    #[serde(default)]
    pub require_reservation: bool,
    /// Allow check-outs while the kiosk has no network.
    #[serde(default = "yes")]
    pub allow_offline_checkout: bool,
    /// A check-out longer than this is overdue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_checkout_hours: Option<u32>,
}

fn yes() -> bool {
    true
}

impl DesiredConfig {
    /// Parses and checks a document; the error lists every problem.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Vec<String>> {
        let cfg: DesiredConfig = serde_json::from_slice(bytes).map_err(|e| vec![e.to_string()])?;
        let problems = cfg.problems();
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(problems)
        }
    }

    /// What is wrong with this config, one line each; empty when nothing is.
    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        for (name, policy) in &self.sampling {
            if !SIGNALS.contains(&name.as_str()) {
                errs.push(format!(
                    "sampling.{name}: unknown signal; known: {}",
                    SIGNALS.join(", ")
                ));
            }
            match policy {
                SamplingPolicy::Off => {}
                SamplingPolicy::Interval { period_s } => {
                    positive(&mut errs, &format!("sampling.{name}.period_s"), *period_s)
                }
                SamplingPolicy::OnChange {
                    deadband,
                    min_period_s,
                    max_period_s,
                } => {
                    if !(deadband.is_finite() && *deadband >= 0.0) {
                        errs.push(format!(
                            "sampling.{name}.deadband {deadband} must be 0 or more"
                        ));
                    }
                    positive(
                        &mut errs,
                        &format!("sampling.{name}.min_period_s"),
                        *min_period_s,
                    );
                    positive(
                        &mut errs,
                        &format!("sampling.{name}.max_period_s"),
                        *max_period_s,
                    );
                    if min_period_s > max_period_s {
                        errs.push(format!(
                            "sampling.{name}.min_period_s {min_period_s} is above max_period_s {max_period_s}"
                        ));
                    }
                }
            }
        }
        let t = &self.thresholds;
        for (name, v) in [
            ("harsh_acceleration_mps2", t.harsh_acceleration_mps2),
            ("harsh_braking_mps2", t.harsh_braking_mps2),
            ("harsh_cornering_mps2", t.harsh_cornering_mps2),
            ("idle_after_s", t.idle_after_s),
            ("fuel_drop_pct", t.fuel_drop_pct),
            ("battery_low_v", t.battery_low_v),
        ] {
            if let Some(v) = v {
                positive(&mut errs, &format!("thresholds.{name}"), v);
            }
        }
        for (name, v) in [
            ("speeding_limit_kmh", t.speeding_limit_kmh),
            ("geofence_hysteresis_m", t.geofence_hysteresis_m),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v >= 0.0) {
                    errs.push(format!("thresholds.{name} {v} must be 0 or more"));
                }
            }
        }
        if let Some(pct) = t.fuel_drop_pct {
            if pct > 100.0 {
                errs.push(format!("thresholds.fuel_drop_pct {pct} is above 100"));
            }
        }
        if let Some(g) = &self.geofences {
            geofence_problems(g, &mut errs);
        }
        if let Some(k) = &self.kiosk {
            if k.max_checkout_hours == Some(0) {
                errs.push("kiosk.max_checkout_hours must be at least 1".into());
            }
        }
        errs
    }
}

fn positive(errs: &mut Vec<String>, name: &str, v: f64) {
    if !(v.is_finite() && v > 0.0) {
        errs.push(format!("{name} {v} must be above 0"));
    }
}

/// Geofences the agent can load: a FeatureCollection of polygons with closed
/// rings of at least four [lon, lat] positions inside the WGS84 range.
fn geofence_problems(g: &serde_json::Value, errs: &mut Vec<String>) {
    use serde_json::Value;
    if g.get("type").and_then(Value::as_str) != Some("FeatureCollection") {
        errs.push("geofences must be a GeoJSON FeatureCollection".into());
        return;
    }
    let Some(features) = g.get("features").and_then(Value::as_array) else {
        errs.push("geofences.features must be an array".into());
        return;
    };
    for (i, f) in features.iter().enumerate() {
        let at = format!("geofences.features[{i}]");
        let Some(geometry) = f.get("geometry").filter(|g| !g.is_null()) else {
            errs.push(format!("{at}: a feature without a geometry"));
            continue;
        };
        let coords = geometry.get("coordinates");
        let polygons: Vec<&Value> = match geometry.get("type").and_then(Value::as_str) {
            Some("Polygon") => coords.into_iter().collect(),
            Some("MultiPolygon") => coords
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default(),
            other => {
                errs.push(format!(
                    "{at}: geometry {} is not a Polygon or MultiPolygon",
                    other.unwrap_or("without a type")
                ));
                continue;
            }
        };
        if polygons.is_empty() {
            errs.push(format!("{at}: no polygons"));
        }
        for rings in polygons {
            let Some(rings) = rings.as_array().filter(|r| !r.is_empty()) else {
                errs.push(format!("{at}: a polygon needs at least one ring"));
                continue;
            };
            for ring in rings {
                if let Err(e) = check_ring(ring) {
                    errs.push(format!("{at}: {e}"));
                }
            }
        }
    }
}

fn check_ring(ring: &serde_json::Value) -> Result<(), String> {
    let points = ring.as_array().ok_or("a ring must be an array")?;
    if points.len() < 4 {
        return Err("a ring needs at least 4 positions".into());
    }
    let mut parsed = Vec::with_capacity(points.len());
    for p in points {
        let xy = p
            .as_array()
            .filter(|a| a.len() >= 2)
            .and_then(|a| Some((a[0].as_f64()?, a[1].as_f64()?)))
            .ok_or("a position must be [lon, lat]")?;
        if !(-180.0..=180.0).contains(&xy.0) || !(-90.0..=90.0).contains(&xy.1) {
            return Err(format!("position [{}, {}] is out of range", xy.0, xy.1));
        }
        parsed.push(xy);
    }
    if parsed.first() != parsed.last() {
        return Err("a ring must end where it starts".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_config_round_trips_and_is_valid() {
        let json = br#"{
            "sampling": {"coolant_temp_c": {"mode": "interval", "period_s": 30}},
            "thresholds": {"harsh_braking_mps2": 4.0, "speeding_limit_kmh": 80},
            "geofences": {"type": "FeatureCollection", "features": [{"type": "Feature", "id": "depot",
                "geometry": {"type": "Polygon", "coordinates": [[[4,51],[5,51],[5,52],[4,51]]]}}]},
            "kiosk": {"require_reservation": true, "max_checkout_hours": 12}
        }"#;
        let cfg = DesiredConfig::from_json(json).expect("valid");
        assert_eq!(cfg.thresholds.harsh_braking_mps2, Some(4.0));
        let kiosk = cfg.kiosk.as_ref().expect("kiosk");
        assert!(kiosk.allow_offline_checkout);
        let again = serde_json::to_vec(&cfg).expect("encodes");
        assert_eq!(DesiredConfig::from_json(&again).expect("valid"), cfg);
    }

    #[test]
    fn every_problem_is_named() {
        let json = br#"{
            "sampling": {"warp_factor": {"mode": "off"},
                         "battery_v": {"mode": "on_change", "deadband": 0.1, "min_period_s": 90, "max_period_s": 60}},
            "thresholds": {"harsh_braking_mps2": -1, "fuel_drop_pct": 150},
            "geofences": {"type": "FeatureCollection", "features": [
                {"type": "Feature", "geometry": {"type": "Point", "coordinates": [4, 51]}},
                {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[4,51],[5,51],[5,52],[4,52]]]}}]},
            "kiosk": {"max_checkout_hours": 0}
        }"#;
        let errs = DesiredConfig::from_json(json).unwrap_err().join("\n");
        for needle in [
            "sampling.warp_factor: unknown signal",
            "sampling.battery_v.min_period_s 90 is above max_period_s 60",
            "thresholds.harsh_braking_mps2 -1 must be above 0",
            "thresholds.fuel_drop_pct 150 is above 100",
            "features[0]: geometry Point is not a Polygon",
            "features[1]: a ring must end where it starts",
            "kiosk.max_checkout_hours",
        ] {
            assert!(errs.contains(needle), "{needle} missing from:\n{errs}");
        }
    }

    #[test]
    fn unknown_sections_and_status_fields_are_refused() {
        let errs = DesiredConfig::from_json(br#"{"firmware": "x"}"#).unwrap_err();
        assert!(errs[0].contains("unknown field"), "{errs:?}");
        let bad = serde_json::from_str::<StatusReport>(
            r#"{"agent_version":"1","queue_depth":0,"oldest_unsynced_ms":null,"disk_used_bytes":0,
               "disk_budget_bytes":0,"clock_offset_ms":null,"evictions":0,"config_version":0,
               "config_error":null,"hardware":{"can_up":null,"gps_fix":null,"camera":null},"x":1}"#,
        );
        assert!(bad.is_err());
    }
}
