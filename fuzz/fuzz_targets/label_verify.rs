//! Any text as a scanned QR label: verifying it must never panic, and a label it
//! accepts must be exactly what the tenant key signs for that label — so no two
//! texts pass for one label, and nothing unsigned gets through.
#![no_main]

use ed25519_dalek::SigningKey;
use fleet_protocol::label::{self, TenantTrust};
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

/// The key the seed corpus was signed with (`cargo run --example write_kiosk_seeds`).
const SEED: [u8; 32] = [7; 32];
const NOW_S: i64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let key = SigningKey::from_bytes(&SEED);
    let trust = TenantTrust::new(Uuid::from_u128(7), key.verifying_key());
    match label::verify_at(text, &trust, NOW_S) {
        Ok(l) => {
            assert_eq!(l.sign(&key), text.trim_end_matches(['\r', '\n']));
            if let Some(exp) = l.expires_at_s {
                assert!(i64::from(exp) >= NOW_S);
            }
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            assert!(!e.code().is_empty());
        }
    }
});
