//! The behaviour every backend's [`ControlStore`](super::control::ControlStore)
//! must show. Each check takes a fresh, empty `Arc<dyn Storage>`; a backend runs
//! them all with [`conformance_control_suite!`](crate::conformance_control_suite).

use super::conformance::{enroll_one, NOW};
use super::control::{AttemptOutcome, RolloutStep};
use super::{EnrollDevice, Storage, StorageError};
use crate::rollout::{Plan, RolloutState};
use fleet_protocol::control::{ConfigApplyError, HardwareStatus, StatusReport};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

fn report(config_version: u32) -> StatusReport {
    StatusReport {
        agent_version: "0.1.0".into(),
        queue_depth: 12,
        oldest_unsynced_ms: Some(NOW - 5_000),
        disk_used_bytes: 1 << 20,
        disk_budget_bytes: 256 << 20,
        clock_offset_ms: Some(-40),
        evictions: 3,
        config_version,
        config_error: None,
        hardware: HardwareStatus {
            can_up: Some(true),
            gps_fix: Some(false),
            camera: None,
        },
    }
}

pub async fn tokens_list_their_uses_and_revoked_ones_stop_enrolling(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("acme").await.unwrap().tenant_id;
    let other = storage.create_tenant("other").await.unwrap().tenant_id;
    let issued = storage
        .issue_token(t, Duration::from_secs(600), 2, NOW)
        .await
        .unwrap();
    assert_eq!(issued.info.uses_left, 2);
    assert_eq!(issued.info.expires_at_ms, NOW + 600_000);
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    storage
        .enroll_device(EnrollDevice {
            token: issued.token.clone(),
            public_key: fleet_protocol::auth::encode_public_key(&key.verifying_key()),
            name: None,
            agent_version: None,
            now_ms: NOW,
        })
        .await
        .unwrap();
    let list = storage.list_tokens(t).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].uses_left, list[0].uses_total), (1, Some(2)));
    assert!(storage.list_tokens(other).await.unwrap().is_empty());
    assert!(!storage.revoke_token(other, &issued.info.id).await.unwrap());
    assert!(!storage.revoke_token(t, "not hex").await.unwrap());
    assert!(storage.revoke_token(t, &issued.info.id).await.unwrap());
    assert!(storage.list_tokens(t).await.unwrap().is_empty());
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let refused = storage
        .enroll_device(EnrollDevice {
            token: issued.token,
            public_key: fleet_protocol::auth::encode_public_key(&key.verifying_key()),
            name: None,
            agent_version: None,
            now_ms: NOW,
        })
        .await;
    assert!(
        matches!(refused, Err(StorageError::TokenInvalid)),
        "{refused:?}"
    );
}

pub async fn the_latest_status_is_kept_and_changes_are_noticed(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("acme").await.unwrap().tenant_id;
    let other = storage.create_tenant("other").await.unwrap().tenant_id;
    let d = enroll_one(&storage, t, "truck").await.device_id;
    let reg = storage.device_registry(t, d).await.unwrap().unwrap();
    assert_eq!((reg.name.as_str(), reg.status.is_none()), ("truck", true));
    assert!(storage.put_status(t, d, &report(0), NOW).await.unwrap());
    assert!(
        !storage.put_status(t, d, &report(0), NOW + 1).await.unwrap(),
        "the same report again is no change"
    );
    let mut failed = report(0);
    failed.config_error = Some(ConfigApplyError {
        version: 2,
        message: "rules.harsh.braking_mps2 15 is not below max_plausible".into(),
    });
    assert!(storage.put_status(t, d, &failed, NOW + 2).await.unwrap());
    let reg = storage.device_registry(t, d).await.unwrap().unwrap();
    let status = reg.status.expect("a status");
    assert_eq!(status.reported_at_ms, NOW + 2);
    assert_eq!(status.report, failed);
    assert!(storage.device_registry(other, d).await.unwrap().is_none());
}

pub async fn groups_hold_devices_once_and_refuse_strangers(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("acme").await.unwrap().tenant_id;
    let other = storage.create_tenant("other").await.unwrap().tenant_id;
    let a = enroll_one(&storage, t, "a").await.device_id;
    let b = enroll_one(&storage, t, "b").await.device_id;
    let stranger = enroll_one(&storage, other, "x").await.device_id;
    let g1 = storage.create_group(t, "north", NOW).await.unwrap();
    let g2 = storage.create_group(t, "south", NOW).await.unwrap();
    assert!(matches!(
        storage.create_group(t, "north", NOW).await,
        Err(StorageError::Invalid(_))
    ));
    storage.create_group(other, "north", NOW).await.unwrap();
    storage.assign_devices(t, g1.id, &[a, b]).await.unwrap();
    let g2 = storage.assign_devices(t, g2.id, &[b]).await.unwrap();
    assert_eq!(g2.devices, vec![b]);
    assert_eq!(
        storage.group(t, g1.id).await.unwrap().unwrap().devices,
        vec![a]
    );
    assert_eq!(storage.device_group(t, b).await.unwrap(), Some(g2.id));
    let refused = storage.assign_devices(t, g1.id, &[a, stranger]).await;
    assert!(
        matches!(refused, Err(StorageError::UnknownDevice)),
        "{refused:?}"
    );
    assert!(storage.group(other, g1.id).await.unwrap().is_none());
    let names: Vec<String> = storage
        .list_groups(t)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(names, ["north", "south"]);
}

pub async fn config_versions_count_up_and_rollouts_move_once(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("acme").await.unwrap().tenant_id;
    let d = enroll_one(&storage, t, "a").await.device_id;
    let g = storage.create_group(t, "all", NOW).await.unwrap().id;
    storage.assign_devices(t, g, &[d]).await.unwrap();
    let plan = Plan::default();
    let doc = json!({ "thresholds": { "harsh_braking_mps2": 4.0 } });
    let r1 = storage.create_config(t, g, &doc, &plan, NOW).await.unwrap();
    assert_eq!((r1.version, r1.previous_version), (1, 0));
    let rolling = r1.state.clone();
    let done = RolloutState::Completed;
    let step = RolloutStep {
        version: 1,
        from: &rolling,
        to: &done,
        reason: None,
    };
    assert!(storage
        .transition_rollout(t, g, &step, NOW + 1)
        .await
        .unwrap());
    assert!(
        !storage
            .transition_rollout(t, g, &step, NOW + 2)
            .await
            .unwrap(),
        "a second replica's identical step is a no-op"
    );
    let r2 = storage
        .create_config(t, g, &doc, &plan, NOW + 3)
        .await
        .unwrap();
    assert_eq!((r2.version, r2.previous_version), (2, 1));
    let r3 = storage
        .create_config(t, g, &doc, &plan, NOW + 4)
        .await
        .unwrap();
    assert_eq!(
        (r3.version, r3.previous_version),
        (3, 1),
        "version 2 never completed"
    );
    let all = storage.list_rollouts(t, g).await.unwrap();
    let states: Vec<&str> = all.iter().map(|r| r.state.name()).collect();
    assert_eq!(states, ["rolling", "superseded", "completed"]);
    assert_eq!(
        storage
            .current_rollout(t, g)
            .await
            .unwrap()
            .unwrap()
            .version,
        3
    );
    assert_eq!(storage.config_document(t, g, 2).await.unwrap(), Some(doc));
    assert_eq!(storage.rolling_groups().await.unwrap(), vec![(t, g)]);
    storage.put_status(t, d, &report(3), NOW).await.unwrap();
    let health = storage.group_health(t, g).await.unwrap();
    assert_eq!(health.len(), 1);
    assert_eq!((health[0].device_id, health[0].applied_version), (d, 3));
}

pub async fn webhook_events_queue_once_and_attempts_are_logged(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("acme").await.unwrap().tenant_id;
    let other = storage.create_tenant("other").await.unwrap().tenant_id;
    let kinds = ["fault".to_owned()];
    let hook = storage
        .create_webhook(t, "https://example.com/h", &kinds, "slack", "whsec_x", NOW)
        .await
        .unwrap();
    storage
        .create_webhook(
            other,
            "https://example.com/o",
            &kinds,
            "json",
            "whsec_y",
            NOW,
        )
        .await
        .unwrap();
    let payload = json!({ "id": "d:1" });
    assert_eq!(
        storage
            .enqueue_webhook_event(t, "fault", "d:1", &payload, NOW)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        storage
            .enqueue_webhook_event(t, "fault", "d:1", &payload, NOW)
            .await
            .unwrap(),
        0,
        "the same event is queued once"
    );
    assert_eq!(
        storage
            .enqueue_webhook_event(t, "geofence", "d:2", &payload, NOW)
            .await
            .unwrap(),
        0,
        "nobody asked for geofences"
    );
    let due = storage.due_deliveries(NOW, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].tenant_id, due[0].secret.as_str()), (t, "whsec_x"));
    let failed = AttemptOutcome::Failed {
        status: Some(500),
        error: "answered 500".into(),
        retry_at_ms: Some(NOW + 10_000),
    };
    storage
        .record_attempt(t, due[0].delivery_id, &failed, NOW)
        .await
        .unwrap();
    assert!(storage
        .due_deliveries(NOW + 5_000, 10)
        .await
        .unwrap()
        .is_empty());
    let again = storage.due_deliveries(NOW + 10_000, 10).await.unwrap();
    assert_eq!(again[0].attempts, 1);
    storage
        .record_attempt(
            t,
            again[0].delivery_id,
            &AttemptOutcome::Delivered { status: 204 },
            NOW + 10_000,
        )
        .await
        .unwrap();
    assert!(storage
        .due_deliveries(NOW + 99_000, 10)
        .await
        .unwrap()
        .is_empty());
    let log = storage
        .list_deliveries(t, hook.id, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].state.as_str(), log[0].attempts, log[0].last_status),
        ("delivered", 2, Some(204))
    );
    assert!(storage
        .list_deliveries(other, hook.id, 10)
        .await
        .unwrap()
        .is_none());
    assert!(!storage.delete_webhook(other, hook.id).await.unwrap());
    assert!(storage.delete_webhook(t, hook.id).await.unwrap());
    assert!(storage.list_webhooks(t).await.unwrap().is_empty());
    assert_eq!(storage.list_webhooks(other).await.unwrap().len(), 1);
    // A device last seen in the window is silent; a revoked one is not reported.
    let d = enroll_one(&storage, t, "quiet").await;
    let seen = storage
        .device_registry(t, d.device_id)
        .await
        .unwrap()
        .unwrap();
    let last = seen.last_seen_ms.expect("enrolment counts as seen");
    let silent = storage
        .silent_devices(last - 1, last + 1, 10)
        .await
        .unwrap();
    assert_eq!(
        silent.iter().map(|s| s.device_id).collect::<Vec<_>>(),
        vec![d.device_id]
    );
    storage.revoke_device(d.device_id, last + 5).await.unwrap();
    assert!(storage
        .silent_devices(last - 1, last + 1, 10)
        .await
        .unwrap()
        .is_empty());
    let _ = Uuid::nil();
}

#[macro_export]
macro_rules! conformance_control_suite {
    // `$make` gives an Option: `None` skips (a backend that is not configured).
    (optional $make:expr) => {
        $crate::conformance_control_suite!(@optional $make;
            tokens_list_their_uses_and_revoked_ones_stop_enrolling,
            the_latest_status_is_kept_and_changes_are_noticed,
            groups_hold_devices_once_and_refuse_strangers,
            config_versions_count_up_and_rollouts_move_once,
            webhook_events_queue_once_and_attempts_are_logged,
        );
    };
    (@optional $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some((storage, _guard)) = $make.await else { return };
                $crate::storage::conformance_control::$name(storage).await;
            }
        )*
    };
    ($make:expr) => {
        $crate::conformance_control_suite!(@tests $make;
            tokens_list_their_uses_and_revoked_ones_stop_enrolling,
            the_latest_status_is_kept_and_changes_are_noticed,
            groups_hold_devices_once_and_refuse_strangers,
            config_versions_count_up_and_rollouts_move_once,
            webhook_events_queue_once_and_attempts_are_logged,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (storage, _guard) = $make.await;
                $crate::storage::conformance_control::$name(storage).await;
            }
        )*
    };
}
