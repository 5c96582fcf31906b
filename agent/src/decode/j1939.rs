//! SAE J1939: the 29-bit identifier, the parameters (SPNs) a fleet needs with
//! their "error" and "not available" ranges, DM1 active faults, and transport
//! protocol reassembly (BAM and RTS/CTS, passively, several sessions at once).
//! Everything here is pure and, except for reassembled messages, allocation-free.

use fleet_hal::CanFrame;

pub const PGN_TP_CM: u32 = 0xEC00;
pub const PGN_TP_DT: u32 = 0xEB00;
pub const PGN_DM1: u32 = 65226;
pub const GLOBAL: u8 = 0xFF;

/// The parts of a 29-bit J1939 identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct J1939Id {
    pub priority: u8,
    /// For PDU1 (PF < 240) the destination byte is not part of the PGN.
    pub pgn: u32,
    pub source: u8,
    /// PDU1 only: the destination address (0xFF is global).
    pub destination: Option<u8>,
}

pub fn parse_id(id: u32) -> J1939Id {
    let priority = ((id >> 26) & 0x7) as u8;
    let dp = (id >> 24) & 0x3;
    let pf = (id >> 16) & 0xFF;
    let ps = ((id >> 8) & 0xFF) as u8;
    let source = (id & 0xFF) as u8;
    if pf < 240 {
        J1939Id {
            priority,
            pgn: (dp << 16) | (pf << 8),
            source,
            destination: Some(ps),
        }
    } else {
        J1939Id {
            priority,
            pgn: (dp << 16) | (pf << 8) | u32::from(ps),
            source,
            destination: None,
        }
    }
}

/// A parameter's value, or why there is none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SpnValue {
    Value(f64),
    /// The sender reports an error for this parameter.
    Error,
    /// The sender does not supply this parameter (or sent a reserved value).
    NotAvailable,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpnReading {
    pub spn: u32,
    pub value: SpnValue,
}

struct SpnDef {
    pgn: u32,
    spn: u32,
    name: &'static str,
    unit: &'static str,
    /// Byte offset in the data field (J1939 "byte 1" is offset 0).
    start: usize,
    len: usize,
    scale: f64,
    offset: f64,
}

/// The parameters decoded, per J1939-71. Units: rpm, km/h, °C, %, h, km, m, L/h,
/// L, V.
const SPNS: &[SpnDef] = &[
    SpnDef {
        pgn: 61444,
        spn: 190,
        name: "engine_speed",
        unit: "rpm",
        start: 3,
        len: 2,
        scale: 0.125,
        offset: 0.0,
    },
    SpnDef {
        pgn: 61443,
        spn: 91,
        name: "accelerator_pedal_position",
        unit: "%",
        start: 1,
        len: 1,
        scale: 0.4,
        offset: 0.0,
    },
    SpnDef {
        pgn: 61443,
        spn: 92,
        name: "engine_load",
        unit: "%",
        start: 2,
        len: 1,
        scale: 1.0,
        offset: 0.0,
    },
    SpnDef {
        pgn: 65265,
        spn: 84,
        name: "wheel_based_vehicle_speed",
        unit: "km/h",
        start: 1,
        len: 2,
        scale: 1.0 / 256.0,
        offset: 0.0,
    },
    SpnDef {
        pgn: 65262,
        spn: 110,
        name: "engine_coolant_temperature",
        unit: "°C",
        start: 0,
        len: 1,
        scale: 1.0,
        offset: -40.0,
    },
    SpnDef {
        pgn: 65276,
        spn: 96,
        name: "fuel_level",
        unit: "%",
        start: 1,
        len: 1,
        scale: 0.4,
        offset: 0.0,
    },
    SpnDef {
        pgn: 65253,
        spn: 247,
        name: "engine_total_hours",
        unit: "h",
        start: 0,
        len: 4,
        scale: 0.05,
        offset: 0.0,
    },
    SpnDef {
        pgn: 65248,
        spn: 245,
        name: "total_vehicle_distance",
        unit: "km",
        start: 4,
        len: 4,
        scale: 0.125,
        offset: 0.0,
    },
    SpnDef {
        pgn: 65217,
        spn: 917,
        name: "total_vehicle_distance_high_resolution",
        unit: "m",
        start: 0,
        len: 4,
        scale: 5.0,
        offset: 0.0,
    },
    SpnDef {
        pgn: 65266,
        spn: 183,
        name: "engine_fuel_rate",
        unit: "L/h",
        start: 0,
        len: 2,
        scale: 0.05,
        offset: 0.0,
    },
    SpnDef {
        pgn: 65257,
        spn: 250,
        name: "engine_total_fuel_used",
        unit: "L",
        start: 4,
        len: 4,
        scale: 0.5,
        offset: 0.0,
    },
    SpnDef {
        pgn: 65271,
        spn: 168,
        name: "battery_potential",
        unit: "V",
        start: 4,
        len: 2,
        scale: 0.05,
        offset: 0.0,
    },
];

/// The name and unit of a parameter [`decode_spns`] reports.
pub fn spn_info(spn: u32) -> Option<(&'static str, &'static str)> {
    SPNS.iter().find(|d| d.spn == spn).map(|d| (d.name, d.unit))
}

/// Whether [`J1939Decoder`] reads anything from this frame: a parameter group
/// with known SPNs, DM1, or transport protocol.
pub fn reads_frame(frame: &CanFrame) -> bool {
    if !frame.extended || frame.rtr {
        return false;
    }
    let pgn = parse_id(frame.id).pgn;
    matches!(pgn, PGN_TP_CM | PGN_TP_DT | PGN_DM1) || has_spns(pgn)
}

/// Whether [`decode_spns`] knows anything in this PGN.
pub fn has_spns(pgn: u32) -> bool {
    SPNS.iter().any(|d| d.pgn == pgn)
}

/// Classify a raw value by its width: the top of the range is "error" (0xFE..)
/// and "not available" (0xFF..); 0xFB..0xFD are reserved and carry no value.
fn classify(raw: u32, len: usize) -> Result<u32, SpnValue> {
    let shift = (len as u32 - 1) * 8;
    match raw >> shift {
        0..=0xFA => Ok(raw),
        0xFE => Err(SpnValue::Error),
        _ => Err(SpnValue::NotAvailable),
    }
}

/// Call `f` with each known parameter of `pgn` found in `data`.
pub fn decode_spns(pgn: u32, data: &[u8], mut f: impl FnMut(SpnReading)) {
    for d in SPNS.iter().filter(|d| d.pgn == pgn) {
        let Some(bytes) = data.get(d.start..d.start + d.len) else {
            f(SpnReading {
                spn: d.spn,
                value: SpnValue::NotAvailable,
            });
            continue;
        };
        let raw = bytes.iter().rev().fold(0u32, |a, b| a << 8 | u32::from(*b));
        let value = match classify(raw, d.len) {
            Ok(raw) => SpnValue::Value(f64::from(raw) * d.scale + d.offset),
            Err(v) => v,
        };
        f(SpnReading { spn: d.spn, value });
    }
}

/// One diagnostic trouble code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Dtc {
    pub spn: u32,
    pub fmi: u8,
    pub oc: u8,
}

/// A lamp's state, as DM1 bytes 1 and 2 report it (two bits each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Lamp {
    Off,
    On,
    Error,
    NotAvailable,
}

impl Lamp {
    fn from_bits(b: u8) -> Self {
        match b & 3 {
            0 => Lamp::Off,
            1 => Lamp::On,
            2 => Lamp::Error,
            _ => Lamp::NotAvailable,
        }
    }
}

/// A flashing lamp's rate, from DM1 byte 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flash {
    Slow,
    Fast,
    Reserved,
    /// Not flashing (or the sender does not say).
    Unavailable,
}

impl Flash {
    fn from_bits(b: u8) -> Self {
        match b & 3 {
            0 => Flash::Slow,
            1 => Flash::Fast,
            2 => Flash::Reserved,
            _ => Flash::Unavailable,
        }
    }
}

/// The four DM1 lamps with their flash state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LampStatus {
    pub malfunction: Lamp,
    pub red_stop: Lamp,
    pub amber_warning: Lamp,
    pub protect: Lamp,
    pub malfunction_flash: Flash,
    pub red_stop_flash: Flash,
    pub amber_warning_flash: Flash,
    pub protect_flash: Flash,
}

/// A DM1: lamp status and the active codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dm1 {
    /// Byte 1: malfunction (bits 8-7), red stop (6-5), amber warning (4-3) and
    /// protect (2-1) lamps; 00 off, 01 on.
    pub lamps: u8,
    /// Byte 2: the same lamps' flash state; 00 slow, 01 fast, 11 not flashing.
    pub flash: u8,
    pub codes: Vec<Dtc>,
    /// Codes sent with the conversion-method bit set (SPN in the pre-version-4
    /// bit order, read here as version 1: most significant bit first).
    pub old_conversion: usize,
}

impl Dm1 {
    pub fn malfunction_lamp(&self) -> bool {
        self.lamps >> 6 & 3 == 1
    }

    pub fn red_stop_lamp(&self) -> bool {
        self.lamps >> 4 & 3 == 1
    }

    pub fn amber_warning_lamp(&self) -> bool {
        self.lamps >> 2 & 3 == 1
    }

    pub fn lamp_status(&self) -> LampStatus {
        LampStatus {
            malfunction: Lamp::from_bits(self.lamps >> 6),
            red_stop: Lamp::from_bits(self.lamps >> 4),
            amber_warning: Lamp::from_bits(self.lamps >> 2),
            protect: Lamp::from_bits(self.lamps),
            malfunction_flash: Flash::from_bits(self.flash >> 6),
            red_stop_flash: Flash::from_bits(self.flash >> 4),
            amber_warning_flash: Flash::from_bits(self.flash >> 2),
            protect_flash: Flash::from_bits(self.flash),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum J1939Error {
    #[error("DM1 of {0} bytes is too short")]
    ShortDm1(usize),
}

/// Decode a DM1 payload (one frame or a reassembled transport message) with
/// any number of codes. All-zero and all-ones slots are "no code" fillers.
pub fn decode_dm1(data: &[u8]) -> Result<Dm1, J1939Error> {
    if data.len() < 6 {
        return Err(J1939Error::ShortDm1(data.len()));
    }
    let mut old_conversion = 0;
    let codes = data[2..]
        .chunks_exact(4)
        .filter(|c| *c != [0, 0, 0, 0] && *c != [0xFF; 4])
        .map(|c| {
            let (b0, b1, b2) = (u32::from(c[0]), u32::from(c[1]), u32::from(c[2]));
            let spn = if c[3] & 0x80 != 0 {
                old_conversion += 1;
                b0 << 11 | b1 << 3 | b2 >> 5
            } else {
                b0 | b1 << 8 | (b2 >> 5) << 16
            };
            Dtc {
                spn,
                fmi: c[2] & 0x1F,
                oc: c[3] & 0x7F,
            }
        })
        .collect();
    Ok(Dm1 {
        lamps: data[0],
        flash: data[1],
        codes,
        old_conversion,
    })
}

/// J1939-21 transport timeouts, in microseconds. A passive listener applies the
/// receiving side's limits to whatever the bus shows.
pub mod timeout {
    /// Tr: a node answers (CTS after RTS, next CTS after a window) within this.
    pub const TR_US: u64 = 200_000;
    /// Th: a receiver holding a connection open repeats CTS(0) this often.
    pub const TH_US: u64 = 500_000;
    /// T1: between data packets (BAM, or inside a CTS window).
    pub const T1_US: u64 = 750_000;
    /// T2: from CTS to the first data packet of its window.
    pub const T2_US: u64 = 1_250_000;
    /// T3: from RTS, or the last packet of a window, to the next CTS.
    pub const T3_US: u64 = 1_250_000;
    /// T4: from a hold (CTS with zero packets) to the CTS that resumes.
    pub const T4_US: u64 = 1_050_000;
}

/// BAM: at most this long between data packets (T1).
pub const BAM_TIMEOUT_US: u64 = timeout::T1_US;
/// RTS/CTS: the longest any step of a session may take (T2/T3).
pub const RTS_TIMEOUT_US: u64 = timeout::T3_US;
/// The largest transport message (255 packets of 7 bytes).
pub const MAX_TP_SIZE: usize = 1785;

/// The most sessions followed at once; a bus of 254 nodes each talking to a
/// handful of peers fits. Beyond it the oldest session is dropped.
pub const MAX_SESSIONS: usize = 512;

#[derive(Debug)]
struct Session {
    source: u8,
    destination: u8,
    pgn: u32,
    size: usize,
    packets: u8,
    next_seq: u8,
    bam: bool,
    /// RTS/CTS: the last sequence number the current CTS allows; 0 before any CTS.
    window_end: u8,
    /// The session is dropped if its next frame comes later than this.
    deadline_us: u64,
    data: Vec<u8>,
}

/// A message reassembled from transport packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpMessage {
    pub pgn: u32,
    pub source: u8,
    pub destination: u8,
    pub data: Vec<u8>,
}

/// Counts of what the reassembler dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TpStats {
    pub completed: u64,
    pub timed_out: u64,
    pub aborted: u64,
    /// Out-of-sequence packets, bad announcements, packets with no session.
    pub errors: u64,
}

/// Passive transport-protocol reassembly: listens to BAM and RTS/CTS sessions
/// from any number of sources at once and yields each complete message.
#[derive(Debug, Default)]
pub struct Transport {
    sessions: Vec<Session>,
    pub stats: TpStats,
}

impl Transport {
    pub fn new() -> Self {
        Self::default()
    }

    /// Drop sessions whose next frame is overdue at `now_us`.
    pub fn expire(&mut self, now_us: u64) {
        let before = self.sessions.len();
        self.sessions.retain(|s| now_us <= s.deadline_us);
        self.stats.timed_out += (before - self.sessions.len()) as u64;
    }

    /// Sessions in progress.
    pub fn open_sessions(&self) -> usize {
        self.sessions.len()
    }

    fn find(&self, source: u8, destination: u8) -> Option<usize> {
        self.sessions
            .iter()
            .position(|s| s.source == source && s.destination == destination)
    }

    /// Offer a TP.CM or TP.DT frame; returns a message when one completes.
    pub fn push(&mut self, id: &J1939Id, frame: &CanFrame) -> Option<TpMessage> {
        let d = frame.payload();
        let now = frame.timestamp_us;
        if !self.sessions.is_empty() {
            self.expire(now);
        }
        let dest = id.destination.unwrap_or(GLOBAL);
        if d.len() < 8 {
            self.stats.errors += 1;
            return None;
        }
        match id.pgn {
            PGN_TP_CM => {
                self.control(id.source, dest, d, now);
                None
            }
            PGN_TP_DT => self.data(id.source, dest, d, now),
            _ => None,
        }
    }

    fn control(&mut self, source: u8, dest: u8, d: &[u8], now: u64) {
        match d[0] {
            0x20 | 0x10 => {
                let size = usize::from(u16::from_le_bytes([d[1], d[2]]));
                let packets = d[3];
                let pgn = u32::from(d[5]) | u32::from(d[6]) << 8 | u32::from(d[7]) << 16;
                let bam = d[0] == 0x20;
                // BAM goes to everyone, RTS to one node.
                if !(9..=MAX_TP_SIZE).contains(&size)
                    || usize::from(packets) != size.div_ceil(7)
                    || bam != (dest == GLOBAL)
                {
                    self.stats.errors += 1;
                    return;
                }
                if let Some(i) = self.find(source, dest) {
                    // A new announcement replaces an unfinished session.
                    self.sessions.swap_remove(i);
                    self.stats.aborted += 1;
                }
                if self.sessions.len() >= MAX_SESSIONS {
                    self.sessions.remove(0);
                    self.stats.aborted += 1;
                }
                self.sessions.push(Session {
                    source,
                    destination: dest,
                    pgn,
                    size,
                    packets,
                    next_seq: 1,
                    bam,
                    window_end: 0,
                    deadline_us: now + if bam { timeout::T1_US } else { timeout::T3_US },
                    data: Vec::with_capacity(usize::from(packets) * 7),
                });
            }
            0x11 => {
                // CTS from the receiver: the originator is our destination.
                let Some(i) = self.find(dest, source) else {
                    return;
                };
                let s = &mut self.sessions[i];
                let (count, next) = (d[1], d[2]);
                if count == 0 {
                    // Hold: the receiver keeps the connection open.
                    s.deadline_us = now + timeout::T4_US;
                    return;
                }
                // The receiver may ask again for packets it already has.
                if next == 0 || next > s.next_seq || next > s.packets {
                    self.sessions.swap_remove(i);
                    self.stats.errors += 1;
                    return;
                }
                s.data.truncate((usize::from(next) - 1) * 7);
                s.next_seq = next;
                // Some receivers ask for more than is left; the message still ends
                // at its last packet.
                s.window_end = next.saturating_add(count - 1).min(s.packets);
                s.deadline_us = now + timeout::T2_US;
            }
            0xFF => {
                for (a, b) in [(source, dest), (dest, source)] {
                    if let Some(i) = self.find(a, b) {
                        self.sessions.swap_remove(i);
                        self.stats.aborted += 1;
                    }
                }
            }
            // End of message acknowledgement: the message completed on its last packet.
            _ => {}
        }
    }

    fn data(&mut self, source: u8, dest: u8, d: &[u8], now: u64) -> Option<TpMessage> {
        let Some(i) = self.find(source, dest) else {
            self.stats.errors += 1;
            return None;
        };
        let s = &mut self.sessions[i];
        let in_window = s.bam || (s.window_end != 0 && d[0] <= s.window_end);
        if d[0] != s.next_seq || !in_window {
            self.sessions.swap_remove(i);
            self.stats.errors += 1;
            return None;
        }
        s.data.extend_from_slice(&d[1..8]);
        s.next_seq = s.next_seq.wrapping_add(1);
        if d[0] < s.packets {
            s.deadline_us = now
                + if s.bam || d[0] < s.window_end {
                    timeout::T1_US
                } else {
                    timeout::T3_US
                };
            return None;
        }
        let mut s = self.sessions.swap_remove(i);
        s.data.truncate(s.size);
        self.stats.completed += 1;
        Some(TpMessage {
            pgn: s.pgn,
            source: s.source,
            destination: s.destination,
            data: s.data,
        })
    }
}

/// What one frame (or a message it completed) said.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Spn {
        source: u8,
        pgn: u32,
        reading: SpnReading,
    },
    Dm1 {
        source: u8,
        dm1: Dm1,
    },
    /// A reassembled message of a PGN not decoded here.
    Message(TpMessage),
}

/// Frames in, parameters and faults out.
#[derive(Debug, Default)]
pub struct J1939Decoder {
    pub transport: Transport,
    /// Frames that were not 29-bit J1939 frames.
    pub skipped: u64,
    /// DM1 messages too short to read.
    pub bad_dm1: u64,
}

impl J1939Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn decode(&mut self, frame: &CanFrame, mut f: impl FnMut(Decoded)) {
        if !frame.extended || frame.rtr {
            self.skipped += 1;
            return;
        }
        let id = parse_id(frame.id);
        match id.pgn {
            PGN_TP_CM | PGN_TP_DT => {
                if let Some(m) = self.transport.push(&id, frame) {
                    if m.pgn == PGN_DM1 {
                        self.dm1(m.source, &m.data, &mut f);
                    } else if has_spns(m.pgn) {
                        decode_spns(m.pgn, &m.data, |reading| {
                            f(Decoded::Spn {
                                source: m.source,
                                pgn: m.pgn,
                                reading,
                            })
                        });
                    } else {
                        f(Decoded::Message(m));
                    }
                }
            }
            PGN_DM1 => self.dm1(id.source, frame.payload(), &mut f),
            pgn => decode_spns(pgn, frame.payload(), |reading| {
                f(Decoded::Spn {
                    source: id.source,
                    pgn,
                    reading,
                })
            }),
        }
    }

    fn dm1(&mut self, source: u8, data: &[u8], f: &mut impl FnMut(Decoded)) {
        match decode_dm1(data) {
            Ok(dm1) => f(Decoded::Dm1 { source, dm1 }),
            Err(_) => self.bad_dm1 += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::candump;
    use fleet_hal::sim::j1939 as enc;

    fn truck_log() -> Vec<CanFrame> {
        let log = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/fixtures/j1939/canedge-j1939-truck-idle-10s.log"
        ))
        .expect("fixture");
        log.lines()
            .map(|l| candump::parse_line(l).expect(l).frame)
            .collect()
    }

    #[test]
    fn id_splits_into_priority_pgn_and_addresses() {
        let a = parse_id(0x09F8_027F);
        assert_eq!(
            (a.priority, a.pgn, a.source, a.destination),
            (2, 129_026, 0x7F, None)
        );
        let b = parse_id(0x1534_0201);
        assert_eq!(
            (b.pgn, b.destination, b.source),
            (0x13400, Some(0x02), 0x01)
        );
        let c = parse_id(0x15F0_1002);
        assert_eq!((c.pgn, c.destination), (0x1F010, None));
        assert_eq!(parse_id(0x0CF0_0400).pgn, 61_444);
        assert_eq!(parse_id(0x1CEC_FF00).destination, Some(GLOBAL));
    }

    #[test]
    fn error_and_not_available_ranges() {
        let read = |pgn, data: [u8; 8], spn| {
            let mut v = None;
            decode_spns(pgn, &data, |r| {
                if r.spn == spn {
                    v = Some(r.value)
                }
            });
            v.expect("spn present")
        };
        let ff = [0xFF; 8];
        assert_eq!(read(61444, ff, 190), SpnValue::NotAvailable);
        assert_eq!(
            read(61444, [0, 0, 0, 0x00, 0xFE, 0, 0, 0], 190),
            SpnValue::Error
        );
        assert_eq!(
            read(61444, [0, 0, 0, 0xFF, 0xFA, 0, 0, 0], 190),
            SpnValue::Value(8031.875)
        );
        assert_eq!(
            read(65262, [0xFE, 0, 0, 0, 0, 0, 0, 0], 110),
            SpnValue::Error
        );
        assert_eq!(
            read(65262, [0xFB, 0, 0, 0, 0, 0, 0, 0], 110),
            SpnValue::NotAvailable
        );
        assert_eq!(
            read(65262, [0, 0, 0, 0, 0, 0, 0, 0], 110),
            SpnValue::Value(-40.0)
        );
        assert_eq!(
            read(65248, [0, 0, 0, 0, 0, 0, 0, 0xFE], 245),
            SpnValue::Error
        );
        let mut n = 0;
        decode_spns(65262, &[0x70], |_| n += 1);
        assert_eq!(
            n, 1,
            "a short frame still reports the SPN, as not available"
        );
    }

    #[test]
    fn every_spn_round_trips_through_the_simulator_encoder() {
        let frames = [
            (enc::eec1(1234.5, 40.0, 0), 190, 1234.5),
            (enc::eec2(42.0, 55.0, 0), 91, 42.0),
            (enc::eec2(42.0, 55.0, 0), 92, 55.0),
            (enc::ccvs1(87.5, false, 0), 84, 87.5),
            (enc::et1(88.0, 0), 110, 88.0),
            (enc::dd(62.4, 0), 96, 62.4),
            (enc::hours(12_345.65, 0), 247, 12_345.65),
            (enc::vd(456_789.125, 0), 245, 456_789.125),
            (enc::vdhr(456_789_125.0, 0), 917, 456_789_125.0),
            (enc::lfe(31.25, 0), 183, 31.25),
            (enc::lfc(123_456.5, 0), 250, 123_456.5),
            (enc::vep1(27.85, 0), 168, 27.85),
        ];
        let mut d = J1939Decoder::new();
        for (frame, spn, want) in frames {
            let mut got = None;
            d.decode(&frame, |x| {
                if let Decoded::Spn { reading, .. } = x {
                    if reading.spn == spn {
                        got = Some(reading.value);
                    }
                }
            });
            match got {
                Some(SpnValue::Value(v)) => {
                    assert!((v - want).abs() < 1e-6, "SPN {spn}: {v} != {want}")
                }
                other => panic!("SPN {spn}: {other:?}"),
            }
        }
    }

    #[test]
    fn truck_idle_log_engine_speed_and_wheel_speed() {
        let mut d = J1939Decoder::new();
        let (mut lo, mut hi, mut n) = (f64::MAX, f64::MIN, 0);
        let mut speeds = Vec::new();
        for f in truck_log() {
            d.decode(&f, |x| match x {
                Decoded::Spn {
                    reading:
                        SpnReading {
                            spn: 190,
                            value: SpnValue::Value(v),
                        },
                    ..
                } => {
                    lo = lo.min(v);
                    hi = hi.max(v);
                    n += 1;
                }
                Decoded::Spn {
                    reading: SpnReading { spn: 84, value },
                    ..
                } => speeds.push(value),
                _ => {}
            });
        }
        assert_eq!((lo, hi), (646.75, 653.75));
        assert!(n > 900, "EEC1 at 100 Hz for 10 s: {n}");
        assert!(!speeds.is_empty() && speeds.iter().all(|v| *v == SpnValue::Value(0.0)));
    }

    #[test]
    fn truck_idle_log_dm1_over_bam() {
        let mut d = J1939Decoder::new();
        let mut dm1s = Vec::new();
        let mut others = Vec::new();
        for f in truck_log() {
            d.decode(&f, |x| match x {
                Decoded::Dm1 { source, dm1 } => dm1s.push((source, dm1)),
                Decoded::Message(m) => others.push(m),
                _ => {}
            });
        }
        assert!(dm1s.len() >= 9, "about one a second: {}", dm1s.len());
        let (source, dm1) = &dm1s[0];
        assert_eq!(*source, 0x00);
        assert_eq!(dm1.lamps, 0x43);
        assert!(dm1.malfunction_lamp());
        assert_eq!(
            dm1.codes,
            vec![
                Dtc {
                    spn: 980,
                    fmi: 9,
                    oc: 126
                },
                Dtc {
                    spn: 3216,
                    fmi: 20,
                    oc: 2
                },
                Dtc {
                    spn: 609,
                    fmi: 9,
                    oc: 1
                },
                Dtc {
                    spn: 609,
                    fmi: 12,
                    oc: 3
                },
            ]
        );
        let big: Vec<_> = others.iter().filter(|m| m.pgn == 65251).collect();
        assert_eq!(big.len(), 2);
        assert!(big.iter().all(|m| m.data.len() == 39));
        assert_eq!(d.transport.stats.errors, 0);
        assert_eq!(d.transport.stats.timed_out, 0);
    }

    fn bam(source: u8, dtcs: usize, t0: u64, gap: u64) -> Vec<CanFrame> {
        let codes: Vec<enc::Dtc> = (0..dtcs as u32)
            .map(|i| enc::Dtc {
                spn: 100 + i,
                fmi: (i % 31) as u8,
                oc: (i % 126) as u8 + 1,
            })
            .collect();
        enc::broadcast(
            6,
            enc::PGN_DM1,
            source,
            &enc::dm1_payload(0x04, &codes),
            t0,
            gap,
        )
    }

    #[test]
    fn dm1_with_13_codes_over_bam_decodes_within_t1() {
        let mut d = J1939Decoder::new();
        let mut got = Vec::new();
        for f in bam(0x00, 13, 0, 700_000) {
            d.decode(&f, |x| got.push(x));
        }
        let [Decoded::Dm1 { dm1, .. }] = got.as_slice() else {
            panic!("{got:?}")
        };
        assert_eq!(dm1.codes.len(), 13);
        assert_eq!(
            dm1.codes[12],
            Dtc {
                spn: 112,
                fmi: 12,
                oc: 13
            }
        );
    }

    #[test]
    fn bam_packet_later_than_t1_drops_the_session() {
        let mut d = J1939Decoder::new();
        let mut got = Vec::new();
        for f in bam(0x00, 4, 0, 800_000) {
            d.decode(&f, |x| got.push(x));
        }
        assert!(got.is_empty());
        assert_eq!(d.transport.stats.timed_out, 1);
    }

    #[test]
    fn rts_cts_session_reassembles_and_out_of_order_packet_aborts() {
        let payload: Vec<u8> = (0..20u8).collect();
        let pgn = 65251u32.to_le_bytes();
        let rts = CanFrame::extended8(0x1CEC_3100, [0x10, 20, 0, 3, 3, pgn[0], pgn[1], pgn[2]], 0);
        let cts = CanFrame::extended8(
            0x1CEC_0031,
            [0x11, 3, 1, 0xFF, 0xFF, pgn[0], pgn[1], pgn[2]],
            10_000,
        );
        let dt = |seq: u8, t: u64| {
            let mut d = [0xFF; 8];
            d[0] = seq;
            let chunk = &payload[(usize::from(seq) - 1) * 7..(usize::from(seq) * 7).min(20)];
            d[1..=chunk.len()].copy_from_slice(chunk);
            CanFrame::extended8(0x1CEB_3100, d, t)
        };
        let mut t = Transport::new();
        let mut done = None;
        for f in [rts, cts, dt(1, 20_000), dt(2, 30_000), dt(3, 40_000)] {
            if let Some(m) = t.push(&parse_id(f.id), &f) {
                done = Some(m);
            }
        }
        let m = done.expect("complete");
        assert_eq!((m.pgn, m.source, m.destination), (65251, 0x00, 0x31));
        assert_eq!(m.data, payload);
        for f in [rts, dt(2, 20_000), dt(3, 30_000)] {
            assert!(t.push(&parse_id(f.id), &f).is_none());
        }
        assert_eq!(t.stats.errors, 2, "out of sequence, then no session");
    }
}
