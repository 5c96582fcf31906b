//! `X-Fleet-Signature: t=UNIX_SECONDS,v1=hex(hmac_sha256(secret, "t.body"))`.
//!
//! A receiver recomputes the HMAC over the timestamp, a dot and the raw body, and
//! refuses old timestamps so a captured delivery cannot be replayed later.

use sha2::{Digest, Sha256};

const BLOCK: usize = 64;

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The header value for `body` sent at `unix_s`.
pub fn signature_header(secret: &str, unix_s: i64, body: &[u8]) -> String {
    let mut message = format!("{unix_s}.").into_bytes();
    message.extend_from_slice(body);
    format!(
        "t={unix_s},v1={}",
        hex::encode(hmac_sha256(secret.as_bytes(), &message))
    )
}

/// Checks a header against `body`, as a receiver would; `max_age_s` bounds how old
/// `t` may be against `now_s`.
pub fn verify_header(secret: &str, header: &str, body: &[u8], now_s: i64, max_age_s: i64) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = Some(v),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if (now_s - t).abs() > max_age_s {
        return false;
    }
    let expected = signature_header(secret, t, body);
    let expected = expected.rsplit("v1=").next().unwrap_or_default();
    // Compare without an early exit.
    expected.len() == v1.len()
        && expected
            .bytes()
            .zip(v1.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_test_cases() {
        // Test case 2: short key.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block size is hashed first.
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn a_signature_verifies_only_for_its_body_secret_and_time() {
        let h = signature_header("whsec_1", 1_700_000_000, b"{\"a\":1}");
        assert!(h.starts_with("t=1700000000,v1="), "{h}");
        assert!(verify_header(
            "whsec_1",
            &h,
            b"{\"a\":1}",
            1_700_000_100,
            300
        ));
        assert!(!verify_header(
            "whsec_1",
            &h,
            b"{\"a\":2}",
            1_700_000_100,
            300
        ));
        assert!(!verify_header(
            "whsec_2",
            &h,
            b"{\"a\":1}",
            1_700_000_100,
            300
        ));
        assert!(!verify_header(
            "whsec_1",
            &h,
            b"{\"a\":1}",
            1_700_001_000,
            300
        ));
        assert!(!verify_header("whsec_1", "v1=00", b"", 0, 300));
    }
}
