//! The behaviour every backend's stream log ([`StreamStore`]) must show. Each
//! check takes a fresh, empty `Arc<dyn Storage>`; a backend runs them all with
//! [`conformance_stream_suite!`](crate::conformance_stream_suite).

use super::stream::{NewStreamEvent, StreamNotice, StreamStore};
use super::Storage;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

const NOW: i64 = 1_767_225_600_000;

fn store(storage: &Arc<dyn Storage>) -> &dyn StreamStore {
    storage
        .stream_store()
        .expect("every backend keeps a stream log")
}

fn event(tenant: Uuid, n: u32, source: Option<&str>) -> NewStreamEvent {
    NewStreamEvent {
        tenant,
        kind: "position".into(),
        vehicle: Some(Uuid::from_u128(u128::from(n % 3))),
        data: json!({"n": n}),
        at_ms: NOW + i64::from(n),
        source: source.map(str::to_owned),
    }
}

async fn ids_after(storage: &Arc<dyn Storage>, tenant: Uuid, after: u64) -> Vec<u64> {
    store(storage)
        .stream_events_after(tenant, after, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
}

pub async fn ids_are_dense_and_increasing_per_tenant(storage: Arc<dyn Storage>) {
    let a = storage.create_tenant("a").await.unwrap().tenant_id;
    let b = storage.create_tenant("b").await.unwrap().tenant_id;
    let s = store(&storage);
    assert_eq!(s.stream_bounds(a).await.unwrap().head, 0);
    let rows = s
        .append_stream_events(
            vec![event(a, 1, None), event(b, 2, None), event(a, 3, None)],
            NOW,
        )
        .await
        .unwrap();
    let got: Vec<(Uuid, u64)> = rows.iter().map(|r| (r.tenant, r.id)).collect();
    let (mut of_a, of_b): (Vec<_>, Vec<_>) = got.into_iter().partition(|(t, _)| *t == a);
    of_a.extend(of_b);
    assert_eq!(of_a, vec![(a, 1), (a, 2), (b, 1)], "each tenant's in order");
    s.append_stream_events(vec![event(a, 4, None)], NOW)
        .await
        .unwrap();
    assert_eq!(ids_after(&storage, a, 0).await, vec![1, 2, 3]);
    assert_eq!(ids_after(&storage, a, 1).await, vec![2, 3]);
    assert_eq!(ids_after(&storage, b, 0).await, vec![1]);
    let back = s.stream_events_after(a, 2, 10).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].data, json!({"n": 4}));
    assert_eq!(back[0].at_ms, NOW + 4);
    assert_eq!(back[0].kind, "position");
    assert_eq!(back[0].vehicle, Some(Uuid::from_u128(1)));
    let bounds = s.stream_bounds(a).await.unwrap();
    assert_eq!((bounds.oldest, bounds.head), (1, 3));
    assert_eq!(
        s.stream_events_after(a, 0, 2).await.unwrap().len(),
        2,
        "the limit holds"
    );
}

pub async fn an_event_from_a_known_source_is_logged_once(storage: Arc<dyn Storage>) {
    let a = storage.create_tenant("a").await.unwrap().tenant_id;
    let b = storage.create_tenant("b").await.unwrap().tenant_id;
    let s = store(&storage);
    let first = s
        .append_stream_events(vec![event(a, 1, Some("dev:1")), event(a, 2, None)], NOW)
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    let again = s
        .append_stream_events(
            vec![
                event(a, 1, Some("dev:1")),
                event(a, 3, Some("dev:2")),
                event(b, 1, Some("dev:1")),
            ],
            NOW,
        )
        .await
        .unwrap();
    let got: Vec<(Uuid, u64)> = again.iter().map(|r| (r.tenant, r.id)).collect();
    assert_eq!(
        got,
        vec![(a, 3), (b, 1)],
        "the repeat is skipped without using up an id; sources are per tenant"
    );
    assert_eq!(ids_after(&storage, a, 0).await, vec![1, 2, 3]);
}

pub async fn pruning_keeps_the_newest_of_each_tenant_and_drops_the_old(storage: Arc<dyn Storage>) {
    let a = storage.create_tenant("a").await.unwrap().tenant_id;
    let b = storage.create_tenant("b").await.unwrap().tenant_id;
    let s = store(&storage);
    let old: Vec<_> = (1..=4).map(|n| event(b, n, None)).collect();
    s.append_stream_events(old, NOW - 10_000).await.unwrap();
    let many: Vec<_> = (1..=10).map(|n| event(a, n, None)).collect();
    s.append_stream_events(many, NOW).await.unwrap();
    let pruned = s.prune_stream_events(NOW - 5_000, 3).await.unwrap();
    assert_eq!(pruned, 4 + 7);
    assert_eq!(ids_after(&storage, a, 0).await, vec![8, 9, 10]);
    assert!(ids_after(&storage, b, 0).await.is_empty());
    let ba = s.stream_bounds(a).await.unwrap();
    assert_eq!((ba.oldest, ba.head), (8, 10));
    assert!(ba.can_resume_after(7) && !ba.can_resume_after(6));
    let bb = s.stream_bounds(b).await.unwrap();
    assert_eq!((bb.oldest, bb.head), (5, 4), "ids are never reused");
    let next = s
        .append_stream_events(vec![event(b, 5, None)], NOW)
        .await
        .unwrap();
    assert_eq!(next[0].id, 5);
}

pub async fn appends_are_announced_on_a_shared_database(storage: Arc<dyn Storage>) {
    let a = storage.create_tenant("a").await.unwrap().tenant_id;
    let s = store(&storage);
    let Some(mut notices) = s.stream_notices() else {
        // One process owns the database: nothing else appends, nothing to hear.
        return;
    };
    let first = tokio::time::timeout(Duration::from_secs(10), notices.recv())
        .await
        .expect("the listener connects")
        .unwrap();
    assert_eq!(first, StreamNotice::Reconnected);
    s.append_stream_events(vec![event(a, 1, None), event(a, 2, None)], NOW)
        .await
        .unwrap();
    s.append_stream_events(vec![event(a, 3, None)], NOW)
        .await
        .unwrap();
    let mut heard = Vec::new();
    while heard.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), notices.recv())
            .await
            .expect("appends are announced")
            .unwrap()
        {
            StreamNotice::Appended { tenant, first_id } => heard.push((tenant, first_id)),
            StreamNotice::Reconnected => {}
        }
    }
    assert_eq!(heard, vec![(a, 1), (a, 3)]);
}

/// Runs every check above as its own `#[tokio::test]`; `$make` is an async
/// expression giving a fresh, empty `Arc<dyn Storage>` and a guard (or, with
/// `optional`, an `Option` of them: `None` skips).
#[macro_export]
macro_rules! conformance_stream_suite {
    (optional $make:expr) => {
        $crate::conformance_stream_suite!(@optional $make;
            ids_are_dense_and_increasing_per_tenant,
            an_event_from_a_known_source_is_logged_once,
            pruning_keeps_the_newest_of_each_tenant_and_drops_the_old,
            appends_are_announced_on_a_shared_database,
        );
    };
    (@optional $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some((storage, _guard)) = $make.await else { return };
                $crate::storage::conformance_stream::$name(storage).await;
            }
        )*
    };
    ($make:expr) => {
        $crate::conformance_stream_suite!(@tests $make;
            ids_are_dense_and_increasing_per_tenant,
            an_event_from_a_known_source_is_logged_once,
            pruning_keeps_the_newest_of_each_tenant_and_drops_the_old,
            appends_are_announced_on_a_shared_database,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (storage, _guard) = $make.await;
                $crate::storage::conformance_stream::$name(storage).await;
            }
        )*
    };
}
