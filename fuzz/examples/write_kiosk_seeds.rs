//! Writes the seed corpora of `label_verify` and `snapshot_verify`: labels of
//! every kind with and without an expiry, and snapshots (wire form, and bare
//! bodies for the signed-body mode), all signed with the targets' fixed key.
//!
//! `cargo run --example write_kiosk_seeds` (from `fuzz/`).

use ed25519_dalek::SigningKey;
use fleet_protocol::label::{short_code, Label, LabelKind};
use fleet_protocol::snapshot::{
    Snapshot, SnapshotAsset, SnapshotBadge, SnapshotKey, SnapshotReservation, WalkUp,
};
use std::path::Path;
use uuid::Uuid;

const NOW_MS: i64 = 1_800_000_000_000;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("writing a seed");
}

fn main() {
    let key = SigningKey::from_bytes(&[7; 32]);
    let tenant = Uuid::from_u128(7);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");

    let labels = root.join("label_verify");
    std::fs::create_dir_all(&labels).unwrap();
    for (i, kind) in LabelKind::ALL.into_iter().enumerate() {
        let id = Uuid::from_u128(0x1000 + i as u128);
        let plain = Label::new(kind, id);
        write(&labels, &format!("{kind}"), plain.sign(&key).as_bytes());
        let expiring = Label {
            expires_at_s: Some(1_900_000_000),
            ..plain
        };
        write(
            &labels,
            &format!("{kind}_expiring"),
            expiring.sign(&key).as_bytes(),
        );
    }
    let expired = Label {
        expires_at_s: Some(1_000),
        ..Label::new(LabelKind::Badge, Uuid::from_u128(9))
    };
    write(&labels, "badge_expired", expired.sign(&key).as_bytes());
    let foreign = Label::new(LabelKind::Key, Uuid::from_u128(10));
    write(
        &labels,
        "key_foreign_tenant",
        foreign.sign(&SigningKey::from_bytes(&[8; 32])).as_bytes(),
    );

    let snaps = root.join("snapshot_verify");
    std::fs::create_dir_all(&snaps).unwrap();
    let van = Uuid::from_u128(0x2000);
    let badge = Uuid::from_u128(0x2001);
    let mut s = Snapshot::empty(tenant, "north", NOW_MS - 60_000, NOW_MS + 3_600_000);
    s.policy.walk_up = WalkUp::Queue;
    s.badges.push(SnapshotBadge {
        id: badge,
        driver_name: "Ana Díaz".into(),
        revoked: false,
    });
    s.badges.push(SnapshotBadge {
        id: Uuid::from_u128(0x2002),
        driver_name: "Revoked Rae".into(),
        revoked: true,
    });
    s.keys.push(SnapshotKey {
        id: Uuid::from_u128(0x2003),
        asset: van,
        slot: 4,
        revoked: false,
    });
    s.assets.push(SnapshotAsset {
        id: van,
        kind: LabelKind::Vehicle,
        name: "Van 7".into(),
        short_code: short_code(van),
        unsafe_defect: true,
        odometer_km: Some(12_345.5),
        odometer_at_ms: Some(NOW_MS - 100_000),
        fuel_pct: Some(62.25),
        fuel_at_ms: Some(NOW_MS - 100_000),
    });
    s.reservations.push(SnapshotReservation {
        id: Uuid::from_u128(0x2004),
        vehicle: van,
        badge,
        start_ms: NOW_MS,
        end_ms: NOW_MS + 7_200_000,
    });
    s.short_codes.insert(short_code(van), van);
    let signed = s.sign(&key);
    // Mode byte: even = wire form, odd = a body the key signs as it is.
    write(
        &snaps,
        "wire_full",
        &[&[0u8][..], &signed.to_json()].concat(),
    );
    write(
        &snaps,
        "wire_full_held_newer",
        &[&[2u8][..], &signed.to_json()].concat(),
    );
    write(
        &snaps,
        "body_full",
        &[&[1u8][..], signed.body.as_bytes()].concat(),
    );
    let empty = Snapshot::empty(tenant, "default", NOW_MS, NOW_MS + 1);
    write(
        &snaps,
        "wire_empty",
        &[&[0u8][..], &empty.sign(&key).to_json()].concat(),
    );
    write(
        &snaps,
        "body_empty",
        &[&[1u8][..], empty.sign(&key).body.as_bytes()].concat(),
    );
    println!("seeds written under {}", root.display());
}
