use super::*;
use automerge::transaction::Transactable;
use automerge::ReadDoc;
use fleet_protocol::{Position, TimeSource};
use std::time::Instant;

fn boot(n: u8) -> BootId {
    BootId([n; 16])
}

fn ev(priority: Priority, i: u64) -> NewEvent {
    NewEvent {
        kind: Kind::known("position"),
        priority,
        mono_ms: 1_000 + i,
        wall_ms: 1_700_000_000_000 + i as i64,
        config_version: 3,
        data: EventData::Position(Position {
            lat_e7: 525_000_000 + i as i32,
            lon_e7: 134_000_000 - i as i32,
            alt_dm: Some(340),
            speed_cms: Some(1_200),
            heading_cdeg: Some(9_000),
            hdop_d: Some(8),
            sats: Some(10),
            fix: 2,
        }),
    }
}

fn fast() -> StoreOptions {
    StoreOptions {
        group_commit: Duration::from_millis(20),
        ..Default::default()
    }
}

/// Events committed to disk, seen by a connection of its own.
fn committed_rows(dir: &Path) -> i64 {
    let c = Connection::open(dir.join(DB_FILE)).unwrap();
    c.query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap()
}

/// Bytes of the pages holding data, as the budget counts them.
fn used_bytes(dir: &Path) -> u64 {
    schema::used_bytes(&Connection::open(dir.join(DB_FILE)).unwrap()).unwrap()
}

#[tokio::test]
async fn seqs_are_dense_from_one_and_resume_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), boot(1), fast()).unwrap();
    for i in 0..5 {
        assert_eq!(store.record(ev(Priority::Normal, i)).await.unwrap(), i + 1);
    }
    store.close().await.unwrap();
    let store = Store::open(dir.path(), boot(2), fast()).unwrap();
    assert_eq!(store.record(ev(Priority::Critical, 9)).await.unwrap(), 6);
    let events = store.list_events(0, 100).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|(e, _)| e.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(events[0].0.time.boot_id, boot(1));
    assert_eq!(events[5].0.time.boot_id, boot(2));
    let hlcs: Vec<_> = events.iter().map(|(e, _)| e.time.hlc).collect();
    assert!(
        hlcs.windows(2).all(|w| w[0] < w[1]),
        "HLC resumes past the stored maximum"
    );
}

#[tokio::test]
async fn stored_events_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), boot(1), fast()).unwrap();
    let json = NewEvent {
        kind: Kind::new("custom_reading"),
        priority: Priority::Critical,
        mono_ms: 5,
        wall_ms: -7,
        config_version: 9,
        data: EventData::Json(serde_json::json!({"code": "P0420", "n": [1, 2]})),
    };
    store.record(ev(Priority::Telemetry, 1)).await.unwrap();
    store.record(json.clone()).await.unwrap();
    let batch = store.read_batch(0, 10).await.unwrap().unwrap();
    assert_eq!((batch.first_seq, batch.last_seq), (1, 2));
    let e = &batch.events[1];
    assert_eq!(e.kind, json.kind);
    assert_eq!(e.data, json.data);
    assert_eq!(
        (e.time.mono_ms, e.time.wall_ms, e.config_version),
        (5, -7, 9)
    );
    assert_eq!(e.priority, Priority::Critical);
    assert_eq!(batch.events[0].data, ev(Priority::Telemetry, 1).data);
}

#[tokio::test]
async fn a_critical_record_is_on_disk_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        group_commit: Duration::from_secs(3_600),
        ..Default::default()
    };
    let store = Store::open(dir.path(), boot(1), opts).unwrap();
    store.submit(ev(Priority::Telemetry, 1)).await.unwrap();
    store.submit(ev(Priority::Normal, 2)).await.unwrap();
    let seq = store.record(ev(Priority::Critical, 3)).await.unwrap();
    assert_eq!(seq, 3);
    // The critical commit also carried everything queued before it.
    assert_eq!(committed_rows(dir.path()), 3);
}

#[tokio::test]
async fn telemetry_is_group_committed_within_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let window = Duration::from_millis(300);
    let opts = StoreOptions {
        group_commit: window,
        ..Default::default()
    };
    let store = Store::open(dir.path(), boot(1), opts).unwrap();
    let started = Instant::now();
    for i in 0..10 {
        store.submit(ev(Priority::Telemetry, i)).await.unwrap();
    }
    assert_eq!(
        store
            .read_batch(0, 100)
            .await
            .unwrap()
            .map(|b| b.events.len()),
        None
    );
    let seq = store.record(ev(Priority::Telemetry, 10)).await.unwrap();
    let waited = started.elapsed();
    assert_eq!(seq, 11);
    assert_eq!(
        committed_rows(dir.path()),
        11,
        "one commit carried the whole group"
    );
    assert!(
        waited >= window / 2,
        "committed after {waited:?}, before the group window"
    );
    assert!(
        waited < window * 4,
        "committed after {waited:?}, long past the group window"
    );
}

#[tokio::test]
async fn a_full_group_commits_before_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        group_commit: Duration::from_secs(3_600),
        group_commit_max_events: 5,
        ..Default::default()
    };
    let store = Store::open(dir.path(), boot(1), opts).unwrap();
    for i in 0..4 {
        store.submit(ev(Priority::Telemetry, i)).await.unwrap();
    }
    assert_eq!(store.record(ev(Priority::Telemetry, 4)).await.unwrap(), 5);
    assert_eq!(committed_rows(dir.path()), 5);
}

#[tokio::test]
async fn flush_commits_and_returns_the_last_seq() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        group_commit: Duration::from_secs(3_600),
        ..Default::default()
    };
    let store = Store::open(dir.path(), boot(1), opts).unwrap();
    assert_eq!(store.flush().await.unwrap(), 0);
    for i in 0..7 {
        store.submit(ev(Priority::Telemetry, i)).await.unwrap();
    }
    assert_eq!(store.flush().await.unwrap(), 7);
    assert_eq!(committed_rows(dir.path()), 7);
}

#[tokio::test]
async fn a_database_from_a_newer_schema_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path(), boot(1), fast())
        .unwrap()
        .close()
        .await
        .unwrap();
    let newer = schema::SCHEMA_VERSION + 3;
    Connection::open(dir.path().join(DB_FILE))
        .unwrap()
        .pragma_update(None, "user_version", newer)
        .unwrap();
    let err = Store::open(dir.path(), boot(1), fast())
        .err()
        .expect("refused");
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, supported, .. }
        if found == newer && supported == schema::SCHEMA_VERSION)
    );
    let msg = err.to_string();
    assert!(msg.contains(&format!("version {newer}")), "{msg}");
    assert!(
        msg.contains(&format!("version {}", schema::SCHEMA_VERSION)),
        "{msg}"
    );
}

#[tokio::test]
async fn invalid_events_are_refused_without_taking_a_seq() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), boot(1), fast()).unwrap();
    let mut bad = ev(Priority::Normal, 0);
    bad.kind = Kind::new("Not A Kind");
    assert!(matches!(
        store.record(bad.clone()).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.submit(bad).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.record(ev(Priority::Normal, 1)).await.unwrap(), 1);
}

#[tokio::test]
async fn acks_never_move_backwards_nor_past_the_last_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), boot(1), fast()).unwrap();
    for i in 0..10 {
        store.submit(ev(Priority::Normal, i)).await.unwrap();
    }
    store.flush().await.unwrap();
    store.set_acked(6).await.unwrap();
    store.set_acked(3).await.unwrap();
    assert_eq!(store.acked_seq().await.unwrap(), 6);
    store.set_acked(99).await.unwrap();
    assert_eq!(store.acked_seq().await.unwrap(), 10);
    let listed = store.list_events(8, 10).await.unwrap();
    assert!(listed.iter().all(|(_, acked)| *acked));
    store.close().await.unwrap();
    let store = Store::open(dir.path(), boot(1), fast()).unwrap();
    assert_eq!(store.acked_seq().await.unwrap(), 10);
}

#[tokio::test]
async fn batches_tile_the_seq_space() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), boot(1), fast()).unwrap();
    for i in 0..25 {
        store.submit(ev(Priority::Normal, i)).await.unwrap();
    }
    store.flush().await.unwrap();
    let mut after = 0;
    let mut ranges = Vec::new();
    while let Some(b) = store.read_batch(after, 10).await.unwrap() {
        assert_eq!(b.first_seq, after + 1);
        ranges.push((b.first_seq, b.last_seq, b.events.len()));
        after = b.last_seq;
    }
    assert_eq!(ranges, vec![(1, 10, 10), (11, 20, 10), (21, 25, 5)]);
    assert!(store.read_batch(0, 0).await.unwrap().unwrap().events.len() == 1);
}

#[tokio::test]
async fn eviction_takes_acked_then_telemetry_then_normal_and_never_unacked_critical() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), boot(1), fast()).unwrap();
    let prio = |i: u64| match i % 10 {
        0 => Priority::Critical,
        1 | 2 => Priority::Normal,
        _ => Priority::Telemetry,
    };
    for i in 0..20_000 {
        store.submit(ev(prio(i), i)).await.unwrap();
    }
    store.flush().await.unwrap();
    store.set_acked(2_000).await.unwrap();
    let before = store.stats().await.unwrap();
    let budget = used_bytes(dir.path()) / 2;
    let report = store.set_disk_budget(budget).await.unwrap();
    assert!(report.used_bytes_after <= budget, "{report:?}");
    assert!(used_bytes(dir.path()) <= budget);
    assert_eq!(report.pruned_acked, 2_000, "every acked event goes first");
    assert!(report.evicted_telemetry > 0);
    assert_eq!(report.evicted_normal, 0, "telemetry sufficed");

    let stats = store.stats().await.unwrap();
    assert_eq!(stats.evicted_critical, 0);
    assert_eq!(stats.evicted_telemetry, report.evicted_telemetry);
    assert_eq!(stats.pruned_acked, 2_000);
    assert!(
        stats.db_bytes < before.db_bytes,
        "the file shrank: {stats:?} vs {before:?}"
    );

    let left = store.list_events(0, usize::MAX).await.unwrap();
    let present: std::collections::HashSet<u64> = left.iter().map(|(e, _)| e.seq).collect();
    for seq in 2_001..=20_000u64 {
        let p = prio(seq - 1);
        if p != Priority::Telemetry {
            assert!(
                present.contains(&seq),
                "unacked {p:?} event {seq} was evicted"
            );
        }
    }
    // Telemetry goes oldest first: what survives is a suffix.
    let first_kept =
        (2_001..=20_000u64).find(|s| prio(s - 1) == Priority::Telemetry && present.contains(s));
    let first_kept = first_kept.expect("some telemetry survives");
    assert!((first_kept..=20_000)
        .filter(|s| prio(s - 1) == Priority::Telemetry)
        .all(|s| present.contains(&s)));

    // The sync client's reads still account for every seq, holes included.
    let mut after = store.acked_seq().await.unwrap();
    let mut seen = 0;
    while let Some(b) = store.read_batch(after, 1_000).await.unwrap() {
        assert_eq!(b.first_seq, after + 1);
        seen += b.events.len();
        after = b.last_seq;
    }
    assert_eq!(after, 20_000);
    assert_eq!(seen as u64, stats.unacked_events);
    let ranges = store.evicted_ranges(0).await.unwrap();
    let in_ranges: u64 = ranges.iter().map(|(f, l)| l - f + 1).sum();
    assert_eq!(in_ranges, report.evicted_telemetry);
}

#[tokio::test]
async fn a_budget_full_of_unacked_critical_events_keeps_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), boot(1), fast()).unwrap();
    for i in 0..2_000 {
        store.submit(ev(Priority::Critical, i)).await.unwrap();
    }
    store.flush().await.unwrap();
    let report = store.set_disk_budget(16 << 10).await.unwrap();
    assert!(report.over_budget);
    assert_eq!(report.evicted_telemetry + report.evicted_normal, 0);
    assert_eq!(store.stats().await.unwrap().unacked_events, 2_000);
}

#[tokio::test]
async fn evicted_ranges_join_when_they_touch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), boot(1), fast()).unwrap();
    // Normal events every 50 seqs split the telemetry; evicting everything
    // evicts the normal events too and joins the ranges into one.
    for i in 0..5_000 {
        let p = if i % 50 == 0 {
            Priority::Normal
        } else {
            Priority::Telemetry
        };
        store.submit(ev(p, i)).await.unwrap();
    }
    store.flush().await.unwrap();
    store.set_disk_budget(1).await.unwrap();
    assert_eq!(store.evicted_ranges(0).await.unwrap(), vec![(1, 5_000)]);
    let b = store.read_batch(0, 100).await.unwrap().unwrap();
    assert_eq!((b.first_seq, b.last_seq, b.events.len()), (1, 5_000, 0));
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.evicted_telemetry, stats.evicted_normal),
        (4_900, 100)
    );
    assert_eq!(stats.evicted_events, 5_000);
}

#[tokio::test]
async fn the_best_anchor_per_boot_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), boot(1), fast()).unwrap();
    let a = |b: u8, source, mono_ms| TimeAnchor {
        boot_id: boot(b),
        mono_ms,
        true_ms: 1_700_000_000_000,
        source,
        uncertainty_ms: 50,
    };
    store
        .put_anchor(a(1, TimeSource::Server, 100))
        .await
        .unwrap();
    store.put_anchor(a(1, TimeSource::Gps, 50)).await.unwrap();
    store
        .put_anchor(a(1, TimeSource::Server, 900))
        .await
        .unwrap();
    store
        .put_anchor(a(2, TimeSource::Server, 10))
        .await
        .unwrap();
    store
        .put_anchor(a(2, TimeSource::Server, 20))
        .await
        .unwrap();
    store.close().await.unwrap();
    let store = Store::open(dir.path(), boot(1), fast()).unwrap();
    assert_eq!(
        store.anchors().await.unwrap(),
        vec![a(1, TimeSource::Gps, 50), a(2, TimeSource::Server, 20)]
    );
}

#[tokio::test]
async fn meta_values_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), boot(1), fast()).unwrap();
    assert_eq!(store.get_meta("sync.cursor").await.unwrap(), None);
    store.set_meta("sync.cursor", b"one").await.unwrap();
    store.set_meta("sync.cursor", b"two").await.unwrap();
    drop(store);
    let store = Store::open(dir.path(), boot(1), fast()).unwrap();
    assert_eq!(
        store.get_meta("sync.cursor").await.unwrap().as_deref(),
        Some(&b"two"[..])
    );
}

#[tokio::test]
async fn a_closed_store_refuses_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), boot(1), fast()).unwrap();
    store.submit(ev(Priority::Telemetry, 0)).await.unwrap();
    store.close().await.unwrap();
    assert!(matches!(
        store.record(ev(Priority::Normal, 1)).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(store.stats().await, Err(StoreError::Closed)));
    assert_eq!(committed_rows(dir.path()), 1, "close flushed the queue");
}

fn note(doc: &mut automerge::AutoCommit, key: &str, value: &str) {
    doc.put(automerge::ROOT, key, value).unwrap();
}

fn text_of(doc: &automerge::AutoCommit, key: &str) -> Option<String> {
    doc.get(automerge::ROOT, key)
        .unwrap()
        .map(|(v, _)| v.into_string().unwrap())
}

async fn doc_layout(store: &Store, doc_id: &str) -> (i64, i64) {
    let path = store.path().to_path_buf();
    let id = doc_id.to_owned();
    tokio::task::spawn_blocking(move || {
        let c = Connection::open(path).unwrap();
        c.query_row(
            "SELECT chunk_count, (SELECT count(*) FROM doc_chunks WHERE doc_id = ?1) FROM docs WHERE doc_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn documents_save_incrementally_and_compact() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), boot(1), fast()).unwrap();
    let id = "vehicle-note/v-17";
    assert!(store.doc_load(id).await.unwrap().is_none());
    let mut doc = automerge::AutoCommit::new();
    note(&mut doc, "text", "tyre pressure low");
    store.doc_save(id, &mut doc).await.unwrap();
    assert_eq!(doc_layout(&store, id).await, (0, 0));

    let mut doc = store.doc_load(id).await.unwrap().unwrap();
    note(&mut doc, "text", "tyre fixed");
    store.doc_save(id, &mut doc).await.unwrap();
    store.doc_save(id, &mut doc).await.unwrap();
    assert_eq!(
        doc_layout(&store, id).await,
        (1, 1),
        "one chunk; an unchanged save adds none"
    );

    for i in 0..40 {
        note(&mut doc, "counter", &i.to_string());
        store.doc_save(id, &mut doc).await.unwrap();
    }
    let (count, rows) = doc_layout(&store, id).await;
    assert!(
        count < 32 && count == rows,
        "chunks were folded into the snapshot: {count}"
    );

    store.close().await.unwrap();
    let store = Store::open(dir.path(), boot(1), fast()).unwrap();
    let doc = store.doc_load(id).await.unwrap().unwrap();
    assert_eq!(text_of(&doc, "text").as_deref(), Some("tyre fixed"));
    assert_eq!(text_of(&doc, "counter").as_deref(), Some("39"));
    assert_eq!(store.doc_ids().await.unwrap(), vec![id.to_owned()]);
}

#[tokio::test]
async fn saving_an_unrelated_copy_merges_with_the_stored_document() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), boot(1), fast()).unwrap();
    let id = "vehicle-note/v-1";
    let mut base = automerge::AutoCommit::new();
    note(&mut base, "driver", "brakes squeak");
    store.doc_save(id, &mut base).await.unwrap();
    let mut office = base.fork();
    note(&mut office, "office", "booked for friday");
    note(&mut base, "driver", "brakes squeak badly");
    store.doc_save(id, &mut base).await.unwrap();
    // The office copy lacks the driver's latest change: the store merges.
    store.doc_save(id, &mut office).await.unwrap();
    let merged = store.doc_load(id).await.unwrap().unwrap();
    assert_eq!(
        text_of(&merged, "driver").as_deref(),
        Some("brakes squeak badly")
    );
    assert_eq!(
        text_of(&merged, "office").as_deref(),
        Some("booked for friday")
    );
}

#[tokio::test]
async fn sync_states_are_kept_per_document_and_peer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), boot(1), fast()).unwrap();
    let state = automerge::sync::State::new().encode();
    assert_eq!(store.doc_sync_state("d", "server").await.unwrap(), None);
    store
        .set_doc_sync_state("d", "server", &state)
        .await
        .unwrap();
    store
        .set_doc_sync_state("d", "kiosk", b"other")
        .await
        .unwrap();
    drop(store);
    let store = Store::open(dir.path(), boot(1), fast()).unwrap();
    let got = store.doc_sync_state("d", "server").await.unwrap().unwrap();
    assert!(automerge::sync::State::decode(&got).is_ok());
    assert_eq!(got, state);
    assert_eq!(
        store.doc_sync_state("d", "kiosk").await.unwrap().as_deref(),
        Some(&b"other"[..])
    );
    assert!(matches!(
        store.set_doc_sync_state("", "p", b"x").await,
        Err(StoreError::Invalid(_))
    ));
}
