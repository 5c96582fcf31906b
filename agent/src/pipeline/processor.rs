//! The pure middle of the pipeline: decoders feeding the rules engine.

use crate::decode::j1939::{Decoded, J1939Decoder, SpnReading, SpnValue};
use crate::decode::nmea::{Fix, FixAssembler};
use crate::rules::{ActiveDtc, Engine, RuleEvent, RulesConfig, Signal};
use fleet_hal::CanFrame;
use fleet_protocol::Position;

/// What the decoders saw and skipped, for health reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProcessorStats {
    pub can_frames: u64,
    pub nmea_lines: u64,
    pub nmea_bad: u64,
    pub fixes: u64,
    pub tp_completed: u64,
    pub tp_dropped: u64,
}

pub struct Processor {
    engine: Engine,
    j1939: J1939Decoder,
    nmea: FixAssembler,
    /// Once the high-resolution odometer (SPN 917) reports, the coarse one (245)
    /// is ignored so the two never alternate.
    hires_odometer: bool,
    can_frames: u64,
    fixes: u64,
}

fn signal_for(spn: u32) -> Option<(Signal, f64)> {
    Some(match spn {
        190 => (Signal::EngineSpeedRpm, 1.0),
        84 => (Signal::WheelSpeedKmh, 1.0),
        110 => (Signal::CoolantTempC, 1.0),
        96 => (Signal::FuelLevelPct, 1.0),
        247 => (Signal::EngineHoursH, 1.0),
        245 => (Signal::OdometerKm, 1.0),
        917 => (Signal::OdometerKm, 0.001),
        183 => (Signal::FuelRateLph, 1.0),
        250 => (Signal::FuelUsedL, 1.0),
        168 => (Signal::BatteryV, 1.0),
        91 => (Signal::AccelPedalPct, 1.0),
        92 => (Signal::EngineLoadPct, 1.0),
        _ => return None,
    })
}

/// A decoded fix in the event schema's integer units.
pub fn position_of(f: &Fix) -> Position {
    Position {
        lat_e7: (f.lat * 1e7).round() as i32,
        lon_e7: (f.lon * 1e7).round() as i32,
        alt_dm: f.alt_m.map(|a| (a * 10.0).round() as i32),
        speed_cms: f.speed_mps.map(|s| (s.max(0.0) * 100.0).round() as u32),
        heading_cdeg: f
            .course_deg
            .map(|c| ((c.rem_euclid(360.0) * 100.0).round() as u16).min(35_999)),
        hdop_d: f
            .hdop
            .map(|h| (h * 10.0).round().clamp(0.0, 65_535.0) as u16),
        sats: f.sats,
        fix: f.quality,
    }
}

impl Processor {
    pub fn new(rules: RulesConfig) -> Self {
        Self {
            engine: Engine::new(rules),
            j1939: J1939Decoder::new(),
            nmea: FixAssembler::new(),
            hires_odometer: false,
            can_frames: 0,
            fixes: 0,
        }
    }

    pub fn stats(&self) -> ProcessorStats {
        let tp = self.j1939.transport.stats;
        ProcessorStats {
            can_frames: self.can_frames,
            nmea_lines: self.nmea.sentences + self.nmea.bad,
            nmea_bad: self.nmea.bad,
            fixes: self.fixes,
            tp_completed: tp.completed,
            tp_dropped: tp.timed_out + tp.aborted + tp.errors,
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The geofences the rules watch, replacing those named in the config.
    pub fn set_geofences(&mut self, set: crate::rules::GeofenceSet) {
        self.engine.set_geofences(set);
    }

    /// A CAN frame received at `mono_ms`.
    pub fn on_can(&mut self, frame: &CanFrame, mono_ms: u64, out: &mut Vec<RuleEvent>) {
        self.can_frames += 1;
        let Self {
            engine,
            j1939,
            hires_odometer,
            ..
        } = self;
        j1939.decode(frame, |d| match d {
            Decoded::Spn {
                reading:
                    SpnReading {
                        spn,
                        value: SpnValue::Value(v),
                    },
                ..
            } => {
                if spn == 917 {
                    *hires_odometer = true;
                } else if spn == 245 && *hires_odometer {
                    return;
                }
                if let Some((signal, scale)) = signal_for(spn) {
                    engine.signal(signal, v * scale, mono_ms, out);
                }
            }
            Decoded::Dm1 { source, dm1 } => {
                let active: Vec<ActiveDtc> = dm1
                    .codes
                    .iter()
                    .map(|c| ActiveDtc {
                        source,
                        spn: c.spn,
                        fmi: c.fmi,
                        oc: c.oc,
                    })
                    .collect();
                engine.dtcs(source, dm1.lamps, &active, mono_ms, out);
            }
            _ => {}
        });
    }

    /// An NMEA line received at `mono_ms`.
    pub fn on_nmea(&mut self, line: &str, mono_ms: u64, out: &mut Vec<RuleEvent>) {
        if let Some(fix) = self.nmea.push_line(line) {
            self.fixes += 1;
            self.engine.fix(mono_ms, position_of(&fix), out);
        }
    }

    /// The ignition wire changed at `mono_ms`.
    pub fn on_ignition(&mut self, on: bool, mono_ms: u64, out: &mut Vec<RuleEvent>) {
        self.engine.ignition_wire(on, mono_ms, out);
    }

    pub fn on_tick(&mut self, mono_ms: u64, out: &mut Vec<RuleEvent>) {
        self.j1939.transport.expire(mono_ms * 1000);
        self.engine.tick(mono_ms, out);
    }

    /// The pipeline is stopping: emit what is still open.
    pub fn finish(&mut self, mono_ms: u64, out: &mut Vec<RuleEvent>) {
        if let Some(fix) = self.nmea.flush() {
            self.engine.fix(mono_ms, position_of(&fix), out);
        }
        self.engine.finish(mono_ms, out);
    }
}
