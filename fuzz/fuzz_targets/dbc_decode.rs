//! Any DBC text and any frames through the DBC decoder. The input is the DBC
//! text, a NUL byte, then frames of 4 id bytes, a length byte and data. Loading
//! must fail cleanly or compile; decoding must never panic, must only report
//! signals that fit in the data, and an integer signal's value must be finite.
#![no_main]

use fleet_agent::decode::dbc::{Database, DecodeStats, Encoding};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let split = input.iter().position(|b| *b == 0).unwrap_or(input.len());
    let Ok(db) = Database::from_bytes(&input[..split]) else {
        return;
    };
    let mut rest = input.get(split + 1..).unwrap_or_default();
    let mut stats = DecodeStats::default();
    while rest.len() >= 5 {
        let raw = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let extended = raw & 0x8000_0000 != 0;
        let id = if extended {
            raw & 0x1FFF_FFFF
        } else {
            raw & 0x7FF
        };
        let len = usize::from(rest[4] % 65).min(rest.len() - 5);
        let data = &rest[5..5 + len];
        rest = &rest[5 + len..];
        db.decode_data(id, extended, data, &mut stats, |v| {
            assert!(v.signal.extract(data).is_some());
            if matches!(v.signal.encoding, Encoding::Unsigned | Encoding::Signed) {
                assert!(
                    v.value.is_finite()
                        || !v.signal.factor.is_finite()
                        || !v.signal.offset.is_finite()
                );
            }
            if let Some(c) = v.choice {
                assert!(v
                    .signal
                    .choices
                    .iter()
                    .any(|(k, n)| i128::from(*k) == v.raw && n == c));
            }
        });
    }
});
