//! J1939-21 transport reassembly as a passive listener: the T1-T4 timeouts,
//! CTS windows, holds and retransmission requests, aborts, sessions from many
//! sources at once; and DM1 details (lamps, flash, conversion method, many codes).

use fleet_agent::decode::j1939::{
    decode_dm1, parse_id, timeout, Decoded, Dtc, Flash, J1939Decoder, Lamp, TpMessage, Transport,
};
use fleet_hal::sim::j1939 as enc;
use fleet_hal::CanFrame;

const PGN: u32 = 65251;

fn cm(src: u8, dst: u8, d: [u8; 8], t: u64) -> CanFrame {
    CanFrame::extended8(0x1CEC_0000 | u32::from(dst) << 8 | u32::from(src), d, t)
}

fn rts(src: u8, dst: u8, size: u16, t: u64) -> CanFrame {
    let p = PGN.to_le_bytes();
    let packets = size.div_ceil(7) as u8;
    cm(
        src,
        dst,
        [
            0x10,
            size as u8,
            (size >> 8) as u8,
            packets,
            0xFF,
            p[0],
            p[1],
            p[2],
        ],
        t,
    )
}

fn cts(receiver: u8, originator: u8, count: u8, next: u8, t: u64) -> CanFrame {
    let p = PGN.to_le_bytes();
    cm(
        receiver,
        originator,
        [0x11, count, next, 0xFF, 0xFF, p[0], p[1], p[2]],
        t,
    )
}

fn dt(src: u8, dst: u8, seq: u8, payload: &[u8], t: u64) -> CanFrame {
    let mut d = [0xFF; 8];
    d[0] = seq;
    let from = (usize::from(seq) - 1) * 7;
    let chunk = &payload[from..(from + 7).min(payload.len())];
    d[1..=chunk.len()].copy_from_slice(chunk);
    CanFrame::extended8(0x1CEB_0000 | u32::from(dst) << 8 | u32::from(src), d, t)
}

fn feed(t: &mut Transport, frames: &[CanFrame]) -> Vec<TpMessage> {
    frames
        .iter()
        .filter_map(|f| t.push(&parse_id(f.id), f))
        .collect()
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

#[test]
fn rts_cts_in_windows_of_two_with_a_hold_reassembles() {
    let p = payload(40); // 6 packets
    let ms = 1000;
    let frames = [
        rts(0x00, 0x31, 40, 0),
        cts(0x31, 0x00, 2, 1, 100 * ms),
        dt(0x00, 0x31, 1, &p, 150 * ms),
        dt(0x00, 0x31, 2, &p, 200 * ms),
        // Hold: the receiver is busy; the originator waits up to T4.
        cts(0x31, 0x00, 0, 0, 400 * ms),
        cts(0x31, 0x00, 2, 3, 400 * ms + timeout::T4_US - ms),
        dt(0x00, 0x31, 3, &p, 1_500 * ms),
        dt(0x00, 0x31, 4, &p, 1_550 * ms),
        cts(0x31, 0x00, 2, 5, 1_700 * ms),
        dt(0x00, 0x31, 5, &p, 1_750 * ms),
        dt(0x00, 0x31, 6, &p, 1_800 * ms),
    ];
    let mut t = Transport::new();
    let got = feed(&mut t, &frames);
    assert_eq!(got.len(), 1, "{:?}", t.stats);
    assert_eq!(got[0].data, p);
    assert_eq!(
        (got[0].source, got[0].destination, got[0].pgn),
        (0x00, 0x31, PGN)
    );
}

#[test]
fn a_cts_asking_again_for_packets_already_sent_takes_them_again() {
    let p = payload(20);
    let mut corrupt = p.clone();
    corrupt[8] ^= 0xFF;
    let frames = [
        rts(0x00, 0x31, 20, 0),
        cts(0x31, 0x00, 3, 1, 10_000),
        dt(0x00, 0x31, 1, &p, 20_000),
        dt(0x00, 0x31, 2, &corrupt, 30_000),
        // The receiver wants packet 2 again (and 3).
        cts(0x31, 0x00, 2, 2, 40_000),
        dt(0x00, 0x31, 2, &p, 50_000),
        dt(0x00, 0x31, 3, &p, 60_000),
    ];
    let mut t = Transport::new();
    let got = feed(&mut t, &frames);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, p);
}

#[test]
fn data_before_any_cts_or_outside_its_window_is_an_error() {
    let p = payload(20);
    let mut t = Transport::new();
    assert!(feed(
        &mut t,
        &[rts(0x00, 0x31, 20, 0), dt(0x00, 0x31, 1, &p, 10_000)]
    )
    .is_empty());
    assert_eq!(t.stats.errors, 1);
    let mut t = Transport::new();
    let frames = [
        rts(0x00, 0x31, 20, 0),
        cts(0x31, 0x00, 1, 1, 10_000),
        dt(0x00, 0x31, 1, &p, 20_000),
        dt(0x00, 0x31, 2, &p, 30_000),
    ];
    assert!(feed(&mut t, &frames).is_empty());
    assert_eq!(t.stats.errors, 1);
    assert_eq!(t.open_sessions(), 0);
}

#[test]
fn each_step_of_a_session_times_out_at_its_own_limit() {
    let p = payload(20);
    let cases: [(&str, Vec<CanFrame>, u64); 4] = [
        (
            "T3: RTS without a CTS",
            vec![rts(0, 0x31, 20, 0)],
            timeout::T3_US,
        ),
        (
            "T2: CTS without data",
            vec![rts(0, 0x31, 20, 0), cts(0x31, 0, 3, 1, 0)],
            timeout::T2_US,
        ),
        (
            "T1: between packets of a window",
            vec![
                rts(0, 0x31, 20, 0),
                cts(0x31, 0, 3, 1, 0),
                dt(0, 0x31, 1, &p, 0),
            ],
            timeout::T1_US,
        ),
        (
            "T4: a hold without the CTS that resumes",
            vec![rts(0, 0x31, 20, 0), cts(0x31, 0, 0, 0, 0)],
            timeout::T4_US,
        ),
    ];
    for (what, frames, limit) in cases {
        let mut t = Transport::new();
        feed(&mut t, &frames);
        t.expire(limit);
        assert_eq!(t.stats.timed_out, 0, "{what}: still open at the limit");
        t.expire(limit + 1);
        assert_eq!(t.stats.timed_out, 1, "{what}: dropped just after it");
    }
}

#[test]
fn an_abort_from_either_side_ends_the_session() {
    let p = PGN.to_le_bytes();
    for from_receiver in [false, true] {
        let mut t = Transport::new();
        let (a, b) = if from_receiver {
            (0x31, 0x00)
        } else {
            (0x00, 0x31)
        };
        let abort = cm(a, b, [0xFF, 3, 0xFF, 0xFF, 0xFF, p[0], p[1], p[2]], 20_000);
        feed(
            &mut t,
            &[rts(0x00, 0x31, 20, 0), cts(0x31, 0x00, 3, 1, 10_000), abort],
        );
        assert_eq!((t.stats.aborted, t.open_sessions()), (1, 0));
    }
}

#[test]
fn bam_sessions_from_twenty_sources_interleaved_all_complete() {
    let mut frames = Vec::new();
    for sa in 0..20u8 {
        let codes: Vec<enc::Dtc> = (0..u32::from(sa) + 2)
            .map(|i| enc::Dtc {
                spn: 500 + i,
                fmi: 3,
                oc: 1,
            })
            .collect();
        frames.extend(enc::broadcast(
            6,
            enc::PGN_DM1,
            sa,
            &enc::dm1_payload(0x40, &codes),
            u64::from(sa) * 1_000,
            50_000,
        ));
    }
    frames.sort_by_key(|f| f.timestamp_us);
    let mut d = J1939Decoder::new();
    let mut got = Vec::new();
    for f in &frames {
        d.decode(f, |x| {
            if let Decoded::Dm1 { source, dm1 } = x {
                got.push((source, dm1.codes.len()));
            }
        });
    }
    got.sort();
    let want: Vec<(u8, usize)> = (0..20u8).map(|sa| (sa, usize::from(sa) + 2)).collect();
    assert_eq!(got, want);
    assert_eq!(d.transport.stats.errors, 0);
}

#[test]
fn dm1_with_40_codes_over_bam_decodes_every_code() {
    let codes: Vec<enc::Dtc> = (0..40u32)
        .map(|i| enc::Dtc {
            spn: 0x7_0000 + i * 1000,
            fmi: (i % 32) as u8,
            oc: (i % 127) as u8,
        })
        .collect();
    let frames = enc::broadcast(
        6,
        enc::PGN_DM1,
        0x00,
        &enc::dm1_payload(0x44, &codes),
        0,
        60_000,
    );
    let mut d = J1939Decoder::new();
    let mut got = None;
    for f in &frames {
        d.decode(f, |x| {
            if let Decoded::Dm1 { dm1, .. } = x {
                got = Some(dm1);
            }
        });
    }
    let dm1 = got.expect("complete");
    assert_eq!(dm1.codes.len(), 40);
    for (c, e) in dm1.codes.iter().zip(&codes) {
        assert_eq!((c.spn, c.fmi, c.oc), (e.spn, e.fmi, e.oc));
    }
}

#[test]
fn dm1_lamps_flash_and_old_conversion_method() {
    // MIL on and flashing fast, red stop off, amber on, protect not available;
    // one code in version-4 order, one with the conversion-method bit (version 1:
    // SPN most significant bit first) for SPN 190.
    let spn = 190u32;
    let old = [
        (spn >> 11) as u8,
        (spn >> 3) as u8,
        ((spn & 7) << 5) as u8 | 2,
        0x80 | 5,
    ];
    let data = [
        0x47, 0x7F, 0xBE, 0x00, 0x03, 0x01, old[0], old[1], old[2], old[3],
    ];
    let dm1 = decode_dm1(&data).expect("dm1");
    assert_eq!(
        dm1.codes,
        vec![
            Dtc {
                spn: 190,
                fmi: 3,
                oc: 1
            },
            Dtc {
                spn: 190,
                fmi: 2,
                oc: 5
            }
        ]
    );
    assert_eq!(dm1.old_conversion, 1);
    let l = dm1.lamp_status();
    assert_eq!(
        (l.malfunction, l.red_stop, l.amber_warning, l.protect),
        (Lamp::On, Lamp::Off, Lamp::On, Lamp::NotAvailable)
    );
    assert_eq!(
        (l.malfunction_flash, l.red_stop_flash),
        (Flash::Fast, Flash::Unavailable)
    );
    assert!(
        decode_dm1(&[0x00, 0xFF, 0, 0]).is_err(),
        "shorter than one code"
    );
    let none = decode_dm1(&[0x00, 0xFF, 0, 0, 0, 0, 0xFF, 0xFF]).expect("no codes");
    assert!(none.codes.is_empty());
}
