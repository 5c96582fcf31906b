//! The behaviour every backend's [`KioskStore`](super::kiosk::KioskStore) must
//! show. Each check takes a fresh, empty `Arc<dyn Storage>`; a backend runs them
//! all with [`conformance_kiosk_suite!`](crate::conformance_kiosk_suite).

use super::conformance::NOW;
use super::kiosk::{BlobRecord, ConflictResolution, LabelRecord, StoredSigningKey};
use super::{Storage, StorageError};
use fleet_protocol::custody::{CustodyAction, CustodyConflict, CustodyOp};
use fleet_protocol::label::{short_code, LabelKind};
use fleet_protocol::snapshot::{KioskPolicy, WalkUp};
use std::sync::Arc;
use uuid::Uuid;

fn candidate(seed: u8) -> StoredSigningKey {
    StoredSigningKey {
        secret: vec![seed; 32],
        public_key: format!("public-{seed}"),
        created_at_ms: NOW + i64::from(seed),
    }
}

fn label(kind: LabelKind, name: &str) -> LabelRecord {
    let id = Uuid::new_v4();
    LabelRecord {
        id,
        kind,
        name: name.into(),
        asset_id: None,
        slot: None,
        short_code: short_code(id),
        text: format!("TEXT-{id}"),
        expires_at_s: None,
        created_at_ms: NOW,
        revoked_at_ms: None,
    }
}

fn op(action: CustodyAction, kiosk: &str, at_ms: i64) -> CustodyOp {
    CustodyOp {
        op: action,
        kiosk: kiosk.into(),
        badge: Uuid::new_v4(),
        at_ms,
        event_id: Uuid::new_v4(),
    }
}

pub async fn a_tenant_keeps_the_first_signing_key_stored(storage: Arc<dyn Storage>) {
    let a = storage.create_tenant("a").await.unwrap().tenant_id;
    let b = storage.create_tenant("b").await.unwrap().tenant_id;
    let first = storage.tenant_signing_key(a, candidate(1)).await.unwrap();
    assert_eq!(first, candidate(1));
    let again = storage.tenant_signing_key(a, candidate(2)).await.unwrap();
    assert_eq!(
        again,
        candidate(1),
        "a racing second key does not replace the first"
    );
    assert_eq!(
        storage.tenant_signing_key(b, candidate(3)).await.unwrap(),
        candidate(3)
    );
}

pub async fn a_signing_secret_is_replaced_only_while_it_is_unchanged(storage: Arc<dyn Storage>) {
    let a = storage.create_tenant("a").await.unwrap().tenant_id;
    let b = storage.create_tenant("b").await.unwrap().tenant_id;
    assert_eq!(storage.stored_signing_key(a).await.unwrap(), None);
    storage.tenant_signing_key(a, candidate(1)).await.unwrap();
    storage.tenant_signing_key(b, candidate(1)).await.unwrap();
    let sealed = vec![9u8; 84];
    assert!(storage
        .replace_signing_secret(a, &candidate(1).secret, &sealed)
        .await
        .unwrap());
    assert!(
        !storage
            .replace_signing_secret(a, &candidate(1).secret, &[8u8; 84])
            .await
            .unwrap(),
        "a second sealer that read the old secret loses"
    );
    let stored = storage.stored_signing_key(a).await.unwrap().unwrap();
    assert_eq!(stored.secret, sealed);
    assert_eq!(stored.public_key, candidate(1).public_key);
    assert_eq!(
        storage.stored_signing_key(b).await.unwrap(),
        Some(candidate(1)),
        "another tenant's key is untouched"
    );
}

pub async fn labels_keep_their_fields_and_are_revoked_once(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("a").await.unwrap().tenant_id;
    let other = storage.create_tenant("b").await.unwrap().tenant_id;
    let van = label(LabelKind::Vehicle, "Van 7");
    let mut key = label(LabelKind::Key, "Van 7 key");
    key.asset_id = Some(van.id);
    key.slot = Some(4);
    key.expires_at_s = Some(2_000_000_000);
    let badge = label(LabelKind::Badge, "Ana Díaz");
    for l in [&van, &key, &badge] {
        storage.insert_label(t, l).await.unwrap();
    }
    assert_eq!(storage.label(t, key.id).await.unwrap(), Some(key.clone()));
    let listed = storage.list_labels(t).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed.contains(&van) && listed.contains(&badge));

    let mut same_code = label(LabelKind::Badge, "Copy");
    same_code.short_code = badge.short_code.clone();
    assert!(matches!(
        storage.insert_label(t, &same_code).await,
        Err(StorageError::Conflict(_))
    ));
    assert!(matches!(
        storage.insert_label(t, &badge).await,
        Err(StorageError::Conflict(_))
    ));

    let revoked = storage
        .revoke_label(t, badge.id, NOW + 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revoked.revoked_at_ms, Some(NOW + 5));
    let again = storage
        .revoke_label(t, badge.id, NOW + 9)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        again.revoked_at_ms,
        Some(NOW + 5),
        "the first revocation stands"
    );

    assert_eq!(storage.label(other, badge.id).await.unwrap(), None);
    assert!(storage.list_labels(other).await.unwrap().is_empty());
    assert_eq!(
        storage.revoke_label(other, van.id, NOW).await.unwrap(),
        None
    );
    assert_eq!(
        storage
            .label(t, van.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at_ms,
        None,
        "another tenant cannot revoke"
    );
}

pub async fn the_kiosk_policy_defaults_until_set(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("a").await.unwrap().tenant_id;
    let other = storage.create_tenant("b").await.unwrap().tenant_id;
    assert_eq!(
        storage.kiosk_policy(t).await.unwrap(),
        KioskPolicy::default()
    );
    let p = KioskPolicy {
        walk_up: WalkUp::Queue,
        grace_minutes: 5,
        max_checkout_hours: 8,
    };
    storage.set_kiosk_policy(t, p, NOW).await.unwrap();
    assert_eq!(storage.kiosk_policy(t).await.unwrap(), p);
    let p2 = KioskPolicy {
        walk_up: WalkUp::Allow,
        ..p
    };
    storage.set_kiosk_policy(t, p2, NOW + 1).await.unwrap();
    assert_eq!(storage.kiosk_policy(t).await.unwrap(), p2);
    assert_eq!(
        storage.kiosk_policy(other).await.unwrap(),
        KioskPolicy::default()
    );
}

pub async fn custody_conflicts_are_recorded_once_and_resolved_once(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("a").await.unwrap().tenant_id;
    let other = storage.create_tenant("b").await.unwrap().tenant_id;
    let asset = Uuid::new_v4();
    let first = op(CustodyAction::CheckOut, "kiosk-a", NOW);
    let second = op(CustodyAction::CheckOut, "kiosk-b", NOW + 10);
    let conflict = CustodyConflict {
        first: first.clone(),
        second: second.clone(),
    };
    let new = storage
        .record_custody(
            t,
            asset,
            Some(second.clone()),
            2,
            std::slice::from_ref(&conflict),
            NOW + 20,
        )
        .await
        .unwrap();
    assert_eq!(new.len(), 1);
    assert_eq!((&new[0].first, &new[0].second), (&first, &second));
    let again = storage
        .record_custody(t, asset, Some(second.clone()), 2, &[conflict], NOW + 30)
        .await
        .unwrap();
    assert!(again.is_empty(), "a known conflict is not raised again");

    let holders = storage.custody_holders(t).await.unwrap();
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].asset_id, asset);
    assert_eq!(holders[0].holder, Some(second.clone()));
    assert_eq!(holders[0].updated_at_ms, NOW + 30);
    assert_eq!(storage.custody_conflicts(t, false).await.unwrap(), new);
    assert!(storage.custody_holders(other).await.unwrap().is_empty());
    assert!(storage
        .custody_conflicts(other, true)
        .await
        .unwrap()
        .is_empty());

    let resolution = ConflictResolution {
        holder_badge: Some(second.badge),
        note: "kiosk-a's driver left it at the gate".into(),
        resolved_by: Some(Uuid::new_v4()),
        resolved_at_ms: NOW + 40,
    };
    assert_eq!(
        storage
            .resolve_custody_conflict(other, new[0].id, resolution.clone())
            .await
            .unwrap(),
        None
    );
    let resolved = storage
        .resolve_custody_conflict(t, new[0].id, resolution.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resolved.resolution, Some(resolution.clone()));
    assert!(matches!(
        storage
            .resolve_custody_conflict(t, new[0].id, resolution)
            .await,
        Err(StorageError::Conflict(_))
    ));
    assert!(storage
        .custody_conflicts(t, false)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        storage.custody_conflicts(t, true).await.unwrap(),
        vec![resolved]
    );

    // Checked back in: no holder.
    storage
        .record_custody(t, asset, None, 3, &[], NOW + 50)
        .await
        .unwrap();
    assert_eq!(storage.custody_holders(t).await.unwrap()[0].holder, None);
}

pub async fn blobs_are_indexed_per_tenant_and_first_wins(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("a").await.unwrap().tenant_id;
    let other = storage.create_tenant("b").await.unwrap().tenant_id;
    let b = BlobRecord {
        sha256: "ab".repeat(32),
        size: 1234,
        content_type: "image/jpeg".into(),
        device_id: Some(Uuid::new_v4()),
        stored_at_ms: NOW,
    };
    storage.index_blob(t, &b).await.unwrap();
    let later = BlobRecord {
        stored_at_ms: NOW + 1,
        ..b.clone()
    };
    storage.index_blob(t, &later).await.unwrap();
    assert_eq!(storage.blob(t, &b.sha256).await.unwrap(), Some(b.clone()));
    assert_eq!(storage.blob(other, &b.sha256).await.unwrap(), None);
    assert_eq!(storage.blob(t, &"cd".repeat(32)).await.unwrap(), None);
}

#[macro_export]
macro_rules! conformance_kiosk_suite {
    (optional $make:expr) => {
        $crate::conformance_kiosk_suite!(@optional $make;
            a_tenant_keeps_the_first_signing_key_stored,
            a_signing_secret_is_replaced_only_while_it_is_unchanged,
            labels_keep_their_fields_and_are_revoked_once,
            the_kiosk_policy_defaults_until_set,
            custody_conflicts_are_recorded_once_and_resolved_once,
            blobs_are_indexed_per_tenant_and_first_wins,
        );
    };
    (@optional $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some((storage, _guard)) = $make.await else { return };
                $crate::storage::conformance_kiosk::$name(storage).await;
            }
        )*
    };
    ($make:expr) => {
        $crate::conformance_kiosk_suite!(@tests $make;
            a_tenant_keeps_the_first_signing_key_stored,
            a_signing_secret_is_replaced_only_while_it_is_unchanged,
            labels_keep_their_fields_and_are_revoked_once,
            the_kiosk_policy_defaults_until_set,
            custody_conflicts_are_recorded_once_and_resolved_once,
            blobs_are_indexed_per_tenant_and_first_wins,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (storage, _guard) = $make.await;
                $crate::storage::conformance_kiosk::$name(storage).await;
            }
        )*
    };
}
