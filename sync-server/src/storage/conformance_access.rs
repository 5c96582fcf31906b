//! The behaviour every backend's [`AccessStore`] must show. Each check takes a
//! fresh, empty `Arc<dyn Storage>`; a backend runs them all with
//! [`conformance_access_suite!`](crate::conformance_access_suite).

use super::access::{
    ActorKind, AuditEntry, AuditQuery, CostProfile, NewKey, NewUser, SettingsPatch, UserPatch,
};
use super::conformance::{enroll_one, NOW};
use super::{Storage, StorageError};
use crate::http::auth::{hash_key, mint_key, Capability, Role};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

fn new_key(role: Role) -> (String, NewKey) {
    let m = mint_key();
    (
        m.secret,
        NewKey {
            key_hash: m.hash,
            prefix: m.prefix,
            name: format!("{role} key"),
            role,
            scopes: None,
            user_id: None,
            created_by: None,
            expires_at_ms: None,
        },
    )
}

fn user(email: &str, role: Role) -> NewUser {
    NewUser {
        email: email.into(),
        name: "Dana".into(),
        role,
    }
}

pub async fn a_tenants_first_key_is_a_stored_admin_key(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("acme").await.unwrap();
    let auth = storage
        .key_by_hash(hash_key(&t.api_key))
        .await
        .unwrap()
        .expect("the first key is found by its hash");
    assert_eq!(auth.key.tenant_id, t.tenant_id);
    assert_eq!(auth.key.role, Role::Admin);
    assert!(t.api_key.starts_with(&auth.key.prefix));
    assert!(auth.key.revoked_at_ms.is_none() && auth.key.scopes.is_none());
    assert_eq!(
        storage.list_keys(t.tenant_id).await.unwrap(),
        vec![auth.key]
    );
    assert!(storage
        .key_by_hash(hash_key("fk_nope"))
        .await
        .unwrap()
        .is_none());
}

pub async fn keys_keep_their_role_scopes_expiry_and_revocation(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("acme").await.unwrap().tenant_id;
    let (secret, mut k) = new_key(Role::Dispatcher);
    k.scopes = Some(vec![Capability::ReadFleet, Capability::Custody]);
    k.expires_at_ms = Some(NOW + 60_000);
    let made = storage.create_key(t, k, NOW).await.unwrap();
    let found = storage
        .key_by_hash(hash_key(&secret))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.key, made);
    assert_eq!(
        found.key.scopes,
        Some(vec![Capability::ReadFleet, Capability::Custody])
    );
    assert_eq!(found.key.expires_at_ms, Some(NOW + 60_000));

    storage.touch_key(t, made.key_id, NOW + 5).await.unwrap();
    let revoked = storage.revoke_key(t, made.key_id, NOW + 10).await.unwrap();
    assert_eq!(revoked.revoked_at_ms, Some(NOW + 10));
    assert_eq!(revoked.last_used_ms, Some(NOW + 5));
    // Revoking again keeps the first time.
    let again = storage.revoke_key(t, made.key_id, NOW + 99).await.unwrap();
    assert_eq!(again.revoked_at_ms, Some(NOW + 10));
    let found = storage
        .key_by_hash(hash_key(&secret))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.key.revoked_at_ms, Some(NOW + 10));
}

pub async fn another_tenants_keys_users_and_vehicles_are_out_of_reach(storage: Arc<dyn Storage>) {
    let a = storage.create_tenant("a").await.unwrap().tenant_id;
    let b = storage.create_tenant("b").await.unwrap().tenant_id;
    let (_, k) = new_key(Role::ReadOnly);
    let bkey = storage.create_key(b, k, NOW).await.unwrap();
    let buser = storage
        .create_user(b, user("b@example.com", Role::Driver), None, NOW)
        .await
        .unwrap();
    let bdev = enroll_one(&storage, b, "truck-b").await;

    assert!(matches!(
        storage.revoke_key(a, bkey.key_id, NOW).await,
        Err(StorageError::UnknownKey)
    ));
    assert!(storage.user(a, buser.user_id).await.unwrap().is_none());
    assert!(matches!(
        storage
            .update_user(
                a,
                buser.user_id,
                UserPatch {
                    disabled: Some(true),
                    ..Default::default()
                }
            )
            .await,
        Err(StorageError::UnknownUser)
    ));
    assert!(matches!(
        storage.delete_user(a, buser.user_id, NOW).await,
        Err(StorageError::UnknownUser)
    ));
    let (_, mut k) = new_key(Role::Driver);
    k.user_id = Some(buser.user_id);
    assert!(matches!(
        storage.create_key(a, k, NOW).await,
        Err(StorageError::UnknownUser)
    ));
    assert!(matches!(
        storage
            .set_vehicle_costs(a, bdev.device_id, CostProfile::default(), NOW)
            .await,
        Err(StorageError::UnknownDevice)
    ));
    assert!(storage.list_users(a).await.unwrap().is_empty());
    assert_eq!(storage.list_keys(a).await.unwrap().len(), 1);
    assert!(storage
        .list_keys(a)
        .await
        .unwrap()
        .iter()
        .all(|k| k.tenant_id == a));
    assert_eq!(storage.count_vehicles(a).await.unwrap(), 0);
    assert_eq!(storage.count_vehicles(b).await.unwrap(), 1);
    // b's record is untouched.
    assert!(
        !storage
            .user(b, buser.user_id)
            .await
            .unwrap()
            .unwrap()
            .disabled
    );
}

pub async fn users_are_unique_by_email_and_bounded_by_the_limit(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("acme").await.unwrap().tenant_id;
    let u = storage
        .create_user(t, user("Dana@Example.com", Role::Manager), None, NOW)
        .await
        .unwrap();
    assert_eq!(u.email, "dana@example.com");
    assert!(matches!(
        storage
            .create_user(t, user("dana@example.COM", Role::Driver), None, NOW)
            .await,
        Err(StorageError::Conflict(_))
    ));
    // The server default applies when the tenant has no limit of its own…
    assert!(matches!(
        storage
            .create_user(t, user("eve@example.com", Role::Driver), Some(1), NOW)
            .await,
        Err(StorageError::LimitReached {
            limit: "max_users",
            max: 1
        })
    ));
    // …and the tenant's own limit wins over it.
    storage
        .update_tenant_settings(
            t,
            SettingsPatch {
                max_users: Some(Some(2)),
                ..Default::default()
            },
            NOW,
        )
        .await
        .unwrap();
    storage
        .create_user(t, user("eve@example.com", Role::Driver), Some(1), NOW)
        .await
        .unwrap();
    assert!(matches!(
        storage
            .create_user(t, user("fay@example.com", Role::Driver), None, NOW)
            .await,
        Err(StorageError::LimitReached {
            limit: "max_users",
            max: 2
        })
    ));
    assert_eq!(storage.list_users(t).await.unwrap().len(), 2);
    assert!(matches!(
        storage
            .create_user(
                Uuid::new_v4(),
                user("x@example.com", Role::Driver),
                None,
                NOW
            )
            .await,
        Err(StorageError::UnknownTenant)
    ));
}

pub async fn a_disabled_or_deleted_user_takes_their_keys_down(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("acme").await.unwrap().tenant_id;
    let u = storage
        .create_user(t, user("dana@example.com", Role::Dispatcher), None, NOW)
        .await
        .unwrap();
    let (secret, mut k) = new_key(Role::Dispatcher);
    k.user_id = Some(u.user_id);
    let key = storage.create_key(t, k, NOW).await.unwrap();
    let auth = |s: String| {
        let storage = storage.clone();
        async move { storage.key_by_hash(hash_key(&s)).await.unwrap().unwrap() }
    };
    assert!(!auth(secret.clone()).await.user_disabled);

    let changed = storage
        .update_user(
            t,
            u.user_id,
            UserPatch {
                disabled: Some(true),
                role: Some(Role::Driver),
                name: Some("Dana D.".into()),
            },
        )
        .await
        .unwrap();
    assert!(changed.disabled);
    assert_eq!(changed.role, Role::Driver);
    assert_eq!(storage.user(t, u.user_id).await.unwrap(), Some(changed));
    assert!(auth(secret.clone()).await.user_disabled);

    storage
        .update_user(
            t,
            u.user_id,
            UserPatch {
                disabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!auth(secret.clone()).await.user_disabled);

    storage.delete_user(t, u.user_id, NOW + 1).await.unwrap();
    let after = auth(secret).await;
    assert!(after.user_disabled);
    assert_eq!(after.key.key_id, key.key_id);
    assert_eq!(after.key.revoked_at_ms, Some(NOW + 1));
    assert!(storage.user(t, u.user_id).await.unwrap().is_none());
}

pub async fn tenant_settings_merge_flags_and_set_or_clear_limits(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("acme").await.unwrap();
    let info = storage.tenant_info(t.tenant_id).await.unwrap().unwrap();
    assert_eq!(info.name, "acme");
    assert_eq!(info.settings, Default::default());
    let s = storage
        .update_tenant_settings(
            t.tenant_id,
            SettingsPatch {
                features: BTreeMap::from([("kiosk".into(), false), ("webhooks".into(), true)]),
                max_vehicles: Some(Some(10)),
                api_rate_per_min: Some(Some(30)),
                ..Default::default()
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(s.max_vehicles, Some(10));
    let s = storage
        .update_tenant_settings(
            t.tenant_id,
            SettingsPatch {
                features: BTreeMap::from([("kiosk".into(), true)]),
                max_vehicles: Some(None),
                ..Default::default()
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(
        s.features,
        BTreeMap::from([("kiosk".into(), true), ("webhooks".into(), true)])
    );
    assert_eq!(s.max_vehicles, None);
    assert_eq!(s.api_rate_per_min, Some(30));
    let auth = storage
        .key_by_hash(hash_key(&t.api_key))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(auth.settings, s);
    let all = storage.list_tenants().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].settings, s);
    assert!(matches!(
        storage
            .update_tenant_settings(Uuid::new_v4(), SettingsPatch::default(), NOW)
            .await,
        Err(StorageError::UnknownTenant)
    ));
}

pub async fn enrollment_stops_at_the_vehicle_limit(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("acme").await.unwrap().tenant_id;
    storage
        .update_tenant_settings(
            t,
            SettingsPatch {
                max_vehicles: Some(Some(1)),
                ..Default::default()
            },
            NOW,
        )
        .await
        .unwrap();
    enroll_one(&storage, t, "truck-1").await;
    let token = storage
        .create_enrollment_token(t, Duration::from_secs(3600), 1)
        .await
        .unwrap();
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let err = storage
        .enroll_device(super::EnrollDevice {
            token: token.token,
            public_key: fleet_protocol::auth::encode_public_key(&key.verifying_key()),
            name: None,
            agent_version: None,
            now_ms: super::now_ms(),
        })
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
        "{err}"
    );
    assert_eq!(storage.count_vehicles(t).await.unwrap(), 1);
}

fn entry(tenant: Uuid, at_ms: i64, action: &str, key: Option<Uuid>) -> AuditEntry {
    AuditEntry {
        tenant_id: tenant,
        audit_id: Uuid::new_v4(),
        at_ms,
        actor_kind: if key.is_some() {
            ActorKind::Key
        } else {
            ActorKind::Operator
        },
        actor_key_id: key,
        actor_user_id: None,
        action: action.into(),
        target: format!("thing:{at_ms}"),
        detail: serde_json::json!({ "n": at_ms }),
        request_id: Some("req-1".into()),
    }
}

pub async fn the_audit_log_filters_and_pages_newest_first(storage: Arc<dyn Storage>) {
    let a = storage.create_tenant("a").await.unwrap().tenant_id;
    let b = storage.create_tenant("b").await.unwrap().tenant_id;
    let key = Uuid::new_v4();
    for i in 0..5 {
        let action = if i % 2 == 0 {
            "user.create"
        } else {
            "key.revoke"
        };
        storage
            .record_audit(entry(a, NOW + i, action, Some(key)))
            .await
            .unwrap();
    }
    storage
        .record_audit(entry(a, NOW + 10, "tenant.settings", None))
        .await
        .unwrap();
    storage
        .record_audit(entry(b, NOW + 3, "user.create", Some(key)))
        .await
        .unwrap();

    let q = |f: fn(&mut AuditQuery)| {
        let storage = storage.clone();
        let mut query = AuditQuery {
            limit: 100,
            ..Default::default()
        };
        f(&mut query);
        async move { storage.query_audit(a, query).await.unwrap() }
    };
    let all = q(|_| {}).await;
    assert_eq!(all.len(), 6);
    assert!(all.iter().all(|e| e.tenant_id == a));
    assert!(all.windows(2).all(|w| w[0].at_ms >= w[1].at_ms));
    assert_eq!(all[0].actor_kind, ActorKind::Operator);
    assert_eq!(all[1].detail, serde_json::json!({ "n": NOW + 4 }));
    assert_eq!(all[1].request_id.as_deref(), Some("req-1"));

    let creates = q(|q| q.action = Some("user.create".into())).await;
    assert_eq!(
        creates.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
        vec![NOW + 4, NOW + 2, NOW]
    );
    let window = q(|q| {
        q.since_ms = Some(NOW + 1);
        q.until_ms = Some(NOW + 4);
    })
    .await;
    assert_eq!(window.len(), 3);
    let by_target = q(|q| q.target = Some(format!("thing:{}", NOW + 2))).await;
    assert_eq!(by_target.len(), 1);
    let mut by_key = AuditQuery {
        limit: 100,
        actor_key_id: Some(key),
        ..Default::default()
    };
    assert_eq!(
        storage.query_audit(a, by_key.clone()).await.unwrap().len(),
        5
    );
    by_key.actor_key_id = Some(Uuid::new_v4());
    assert!(storage.query_audit(a, by_key).await.unwrap().is_empty());

    // Pages of two follow on from the last entry of the one before.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = storage
            .query_audit(
                a,
                AuditQuery {
                    limit: 2,
                    before,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        before = Some((last.at_ms, last.audit_id));
        seen.extend(page.into_iter().map(|e| e.audit_id));
    }
    assert_eq!(seen, all.iter().map(|e| e.audit_id).collect::<Vec<_>>());
}

pub async fn cost_profiles_are_kept_per_vehicle(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("acme").await.unwrap().tenant_id;
    let d = enroll_one(&storage, t, "truck-1").await;
    assert!(storage.vehicle_costs(t).await.unwrap().is_empty());
    let costs = CostProfile {
        purchase_price_cents: Some(8_500_000),
        purchase_date: Some("2024-03-01".into()),
        fuel_cost_cents: Some(120_050),
        maintenance_cost_cents: None,
        currency: Some("EUR".into()),
    };
    storage
        .set_vehicle_costs(t, d.device_id, costs.clone(), NOW)
        .await
        .unwrap();
    assert_eq!(
        storage.vehicle_costs(t).await.unwrap(),
        BTreeMap::from([(d.device_id, costs)])
    );
    storage
        .set_vehicle_costs(t, d.device_id, CostProfile::default(), NOW)
        .await
        .unwrap();
    assert_eq!(
        storage.vehicle_costs(t).await.unwrap()[&d.device_id],
        CostProfile::default()
    );
}

/// Runs every access check against a backend; `$make` is an async expression
/// giving `(Arc<dyn Storage>, guard)` for a fresh, empty store.
#[macro_export]
macro_rules! conformance_access_suite {
    // `$make` gives an Option: `None` skips (a backend that is not configured).
    (optional $make:expr) => {
        $crate::conformance_access_suite!(@optional $make;
            a_tenants_first_key_is_a_stored_admin_key,
            keys_keep_their_role_scopes_expiry_and_revocation,
            another_tenants_keys_users_and_vehicles_are_out_of_reach,
            users_are_unique_by_email_and_bounded_by_the_limit,
            a_disabled_or_deleted_user_takes_their_keys_down,
            tenant_settings_merge_flags_and_set_or_clear_limits,
            enrollment_stops_at_the_vehicle_limit,
            the_audit_log_filters_and_pages_newest_first,
            cost_profiles_are_kept_per_vehicle,
        );
    };
    (@optional $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some((storage, _guard)) = $make.await else { return };
                $crate::storage::conformance_access::$name(storage).await;
            }
        )*
    };
    ($make:expr) => {
        $crate::conformance_access_suite!(@tests $make;
            a_tenants_first_key_is_a_stored_admin_key,
            keys_keep_their_role_scopes_expiry_and_revocation,
            another_tenants_keys_users_and_vehicles_are_out_of_reach,
            users_are_unique_by_email_and_bounded_by_the_limit,
            a_disabled_or_deleted_user_takes_their_keys_down,
            tenant_settings_merge_flags_and_set_or_clear_limits,
            enrollment_stops_at_the_vehicle_limit,
            the_audit_log_filters_and_pages_newest_first,
            cost_profiles_are_kept_per_vehicle,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (storage, _guard) = $make.await;
                $crate::storage::conformance_access::$name(storage).await;
            }
        )*
    };
}
