//! Scheduled reports through the API and the report pass, with time driven by
//! passing `now` to the pass (no sleeps): a daily schedule fires once at its
//! local hour and its attachment is the very CSV the analytics endpoint gives
//! for that window; a summary schedule attaches a real PDF; a cost report is
//! refused for a dispatcher and nothing is stored; on PostgreSQL, two replicas
//! running the pass at once send one run once.

use fleet_tests::api_server::ApiServer;
use serde_json::{json, Value};
use uuid::Uuid;

/// A tenant with one enrolled vehicle; its admin key.
async fn tenant_with_a_vehicle(api: &ApiServer) -> (Uuid, String) {
    let (tenant, key) = api.tenant("yard").await;
    api.enroll_in_storage(tenant, "Van 7").await;
    (tenant, key)
}

fn daily(kind: &str, format: &str) -> Value {
    json!({
        "name": format!("daily {kind}"),
        "kind": kind,
        "format": format,
        "period": "daily",
        "hour": 7,
        "time_zone": "Europe/Berlin",
        "recipients": ["ops@example.com", "boss@example.com"],
    })
}

#[tokio::test]
async fn a_daily_schedule_fires_once_at_its_hour_with_the_real_csv_and_pdf() {
    let api = ApiServer::start_sqlite().await;
    let (tenant, key) = tenant_with_a_vehicle(&api).await;
    let (s, csv_schedule) = api
        .json(
            &key,
            "POST",
            "/api/v1/report-schedules",
            Some(daily("utilization", "csv")),
        )
        .await;
    assert_eq!(s, 201, "{csv_schedule}");
    let (s, pdf_schedule) = api
        .json(
            &key,
            "POST",
            "/api/v1/report-schedules",
            Some(daily("summary", "pdf")),
        )
        .await;
    assert_eq!(s, 201, "{pdf_schedule}");
    let due = csv_schedule["next_run_ms"].as_i64().unwrap();
    assert_eq!(pdf_schedule["next_run_ms"].as_i64(), Some(due));
    // 07:00 in Berlin is 05:00 or 06:00 UTC.
    let hour_utc = (due / 3_600_000) % 24;
    assert!([5, 6].contains(&hour_utc), "{csv_schedule}");
    assert!(due > fleet_sync::storage::now_ms());

    let pass = |now| fleet_sync::analytics::scheduled::run_once(&api.state, now);
    let before = pass(due - 1).await.unwrap();
    assert_eq!(before.sent, 0, "not before its time");
    let at = pass(due).await.unwrap();
    assert_eq!(at.sent, 2, "{at:?}");
    let again = pass(due + 60_000).await.unwrap();
    assert_eq!((again.sent, again.skipped), (0, 0), "once per time");

    let mail = api
        .storage
        .claim_mail(due + 60_000, 60_000, 50)
        .await
        .unwrap();
    assert_eq!(mail.len(), 4, "one email per recipient per schedule");
    let id = csv_schedule["id"].as_str().unwrap();
    let (s, runs) = api
        .json(
            &key,
            "GET",
            &format!("/api/v1/report-schedules/{id}/runs"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{runs}");
    let run = &runs["runs"][0];
    assert_eq!(run["status"], "sent", "{runs}");
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1);
    let (from, to) = (
        run["window_from"].as_str().unwrap(),
        run["window_to"].as_str().unwrap(),
    );
    assert_eq!(from, to, "a daily run covers the day before");
    // The attachment is what the endpoint answers for that window.
    let (s, expected) = api
        .raw(
            &key,
            "GET",
            &format!("/api/v1/analytics/utilization?from={from}&to={to}&format=csv"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let csv_mail: Vec<_> = mail
        .iter()
        .filter(|m| m.mail.attachment.as_ref().unwrap().name.ends_with(".csv"))
        .collect();
    assert_eq!(csv_mail.len(), 2);
    for m in &csv_mail {
        assert_eq!(m.tenant_id, tenant);
        let a = m.mail.attachment.as_ref().unwrap();
        assert_eq!(a.bytes, expected);
        assert!(a.content_type.starts_with("text/csv"), "{}", a.content_type);
        assert!(run["message_ids"]
            .as_array()
            .unwrap()
            .contains(&json!(m.mail.message_id)));
    }
    let text = String::from_utf8(expected).unwrap();
    assert!(text.starts_with("id,name,group,"), "{text}");
    assert!(text.contains("Van 7"), "{text}");
    let pdf = mail
        .iter()
        .find(|m| m.mail.attachment.as_ref().unwrap().name.ends_with(".pdf"))
        .unwrap();
    let bytes = &pdf.mail.attachment.as_ref().unwrap().bytes;
    assert!(bytes.starts_with(b"%PDF-"), "a real PDF");
    assert!(bytes.windows(5).any(|w| w == b"%%EOF"));

    // The next run is a day later, and the schedule says so.
    let (_, after) = api
        .json(&key, "GET", &format!("/api/v1/report-schedules/{id}"), None)
        .await;
    assert_eq!(after["last_run_ms"].as_i64(), Some(due));
    let next = after["next_run_ms"].as_i64().unwrap();
    assert!((next - due - 86_400_000).abs() <= 3_600_000, "{after}");
}

#[tokio::test]
async fn a_cost_report_is_refused_for_a_dispatcher_and_bad_schedules_store_nothing() {
    let api = ApiServer::start_sqlite().await;
    let (_, admin) = tenant_with_a_vehicle(&api).await;
    let (s, k) = api
        .json(
            &admin,
            "POST",
            "/api/v1/keys",
            Some(json!({ "name": "desk", "role": "dispatcher" })),
        )
        .await;
    assert_eq!(s, 201, "{k}");
    let dispatcher = k["secret"].as_str().unwrap().to_owned();
    let (s, e) = api
        .json(
            &dispatcher,
            "POST",
            "/api/v1/report-schedules",
            Some(daily("costs", "csv")),
        )
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{e}"
    );
    let mut bad = daily("utilization", "csv");
    bad["time_zone"] = json!("Mars/Olympus");
    let (s, e) = api
        .json(&dispatcher, "POST", "/api/v1/report-schedules", Some(bad))
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("bad_time_zone"))
    );
    let mut bad = daily("utilization", "pdf");
    bad["extra"] = json!(1);
    let (s, _) = api
        .json(&dispatcher, "POST", "/api/v1/report-schedules", Some(bad))
        .await;
    assert_eq!(s, 400);
    let (_, list) = api
        .json(&admin, "GET", "/api/v1/report-schedules", None)
        .await;
    assert_eq!(list["schedules"], json!([]), "nothing was stored");
    // The dispatcher's utilization report is fine; a manager may schedule costs.
    let (s, _) = api
        .json(
            &dispatcher,
            "POST",
            "/api/v1/report-schedules",
            Some(daily("utilization", "csv")),
        )
        .await;
    assert_eq!(s, 201);
    let (s, c) = api
        .json(
            &admin,
            "POST",
            "/api/v1/report-schedules",
            Some(daily("costs", "csv")),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    // The dispatcher cannot turn a schedule into a cost report either.
    let id = c["id"].as_str().unwrap();
    let (s, _) = api
        .json(
            &dispatcher,
            "PUT",
            &format!("/api/v1/report-schedules/{id}"),
            Some(daily("costs", "csv")),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = api
        .json(
            &dispatcher,
            "DELETE",
            &format!("/api/v1/report-schedules/{}", Uuid::new_v4()),
            None,
        )
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn a_second_replica_does_not_send_a_run_again() {
    let Some((storage, _guard)) = fleet_sync::storage::postgres::testing::fresh().await else {
        eprintln!("skipped: FLEET_TEST_PG_URL is not set");
        return;
    };
    let api = ApiServer::start(storage.clone()).await;
    let (tenant, key) = tenant_with_a_vehicle(&api).await;
    let (s, sched) = api
        .json(
            &key,
            "POST",
            "/api/v1/report-schedules",
            Some(daily("trips", "csv")),
        )
        .await;
    assert_eq!(s, 201, "{sched}");
    let due = sched["next_run_ms"].as_i64().unwrap();
    // Two replicas: each its own state, claiming in its own transactions.
    let a = fleet_sync::AppState::new(storage.clone());
    let b = fleet_sync::AppState::new(storage.clone());
    let (ra, rb) = tokio::join!(
        fleet_sync::analytics::scheduled::run_once(&a, due),
        fleet_sync::analytics::scheduled::run_once(&b, due)
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.sent + rb.sent, 1, "{ra:?} {rb:?}");
    // Later passes on either replica find nothing due.
    for state in [&a, &b] {
        let r = fleet_sync::analytics::scheduled::run_once(state, due + 1_000)
            .await
            .unwrap();
        assert_eq!(r.sent + r.skipped + r.failed, 0);
    }
    let queued = storage.list_mail(tenant, None, 50).await.unwrap();
    assert_eq!(queued.len(), 2, "one email per recipient: {queued:?}");
    let id = sched["id"].as_str().unwrap();
    let (_, runs) = api
        .json(
            &key,
            "GET",
            &format!("/api/v1/report-schedules/{id}/runs"),
            None,
        )
        .await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs}");
}
