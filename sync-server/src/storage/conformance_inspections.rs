//! The behaviour every backend's
//! [`InspectionStore`](super::inspections::InspectionStore) must show. Each
//! check takes a fresh, empty `Arc<dyn Storage>`; a backend runs them all with
//! [`conformance_inspections_suite!`](crate::conformance_inspections_suite).

use super::conformance::NOW;
use super::inspections::{
    DefectRecord, DefectRepair, FormItem, InspectionForm, InspectionRecord, InspectionSource,
    ItemResult, Severity,
};
use super::{Storage, StorageError};
use std::sync::Arc;
use uuid::Uuid;

fn form(vehicle_type: &str, at_ms: i64) -> InspectionForm {
    InspectionForm {
        id: Uuid::new_v4(),
        vehicle_type: vehicle_type.into(),
        name: format!("{vehicle_type} pre-trip"),
        items: vec![
            FormItem {
                id: "brakes".into(),
                label: "Brakes".into(),
            },
            FormItem {
                id: "tyres".into(),
                label: "Tyres & wheels".into(),
            },
        ],
        created_at_ms: at_ms,
    }
}

fn defect(asset: Uuid, description: &str, severity: Severity, at_ms: i64) -> DefectRecord {
    DefectRecord {
        id: Uuid::new_v4(),
        inspection_id: Uuid::nil(),
        asset_id: asset,
        item: Some("brakes".into()),
        description: description.into(),
        severity,
        created_at_ms: at_ms,
        repair: None,
    }
}

fn inspection(asset: Uuid, at_ms: i64, defects: Vec<DefectRecord>) -> InspectionRecord {
    let id = Uuid::new_v4();
    InspectionRecord {
        id,
        asset_id: asset,
        form_id: None,
        source: InspectionSource::Kiosk,
        device_id: Some(Uuid::new_v4()),
        driver: "Dana Driver".into(),
        signature_sha256: Some("ab".repeat(32)),
        odometer_km: Some(12_345.5),
        notes: "pre-trip".into(),
        results: vec![
            ItemResult {
                item: "brakes".into(),
                ok: defects.is_empty(),
            },
            ItemResult {
                item: "tyres".into(),
                ok: true,
            },
        ],
        inspected_at_ms: at_ms,
        created_at_ms: at_ms + 5,
        defects: defects
            .into_iter()
            .map(|d| DefectRecord {
                inspection_id: id,
                ..d
            })
            .collect(),
    }
}

fn repair(mechanic: &str, at_ms: i64) -> DefectRepair {
    DefectRepair {
        mechanic: mechanic.into(),
        note: "pads replaced".into(),
        signature_sha256: Some("cd".repeat(32)),
        repaired_at_ms: at_ms,
    }
}

pub async fn forms_are_kept_per_tenant_with_their_items(storage: Arc<dyn Storage>) {
    let a = storage.create_tenant("a").await.unwrap().tenant_id;
    let b = storage.create_tenant("b").await.unwrap().tenant_id;
    let van_old = form("van", NOW);
    let van_new = form("van", NOW + 10);
    let truck = form("truck", NOW);
    for f in [&van_old, &van_new, &truck] {
        storage.insert_inspection_form(a, f).await.unwrap();
    }
    let err = storage.insert_inspection_form(a, &truck).await.unwrap_err();
    assert!(matches!(err, StorageError::Conflict(_)), "{err}");
    assert_eq!(
        storage.inspection_forms(a).await.unwrap(),
        vec![truck.clone(), van_new.clone(), van_old.clone()],
        "by vehicle type, then newest first"
    );
    assert_eq!(
        storage.inspection_form(a, van_old.id).await.unwrap(),
        Some(van_old.clone())
    );
    assert!(storage.inspection_forms(b).await.unwrap().is_empty());
    assert_eq!(storage.inspection_form(b, van_old.id).await.unwrap(), None);
}

pub async fn an_inspection_is_stored_once_with_its_defects(storage: Arc<dyn Storage>) {
    let a = storage.create_tenant("a").await.unwrap().tenant_id;
    let b = storage.create_tenant("b").await.unwrap().tenant_id;
    let asset = Uuid::new_v4();
    let first = inspection(
        asset,
        NOW,
        vec![
            defect(asset, "brake pedal soft", Severity::Unsafe, NOW),
            defect(asset, "scratch on door", Severity::Safe, NOW + 1),
        ],
    );
    let (stored, created) = storage.record_inspection(a, &first).await.unwrap();
    assert!(created);
    assert_eq!(stored, first);

    let mut resent = first.clone();
    resent.notes = "changed on the way".into();
    resent.defects.clear();
    let (again, created) = storage.record_inspection(a, &resent).await.unwrap();
    assert!(!created, "a resent inspection is not stored twice");
    assert_eq!(again, first, "the first submission stands");

    let other_asset = Uuid::new_v4();
    let later = inspection(other_asset, NOW + 100, vec![]);
    storage.record_inspection(a, &later).await.unwrap();
    assert_eq!(
        storage.list_inspections(a, None, 10).await.unwrap(),
        vec![later.clone(), first.clone()],
        "newest first"
    );
    assert_eq!(
        storage.list_inspections(a, Some(asset), 10).await.unwrap(),
        vec![first.clone()]
    );
    assert_eq!(storage.list_inspections(a, None, 1).await.unwrap().len(), 1);
    assert_eq!(
        storage.inspection(a, first.id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(storage.inspection(b, first.id).await.unwrap(), None);
    assert!(storage
        .list_inspections(b, None, 10)
        .await
        .unwrap()
        .is_empty());
}

pub async fn an_unsafe_defect_blocks_until_a_mechanic_signs_its_repair(storage: Arc<dyn Storage>) {
    let a = storage.create_tenant("a").await.unwrap().tenant_id;
    let b = storage.create_tenant("b").await.unwrap().tenant_id;
    let van = Uuid::new_v4();
    let truck = Uuid::new_v4();
    let brakes = defect(van, "brake pedal soft", Severity::Unsafe, NOW);
    let lights = defect(van, "left indicator out", Severity::Unsafe, NOW + 2);
    let scratch = defect(truck, "scratch on door", Severity::Safe, NOW + 1);
    storage
        .record_inspection(
            a,
            &inspection(van, NOW, vec![brakes.clone(), lights.clone()]),
        )
        .await
        .unwrap();
    storage
        .record_inspection(a, &inspection(truck, NOW + 1, vec![scratch.clone()]))
        .await
        .unwrap();

    assert_eq!(
        storage.open_unsafe_defects(a).await.unwrap(),
        vec![(van, "brake pedal soft; left indicator out".to_owned())],
        "a safe defect does not block"
    );
    assert!(storage.open_unsafe_defects(b).await.unwrap().is_empty());
    assert_eq!(storage.open_defects(a, Some(truck)).await.unwrap().len(), 1);
    assert_eq!(storage.open_defects(a, None).await.unwrap().len(), 3);

    assert_eq!(
        storage
            .repair_defect(b, brakes.id, &repair("Mo", NOW + 50))
            .await
            .unwrap(),
        None,
        "another tenant cannot sign the repair"
    );
    let fixed = storage
        .repair_defect(a, brakes.id, &repair("Mo", NOW + 50))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fixed.repair, Some(repair("Mo", NOW + 50)));
    let err = storage
        .repair_defect(a, brakes.id, &repair("Sam", NOW + 60))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Conflict(_)), "{err}");
    assert_eq!(
        storage.open_unsafe_defects(a).await.unwrap(),
        vec![(van, "left indicator out".to_owned())],
        "one open unsafe defect still blocks"
    );
    storage
        .repair_defect(a, lights.id, &repair("Mo", NOW + 70))
        .await
        .unwrap()
        .unwrap();
    assert!(storage.open_unsafe_defects(a).await.unwrap().is_empty());
    let open: Vec<Uuid> = storage
        .open_defects(a, None)
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(
        open,
        vec![scratch.id],
        "repaired defects are no longer open"
    );
    let stored = storage
        .list_inspections(a, Some(van), 10)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        stored.defects[0]
            .repair
            .as_ref()
            .map(|r| r.mechanic.as_str()),
        Some("Mo"),
        "the inspection shows who signed the repair"
    );
}

#[macro_export]
macro_rules! conformance_inspections_suite {
    (optional $make:expr) => {
        $crate::conformance_inspections_suite!(@optional $make;
            forms_are_kept_per_tenant_with_their_items,
            an_inspection_is_stored_once_with_its_defects,
            an_unsafe_defect_blocks_until_a_mechanic_signs_its_repair,
        );
    };
    (@optional $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some((storage, _guard)) = $make.await else { return };
                $crate::storage::conformance_inspections::$name(storage).await;
            }
        )*
    };
    ($make:expr) => {
        $crate::conformance_inspections_suite!(@tests $make;
            forms_are_kept_per_tenant_with_their_items,
            an_inspection_is_stored_once_with_its_defects,
            an_unsafe_defect_blocks_until_a_mechanic_signs_its_repair,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (storage, _guard) = $make.await;
                $crate::storage::conformance_inspections::$name(storage).await;
            }
        )*
    };
}
