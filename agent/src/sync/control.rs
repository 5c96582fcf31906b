//! The device side of the control plane: pull the desired config the server
//! means for this device, check and keep it in the data directory, and report
//! the device's status (queue, disk, clock, hardware, applied config).
//!
//! A config is applied by writing `DATA/desired-config.json` atomically and
//! telling the daemon, which restarts the pipeline on the new rules; events from
//! then on carry the new version. What this device runs survives a restart: the
//! daemon reads the same file at start.

use crate::rules::{RulesConfig, SamplingPolicy};
use crate::store::StoreStats;
use fleet_protocol::control::{
    ConfigApplyError, ConfigOffer, DesiredConfig, HardwareStatus, StatusReport,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::watch;

pub const APPLIED_FILE: &str = "desired-config.json";
pub const GEOFENCE_FILE: &str = "desired-geofences.geojson";

/// The desired config this device runs, as kept in the data directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub version: u32,
    pub config: DesiredConfig,
}

#[derive(Debug, Error)]
pub enum ApplyError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the sync loop needs from the daemon to run the control plane.
#[derive(Clone)]
pub struct ControlLink {
    pub data_dir: PathBuf,
    /// The rules from the local config file, that a desired config overrides.
    pub base_rules: RulesConfig,
    /// Told the version each time a new config is kept.
    pub applied: watch::Sender<u32>,
    pub hardware: Arc<dyn Fn() -> HardwareStatus + Send + Sync>,
}

impl fmt::Debug for ControlLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlLink")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// The applied config in `data_dir`, if any. A damaged file counts as none (and
/// is reported): the server offers the version again.
pub fn load_applied(data_dir: &Path) -> Option<Applied> {
    let path = data_dir.join(APPLIED_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the applied config");
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the applied config does not parse; running without it");
            None
        }
    }
}

/// `base` with `desired` laid over it; the geofences go to `geofence_path`,
/// which the caller writes (see [`apply`]). Checks the result as
/// `fleet-agent validate` would, except for the geofence file itself.
pub fn overlay(
    base: &RulesConfig,
    desired: &DesiredConfig,
    geofence_path: &Path,
) -> Result<RulesConfig, ApplyError> {
    let problems = desired.problems();
    if !problems.is_empty() {
        return Err(ApplyError::Invalid(problems.join("; ")));
    }
    let mut rules = base.clone();
    for (name, policy) in &desired.sampling {
        let policy: SamplingPolicy = serde_json::to_value(policy)
            .and_then(serde_json::from_value)
            .map_err(|e| ApplyError::Invalid(format!("sampling.{name}: {e}")))?;
        let s = &mut rules.signals;
        let slot = match name.as_str() {
            "engine_speed_rpm" => &mut s.engine_speed_rpm,
            "wheel_speed_kmh" => &mut s.wheel_speed_kmh,
            "coolant_temp_c" => &mut s.coolant_temp_c,
            "fuel_level_pct" => &mut s.fuel_level_pct,
            "engine_hours_h" => &mut s.engine_hours_h,
            "odometer_km" => &mut s.odometer_km,
            "fuel_rate_lph" => &mut s.fuel_rate_lph,
            "fuel_used_l" => &mut s.fuel_used_l,
            "battery_v" => &mut s.battery_v,
            "accel_pedal_pct" => &mut s.accel_pedal_pct,
            "engine_load_pct" => &mut s.engine_load_pct,
            other => {
                return Err(ApplyError::Invalid(format!(
                    "sampling.{other}: this agent has no such signal"
                )))
            }
        };
        *slot = policy;
    }
    let t = &desired.thresholds;
    let set = |slot: &mut f64, v: Option<f64>| {
        if let Some(v) = v {
            *slot = v;
        }
    };
    set(
        &mut rules.harsh.acceleration_mps2,
        t.harsh_acceleration_mps2,
    );
    set(&mut rules.harsh.braking_mps2, t.harsh_braking_mps2);
    set(&mut rules.harsh.cornering_mps2, t.harsh_cornering_mps2);
    set(&mut rules.speeding.limit_kmh, t.speeding_limit_kmh);
    set(&mut rules.idle.after_s, t.idle_after_s);
    set(&mut rules.fuel_drop.drop_pct, t.fuel_drop_pct);
    set(&mut rules.battery.low_v, t.battery_low_v);
    set(&mut rules.geofences.hysteresis_m, t.geofence_hysteresis_m);
    if let Some(g) = &desired.geofences {
        crate::rules::GeofenceSet::parse(&g.to_string())
            .map_err(|e| ApplyError::Invalid(format!("geofences: {e}")))?;
        rules.geofences.file = Some(geofence_path.to_owned());
    }
    // The geofence file is checked above from the document; it may not be
    // written yet.
    let mut check = rules.clone();
    check.geofences.file = None;
    let problems = check.problems();
    if problems.is_empty() {
        Ok(rules)
    } else {
        Err(ApplyError::Invalid(problems.join("; ")))
    }
}

/// The rules to run: `base`, or `base` with the applied config over it. A config
/// that no longer applies (the local file changed under it) is ignored, loudly.
pub fn effective_rules(base: &RulesConfig, data_dir: &Path) -> (RulesConfig, Option<u32>) {
    let Some(applied) = load_applied(data_dir) else {
        return (base.clone(), None);
    };
    match overlay(base, &applied.config, &data_dir.join(GEOFENCE_FILE)) {
        Ok(rules) => (rules, Some(applied.version)),
        Err(e) => {
            tracing::warn!(version = applied.version, error = %e, "the applied config no longer applies to the local rules; running the local rules");
            (base.clone(), None)
        }
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ApplyError> {
    let io = |source| ApplyError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Checks an offered config against this agent and keeps it: the geofences
/// first, then the config file that names the version, so a crash in between
/// leaves the old version in force.
pub fn apply(link: &ControlLink, offer: &ConfigOffer) -> Result<(), ApplyError> {
    let geofences = link.data_dir.join(GEOFENCE_FILE);
    overlay(&link.base_rules, &offer.config, &geofences)?;
    if let Some(g) = &offer.config.geofences {
        write_atomic(&geofences, g.to_string().as_bytes())?;
    }
    let applied = Applied {
        version: offer.version,
        config: offer.config.clone(),
    };
    let bytes = serde_json::to_vec_pretty(&applied)
        .map_err(|e| ApplyError::Invalid(format!("cannot encode: {e}")))?;
    write_atomic(&link.data_dir.join(APPLIED_FILE), &bytes)?;
    link.applied.send_replace(offer.version);
    Ok(())
}

/// The report for the server.
pub fn status_report(
    stats: &StoreStats,
    applied_version: u32,
    config_error: Option<ConfigApplyError>,
    clock_offset_ms: Option<i64>,
    hardware: HardwareStatus,
) -> StatusReport {
    StatusReport {
        agent_version: env!("CARGO_PKG_VERSION").into(),
        queue_depth: stats.unacked_events,
        oldest_unsynced_ms: stats.oldest_unacked_wall_ms,
        disk_used_bytes: stats.db_bytes,
        disk_budget_bytes: stats.disk_budget_bytes,
        clock_offset_ms,
        evictions: stats.evicted_events,
        config_version: applied_version,
        config_error,
        hardware,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_protocol::control::Thresholds;
    use uuid::Uuid;

    fn offer(version: u32, braking: f64) -> ConfigOffer {
        ConfigOffer {
            group_id: Uuid::nil(),
            version,
            config: DesiredConfig {
                thresholds: Thresholds {
                    harsh_braking_mps2: Some(braking),
                    ..Default::default()
                },
                geofences: Some(
                    serde_json::json!({"type": "FeatureCollection", "features": [
                    {"type": "Feature", "id": "depot", "geometry": {"type": "Polygon",
                     "coordinates": [[[4,51],[5,51],[5,52],[4,51]]]}}]}),
                ),
                ..Default::default()
            },
            server_time_ms: 0,
        }
    }

    #[test]
    fn a_good_config_is_kept_and_read_back_over_the_local_rules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, rx) = watch::channel(0);
        let link = ControlLink {
            data_dir: dir.path().to_owned(),
            base_rules: RulesConfig::default(),
            applied: tx,
            hardware: Arc::new(HardwareStatus::default),
        };
        apply(&link, &offer(4, 5.0)).expect("applies");
        assert_eq!(*rx.borrow(), 4);
        let (rules, version) = effective_rules(&RulesConfig::default(), dir.path());
        assert_eq!(version, Some(4));
        assert_eq!(rules.harsh.braking_mps2, 5.0);
        assert_eq!(
            rules.geofences.file.as_deref(),
            Some(dir.path().join(GEOFENCE_FILE).as_path())
        );
        assert!(rules.problems().is_empty(), "{:?}", rules.problems());
    }

    #[test]
    fn a_config_the_rules_refuse_is_not_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, rx) = watch::channel(0);
        let link = ControlLink {
            data_dir: dir.path().to_owned(),
            base_rules: RulesConfig::default(),
            applied: tx,
            hardware: Arc::new(HardwareStatus::default),
        };
        // Above max_plausible_mps2: the protocol accepts it, the rules do not.
        let err = apply(&link, &offer(5, 15.0)).unwrap_err().to_string();
        assert!(err.contains("harsh.braking_mps2 15"), "{err}");
        assert_eq!(*rx.borrow(), 0);
        assert!(load_applied(dir.path()).is_none());
        assert_eq!(effective_rules(&RulesConfig::default(), dir.path()).1, None);
    }
}
