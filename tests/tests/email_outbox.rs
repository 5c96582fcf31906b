//! The durable email outbox against a fake SMTP server that misbehaves on
//! purpose: it refuses the first connections with a transient 421 and drops
//! one connection in the middle of DATA; every queued email still arrives
//! exactly once (one complete copy per Message-ID) once the server recovers.
//! A message refused every time becomes a dead letter the API lists and can
//! queue again. Time is driven by passing `now` to the sender, not by sleeping.

use fleet_sync::mail::{sender, MailSettings};
use fleet_sync::storage::mail::{Attachment, NewMail};
use fleet_tests::api_server::ApiServer;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use uuid::Uuid;

/// What the fake server does with one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    /// 421 to MAIL FROM: try again later.
    Refuse,
    /// Takes part of the message after DATA, then closes the socket.
    DropMidData,
    /// Takes the message (or answers MAIL FROM with the server's
    /// `rest_code` when that is not 250).
    Accept,
}

struct FakeSmtp {
    port: u16,
    /// Complete messages received (DATA up to the final dot).
    received: Arc<Mutex<Vec<String>>>,
}

/// Connection `i` behaves as `script[i]`, later ones as `rest`.
async fn fake_smtp(script: Vec<Conn>, rest: Conn, rest_code: &'static str) -> FakeSmtp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let got = received.clone();
    tokio::spawn(async move {
        let mut n = 0usize;
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let how = script.get(n).copied().unwrap_or(rest);
            n += 1;
            let got = got.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                w.write_all(b"220 fake.smtp ESMTP\r\n").await.ok()?;
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.ok()? == 0 {
                        return Some(());
                    }
                    let cmd = line.trim_end().to_ascii_uppercase();
                    if cmd.starts_with("EHLO") {
                        w.write_all(b"250-fake.smtp\r\n250 8BITMIME\r\n")
                            .await
                            .ok()?;
                    } else if cmd.starts_with("MAIL") {
                        match how {
                            Conn::Refuse => w.write_all(b"421 busy, try later\r\n").await.ok()?,
                            Conn::Accept if rest_code != "250" => w
                                .write_all(
                                    format!("{rest_code} mailbox unavailable\r\n").as_bytes(),
                                )
                                .await
                                .ok()?,
                            _ => w.write_all(b"250 ok\r\n").await.ok()?,
                        }
                    } else if cmd.starts_with("DATA") {
                        w.write_all(b"354 go ahead\r\n").await.ok()?;
                        let mut data = String::new();
                        loop {
                            line.clear();
                            if r.read_line(&mut line).await.ok()? == 0 {
                                return Some(());
                            }
                            if how == Conn::DropMidData && data.len() > 40 {
                                // Gone mid-message: nothing was accepted.
                                return Some(());
                            }
                            if line == ".\r\n" {
                                break;
                            }
                            data.push_str(&line);
                        }
                        got.lock().unwrap().push(data);
                        w.write_all(b"250 queued\r\n").await.ok()?;
                    } else if cmd.starts_with("QUIT") {
                        w.write_all(b"221 bye\r\n").await.ok()?;
                        return Some(());
                    } else {
                        w.write_all(b"250 ok\r\n").await.ok()?;
                    }
                }
            });
        }
    });
    FakeSmtp { port, received }
}

fn settings(max_attempts: u32) -> MailSettings {
    MailSettings {
        poll: Duration::from_millis(50),
        max_attempts,
        retry_base: Duration::from_secs(30),
        retry_max: Duration::from_secs(600),
        lease: Duration::from_secs(300),
        smtp_timeout: Duration::from_secs(5),
    }
}

/// A tenant whose mail goes to the fake SMTP server on `port`; its id and
/// admin key.
async fn tenant_with_smtp(api: &ApiServer, port: u16) -> (Uuid, String) {
    let (tenant, key) = api.tenant("yard").await;
    let (s, body) = api
        .json(
            &key,
            "PUT",
            "/api/v1/reservation-settings",
            Some(json!({ "smtp": { "host": "127.0.0.1", "port": port, "from": "Fleet <fleet@example.com>", "starttls": false } })),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    (tenant, key)
}

fn mail(i: usize) -> NewMail {
    NewMail {
        message_id: format!("test.{i}@fleet-sync"),
        source: "test".into(),
        to_addr: format!("driver{i}@example.com"),
        to_name: Some(format!("Driver {i}")),
        subject: format!("Notice {i}"),
        body: format!("Hello driver {i}, this line is long enough to be cut in two.\n"),
        attachment: (i == 0).then(|| Attachment {
            name: "report.csv".into(),
            content_type: "text/csv".into(),
            bytes: b"id,name\n1,Van 7\n".to_vec(),
        }),
    }
}

fn message_ids(received: &[String]) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    for m in received {
        let id = m
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: "))
            .unwrap_or_else(|| panic!("no Message-ID in {m}"))
            .to_owned();
        *ids.entry(id).or_insert(0) += 1;
    }
    ids
}

#[tokio::test]
async fn every_email_arrives_once_after_refusals_and_a_connection_dropped_mid_data() {
    let api = ApiServer::start_sqlite().await;
    let storage = api.storage.clone();
    let smtp = fake_smtp(
        vec![Conn::Refuse, Conn::Refuse, Conn::DropMidData],
        Conn::Accept,
        "250",
    )
    .await;
    let (tenant, _) = tenant_with_smtp(&api, smtp.port).await;
    let mails: Vec<NewMail> = (0..3).map(mail).collect();
    let mut now = 1_800_000_000_000;
    assert_eq!(storage.enqueue_mail(tenant, &mails, now).await.unwrap(), 3);
    // Queued again (a retried request, a second replica): nothing more.
    assert_eq!(storage.enqueue_mail(tenant, &mails, now).await.unwrap(), 0);
    let state = fleet_sync::AppState::new(storage.clone());
    let s = settings(8);
    let mut passes = 0;
    loop {
        let r = sender::send_due(&state, &s, now).await;
        passes += 1;
        let sent = storage.list_mail(tenant, Some("sent"), 10).await.unwrap();
        if sent.len() == 3 {
            break;
        }
        assert!(
            passes < 20,
            "not all sent after {passes} passes: {r:?} {sent:?}"
        );
        assert_eq!(r.dead, 0);
        // The next retry is at most retry_max away.
        now += 600_000;
    }
    let received = smtp.received.lock().unwrap().clone();
    let ids = message_ids(&received);
    assert_eq!(ids.len(), 3, "{received:?}");
    for m in &mails {
        assert_eq!(ids.get(&format!("<{}>", m.message_id)), Some(&1), "{ids:?}");
    }
    let with_file = received
        .iter()
        .find(|m| m.contains("<test.0@fleet-sync>"))
        .unwrap();
    assert!(with_file.contains("filename=\"report.csv\""), "{with_file}");
    let log = storage.list_mail(tenant, None, 10).await.unwrap();
    assert!(
        log.iter().map(|m| m.attempts).sum::<u32>() >= 5,
        "two refusals and a dropped connection were retried: {log:?}"
    );
    assert!(log
        .iter()
        .all(|m| m.state == "sent" && m.sent_at_ms.is_some()));
    // Nothing is left to send.
    let r = sender::send_due(&state, &s, now + 86_400_000).await;
    assert_eq!(r.tried(), 0);
    assert_eq!(smtp.received.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_message_refused_every_time_is_a_dead_letter_the_api_lists_and_requeues() {
    let api = ApiServer::start_sqlite().await;
    let storage = api.storage.clone();
    let smtp = fake_smtp(vec![], Conn::Accept, "451").await;
    let (tenant, key) = tenant_with_smtp(&api, smtp.port).await;
    let mut now = 1_800_000_000_000;
    storage.enqueue_mail(tenant, &[mail(1)], now).await.unwrap();
    let state = fleet_sync::AppState::new(storage.clone());
    let s = settings(3);
    let mut dead = 0;
    for _ in 0..3 {
        dead += sender::send_due(&state, &s, now).await.dead;
        now += 600_000;
    }
    assert_eq!(dead, 1, "given up after the third attempt");
    let (st, body) = api.json(&key, "GET", "/api/v1/mail?state=dead", None).await;
    assert_eq!(st, 200, "{body}");
    let m = &body["messages"][0];
    assert_eq!(m["message_id"], "test.1@fleet-sync");
    assert_eq!(m["attempts"], 3);
    assert!(m["last_error"].as_str().unwrap().contains("451"), "{m}");
    assert_eq!(
        sender::send_due(&state, &s, now + 86_400_000).await.tried(),
        0,
        "a dead letter is not sent again by itself"
    );
    let (st, e) = api.json(&key, "GET", "/api/v1/mail?state=lost", None).await;
    assert_eq!((st, e["error"]["code"].as_str()), (400, Some("bad_state")));
    let (st, _) = api
        .json(&key, "POST", "/api/v1/mail/nope@fleet-sync/retry", None)
        .await;
    assert_eq!(st, 404);
    let (st, _) = api
        .json(&key, "POST", "/api/v1/mail/test.1@fleet-sync/retry", None)
        .await;
    assert_eq!(st, 202);
    let (_, body) = api
        .json(&key, "GET", "/api/v1/mail?state=pending", None)
        .await;
    assert_eq!(body["messages"][0]["attempts"], 0, "{body}");
    assert!(smtp.received.lock().unwrap().is_empty());
}

#[tokio::test]
async fn two_senders_on_one_postgresql_deliver_each_email_once() {
    let Some((storage, _guard)) = fleet_sync::storage::postgres::testing::fresh().await else {
        eprintln!("skipped: FLEET_TEST_PG_URL is not set");
        return;
    };
    let api = ApiServer::start(storage.clone()).await;
    let smtp = fake_smtp(vec![Conn::Refuse], Conn::Accept, "250").await;
    let (tenant, _) = tenant_with_smtp(&api, smtp.port).await;
    let mails: Vec<NewMail> = (0..20).map(mail).collect();
    let mut now = 1_800_000_000_000;
    storage.enqueue_mail(tenant, &mails, now).await.unwrap();
    // Two replicas: each its own state, claiming in its own transactions.
    let a = fleet_sync::AppState::new(storage.clone());
    let b = fleet_sync::AppState::new(storage.clone());
    let s = settings(8);
    for _ in 0..10 {
        let (ra, rb) = tokio::join!(sender::send_due(&a, &s, now), sender::send_due(&b, &s, now));
        if ra.tried() + rb.tried() == 0
            && storage
                .list_mail(tenant, Some("pending"), 50)
                .await
                .unwrap()
                .is_empty()
        {
            break;
        }
        now += 600_000;
    }
    let received = smtp.received.lock().unwrap().clone();
    let ids = message_ids(&received);
    assert_eq!(ids.len(), 20);
    assert!(ids.values().all(|n| *n == 1), "{ids:?}");
}
