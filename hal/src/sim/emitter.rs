//! What a simulated vehicle's hardware puts out, whatever drives it: the GNSS
//! receiver's RMC and GGA once a UTC second, and the J1939 parameter groups at
//! their periods while the ignition is on, DM1 over BAM when it is long.

use super::j1939::{self, Dtc};
use super::nmea::{self, GnssFix};
use super::{FramePeriods, SimOutput, STEP_MS};
use crate::can::CanFrame;

/// The values the ECUs report at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct EcuState {
    pub rpm: f64,
    pub load: f64,
    pub pedal: f64,
    pub speed_mps: f64,
    pub braking: bool,
    pub coolant: f64,
    pub fuel_level_pct: f64,
    pub engine_h: f64,
    pub odometer_m: f64,
    pub fuel_used_l: f64,
    pub battery: f64,
}

impl EcuState {
    fn fuel_rate(&self) -> f64 {
        if self.rpm > 300.0 {
            2.6 + self.load * 0.38
        } else {
            0.0
        }
    }
}

/// When each source is next due, and transport packets scheduled for later.
#[derive(Debug, Clone)]
pub(crate) struct Emitter {
    periods: FramePeriods,
    next_due: [u64; 5],
    next_fix_ms: i64,
    pending: Vec<CanFrame>,
}

impl Emitter {
    pub fn new(periods: FramePeriods, start_ms: u64) -> Self {
        Self {
            periods,
            next_due: [start_ms; 5],
            next_fix_ms: 0,
            pending: Vec::new(),
        }
    }

    /// A fix, when one is due at `now` (wall clock `now + wall_offset_ms`):
    /// `fix` is asked for it with the UTC second it stands for.
    pub fn gnss(
        &mut self,
        now: u64,
        wall_offset_ms: i64,
        fix: impl FnOnce(i64) -> GnssFix,
        out: &mut Vec<SimOutput>,
    ) {
        let wall = now as i64 + wall_offset_ms;
        if wall < self.next_fix_ms {
            return;
        }
        self.next_fix_ms = wall - wall.rem_euclid(1000) + 1000;
        let f = fix(wall - wall.rem_euclid(1000));
        out.push(SimOutput::Nmea(nmea::rmc(&f), now * 1000));
        out.push(SimOutput::Nmea(nmea::gga(&f), now * 1000));
    }

    /// The frames due at `now`; nothing (and nothing kept) with the ignition off.
    pub fn bus(
        &mut self,
        now: u64,
        ignition: bool,
        ecu: &EcuState,
        dtcs: &[Dtc],
        out: &mut Vec<SimOutput>,
    ) {
        if !ignition {
            self.pending.clear();
            return;
        }
        let t_us = now * 1000;
        let p = self.periods;
        let kmh = ecu.speed_mps * 3.6;
        let periods = [p.eec1, p.eec2, p.ccvs1, p.lfe, p.slow];
        for (k, period) in periods.iter().enumerate() {
            if now < self.next_due[k] {
                continue;
            }
            self.next_due[k] = now + period;
            // Several frames of one period fall into one physics step at high rates.
            let repeats = (STEP_MS / period).max(1);
            for r in 0..repeats {
                let t = t_us - (repeats - 1 - r) * period * 1000;
                match k {
                    0 => out.push(SimOutput::Can(j1939::eec1(ecu.rpm, ecu.load, t))),
                    1 => out.push(SimOutput::Can(j1939::eec2(ecu.pedal, ecu.load, t))),
                    2 => out.push(SimOutput::Can(j1939::ccvs1(kmh, ecu.braking, t))),
                    3 => out.push(SimOutput::Can(j1939::lfe(ecu.fuel_rate(), t))),
                    _ => self.slow(ecu, dtcs, t),
                }
            }
        }
        // Slow groups and transport packets, some of them scheduled in earlier steps.
        for f in self.pending.iter() {
            if f.timestamp_us <= t_us {
                out.push(SimOutput::Can(*f));
            }
        }
        self.pending.retain(|f| f.timestamp_us > t_us);
    }

    fn slow(&mut self, ecu: &EcuState, dtcs: &[Dtc], t: u64) {
        self.pending.extend_from_slice(&[
            j1939::et1(ecu.coolant, t),
            j1939::dd(ecu.fuel_level_pct, t),
            j1939::hours(ecu.engine_h, t),
            j1939::vd(ecu.odometer_m / 1000.0, t),
            j1939::vdhr(ecu.odometer_m, t),
            j1939::lfc(ecu.fuel_used_l, t),
            j1939::vep1(ecu.battery, t),
        ]);
        let lamps = if dtcs.is_empty() { 0x00 } else { 0x04 };
        let payload = j1939::dm1_payload(lamps, dtcs);
        self.pending.extend(j1939::broadcast(
            6,
            j1939::PGN_DM1,
            j1939::SA_ENGINE,
            &payload,
            t,
            50_000,
        ));
    }
}
