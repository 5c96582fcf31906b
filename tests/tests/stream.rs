//! The live stream end to end: a real `fleet-sync serve`, devices syncing signed
//! batches over HTTP, and WebSocket clients that filter, resume, get heartbeats,
//! and one that never reads and is closed with 4008 while the others carry on.

mod live_e2e;

use anyhow::{ensure, Context, Result};
use live_e2e::{create_tenant, Db, Device, Read, Serve, StreamClient};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_filtered_subscriber_sees_positions_within_a_second_and_resumes_exactly() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = Db::Sqlite(dir.path());
    let (_tenant, key) = create_tenant(&db, dir.path(), "acme")?;
    let server = Serve::start(&db, dir.path(), "serve", 1024).await?;
    let token = server.token(&key, 2).await?;
    let mut truck = Device::enroll(&server.url, &token, "truck").await?;
    let mut van = Device::enroll(&server.url, &token, "van").await?;

    let mut client = StreamClient::connect(&server.addr, &key).await?;
    let answer = client
        .subscribe(json!({ "type": "subscribe", "vehicles": [truck.id], "kinds": ["position"] }))
        .await?;
    assert_eq!(answer["type"], "subscribed", "{answer}");

    // The van is outside the filter; the truck's fault is not a position.
    let van_pos = van.position(52.0, 13.0);
    van.send(&server.url, vec![van_pos]).await?;
    let events = vec![truck.fault("P0301", 0), truck.position(52.5, 13.4)];
    truck.send(&server.url, events).await?;
    let stored = Instant::now();
    let ev = client.next_event(Duration::from_secs(3)).await?;
    let latency = stored.elapsed();
    assert_eq!(ev["kind"], "position");
    assert_eq!(ev["vehicle"], truck.id.to_string());
    assert!(
        latency < Duration::from_secs(1),
        "position reached the subscriber {latency:?} after it was stored"
    );
    let last_id = ev["id"].as_u64().unwrap();

    // A heartbeat comes while nothing happens (the server sends one a second).
    let mut heartbeat = false;
    for _ in 0..5 {
        if let Read::Json(v) = client.read(Duration::from_secs(3)).await? {
            ensure!(v["type"] != "event", "nothing was sent, yet {v}");
            if v["type"] == "heartbeat" {
                heartbeat = true;
                break;
            }
        }
    }
    assert!(heartbeat, "no heartbeat within a few seconds");
    client.close().await;

    // While away: three truck positions (one per batch), a van position and a fault.
    let mut missed = Vec::new();
    for i in 0..3 {
        let p = truck.position(52.5 + f64::from(i) * 0.01, 13.4);
        missed.push(p.seq);
        truck.send(&server.url, vec![p]).await?;
        let vp = van.position(52.0, 13.0 + f64::from(i) * 0.01);
        van.send(&server.url, vec![vp]).await?;
    }
    let fault = truck.fault("P0420", 0);
    truck.send(&server.url, vec![fault]).await?;

    let mut back = StreamClient::connect(&server.addr, &key).await?;
    let answer = back
        .subscribe(json!({ "type": "subscribe", "vehicles": [truck.id], "kinds": ["position"], "resume_after": last_id }))
        .await?;
    assert_eq!(answer["type"], "resumed", "{answer}");
    let replayed = back.drain_events(Duration::from_millis(1500)).await?;
    let seqs: Vec<u64> = replayed
        .iter()
        .map(|e| e["data"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs, missed,
        "exactly the missed positions, in order: {replayed:?}"
    );
    let ids: Vec<u64> = replayed.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]) && ids[0] > last_id);
    back.close().await;
    Ok(())
}

/// How the stuck client's connection ended.
enum Ended {
    Closed(Option<u16>),
    Reset,
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_with_4008_while_others_keep_receiving() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = Db::Sqlite(dir.path());
    let (_tenant, key) = create_tenant(&db, dir.path(), "acme")?;
    // A small per-client queue, so the stuck client overflows it soon after the
    // socket buffers are full.
    let server = Serve::start(&db, dir.path(), "serve", 64).await?;
    let token = server.token(&key, 1).await?;
    let mut truck = Device::enroll(&server.url, &token, "truck").await?;

    let mut stuck = StreamClient::connect(&server.addr, &key).await?;
    stuck.subscribe(json!({ "type": "subscribe" })).await?;
    let mut stuck = Some(stuck);
    let mut reader = StreamClient::connect(&server.addr, &key).await?;
    reader.subscribe(json!({ "type": "subscribe" })).await?;

    // 100 batches of 20 faults carrying 4 KB each: 8 MB the stuck client never
    // takes, in bursts the reading client's queue holds.
    let reading = tokio::spawn(async move {
        let mut n = 0usize;
        while n < 2000 {
            let ev = reader
                .next_event(Duration::from_secs(20))
                .await
                .context("the reading client")?;
            ensure!(ev["kind"] == "fault", "{ev}");
            n += 1;
        }
        anyhow::Ok((reader, n))
    });
    let mut draining = None;
    for b in 0..100 {
        let events = (0..20)
            .map(|i| truck.fault(&format!("P{b:03}{i:02}"), 4096))
            .collect();
        truck.send(&server.url, events).await?;
        if b == 60 {
            // Well past what the socket buffers and its queue hold: the stuck
            // client reads at last, within the server's grace for the close
            // frame, and finds the close after what was buffered.
            let mut stuck = stuck.take().expect("read once");
            draining = Some(tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(20);
                while Instant::now() < deadline {
                    match stuck.read(Duration::from_secs(10)).await {
                        Ok(Read::Closed(code)) => return anyhow::Ok(Ended::Closed(code)),
                        Ok(Read::Json(_)) => {}
                        // The server drops the socket after its close frame; when
                        // the client's pongs are still unread there, TCP resets
                        // and the frame is lost with the rest of the buffer.
                        Err(e) if format!("{e:#}").contains("reset") => {
                            return anyhow::Ok(Ended::Reset)
                        }
                        Err(e) => return Err(e.context("the stuck client")),
                    }
                }
                anyhow::bail!("the stuck client was never closed")
            }));
        }
    }
    let (mut reader, got) = tokio::time::timeout(Duration::from_secs(30), reading).await???;
    assert_eq!(got, 2000, "the reading client got every fault");
    match draining.expect("started").await?? {
        Ended::Closed(code) => assert_eq!(code, Some(4008), "closed as too slow"),
        Ended::Reset => {}
    }

    // And the server still serves the reader.
    let p = truck.position(52.5, 13.4);
    truck.send(&server.url, vec![p]).await?;
    let ev = reader.next_event(Duration::from_secs(3)).await?;
    assert_eq!(ev["kind"], "position");
    Ok(())
}
