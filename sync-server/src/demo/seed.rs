//! What the demo tenant starts with, created once through the stores: the
//! simulated vehicles in the asset catalog (each linked to its gateway), a
//! trailer and a forklift, users with badges, and a geofence around each of the
//! simulated network's depots, pushed to the vehicles as their config; and
//! bookings across the coming week.

use crate::http::auth::Role;
use crate::rollout::Plan;
use crate::storage::access::NewUser;
use crate::storage::assets::{Asset, AssetFields, AssetFilter, AssetKind};
use crate::storage::{now_ms, Storage};
use crate::AppState;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use fleet_hal::sim::{City, RoadNetwork};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;
use uuid::Uuid;

/// Half the side of a yard's square geofence.
const YARD_HALF_SIDE_M: f64 = 250.0;

const MODELS: &[(&str, &str, &str)] = &[
    ("DAF", "XF 480", "trucks"),
    ("Volvo", "FH 460", "trucks"),
    ("Mercedes-Benz", "Sprinter 316", "vans"),
    ("Scania", "R 450", "trucks"),
    ("Ford", "Transit 350", "vans"),
];

const PEOPLE: &[(&str, &str, Role)] = &[
    ("Dana Driver", "dana@demo.fleet", Role::Driver),
    ("Devi Driver", "devi@demo.fleet", Role::Driver),
    ("Sam Dispatcher", "sam@demo.fleet", Role::Dispatcher),
    ("Morgan Manager", "morgan@demo.fleet", Role::Manager),
];

/// The demo user who signs in to the dashboard with a password: the manager,
/// who may approve bookings and see costs.
pub const LOGIN_EMAIL: &str = "morgan@demo.fleet";

/// A password for the demo login: 16 random letters and digits.
pub fn new_login_password() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), 16)
}

/// Gives the demo login (`LOGIN_EMAIL`) this password, as
/// `fleet-sync admin user set-password` would.
pub async fn login(state: &AppState, tenant: Uuid, password: &str) -> anyhow::Result<()> {
    crate::http::session::check_password(password)
        .map_err(|e| anyhow::anyhow!("the demo password: {}", e.message))?;
    let user = state
        .storage
        .list_users(tenant)
        .await?
        .into_iter()
        .find(|u| u.email == LOGIN_EMAIL)
        .ok_or_else(|| anyhow::anyhow!("the demo tenant has no {LOGIN_EMAIL}"))?;
    let cost = state.access.password_cost;
    let password = password.to_owned();
    let phc =
        tokio::task::spawn_blocking(move || crate::http::session::hash_password(cost, &password))
            .await?;
    state
        .storage
        .set_password(tenant, user.user_id, &phc, now_ms())
        .await?;
    Ok(())
}

pub async fn seed(
    storage: &Arc<dyn Storage>,
    tenant: Uuid,
    devices: &[(String, Uuid)],
    city: City,
    network_seed: u64,
) -> anyhow::Result<()> {
    let now = now_ms();
    for (i, (name, device)) in devices.iter().enumerate() {
        if storage.asset_for_device(tenant, *device).await?.is_some() {
            continue;
        }
        storage
            .create_asset(
                tenant,
                &Asset::new(Uuid::new_v4(), vehicle(i, name, *device), now),
            )
            .await?;
    }
    let others = storage
        .list_assets(
            tenant,
            &AssetFilter {
                limit: 1000,
                ..AssetFilter::default()
            },
        )
        .await?
        .iter()
        .any(|a| a.kind != AssetKind::Vehicle);
    if !others {
        for (kind, name, make, model) in [
            (AssetKind::Trailer, "Trailer 1", "Krone", "Profi Liner"),
            (AssetKind::Equipment, "Forklift 1", "Linde", "H25"),
        ] {
            let fields = AssetFields {
                kind: Some(kind),
                name: name.into(),
                make: Some(make.into()),
                model: Some(model.into()),
                home_yard: Some("depot-1".into()),
                department: Some("Distribution".into()),
                ..AssetFields::default()
            };
            storage
                .create_asset(tenant, &Asset::new(Uuid::new_v4(), fields, now))
                .await?;
        }
    }
    if storage.list_users(tenant).await?.is_empty() {
        for (name, email, role) in PEOPLE {
            let user = NewUser {
                email: (*email).into(),
                name: (*name).into(),
                role: *role,
            };
            let u = storage.create_user(tenant, user, None, now).await?;
            storage
                .link_badge(tenant, u.user_id, Uuid::new_v4())
                .await?;
        }
    }
    if storage.list_groups(tenant).await?.is_empty() && !devices.is_empty() {
        let group = storage.create_group(tenant, "Demo fleet", now).await?;
        let ids: Vec<Uuid> = devices.iter().map(|(_, d)| *d).collect();
        storage.assign_devices(tenant, group.id, &ids).await?;
        let plan = Plan {
            stages: vec![100],
            min_soak_ms: 0,
            ..Plan::default()
        };
        // Stored in its canonical form, as the config endpoint stores it.
        let doc = serde_json::to_vec(&json!({ "geofences": yards(city, network_seed) }))?;
        let config = fleet_protocol::control::DesiredConfig::from_json(&doc)
            .map_err(|problems| anyhow::anyhow!("demo geofences: {}", problems.join("; ")))?;
        let config = serde_json::to_value(&config)?;
        storage
            .create_config(tenant, group.id, &config, &plan, now)
            .await?;
    }
    Ok(())
}

/// Bookings across the coming week, made through the reservations API (so its
/// rules, approvals and notifications apply) with the demo's own key: each of the
/// first vehicles three times, most of them approved, the rest pending. Once: a
/// tenant that has any reservation is left alone.
pub async fn reservations(state: &AppState, api_key: &str, tenant: Uuid) -> anyhow::Result<()> {
    let api = Api {
        router: crate::router(state.clone()),
        key: api_key,
    };
    let (status, existing) = api
        .call(Method::GET, "/api/v1/reservations?limit=1", None)
        .await?;
    if status == StatusCode::NOT_FOUND {
        tracing::debug!("demo: this server has no reservations API; no bookings seeded");
        return Ok(());
    }
    if !status.is_success() {
        tracing::warn!(%status, "demo: listing reservations failed, no bookings seeded: {existing}");
        return Ok(());
    }
    if !existing["reservations"]
        .as_array()
        .is_some_and(Vec::is_empty)
    {
        return Ok(());
    }
    let storage = &state.storage;
    let vehicles = storage
        .list_assets(
            tenant,
            &AssetFilter {
                kind: Some(AssetKind::Vehicle),
                limit: 1000,
                ..AssetFilter::default()
            },
        )
        .await?;
    let drivers: Vec<Uuid> = storage
        .list_users(tenant)
        .await?
        .into_iter()
        .filter(|u| u.role == Role::Driver)
        .map(|u| u.user_id)
        .collect();
    if drivers.is_empty() {
        return Ok(());
    }
    const HOUR: i64 = 3_600_000;
    let tomorrow = (now_ms() / (24 * HOUR) + 1) * 24 * HOUR;
    let purposes = [
        "Deliveries north",
        "Depot transfer",
        "Customer visit",
        "Service run",
    ];
    for (i, v) in vehicles.iter().take(6).enumerate() {
        for b in 0..3usize {
            let start = tomorrow + ((i + 2 * b) % 7) as i64 * 24 * HOUR + (7 + i % 4) as i64 * HOUR;
            let body = json!({
                "vehicle_id": v.id,
                "user_id": drivers[(i + b) % drivers.len()],
                "start_ms": start,
                "end_ms": start + (3 + (i + b) % 4) as i64 * HOUR,
                "purpose": purposes[(i + b) % purposes.len()],
            });
            let (status, r) = api
                .call(Method::POST, "/api/v1/reservations", Some(body))
                .await?;
            if !status.is_success() {
                tracing::warn!(vehicle = %v.name, %status, "demo: a seeded booking was refused: {r}");
                continue;
            }
            if r["status"] == "pending" && (i + b) % 3 != 2 {
                let path = format!(
                    "/api/v1/reservations/{}/approve",
                    r["id"].as_str().unwrap_or("")
                );
                let (status, r) = api.call(Method::POST, &path, Some(json!({}))).await?;
                if !status.is_success() {
                    tracing::warn!(%status, "demo: approving a seeded booking failed: {r}");
                }
            }
        }
    }
    Ok(())
}

/// The HTTP API in this process, called as a client would call it.
pub(super) struct Api<'a> {
    pub(super) router: axum::Router,
    pub(super) key: &'a str,
}

impl Api<'_> {
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.key));
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(&b)?)
            }
            None => Body::empty(),
        };
        let resp = self.router.clone().oneshot(req.body(body)?).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }
}

fn vehicle(i: usize, name: &str, device: Uuid) -> AssetFields {
    let (make, model, group) = MODELS[i % MODELS.len()];
    AssetFields {
        kind: Some(AssetKind::Vehicle),
        name: name.into(),
        make: Some(make.into()),
        model: Some(model.into()),
        // 17 characters, unique per gateway, none of I, O or Q.
        vin: Some(format!("DMO{}", &device.simple().to_string()[..14]).to_uppercase()),
        plate: Some(format!(
            "{:02}-DMO-{}",
            i + 1,
            (b'A' + (i % 26) as u8) as char
        )),
        vehicle_group: Some(group.into()),
        // Named like the yards' geofences: a kiosk asks for its yard by this name.
        home_yard: Some(format!("depot-{}", i % 3 + 1)),
        department: Some(
            if group == "vans" {
                "Service"
            } else {
                "Distribution"
            }
            .into(),
        ),
        cost_center: Some(format!("CC-{}", 100 + i % 3 * 10)),
        purchase_price_cents: Some(if group == "vans" {
            4_200_000
        } else {
            11_500_000
        }),
        purchase_date: Some(format!("20{:02}-0{}-15", 19 + i % 5, 1 + i % 9)),
        device_id: Some(device),
        odometer_km: None,
        engine_hours: None,
    }
}

/// A square yard around each depot of the simulated road network, as GeoJSON.
pub fn yards(city: City, network_seed: u64) -> Value {
    let net = RoadNetwork::generate(city, network_seed);
    let features: Vec<Value> = net
        .depots
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            let n = net.nodes[d];
            let h = YARD_HALF_SIDE_M;
            let ring: Vec<[f64; 2]> = [(-h, -h), (h, -h), (h, h), (-h, h), (-h, -h)]
                .iter()
                .map(|(dx, dy)| {
                    let (lat, lon) = city.to_lat_lon(n.x + dx, n.y + dy);
                    [lon, lat]
                })
                .collect();
            json!({
                "type": "Feature",
                "id": format!("depot-{}", i + 1),
                "properties": { "name": format!("Depot {}", i + 1) },
                "geometry": { "type": "Polygon", "coordinates": [ring] },
            })
        })
        .collect();
    json!({ "type": "FeatureCollection", "features": features })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::EnrollDevice;

    #[tokio::test]
    async fn the_demo_tenant_is_seeded_once_with_its_catalog_users_yards_and_bookings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = crate::open_backend(None, dir.path())
            .await
            .expect("sqlite")
            .storage();
        let t = storage.create_tenant("demo").await.expect("tenant");
        let mut devices = Vec::new();
        for (i, name) in ["truck-01", "truck-02"].into_iter().enumerate() {
            let token = storage
                .create_enrollment_token(t.tenant_id, std::time::Duration::from_secs(60), 1)
                .await
                .expect("token");
            let key = ed25519_dalek::SigningKey::from_bytes(&[i as u8 + 1; 32]);
            let d = storage
                .enroll_device(EnrollDevice {
                    token: token.token,
                    public_key: fleet_protocol::auth::encode_public_key(&key.verifying_key()),
                    name: Some(name.into()),
                    agent_version: None,
                    now_ms: now_ms(),
                })
                .await
                .expect("enrolled");
            devices.push((name.to_owned(), d.device_id));
        }
        let state = AppState::new(storage.clone());
        for _ in 0..2 {
            seed(
                &storage,
                t.tenant_id,
                &devices,
                fleet_hal::sim::ROTTERDAM,
                1,
            )
            .await
            .expect("seeded");
            reservations(&state, &t.api_key, t.tenant_id)
                .await
                .expect("booked");
        }
        let assets = storage
            .list_assets(
                t.tenant_id,
                &AssetFilter {
                    limit: 1000,
                    ..AssetFilter::default()
                },
            )
            .await
            .expect("assets");
        assert_eq!(assets.len(), 4, "two vehicles, a trailer and a forklift");
        for (_, d) in &devices {
            let a = storage
                .asset_for_device(t.tenant_id, *d)
                .await
                .expect("read");
            assert_eq!(a.map(|a| a.kind), Some(AssetKind::Vehicle));
        }
        assert_eq!(
            storage.list_users(t.tenant_id).await.expect("users").len(),
            PEOPLE.len()
        );
        assert_eq!(
            storage
                .user_badges(t.tenant_id)
                .await
                .expect("badges")
                .len(),
            PEOPLE.len()
        );
        assert_eq!(
            storage
                .list_groups(t.tenant_id)
                .await
                .expect("groups")
                .len(),
            1
        );
        let api = Api {
            router: crate::router(state.clone()),
            key: &t.api_key,
        };
        let (status, list) = api
            .call(Method::GET, "/api/v1/reservations?limit=100", None)
            .await
            .expect("listed");
        assert_eq!(status, StatusCode::OK, "{list}");
        let booked = list["reservations"].as_array().expect("reservations");
        assert_eq!(
            booked.len(),
            6,
            "three bookings for each of two vehicles, once: {list}"
        );
        assert!(booked.iter().any(|r| r["status"] == "approved"), "{list}");
        assert!(
            booked
                .iter()
                .all(|r| r["start_ms"].as_i64() > Some(now_ms())),
            "{list}"
        );
    }

    #[test]
    fn every_yard_is_a_closed_ring_the_agent_accepts() {
        let g = yards(fleet_hal::sim::ROTTERDAM, 1);
        let features = g["features"].as_array().expect("features");
        assert_eq!(features.len(), 3);
        for f in features {
            let ring = f["geometry"]["coordinates"][0].as_array().expect("ring");
            assert_eq!(ring.first(), ring.last());
        }
        let doc = serde_json::to_vec(&json!({ "geofences": g })).expect("encodes");
        fleet_protocol::control::DesiredConfig::from_json(&doc).expect("valid config");
    }
}
