//! The kiosk at run time: takes inputs (camera scans, the touch screen), steps
//! the flow and carries out its effects in a fixed order — record the event
//! durably, note custody, and only then release the key and signal.

use super::checkin;
use super::custody;
use super::flow::{BlobRef, Ctx, Effect, Flow, Input, InputError, Photo, Step};
use super::outputs::{DoorEvent, DoorWatch, Signals};
use super::overdue;
use super::policy;
use crate::clock::SharedClock;
use crate::store::{NewEvent, Store, StoreError};
use fleet_hal::camera::Frame;
use fleet_hal::gpio::SimKioskPins;
use fleet_protocol::custody::{CustodyAction, CustodyOp};
use fleet_protocol::event::kinds;
use fleet_protocol::label::TenantTrust;
use fleet_protocol::snapshot::Snapshot;
use fleet_protocol::{EventData, Kind, Priority};
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// The store meta key of the overdue and no-show flags already raised.
const RAISED_KEY: &str = "kiosk.raised_flags";
/// Raised flags kept; the oldest are forgotten past this (they concern
/// reservations long gone from the snapshot).
const MAX_RAISED: usize = 4_096;

#[derive(Debug, thiserror::Error)]
pub enum KioskError {
    #[error(transparent)]
    Input(#[from] InputError),
    /// Nothing was released: the event could not be made durable.
    #[error("cannot record: {0}; nothing was released")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Custody(#[from] custody::CustodyError),
    #[error(transparent)]
    Image(#[from] checkin::ImageError),
    #[error("no camera frame to take a photo from")]
    NoFrame,
    #[error("cannot keep the image: {0}")]
    Blob(String),
}

/// Where a check-in's images go: content-addressed, synced later.
pub trait BlobSink: Send + Sync {
    /// Keep `bytes`, returning its SHA-256 in hex.
    fn put(&self, bytes: &[u8], content_type: &str) -> Result<String, String>;
}

/// Everything the kiosk works with.
pub struct KioskParts {
    pub store: Store,
    pub clock: SharedClock,
    /// The name custody operations carry (`kiosk` field).
    pub kiosk_id: String,
    pub yard: String,
    /// The tenant key at start; [`Kiosk::set_trust`] replaces it.
    pub trust: Option<TenantTrust>,
    pub signals: Signals,
    /// The simulated lines, when the GPIO is simulated (shown on the local API).
    pub sim: Option<SimKioskPins>,
    pub blobs: Arc<dyn BlobSink>,
    pub config_version: u32,
    /// Where the kiosk stands, for check-in records.
    pub location: Option<(f64, f64)>,
}

/// The result of the last scan or action, for the screen.
#[derive(Debug, Clone, Serialize)]
pub struct LastResult {
    pub ok: bool,
    pub code: String,
    pub message: String,
    pub at_ms: i64,
}

struct Inner {
    parts: KioskParts,
    flow: tokio::sync::Mutex<Flow>,
    snapshot: RwLock<Option<Snapshot>>,
    trust: RwLock<Option<TenantTrust>>,
    holders: Mutex<BTreeMap<Uuid, CustodyOp>>,
    last: Mutex<Option<LastResult>>,
    frame: Mutex<Option<Frame>>,
    online: watch::Sender<bool>,
    started: tokio::time::Instant,
    /// Readings older than this are left off check-ins (`[kiosk] meter_max_age_h`).
    meter_max_age_ms: std::sync::atomic::AtomicI64,
}

/// The kiosk. Cheap to clone.
#[derive(Clone)]
pub struct Kiosk(Arc<Inner>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Kiosk {
    pub fn new(parts: KioskParts) -> Self {
        let now = parts.clock.wall_ms();
        let trust = RwLock::new(parts.trust.clone());
        Kiosk(Arc::new(Inner {
            trust,
            parts,
            flow: tokio::sync::Mutex::new(Flow::new(now)),
            snapshot: RwLock::new(None),
            holders: Mutex::new(BTreeMap::new()),
            last: Mutex::new(None),
            frame: Mutex::new(None),
            online: watch::channel(false).0,
            started: tokio::time::Instant::now(),
            meter_max_age_ms: policy::DEFAULT_METER_MAX_AGE_MS.into(),
        }))
    }

    /// How old a gateway's odometer or fuel reading may be and still go on a
    /// check-in.
    pub fn set_meter_max_age_ms(&self, ms: i64) {
        self.0
            .meter_max_age_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    fn meter_max_age_ms(&self) -> i64 {
        self.0
            .meter_max_age_ms
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_snapshot(&self, snap: Option<Snapshot>) {
        *self.0.snapshot.write().unwrap_or_else(|e| e.into_inner()) = snap;
    }

    /// The tenant key labels and snapshots are checked against.
    pub fn set_trust(&self, trust: Option<TenantTrust>) {
        *self.0.trust.write().unwrap_or_else(|e| e.into_inner()) = trust;
    }

    pub fn trust(&self) -> Option<TenantTrust> {
        self.0
            .trust
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_online(&self, online: bool) {
        self.0.online.send_replace(online);
    }

    /// The latest camera frame, kept for a check-in photo.
    pub fn set_frame(&self, frame: Frame) {
        *lock(&self.0.frame) = Some(frame);
    }

    pub fn signals(&self) -> &Signals {
        &self.0.parts.signals
    }

    /// Re-read who holds what from the custody documents (which the sync loop
    /// merges other kiosks' operations into).
    pub async fn refresh_custody(&self) -> Result<(), KioskError> {
        let all = custody::load_all(&self.0.parts.store).await?;
        let held = all
            .into_iter()
            .filter_map(|(asset, c)| c.holder.map(|h| (asset, h)))
            .collect();
        *lock(&self.0.holders) = held;
        Ok(())
    }

    /// Step the flow with `input` and carry out what it asks.
    pub async fn handle(&self, input: Input) -> Result<(), KioskError> {
        let now = self.0.parts.clock.wall_ms();
        let mut flow = self.0.flow.lock().await;
        let effects = {
            let snap = self.0.snapshot.read().unwrap_or_else(|e| e.into_inner());
            let trust = self.trust();
            let holders = lock(&self.0.holders).clone();
            let holder = move |asset: Uuid| holders.get(&asset).cloned();
            let ctx = Ctx {
                now_ms: now,
                snapshot: snap.as_ref(),
                trust: trust.as_ref(),
                holder: &holder,
            };
            flow.handle(input, &ctx)?
        };
        for effect in effects {
            if let Err(e) = self.apply(&effect, now).await {
                // The screen must not claim what did not happen.
                flow.step = Step::Idle;
                self.set_last(false, "not_recorded", &e.to_string(), now);
                tracing::error!(error = %e, "kiosk effect failed");
                return Err(e);
            }
        }
        Ok(())
    }

    async fn apply(&self, effect: &Effect, now: i64) -> Result<(), KioskError> {
        let p = &self.0.parts;
        match effect {
            Effect::CheckOut(c) => {
                let event_id = Uuid::new_v4();
                let data = json!({
                    "event_id": event_id,
                    "kiosk": p.kiosk_id,
                    "yard": p.yard,
                    "asset": c.asset.id,
                    "asset_name": c.asset.name,
                    "key": c.asset.key,
                    "slot": c.asset.slot,
                    "badge": c.badge,
                    "driver": c.driver,
                    "reservation": c.approval.reservation,
                    "walk_up": c.approval.reservation.is_none(),
                    "due_ms": c.approval.due_ms,
                });
                // Durable before anything moves: a power cut after the key is
                // out must not lose who took it.
                self.record(kinds::CHECKOUT, Priority::Critical, data, now)
                    .await?;
                let op = CustodyOp {
                    op: CustodyAction::CheckOut,
                    kiosk: p.kiosk_id.clone(),
                    badge: c.badge,
                    at_ms: now,
                    event_id,
                };
                custody::record(&p.store, c.asset.id, &op).await?;
                lock(&self.0.holders).insert(c.asset.id, op);
                // Key boxes number their slots from 1; relays are indexed from 0.
                if let Some(slot) = c.asset.slot {
                    let released = (slot as usize)
                        .checked_sub(1)
                        .ok_or(fleet_hal::gpio::GpioError::NoSuchSlot(0, p.signals.slots()))
                        .and_then(|i| p.signals.release(i));
                    if let Err(e) = released {
                        tracing::error!(slot, error = %e, "cannot release the key");
                    }
                }
                p.signals.success();
                self.set_last(
                    true,
                    "checked_out",
                    &format!("{} checked out to {}.", c.asset.name, c.driver),
                    now,
                );
            }
            Effect::CheckIn(c) => {
                let event_id = Uuid::new_v4();
                let meters = {
                    let snap = self.0.snapshot.read().unwrap_or_else(|e| e.into_inner());
                    snap.as_ref()
                        .and_then(|s| s.asset(c.asset.id))
                        .map(|a| policy::recent_meters(a, now, self.meter_max_age_ms()))
                        .unwrap_or_default()
                };
                let data = json!({
                    "event_id": event_id,
                    "kiosk": p.kiosk_id,
                    "yard": p.yard,
                    "asset": c.asset.id,
                    "asset_name": c.asset.name,
                    "badge": c.holder.badge,
                    "checked_out_event_id": c.holder.event_id,
                    "rating": c.form.rating,
                    "notes": c.form.notes,
                    "damage": c.form.damage,
                    "photo": c.form.photo,
                    "signature": c.form.signature,
                    "location": p.location.map(|(lat, lon)| json!({"lat": lat, "lon": lon})),
                    "odometer_km": meters.odometer_km,
                    "odometer_at_ms": meters.odometer_at_ms,
                    "fuel_pct": meters.fuel_pct,
                    "fuel_at_ms": meters.fuel_at_ms,
                });
                self.record(kinds::CHECKIN, Priority::Critical, data, now)
                    .await?;
                let op = CustodyOp {
                    op: CustodyAction::CheckIn,
                    kiosk: p.kiosk_id.clone(),
                    badge: c.holder.badge,
                    at_ms: now,
                    event_id,
                };
                custody::record(&p.store, c.asset.id, &op).await?;
                lock(&self.0.holders).remove(&c.asset.id);
                p.signals.success();
                self.set_last(
                    true,
                    "checked_in",
                    &format!("{} checked in. Thank you.", c.asset.name),
                    now,
                );
            }
            Effect::WalkUpQueued { badge, asset } => {
                let data = json!({
                    "kiosk": p.kiosk_id,
                    "yard": p.yard,
                    "badge": badge,
                    "asset": asset.id,
                    "asset_name": asset.name,
                });
                self.record(kinds::WALKUP_QUEUED, Priority::Normal, data, now)
                    .await?;
            }
            Effect::Refused(r) => {
                let data = json!({
                    "kiosk": p.kiosk_id,
                    "yard": p.yard,
                    "reason": r.code(),
                    "detail": r,
                });
                // Queued, not awaited: a refusal waits for no disk.
                p.store
                    .submit(self.event(kinds::SCAN_REFUSED, Priority::Normal, data, now))
                    .await?;
                p.signals.refuse();
                self.set_last(false, r.code(), &r.message(), now);
            }
        }
        Ok(())
    }

    fn event(&self, kind: Kind, priority: Priority, data: serde_json::Value, now: i64) -> NewEvent {
        NewEvent {
            kind,
            priority,
            mono_ms: self.0.parts.clock.mono_ms(),
            wall_ms: now,
            config_version: self.0.parts.config_version,
            data: EventData::Json(data),
        }
    }

    async fn record(
        &self,
        kind: Kind,
        priority: Priority,
        data: serde_json::Value,
        now: i64,
    ) -> Result<u64, StoreError> {
        self.0
            .parts
            .store
            .record(self.event(kind, priority, data, now))
            .await
    }

    fn set_last(&self, ok: bool, code: &str, message: &str, now: i64) {
        *lock(&self.0.last) = Some(LastResult {
            ok,
            code: code.into(),
            message: message.into(),
            at_ms: now,
        });
    }

    /// Take the check-in photo from the latest camera frame.
    pub async fn take_photo(&self) -> Result<(), KioskError> {
        let frame = lock(&self.0.frame).clone().ok_or(KioskError::NoFrame)?;
        let (full, thumb) = tokio::task::spawn_blocking(move || {
            checkin::photo(&frame.gray, frame.width, frame.height)
        })
        .await
        .map_err(|e| KioskError::Blob(e.to_string()))??;
        let photo = Photo {
            full: self.put_blob(&full, "image/jpeg")?,
            thumb: self.put_blob(&thumb, "image/jpeg")?,
        };
        self.handle(Input::Photo(photo)).await
    }

    /// Take the driver's signature (a PNG data URL from the touch screen).
    pub async fn sign(&self, data_url: &str) -> Result<(), KioskError> {
        let png = checkin::signature_png(data_url)?;
        let sig = self.put_blob(&png, "image/png")?;
        self.handle(Input::Signature(sig)).await
    }

    fn put_blob(&self, bytes: &[u8], content_type: &str) -> Result<BlobRef, KioskError> {
        let sha256 = self
            .0
            .parts
            .blobs
            .put(bytes, content_type)
            .map_err(KioskError::Blob)?;
        Ok(BlobRef {
            sha256,
            bytes: bytes.len(),
        })
    }

    /// What the screen shows.
    pub async fn view(&self) -> serde_json::Value {
        let now = self.0.parts.clock.wall_ms();
        let flow = {
            let mut f = self.0.flow.lock().await;
            f.expire(now);
            f.clone()
        };
        let unsynced = self
            .0
            .parts
            .store
            .stats()
            .await
            .map(|s| s.unacked_events)
            .ok();
        let snap = self.0.snapshot.read().unwrap_or_else(|e| e.into_inner());
        let vehicle = flow_asset(&flow.step).and_then(|id| {
            let s = snap.as_ref()?;
            s.asset(id)?;
            Some(json!({
                "id": id,
                "meters": s.asset(id).map(|a| policy::recent_meters(a, now, self.meter_max_age_ms())),
                "defects": s.defects_of(id).collect::<Vec<_>>(),
            }))
        });
        json!({
            "kiosk": self.0.parts.kiosk_id,
            "yard": self.0.parts.yard,
            "now_ms": now,
            "step": flow.step.name(),
            "flow": flow.step,
            "last": *lock(&self.0.last),
            "online": *self.0.online.borrow(),
            "unsynced": unsynced,
            "snapshot": snap.as_ref().map(|s| json!({
                "generated_at_ms": s.generated_at_ms,
                "valid_until_ms": s.valid_until_ms,
                "usable": now <= s.valid_until_ms,
            })),
            "camera": lock(&self.0.frame).is_some(),
            "vehicle": vehicle,
        })
    }

    /// The simulated lines' transitions, in ms since the kiosk started; `None`
    /// on real GPIO.
    pub fn gpio_record(&self) -> Option<serde_json::Value> {
        let sim = self.0.parts.sim.as_ref()?;
        let t0 = self.0.started;
        let line = |o: &fleet_hal::gpio::SimOutput| {
            json!({
                "high": o.is_high_now(),
                "transitions": o.transitions().iter().map(|t| json!({
                    "at_ms": t.at.saturating_duration_since(t0).as_millis() as u64,
                    "high": t.high,
                })).collect::<Vec<_>>(),
            })
        };
        Some(json!({
            "green": line(&sim.green),
            "red": line(&sim.red),
            "buzzer": line(&sim.buzzer),
            "slots": sim.slots.iter().map(line).collect::<Vec<_>>(),
            "door_open": self.0.parts.signals.door_open().unwrap_or(false),
        }))
    }

    /// Open or close the simulated key-box door (technician and tests).
    pub fn sim_door(&self, open: bool) -> bool {
        match &self.0.parts.sim {
            Some(sim) => {
                sim.door.set_high(open);
                true
            }
            None => false,
        }
    }

    /// Raise overdue and no-show flags not raised before, as events.
    pub async fn check_overdue(&self) -> Result<usize, KioskError> {
        let now = self.0.parts.clock.wall_ms();
        let Some(snap) = self
            .0
            .snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        else {
            return Ok(0);
        };
        let store = &self.0.parts.store;
        let ops = custody::load_ops(store).await?;
        let mut raised: Vec<String> = match store.get_meta(RAISED_KEY).await? {
            Some(b) => serde_json::from_slice(&b).unwrap_or_default(),
            None => Vec::new(),
        };
        let set: BTreeSet<String> = raised.iter().cloned().collect();
        let flags = overdue::check(&snap, &ops, now, &set);
        for f in &flags {
            let kind = match f {
                overdue::Flag::Overdue { .. } => kinds::OVERDUE,
                overdue::Flag::NoShow { .. } => kinds::NO_SHOW,
            };
            let mut data = serde_json::to_value(f).unwrap_or_default();
            if let Some(m) = data.as_object_mut() {
                m.insert("kiosk".into(), self.0.parts.kiosk_id.clone().into());
                m.insert("yard".into(), self.0.parts.yard.clone().into());
            }
            self.record(kind, Priority::Normal, data, now).await?;
            raised.push(f.key());
        }
        if !flags.is_empty() {
            let skip = raised.len().saturating_sub(MAX_RAISED);
            let bytes = serde_json::to_vec(&raised[skip..]).unwrap_or_default();
            store.set_meta(RAISED_KEY, &bytes).await?;
        }
        Ok(flags.len())
    }

    /// Watch the key box's door until `stop`: open longer than `alert_after`
    /// records `door_open` and blinks the red LED until it closes.
    pub async fn watch_door(&self, alert_after: Duration, mut stop: watch::Receiver<bool>) {
        let mut door = DoorWatch::new(alert_after);
        let mut blink: Option<watch::Sender<bool>> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let t0 = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            let open = match self.0.parts.signals.door_open() {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the key-box door");
                    continue;
                }
            };
            let now_ms = t0.elapsed().as_millis() as u64;
            let Some(ev) = door.observe(open, now_ms) else {
                continue;
            };
            let now = self.0.parts.clock.wall_ms();
            let (kind, priority) = match ev {
                DoorEvent::LeftOpen { .. } => {
                    let (tx, rx) = watch::channel(false);
                    let signals = self.0.parts.signals.clone();
                    tokio::spawn(async move { signals.blink_red(rx).await });
                    blink = Some(tx);
                    self.set_last(
                        false,
                        "door_open",
                        "The key box door is open. Please close it.",
                        now,
                    );
                    (kinds::DOOR_OPEN, Priority::Critical)
                }
                DoorEvent::Closed { .. } => {
                    if let Some(b) = blink.take() {
                        let _ = b.send(true);
                    }
                    self.set_last(true, "door_closed", "The key box door is closed.", now);
                    (kinds::DOOR_CLOSED, Priority::Normal)
                }
            };
            let mut data = serde_json::to_value(ev).unwrap_or_default();
            if let Some(m) = data.as_object_mut() {
                m.insert("kiosk".into(), self.0.parts.kiosk_id.clone().into());
            }
            // The alert waits for the disk; the all-clear goes with the next commit.
            let recorded = if priority == Priority::Critical {
                self.record(kind, priority, data, now).await.map(|_| ())
            } else {
                let ev = self.event(kind, priority, data, now);
                self.0.parts.store.submit(ev).await
            };
            if let Err(e) = recorded {
                tracing::error!(error = %e, "cannot record the key-box door state");
            }
        }
        if let Some(b) = blink.take() {
            let _ = b.send(true);
        }
    }
}

/// The asset a step is about, if any: what the screen shows readings and
/// open defects of.
fn flow_asset(step: &Step) -> Option<Uuid> {
    match step {
        Step::AssetScanned { asset } => Some(asset.id),
        Step::Confirm { checkout } | Step::CheckedOut { checkout } => Some(checkout.asset.id),
        Step::CheckIn { checkin } => Some(checkin.asset.id),
        Step::CheckedIn { asset } => Some(asset.id),
        Step::Idle | Step::BadgeScanned { .. } | Step::Refused { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimClock;
    use crate::kiosk::policy::tests::{Yard, NOW};
    use fleet_hal::gpio::KioskPins;
    use fleet_protocol::label::LabelKind;
    use fleet_protocol::snapshot::SnapshotDefect;
    use fleet_protocol::BootId;

    struct Blobs(Mutex<Vec<(String, usize)>>);

    impl BlobSink for Blobs {
        fn put(&self, bytes: &[u8], content_type: &str) -> Result<String, String> {
            lock(&self.0).push((content_type.into(), bytes.len()));
            Ok(format!("{:064x}", bytes.len()))
        }
    }

    struct Rig {
        y: Yard,
        kiosk: Kiosk,
        store: Store,
        sim: SimKioskPins,
        _dir: tempfile::TempDir,
    }

    fn rig() -> Rig {
        let dir = tempfile::tempdir().expect("tmp");
        let clock: SharedClock = Arc::new(SimClock::new(BootId([3; 16]), 1_000, NOW, 1.0));
        let store = Store::open(dir.path(), clock.boot_id(), Default::default()).expect("store");
        let (pins, sim) = KioskPins::simulated(4);
        let y = Yard::new();
        let kiosk = Kiosk::new(KioskParts {
            store: store.clone(),
            clock,
            kiosk_id: "gate-1".into(),
            yard: "north".into(),
            trust: Some(y.trust.clone()),
            signals: Signals::new(pins, Duration::from_millis(800)).expect("pins"),
            sim: Some(sim.clone()),
            blobs: Arc::new(Blobs(Mutex::new(Vec::new()))),
            config_version: 1,
            location: Some((52.5, 13.4)),
        });
        kiosk.set_snapshot(Some(y.snap.clone()));
        Rig {
            y,
            kiosk,
            store,
            sim,
            _dir: dir,
        }
    }

    async fn events(store: &Store) -> Vec<fleet_protocol::Event> {
        store.flush().await.expect("flush");
        store
            .list_events(0, 1000)
            .await
            .expect("events")
            .into_iter()
            .map(|(e, _)| e)
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_confirmed_check_out_is_recorded_critical_then_releases_its_slot() {
        let r = rig();
        let k = &r.kiosk;
        k.handle(Input::Scan(r.y.label(LabelKind::Badge, r.y.ann)))
            .await
            .expect("badge");
        k.handle(Input::Scan(r.y.label(LabelKind::Key, r.y.van_key)))
            .await
            .expect("key");
        assert!(
            r.sim.slots[1].transitions().is_empty(),
            "nothing before the confirm"
        );
        k.handle(Input::Confirm).await.expect("confirm");
        assert!(r.sim.slots[1].is_high_now(), "slot 2 is the second relay");
        // The event was durable when the relay went high: record() had returned.
        let evs = events(&r.store).await;
        let out = evs
            .iter()
            .find(|e| e.kind == kinds::CHECKOUT)
            .expect("checkout");
        assert_eq!(out.priority, Priority::Critical);
        let d = out.data.to_json();
        assert_eq!(d["asset"], json!(r.y.van));
        assert_eq!(d["reservation"], json!(r.y.res));
        assert_eq!(d["slot"], json!(2));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(r.sim.slots[1].transitions().len(), 2, "one pulse");
        assert!(r.sim.green.transitions()[0].high);
        // Custody now says the van is out, here.
        let held = custody::load_all(&r.store).await.expect("custody");
        assert_eq!(
            held[&r.y.van].holder.as_ref().expect("held").kiosk,
            "gate-1"
        );
        assert_eq!(k.view().await["last"]["code"], "checked_out");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_recorded_signalled_and_shown_and_releases_nothing() {
        let r = rig();
        r.kiosk
            .handle(Input::Scan(r.y.label(LabelKind::Badge, r.y.bob)))
            .await
            .expect("handled");
        let v = r.kiosk.view().await;
        assert_eq!(v["step"], "refused");
        assert_eq!(v["last"]["code"], "badge_revoked");
        assert!(v["last"]["message"].as_str().unwrap_or("").contains("Bob"));
        assert!(r.sim.red.is_high_now());
        assert!(r.sim.slots.iter().all(|s| s.transitions().is_empty()));
        let evs = events(&r.store).await;
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].kind, kinds::SCAN_REFUSED);
        assert_eq!(evs[0].data.to_json()["reason"], "badge_revoked");
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_in_records_the_form_meters_and_closes_custody() {
        let r = rig();
        let k = &r.kiosk;
        // The van's fuel reading is five hours old: over this kiosk's limit.
        k.set_meter_max_age_ms(2 * 3_600_000);
        let mut snap = r.y.snap.clone();
        snap.defects = vec![SnapshotDefect::new(
            r.y.van,
            Some("mirror"),
            "left mirror cracked",
            false,
        )];
        k.set_snapshot(Some(snap));
        for input in [
            Input::Scan(r.y.label(LabelKind::Badge, r.y.ann)),
            Input::Scan(r.y.label(LabelKind::Vehicle, r.y.van)),
            Input::Confirm,
            Input::Scan(r.y.label(LabelKind::Vehicle, r.y.van)),
            Input::Rating(3),
        ] {
            k.handle(input).await.expect("step");
        }
        // The check-in screen shows the recent reading and the open defect.
        let v = k.view().await;
        assert_eq!(v["step"], "check_in");
        assert_eq!(v["vehicle"]["meters"]["odometer_km"], 1234.5);
        assert!(v["vehicle"]["meters"]["fuel_pct"].is_null());
        assert_eq!(v["vehicle"]["defects"][0]["note"], "left mirror cracked");
        assert_eq!(v["vehicle"]["defects"][0]["unsafe"], false);
        assert!(matches!(k.take_photo().await, Err(KioskError::NoFrame)));
        k.set_frame(
            Frame::new(64, 48, vec![128; 64 * 48], tokio::time::Instant::now()).expect("frame"),
        );
        k.take_photo().await.expect("photo");
        let png = {
            let mut b = Vec::new();
            use image::ImageEncoder as _;
            image::codecs::png::PngEncoder::new(&mut b)
                .write_image(&[0u8; 30 * 10], 30, 10, image::ExtendedColorType::L8)
                .expect("png");
            b
        };
        use base64::Engine as _;
        let url = format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&png)
        );
        k.sign(&url).await.expect("signature");
        k.handle(Input::Submit).await.expect("submit");
        let evs = events(&r.store).await;
        let back = evs
            .iter()
            .find(|e| e.kind == kinds::CHECKIN)
            .expect("checkin");
        let d = back.data.to_json();
        assert_eq!(d["rating"], 3);
        assert_eq!(d["odometer_km"], 1234.5);
        assert_eq!(d["odometer_at_ms"], NOW - 60_000);
        assert!(d["fuel_pct"].is_null(), "stale fuel reading left off");
        assert!(d["fuel_at_ms"].is_null());
        assert!(d["photo"]["thumb"]["bytes"].as_u64().unwrap_or(0) > 0);
        assert_eq!(d["signature"]["bytes"], png.len());
        assert_eq!(d["location"]["lat"], 52.5);
        let held = custody::load_all(&r.store).await.expect("custody");
        assert_eq!(held[&r.y.van].holder, None);
        assert_eq!(held[&r.y.van].ops, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unsafe_vehicle_is_refused_with_what_its_defect_is_on_screen() {
        let r = rig();
        let mut snap = r.y.snap.clone();
        snap.defects = vec![SnapshotDefect::new(
            r.y.truck,
            Some("brakes"),
            "brake pedal soft",
            true,
        )];
        r.kiosk.set_snapshot(Some(snap));
        for input in [
            Input::Scan(r.y.label(LabelKind::Badge, r.y.ann)),
            Input::Scan(r.y.label(LabelKind::Vehicle, r.y.truck)),
        ] {
            r.kiosk.handle(input).await.expect("handled");
        }
        let v = r.kiosk.view().await;
        assert_eq!(v["step"], "refused");
        assert_eq!(v["flow"]["reason"]["code"], "unsafe_defect");
        assert_eq!(
            v["flow"]["reason"]["defects"],
            json!(["brakes: brake pedal soft"])
        );
        assert!(
            v["last"]["message"]
                .as_str()
                .unwrap_or("")
                .ends_with("cannot be handed out: brakes: brake pedal soft."),
            "{v}"
        );
        assert!(r.sim.slots.iter().all(|s| s.transitions().is_empty()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_door_left_open_raises_one_alert_and_blinks_until_closed() {
        let r = rig();
        let (stop_tx, stop) = watch::channel(false);
        let k = r.kiosk.clone();
        let watch = tokio::spawn(async move { k.watch_door(Duration::from_secs(30), stop).await });
        assert!(r.kiosk.sim_door(true));
        tokio::time::sleep(Duration::from_secs(29)).await;
        // (The store is read only at the end: waiting on its thread lets the
        // paused clock run ahead.)
        assert!(r.sim.red.transitions().is_empty(), "no alert before 30 s");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(r.sim.red.transitions().len() >= 2, "blinking");
        r.kiosk.sim_door(false);
        for _ in 0..200 {
            if r.kiosk.view().await["last"]["code"] == "door_closed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let kinds: Vec<_> = events(&r.store).await.into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, vec![kinds::DOOR_OPEN, kinds::DOOR_CLOSED]);
        assert!(!r.sim.red.is_high_now());
        stop_tx.send(true).expect("stop");
        watch.await.expect("watch");
    }

    #[tokio::test(start_paused = true)]
    async fn overdue_and_no_show_flags_are_recorded_once() {
        let r = rig();
        // Ann never came for the van: past start + grace it is a no-show.
        let mut snap = r.y.snap.clone();
        snap.reservations[0].start_ms = NOW - 3_600_000;
        r.kiosk.set_snapshot(Some(snap));
        assert_eq!(r.kiosk.check_overdue().await.expect("check"), 1);
        assert_eq!(r.kiosk.check_overdue().await.expect("check"), 0);
        let evs = events(&r.store).await;
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].kind, kinds::NO_SHOW);
    }
}
