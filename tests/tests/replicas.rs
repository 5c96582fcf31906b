//! Two `fleet-sync serve` replicas on one PostgreSQL: devices sync to either at
//! random, the API of each sees everything, a stream client on B gets what
//! arrives through A (LISTEN/NOTIFY) once and only once, and B carries on when
//! A is killed. Skipped without `FLEET_TEST_PG_URL`; under `CI=true` it fails.

mod live_e2e;

use anyhow::{Context, Result};
use fleet_sync::storage::postgres::testing::empty_database;
use live_e2e::{create_tenant, postgres_url, Db, Device, Serve, StreamClient};
use rand::Rng;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use uuid::Uuid;

async fn vehicle_ids(server: &Serve, key: &str) -> Result<BTreeSet<Uuid>> {
    let list = server.get(key, "/api/v1/vehicles").await?;
    list.as_array()
        .context("vehicles is a list")?
        .iter()
        .map(|v| Ok(v["id"].as_str().context("id")?.parse()?))
        .collect()
}

/// (vehicle, seq) of each event, failing on a duplicate.
fn once(events: &[Value]) -> BTreeSet<(String, u64)> {
    let mut seen = BTreeSet::new();
    for e in events {
        let k = (
            e["vehicle"].as_str().unwrap_or_default().to_owned(),
            e["data"]["seq"].as_u64().unwrap_or_default(),
        );
        assert!(seen.insert(k.clone()), "event {k:?} arrived twice");
    }
    seen
}

#[tokio::test]
async fn two_replicas_share_devices_api_and_stream_and_one_survives_the_other() -> Result<()> {
    let Some(guard) = empty_database().await else {
        return Ok(());
    };
    let url = postgres_url(guard.app_config());
    let dir = tempfile::tempdir()?;
    let db = Db::Postgres(&url);
    let (_tenant, key) = create_tenant(&db, dir.path(), "acme")?;
    let mut a = Serve::start(&db, dir.path(), "replica-a", 1024).await?;
    let b = Serve::start(&db, dir.path(), "replica-b", 1024).await?;

    let token = a.token(&key, 6).await?;
    let mut devices = Vec::new();
    for i in 0..6 {
        let via = if i % 2 == 0 { &a.url } else { &b.url };
        devices.push(Device::enroll(via, &token, &format!("truck-{i}")).await?);
    }
    let mut watcher = StreamClient::connect(&b.addr, &key).await?;
    let answer = watcher
        .subscribe(json!({ "type": "subscribe", "kinds": ["position"] }))
        .await?;
    assert_eq!(answer["type"], "subscribed", "{answer}");

    // Three rounds; each batch goes to a replica picked at random.
    let mut sent = BTreeSet::new();
    let mut through_a = 0;
    for round in 0..3 {
        for d in devices.iter_mut() {
            let p = d.position(52.0 + f64::from(round) * 0.01, 13.0);
            sent.insert((d.id.to_string(), p.seq));
            let to_a = rand::thread_rng().gen_bool(0.5);
            through_a += usize::from(to_a);
            d.send(if to_a { &a.url } else { &b.url }, vec![p]).await?;
        }
    }
    assert!(through_a > 0, "some batches went through A");
    let got = watcher.drain_events(Duration::from_secs(3)).await?;
    assert_eq!(once(&got), sent, "B's subscriber saw every position once");

    let ids: BTreeSet<Uuid> = devices.iter().map(|d| d.id).collect();
    assert_eq!(vehicle_ids(&a, &key).await?, ids, "A lists every vehicle");
    assert_eq!(vehicle_ids(&b, &key).await?, ids, "B lists every vehicle");

    // A dies; B still takes syncs, serves the API and streams.
    a.kill()?;
    let mut after = BTreeSet::new();
    for d in devices.iter_mut() {
        let p = d.position(53.0, 13.0);
        after.insert((d.id.to_string(), p.seq));
        d.send(&b.url, vec![p]).await?;
    }
    let got = watcher.drain_events(Duration::from_secs(3)).await?;
    assert_eq!(once(&got), after, "B keeps streaming without A");
    assert_eq!(vehicle_ids(&b, &key).await?, ids);
    watcher.close().await;
    drop(b);
    Ok(())
}
