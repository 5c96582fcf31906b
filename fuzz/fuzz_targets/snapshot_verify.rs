//! Any bytes as a kiosk snapshot: the wire form must parse or be refused without
//! a panic, and so must any body the tenant key really signed (the first byte
//! picks which), since a signature says who wrote a body, not that it is sane.
//! Whatever verifies must survive a re-sign and verify unchanged.
#![no_main]

use ed25519_dalek::SigningKey;
use fleet_protocol::label::TenantTrust;
use fleet_protocol::snapshot::{SignedSnapshot, SnapshotError};
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

/// The key the seed corpus was signed with (`cargo run --example write_kiosk_seeds`).
const SEED: [u8; 32] = [7; 32];
const NOW_MS: i64 = 1_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let key = SigningKey::from_bytes(&SEED);
    let trust = TenantTrust::new(Uuid::from_u128(7), key.verifying_key());
    let signed = if mode & 1 == 0 {
        match SignedSnapshot::from_json(rest) {
            Ok(s) => s,
            Err(e) => {
                assert!(matches!(e, SnapshotError::Malformed(_)));
                return;
            }
        }
    } else {
        let Ok(body) = std::str::from_utf8(rest) else {
            return;
        };
        SignedSnapshot::sign_body(body.to_owned(), &key)
    };
    let held = (mode & 2 != 0).then_some(NOW_MS - 1000);
    match signed.verify_replacing(&trust, NOW_MS, held) {
        Ok(snap) => {
            assert!(snap.valid_until_ms >= NOW_MS);
            assert_eq!(snap.tenant_id, trust.tenant_id);
            let again = snap
                .sign(&key)
                .verify(&trust, NOW_MS)
                .expect("a re-signed snapshot verifies");
            assert_eq!(again, snap);
        }
        Err(e) => assert!(!e.code().is_empty()),
    }
});
