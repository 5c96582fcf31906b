//! Analytics against hand-computed expectations: a synthetic fleet with known
//! trips, idle periods, data gaps, a refuel, a fuel drop while parked, a
//! fault and costs is sent through the device batch endpoint of a running
//! server (signed, over loopback, one batch resent), and every report is read
//! back through the operator API. The arithmetic is in the comments. Runs on
//! SQLite and, with `FLEET_TEST_PG_URL`, on PostgreSQL.

use ed25519_dalek::SigningKey;
use fleet_protocol::api::{self, EnrollRequest, EnrollResponse};
use fleet_protocol::{
    auth, encode_batch, BatchHeader, BootId, Event, EventData, EventTime, Hlc, Kind, Priority,
};
use fleet_sync::analytics::{day_string, local_day, weekday, DAY_MS, HOUR_MS};
use fleet_sync::storage::{now_ms, Storage};
use fleet_sync::AppState;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

struct Server {
    url: String,
    http: reqwest::Client,
    api_key: String,
    storage: Arc<dyn Storage>,
    tenant: Uuid,
    _stop: tokio::sync::oneshot::Sender<()>,
}

struct Device {
    id: Uuid,
    key: SigningKey,
    boot: BootId,
}

async fn start(storage: Arc<dyn Storage>) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = AppState::new(storage.clone());
    tokio::spawn(fleet_sync::serve(listener, state, async {
        let _ = stopped.await;
    }));
    let tenant = storage.create_tenant("synthetic").await.unwrap();
    Server {
        url,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
        api_key: tenant.api_key,
        storage,
        tenant: tenant.tenant_id,
        _stop: stop,
    }
}

impl Server {
    async fn enroll(&self, name: &str, boot: u8) -> Device {
        let token = self
            .storage
            .create_enrollment_token(self.tenant, Duration::from_secs(600), 1)
            .await
            .unwrap()
            .token;
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let public_key = auth::encode_public_key(&key.verifying_key());
        let req = EnrollRequest {
            proof: auth::sign_b64(&key, &auth::enroll_message(&token, &public_key)),
            token,
            public_key,
            name: Some(name.into()),
            agent_version: Some("test".into()),
            kind: Default::default(),
        };
        let r = self
            .http
            .post(format!("{}{}", self.url, api::PATH_ENROLL))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&req).unwrap())
            .send()
            .await
            .unwrap();
        let ok = r.status().is_success();
        let text = r.text().await.unwrap();
        assert!(ok, "{text}");
        let e: EnrollResponse = serde_json::from_str(&text).unwrap();
        Device {
            id: e.device_id,
            key,
            boot: BootId([boot; 16]),
        }
    }

    /// Sends seqs `first..` as one signed batch; events are (kind, time, data).
    async fn send(&self, d: &Device, first: u64, events: &[(&'static str, i64, Value)]) {
        let events: Vec<Event> = events
            .iter()
            .enumerate()
            .map(|(i, (kind, at, data))| Event {
                seq: first + i as u64,
                kind: Kind::known(kind),
                priority: Priority::Critical,
                time: EventTime {
                    boot_id: d.boot,
                    mono_ms: first + i as u64,
                    wall_ms: *at,
                    hlc: Hlc::new(*at as u64, 0),
                },
                config_version: 1,
                data: EventData::Json(data.clone()),
            })
            .collect();
        let header = BatchHeader {
            tenant_id: self.tenant,
            device_id: d.id,
            first_seq: first,
            last_seq: first + events.len() as u64 - 1,
            anchors: vec![],
        };
        let body = encode_batch(&header, &events, 3).unwrap();
        let sig = auth::sign_request(&d.key, d.id, "POST", api::PATH_BATCHES, now_ms(), &body);
        let r = self
            .http
            .post(format!("{}{}", self.url, api::PATH_BATCHES))
            .header("authorization", sig)
            .header("content-type", api::CONTENT_TYPE_BATCH)
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, String) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.api_key);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn get(&self, path: &str) -> Value {
        let (status, text) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }
}

fn vehicle(report: &Value, id: Uuid) -> &Value {
    report["vehicles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == json!(id))
        .unwrap_or_else(|| panic!("vehicle {id} missing from {report}"))
}

fn close(a: &Value, b: f64) {
    let a = a.as_f64().unwrap_or_else(|| panic!("{a} is not a number"));
    assert!((a - b).abs() < 1e-6, "{a} != {b}");
}

async fn synthetic_fleet_reports_match_the_hand_computed_numbers(storage: Arc<dyn Storage>) {
    let s = start(storage).await;
    let (status, text) = s
        .call(
            reqwest::Method::PUT,
            "/api/v1/analytics/settings",
            Some(json!({
                "utc_offset_min": 0, "target_hours_per_day": 8.0, "used_day_min_minutes": 30,
                "fuel_price_cents_per_l": 150, "depreciation_years": 5.0,
                "rental_rate_cents_per_day": 5000, "fault_repeat_count": 3, "fault_repeat_days": 30
            })),
        )
        .await;
    assert_eq!(status, 200, "{text}");

    // The window: the last 7 local (UTC) days, today included.
    let today = local_day(now_ms(), 0);
    let d0 = today - 6;
    let at = |day: i32, hours: f64| i64::from(day) * DAY_MS + (hours * HOUR_MS as f64) as i64;
    let (from, to) = (day_string(d0), day_string(today));
    let window = format!("from={from}&to={to}");

    let a = s.enroll("van-a", 1).await;
    let b = s.enroll("van-b", 2).await;
    let c = s.enroll("van-c", 3).await;

    // Van A, day 0: odometer 10000 km at 07:55; fuel 30 % at 07:50; a trip
    // 08:00-10:00 (7200 s, 600 s idle in it, 60 km, 6 l, ending at 10060 km);
    // a harsh brake and 120 s of speeding in it; an idle period 10:00-10:30
    // (1800 s); fuel 90 % at 11:00 (a refuel: +60 points); fault SPN 100 FMI 1.
    let day0 = vec![
        (
            "signal",
            at(d0, 7.0 + 50.0 / 60.0),
            json!({"fuel_level_pct": 30.0}),
        ),
        (
            "odometer",
            at(d0, 7.0 + 55.0 / 60.0),
            json!({"odometer_km": 10000.0}),
        ),
        ("harsh_braking", at(d0, 8.5), json!({"peak_mps2": 5.0})),
        (
            "speeding",
            at(d0, 9.0),
            json!({"duration_s": 120.0, "limit_kmh": 80}),
        ),
        (
            "trip_end",
            at(d0, 10.0),
            json!({"duration_s": 7200.0, "idle_s": 600.0, "distance_m": 60000.0,
            "fuel_used_l": 6.0, "max_speed_kmh": 92.0, "driving_events": 2, "odometer_end_km": 10060.0}),
        ),
        ("idle", at(d0, 10.5), json!({"duration_s": 1800.0})),
        ("signal", at(d0, 11.0), json!({"fuel_level_pct": 90.0})),
        (
            "dtc_set",
            at(d0, 11.5),
            json!({"source": 0, "spn": 100, "fmi": 1, "oc": 1, "lamps": 0}),
        ),
    ];
    s.send(&a, 1, &day0).await;
    // The same batch again (a lost ack): nothing may count twice.
    s.send(&a, 1, &day0).await;
    // Van A, day 1: one 20-minute trip 09:00-09:20 (1200 s, 15 km, 1.5 l, to
    // 10075 km): data, but under the 30 minutes that make a day used.
    s.send(&a, 9, &[("trip_end", at(d0 + 1, 9.0 + 20.0 / 60.0), json!({"duration_s": 1200.0,
        "idle_s": 0.0, "distance_m": 15000.0, "fuel_used_l": 1.5, "driving_events": 0, "odometer_end_km": 10075.0}))])
        .await;
    // Van A, days 2-6: nothing (a data gap, not idleness).

    // Van B: a heartbeat every day, never driven; on day 3 a fuel drop with
    // the ignition off.
    let mut heartbeats: Vec<(&str, i64, Value)> = (0..7)
        .map(|i| ("device_health", at(d0 + i, 0.01), json!({"uptime_s": 100})))
        .collect();
    heartbeats.push((
        "fuel_drop",
        at(d0 + 3, 2.0),
        json!({"drop_pct": 18.0, "ignition": false, "from_pct": 70.0, "to_pct": 52.0}),
    ));
    s.send(&b, 1, &heartbeats).await;
    // Van C: enrolled, never heard from.
    let _ = &c;

    // Costs of van A: bought for 36525.00 (3652500 cents); a completed work
    // order with 3000 cents of parts and 4500 of labor.
    let (status, text) = s
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/vehicles/{}", a.id),
            Some(json!({"costs": {"purchase_price": 36525.0}})),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let (status, text) = s
        .call(reqwest::Method::POST, "/api/v1/maintenance/work-orders", Some(json!({
            "vehicle_id": a.id, "title": "brake pads", "status": "completed", "parts_cents": 3000, "labor_cents": 4500})))
        .await;
    assert_eq!(status, 201, "{text}");

    // Utilization.
    let u = s
        .get(&format!("/api/v1/analytics/utilization?{window}"))
        .await;
    let va = vehicle(&u, a.id);
    // A: 2 days with data, 5 without; day 0 used (6600 s driving + 1800 s idle
    // = 8400 s > 1800 s), day 1 not (1200 s). Engine on 8400 + 1200 = 9600 s
    // = 2.6667 h against 8 h x 2 days = 16 h: 0.1667; days 1 / 2 = 0.5.
    assert_eq!(va["days_with_data"], 2);
    assert_eq!(va["days_no_data"], 5);
    assert_eq!(va["days_used"], 1);
    close(&va["engine_on_hours"], 2.6667);
    close(&va["target_hours"], 16.0);
    close(&va["hours_utilization"], 0.1667);
    close(&va["days_utilization"], 0.5);
    assert_eq!(va["last_used_day"], json!(day_string(d0)));
    // B: 7 days with data, none used: 0 h of 56 h.
    let vb = vehicle(&u, b.id);
    assert_eq!(
        (vb["days_with_data"].as_i64(), vb["days_used"].as_i64()),
        (Some(7), Some(0))
    );
    close(&vb["hours_utilization"], 0.0);
    // C: no data is not "unused": no ratio at all.
    let vc = vehicle(&u, c.id);
    assert_eq!(vc["days_with_data"], 0);
    assert_eq!(vc["hours_utilization"], Value::Null);
    assert_eq!(vc["days_utilization"], Value::Null);
    // Fleet: 9 days with data, 1 used; 2.6667 h of 72 h = 0.037; 1/9 = 0.1111.
    close(&u["fleet"]["hours_utilization"], 0.037);
    close(&u["fleet"]["days_utilization"], 0.1111);
    assert!(u["formula"]["hours"]
        .as_str()
        .unwrap()
        .contains("target_hours_per_day"));

    // Per day, with completeness.
    let daily = s
        .get(&format!(
            "/api/v1/analytics/utilization?{window}&vehicle={}",
            a.id
        ))
        .await;
    let states: Vec<&str> = daily["daily"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["used", "unused", "no_data", "no_data", "no_data", "no_data", "no_data"]
    );

    // CSV of the same report.
    let (status, csv) = s
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/analytics/utilization?{window}&format=csv"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let mut lines = csv.lines();
    assert_eq!(lines.next().unwrap(), "id,name,group,days_in_window,days_with_data,days_no_data,days_used,engine_on_hours,target_hours,hours_utilization,days_utilization,last_used_day");
    let row_a = csv
        .lines()
        .find(|l| l.starts_with(&a.id.to_string()))
        .unwrap();
    assert_eq!(
        row_a,
        format!(
            "{},van-a,,7,2,5,1,2.6667,16.0,0.1667,0.5,{}",
            a.id,
            day_string(d0)
        )
    );

    // Idle assets over 7 days: B (data, no use); A and C have gaps, C only gaps.
    let idle = s.get("/api/v1/analytics/idle?days=7").await;
    let ids = |k: &str| -> Vec<Value> {
        idle[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].clone())
            .collect()
    };
    assert_eq!(ids("idle"), vec![json!(b.id)]);
    let mut gaps = ids("data_gaps");
    gaps.sort_by_key(|v| v.to_string());
    let mut want = vec![json!(a.id), json!(c.id)];
    want.sort_by_key(|v| v.to_string());
    assert_eq!(gaps, want);

    // Trips: 2 trips, 60 + 15 = 75 km; driving (7200 - 600) + 1200 = 7800 s
    // = 2.1667 h; idle events 1800 s = 0.5 h, 1800 / (7800 + 1800) = 18.75 %;
    // fuel 6 + 1.5 = 7.5 l; 1 harsh event / 75 km x 100 = 1.33; speeding 2 min;
    // one refuel; one fault code.
    let t = s.get(&format!("/api/v1/analytics/trips?{window}")).await;
    let ta = vehicle(&t, a.id);
    assert_eq!(ta["trips"], 2);
    close(&ta["distance_km"], 75.0);
    close(&ta["driving_hours"], 2.1667);
    close(&ta["idle_hours"], 0.5);
    close(&ta["idle_pct"], 18.75);
    close(&ta["fuel_used_l"], 7.5);
    close(&ta["harsh_per_100km"], 1.33);
    close(&ta["speeding_minutes"], 2.0);
    assert_eq!(ta["refuels"], 1);
    assert_eq!(
        ta["faults"],
        json!([{"code": "SPN 100 FMI 1", "count": 1, "last_day": day_string(d0)}])
    );
    let listed: Vec<&Value> = t["trips"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["vehicle_id"] == json!(a.id))
        .collect();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["start_ms"], json!(at(d0, 8.0)));
    close(&listed[1]["idle_pct"], 8.33);

    // Costs of A over 7 days: fuel 7.5 l x 150 = 1125; maintenance 3000 +
    // 4500 = 7500; depreciation 3652500 / (5 x 365.25) x 7 = 14000; total
    // 22625 over the meter's 10075 - 10000 = 75 km = 301.67 per km, x 1.609344
    // = 485.49 per mile; savings 5000 x 1 day used; ROI (5000 - 22625) / 22625
    // = -0.779.
    let k = s.get(&format!("/api/v1/analytics/costs?{window}")).await;
    let ka = vehicle(&k, a.id);
    assert_eq!(ka["fuel_cents"], 1125);
    assert_eq!(ka["maintenance_cents"], 7500);
    assert_eq!(ka["depreciation_cents"], 14000);
    assert_eq!(ka["total_cents"], 22625);
    close(&ka["meter_distance_km"], 75.0);
    close(&ka["cost_per_km_cents"], 301.67);
    close(&ka["cost_per_mile_cents"], 485.49);
    assert_eq!(ka["savings_cents"], 5000);
    close(&ka["roi"], -0.779);
    assert!(k["formula"]["cost_per_km"]
        .as_str()
        .unwrap()
        .contains("(fuel + maintenance + depreciation)"));
    // C has no meter readings: no cost per km rather than a made-up one.
    assert_eq!(vehicle(&k, c.id)["cost_per_km_cents"], Value::Null);

    // Heatmap: day 0 hours 8 and 9 each get 3300 s of driving, hour 10 the
    // 1800 s idle; day 1 hour 9 gets 1200 s.
    let h = s.get(&format!("/api/v1/analytics/heatmap?{window}")).await;
    let (w0, w1) = (usize::from(weekday(d0)), usize::from(weekday(d0 + 1)));
    close(&h["hours"][w0][8], 0.9167);
    close(&h["hours"][w0][9], 0.9167);
    close(&h["hours"][w0][10], 0.5);
    close(&h["hours"][w1][9], 0.3333);

    // The summary: JSON with the costs for this admin key, and the same as a PDF.
    let sum = s.get(&format!("/api/v1/analytics/summary?{window}")).await;
    assert_eq!(sum["costs_included"], true);
    assert_eq!(vehicle(&sum, a.id)["total_cents"], 22625);
    close(&vehicle(&sum, a.id)["distance_km"], 75.0);
    let (status, pdf) = s
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/analytics/summary?{window}&format=pdf"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(pdf.starts_with("%PDF-"));
    assert!(pdf.contains("(van-a "), "the PDF names the vehicle");

    // The parked fuel drop raised an alert.
    let alerts = s.get("/api/v1/maintenance/alerts").await;
    let kinds: Vec<(&str, Value)> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["kind"].as_str().unwrap(), a["vehicle_id"].clone()))
        .collect();
    assert_eq!(kinds, vec![("fuel_drop_parked", json!(b.id))]);

    // A distance schedule on A: 5000 km from now at A's own 75 km / 30 days
    // = 2.5 km a day is 2000 days away.
    let (status, text) = s
        .call(
            reqwest::Method::POST,
            "/api/v1/maintenance/schedules",
            Some(json!({"name": "oil", "vehicle_id": a.id, "every_km": 5000.0})),
        )
        .await;
    assert_eq!(status, 201, "{text}");
    let due = s.get("/api/v1/maintenance/due").await;
    let row = &due["due"][0];
    close(&row["km_left"], 5000.0);
    close(&row["km_per_day"], 2.5);
    assert_eq!(row["due_by"], "distance");
    assert_eq!(row["due_day"], json!(day_string(today + 2000)));
}

#[tokio::test]
async fn synthetic_fleet_reports_match_the_hand_computed_numbers_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let storage = fleet_sync::open_sqlite(dir.path()).await.unwrap();
    synthetic_fleet_reports_match_the_hand_computed_numbers(storage).await;
}

#[tokio::test]
async fn synthetic_fleet_reports_match_the_hand_computed_numbers_on_postgres() {
    let Some((storage, _guard)) = fleet_sync::storage::postgres::testing::fresh().await else {
        return;
    };
    synthetic_fleet_reports_match_the_hand_computed_numbers(storage).await;
}
