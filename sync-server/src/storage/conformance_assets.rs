//! The behaviour every backend's [`AssetStore`](super::assets::AssetStore) must
//! show. Each check takes a fresh, empty `Arc<dyn Storage>`; a backend runs them
//! all with [`conformance_assets_suite!`](crate::conformance_assets_suite).

use super::access::SettingsPatch;
use super::assets::{Asset, AssetFields, AssetFilter, AssetKind, AssetUpsert, RecordedRequest};
use super::conformance::NOW;
use super::{Storage, StorageError};
use std::sync::Arc;
use uuid::Uuid;

fn vehicle(name: &str, vin: Option<&str>) -> Asset {
    Asset::new(
        Uuid::new_v4(),
        AssetFields {
            kind: Some(AssetKind::Vehicle),
            name: name.into(),
            make: Some("Ford".into()),
            model: Some("Transit".into()),
            vin: vin.map(Into::into),
            plate: Some(format!("PL-{name}")),
            vehicle_group: Some("vans".into()),
            home_yard: Some("north".into()),
            purchase_price_cents: Some(3_500_000),
            purchase_date: Some("2024-03-01".into()),
            odometer_km: Some(12_000.5),
            ..AssetFields::default()
        },
        NOW,
    )
}

fn all() -> AssetFilter {
    AssetFilter {
        limit: 100,
        ..AssetFilter::default()
    }
}

pub async fn assets_keep_their_fields_and_stay_in_their_tenant(storage: Arc<dyn Storage>) {
    let a = storage.create_tenant("a").await.unwrap().tenant_id;
    let b = storage.create_tenant("b").await.unwrap().tenant_id;
    let mut van = vehicle("van 1", Some("1FTBW3XM0HKA00001"));
    van.device_id = Some(Uuid::new_v4());
    storage.create_asset(a, &van).await.unwrap();
    assert_eq!(storage.asset(a, van.id).await.unwrap(), Some(van.clone()));
    assert_eq!(storage.asset(b, van.id).await.unwrap(), None);
    assert!(storage.list_assets(b, &all()).await.unwrap().is_empty());
    assert_eq!(
        storage
            .asset_for_device(a, van.device_id.unwrap())
            .await
            .unwrap(),
        Some(van.clone())
    );
    assert_eq!(
        storage
            .asset_for_device(b, van.device_id.unwrap())
            .await
            .unwrap(),
        None
    );

    let again = storage.create_asset(a, &van).await.unwrap_err();
    assert!(matches!(again, StorageError::Conflict(_)), "{again:?}");
    let mut same_vin = vehicle("van 2", Some("1FTBW3XM0HKA00001"));
    let err = storage.create_asset(a, &same_vin).await.unwrap_err();
    assert!(
        matches!(err, StorageError::Conflict(ref m) if m.contains("VIN")),
        "{err:?}"
    );
    same_vin.vin = None;
    same_vin.device_id = van.device_id;
    let err = storage.create_asset(a, &same_vin).await.unwrap_err();
    assert!(
        matches!(err, StorageError::Conflict(ref m) if m.contains("gateway")),
        "{err:?}"
    );
    // Another tenant may use the same VIN.
    storage
        .create_asset(b, &vehicle("theirs", Some("1FTBW3XM0HKA00001")))
        .await
        .unwrap();
}

pub async fn listing_filters_and_pages_in_name_order(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("t").await.unwrap().tenant_id;
    let mut made = Vec::new();
    for (i, name) in ["delta", "alpha", "charlie", "bravo", "echo"]
        .iter()
        .enumerate()
    {
        let mut a = vehicle(name, None);
        if i % 2 == 0 {
            a.kind = AssetKind::Trailer;
            a.vehicle_group = Some("trailers".into());
            a.home_yard = Some("south".into());
        }
        storage.create_asset(t, &a).await.unwrap();
        made.push(a);
    }
    let names = |v: Vec<Asset>| v.into_iter().map(|a| a.name).collect::<Vec<_>>();
    let page1 = storage
        .list_assets(t, &AssetFilter { limit: 2, ..all() })
        .await
        .unwrap();
    assert_eq!(names(page1.clone()), ["alpha", "bravo"]);
    let last = page1.last().unwrap();
    let page2 = storage
        .list_assets(
            t,
            &AssetFilter {
                limit: 2,
                after: Some((last.name.clone(), last.id)),
                ..all()
            },
        )
        .await
        .unwrap();
    assert_eq!(names(page2), ["charlie", "delta"]);

    let trailers = storage
        .list_assets(
            t,
            &AssetFilter {
                kind: Some(AssetKind::Trailer),
                ..all()
            },
        )
        .await
        .unwrap();
    assert_eq!(names(trailers), ["charlie", "delta", "echo"]);
    let vans = storage
        .list_assets(
            t,
            &AssetFilter {
                vehicle_group: Some("vans".into()),
                home_yard: Some("north".into()),
                ..all()
            },
        )
        .await
        .unwrap();
    assert_eq!(names(vans), ["alpha", "bravo"]);
    let q = storage
        .list_assets(
            t,
            &AssetFilter {
                q: Some("PL-CHAR".into()),
                ..all()
            },
        )
        .await
        .unwrap();
    assert_eq!(names(q), ["charlie"], "q matches the plate, any case");
    let like = storage
        .list_assets(
            t,
            &AssetFilter {
                q: Some("%".into()),
                ..all()
            },
        )
        .await
        .unwrap();
    assert!(like.is_empty(), "a % in q is a literal character");

    let retired = storage
        .retire_asset(t, made[1].id, NOW + 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(retired.retired_at_ms, Some(NOW + 5));
    let again = storage
        .retire_asset(t, made[1].id, NOW + 9)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.retired_at_ms, Some(NOW + 5), "retired once");
    assert!(!names(storage.list_assets(t, &all()).await.unwrap()).contains(&"alpha".into()));
    let with_retired = storage
        .list_assets(
            t,
            &AssetFilter {
                include_retired: true,
                ..all()
            },
        )
        .await
        .unwrap();
    assert_eq!(with_retired.len(), 5);
    assert_eq!(
        storage.retire_asset(t, Uuid::new_v4(), NOW).await.unwrap(),
        None
    );
}

pub async fn updates_replace_fields_and_meters_only_move_forward(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("t").await.unwrap().tenant_id;
    let van = vehicle("van", Some("VIN1"));
    storage.create_asset(t, &van).await.unwrap();
    let mut fields = van.fields();
    fields.name = "van renamed".into();
    fields.plate = None;
    let next = van.with_fields(fields, NOW + 10);
    let stored = storage.update_asset(t, &next).await.unwrap().unwrap();
    assert_eq!(stored.name, "van renamed");
    assert_eq!(stored.plate, None);
    assert_eq!(stored.created_at_ms, NOW);
    assert_eq!(stored.updated_at_ms, NOW + 10);
    assert_eq!(stored.meter_at_ms, Some(NOW), "meters untouched");
    let ghost = Asset::new(Uuid::new_v4(), van.fields(), NOW);
    assert_eq!(storage.update_asset(t, &ghost).await.unwrap(), None);

    let m = storage
        .set_meters(t, van.id, Some(12_500.0), Some(300.0), NOW + 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (m.odometer_km, m.engine_hours, m.meter_at_ms),
        (Some(12_500.0), Some(300.0), Some(NOW + 100))
    );
    let stale = storage
        .set_meters(t, van.id, Some(1.0), None, NOW + 50)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stale.odometer_km, Some(12_500.0), "an older reading loses");
    let hours_only = storage
        .set_meters(t, van.id, None, Some(301.0), NOW + 200)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (hours_only.odometer_km, hours_only.engine_hours),
        (Some(12_500.0), Some(301.0))
    );
}

pub async fn vehicles_past_the_tenant_limit_are_refused(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("t").await.unwrap().tenant_id;
    storage
        .update_tenant_settings(
            t,
            SettingsPatch {
                max_vehicles: Some(Some(1)),
                ..SettingsPatch::default()
            },
            NOW,
        )
        .await
        .unwrap();
    let first = vehicle("one", None);
    storage.create_asset(t, &first).await.unwrap();
    let err = storage
        .create_asset(t, &vehicle("two", None))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::LimitReached {
                limit: "max_vehicles",
                max: 1
            }
        ),
        "{err:?}"
    );
    let mut trailer = vehicle("trailer", None);
    trailer.kind = AssetKind::Trailer;
    storage.create_asset(t, &trailer).await.unwrap();
    let mut becomes_vehicle = trailer.clone();
    becomes_vehicle.kind = AssetKind::Vehicle;
    let err = storage.update_asset(t, &becomes_vehicle).await.unwrap_err();
    assert!(matches!(err, StorageError::LimitReached { .. }), "{err:?}");
    storage.retire_asset(t, first.id, NOW).await.unwrap();
    storage
        .create_asset(t, &vehicle("two", None))
        .await
        .unwrap();
}

pub async fn an_import_is_all_or_nothing(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("t").await.unwrap().tenant_id;
    let a = vehicle("a", Some("VIN-A"));
    let b = vehicle("b", Some("VIN-B"));
    storage.create_asset(t, &a).await.unwrap();
    storage.create_asset(t, &b).await.unwrap();

    // A swap of VINs between two rows of one file is fine.
    let mut a2 = a.clone();
    a2.vin = Some("VIN-B".into());
    let mut b2 = b.clone();
    b2.vin = Some("VIN-A".into());
    let c = vehicle("c", Some("VIN-C"));
    let counts = storage
        .import_assets(
            t,
            vec![
                AssetUpsert { asset: a2 },
                AssetUpsert { asset: b2 },
                AssetUpsert { asset: c.clone() },
            ],
        )
        .await
        .unwrap();
    assert_eq!((counts.created, counts.updated), (1, 2));
    let mut by_vin = storage.asset_ids_by_vin(t).await.unwrap();
    by_vin.sort();
    assert_eq!(
        by_vin,
        vec![
            ("VIN-A".to_string(), b.id),
            ("VIN-B".to_string(), a.id),
            ("VIN-C".to_string(), c.id)
        ]
    );

    // The second row collides with a stored VIN: nothing of the file is kept.
    let mut renamed = a.clone();
    renamed.name = "renamed".into();
    renamed.vin = Some("VIN-B".into());
    let clash = vehicle("d", Some("VIN-C"));
    let err = storage
        .import_assets(
            t,
            vec![
                AssetUpsert { asset: renamed },
                AssetUpsert {
                    asset: clash.clone(),
                },
            ],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Conflict(_)), "{err:?}");
    assert_eq!(storage.asset(t, a.id).await.unwrap().unwrap().name, "a");
    assert_eq!(storage.asset(t, clash.id).await.unwrap(), None);
}

pub async fn a_badge_belongs_to_one_user(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("t").await.unwrap().tenant_id;
    let (u1, u2, badge) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    storage.link_badge(t, u1, badge).await.unwrap();
    storage.link_badge(t, u1, badge).await.unwrap();
    let err = storage.link_badge(t, u2, badge).await.unwrap_err();
    assert!(matches!(err, StorageError::Conflict(_)), "{err:?}");
    assert_eq!(storage.badge_user(t, badge).await.unwrap(), Some(u1));
    assert_eq!(storage.user_badges(t).await.unwrap(), vec![(u1, badge)]);
    assert!(storage.unlink_badge(t, u1, badge).await.unwrap());
    assert!(!storage.unlink_badge(t, u1, badge).await.unwrap());
    assert_eq!(storage.badge_user(t, badge).await.unwrap(), None);
    storage.link_badge(t, u2, badge).await.unwrap();
}

pub async fn the_first_answer_for_an_idempotency_key_is_kept(storage: Arc<dyn Storage>) {
    let a = storage.create_tenant("a").await.unwrap().tenant_id;
    let b = storage.create_tenant("b").await.unwrap().tenant_id;
    let first = RecordedRequest {
        request_sha256: [1; 32],
        status: 201,
        response: "{\"first\":true}".into(),
    };
    assert_eq!(storage.recorded_request(a, "k").await.unwrap(), None);
    let kept = storage
        .record_request(a, "k", first.clone(), NOW)
        .await
        .unwrap();
    assert_eq!(kept, first);
    let racer = RecordedRequest {
        request_sha256: [2; 32],
        status: 409,
        response: "{}".into(),
    };
    assert_eq!(
        storage
            .record_request(a, "k", racer.clone(), NOW)
            .await
            .unwrap(),
        first
    );
    assert_eq!(storage.recorded_request(a, "k").await.unwrap(), Some(first));
    assert_eq!(storage.recorded_request(b, "k").await.unwrap(), None);
    assert_eq!(
        storage
            .record_request(b, "k", racer.clone(), NOW)
            .await
            .unwrap(),
        racer
    );
}

#[macro_export]
macro_rules! conformance_assets_suite {
    (optional $make:expr) => {
        $crate::conformance_assets_suite!(@run (optional) $make);
    };
    ($make:expr) => {
        $crate::conformance_assets_suite!(@run () $make);
    };
    (@run ($($opt:ident)?) $make:expr) => {
        $crate::conformance_assets_suite!(@each ($($opt)?) $make;
            assets_keep_their_fields_and_stay_in_their_tenant,
            listing_filters_and_pages_in_name_order,
            updates_replace_fields_and_meters_only_move_forward,
            vehicles_past_the_tenant_limit_are_refused,
            an_import_is_all_or_nothing,
            a_badge_belongs_to_one_user,
            the_first_answer_for_an_idempotency_key_is_kept,
        );
    };
    (@each (optional) $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some((storage, _guard)) = $make.await else { return };
                $crate::storage::conformance_assets::$name(storage).await;
            }
        )*
    };
    (@each () $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (storage, _guard) = $make.await;
                $crate::storage::conformance_assets::$name(storage).await;
            }
        )*
    };
}
