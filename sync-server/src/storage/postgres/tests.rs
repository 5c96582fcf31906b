//! PostgreSQL's own parts: row-level security, partitions and retention.

use super::partitions::Month;
use super::testing::fresh_pg;
use super::{pg, PgStorage};
use crate::storage::conformance::{batch, enroll_one, event};
use crate::storage::{now_ms, DocWrite, Storage};
use fleet_protocol::batch::RejectedEvent;
use std::sync::Arc;
use uuid::Uuid;

/// Every table in the schema that has a `tenant_id` column.
async fn tenant_tables(pg: &PgStorage) -> Vec<(String, bool, bool)> {
    let c = pg.pool().get().await.unwrap();
    c.query(
        "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
         WHERE c.relkind IN ('r', 'p') AND c.relnamespace = current_schema()::regnamespace
         ORDER BY 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// Gives tenant `name` a device with events, a rejected event, a nonce and a
/// document, so most tables hold a row of it.
async fn populate(storage: &Arc<dyn Storage>, name: &str) -> Uuid {
    let tenant = storage.create_tenant(name).await.unwrap().tenant_id;
    let dev = enroll_one(storage, tenant, &format!("{name}-truck")).await;
    let mut b = batch(&dev, 1, 3, vec![event(1, 1_000), event(2, 2_000)]);
    b.rejects.push(RejectedEvent {
        seq: 3,
        kind: Some("position".into()),
        reason: "bad".into(),
        raw: serde_json::json!({"seq": 3}),
    });
    storage.ingest_batch(&dev, b, now_ms()).await.unwrap();
    storage
        .accept_nonce(&dev, "n-1", now_ms(), now_ms(), 0)
        .await
        .unwrap();
    storage
        .save_doc(
            tenant,
            "custody",
            Some(DocWrite::Append(vec![1, 2, 3])),
            Some((dev.device_id, vec![9])),
            now_ms(),
        )
        .await
        .unwrap();
    tenant
}

#[tokio::test]
async fn an_unfiltered_select_sees_only_the_tenant_set_for_the_transaction() {
    let Some((pg, _guard)) = fresh_pg().await else {
        return;
    };
    let pg = Arc::new(pg);
    let storage: Arc<dyn Storage> = pg.clone();
    let a = populate(&storage, "acme").await;
    let b = populate(&storage, "globex").await;

    let tables = tenant_tables(&pg).await;
    assert!(tables.len() >= 13, "{tables:?}");
    for (table, enabled, forced) in &tables {
        assert!(
            *enabled && *forced,
            "{table}: row-level security is not enabled and forced"
        );
    }
    let mut seen_rows = 0;
    for (table, ..) in &tables {
        // Deliberately no tenant filter: the policy alone must keep B out.
        let sql = format!("SELECT count(*), count(*) FILTER (WHERE tenant_id <> $1) FROM {table}");
        let tx = pg.tenant_tx(a).await.unwrap();
        let row = tx.query_one(&sql, &[&a]).await.map_err(pg_err).unwrap();
        let (all, foreign): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!(foreign, 0, "{table}: tenant A saw {foreign} rows of others");
        seen_rows += all;
        drop(tx);

        let tx = pg.tenant_tx(b).await.unwrap();
        let row = tx.query_one(&sql, &[&b]).await.map_err(pg_err).unwrap();
        assert_eq!(row.get::<_, i64>(1), 0, "{table}: tenant B saw others");
        drop(tx);

        let c = pg.pool().get().await.unwrap();
        let none: i64 = c
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .map_err(pg_err)
            .unwrap()
            .get(0);
        assert_eq!(none, 0, "{table}: with no tenant set, {none} rows showed");
    }
    // Tenants, keys, tokens, devices, nonces, events, quarantine, documents…
    assert!(
        seen_rows >= 10,
        "tenant A's own rows were visible: {seen_rows}"
    );
}

#[tokio::test]
async fn a_row_for_another_tenant_cannot_be_written() {
    let Some((pg, _guard)) = fresh_pg().await else {
        return;
    };
    let a = pg.create_tenant("acme").await.unwrap().tenant_id;
    let b = Uuid::new_v4();
    // `events` checks the setting once per statement (migration 0015); the
    // others once per row. Both refuse a foreign row, even among own ones.
    for sql in [
        "INSERT INTO doc_chunks (tenant_id, doc_id, chunk_no, bytes) SELECT $1, 'x', 1, '\\x00' WHERE $2::uuid IS NOT NULL",
        "INSERT INTO events (tenant_id, device_id, seq, kind, priority, boot_id, mono_ms, wall_ms, hlc,
             config_version, time_ms, time_source, data, received_at_ms)
         SELECT unnest(ARRAY[$2::uuid, $1::uuid, $2::uuid]), gen_random_uuid(), 1, 'x', 1, '\\x00', 0, 0, 0, 1, 0, 'wall', '{}', 0",
    ] {
        let tx = pg.tenant_tx(a).await.unwrap();
        let err = pg_err(tx.execute(sql, &[&b, &a]).await.unwrap_err()).to_string();
        assert!(
            err.contains("row-level security"),
            "the policy's WITH CHECK refuses a foreign tenant_id: {sql}: {err}"
        );
    }
}

fn pg_err(e: tokio_postgres::Error) -> crate::storage::StorageError {
    pg(e)
}

#[tokio::test]
async fn partitions_are_ready_ahead_and_stragglers_move_out_of_the_default() {
    let Some((pg, _guard)) = fresh_pg().await else {
        return;
    };
    let now = now_ms();
    let this = Month::of_ms(now);
    let attached: Vec<String> = pg
        .list_partitions()
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.attached)
        .map(|p| p.table)
        .collect();
    for m in 0..=2 {
        assert!(attached.contains(&this.offset(m).table()), "{attached:?}");
    }
    assert!(attached.contains(&"events_default".to_owned()));

    let pg = Arc::new(pg);
    let storage: Arc<dyn Storage> = pg.clone();
    let tenant = storage.create_tenant("acme").await.unwrap().tenant_id;
    let dev = enroll_one(&storage, tenant, "truck").await;
    // Seq 1 reads 1970 (no RTC), seq 2 a clock five months ahead: both are
    // implausible and keep their device time, so both land in the default.
    let ahead = this.offset(5);
    let mut e2 = event(2, 2_000);
    e2.time.wall_ms = ahead.start_ms() + 86_400_000;
    let b = batch(&dev, 1, 2, vec![event(1, 1_000), e2]);
    storage.ingest_batch(&dev, b, now).await.unwrap();
    let in_default = |pg: Arc<PgStorage>| async move {
        let tx = pg.tenant_tx(tenant).await.unwrap();
        let n: i64 = tx
            .query_one("SELECT count(*) FROM events_default", &[])
            .await
            .unwrap()
            .get(0);
        n
    };
    assert_eq!(in_default(pg.clone()).await, 2);

    // Five months on, maintenance makes that month's partition and moves the
    // straggler into it; the 1970 event stays in the default.
    let created = pg.ensure_partitions(ahead.start_ms() + 1).await.unwrap();
    assert!(created.contains(&ahead.table()), "{created:?}");
    assert_eq!(in_default(pg.clone()).await, 1);
    let events = storage
        .device_events(tenant, dev.device_id, 0, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
}

#[tokio::test]
async fn retention_detaches_old_months_and_keeps_their_tables() {
    let Some((pg, _guard)) = fresh_pg().await else {
        return;
    };
    let pg = Arc::new(pg);
    let storage: Arc<dyn Storage> = pg.clone();
    let tenant = storage.create_tenant("acme").await.unwrap().tenant_id;
    let dev = enroll_one(&storage, tenant, "truck").await;
    let this = Month::of_ms(now_ms());
    // An event in the current month's partition (a plausible device clock).
    let mut e = event(1, 1_000);
    e.time.wall_ms = now_ms();
    storage
        .ingest_batch(&dev, batch(&dev, 1, 1, vec![e]), now_ms())
        .await
        .unwrap();

    // Four months on, with three months kept: this month is past retention.
    let later = this.offset(4).start_ms() + 1;
    let detached = pg.detach_partitions(later, 3).await.unwrap();
    assert_eq!(detached, vec![this.table()]);
    let parts = pg.list_partitions().await.unwrap();
    let old = parts.iter().find(|p| p.table == this.table()).unwrap();
    assert!(!old.attached, "{old:?}");
    assert!(parts
        .iter()
        .any(|p| p.table == this.offset(1).table() && p.attached));
    // Its events are out of `events` but still in the detached table.
    let events = storage
        .device_events(tenant, dev.device_id, 0, 10)
        .await
        .unwrap()
        .unwrap();
    assert!(events.is_empty(), "{events:?}");
    let tx = pg.tenant_tx(tenant).await.unwrap();
    let kept: i64 = tx
        .query_one(&format!("SELECT count(*) FROM {}", this.table()), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 1);
    drop(tx);
    // Running it again changes nothing.
    assert!(pg.detach_partitions(later, 3).await.unwrap().is_empty());
}

/// The first release's schema: 0001 applied and recorded by the runner as it
/// was then, with a tenant, a device and its events written under RLS.
async fn first_release_database(guard: &super::testing::Guard) -> (Uuid, Uuid) {
    let c = PgStorage::dedicated(guard.app_config()).await.unwrap();
    let first = super::MIGRATIONS.iter().find(|m| m.version == 1).unwrap();
    c.batch_execute(
        "CREATE TABLE schema_migrations (
             version     integer     NOT NULL PRIMARY KEY,
             name        text        NOT NULL,
             applied_at  timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .unwrap();
    c.batch_execute(first.sql).await.unwrap();
    c.execute(
        "INSERT INTO schema_migrations (version, name) VALUES (1, 'init')",
        &[],
    )
    .await
    .unwrap();
    let (tenant, device) = (Uuid::new_v4(), Uuid::new_v4());
    c.execute(
        "SELECT set_config('app.tenant_id', $1, false)",
        &[&tenant.to_string()],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO tenants (tenant_id, name, created_at_ms) VALUES ($1, 'acme', 1)",
        &[&tenant],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO devices (tenant_id, device_id, name, public_key, enrolled_at_ms, acked_seq, event_count)
         VALUES ($1, $2, 'truck-1', 'key', 1, 2, 2)",
        &[&tenant, &device],
    )
    .await
    .unwrap();
    for seq in 1..=2i64 {
        c.execute(
            "INSERT INTO events (tenant_id, device_id, seq, kind, priority, boot_id, mono_ms, wall_ms, hlc,
                 config_version, time_ms, time_source, data, received_at_ms)
             VALUES ($1, $2, $3, 'ignition', 1, $4, $3, 1700000000000, 1, 1, 1700000000000, 'device', '{\"on\":true}', 1)",
            &[&tenant, &device, &seq, &vec![7u8; 16]],
        )
        .await
        .unwrap();
    }
    (tenant, device)
}

async fn applied_versions(guard: &super::testing::Guard) -> Vec<i32> {
    let c = PgStorage::dedicated(guard.app_config()).await.unwrap();
    c.query(
        "SELECT version FROM schema_migrations ORDER BY version",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test]
async fn a_released_postgres_database_is_migrated_forward_with_its_data_served() {
    use crate::storage::control::ControlStore;
    let Some(guard) = super::testing::empty_database().await else {
        return;
    };
    let (tenant, device) = first_release_database(&guard).await;

    let storage = PgStorage::connect_with(guard.app_config().clone())
        .await
        .expect("the released schema opens");
    let devices = storage.list_devices(tenant).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(
        (devices[0].name.as_str(), devices[0].last_seq),
        ("truck-1", 2)
    );
    let events = storage
        .device_events(tenant, device, 0, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(events[0].data, serde_json::json!({"on": true}));
    // The newer tables work for the old tenant: a control-plane group, say.
    let group = storage.create_group(tenant, "north", 5).await.unwrap();
    storage
        .assign_devices(tenant, group.id, &[device])
        .await
        .unwrap();
    drop(storage);

    let mut known: Vec<i32> = super::MIGRATIONS.iter().map(|m| m.version as i32).collect();
    known.sort_unstable();
    assert_eq!(
        applied_versions(&guard).await,
        known,
        "every newer migration is applied once"
    );
    // A second start finds nothing to do and changes nothing.
    PgStorage::connect_with(guard.app_config().clone())
        .await
        .unwrap();
    assert_eq!(applied_versions(&guard).await, known);
}

#[tokio::test]
async fn a_schema_written_by_a_newer_binary_is_refused_untouched() {
    let Some((pg, guard)) = fresh_pg().await else {
        return;
    };
    drop(pg);
    let c = PgStorage::dedicated(guard.app_config()).await.unwrap();
    c.execute(
        "INSERT INTO schema_migrations (version, name) VALUES (9999, 'from_the_future')",
        &[],
    )
    .await
    .unwrap();
    let before = applied_versions(&guard).await;
    let refused = PgStorage::connect_with(guard.app_config().clone()).await;
    match refused {
        Err(crate::storage::StorageError::SchemaTooNew { found, .. }) => assert_eq!(found, 9999),
        Err(e) => panic!("refused for the wrong reason: {e}"),
        Ok(_) => panic!("a newer schema was opened"),
    }
    assert_eq!(applied_versions(&guard).await, before);
}

#[tokio::test]
async fn two_replicas_claiming_at_once_never_hand_out_one_delivery_twice() {
    use crate::storage::control::{AttemptOutcome, ControlStore};
    let Some((a, guard)) = fresh_pg().await else {
        return;
    };
    let b = PgStorage::connect_with(guard.app_config().clone())
        .await
        .unwrap();
    let now = now_ms();
    let mut tenants = Vec::new();
    for name in ["acme", "globex"] {
        let t = a.create_tenant(name).await.unwrap().tenant_id;
        a.create_webhook(
            t,
            "https://example.com/h",
            &["fault".to_owned()],
            "json",
            "s",
            now,
        )
        .await
        .unwrap();
        for i in 0..40 {
            let id = format!("{name}:{i}");
            a.enqueue_webhook_event(t, "fault", &id, &serde_json::json!({ "id": id }), now)
                .await
                .unwrap();
        }
        tenants.push(t);
    }
    // Both replicas claim in small batches, concurrently, until nothing is due.
    let (from_a, from_b) = tokio::join!(claim_all(&a, now), claim_all(&b, now));
    let mut all: Vec<Uuid> = from_a.iter().chain(&from_b).copied().collect();
    assert_eq!(all.len(), 80, "a: {}, b: {}", from_a.len(), from_b.len());
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 80, "a delivery was handed to both replicas");

    // A claimed delivery whose sender died comes back once its lease ends, and
    // a recorded attempt takes it out for good.
    let later = now + super::control::DELIVERY_LEASE_MS;
    let again = a.due_deliveries(later, 100).await.unwrap();
    assert_eq!(
        again.len(),
        80,
        "unsent deliveries are due again after the lease"
    );
    for d in &again {
        b.record_attempt(
            d.tenant_id,
            d.delivery_id,
            &AttemptOutcome::Delivered { status: 200 },
            later,
        )
        .await
        .unwrap();
    }
    assert!(a
        .due_deliveries(later + super::control::DELIVERY_LEASE_MS, 100)
        .await
        .unwrap()
        .is_empty());
}

/// Claims due deliveries in small batches until none is left.
async fn claim_all(s: &PgStorage, now: i64) -> Vec<Uuid> {
    use crate::storage::control::ControlStore;
    let mut got = Vec::new();
    loop {
        let due = s.due_deliveries(now, 7).await.unwrap();
        if due.is_empty() {
            return got;
        }
        got.extend(due.into_iter().map(|d| d.delivery_id));
    }
}
