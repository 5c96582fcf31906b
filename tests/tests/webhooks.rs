//! Outbound webhooks against a receiver that fails on purpose: retries with
//! backoff, a signature the receiver can check, one delivery per event however
//! often its batch is resent, and a Slack-format body.

mod fake_device;

use anyhow::{ensure, Context, Result};
use axum::http::{HeaderMap, StatusCode};
use fake_device::{start_server, FakeDevice};
use fleet_sync::webhooks::{sign, worker, WebhookSettings};
use fleet_sync::Settings;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the receiver got: its headers and body.
type Call = (HeaderMap, Vec<u8>);

#[derive(Clone, Default)]
struct Receiver {
    calls: Arc<Mutex<Vec<Call>>>,
    fail_first: usize,
}

impl Receiver {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

/// A receiver that answers 500 to its first `fail_first` calls, then 200.
async fn receiver(fail_first: usize) -> Result<(String, Receiver)> {
    let r = Receiver {
        calls: Arc::default(),
        fail_first,
    };
    let shared = r.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let r = shared.clone();
            async move {
                let mut calls = r.calls.lock().unwrap();
                calls.push((headers, body.to_vec()));
                if calls.len() <= r.fail_first {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, r))
}

fn quick() -> WebhookSettings {
    WebhookSettings {
        allow_private: true,
        retry_base: Duration::from_millis(40),
        retry_max: Duration::from_millis(200),
        max_attempts: 5,
        request_timeout: Duration::from_secs(2),
        poll: Duration::from_millis(20),
        check_every: Duration::from_secs(3600),
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn a_fault_reaches_a_failing_receiver_once_signed_after_retries() -> Result<()> {
    let server = start_server(Settings {
        allow_private_webhooks: true,
        ..Settings::default()
    })
    .await?;
    let _worker = worker::spawn(server.state.clone(), quick());
    let (url, rx) = receiver(2).await?;
    let hook = server
        .expect(
            201,
            "POST",
            "/api/v1/webhooks",
            Some(json!({ "url": url, "events": ["fault"], "format": "slack" })),
        )
        .await?;
    let secret = hook["secret"].as_str().context("secret")?.to_owned();
    let id = hook["id"].as_str().context("id")?.to_owned();
    let listed = server.expect(200, "GET", "/api/v1/webhooks", None).await?;
    assert!(
        listed["webhooks"][0].get("secret").is_none(),
        "the secret is shown once"
    );

    let token = server.token(1).await?;
    let device = FakeDevice::enroll(&server, &token, "truck-7").await?;
    let events = [
        (1, "ignition_on", json!({})),
        (
            2,
            "dtc_set",
            json!({ "source": 0, "spn": 110, "fmi": 0, "oc": 1, "lamps": 4 }),
        ),
    ];
    device.send_batch(&events).await?;
    // The same batch again, as after a lost ack: stored once, delivered once.
    device.send_batch(&events).await?;

    let deadline = Instant::now() + Duration::from_secs(10);
    while rx.calls().len() < 3 {
        ensure!(
            Instant::now() < deadline,
            "{} calls so far",
            rx.calls().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Long enough for a duplicate to have shown up after the retries.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls = rx.calls();
    assert_eq!(calls.len(), 3, "two failures and one success, nothing more");
    let event_id = format!("{}:2", device.id);
    for (i, (h, _)) in calls.iter().enumerate() {
        assert_eq!(header(h, "idempotency-key"), event_id);
        assert_eq!(header(h, "x-fleet-attempt"), (i + 1).to_string());
    }
    let (h, body) = &calls[2];
    let now_s = fleet_sync::storage::now_ms() / 1000;
    assert!(sign::verify_header(
        &secret,
        header(h, "x-fleet-signature"),
        body,
        now_s,
        300
    ));
    assert!(!sign::verify_header(
        "whsec_wrong",
        header(h, "x-fleet-signature"),
        body,
        now_s,
        300
    ));
    let slack: Value = serde_json::from_slice(body)?;
    let text = slack["text"].as_str().context("a slack body has text")?;
    assert!(
        text.starts_with("Fault on truck-7: SPN 110 FMI 0 is active"),
        "{text}"
    );

    let log = server
        .expect(
            200,
            "GET",
            &format!("/api/v1/webhooks/{id}/deliveries"),
            None,
        )
        .await?;
    let log = log["deliveries"].as_array().context("deliveries")?;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["state"], "delivered");
    assert_eq!(log[0]["attempts"], 3);
    assert_eq!(log[0]["last_status"], 200);
    assert_eq!(log[0]["event_id"], event_id.as_str());
    Ok(())
}

#[tokio::test]
async fn a_receiver_that_never_answers_well_is_given_up_after_the_attempt_cap() -> Result<()> {
    let server = start_server(Settings {
        allow_private_webhooks: true,
        ..Settings::default()
    })
    .await?;
    let _worker = worker::spawn(server.state.clone(), quick());
    let (url, rx) = receiver(usize::MAX).await?;
    let hook = server
        .expect(
            201,
            "POST",
            "/api/v1/webhooks",
            Some(json!({ "url": url, "events": ["geofence"] })),
        )
        .await?;
    let id = hook["id"].as_str().context("id")?.to_owned();
    let token = server.token(1).await?;
    let device = FakeDevice::enroll(&server, &token, "van").await?;
    device
        .send_batch(&[(
            1,
            "geofence_enter",
            json!({ "geofence_id": "depot", "name": "Depot" }),
        )])
        .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = server
            .expect(
                200,
                "GET",
                &format!("/api/v1/webhooks/{id}/deliveries"),
                None,
            )
            .await?;
        if log["deliveries"][0]["state"] == "failed" {
            assert_eq!(log["deliveries"][0]["attempts"], 5);
            assert_eq!(log["deliveries"][0]["last_status"], 500);
            break;
        }
        ensure!(Instant::now() < deadline, "not given up: {log}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(rx.calls().len(), 5);
    let body: Value = serde_json::from_slice(&rx.calls()[0].1)?;
    assert_eq!(
        body["kind"], "geofence",
        "the json format is the payload itself"
    );
    assert_eq!(body["event_kind"], "geofence_enter");
    Ok(())
}

#[tokio::test]
async fn a_silent_device_is_reported_offline_once() -> Result<()> {
    let server = start_server(Settings {
        allow_private_webhooks: true,
        offline_after_ms: 1,
        ..Settings::default()
    })
    .await?;
    let hook = server
        .expect(
            201,
            "POST",
            "/api/v1/webhooks",
            Some(json!({ "url": "http://127.0.0.1:9/never", "events": ["device_offline"], "format": "teams" })),
        )
        .await?;
    let id = hook["id"].as_str().context("id")?.to_owned();
    let token = server.token(1).await?;
    FakeDevice::enroll(&server, &token, "quiet").await?;
    tokio::time::sleep(Duration::from_millis(5)).await;
    worker::check_silent_devices(&server.state).await;
    worker::check_silent_devices(&server.state).await;
    let log = server
        .expect(
            200,
            "GET",
            &format!("/api/v1/webhooks/{id}/deliveries"),
            None,
        )
        .await?;
    let log = log["deliveries"].as_array().context("deliveries")?;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["kind"], "device_offline");
    Ok(())
}

#[tokio::test]
async fn webhooks_to_private_addresses_and_bad_requests_are_refused_and_write_nothing() -> Result<()>
{
    let server = start_server(Settings::default()).await?;
    for (body, code) in [
        (
            json!({ "url": "http://127.0.0.1:9/x", "events": ["fault"] }),
            "bad_url",
        ),
        (
            json!({ "url": "http://169.254.169.254/", "events": ["fault"] }),
            "bad_url",
        ),
        (
            json!({ "url": "ftp://example.com/", "events": ["fault"] }),
            "bad_url",
        ),
        (
            json!({ "url": "https://example.com/", "events": ["weather"] }),
            "bad_events",
        ),
        (
            json!({ "url": "https://example.com/", "events": [] }),
            "bad_events",
        ),
        (
            json!({ "url": "https://example.com/", "events": ["fault"], "format": "fax" }),
            "bad_format",
        ),
        (json!({ "url": "https://example.com/" }), "bad_json"),
    ] {
        let (status, v) = server
            .api("POST", "/api/v1/webhooks", Some(body.clone()))
            .await?;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
    let list = server.expect(200, "GET", "/api/v1/webhooks", None).await?;
    assert_eq!(list["webhooks"], json!([]));
    Ok(())
}
