//! J1939 frames as an engine, instrument cluster and tachograph put them on the
//! bus: the parameter groups the agent decodes, scaled per SAE J1939-71.

use crate::can::CanFrame;

/// 29-bit id from priority, PGN and source address (PDU2 PGNs, or PDU1 with the
/// destination in the PGN's low byte).
pub fn id(priority: u8, pgn: u32, sa: u8) -> u32 {
    (u32::from(priority & 7) << 26) | ((pgn & 0x3_FFFF) << 8) | u32::from(sa)
}

pub const SA_ENGINE: u8 = 0x00;
pub const SA_CLUSTER: u8 = 0x17;
pub const SA_TACHOGRAPH: u8 = 0xEE;

pub const PGN_EEC1: u32 = 61444;
pub const PGN_EEC2: u32 = 61443;
pub const PGN_CCVS1: u32 = 65265;
pub const PGN_ET1: u32 = 65262;
pub const PGN_LFE: u32 = 65266;
pub const PGN_DD: u32 = 65276;
pub const PGN_HOURS: u32 = 65253;
pub const PGN_VD: u32 = 65248;
pub const PGN_VDHR: u32 = 65217;
pub const PGN_LFC: u32 = 65257;
pub const PGN_VEP1: u32 = 65271;
pub const PGN_DM1: u32 = 65226;
pub const PGN_TP_CM: u32 = 60416;
pub const PGN_TP_DT: u32 = 60160;

fn u16le(v: f64, scale: f64, offset: f64) -> [u8; 2] {
    let raw = ((v - offset) / scale).round().clamp(0.0, 64_255.0) as u16;
    raw.to_le_bytes()
}

fn u32le(v: f64, scale: f64) -> [u8; 4] {
    let raw = (v / scale).round().clamp(0.0, 4_211_081_215.0) as u32;
    raw.to_le_bytes()
}

fn u8s(v: f64, scale: f64, offset: f64) -> u8 {
    ((v - offset) / scale).round().clamp(0.0, 250.0) as u8
}

/// EEC1: engine speed (SPN 190, 0.125 rpm/bit, bytes 4-5).
pub fn eec1(rpm: f64, load_pct: f64, t_us: u64) -> CanFrame {
    let r = u16le(rpm, 0.125, 0.0);
    let torque = u8s(load_pct, 1.0, -125.0);
    CanFrame::extended8(
        id(3, PGN_EEC1, SA_ENGINE),
        [0xF0, 0x7D, torque, r[0], r[1], 0xFF, 0xF0, torque],
        t_us,
    )
}

/// EEC2: accelerator pedal (SPN 91, 0.4 %/bit, byte 2) and load at current speed
/// (SPN 92, 1 %/bit, byte 3).
pub fn eec2(pedal_pct: f64, load_pct: f64, t_us: u64) -> CanFrame {
    CanFrame::extended8(
        id(3, PGN_EEC2, SA_ENGINE),
        [
            0xF1,
            u8s(pedal_pct, 0.4, 0.0),
            u8s(load_pct, 1.0, 0.0),
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
        ],
        t_us,
    )
}

/// CCVS1: wheel-based vehicle speed (SPN 84, 1/256 km/h per bit, bytes 2-3).
pub fn ccvs1(speed_kmh: f64, brake: bool, t_us: u64) -> CanFrame {
    let s = u16le(speed_kmh, 1.0 / 256.0, 0.0);
    let brake_bits = if brake { 0b0001_0000 } else { 0 };
    CanFrame::extended8(
        id(6, PGN_CCVS1, SA_ENGINE),
        [0xF3, s[0], s[1], 0xC0 | brake_bits, 0x00, 0xFF, 0xFF, 0xFF],
        t_us,
    )
}

/// ET1: engine coolant temperature (SPN 110, 1 °C/bit, offset -40, byte 1).
pub fn et1(coolant_c: f64, t_us: u64) -> CanFrame {
    CanFrame::extended8(
        id(6, PGN_ET1, SA_ENGINE),
        [
            u8s(coolant_c, 1.0, -40.0),
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
        ],
        t_us,
    )
}

/// LFE: fuel rate (SPN 183, 0.05 L/h per bit, bytes 1-2).
pub fn lfe(rate_lph: f64, t_us: u64) -> CanFrame {
    let r = u16le(rate_lph, 0.05, 0.0);
    CanFrame::extended8(
        id(6, PGN_LFE, SA_ENGINE),
        [r[0], r[1], 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
        t_us,
    )
}

/// DD: fuel level 1 (SPN 96, 0.4 %/bit, byte 2).
pub fn dd(level_pct: f64, t_us: u64) -> CanFrame {
    CanFrame::extended8(
        id(6, PGN_DD, SA_CLUSTER),
        [
            0xFF,
            u8s(level_pct, 0.4, 0.0),
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
        ],
        t_us,
    )
}

/// HOURS: total engine hours (SPN 247, 0.05 h/bit, bytes 1-4).
pub fn hours(engine_h: f64, t_us: u64) -> CanFrame {
    let h = u32le(engine_h, 0.05);
    CanFrame::extended8(
        id(6, PGN_HOURS, SA_ENGINE),
        [h[0], h[1], h[2], h[3], 0xFF, 0xFF, 0xFF, 0xFF],
        t_us,
    )
}

/// VD: total vehicle distance (SPN 245, 0.125 km/bit, bytes 5-8).
pub fn vd(total_km: f64, t_us: u64) -> CanFrame {
    let d = u32le(total_km, 0.125);
    CanFrame::extended8(
        id(6, PGN_VD, SA_ENGINE),
        [0xFF, 0xFF, 0xFF, 0xFF, d[0], d[1], d[2], d[3]],
        t_us,
    )
}

/// VDHR: high-resolution total vehicle distance (SPN 917, 5 m/bit, bytes 1-4).
pub fn vdhr(total_m: f64, t_us: u64) -> CanFrame {
    let d = u32le(total_m, 5.0);
    CanFrame::extended8(
        id(6, PGN_VDHR, SA_TACHOGRAPH),
        [d[0], d[1], d[2], d[3], 0xFF, 0xFF, 0xFF, 0xFF],
        t_us,
    )
}

/// LFC: engine total fuel used (SPN 250, 0.5 L/bit, bytes 5-8).
pub fn lfc(total_l: f64, t_us: u64) -> CanFrame {
    let f = u32le(total_l, 0.5);
    CanFrame::extended8(
        id(6, PGN_LFC, SA_ENGINE),
        [0xFF, 0xFF, 0xFF, 0xFF, f[0], f[1], f[2], f[3]],
        t_us,
    )
}

/// VEP1: battery potential (SPN 168, 0.05 V/bit, bytes 5-6).
pub fn vep1(battery_v: f64, t_us: u64) -> CanFrame {
    let v = u16le(battery_v, 0.05, 0.0);
    CanFrame::extended8(
        id(6, PGN_VEP1, SA_ENGINE),
        [0xFF, 0xFF, 0xFF, 0xFF, v[0], v[1], 0xFF, 0xFF],
        t_us,
    )
}

/// One active diagnostic trouble code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dtc {
    pub spn: u32,
    pub fmi: u8,
    pub oc: u8,
}

/// The DM1 payload: lamp bytes, then four bytes per code. With no codes, one
/// all-zero code, as the standard asks.
pub fn dm1_payload(lamps: u8, dtcs: &[Dtc]) -> Vec<u8> {
    let mut p = vec![lamps, 0xFF];
    if dtcs.is_empty() {
        p.extend_from_slice(&[0, 0, 0, 0, 0xFF, 0xFF]);
        return p;
    }
    for d in dtcs {
        p.push((d.spn & 0xFF) as u8);
        p.push(((d.spn >> 8) & 0xFF) as u8);
        p.push((((d.spn >> 16) & 0x7) << 5) as u8 | (d.fmi & 0x1F));
        p.push(d.oc & 0x7F);
    }
    if p.len() < 8 {
        p.resize(8, 0xFF);
    }
    p
}

/// A message for `pgn` from `sa` to everyone: one frame when it fits, otherwise a
/// BAM announcement and data packets `gap_us` apart.
pub fn broadcast(
    priority: u8,
    pgn: u32,
    sa: u8,
    payload: &[u8],
    t_us: u64,
    gap_us: u64,
) -> Vec<CanFrame> {
    if payload.len() <= 8 {
        let mut d = [0xFF; 8];
        d[..payload.len()].copy_from_slice(payload);
        return vec![CanFrame::extended8(id(priority, pgn, sa), d, t_us)];
    }
    let size = payload.len() as u16;
    let packets = payload.len().div_ceil(7) as u8;
    let p = pgn.to_le_bytes();
    let mut out = Vec::with_capacity(usize::from(packets) + 1);
    out.push(CanFrame::extended8(
        id(7, PGN_TP_CM | 0xFF, sa),
        [
            0x20,
            size as u8,
            (size >> 8) as u8,
            packets,
            0xFF,
            p[0],
            p[1],
            p[2],
        ],
        t_us,
    ));
    for (i, chunk) in payload.chunks(7).enumerate() {
        let mut d = [0xFF; 8];
        d[0] = i as u8 + 1;
        d[1..=chunk.len()].copy_from_slice(chunk);
        out.push(CanFrame::extended8(
            id(7, PGN_TP_DT | 0xFF, sa),
            d,
            t_us + gap_us * (i as u64 + 1),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_the_well_known_ones() {
        assert_eq!(id(3, PGN_EEC1, 0), 0x0CF0_0400);
        assert_eq!(id(6, PGN_CCVS1, 0), 0x18FE_F100);
        assert_eq!(id(7, PGN_TP_CM | 0xFF, 0), 0x1CEC_FF00);
    }

    #[test]
    fn long_dm1_goes_out_as_bam() {
        let dtcs: Vec<Dtc> = (0..3)
            .map(|i| Dtc {
                spn: 100 + i,
                fmi: 1,
                oc: 2,
            })
            .collect();
        let p = dm1_payload(0x04, &dtcs);
        assert_eq!(p.len(), 14);
        let frames = broadcast(6, PGN_DM1, 0, &p, 1_000, 50_000);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].data[..4], [0x20, 14, 0, 2]);
        assert_eq!(frames[2].timestamp_us, 101_000);
    }
}
