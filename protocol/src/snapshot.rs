//! The signed offline snapshot: what a yard kiosk needs to work with no network.
//!
//! The server builds a [`Snapshot`] for one yard, serializes it to JSON and signs
//! those exact bytes with the tenant key. On the wire and on disk it travels as a
//! [`SignedSnapshot`]: the JSON text itself (as a string, so no re-serialization
//! can change the signed bytes), the signing key's id and the signature. A kiosk
//! checks it with [`SignedSnapshot::verify`] and keeps a new one only if it is
//! newer than the one it holds ([`SignedSnapshot::verify_replacing`]), so an old
//! snapshot (with a badge that has since been revoked) cannot be replayed to it.

use crate::label::{KeyId, LabelKind, TenantTrust};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;
use uuid::Uuid;

pub const SNAPSHOT_VERSION: u32 = 1;
pub const PATH_SNAPSHOT: &str = "/sync/v1/snapshot";
pub const PATH_TENANT_KEY: &str = "/sync/v1/tenant-key";
const SIGNING_CONTEXT: &[u8] = b"fleet-snapshot-v1\n";
/// A snapshot body bigger than this is refused before parsing.
pub const MAX_BODY_LEN: usize = 8 * 1024 * 1024;

/// What a kiosk does when a driver walks up without a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WalkUp {
    Allow,
    #[default]
    Refuse,
    /// Record the request for a dispatcher to approve later.
    Queue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KioskPolicy {
    pub walk_up: WalkUp,
    /// How late a driver may come for a reservation before it is a no-show.
    pub grace_minutes: u32,
    /// How long a checkout may last before it is overdue.
    pub max_checkout_hours: u32,
}

impl Default for KioskPolicy {
    fn default() -> Self {
        KioskPolicy {
            walk_up: WalkUp::Refuse,
            grace_minutes: 15,
            max_checkout_hours: 24,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotReservation {
    pub id: Uuid,
    pub vehicle: Uuid,
    /// The driver's badge label id.
    pub badge: Uuid,
    pub start_ms: i64,
    pub end_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotBadge {
    pub id: Uuid,
    pub driver_name: String,
    pub revoked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotKey {
    /// The key tag's label id.
    pub id: Uuid,
    /// The asset or vehicle the key belongs to.
    pub asset: Uuid,
    /// Its slot in the key box.
    pub slot: u32,
    pub revoked: bool,
}

/// An asset or vehicle. Unknown fields are ignored, as in [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotAsset {
    pub id: Uuid,
    /// `asset` or `vehicle`.
    pub kind: LabelKind,
    pub name: String,
    pub short_code: String,
    /// An unsafe defect is open: the asset must not go out.
    pub unsafe_defect: bool,
    /// The odometer its gateway last reported (km), and when (Unix ms; the
    /// last event of the day the reading came in, so never older than the
    /// reading). `None` without a gateway or a reading.
    pub odometer_km: Option<f64>,
    pub odometer_at_ms: Option<i64>,
    /// The fuel level its gateway last reported (%), and when (Unix ms).
    pub fuel_pct: Option<f64>,
    pub fuel_at_ms: Option<i64>,
}

/// An open inspection defect, summarised for the kiosk's screen: what it is,
/// not the whole inspection. At most [`MAX_DEFECTS_PER_ASSET`] per asset, each
/// text at most [`MAX_DEFECT_TEXT`] characters (see [`SnapshotDefect::new`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotDefect {
    pub asset: Uuid,
    /// The checklist item it was found under (`brakes`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// What the inspector wrote.
    pub note: String,
    /// Unsafe: the asset is not handed out until it is repaired.
    #[serde(rename = "unsafe")]
    pub is_unsafe: bool,
}

/// Open defects carried per asset (unsafe ones first); the rest are left out.
pub const MAX_DEFECTS_PER_ASSET: usize = 5;
/// Characters kept of a defect's item and note.
pub const MAX_DEFECT_TEXT: usize = 120;

impl SnapshotDefect {
    /// A summary with its texts cut to [`MAX_DEFECT_TEXT`] characters (an
    /// ellipsis marks a cut).
    pub fn new(asset: Uuid, item: Option<&str>, note: &str, is_unsafe: bool) -> Self {
        SnapshotDefect {
            asset,
            item: item.map(clip).filter(|s| !s.is_empty()),
            note: clip(note),
            is_unsafe,
        }
    }

    /// `brakes: pedal soft`, or the note alone.
    pub fn summary(&self) -> String {
        match &self.item {
            Some(item) => format!("{item}: {}", self.note),
            None => self.note.clone(),
        }
    }
}

fn clip(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() <= MAX_DEFECT_TEXT {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(MAX_DEFECT_TEXT - 1).collect();
    out.push('…');
    out
}

/// The snapshot body. Fields added after the first release are optional and
/// left out when empty, so a snapshot without them is byte for byte what an
/// older server signed; unknown fields are ignored (the body is signed by the
/// tenant key, so they cannot be smuggled in), so a kiosk keeps working when a
/// newer server adds one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    pub tenant_id: Uuid,
    pub yard: String,
    pub generated_at_ms: i64,
    pub valid_until_ms: i64,
    pub policy: KioskPolicy,
    pub reservations: Vec<SnapshotReservation>,
    pub badges: Vec<SnapshotBadge>,
    pub keys: Vec<SnapshotKey>,
    pub assets: Vec<SnapshotAsset>,
    /// Printed short code (`K7Q-2F9-XM4`) to label id, for codes typed at a kiosk.
    pub short_codes: BTreeMap<String, Uuid>,
    /// Open inspection defects of the assets above, oldest first, unsafe ones
    /// first within an asset.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub defects: Vec<SnapshotDefect>,
}

impl Snapshot {
    /// An empty snapshot of a yard: the policy, and nothing in it yet.
    pub fn empty(tenant_id: Uuid, yard: &str, generated_at_ms: i64, valid_until_ms: i64) -> Self {
        Snapshot {
            version: SNAPSHOT_VERSION,
            tenant_id,
            yard: yard.to_owned(),
            generated_at_ms,
            valid_until_ms,
            policy: KioskPolicy::default(),
            reservations: Vec::new(),
            badges: Vec::new(),
            keys: Vec::new(),
            assets: Vec::new(),
            short_codes: BTreeMap::new(),
            defects: Vec::new(),
        }
    }

    pub fn badge(&self, id: Uuid) -> Option<&SnapshotBadge> {
        self.badges.iter().find(|b| b.id == id)
    }

    pub fn key(&self, id: Uuid) -> Option<&SnapshotKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    pub fn asset(&self, id: Uuid) -> Option<&SnapshotAsset> {
        self.assets.iter().find(|a| a.id == id)
    }

    /// The open defects listed for `asset`.
    pub fn defects_of(&self, asset: Uuid) -> impl Iterator<Item = &SnapshotDefect> {
        self.defects.iter().filter(move |d| d.asset == asset)
    }

    /// The label id behind a typed short code, in any spelling
    /// [`crate::label::normalize_short_code`] accepts.
    pub fn resolve_short_code(&self, typed: &str) -> Option<Uuid> {
        let code = crate::label::normalize_short_code(typed)?;
        self.short_codes.get(&code).copied()
    }

    /// Serializes and signs: the bytes signed are the bytes sent.
    pub fn sign(&self, key: &SigningKey) -> SignedSnapshot {
        SignedSnapshot::sign_body(
            serde_json::to_string(self).expect("a snapshot always serializes"),
            key,
        )
    }
}

/// Why a snapshot was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnapshotError {
    #[error("snapshot is malformed: {0}")]
    Malformed(String),
    #[error("snapshot format version {0} is not supported; update this kiosk")]
    UnsupportedVersion(u32),
    #[error("snapshot belongs to another fleet")]
    ForeignTenant,
    #[error("snapshot signature is invalid")]
    Forged,
    #[error("snapshot expired at {valid_until_ms} (unix ms)")]
    Expired { valid_until_ms: i64 },
    #[error("snapshot generated at {offered_ms} is not newer than the one held ({held_ms})")]
    Rollback { held_ms: i64, offered_ms: i64 },
}

impl SnapshotError {
    pub fn code(&self) -> &'static str {
        match self {
            SnapshotError::Malformed(_) => "snapshot_malformed",
            SnapshotError::UnsupportedVersion(_) => "snapshot_unsupported_version",
            SnapshotError::ForeignTenant => "snapshot_foreign_tenant",
            SnapshotError::Forged => "snapshot_forged",
            SnapshotError::Expired { .. } => "snapshot_expired",
            SnapshotError::Rollback { .. } => "snapshot_rollback",
        }
    }
}

/// A snapshot as sent and stored: the signed JSON text, the key id (hex) and the
/// Ed25519 signature (base64) over `fleet-snapshot-v1\n` + `body`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedSnapshot {
    pub body: String,
    pub key_id: String,
    pub signature: String,
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_CONTEXT.len() + body.len());
    m.extend_from_slice(SIGNING_CONTEXT);
    m.extend_from_slice(body);
    m
}

impl SignedSnapshot {
    /// Signs `body` as it is, whatever it says; [`Snapshot::sign`] is the usual
    /// way in. A signature says who wrote a body, not that it parses.
    pub fn sign_body(body: String, key: &SigningKey) -> Self {
        let sig = key.sign(&signed_message(body.as_bytes()));
        SignedSnapshot {
            body,
            key_id: KeyId::of(&key.verifying_key()).to_hex(),
            signature: B64.encode(sig.to_bytes()),
        }
    }

    /// Parses the wire or file form.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SnapshotError> {
        if bytes.len() > MAX_BODY_LEN * 2 {
            return Err(SnapshotError::Malformed("too large".into()));
        }
        serde_json::from_slice(bytes).map_err(|e| SnapshotError::Malformed(e.to_string()))
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("strings always serialize")
    }

    /// Checks the signature, the tenant and the validity window at `now_ms`.
    pub fn verify(&self, trust: &TenantTrust, now_ms: i64) -> Result<Snapshot, SnapshotError> {
        if self.key_id != trust.key_id().to_hex() {
            return Err(SnapshotError::ForeignTenant);
        }
        let sig = crate::auth::decode_signature(&self.signature)
            .map_err(|_| SnapshotError::Malformed("signature is not 64 bytes of base64".into()))?;
        if self.body.len() > MAX_BODY_LEN {
            return Err(SnapshotError::Malformed("too large".into()));
        }
        trust
            .public_key
            .verify(
                &signed_message(self.body.as_bytes()),
                &Signature::from_bytes(&sig.to_bytes()),
            )
            .map_err(|_| SnapshotError::Forged)?;
        // Signed by our tenant's key, so the body is the server's; still, read
        // the version before the rest so a newer format says so.
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let v: Version = serde_json::from_str(&self.body)
            .map_err(|e| SnapshotError::Malformed(e.to_string()))?;
        if v.version != SNAPSHOT_VERSION {
            return Err(SnapshotError::UnsupportedVersion(v.version));
        }
        let snap: Snapshot = serde_json::from_str(&self.body)
            .map_err(|e| SnapshotError::Malformed(e.to_string()))?;
        if snap.tenant_id != trust.tenant_id {
            return Err(SnapshotError::ForeignTenant);
        }
        if now_ms > snap.valid_until_ms {
            return Err(SnapshotError::Expired {
                valid_until_ms: snap.valid_until_ms,
            });
        }
        Ok(snap)
    }

    /// [`verify`](Self::verify), and refuses a snapshot that is not strictly
    /// newer than the one held (`held_generated_at_ms`).
    pub fn verify_replacing(
        &self,
        trust: &TenantTrust,
        now_ms: i64,
        held_generated_at_ms: Option<i64>,
    ) -> Result<Snapshot, SnapshotError> {
        let snap = self.verify(trust, now_ms)?;
        if let Some(held) = held_generated_at_ms {
            if snap.generated_at_ms <= held {
                return Err(SnapshotError::Rollback {
                    held_ms: held,
                    offered_ms: snap.generated_at_ms,
                });
            }
        }
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::label::short_code;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn trust(seed: u8) -> TenantTrust {
        TenantTrust::new(Uuid::from_u128(u128::from(seed)), key(seed).verifying_key())
    }

    fn sample(tenant: Uuid, generated_at_ms: i64) -> Snapshot {
        let mut s = Snapshot::empty(
            tenant,
            "north",
            generated_at_ms,
            generated_at_ms + 3_600_000,
        );
        let badge = Uuid::from_u128(10);
        let van = Uuid::from_u128(20);
        s.badges.push(SnapshotBadge {
            id: badge,
            driver_name: "Ana \"Sparks\" Díaz".into(),
            revoked: false,
        });
        s.assets.push(SnapshotAsset {
            id: van,
            kind: LabelKind::Vehicle,
            name: "Van 7".into(),
            short_code: short_code(van),
            unsafe_defect: false,
            odometer_km: Some(12_345.6),
            odometer_at_ms: Some(generated_at_ms - 1000),
            fuel_pct: None,
            fuel_at_ms: None,
        });
        s.keys.push(SnapshotKey {
            id: Uuid::from_u128(30),
            asset: van,
            slot: 4,
            revoked: false,
        });
        s.reservations.push(SnapshotReservation {
            id: Uuid::from_u128(40),
            vehicle: van,
            badge,
            start_ms: generated_at_ms,
            end_ms: generated_at_ms + 7_200_000,
        });
        s.short_codes.insert(short_code(van), van);
        s
    }

    #[test]
    fn a_signed_snapshot_survives_the_wire_and_verifies() {
        let snap = sample(trust(1).tenant_id, 1_000_000);
        let signed = snap.sign(&key(1));
        let wire = SignedSnapshot::from_json(&signed.to_json()).unwrap();
        assert_eq!(wire.verify(&trust(1), 1_000_001), Ok(snap.clone()));
        let van = snap.assets[0].id;
        let typed = short_code(van).to_lowercase().replace('-', "");
        assert_eq!(snap.resolve_short_code(&typed), Some(van));
    }

    #[test]
    fn forged_foreign_expired_rolled_back_and_malformed_snapshots_are_refused() {
        let t = trust(1);
        let snap = sample(t.tenant_id, 1_000_000);
        let signed = snap.sign(&key(1));

        let mut tampered = signed.clone();
        tampered.body = tampered
            .body
            .replace("\"revoked\":false", "\"revoked\":true ");
        assert_ne!(tampered.body, signed.body);
        assert_eq!(tampered.verify(&t, 1_000_001), Err(SnapshotError::Forged));

        assert_eq!(
            signed.verify(&trust(2), 1_000_001),
            Err(SnapshotError::ForeignTenant)
        );
        // Our key, but a body naming another tenant.
        let other = sample(Uuid::from_u128(99), 1_000_000).sign(&key(1));
        assert_eq!(
            other.verify(&t, 1_000_001),
            Err(SnapshotError::ForeignTenant)
        );

        assert_eq!(
            signed.verify(&t, snap.valid_until_ms + 1),
            Err(SnapshotError::Expired {
                valid_until_ms: snap.valid_until_ms
            })
        );
        assert_eq!(
            signed.verify_replacing(&t, 1_000_001, Some(1_000_000)),
            Err(SnapshotError::Rollback {
                held_ms: 1_000_000,
                offered_ms: 1_000_000
            })
        );
        assert!(signed
            .verify_replacing(&t, 1_000_001, Some(999_999))
            .is_ok());

        let mut future = snap.clone();
        future.version = 2;
        assert_eq!(
            future.sign(&key(1)).verify(&t, 1_000_001),
            Err(SnapshotError::UnsupportedVersion(2))
        );

        let mut bad_sig = signed.clone();
        bad_sig.signature = "nope".into();
        assert!(matches!(
            bad_sig.verify(&t, 1_000_001),
            Err(SnapshotError::Malformed(_))
        ));
        assert!(matches!(
            SignedSnapshot::from_json(b"{\"body\":1}"),
            Err(SnapshotError::Malformed(_))
        ));
    }

    #[test]
    fn a_snapshot_signed_before_defect_summaries_still_verifies_and_reads_none() {
        let t = trust(1);
        let snap = sample(t.tenant_id, 1_000_000);
        let signed = snap.sign(&key(1));
        assert!(
            !signed.body.contains("defects"),
            "an empty list is left out, so the body is the old format"
        );
        // A body as an older server wrote it, byte for byte, signed then.
        let old = SignedSnapshot::sign_body(signed.body.clone(), &key(1));
        assert_eq!(old.verify(&t, 1_000_001).unwrap().defects, vec![]);

        let mut with = snap.clone();
        let van = with.assets[0].id;
        with.defects.push(SnapshotDefect::new(
            van,
            Some("brakes"),
            &"pedal soft ".repeat(40),
            true,
        ));
        let back = with.sign(&key(1)).verify(&t, 1_000_001).unwrap();
        let d = back.defects_of(van).next().expect("listed");
        assert!(d.is_unsafe);
        assert_eq!(d.note.chars().count(), MAX_DEFECT_TEXT);
        assert!(d.note.ends_with('…'));
        assert!(d.summary().starts_with("brakes: pedal soft"));
        assert!(back.sign(&key(1)).body.contains("\"unsafe\":true"));
    }

    #[test]
    fn a_field_a_newer_server_adds_is_ignored_not_refused() {
        let t = trust(1);
        let body = sample(t.tenant_id, 1_000_000).sign(&key(1)).body;
        let newer = body
            .replacen('{', "{\"tow_bar\":true,", 1)
            .replace("\"unsafe_defect\"", "\"colour\":\"red\",\"unsafe_defect\"");
        assert_ne!(newer, body);
        let signed = SignedSnapshot::sign_body(newer, &key(1));
        assert_eq!(
            signed.verify(&t, 1_000_001),
            Ok(sample(t.tenant_id, 1_000_000))
        );
    }

    #[test]
    fn policy_defaults_to_refusing_walk_ups_with_fifteen_minutes_grace() {
        let p = KioskPolicy::default();
        assert_eq!(p.walk_up, WalkUp::Refuse);
        assert_eq!(p.grace_minutes, 15);
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"walk_up\":\"refuse\""), "{json}");
    }
}
