//! Ignition-off shutdown for gateways on a hold-up supply: once the ignition has
//! been off for `[power] ignition_off_stop_s`, the agent stops the way it does on
//! SIGTERM (pipeline, sync, a final flush) and then runs the configured power-off
//! command, well before the supply's capacitor or timer cuts the power.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// `[power]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PowerConfig {
    /// Stop this many seconds after the ignition goes off; 0 never does. Keep it
    /// below the hold-up time of the supply, less the ~10 s a stop may take.
    pub ignition_off_stop_s: u64,
    /// Run after the stop, e.g. `["/usr/bin/systemctl", "poweroff"]`. Empty: the
    /// agent just exits and the supply cuts the power.
    pub poweroff_command: Vec<String>,
}

impl PowerConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if let Some(program) = self.poweroff_command.first() {
            if !Path::new(program).is_absolute() {
                errs.push(format!(
                    "power.poweroff_command must start with an absolute path, got {program:?}"
                ));
            }
            if self.ignition_off_stop_s == 0 {
                errs.push(
                    "power.poweroff_command is set but power.ignition_off_stop_s is 0, so it would never run"
                        .into(),
                );
            }
        }
        errs
    }
}

/// Decides when the ignition has been off long enough. It arms only once the
/// ignition has been seen on in this run, so a box that boots with the key off
/// (on the bench, or a kiosk with no ignition at all) never powers itself down.
#[derive(Debug, Clone)]
pub struct HoldUp {
    after_ms: u64,
    armed: bool,
    off_since_ms: Option<u64>,
}

impl HoldUp {
    pub fn new(after_s: u64) -> Self {
        Self {
            after_ms: after_s.saturating_mul(1000),
            armed: false,
            off_since_ms: None,
        }
    }

    /// The ignition level at `now_ms`; true once it is time to stop.
    pub fn observe(&mut self, ignition_on: bool, now_ms: u64) -> bool {
        if self.after_ms == 0 {
            return false;
        }
        if ignition_on {
            self.armed = true;
            self.off_since_ms = None;
            return false;
        }
        if !self.armed {
            return false;
        }
        let since = *self.off_since_ms.get_or_insert(now_ms);
        now_ms.saturating_sub(since) >= self.after_ms
    }
}

/// Runs the power-off command once the store is closed. Its failure is logged:
/// the data is safe either way.
pub async fn power_off(command: &[String]) {
    let Some((program, args)) = command.split_first() else {
        return;
    };
    tracing::warn!(command = ?command, "powering off after the ignition-off hold-up");
    match tokio::process::Command::new(program)
        .args(args)
        .status()
        .await
    {
        Ok(status) if status.success() => {}
        Ok(status) => tracing::error!(%status, command = ?command, "the power-off command failed"),
        Err(e) => {
            tracing::error!(error = %e, command = ?command, "cannot run the power-off command")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_only_after_the_ignition_has_been_off_for_the_hold_up() {
        let mut h = HoldUp::new(30);
        assert!(!h.observe(true, 0));
        assert!(!h.observe(false, 1_000));
        assert!(!h.observe(false, 30_999));
        assert!(h.observe(false, 31_000));
    }

    #[test]
    fn ignition_back_on_restarts_the_wait() {
        let mut h = HoldUp::new(30);
        h.observe(true, 0);
        h.observe(false, 1_000);
        h.observe(true, 20_000);
        assert!(!h.observe(false, 25_000));
        assert!(!h.observe(false, 54_999));
        assert!(h.observe(false, 55_000));
    }

    #[test]
    fn a_box_that_never_saw_the_ignition_on_never_stops() {
        let mut h = HoldUp::new(1);
        assert!(!h.observe(false, 0));
        assert!(!h.observe(false, 3_600_000));
    }

    #[test]
    fn zero_hold_up_means_never() {
        let mut h = HoldUp::new(0);
        h.observe(true, 0);
        assert!(!h.observe(false, u64::MAX));
    }

    #[test]
    fn a_relative_or_orphan_power_off_command_is_refused() {
        let relative = PowerConfig {
            ignition_off_stop_s: 60,
            poweroff_command: vec!["systemctl".into(), "poweroff".into()],
        };
        assert_eq!(relative.problems().len(), 1);
        let orphan = PowerConfig {
            ignition_off_stop_s: 0,
            poweroff_command: vec!["/usr/bin/systemctl".into(), "poweroff".into()],
        };
        assert_eq!(orphan.problems().len(), 1);
        let good = PowerConfig {
            ignition_off_stop_s: 60,
            poweroff_command: vec!["/usr/bin/systemctl".into(), "poweroff".into()],
        };
        assert!(good.problems().is_empty());
    }
}
