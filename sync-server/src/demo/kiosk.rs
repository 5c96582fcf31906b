//! The demo's yard kiosk: the agent's own kiosk (flows, custody documents,
//! store, sync and touch UI on 127.0.0.1) enrolled with a real enrollment token,
//! with simulated GPIO and a camera that is an image folder of one frame. Yard
//! staff, scripted here, hold labels up to that camera: they replace the frame
//! with a picture of a driver's badge, then of a vehicle's key tag or vehicle
//! tag (the tenant's real signed labels, so the kiosk's QR decoder and label
//! checks run for real), confirm check-outs against today's bookings and later
//! check the vehicles back in with a photo, a rating, notes and a signature,
//! all through the kiosk's own touch-screen API. The custody it records syncs
//! to the server like any kiosk's, and shows on the dashboard's custody board.

use super::seed::Api;
use crate::labels::qr::QrMatrix;
use crate::storage::assets::{AssetFilter, AssetKind};
use crate::storage::{now_ms, Storage};
use crate::AppState;
use anyhow::Context;
use axum::http::{Method, StatusCode};
use base64::Engine;
use fleet_agent::config::{AgentConfig, Role};
use fleet_agent::daemon::{self, RunOptions};
use fleet_agent::identity::{self, Identity};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// The yard the kiosk stands in: the first depot's geofence id, and the home
/// yard of the vehicles it hands out.
pub const YARD: &str = "depot-1";
/// The name the kiosk enrolls with and signs custody records with.
pub const KIOSK_NAME: &str = "yard-kiosk-1";
/// Vehicles the kiosk hands out, their keys in slots 1 to this.
const VEHICLES: usize = 4;
const SLOTS: usize = 8;
/// The camera's frame: replaced whole (a rename) by the staff.
const FRAME_FILE: &str = "view.png";
const FRAME_W: u32 = 480;
const FRAME_H: u32 = 360;
const CAMERA_FPS: f64 = 4.0;
/// Long enough for the decoder to see a held-up label in a few frames.
const SHOW_FOR: Duration = Duration::from_millis(1_500);
/// How long the staff wait for the screen to move on before giving up.
const SCREEN_WAIT: Duration = Duration::from_secs(10);
/// Bookings the staff make for today's check-outs, longest first: a shorter
/// one may fit where a longer one meets a later booking.
const BOOKING_LENGTHS_MS: [i64; 3] = [6 * 3_600_000, 3_600_000, 20 * 60_000];
const NOTES: &[&str] = &[
    "All fine.",
    "Fuel low, please refill.",
    "Small scratch on the rear bumper.",
    "Cab needs a clean.",
    "Tyre pressure warning came on once.",
];

/// What [`start`] needs from the demo.
pub struct KioskSetup<'a> {
    pub state: &'a AppState,
    pub api_key: &'a str,
    pub tenant: Uuid,
    /// The server, as the kiosk reaches it.
    pub url: &'a str,
    pub data: &'a Path,
    /// The touch UI's port on 127.0.0.1; 0 for any free one.
    pub ui_port: u16,
    pub seed: u64,
    /// The kiosk's position, `[lat, lon]`, for check-in records.
    pub location: Option<[f64; 2]>,
    pub stop: watch::Receiver<bool>,
}

/// The running kiosk and its staff.
pub struct YardKiosk {
    pub ui_url: String,
    pub kiosk: JoinHandle<anyhow::Result<()>>,
    pub staff: JoinHandle<()>,
}

/// A label the staff can hold up: its signed text as printed in the QR code.
#[derive(Debug, Clone)]
struct Tag {
    text: String,
}

#[derive(Debug, Clone)]
struct Driver {
    user: Uuid,
    name: String,
    badge: Tag,
}

#[derive(Debug, Clone)]
struct Vehicle {
    id: Uuid,
    name: String,
    tag: Tag,
    key: Tag,
}

/// Sets the yard up (labels, key tags, today's bookings), enrolls and starts
/// the kiosk, and sets its staff to work.
pub async fn start(s: KioskSetup<'_>) -> anyhow::Result<YardKiosk> {
    let api = Api {
        router: crate::router(s.state.clone()),
        key: s.api_key,
    };
    rename_old_yards(&s.state.storage, s.tenant).await?;
    let (drivers, vehicles) = labels(&api, &s.state.storage, s.tenant).await?;
    for (i, v) in vehicles.iter().enumerate() {
        if let Some(d) = drivers.get(i % drivers.len().max(1)) {
            book_now(&api, v, d).await;
        }
    }

    let dir = s.data.join("kiosks").join(KIOSK_NAME);
    if !Identity::exists(&dir) {
        let token = s
            .state
            .storage
            .create_enrollment_token(s.tenant, Duration::from_secs(600), 1)
            .await?;
        identity::enroll_with(identity::EnrollOptions {
            server_url: s.url,
            token: &token.token,
            data_dir: &dir,
            name: Some(KIOSK_NAME),
            server_fingerprint: None,
            kind: fleet_protocol::api::DeviceKind::Kiosk,
        })
        .await
        .with_context(|| format!("enrolling {KIOSK_NAME}"))?;
    } else {
        super::refresh_server_url(&dir, s.url)?;
        // A demo directory from before device kinds has its kiosk stored as a vehicle.
        let id = Identity::load(&dir)?;
        s.state
            .storage
            .set_device_kind(
                s.tenant,
                id.device_id,
                fleet_protocol::api::DeviceKind::Kiosk,
            )
            .await?;
    }
    let camera = dir.join("camera");
    std::fs::create_dir_all(&camera)?;
    let mut rng = StdRng::seed_from_u64(s.seed ^ 0x004B_105C);
    show(&camera, &yard_frame(&mut rng, None)).await?;

    let port = ui_port(s.ui_port)?;
    let mut cfg = AgentConfig {
        data_dir: dir.clone(),
        ..AgentConfig::default()
    };
    cfg.device.role = Role::Kiosk;
    cfg.metrics.enabled = false;
    // Custody reaches the server's board within seconds of a check-out.
    cfg.sync.docs_interval_ms = 2_000;
    cfg.kiosk.ui_port = port;
    cfg.kiosk.name = Some(KIOSK_NAME.into());
    cfg.kiosk.yard = YARD.into();
    cfg.kiosk.slots = SLOTS;
    cfg.kiosk.camera_folder = Some(camera.clone());
    cfg.kiosk.camera_fps = CAMERA_FPS;
    cfg.kiosk.location = s.location;
    let opts = RunOptions {
        data_dir: dir,
        simulate: None,
        clock: None,
        online: None,
        shutdown: Some(s.stop.clone()),
    };
    let kiosk = tokio::spawn(daemon::run(cfg, opts));
    let ui_url = format!("http://127.0.0.1:{port}/");
    let staff = Staff {
        ui: ui_url.clone(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?,
        camera,
        rng,
        drivers,
        vehicles,
        out: HashMap::new(),
        ready: HashMap::new(),
        turn: HashMap::new(),
        api: ApiHandle {
            router: api.router.clone(),
            key: s.api_key.to_owned(),
        },
        storage: s.state.storage.clone(),
        tenant: s.tenant,
    };
    let staff = tokio::spawn(staff.work(s.stop));
    Ok(YardKiosk {
        ui_url,
        kiosk,
        staff,
    })
}

/// Data seeded before yards were named like their geofences called the first
/// depot "Depot 1": give those assets the name the kiosk asks for.
async fn rename_old_yards(storage: &Arc<dyn Storage>, tenant: Uuid) -> anyhow::Result<()> {
    let assets = storage
        .list_assets(
            tenant,
            &AssetFilter {
                home_yard: Some("Depot 1".into()),
                limit: 1000,
                ..AssetFilter::default()
            },
        )
        .await?;
    for mut a in assets {
        a.home_yard = Some(YARD.into());
        storage.update_asset(tenant, &a).await?;
    }
    Ok(())
}

/// The drivers with their badge labels and the yard's vehicles with their
/// vehicle and key tags, issuing through the API whatever is missing.
async fn labels(
    api: &Api<'_>,
    storage: &Arc<dyn Storage>,
    tenant: Uuid,
) -> anyhow::Result<(Vec<Driver>, Vec<Vehicle>)> {
    let mut vehicles: Vec<_> = storage
        .list_assets(
            tenant,
            &AssetFilter {
                kind: Some(AssetKind::Vehicle),
                home_yard: Some(YARD.into()),
                limit: 1000,
                ..AssetFilter::default()
            },
        )
        .await?;
    vehicles.truncate(VEHICLES);
    let drivers: Vec<_> = storage
        .list_users(tenant)
        .await?
        .into_iter()
        .filter(|u| u.role == crate::http::auth::Role::Driver && !u.disabled)
        .collect();

    let mut issued = list_labels(api).await?;
    let mut issue = false;
    for d in &drivers {
        if !issued.iter().any(|l| is_badge_of(l, &d.name)) {
            call(
                api,
                Method::POST,
                &format!("/api/v1/users/{}/badges", d.user_id),
                Some(json!({})),
            )
            .await
            .with_context(|| format!("issuing a badge for {}", d.name))?;
            issue = true;
        }
    }
    for (slot, v) in (1u32..).zip(&vehicles) {
        if !issued.iter().any(|l| l["id"] == json!(v.id)) {
            // The printable QR code issues the vehicle's own label on first use.
            call(
                api,
                Method::GET,
                &format!("/api/v1/assets/{}/qr-code", v.id),
                None,
            )
            .await
            .with_context(|| format!("issuing the tag of {}", v.name))?;
            issue = true;
        }
        if !issued.iter().any(|l| is_key_of(l, v.id)) {
            call(
                api,
                Method::POST,
                "/api/v1/labels",
                Some(json!({
                    "kind": "key",
                    "name": format!("Key of {}", v.name),
                    "asset_id": v.id,
                    "slot": slot,
                })),
            )
            .await
            .with_context(|| format!("issuing the key tag of {}", v.name))?;
            issue = true;
        }
    }
    if issue {
        issued = list_labels(api).await?;
    }
    let text = |l: &Value| Tag {
        text: l["text"].as_str().unwrap_or_default().to_owned(),
    };
    let drivers = drivers
        .iter()
        .filter_map(|d| {
            let badge = issued.iter().rev().find(|l| is_badge_of(l, &d.name))?;
            Some(Driver {
                user: d.user_id,
                name: d.name.clone(),
                badge: text(badge),
            })
        })
        .collect();
    let vehicles = vehicles
        .iter()
        .filter_map(|v| {
            let tag = issued.iter().find(|l| l["id"] == json!(v.id))?;
            let key = issued.iter().find(|l| is_key_of(l, v.id))?;
            Some(Vehicle {
                id: v.id,
                name: v.name.clone(),
                tag: text(tag),
                key: text(key),
            })
        })
        .collect();
    Ok((drivers, vehicles))
}

fn is_badge_of(l: &Value, driver: &str) -> bool {
    l["kind"] == "badge" && l["name"] == driver && l["revoked_at"].is_null()
}

fn is_key_of(l: &Value, asset: Uuid) -> bool {
    l["kind"] == "key" && l["asset_id"] == json!(asset) && l["revoked_at"].is_null()
}

async fn list_labels(api: &Api<'_>) -> anyhow::Result<Vec<Value>> {
    let v = call(api, Method::GET, "/api/v1/labels", None).await?;
    Ok(v["labels"].as_array().cloned().unwrap_or_default())
}

/// A call that must succeed.
async fn call(
    api: &Api<'_>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let (status, v) = api.call(method, path, body).await?;
    if !status.is_success() {
        anyhow::bail!("{path}: {status} {v}");
    }
    Ok(v)
}

/// An approved booking of `v` for `d` covering now, made through the
/// reservations API unless one exists. A booking the calendar refuses (the
/// vehicle is booked for someone else) is left out: the kiosk will refuse that
/// check-out, as it should.
async fn book_now(api: &Api<'_>, v: &Vehicle, d: &Driver) -> bool {
    let now = now_ms();
    let path = format!(
        "/api/v1/reservations?vehicle_id={}&user_id={}&status=approved&from_ms={}&to_ms={}",
        v.id,
        d.user,
        now,
        now + 30 * 60_000
    );
    if let Ok((StatusCode::OK, list)) = api.call(Method::GET, &path, None).await {
        let covering = list["reservations"].as_array().is_some_and(|rs| {
            rs.iter().any(|r| {
                r["start_ms"].as_i64().is_some_and(|s| s <= now)
                    && r["end_ms"].as_i64().is_some_and(|e| e > now + 10 * 60_000)
            })
        });
        if covering {
            return true;
        }
    }
    for len in BOOKING_LENGTHS_MS {
        let body = json!({
            "vehicle_id": v.id,
            "user_id": d.user,
            "start_ms": now,
            "end_ms": now + len,
            "purpose": "Yard pick-up",
        });
        let Ok((status, r)) = api
            .call(Method::POST, "/api/v1/reservations", Some(body))
            .await
        else {
            return false;
        };
        if !status.is_success() {
            tracing::debug!(vehicle = %v.name, %status, "demo kiosk: booking refused: {r}");
            continue;
        }
        if r["status"] == "approved" {
            return true;
        }
        let approve = format!(
            "/api/v1/reservations/{}/approve",
            r["id"].as_str().unwrap_or("")
        );
        return matches!(
            api.call(Method::POST, &approve, Some(json!({}))).await,
            Ok((s, _)) if s.is_success()
        );
    }
    false
}

/// The router and key, owned, for the staff's task.
struct ApiHandle {
    router: axum::Router,
    key: String,
}

impl ApiHandle {
    fn api(&self) -> Api<'_> {
        Api {
            router: self.router.clone(),
            key: &self.key,
        }
    }
}

/// The scripted yard staff.
struct Staff {
    ui: String,
    http: reqwest::Client,
    camera: PathBuf,
    rng: StdRng,
    drivers: Vec<Driver>,
    vehicles: Vec<Vehicle>,
    /// Vehicles out, and since when (tokio time).
    out: HashMap<Uuid, tokio::time::Instant>,
    /// When a vehicle booked again after its return is in the kiosk's snapshot.
    ready: HashMap<Uuid, tokio::time::Instant>,
    /// Whose turn it is to take each vehicle (an index into `drivers`).
    turn: HashMap<Uuid, usize>,
    api: ApiHandle,
    storage: Arc<dyn Storage>,
    tenant: Uuid,
}

/// What the kiosk's screen says.
#[derive(Debug, Clone, Default)]
struct Screen {
    step: String,
    message: String,
    snapshot: bool,
}

impl Staff {
    async fn work(mut self, mut stop: watch::Receiver<bool>) {
        if self.drivers.is_empty() || self.vehicles.is_empty() {
            tracing::warn!(
                yard = YARD,
                "demo kiosk: no drivers or no vehicles in the yard; the staff stay home"
            );
            return;
        }
        // Who has what, from the server: a re-run picks up where it left off.
        if let Ok(held) = self.storage.custody_holders(self.tenant).await {
            for h in held.iter().filter(|h| h.holder.is_some()) {
                self.out.insert(h.asset_id, tokio::time::Instant::now());
            }
        }
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        tokio::pin!(stopped);
        let work = async {
            // The kiosk is ready once it holds a snapshot.
            loop {
                if self.screen().await.is_some_and(|s| s.snapshot) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            loop {
                if let Err(e) = self.next().await {
                    tracing::debug!(error = %e, "demo kiosk: the staff gave up on this one");
                    let _ = self.cancel().await;
                }
                let pause = self.rng.gen_range(15.0..35.0);
                tokio::time::sleep(Duration::from_secs_f64(pause)).await;
            }
        };
        tokio::select! {
            () = work => {}
            () = &mut stopped => {}
        }
    }

    /// One piece of work: a check-in of a vehicle that has been out a while,
    /// else a check-out of one that is in.
    async fn next(&mut self) -> anyhow::Result<()> {
        let now = tokio::time::Instant::now();
        let due = self
            .vehicles
            .iter()
            .filter(|v| {
                self.out
                    .get(&v.id)
                    .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
            })
            .cloned()
            .collect::<Vec<_>>();
        let free = self
            .vehicles
            .iter()
            .enumerate()
            .filter(|(_, v)| {
                !self.out.contains_key(&v.id) && self.ready.get(&v.id).is_none_or(|t| now >= *t)
            })
            .map(|(i, v)| (i, v.clone()))
            .collect::<Vec<_>>();
        let check_in = !due.is_empty() && (free.is_empty() || self.rng.gen_bool(0.6));
        if check_in {
            let v = &due[self.rng.gen_range(0..due.len())];
            self.check_in(v).await
        } else if let Some((i, v)) = free.get(self.rng.gen_range(0..free.len().max(1))) {
            let turn = *self.turn.entry(v.id).or_insert(*i);
            let d = self.drivers[turn % self.drivers.len()].clone();
            self.check_out(&d, v).await
        } else {
            Ok(())
        }
    }

    /// A returned vehicle's booking is done: book it for the next driver now.
    /// The kiosk learns of it with its next snapshot, so until then the staff
    /// hand out other vehicles.
    async fn book_next(&mut self, v: &Vehicle) {
        let turn = self.turn.entry(v.id).or_insert(0);
        *turn += 1;
        let d = self.drivers[*turn % self.drivers.len()].clone();
        if book_now(&self.api.api(), v, &d).await {
            let lag = fleet_agent::sync::SyncOptions::default().snapshot_interval;
            self.ready.insert(
                v.id,
                tokio::time::Instant::now() + lag + Duration::from_secs(15),
            );
        }
    }

    async fn check_out(&mut self, d: &Driver, v: &Vehicle) -> anyhow::Result<()> {
        book_now(&self.api.api(), v, d).await;
        self.hold_up(&d.badge).await?;
        self.wait_for(&["badge_scanned"]).await?;
        // Half the time the key tag, otherwise the tag on the vehicle.
        let tag = if self.rng.gen_bool(0.5) {
            &v.key
        } else {
            &v.tag
        };
        self.hold_up(tag).await?;
        let s = self.wait_for(&["confirm", "refused"]).await?;
        if s.step == "refused" {
            tracing::info!(driver = %d.name, vehicle = %v.name, "demo kiosk: check-out refused: {}", s.message);
            // Perhaps a booking the kiosk's snapshot does not hold yet: try
            // this one again after its next refresh.
            let lag = fleet_agent::sync::SyncOptions::default().snapshot_interval;
            self.ready.insert(
                v.id,
                tokio::time::Instant::now() + lag + Duration::from_secs(15),
            );
            self.cancel().await?;
            return Ok(());
        }
        self.press("/api/confirm", None).await?;
        self.wait_for(&["checked_out"]).await?;
        tracing::info!(driver = %d.name, vehicle = %v.name, "demo kiosk: checked out");
        self.out.insert(v.id, tokio::time::Instant::now());
        Ok(())
    }

    async fn check_in(&mut self, v: &Vehicle) -> anyhow::Result<()> {
        self.hold_up(&v.tag).await?;
        let s = self
            .wait_for(&["check_in", "asset_scanned", "refused"])
            .await?;
        if s.step != "check_in" {
            // Not out after all (checked in elsewhere): start again.
            self.out.remove(&v.id);
            self.cancel().await?;
            return Ok(());
        }
        // The camera sees the vehicle for the check-in photo.
        let frame = yard_frame(&mut self.rng, Some(Subject::Vehicle));
        show(&self.camera, &frame).await?;
        tokio::time::sleep(Duration::from_secs_f64(1.5 / CAMERA_FPS)).await;
        self.press("/api/checkin/photo", None).await?;
        let rating = self.rng.gen_range(3..=5);
        self.press("/api/checkin/rating", Some(json!({ "rating": rating })))
            .await?;
        let notes = NOTES[self.rng.gen_range(0..NOTES.len())];
        self.press("/api/checkin/notes", Some(json!({ "notes": notes })))
            .await?;
        if notes.contains("scratch") {
            let marks = json!({ "marks": [{ "x": 0.85, "y": 0.6, "note": "scratch" }] });
            self.press("/api/checkin/damage", Some(marks)).await?;
        }
        let png = signature_png(&mut self.rng)?;
        let url = format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(png)
        );
        self.press("/api/checkin/signature", Some(json!({ "png": url })))
            .await?;
        self.press("/api/checkin/submit", None).await?;
        self.wait_for(&["checked_in"]).await?;
        show(&self.camera, &yard_frame(&mut self.rng, None)).await?;
        tracing::info!(vehicle = %v.name, rating, "demo kiosk: checked in");
        self.out.remove(&v.id);
        self.book_next(v).await;
        Ok(())
    }

    /// Holds a label up to the camera, then lowers it.
    async fn hold_up(&mut self, tag: &Tag) -> anyhow::Result<()> {
        let m = QrMatrix::encode(&tag.text)?;
        show(
            &self.camera,
            &yard_frame(&mut self.rng, Some(Subject::Code(&m))),
        )
        .await?;
        tokio::time::sleep(SHOW_FOR).await;
        show(&self.camera, &yard_frame(&mut self.rng, None)).await
    }

    async fn screen(&self) -> Option<Screen> {
        let body = self
            .http
            .get(format!("{}api/state", self.ui))
            .send()
            .await
            .ok()?
            .bytes()
            .await
            .ok()?;
        let v: Value = serde_json::from_slice(&body).ok()?;
        Some(Screen {
            step: v["step"].as_str().unwrap_or_default().to_owned(),
            message: v["flow"]["message"].as_str().unwrap_or_default().to_owned(),
            snapshot: v["snapshot"]["usable"] == true,
        })
    }

    /// Waits until the screen shows one of `steps`.
    async fn wait_for(&self, steps: &[&str]) -> anyhow::Result<Screen> {
        let until = tokio::time::Instant::now() + SCREEN_WAIT;
        let mut last = Screen::default();
        while tokio::time::Instant::now() < until {
            if let Some(s) = self.screen().await {
                if steps.contains(&s.step.as_str()) {
                    return Ok(s);
                }
                last = s;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        anyhow::bail!(
            "the kiosk showed {:?} ({}), not {steps:?}",
            last.step,
            last.message
        )
    }

    /// A tap on the touch screen.
    async fn press(&self, path: &str, body: Option<Value>) -> anyhow::Result<()> {
        let mut req = self.http.post(format!("{}{}", self.ui, &path[1..]));
        req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(b.to_string()),
            None => req,
        };
        let r = req.send().await?;
        if !r.status().is_success() {
            let status = r.status();
            anyhow::bail!("{path}: {status} {}", r.text().await.unwrap_or_default());
        }
        Ok(())
    }

    async fn cancel(&mut self) -> anyhow::Result<()> {
        show(&self.camera, &yard_frame(&mut self.rng, None)).await?;
        self.press("/api/cancel", None).await
    }
}

/// What is in front of the camera besides the yard.
enum Subject<'a> {
    Code(&'a QrMatrix),
    Vehicle,
}

/// A camera frame of the yard as a PNG: a dim gradient with sensor noise, and
/// a held-up label (slightly off centre) or a vehicle in front of it.
fn yard_frame(rng: &mut StdRng, subject: Option<Subject<'_>>) -> Vec<u8> {
    let (w, h) = (FRAME_W as usize, FRAME_H as usize);
    let mut px: Vec<u8> = (0..w * h)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            let base = 70 + (y * 60 / h) as i32 + (x * 20 / w) as i32;
            (base + rng.gen_range(-6..=6)).clamp(0, 255) as u8
        })
        .collect();
    match subject {
        Some(Subject::Code(m)) => {
            let modules = m.size_with_quiet_zone();
            let scale = (300 / modules).clamp(2, 6);
            let (side, gray) = m.gray(scale);
            let ox = (w.saturating_sub(side)) / 2 + rng.gen_range(0..=20);
            let oy = (h.saturating_sub(side)) / 2 + rng.gen_range(0..=10);
            for y in 0..side.min(h.saturating_sub(oy)) {
                for x in 0..side.min(w.saturating_sub(ox)) {
                    // Printed on paper under yard light: not quite black or white.
                    let v = if gray[y * side + x] < 128 { 35 } else { 215 };
                    px[(oy + y) * w + ox + x] = v;
                }
            }
        }
        Some(Subject::Vehicle) => {
            // A van's side: body, windows, wheels.
            for y in 0..h {
                for x in 0..w {
                    let body = (60..420).contains(&x) && (120..280).contains(&y);
                    let window = (300..400).contains(&x) && (135..190).contains(&y);
                    let wheel = [(130i32, 285i32), (350, 285)].iter().any(|(cx, cy)| {
                        let (dx, dy) = (x as i32 - cx, y as i32 - cy);
                        dx * dx + dy * dy < 32 * 32
                    });
                    if wheel {
                        px[y * w + x] = 25;
                    } else if window {
                        px[y * w + x] = 60;
                    } else if body {
                        px[y * w + x] = 190;
                    }
                }
            }
        }
        None => {}
    }
    let img = image::GrayImage::from_raw(FRAME_W, FRAME_H, px).expect("the frame's size");
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encoding a PNG in memory");
    out.into_inner()
}

/// A driver's signature as the touch screen's canvas would draw it.
fn signature_png(rng: &mut StdRng) -> anyhow::Result<Vec<u8>> {
    let (w, h) = (300u32, 100u32);
    let mut img = image::GrayImage::from_pixel(w, h, image::Luma([255]));
    let (a, f) = (rng.gen_range(15.0..30.0), rng.gen_range(0.05..0.12));
    for x in 20..280u32 {
        let y = 50.0 + a * (f64::from(x) * f).sin() * (f64::from(x) / 280.0);
        for t in 0..3 {
            let yy = (y as u32 + t).min(h - 1);
            img.put_pixel(x, yy, image::Luma([0]));
        }
    }
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

/// Puts `png` in front of the camera: written aside, then renamed over the
/// frame the camera reads, so it never reads half a picture.
async fn show(camera: &Path, png: &[u8]) -> anyhow::Result<()> {
    let tmp = camera.join(".next-frame");
    tokio::fs::write(&tmp, png).await?;
    tokio::fs::rename(&tmp, camera.join(FRAME_FILE)).await?;
    Ok(())
}

/// `wanted` on 127.0.0.1 if it is free a moment ago, else any free port: a
/// busy port does not stop the demo.
fn ui_port(wanted: u16) -> anyhow::Result<u16> {
    if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", wanted)) {
        return Ok(l.local_addr()?.port());
    }
    let l =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a port for the kiosk UI")?;
    let port = l.local_addr()?.port();
    tracing::warn!(wanted, port, "the kiosk UI port is taken; using another");
    Ok(port)
}

/// Where the kiosk stands: the middle of the first depot, `[lat, lon]`.
pub fn depot_location(city: fleet_hal::sim::City, network_seed: u64) -> Option<[f64; 2]> {
    let net = fleet_hal::sim::RoadNetwork::generate(city, network_seed);
    let n = net.nodes[*net.depots.first()?];
    let (lat, lon) = city.to_lat_lon(n.x, n.y);
    Some([lat, lon])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_held_up_to_the_simulated_camera_decodes_and_an_empty_yard_does_not() {
        let text = "FL1.demo-label-text-long-enough-to-need-a-bigger-code.0123456789abcdef";
        let m = QrMatrix::encode(text).expect("encodes");
        let mut rng = StdRng::seed_from_u64(7);
        for subject in [Some(Subject::Code(&m)), None, Some(Subject::Vehicle)] {
            let held = matches!(subject, Some(Subject::Code(_)));
            let png = yard_frame(&mut rng, subject);
            let (w, h, gray) = fleet_hal::camera::convert::decode_image(&png).expect("a PNG");
            assert_eq!((w, h), (FRAME_W, FRAME_H));
            let frame = fleet_hal::camera::Frame::new(w, h, gray, tokio::time::Instant::now())
                .expect("frame");
            let codes: Vec<String> = fleet_agent::decode::qr::decode(&frame)
                .into_iter()
                .map(|c| c.text)
                .collect();
            if held {
                assert_eq!(codes, [text]);
            } else {
                assert!(codes.is_empty(), "{codes:?}");
            }
        }
        let sig = signature_png(&mut rng).expect("png");
        let url = format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(sig)
        );
        fleet_agent::kiosk::checkin::signature_png(&url).expect("the kiosk takes it");
    }
}
