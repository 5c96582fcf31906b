//! `POST /api/v1/reservations/availability` with 1,000,000 reservations over
//! 1,000 vehicles and about three years (two behind, one ahead), through the
//! HTTP router as a client calls it, for windows from two hours to a week and
//! with and without the group and yard filters. The baseline, measured in the
//! same run on the same table, is a bare indexed range probe: the bookings of
//! the whole tenant that start in the window. SQLite always; PostgreSQL too
//! when `FLEET_TEST_PG_URL` names an admin connection.
//!
//! `cargo bench -p fleet-sync --bench availability [-- RUNS]`

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use fleet_sync::storage::Storage;
use fleet_sync::{router, AppState};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;
use uuid::Uuid;

const VEHICLES: usize = 1_000;
const PER_VEHICLE: usize = 1_000;
const GROUPS: usize = 10;
const YARDS: usize = 5;
const H: i64 = 3_600_000;
const DAY: i64 = 24 * H;
const BUFFER_MS: i64 = 15 * 60_000;

/// A deterministic stream of numbers (splitmix64), so every run books the same.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> i64 {
        (self.next() % n) as i64
    }

    fn uuid(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(
            (u128::from(self.next()) << 64 | u128::from(self.next())).to_be_bytes(),
        )
        .into_uuid()
    }
}

struct Vehicle {
    id: Uuid,
    name: String,
    group: String,
    yard: String,
}

struct Booking {
    id: Uuid,
    vehicle: Uuid,
    user: Uuid,
    start_ms: i64,
    end_ms: i64,
    status: &'static str,
}

/// The fleet and its bookings: per vehicle, back to back with a gap of 0–12 h,
/// each 1–36 h long, starting about two years before `now`. Past bookings are
/// mostly completed, some cancelled or no-shows; later ones mostly approved,
/// some pending, a few cancelled.
fn fleet(now: i64) -> (Vec<Vehicle>, Vec<Booking>) {
    let mut mix = Mix(6);
    let users: Vec<Uuid> = (0..200).map(|_| mix.uuid()).collect();
    let vehicles: Vec<Vehicle> = (0..VEHICLES)
        .map(|v| Vehicle {
            id: mix.uuid(),
            name: format!("vehicle-{v:04}"),
            group: format!("group-{}", v % GROUPS),
            yard: format!("yard-{}", v % YARDS),
        })
        .collect();
    let mut bookings = Vec::with_capacity(VEHICLES * PER_VEHICLE);
    for v in &vehicles {
        let mut t = now - 730 * DAY + mix.below(DAY as u64);
        for _ in 0..PER_VEHICLE {
            let start = t + mix.below(12 * H as u64);
            let end = start + H + mix.below(35 * H as u64);
            let roll = mix.below(100);
            let status = if end < now {
                match roll {
                    0..=84 => "completed",
                    85..=94 => "cancelled",
                    _ => "no_show",
                }
            } else {
                match roll {
                    0..=79 => "approved",
                    80..=94 => "pending",
                    _ => "cancelled",
                }
            };
            bookings.push(Booking {
                id: mix.uuid(),
                vehicle: v.id,
                user: users[mix.below(users.len() as u64) as usize],
                start_ms: start,
                end_ms: end,
                status,
            });
            t = end + BUFFER_MS;
        }
    }
    (vehicles, bookings)
}

/// The queries timed, in turn: a window (offset from now, length) and filters.
struct Probe {
    from_ms: i64,
    to_ms: i64,
    body: String,
}

fn probes(now: i64, runs: usize) -> Vec<Probe> {
    let mut mix = Mix(7);
    let lengths = [2 * H, 8 * H, DAY, 3 * DAY, 7 * DAY];
    (0..runs + 1)
        .map(|i| {
            // Mostly the coming weeks, where people book; sometimes months ahead.
            let ahead = if i % 4 == 3 {
                mix.below(300 * DAY as u64)
            } else {
                mix.below(21 * DAY as u64)
            };
            let from_ms = now + ahead / H * H;
            let to_ms = from_ms + lengths[i % lengths.len()];
            let group = format!("group-{}", mix.below(GROUPS as u64));
            let yard = format!("yard-{}", mix.below(YARDS as u64));
            let filters = match i % 4 {
                0 => String::new(),
                1 => format!(r#","vehicle_group":"{group}""#),
                2 => format!(r#","home_yard":"{yard}""#),
                _ => format!(r#","vehicle_group":"{group}","home_yard":"{yard}","limit":500"#),
            };
            Probe {
                from_ms,
                to_ms,
                body: format!(r#"{{"from_ms":{from_ms},"to_ms":{to_ms}{filters}}}"#),
            }
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Times `f(i)` for i in 1..=runs after one warm-up call with 0.
async fn time_runs<F, Fut>(runs: usize, mut f: F) -> Vec<f64>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    f(0).await;
    let mut out = Vec::with_capacity(runs);
    for i in 1..=runs {
        let t = Instant::now();
        f(i).await;
        out.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    out.sort_by(f64::total_cmp);
    out
}

async fn availability_ms(
    storage: Arc<dyn Storage>,
    api_key: &str,
    probes: &[Probe],
) -> (Vec<f64>, usize) {
    let app = router(AppState::new(storage));
    let free = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let runs = probes.len() - 1;
    let times = time_runs(runs, |i| {
        let app = app.clone();
        let free = free.clone();
        let req = Request::post("/api/v1/reservations/availability")
            .header(header::AUTHORIZATION, format!("Bearer {api_key}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(probes[i].body.clone()))
            .unwrap();
        async move {
            let resp = app.oneshot(req).await.unwrap();
            let status = resp.status();
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            free.fetch_add(
                v["vehicles"].as_array().unwrap().len(),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    })
    .await;
    let free = free.load(std::sync::atomic::Ordering::Relaxed);
    (times, free / probes.len())
}

fn print(backend: &str, query: &[f64], mean_free: usize, baseline: &[f64]) {
    let (p50, p95) = (percentile(query, 0.5), percentile(query, 0.95));
    let (b50, b95) = (percentile(baseline, 0.5), percentile(baseline, 0.95));
    println!(
        "{backend:<10} availability p50 {p50:6.2} ms  p95 {p95:6.2} ms  max {:6.2} ms ({mean_free} free vehicles per answer on average) | baseline range probe p50 {b50:5.2} ms  p95 {b95:5.2} ms | p95 ratio {:5.1}x | target p95 < 10 ms: {}",
        query[query.len() - 1],
        p95 / b95.max(0.001),
        if p95 < 10.0 { "met" } else { "MISSED" }
    );
}

async fn sqlite(runs: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.db");
    let backend = fleet_sync::storage::open(path.to_str().unwrap())
        .await
        .unwrap();
    let storage = backend.storage();
    let tenant = storage.create_tenant("bench").await.unwrap();
    let tenant_id = tenant.tenant_id;
    let now = fleet_sync::storage::now_ms() / H * H;
    let started = Instant::now();
    let rows = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let (vehicles, bookings) = fleet(now);
            let mut c = rusqlite::Connection::open(path).unwrap();
            c.busy_timeout(Duration::from_secs(30)).unwrap();
            let t = tenant_id.as_bytes().as_slice();
            let tx = c.transaction().unwrap();
            {
                let mut q = tx
                    .prepare(
                        "INSERT INTO assets (tenant_id, asset_id, kind, name, vehicle_group, home_yard, created_at_ms, updated_at_ms)
                         VALUES (?1, ?2, 'vehicle', ?3, ?4, ?5, ?6, ?6)",
                    )
                    .unwrap();
                for v in &vehicles {
                    q.execute(rusqlite::params![t, v.id.as_bytes().as_slice(), v.name, v.group, v.yard, now])
                        .unwrap();
                }
                let mut q = tx
                    .prepare(
                        "INSERT INTO reservations (tenant_id, reservation_id, vehicle_id, user_id, start_ms, end_ms, buffer_ms, status, version, created_at_ms, updated_at_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9, ?9)",
                    )
                    .unwrap();
                for b in &bookings {
                    q.execute(rusqlite::params![
                        t,
                        b.id.as_bytes().as_slice(),
                        b.vehicle.as_bytes().as_slice(),
                        b.user.as_bytes().as_slice(),
                        b.start_ms,
                        b.end_ms,
                        BUFFER_MS,
                        b.status,
                        b.start_ms - 7 * DAY,
                    ])
                    .unwrap();
                }
            }
            tx.commit().unwrap();
            c.execute_batch("ANALYZE").unwrap();
            bookings.len()
        })
        .await
        .unwrap()
    };
    eprintln!(
        "sqlite: {rows} reservations written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    set_buffer(&storage, tenant_id).await;
    let probes = probes(now, runs);
    let (query, free) = availability_ms(storage.clone(), &tenant.api_key, &probes).await;
    let conn = Arc::new(std::sync::Mutex::new(
        rusqlite::Connection::open(&path).unwrap(),
    ));
    let baseline = time_runs(runs, |i| {
        let conn = conn.clone();
        let (from, to) = (probes[i].from_ms, probes[i].to_ms);
        async move {
            let n: i64 = conn
                .lock()
                .unwrap()
                .query_row(
                    "SELECT count(*) FROM reservations WHERE tenant_id = ?1 AND start_ms >= ?2 AND start_ms < ?3",
                    rusqlite::params![tenant_id.as_bytes().as_slice(), from, to],
                    |r| r.get(0),
                )
                .unwrap();
            assert!(n >= 0);
        }
    })
    .await;
    print("sqlite", &query, free, &baseline);
}

/// The tenant's turnaround buffer, the one the bookings were made with.
async fn set_buffer(storage: &Arc<dyn Storage>, tenant: Uuid) {
    let mut settings = storage.reservation_settings(tenant).await.unwrap();
    settings.turnaround_minutes = (BUFFER_MS / 60_000) as u32;
    storage
        .set_reservation_settings(tenant, &settings, fleet_sync::storage::now_ms())
        .await
        .unwrap();
}

async fn postgres(runs: usize) {
    let Some((pg, guard)) = fleet_sync::storage::postgres::testing::fresh_pg().await else {
        eprintln!("postgres: skipped (FLEET_TEST_PG_URL is not set)");
        return;
    };
    let storage: Arc<dyn Storage> = Arc::new(pg);
    let tenant = storage.create_tenant("bench").await.unwrap();
    let tenant_id = tenant.tenant_id;
    let now = fleet_sync::storage::now_ms() / H * H;
    let (admin, conn) = guard
        .admin_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let started = Instant::now();
    let (vehicles, bookings) = fleet(now);
    let ids: Vec<Uuid> = vehicles.iter().map(|v| v.id).collect();
    let names: Vec<&str> = vehicles.iter().map(|v| v.name.as_str()).collect();
    let groups: Vec<&str> = vehicles.iter().map(|v| v.group.as_str()).collect();
    let yards: Vec<&str> = vehicles.iter().map(|v| v.yard.as_str()).collect();
    admin
        .execute(
            "INSERT INTO assets (tenant_id, asset_id, kind, name, vehicle_group, home_yard, created_at_ms, updated_at_ms)
             SELECT $1, id, 'vehicle', name, g, y, $6, $6
             FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[]) AS a(id, name, g, y)",
            &[&tenant_id, &ids, &names, &groups, &yards, &now],
        )
        .await
        .unwrap();
    for chunk in bookings.chunks(100_000) {
        let ids: Vec<Uuid> = chunk.iter().map(|b| b.id).collect();
        let vs: Vec<Uuid> = chunk.iter().map(|b| b.vehicle).collect();
        let us: Vec<Uuid> = chunk.iter().map(|b| b.user).collect();
        let starts: Vec<i64> = chunk.iter().map(|b| b.start_ms).collect();
        let ends: Vec<i64> = chunk.iter().map(|b| b.end_ms).collect();
        let sts: Vec<&str> = chunk.iter().map(|b| b.status).collect();
        admin
            .execute(
                "INSERT INTO reservations (tenant_id, reservation_id, vehicle_id, user_id, start_ms, end_ms, buffer_ms, status, version, created_at_ms, updated_at_ms)
                 SELECT $1, id, v, u, s, e, $8, st, 1, s - 604800000, s - 604800000
                 FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::bigint[], $6::bigint[], $7::text[]) AS r(id, v, u, s, e, st)",
                &[&tenant_id, &ids, &vs, &us, &starts, &ends, &sts, &BUFFER_MS],
            )
            .await
            .unwrap();
    }
    // VACUUM (for the visibility map) cannot share a transaction with ANALYZE.
    for sql in ["VACUUM ANALYZE reservations", "ANALYZE assets"] {
        admin.batch_execute(sql).await.unwrap();
    }
    eprintln!(
        "postgres: {} reservations written in {:.1} s",
        bookings.len(),
        started.elapsed().as_secs_f64()
    );
    set_buffer(&storage, tenant_id).await;
    let probes = probes(now, runs);
    let (query, free) = availability_ms(storage.clone(), &tenant.api_key, &probes).await;
    // The baseline runs as the tenant's own role, under row-level security, as
    // the query does.
    let (app, conn) = guard
        .app_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    app.batch_execute(&format!("SET app.tenant_id = '{tenant_id}'"))
        .await
        .unwrap();
    let app = Arc::new(app);
    let baseline = time_runs(runs, |i| {
        let app = app.clone();
        let (from, to) = (probes[i].from_ms, probes[i].to_ms);
        async move {
            let n: i64 = app
                .query_one(
                    "SELECT count(*) FROM reservations WHERE tenant_id = $1 AND start_ms >= $2 AND start_ms < $3",
                    &[&tenant_id, &from, &to],
                )
                .await
                .unwrap()
                .get(0);
            assert!(n >= 0);
        }
    })
    .await;
    print("postgres", &query, free, &baseline);
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "availability, {VEHICLES} vehicles with {} reservations over ~3 years, windows 2 h to 7 days, {runs} runs",
        VEHICLES * PER_VEHICLE
    );
    rt.block_on(sqlite(runs));
    rt.block_on(postgres(runs));
}
