//! Reservations through a real `fleet-sync` HTTP server: 50 concurrent bookings
//! of overlapping windows on one vehicle make exactly one booking per free
//! slot (SQLite and PostgreSQL); a vehicle's iCalendar feed, fetched with its
//! private token, parses with the python `icalendar` package; a rejection
//! reaches the driver through a fake SMTP server written here, and the
//! tenant's webhook outbox.
//!
//! Peers: python3 with `icalendar` (tests/requirements.txt). Without it the
//! feed check is skipped with a message, except under `CI=true`, where it fails.

use fleet_sync::storage::assets::{Asset, AssetKind};
use fleet_sync::storage::Storage;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use uuid::Uuid;

const H: i64 = 3_600_000;

struct Server {
    url: String,
    storage: Arc<dyn Storage>,
    http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
    _mail: tokio::sync::watch::Sender<bool>,
}

impl Server {
    async fn start(storage: Arc<dyn Storage>) -> Server {
        let state = fleet_sync::AppState::new(storage.clone());
        // Reservation emails go through the outbox and its sender.
        let mail = fleet_sync::mail::sender::spawn(
            state.clone(),
            fleet_sync::mail::MailSettings {
                poll: Duration::from_millis(100),
                retry_base: Duration::from_millis(200),
                ..Default::default()
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(fleet_sync::serve(listener, state, async {
            let _ = stopped.await;
        }));
        Server {
            url: format!("http://{addr}"),
            storage,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            _stop: stop,
            _mail: mail,
        }
    }

    async fn json(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("authorization", format!("Bearer {key}"));
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A tenant with its admin key, a driver with an email and a vehicle.
    async fn fleet(&self) -> (Uuid, String, Uuid, Uuid) {
        let t = self.storage.create_tenant("yard").await.unwrap();
        let (s, user) = self
            .json(
                &t.api_key,
                reqwest::Method::POST,
                "/api/v1/users",
                Some(
                    json!({ "email": "dana@example.com", "name": "Dana Driver", "role": "driver" }),
                ),
            )
            .await;
        assert_eq!(s, 201, "{user}");
        let vehicle = Uuid::new_v4();
        let now = fleet_sync::storage::now_ms();
        self.storage
            .create_asset(
                t.tenant_id,
                &Asset {
                    id: vehicle,
                    kind: AssetKind::Vehicle,
                    name: "Van 7, Kühlwagen".into(),
                    make: None,
                    model: None,
                    vin: None,
                    plate: Some("RT-77".into()),
                    vehicle_group: Some("vans".into()),
                    home_yard: Some("north".into()),
                    department: None,
                    cost_center: None,
                    purchase_price_cents: None,
                    purchase_date: None,
                    device_id: None,
                    odometer_km: None,
                    engine_hours: None,
                    meter_at_ms: None,
                    created_at_ms: now,
                    updated_at_ms: now,
                    retired_at_ms: None,
                },
            )
            .await
            .unwrap();
        let user_id = user["id"].as_str().unwrap().parse().unwrap();
        (t.tenant_id, t.api_key, user_id, vehicle)
    }
}

/// 50 requests at once over five free slots three hours apart; within a slot
/// every window overlaps every other (start jittered by up to 40 minutes,
/// 90 minutes long), across slots none does, turnaround included.
async fn race(storage: Arc<dyn Storage>) {
    let server = Arc::new(Server::start(storage).await);
    let (tenant, key, user, vehicle) = server.fleet().await;
    let base = fleet_sync::storage::now_ms() + 24 * H;
    let mut tasks = Vec::new();
    for i in 0..50i64 {
        let server = server.clone();
        let key = key.clone();
        let slot = i % 5;
        let start = base + slot * 3 * H + (i * 7 % 40) * 60_000;
        tasks.push(tokio::spawn(async move {
            server
                .json(
                    &key,
                    reqwest::Method::POST,
                    "/api/v1/reservations",
                    Some(json!({ "vehicle_id": vehicle, "user_id": user, "start_ms": start, "end_ms": start + 90 * 60_000 })),
                )
                .await
        }));
    }
    let mut booked = 0;
    let mut refused = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            201 => booked += 1,
            409 => {
                assert_eq!(body["error"]["code"], "reservation_conflict", "{body}");
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("booked from"),
                    "{body}"
                );
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((booked, refused), (5, 45));
    let (s, list) = server
        .json(
            &key,
            reqwest::Method::GET,
            &format!("/api/v1/reservations?vehicle_id={vehicle}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{list}");
    let rows = list["reservations"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    // One per slot, and a turnaround buffer between each pair.
    for pair in rows.windows(2) {
        let end = pair[0]["end_ms"].as_i64().unwrap() + pair[0]["buffer_ms"].as_i64().unwrap();
        assert!(end <= pair[1]["start_ms"].as_i64().unwrap(), "{list}");
    }
    let stored = server
        .storage
        .list_reservations(
            tenant,
            &fleet_sync::storage::reservations::ReservationFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(stored.len(), 5, "nothing else was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_bookings_make_one_per_free_slot_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let storage = fleet_sync::open_sqlite(dir.path()).await.unwrap();
    race(storage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_bookings_make_one_per_free_slot_on_postgres() {
    let Some((storage, _guard)) = fleet_sync::storage::postgres::testing::fresh().await else {
        return;
    };
    race(storage).await;
}

/// `tests/run` installs the Python peers in a venv and names its interpreter.
fn python() -> String {
    std::env::var("FLEET_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn python_icalendar() -> bool {
    let ok = std::process::Command::new(python())
        .args(["-c", "import icalendar"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3 with icalendar is required under CI=true (tests/requirements.txt)"
        );
        eprintln!("skipped: python3 with icalendar is not installed");
    }
    ok
}

#[tokio::test]
async fn a_vehicle_feed_fetched_with_its_token_parses_with_python_icalendar() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(fleet_sync::open_sqlite(dir.path()).await.unwrap()).await;
    let (_, key, user, vehicle) = server.fleet().await;
    let start = fleet_sync::storage::now_ms() + 2 * H;
    let (s, booked) = server
        .json(
            &key,
            reqwest::Method::POST,
            "/api/v1/reservations",
            Some(json!({ "vehicle_id": vehicle, "user_id": user, "start_ms": start, "end_ms": start + H,
                         "purpose": "Depot run; pallets, two — and a very long purpose that needs folding across lines" })),
        )
        .await;
    assert_eq!(s, 201, "{booked}");
    let (s, tok) = server
        .json(
            &key,
            reqwest::Method::POST,
            "/api/v1/calendar/tokens",
            Some(json!({ "subject": "vehicle", "id": vehicle })),
        )
        .await;
    assert_eq!(s, 201, "{tok}");
    let path = tok["path"].as_str().unwrap();
    // The feed needs no API key, only its token; a wrong token is refused.
    let resp = server
        .http
        .get(format!("{}{path}", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/calendar"));
    let ics = resp.text().await.unwrap();
    let bad = server
        .http
        .get(format!(
            "{}/api/v1/calendar/vehicles/{vehicle}.ics?token=cal_{}_nope",
            server.url,
            Uuid::nil().simple()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 403);
    // Rotating the token retires the old URL.
    let (s, _) = server
        .json(
            &key,
            reqwest::Method::POST,
            "/api/v1/calendar/tokens",
            Some(json!({ "subject": "vehicle", "id": vehicle })),
        )
        .await;
    assert_eq!(s, 201);
    let old = server
        .http
        .get(format!("{}{path}", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 403);

    if !python_icalendar() {
        return;
    }
    let script = r#"
import sys, icalendar
raw = sys.stdin.buffer.read()
assert b"\n" not in raw.replace(b"\r\n", b""), "bare LF"
assert all(len(l) <= 75 for l in raw.split(b"\r\n")), "unfolded line"
cal = icalendar.Calendar.from_ical(raw)
evs = [c for c in cal.walk("VEVENT")]
assert len(evs) == 1, evs
e = evs[0]
print(e["UID"]); print(e["STATUS"]); print(e["SUMMARY"]); print(e["DESCRIPTION"].replace("\n", " | "))
print(int(e.decoded("DTSTART").timestamp() * 1000)); print(e.decoded("DTSTART").tzname())
"#;
    let mut child = std::process::Command::new(python())
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), ics.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "icalendar refused the feed: {}\n{ics}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("reservation-{}@fleet-sync", booked["id"].as_str().unwrap())
    );
    assert_eq!(lines[1], "TENTATIVE", "a pending booking");
    assert_eq!(lines[2], "Van 7, Kühlwagen: Dana Driver");
    assert!(
        lines[3].contains("Purpose: Depot run; pallets, two — and a very long purpose"),
        "{text}"
    );
    assert_eq!(lines[4], (start / 1000 * 1000).to_string());
    assert_eq!(lines[5], "UTC");
}

/// A minimal SMTP server: records each message's DATA and answers as a real
/// one would; the first connection is dropped after the greeting to show the
/// sender does not wedge on a broken peer.
async fn fake_smtp() -> (u16, tokio::sync::mpsc::Receiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
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
                    let reply: &[u8] = if cmd.starts_with("EHLO") {
                        b"250-fake.smtp\r\n250 8BITMIME\r\n"
                    } else if cmd.starts_with("DATA") {
                        w.write_all(b"354 go ahead\r\n").await.ok()?;
                        let mut data = String::new();
                        loop {
                            line.clear();
                            if r.read_line(&mut line).await.ok()? == 0 {
                                return Some(());
                            }
                            if line == ".\r\n" {
                                break;
                            }
                            data.push_str(&line);
                        }
                        tx.send(data).await.ok()?;
                        b"250 queued\r\n"
                    } else if cmd.starts_with("QUIT") {
                        w.write_all(b"221 bye\r\n").await.ok()?;
                        return Some(());
                    } else if cmd.starts_with("MAIL")
                        || cmd.starts_with("RCPT")
                        || cmd.starts_with("RSET")
                        || cmd.starts_with("NOOP")
                    {
                        b"250 ok\r\n"
                    } else {
                        b"502 not implemented\r\n"
                    };
                    w.write_all(reply).await.ok()?;
                }
            });
        }
    });
    (port, rx)
}

#[tokio::test]
async fn a_rejection_reaches_the_driver_by_smtp_and_the_webhook_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(fleet_sync::open_sqlite(dir.path()).await.unwrap()).await;
    let (tenant, key, user, vehicle) = server.fleet().await;
    let (port, mut mail) = fake_smtp().await;
    let (s, body) = server
        .json(
            &key,
            reqwest::Method::PUT,
            "/api/v1/reservation-settings",
            Some(json!({ "turnaround_minutes": 10, "smtp": { "host": "127.0.0.1", "port": port, "from": "Fleet <fleet@example.com>", "starttls": false, "password": "hunter2" } })),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["smtp"]["password_set"], true);
    assert!(
        !body.to_string().contains("hunter2"),
        "the password is never shown"
    );
    let (s, hook) = server
        .json(
            &key,
            reqwest::Method::POST,
            "/api/v1/webhooks",
            Some(json!({ "url": "https://hooks.example.com/fleet", "events": ["reservation"] })),
        )
        .await;
    assert_eq!(s, 201, "{hook}");
    let start = fleet_sync::storage::now_ms() + 5 * H;
    let (s, r) = server
        .json(&key, reqwest::Method::POST, "/api/v1/reservations", Some(json!({ "vehicle_id": vehicle, "user_id": user, "start_ms": start, "end_ms": start + H })))
        .await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["status"], "pending");
    let id = r["id"].as_str().unwrap();
    // No reason: refused, and nothing changes.
    let (s, e) = server
        .json(
            &key,
            reqwest::Method::POST,
            &format!("/api/v1/reservations/{id}/reject"),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("reason_required"))
    );
    let (s, rej) = server
        .json(
            &key,
            reqwest::Method::POST,
            &format!("/api/v1/reservations/{id}/reject"),
            Some(json!({ "reason": "needed for the inspection", "version": 1 })),
        )
        .await;
    assert_eq!(s, 200, "{rej}");
    assert_eq!(
        (rej["status"].as_str(), rej["version"].as_i64()),
        (Some("rejected"), Some(2))
    );
    // The created notice comes first, then the rejection.
    let mut subjects = Vec::new();
    for _ in 0..2 {
        let m = tokio::time::timeout(Duration::from_secs(20), mail.recv())
            .await
            .expect("mail within 20 s")
            .unwrap();
        subjects.push(m);
    }
    let rejection = subjects
        .iter()
        .find(|m| m.contains("Subject: Booking rejected"))
        .unwrap_or_else(|| panic!("{subjects:?}"));
    assert!(rejection.contains("dana@example.com"), "{rejection}");
    assert!(
        rejection.contains("needed for the inspection"),
        "{rejection}"
    );
    // The webhook outbox holds created and rejected for this booking.
    let hook_id = hook["id"].as_str().unwrap();
    let (s, d) = server
        .json(
            &key,
            reqwest::Method::GET,
            &format!("/api/v1/webhooks/{hook_id}/deliveries"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{d}");
    let text = d.to_string();
    assert!(
        text.contains(&format!("reservation_created:{id}:1")),
        "{text}"
    );
    assert!(
        text.contains(&format!("reservation_rejected:{id}:2")),
        "{text}"
    );
    // The approval audit trail names the rejection.
    let (_, audit) = server
        .json(&key, reqwest::Method::GET, "/api/v1/audit", None)
        .await;
    assert!(audit.to_string().contains("reservation.reject"), "{audit}");
    let _ = tenant;
}
