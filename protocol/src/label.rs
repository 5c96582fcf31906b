//! Signed QR labels: asset and vehicle tags, key tags and driver badges.
//!
//! A label is a short binary payload signed by the tenant's Ed25519 key and
//! written in base45 (RFC 9285), whose 45 characters are exactly QR's
//! alphanumeric mode, so a label fits a small code at a low error-correction
//! cost. A kiosk verifies it offline against the tenant key it holds
//! ([`TenantTrust`]).
//!
//! Payload, version 1 (all integers big-endian):
//!
//! | bytes | field |
//! | --- | --- |
//! | 1 | version, `1` |
//! | 1 | kind (`1` asset, `2` vehicle, `3` key, `4` badge); bit `0x80` set when an expiry follows |
//! | 4 | tenant key id: the first 4 bytes of SHA-256 of the tenant's public key |
//! | 16 | the id of what the label names (asset, vehicle, key tag or badge) |
//! | 4 | expiry, unix seconds (only with bit `0x80`) |
//! | 64 | Ed25519 signature over `fleet-label-v1\n` followed by every byte above |
//!
//! That is 86 bytes (129 characters) without an expiry and 90 (135) with one.
//!
//! Every label also has a short human code (`K7Q-2F9-XM4`, [`short_code`]) printed
//! under the QR and typed at a kiosk when the camera fails; the offline snapshot
//! maps codes to ids.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use thiserror::Error;
use uuid::Uuid;

pub const LABEL_VERSION: u8 = 1;
/// Domain separation: a label signature can never pass for another message's.
const SIGNING_CONTEXT: &[u8] = b"fleet-label-v1\n";
const FLAG_EXPIRY: u8 = 0x80;
const KEY_ID_LEN: usize = 4;
const HEADER_LEN: usize = 1 + 1 + KEY_ID_LEN + 16;
const SIG_LEN: usize = 64;
/// The longest label text there is (with an expiry).
pub const MAX_TEXT_LEN: usize = (HEADER_LEN + 4 + SIG_LEN) / 2 * 3;

/// What a label names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelKind {
    Asset,
    Vehicle,
    Key,
    Badge,
}

impl LabelKind {
    pub const ALL: [LabelKind; 4] = [
        LabelKind::Asset,
        LabelKind::Vehicle,
        LabelKind::Key,
        LabelKind::Badge,
    ];

    fn code(self) -> u8 {
        match self {
            LabelKind::Asset => 1,
            LabelKind::Vehicle => 2,
            LabelKind::Key => 3,
            LabelKind::Badge => 4,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => LabelKind::Asset,
            2 => LabelKind::Vehicle,
            3 => LabelKind::Key,
            4 => LabelKind::Badge,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LabelKind::Asset => "asset",
            LabelKind::Vehicle => "vehicle",
            LabelKind::Key => "key",
            LabelKind::Badge => "badge",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        LabelKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for LabelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a label was refused. Each reason is one a kiosk screen can show as is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LabelError {
    #[error("not a fleet label: {0}")]
    Malformed(&'static str),
    #[error("label format version {0} is not supported; update this kiosk")]
    UnsupportedVersion(u8),
    #[error("label belongs to another fleet")]
    ForeignTenant,
    #[error("label signature is invalid: the label is forged or damaged")]
    Forged,
    #[error("label expired at unix time {expired_at_s}")]
    Expired { expired_at_s: u32 },
}

impl LabelError {
    /// A stable snake_case code for logs, events and the kiosk UI.
    pub fn code(&self) -> &'static str {
        match self {
            LabelError::Malformed(_) => "label_malformed",
            LabelError::UnsupportedVersion(_) => "label_unsupported_version",
            LabelError::ForeignTenant => "label_foreign_tenant",
            LabelError::Forged => "label_forged",
            LabelError::Expired { .. } => "label_expired",
        }
    }
}

/// The short id of a tenant's signing key carried in labels and snapshots.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl KeyId {
    pub fn of(key: &VerifyingKey) -> Self {
        let d = Sha256::digest(key.as_bytes());
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&d[..KEY_ID_LEN]);
        KeyId(id)
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.to_hex())
    }
}

/// What a device trusts: its tenant and that tenant's public signing key, as
/// handed over at enrollment.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TenantTrust {
    pub tenant_id: Uuid,
    pub public_key: VerifyingKey,
}

impl TenantTrust {
    pub fn new(tenant_id: Uuid, public_key: VerifyingKey) -> Self {
        TenantTrust {
            tenant_id,
            public_key,
        }
    }

    /// From the base64 public key of an enroll response or `/sync/v1/tenant-key`.
    pub fn from_b64(tenant_id: Uuid, public_key_b64: &str) -> Result<Self, crate::auth::AuthError> {
        Ok(TenantTrust::new(
            tenant_id,
            crate::auth::decode_public_key(public_key_b64)?,
        ))
    }

    pub fn key_id(&self) -> KeyId {
        KeyId::of(&self.public_key)
    }

    pub fn public_key_b64(&self) -> String {
        B64.encode(self.public_key.as_bytes())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustJson {
    tenant_id: Uuid,
    public_key: String,
}

impl Serialize for TenantTrust {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        TrustJson {
            tenant_id: self.tenant_id,
            public_key: self.public_key_b64(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for TenantTrust {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let j = TrustJson::deserialize(d)?;
        TenantTrust::from_b64(j.tenant_id, &j.public_key)
            .map_err(|_| serde::de::Error::custom("public_key is not an Ed25519 key in base64"))
    }
}

/// What a label says, once its signature checks out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Label {
    pub kind: LabelKind,
    /// The asset, vehicle, key tag or badge the label names.
    pub id: Uuid,
    /// After this (unix seconds) the label is refused.
    pub expires_at_s: Option<u32>,
}

impl Label {
    pub fn new(kind: LabelKind, id: Uuid) -> Self {
        Label {
            kind,
            id,
            expires_at_s: None,
        }
    }

    /// The QR text: the payload signed by `key`, in base45.
    pub fn sign(&self, key: &SigningKey) -> String {
        let mut bytes = Vec::with_capacity(HEADER_LEN + 4 + SIG_LEN);
        bytes.push(LABEL_VERSION);
        let flags = if self.expires_at_s.is_some() {
            FLAG_EXPIRY
        } else {
            0
        };
        bytes.push(self.kind.code() | flags);
        bytes.extend_from_slice(&KeyId::of(&key.verifying_key()).0);
        bytes.extend_from_slice(self.id.as_bytes());
        if let Some(exp) = self.expires_at_s {
            bytes.extend_from_slice(&exp.to_be_bytes());
        }
        let sig = key.sign(&signed_message(&bytes));
        bytes.extend_from_slice(&sig.to_bytes());
        base45_encode(&bytes)
    }

    /// The code printed under the QR.
    pub fn short_code(&self) -> String {
        short_code(self.id)
    }
}

fn signed_message(payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_CONTEXT.len() + payload.len());
    m.extend_from_slice(SIGNING_CONTEXT);
    m.extend_from_slice(payload);
    m
}

/// Checks a scanned label against the tenant key, at the system clock's time.
pub fn verify(text: &str, trust: &TenantTrust) -> Result<Label, LabelError> {
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    verify_at(text, trust, now_s)
}

/// Checks a scanned label against the tenant key at `now_s` (unix seconds).
///
/// The checks run in the order that gives the most useful reason: the text must
/// decode, be of a version this build knows, name this tenant's key, carry a good
/// signature and not have expired.
pub fn verify_at(text: &str, trust: &TenantTrust, now_s: i64) -> Result<Label, LabelError> {
    // Scanners and keyboard wedges often end a read with a line break.
    let text = text.trim_end_matches(['\r', '\n']);
    if text.is_empty() {
        return Err(LabelError::Malformed("empty"));
    }
    if text.len() > MAX_TEXT_LEN + 3 {
        return Err(LabelError::Malformed("too long"));
    }
    let bytes = base45_decode(text).ok_or(LabelError::Malformed("not base45 text"))?;
    let version = *bytes.first().ok_or(LabelError::Malformed("empty"))?;
    if version != LABEL_VERSION {
        return Err(LabelError::UnsupportedVersion(version));
    }
    let kind_byte = *bytes.get(1).ok_or(LabelError::Malformed("too short"))?;
    let kind = LabelKind::from_code(kind_byte & !FLAG_EXPIRY)
        .ok_or(LabelError::Malformed("unknown label kind"))?;
    let has_expiry = kind_byte & FLAG_EXPIRY != 0;
    let body_len = HEADER_LEN + if has_expiry { 4 } else { 0 };
    if bytes.len() != body_len + SIG_LEN {
        return Err(LabelError::Malformed("wrong length"));
    }
    let (body, sig) = bytes.split_at(body_len);
    if body[2..2 + KEY_ID_LEN] != trust.key_id().0 {
        return Err(LabelError::ForeignTenant);
    }
    let sig: [u8; SIG_LEN] = sig.try_into().expect("length checked above");
    trust
        .public_key
        .verify(&signed_message(body), &Signature::from_bytes(&sig))
        .map_err(|_| LabelError::Forged)?;
    let id = Uuid::from_slice(&body[2 + KEY_ID_LEN..HEADER_LEN]).expect("16 bytes");
    let expires_at_s = has_expiry.then(|| {
        u32::from_be_bytes(
            body[HEADER_LEN..HEADER_LEN + 4]
                .try_into()
                .expect("4 bytes"),
        )
    });
    if let Some(exp) = expires_at_s {
        if now_s > i64::from(exp) {
            return Err(LabelError::Expired { expired_at_s: exp });
        }
    }
    Ok(Label {
        kind,
        id,
        expires_at_s,
    })
}

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The human code of a label id: its first 45 bits in Crockford base32, as three
/// groups of three (`K7Q-2F9-XM4`). No I, L, O or U, so it reads aloud and types
/// without mix-ups. The server keeps codes unique within a tenant.
pub fn short_code(id: Uuid) -> String {
    let b = id.as_bytes();
    let bits = u64::from_be_bytes(b[..8].try_into().expect("8 bytes")) >> (64 - 45);
    let mut out = String::with_capacity(11);
    for i in 0..9 {
        if i == 3 || i == 6 {
            out.push('-');
        }
        let v = (bits >> (5 * (8 - i))) & 0x1f;
        out.push(CROCKFORD[v as usize] as char);
    }
    out
}

/// A typed short code in its printed form: case, spaces and hyphens do not
/// matter, and O, I and L are read as 0, 1 and 1. `None` when it cannot be one.
pub fn normalize_short_code(typed: &str) -> Option<String> {
    let mut chars = Vec::with_capacity(9);
    for c in typed.chars() {
        let c = c.to_ascii_uppercase();
        let c = match c {
            ' ' | '-' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c if c.is_ascii() && CROCKFORD.contains(&(c as u8)) => c,
            _ => return None,
        };
        chars.push(c);
    }
    if chars.len() != 9 {
        return None;
    }
    let mut out = String::with_capacity(11);
    for (i, c) in chars.into_iter().enumerate() {
        if i == 3 || i == 6 {
            out.push('-');
        }
        out.push(c);
    }
    Some(out)
}

const BASE45: &[u8; 45] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";

/// RFC 9285 base45.
pub fn base45_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(2) * 3);
    for pair in bytes.chunks(2) {
        let (mut n, digits) = match *pair {
            [a, b] => (usize::from(a) * 256 + usize::from(b), 3),
            [a] => (usize::from(a), 2),
            _ => unreachable!("chunks of 1 or 2"),
        };
        for _ in 0..digits {
            out.push(BASE45[n % 45] as char);
            n /= 45;
        }
    }
    out
}

/// RFC 9285 base45; `None` for a character outside the alphabet, a dangling
/// character or a group worth more than its bytes can hold.
pub fn base45_decode(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<usize> = text
        .bytes()
        .map(|c| BASE45.iter().position(|&a| a == c))
        .collect::<Option<_>>()?;
    let mut out = Vec::with_capacity(digits.len() / 3 * 2 + 1);
    for group in digits.chunks(3) {
        match *group {
            [c, d, e] => {
                let n = c + d * 45 + e * 45 * 45;
                if n > 0xffff {
                    return None;
                }
                out.push((n >> 8) as u8);
                out.push((n & 0xff) as u8);
            }
            [c, d] => {
                let n = c + d * 45;
                if n > 0xff {
                    return None;
                }
                out.push(n as u8);
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn trust(seed: u8) -> TenantTrust {
        TenantTrust::new(Uuid::from_u128(u128::from(seed)), key(seed).verifying_key())
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn base45_matches_the_rfc_examples() {
        assert_eq!(base45_encode(b"AB"), "BB8");
        assert_eq!(base45_encode(b"Hello!!"), "%69 VD92EX0");
        assert_eq!(base45_encode(b"base-45"), "UJCLQE7W581");
        assert_eq!(base45_decode("QED8WEX0").unwrap(), b"ietf!");
        assert_eq!(base45_decode("GGW"), None, "65536 does not fit two bytes");
        assert_eq!(base45_decode("A"), None);
        assert_eq!(
            base45_decode("ab"),
            None,
            "lower case is outside the alphabet"
        );
    }

    #[test]
    fn every_kind_round_trips_and_stays_short() {
        let k = key(1);
        for kind in LabelKind::ALL {
            for exp in [None, Some(NOW as u32 + 60)] {
                let label = Label {
                    kind,
                    id: Uuid::new_v4(),
                    expires_at_s: exp,
                };
                let text = label.sign(&k);
                assert!(text.len() <= MAX_TEXT_LEN, "{} chars", text.len());
                assert!(text.len() <= 135);
                assert_eq!(verify_at(&text, &trust(1), NOW), Ok(label));
                assert_eq!(
                    verify_at(&format!("{text}\r\n"), &trust(1), NOW),
                    Ok(label),
                    "a scanner's trailing line break is not part of the label"
                );
            }
        }
    }

    #[test]
    fn forged_foreign_expired_and_malformed_labels_are_refused_for_their_own_reason() {
        let label = Label {
            kind: LabelKind::Badge,
            id: Uuid::from_u128(7),
            expires_at_s: Some(NOW as u32),
        };
        let text = label.sign(&key(1));

        // Signed by a key that claims tenant 1's key id: forged.
        let mut bytes = base45_decode(&label.sign(&key(9))).unwrap();
        bytes[2..6].copy_from_slice(&trust(1).key_id().0);
        let forged = base45_encode(&bytes);
        assert_eq!(verify_at(&forged, &trust(1), NOW), Err(LabelError::Forged));

        assert_eq!(
            verify_at(&text, &trust(2), NOW),
            Err(LabelError::ForeignTenant)
        );
        assert_eq!(verify_at(&text, &trust(1), NOW), Ok(label));
        assert_eq!(
            verify_at(&text, &trust(1), NOW + 1),
            Err(LabelError::Expired {
                expired_at_s: NOW as u32
            })
        );
        assert_eq!(
            verify_at("hello", &trust(1), NOW),
            Err(LabelError::Malformed("not base45 text"))
        );
        assert!(matches!(
            verify_at("https://example.com/", &trust(1), NOW),
            Err(LabelError::Malformed(_))
        ));
        assert_eq!(
            verify_at("", &trust(1), NOW),
            Err(LabelError::Malformed("empty"))
        );

        let mut v2 = base45_decode(&text).unwrap();
        v2[0] = 2;
        assert_eq!(
            verify_at(&base45_encode(&v2), &trust(1), NOW),
            Err(LabelError::UnsupportedVersion(2))
        );

        let codes: std::collections::HashSet<_> = [
            LabelError::Malformed("x"),
            LabelError::UnsupportedVersion(2),
            LabelError::ForeignTenant,
            LabelError::Forged,
            LabelError::Expired { expired_at_s: 0 },
        ]
        .iter()
        .map(|e| e.code())
        .collect();
        assert_eq!(codes.len(), 5);
    }

    #[test]
    fn short_codes_are_three_groups_and_typing_slips_normalize() {
        let id = Uuid::parse_str("a3b1c2d4-0000-4000-8000-000000000000").unwrap();
        let code = short_code(id);
        assert_eq!(code.len(), 11);
        assert_eq!(&code[3..4], "-");
        assert_eq!(normalize_short_code(&code), Some(code.clone()));
        let typed = code.replace('-', " ").to_lowercase();
        assert_eq!(normalize_short_code(&typed), Some(code.clone()));
        assert_eq!(
            normalize_short_code("oil-10o-LLL"),
            Some("011-100-111".into())
        );
        assert_eq!(normalize_short_code("ABC-DEF"), None);
        assert_eq!(
            normalize_short_code("ABC-DEF-GHU"),
            None,
            "U is not Crockford"
        );
    }

    #[test]
    fn trust_serializes_as_tenant_and_base64_key() {
        let t = trust(3);
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.contains(&t.public_key_b64()));
        let back: TenantTrust = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
        assert!(serde_json::from_str::<TenantTrust>(
            r#"{"tenant_id":"00000000-0000-0000-0000-000000000001","public_key":"AAAA"}"#
        )
        .is_err());
    }

    fn any_label() -> impl Strategy<Value = Label> {
        (0usize..4, any::<u128>(), proptest::option::of(any::<u32>())).prop_map(|(k, id, exp)| {
            Label {
                kind: LabelKind::ALL[k],
                id: Uuid::from_u128(id),
                expires_at_s: exp,
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_label_round_trips(label in any_label()) {
            let text = label.sign(&key(1));
            prop_assert_eq!(verify_at(&text, &trust(1), 0), Ok(label));
        }

        #[test]
        fn every_changed_character_or_truncation_is_refused(
            label in any_label(),
            pos in any::<prop::sample::Index>(),
            with in 0usize..45,
            cut in any::<prop::sample::Index>(),
        ) {
            let text = label.sign(&key(1));
            let i = pos.index(text.len());
            let mut changed = text.clone().into_bytes();
            changed[i] = if BASE45[with] == changed[i] { b'a' } else { BASE45[with] };
            let changed = String::from_utf8(changed).unwrap();
            prop_assert!(verify_at(&changed, &trust(1), 0).is_err(), "{changed}");
            let truncated = &text[..cut.index(text.len())];
            prop_assert!(verify_at(truncated, &trust(1), 0).is_err());
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
            let _ = verify_at(&s, &trust(1), 0);
        }

        #[test]
        fn every_flipped_payload_bit_is_refused(label in any_label(), bit in 0usize..(90 * 8)) {
            let text = label.sign(&key(1));
            let mut bytes = base45_decode(&text).unwrap();
            let bit = bit % (bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_at(&base45_encode(&bytes), &trust(1), 0).is_err());
        }
    }
}
