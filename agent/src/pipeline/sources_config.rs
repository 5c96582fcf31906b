//! The `[sources]` section: which inputs the pipeline runs. Any combination may be
//! configured; each runs as its own task.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use super::SimulatorConfig;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesConfig {
    /// Used when the agent runs with `--simulate`.
    pub simulator: SimulatorConfig,
    /// A SocketCAN interface (feature `socketcan`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can: Option<CanConfig>,
    /// A candump `-l` log replayed as the CAN bus.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candump: Option<ReplayConfig>,
    /// An NMEA log replayed as the GNSS receiver.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nmea_file: Option<ReplayConfig>,
    /// A live GNSS receiver: NMEA on a serial port, or gpsd.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gnss: Option<GnssConfig>,
    /// An ELM327 OBD-II adapter, polled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elm327: Option<Elm327SourceConfig>,
    /// The ignition sense wire on a GPIO pin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignition: Option<IgnitionConfig>,
    /// Stop the agent once every replay has reached its end (and no live source is
    /// configured): for replaying a recorded drive, tests and benchmarks.
    pub exit_at_end: bool,
}

/// `[sources.can]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CanConfig {
    /// `can0`, `vcan0`.
    pub interface: String,
    /// A DBC file for signals beyond J1939.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dbc: Option<PathBuf>,
    /// Also record every frame to this candump `-l` file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_to: Option<PathBuf>,
}

/// `[sources.candump]` and `[sources.nmea_file]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayConfig {
    pub file: PathBuf,
    /// 1.0 is the pace of the recording, N is N times faster, 0 as fast as possible.
    #[serde(default = "one")]
    pub speed: f64,
}

fn one() -> f64 {
    1.0
}

/// `[sources.gnss]`: exactly one of `serial` and `gpsd`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GnssConfig {
    /// A receiver speaking NMEA on a serial port: `/dev/ttyUSB0`, `/dev/serial0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default = "default_gnss_baud")]
    pub baud: u32,
    /// gpsd's address, `127.0.0.1:2947`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpsd: Option<String>,
}

fn default_gnss_baud() -> u32 {
    9_600
}

/// `[sources.elm327]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Elm327SourceConfig {
    pub port: String,
    #[serde(default = "default_elm_baud")]
    pub baud: u32,
    /// PIDs by hex number or name; empty means every supported one the rules use.
    #[serde(default)]
    pub pids: Vec<String>,
    /// One round of PID requests this often.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Stored and pending DTCs are read this often.
    #[serde(default = "default_dtc_interval_s")]
    pub dtc_interval_s: u64,
}

fn default_elm_baud() -> u32 {
    38_400
}

fn default_interval_ms() -> u64 {
    1_000
}

fn default_dtc_interval_s() -> u64 {
    60
}

/// `[sources.ignition]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IgnitionConfig {
    /// BCM pin number.
    pub gpio: u8,
    #[serde(default)]
    pub active_low: bool,
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u64,
}

fn default_debounce_ms() -> u64 {
    200
}

impl SourcesConfig {
    /// Problems with the configured sources, one per entry.
    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        for (name, r) in [("candump", &self.candump), ("nmea_file", &self.nmea_file)] {
            if let Some(r) = r {
                if !r.speed.is_finite() || r.speed < 0.0 {
                    errs.push(format!(
                        "sources.{name}.speed must be 0 (as fast as possible) or positive, got {}",
                        r.speed
                    ));
                }
                if r.file.as_os_str().is_empty() {
                    errs.push(format!("sources.{name}.file must not be empty"));
                }
            }
        }
        if let Some(c) = &self.can {
            if c.interface.is_empty() || c.interface.len() > 15 {
                errs.push(format!(
                    "sources.can.interface {:?} is not an interface name",
                    c.interface
                ));
            }
            if !cfg!(feature = "socketcan") {
                errs.push(
                    "sources.can: this fleet-agent was built without the `socketcan` feature"
                        .into(),
                );
            }
        }
        if let Some(g) = &self.gnss {
            match (&g.serial, &g.gpsd) {
                (Some(_), Some(_)) | (None, None) => {
                    errs.push("sources.gnss needs exactly one of `serial` and `gpsd`".into())
                }
                (Some(_), None) if !cfg!(feature = "serial") => errs.push(
                    "sources.gnss.serial: this fleet-agent was built without the `serial` feature"
                        .into(),
                ),
                _ => {}
            }
            if g.baud == 0 {
                errs.push("sources.gnss.baud must be positive".into());
            }
        }
        if let Some(e) = &self.elm327 {
            if !cfg!(feature = "serial") {
                errs.push(
                    "sources.elm327: this fleet-agent was built without the `serial` feature"
                        .into(),
                );
            }
            if let Err(bad) = crate::decode::elm327::parse_pid_list(&e.pids) {
                errs.push(format!("sources.elm327.pids: {bad}"));
            }
            if e.interval_ms < 100 {
                errs.push("sources.elm327.interval_ms must be at least 100".into());
            }
            if e.baud == 0 {
                errs.push("sources.elm327.baud must be positive".into());
            }
        }
        if let Some(i) = &self.ignition {
            if !cfg!(feature = "rpi") {
                errs.push(format!(
                    "sources.ignition (GPIO {}): this fleet-agent was built without the `rpi` feature",
                    i.gpio
                ));
            }
            if i.gpio > 53 {
                errs.push(format!("sources.ignition.gpio {} is not a BCM pin", i.gpio));
            }
        }
        errs
    }

    /// Whether a source other than replays is configured.
    pub fn has_live_sources(&self) -> bool {
        self.can.is_some()
            || self.gnss.is_some()
            || self.elm327.is_some()
            || self.ignition.is_some()
    }
}
