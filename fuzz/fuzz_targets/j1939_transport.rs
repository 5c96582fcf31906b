//! Any sequence of frames through the J1939 decoder: transport sessions from
//! many sources interleaved, aborted, out of order, late. The decoder must never
//! panic, never reassemble more than a transport message can hold, never follow
//! more sessions than its cap, and read every DM1 into at most one code per four
//! bytes.
#![no_main]

use fleet_agent::decode::j1939::{Decoded, J1939Decoder, MAX_SESSIONS, MAX_TP_SIZE};
use fleet_hal::CanFrame;
use libfuzzer_sys::fuzz_target;

/// Each frame is 12 bytes: a selector, source, destination, a time step (ms)
/// and 8 data bytes. The selector mostly picks TP.CM / TP.DT so sessions form.
fn frames(input: &[u8]) -> impl Iterator<Item = CanFrame> + '_ {
    let mut t = 0u64;
    input.chunks_exact(12).map(move |c| {
        let (sel, sa, da, step) = (c[0], c[1], c[2], c[3]);
        t += u64::from(step) * 1000;
        let pf: u32 = match sel % 4 {
            0 | 1 => 0xEC,
            2 => 0xEB,
            _ => 0xFE,
        };
        let ps = if pf == 0xFE { 0xCA } else { u32::from(da) };
        let id = u32::from(sel >> 5) << 26 | pf << 16 | ps << 8 | u32::from(sa);
        let mut data = [0u8; 8];
        data.copy_from_slice(&c[4..12]);
        // A short frame now and then.
        let len = if sel & 0x10 != 0 {
            usize::from(step % 9)
        } else {
            8
        };
        CanFrame::new(id, true, &data[..len], t).expect("29-bit id")
    })
}

fuzz_target!(|input: &[u8]| {
    let mut d = J1939Decoder::new();
    for f in frames(input) {
        d.decode(&f, |x| match x {
            Decoded::Message(m) => assert!(m.data.len() <= MAX_TP_SIZE),
            Decoded::Dm1 { dm1, .. } => assert!(dm1.codes.len() <= MAX_TP_SIZE / 4),
            Decoded::Spn { .. } => {}
        });
        assert!(d.transport.open_sessions() <= MAX_SESSIONS);
    }
});
