//! The outbox against a plain in-memory model: random records of every priority,
//! flushes, acks, budget squeezes and reopens.

use fleet_agent::store::{BootId, EventData, Kind, NewEvent, Priority, Store, StoreOptions};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone)]
enum Op {
    /// Queue this many events of one priority (critical ones through `record`).
    Record(Priority, u8),
    Flush,
    /// Ack up to this fraction (per mille) of the seqs issued so far.
    Ack(u16),
    /// Shrink the budget to this fraction (per mille) of the bytes in use.
    Squeeze(u16),
    Reopen,
    /// Read every batch after the ack with this batch size.
    Drain(u8),
}

fn priority() -> impl Strategy<Value = Priority> {
    prop_oneof![
        3 => Just(Priority::Telemetry),
        1 => Just(Priority::Normal),
        1 => Just(Priority::Critical),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (priority(), 1u8..60).prop_map(|(p, n)| Op::Record(p, n)),
        1 => Just(Op::Flush),
        2 => (0u16..=1000).prop_map(Op::Ack),
        2 => (0u16..=1000).prop_map(Op::Squeeze),
        1 => Just(Op::Reopen),
        1 => (1u8..40).prop_map(Op::Drain),
    ]
}

/// What the store should hold.
#[derive(Debug, Default)]
struct Model {
    /// Committed events still present, by seq.
    present: BTreeMap<u64, Priority>,
    /// Submitted, not yet committed.
    queued: Vec<(u64, Priority)>,
    issued: u64,
    acked: u64,
    evicted_telemetry: u64,
    evicted_normal: u64,
}

impl Model {
    /// Every command but a plain submit commits what is queued.
    fn commit(&mut self) {
        self.present.extend(self.queued.drain(..));
    }
}

fn event(priority: Priority, n: u64) -> NewEvent {
    NewEvent {
        kind: Kind::known("signal"),
        priority,
        mono_ms: n,
        wall_ms: 1_700_000_000_000 + n as i64,
        config_version: 1,
        data: EventData::Json(serde_json::json!({ "n": n, "pad": "x".repeat(40) })),
    }
}

fn options() -> StoreOptions {
    // Commits happen only when the model says so: never on a timer.
    StoreOptions {
        disk_budget_bytes: u64::MAX,
        group_commit: Duration::from_secs(3_600),
        group_commit_max_events: 1_000_000,
    }
}

async fn check(store: &Store, model: &Model) -> Result<(), TestCaseError> {
    let listed = store.list_events(0, usize::MAX).await.unwrap();
    let got: BTreeMap<u64, Priority> = listed.iter().map(|(e, _)| (e.seq, e.priority)).collect();
    prop_assert_eq!(&got, &model.present, "stored events differ from the model");
    for (e, acked) in &listed {
        prop_assert_eq!(*acked, e.seq <= model.acked);
    }
    let stats = store.stats().await.unwrap();
    prop_assert_eq!(stats.last_seq, model.issued);
    prop_assert_eq!(stats.acked_seq, model.acked);
    prop_assert_eq!(stats.evicted_critical, 0);
    prop_assert_eq!(stats.evicted_telemetry, model.evicted_telemetry);
    prop_assert_eq!(stats.evicted_normal, model.evicted_normal);
    prop_assert_eq!(
        stats.unacked_events,
        model.present.range(model.acked + 1..).count() as u64
    );
    Ok(())
}

/// Applies a squeeze's deletions to the model after checking they follow the
/// eviction order.
fn check_eviction(model: &mut Model, after: &BTreeMap<u64, Priority>) -> Result<(), TestCaseError> {
    let acked = model.acked;
    let class = |seq: u64, p: Priority| if seq <= acked { 0 } else { 1 + p as u8 };
    let mut removed_by_class: BTreeMap<u8, Vec<u64>> = BTreeMap::new();
    let mut kept_by_class: BTreeMap<u8, Vec<u64>> = BTreeMap::new();
    for (&seq, &p) in &model.present {
        let c = class(seq, p);
        if after.contains_key(&seq) {
            kept_by_class.entry(c).or_default().push(seq);
        } else {
            removed_by_class.entry(c).or_default().push(seq);
        }
    }
    prop_assert!(
        !removed_by_class.contains_key(&(1 + Priority::Critical as u8)),
        "an unacknowledged critical event was evicted"
    );
    for (&c, removed) in &removed_by_class {
        // Oldest first within a class.
        let newest_removed = *removed.last().unwrap();
        let oldest_kept = kept_by_class.get(&c).and_then(|k| k.first()).copied();
        prop_assert!(
            oldest_kept.is_none_or(|k| k > newest_removed),
            "class {} not evicted oldest first",
            c
        );
        // A class is touched only once every earlier class is gone.
        for earlier in 0..c {
            prop_assert!(
                !kept_by_class.contains_key(&earlier),
                "class {} evicted while class {} remained",
                c,
                earlier
            );
        }
    }
    let n = |c: u8| removed_by_class.get(&c).map_or(0, Vec::len) as u64;
    model.evicted_telemetry += n(1 + Priority::Telemetry as u8);
    model.evicted_normal += n(1 + Priority::Normal as u8);
    model.present.retain(|seq, _| after.contains_key(seq));
    Ok(())
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut boot = 1u8;
    let mut store = Store::open(dir.path(), BootId([boot; 16]), options()).unwrap();
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Record(p, n) => {
                for _ in 0..n {
                    model.issued += 1;
                    let seq = model.issued;
                    if p == Priority::Critical {
                        prop_assert_eq!(store.record(event(p, seq)).await.unwrap(), seq);
                        model.queued.push((seq, p));
                        model.commit();
                    } else {
                        store.submit(event(p, seq)).await.unwrap();
                        model.queued.push((seq, p));
                    }
                }
                if p == Priority::Critical {
                    check(&store, &model).await?;
                }
            }
            Op::Flush => {
                prop_assert_eq!(store.flush().await.unwrap(), model.issued);
                model.commit();
                check(&store, &model).await?;
            }
            Op::Ack(per_mille) => {
                let to = model.issued * u64::from(per_mille) / 1000;
                store.set_acked(to).await.unwrap();
                model.commit();
                model.acked = model.acked.max(to);
                check(&store, &model).await?;
            }
            Op::Squeeze(per_mille) => {
                let used = store
                    .set_disk_budget(u64::MAX)
                    .await
                    .unwrap()
                    .used_bytes_before;
                model.commit();
                let report = store
                    .set_disk_budget(used * u64::from(per_mille) / 1000)
                    .await
                    .unwrap();
                let after: BTreeMap<u64, Priority> = store
                    .list_events(0, usize::MAX)
                    .await
                    .unwrap()
                    .iter()
                    .map(|(e, _)| (e.seq, e.priority))
                    .collect();
                check_eviction(&mut model, &after)?;
                let unacked_critical_only = model
                    .present
                    .iter()
                    .all(|(&s, &p)| s > model.acked && p == Priority::Critical);
                prop_assert!(
                    !report.over_budget || unacked_critical_only,
                    "over budget with evictable events left"
                );
                store.set_disk_budget(u64::MAX).await.unwrap();
                check(&store, &model).await?;
            }
            Op::Reopen => {
                store.close().await.unwrap();
                model.commit();
                boot += 1;
                store = Store::open(dir.path(), BootId([boot; 16]), options()).unwrap();
                check(&store, &model).await?;
            }
            Op::Drain(size) => {
                store.flush().await.unwrap();
                model.commit();
                let mut after = model.acked;
                while let Some(b) = store.read_batch(after, usize::from(size)).await.unwrap() {
                    prop_assert_eq!(
                        b.first_seq,
                        after + 1,
                        "batches leave no gap and overlap nothing"
                    );
                    prop_assert!(b.last_seq >= b.first_seq);
                    prop_assert!(b.events.len() <= usize::from(size));
                    let expected: Vec<u64> = model
                        .present
                        .range(b.first_seq..=b.last_seq)
                        .map(|(s, _)| *s)
                        .collect();
                    let got: Vec<u64> = b.events.iter().map(|e| e.seq).collect();
                    prop_assert_eq!(got, expected);
                    after = b.last_seq;
                }
                prop_assert_eq!(after, model.issued.max(model.acked));
            }
        }
    }
    store.close().await.unwrap();
    model.commit();
    let store = Store::open(dir.path(), BootId([0; 16]), options()).unwrap();
    check(&store, &model).await
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn outbox_matches_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run(ops))?;
    }
}
