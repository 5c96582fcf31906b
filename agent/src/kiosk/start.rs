//! Starting a kiosk: its `[kiosk]` config, its lines (simulated unless built
//! with `rpi` and given pins), its camera (`[kiosk.camera]`: a V4L2 device, or
//! an image folder or an MJPEG file for simulation), and the tasks that keep
//! its snapshot, custody and flags fresh.

use super::engine::{BlobSink, Kiosk, KioskParts};
use super::flow::Input;
use super::outputs::Signals;
use crate::clock::SharedClock;
use crate::store::Store;
use anyhow::Context;
use fleet_hal::camera::{CameraError, FolderOptions, Frame, FrameSource, ImageFolder, MjpegReader};
use fleet_hal::gpio::KioskPins;
use fleet_protocol::label::TenantTrust;
use fleet_protocol::snapshot::{SignedSnapshot, Snapshot, SnapshotError};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

pub use crate::sync::snapshot::{SNAPSHOT_FILE, TRUST_FILE};
/// How often the snapshot file, custody documents and sync status are re-read.
const REFRESH: Duration = Duration::from_secs(2);

/// `[kiosk]`: used when `[device] role = "kiosk"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KioskConfig {
    /// The touch UI and its API on `http://127.0.0.1:UI_PORT/` (loopback only).
    pub ui_port: u16,
    /// The name custody records give this kiosk; the device id when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The yard whose snapshot this kiosk holds.
    pub yard: String,
    /// Key-box slots (simulated lines; on a Pi, `pins.slots` decides).
    pub slots: usize,
    /// How long a slot's relay is energised to release its key.
    pub pulse_ms: u64,
    /// The key box's door open longer than this raises an alert.
    pub door_alert_s: u64,
    /// How often overdue returns and no-shows are looked for.
    pub overdue_check_s: u64,
    /// BCM pins of the lines on a Raspberry Pi (build with `--features rpi`);
    /// without them the lines are simulated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pins: Option<fleet_hal::gpio::KioskPinMap>,
    /// The camera labels are scanned with (`[kiosk.camera]`).
    pub camera: CameraConfig,
    /// Older spelling of `[kiosk.camera] source = "folder"`: a folder of
    /// images, played in name order, looped...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera_folder: Option<PathBuf>,
    /// ...or of `source = "mjpeg"`: an MJPEG file; both at `camera_fps`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera_mjpeg: Option<PathBuf>,
    pub camera_fps: f64,
    /// Where the kiosk stands, `[lat, lon]`, for check-in records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<[f64; 2]>,
    /// A gateway's odometer or fuel reading older than this (in the snapshot)
    /// is left off check-ins and the check-in screen.
    pub meter_max_age_h: f64,
}

/// Where camera frames come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraSourceKind {
    /// No camera: codes are typed on the touch screen.
    #[default]
    None,
    /// A V4L2 capture device (`device`), grayscale at `resolution`.
    V4l2,
    /// A folder of .jpg/.png images (`path`), played in name order, looped.
    Folder,
    /// An MJPEG file or recorded stream (`path`).
    Mjpeg,
}

/// `[kiosk.camera]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CameraConfig {
    pub source: CameraSourceKind,
    /// The V4L2 device; `[device] camera` when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<PathBuf>,
    /// The image folder or MJPEG file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// `WIDTHxHEIGHT` asked of a V4L2 camera; the driver may choose the
    /// nearest it has (`fleet-agent doctor` shows what it chose).
    pub resolution: String,
    /// Frames per second: asked of a V4L2 camera, the pace of a folder or file.
    pub fps: f64,
}

impl Default for CameraConfig {
    fn default() -> Self {
        Self {
            source: CameraSourceKind::None,
            device: None,
            path: None,
            resolution: "640x480".into(),
            fps: 5.0,
        }
    }
}

/// The camera a kiosk config asks for, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum CameraSetup {
    None,
    V4l2 {
        device: PathBuf,
        width: u32,
        height: u32,
        fps: f64,
    },
    Folder {
        dir: PathBuf,
        fps: f64,
    },
    Mjpeg {
        file: PathBuf,
        fps: f64,
    },
}

/// A V4L2 resolution the kiosk accepts: `WIDTHxHEIGHT`, 160x120 to 4096x4096,
/// an even width (YUYV carries pixels in pairs).
pub fn parse_resolution(s: &str) -> Result<(u32, u32), String> {
    let bad =
        || format!("kiosk.camera.resolution {s:?} is not WIDTHxHEIGHT (for example \"640x480\")");
    let (w, h) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (u32, u32) = (
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    );
    if !(160..=4096).contains(&w) || !(120..=4096).contains(&h) {
        return Err(format!(
            "kiosk.camera.resolution {w}x{h} must be within 160x120 and 4096x4096"
        ));
    }
    if w % 2 != 0 {
        return Err(format!("kiosk.camera.resolution width {w} must be even"));
    }
    Ok((w, h))
}

fn fps_problem(name: &str, fps: f64) -> Option<String> {
    (!(fps > 0.0 && fps <= 60.0)).then(|| format!("{name} {fps} must be within (0, 60]"))
}

impl KioskConfig {
    /// The camera to open, or every reason the settings cannot work.
    pub fn camera_setup(&self) -> Result<CameraSetup, Vec<String>> {
        let c = &self.camera;
        let legacy = self.camera_folder.is_some() || self.camera_mjpeg.is_some();
        let mut errs = Vec::new();
        if legacy {
            if c.source != CameraSourceKind::None {
                errs.push(
                    "kiosk: give [kiosk.camera] or camera_folder/camera_mjpeg, not both".into(),
                );
            }
            if self.camera_folder.is_some() && self.camera_mjpeg.is_some() {
                errs.push("kiosk: give camera_folder or camera_mjpeg, not both".into());
            }
            errs.extend(fps_problem("kiosk.camera_fps", self.camera_fps));
            if !errs.is_empty() {
                return Err(errs);
            }
            return Ok(match (&self.camera_folder, &self.camera_mjpeg) {
                (Some(dir), _) => CameraSetup::Folder {
                    dir: dir.clone(),
                    fps: self.camera_fps,
                },
                (None, Some(file)) => CameraSetup::Mjpeg {
                    file: file.clone(),
                    fps: self.camera_fps,
                },
                (None, None) => CameraSetup::None,
            });
        }
        if c.source == CameraSourceKind::None {
            return Ok(CameraSetup::None);
        }
        errs.extend(fps_problem("kiosk.camera.fps", c.fps));
        let setup = match c.source {
            CameraSourceKind::None => CameraSetup::None,
            CameraSourceKind::V4l2 => {
                let res = parse_resolution(&c.resolution)
                    .map_err(|e| errs.push(e))
                    .ok();
                if c.path.is_some() {
                    errs.push("kiosk.camera.path is for the folder and mjpeg sources; a v4l2 camera takes device".into());
                }
                if !cfg!(all(feature = "v4l2", target_os = "linux")) {
                    errs.push("kiosk.camera.source = \"v4l2\" but this fleet-agent was built without the `v4l2` feature (or not for Linux)".into());
                }
                match (&c.device, res) {
                    (None, _) => {
                        errs.push("kiosk.camera.device is missing: source \"v4l2\" needs the camera's /dev/video* path (or [device] camera)".into());
                        CameraSetup::None
                    }
                    (Some(d), _) if !d.is_absolute() => {
                        errs.push(format!(
                            "kiosk.camera.device {} must be an absolute /dev path",
                            d.display()
                        ));
                        CameraSetup::None
                    }
                    (Some(d), Some((width, height))) => CameraSetup::V4l2 {
                        device: d.clone(),
                        width,
                        height,
                        fps: c.fps,
                    },
                    (Some(_), None) => CameraSetup::None,
                }
            }
            CameraSourceKind::Folder | CameraSourceKind::Mjpeg => {
                if c.device.is_some() {
                    errs.push(
                        "kiosk.camera.device is for the v4l2 source; folder and mjpeg take path"
                            .into(),
                    );
                }
                match &c.path {
                    None => {
                        errs.push(format!(
                            "kiosk.camera.path is missing: source {} needs the {}",
                            if c.source == CameraSourceKind::Folder {
                                "\"folder\""
                            } else {
                                "\"mjpeg\""
                            },
                            if c.source == CameraSourceKind::Folder {
                                "image folder"
                            } else {
                                "MJPEG file"
                            }
                        ));
                        CameraSetup::None
                    }
                    Some(p) if c.source == CameraSourceKind::Folder => CameraSetup::Folder {
                        dir: p.clone(),
                        fps: c.fps,
                    },
                    Some(p) => CameraSetup::Mjpeg {
                        file: p.clone(),
                        fps: c.fps,
                    },
                }
            }
        };
        if errs.is_empty() {
            Ok(setup)
        } else {
            Err(errs)
        }
    }

    /// The oldest odometer or fuel reading a check-in still shows, in ms.
    pub fn meter_max_age_ms(&self) -> i64 {
        (self.meter_max_age_h * 3_600_000.0) as i64
    }
}

impl Default for KioskConfig {
    fn default() -> Self {
        Self {
            ui_port: 8090,
            name: None,
            yard: "main".into(),
            slots: 8,
            pulse_ms: 800,
            door_alert_s: 60,
            overdue_check_s: 60,
            pins: None,
            camera: CameraConfig::default(),
            camera_folder: None,
            camera_mjpeg: None,
            camera_fps: 5.0,
            location: None,
            meter_max_age_h: 12.0,
        }
    }
}

impl KioskConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if self.yard.trim().is_empty() {
            errs.push("kiosk.yard must not be empty".into());
        }
        if !(1..=64).contains(&self.slots) {
            errs.push(format!("kiosk.slots {} must be within 1..=64", self.slots));
        }
        if !(50..=10_000).contains(&self.pulse_ms) {
            errs.push(format!(
                "kiosk.pulse_ms {} must be within 50..=10000",
                self.pulse_ms
            ));
        }
        if self.door_alert_s == 0 {
            errs.push("kiosk.door_alert_s must be at least 1".into());
        }
        if self.overdue_check_s == 0 {
            errs.push("kiosk.overdue_check_s must be at least 1".into());
        }
        if let Err(camera) = self.camera_setup() {
            errs.extend(camera);
        }
        if !(self.meter_max_age_h > 0.0 && self.meter_max_age_h <= 24.0 * 30.0) {
            errs.push(format!(
                "kiosk.meter_max_age_h {} must be within (0, 720]",
                self.meter_max_age_h
            ));
        }
        if let Some([lat, lon]) = self.location {
            if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                errs.push(format!(
                    "kiosk.location [{lat}, {lon}] is not a latitude and longitude"
                ));
            }
        }
        errs
    }
}

/// The snapshot the sync loop keeps in `data_dir`, checked against `trust` at
/// `now_ms`. Unlike [`crate::sync::snapshot::load`], one that has expired is
/// still returned, so the kiosk can say why it refuses; a forged or foreign one
/// is an error.
pub fn load_snapshot(
    data_dir: &Path,
    trust: &TenantTrust,
    now_ms: i64,
) -> Result<Option<Snapshot>, SnapshotError> {
    let bytes = match std::fs::read(data_dir.join(SNAPSHOT_FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SnapshotError::Malformed(e.to_string())),
    };
    let signed = SignedSnapshot::from_json(&bytes)?;
    match signed.verify(trust, now_ms) {
        Ok(s) => Ok(Some(s)),
        Err(SnapshotError::Expired { valid_until_ms }) => {
            signed.verify(trust, valid_until_ms).map(Some)
        }
        Err(e) => Err(e),
    }
}

/// The tenant key the device trusts: from its identity (enrollment hands it
/// over), else from `DIR/tenant-key.json`.
pub fn load_trust(data_dir: &Path) -> Option<TenantTrust> {
    if let Some(t) = crate::identity::Identity::load(data_dir)
        .ok()
        .and_then(|id| id.tenant_trust().cloned())
    {
        return Some(t);
    }
    let bytes = std::fs::read(data_dir.join(TRUST_FILE)).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::error!(file = TRUST_FILE, error = %e, "the tenant key file is unreadable; every label will be refused");
            None
        }
    }
}

/// Check-in images go to the sync loop's blob queue.
struct QueuedBlobs(PathBuf);

impl BlobSink for QueuedBlobs {
    fn put(&self, bytes: &[u8], content_type: &str) -> Result<String, String> {
        crate::sync::blobs::put(&self.0, bytes, content_type).map_err(|e| e.to_string())
    }
}

/// What [`run`] needs from the daemon.
pub struct KioskRun {
    pub cfg: KioskConfig,
    pub store: Store,
    pub clock: SharedClock,
    pub data_dir: PathBuf,
    pub device_id: Option<Uuid>,
    pub config_version: u32,
    pub stop: watch::Receiver<bool>,
}

/// Run the kiosk until `stop`.
pub async fn run(r: KioskRun) -> anyhow::Result<()> {
    let cfg = r.cfg;
    let (pins, sim) = open_pins(&cfg)?;
    let signals = Signals::new(pins, Duration::from_millis(cfg.pulse_ms))
        .context("cannot set the kiosk's lines to their resting state")?;
    let trust = load_trust(&r.data_dir);
    if trust.is_none() {
        tracing::warn!(
            file = TRUST_FILE,
            "no tenant key yet: labels cannot be checked until the kiosk has enrolled"
        );
    }
    let kiosk_id = cfg
        .name
        .clone()
        .or(r.device_id.map(|d| d.to_string()))
        .unwrap_or_else(|| "kiosk".into());
    let kiosk = Kiosk::new(KioskParts {
        store: r.store.clone(),
        clock: r.clock.clone(),
        kiosk_id,
        yard: cfg.yard.clone(),
        trust: trust.clone(),
        signals: signals.clone(),
        sim,
        blobs: Arc::new(QueuedBlobs(r.data_dir.clone())),
        config_version: r.config_version,
        location: cfg.location.map(|[lat, lon]| (lat, lon)),
    });
    kiosk.set_meter_max_age_ms(cfg.meter_max_age_ms());
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, cfg.ui_port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve the kiosk UI on {addr}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(url = %format!("http://{bound}/"), "kiosk UI");
    if let Err(e) = kiosk.refresh_custody().await {
        tracing::warn!(error = %e, "cannot read custody documents");
    }

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(super::http::serve(listener, kiosk.clone(), r.stop.clone()));
    {
        let k = kiosk.clone();
        let stop = r.stop.clone();
        let alert = Duration::from_secs(cfg.door_alert_s);
        tasks.spawn(async move { k.watch_door(alert, stop).await });
    }
    tasks.spawn(refresh(
        kiosk.clone(),
        r.data_dir.clone(),
        r.clock.clone(),
        Duration::from_secs(cfg.overdue_check_s),
        r.stop.clone(),
    ));
    let setup = cfg
        .camera_setup()
        .map_err(|e| anyhow::anyhow!("kiosk camera: {}", e.join("; ")))?;
    // A camera that will not open leaves the kiosk usable: codes can be typed.
    let camera = open_camera(&setup).await.unwrap_or_else(|e| {
        tracing::error!(camera = %describe(&setup), error = %e, "cannot open the kiosk camera; scans come from the touch screen only");
        None
    });
    match camera {
        Some(Camera::Folder(source)) => {
            tasks.spawn(scan_loop(kiosk.clone(), source, r.stop.clone()));
        }
        Some(Camera::Mjpeg(source)) => {
            tasks.spawn(scan_loop(kiosk.clone(), source, r.stop.clone()));
        }
        #[cfg(all(feature = "v4l2", target_os = "linux"))]
        Some(Camera::V4l2(source)) => {
            let (w, h, fourcc) = source.negotiated();
            tracing::info!(
                width = w,
                height = h,
                format = %String::from_utf8_lossy(&fourcc),
                "kiosk camera streaming"
            );
            tasks.spawn(scan_loop(kiosk.clone(), source, r.stop.clone()));
        }
        None => tracing::info!("no kiosk camera configured; scans come from the touch screen"),
    }
    let mut stop = r.stop.clone();
    let _ = stop.wait_for(|s| *s).await;
    tasks.shutdown().await;
    Ok(())
}

/// The camera in a few words, for logs and `fleet-agent doctor`.
pub fn describe(setup: &CameraSetup) -> String {
    match setup {
        CameraSetup::None => "none".into(),
        CameraSetup::V4l2 {
            device,
            width,
            height,
            fps,
        } => format!("V4L2 {} at {width}x{height}, {fps} fps", device.display()),
        CameraSetup::Folder { dir, fps } => format!("image folder {} at {fps} fps", dir.display()),
        CameraSetup::Mjpeg { file, fps } => format!("MJPEG file {} at {fps} fps", file.display()),
    }
}

/// An opened camera, whichever source it is.
pub enum Camera {
    Folder(ImageFolder),
    Mjpeg(MjpegReader<tokio::fs::File>),
    #[cfg(all(feature = "v4l2", target_os = "linux"))]
    V4l2(fleet_hal::camera::V4l2Camera),
}

/// Opens the camera `setup` names (`None`: there is none). A V4L2 device is
/// opened on a blocking thread: its ioctls may wait on the driver.
pub async fn open_camera(setup: &CameraSetup) -> Result<Option<Camera>, CameraError> {
    Ok(Some(match setup {
        CameraSetup::None => return Ok(None),
        CameraSetup::Folder { dir, fps } => Camera::Folder(ImageFolder::open(
            dir,
            FolderOptions {
                fps: Some(*fps),
                looped: true,
            },
        )?),
        CameraSetup::Mjpeg { file, fps } => {
            Camera::Mjpeg(MjpegReader::open(file, Some(*fps)).await?)
        }
        #[cfg(all(feature = "v4l2", target_os = "linux"))]
        CameraSetup::V4l2 {
            device,
            width,
            height,
            fps,
        } => {
            let opts = fleet_hal::camera::V4l2Options {
                device: device.clone(),
                width: *width,
                height: *height,
                fps: fps.round().max(1.0) as u32,
            };
            let cam =
                tokio::task::spawn_blocking(move || fleet_hal::camera::V4l2Camera::open(&opts))
                    .await
                    .map_err(|e| CameraError::Io(std::io::Error::other(e)))??;
            Camera::V4l2(cam)
        }
        #[cfg(not(all(feature = "v4l2", target_os = "linux")))]
        CameraSetup::V4l2 { .. } => {
            return Err(CameraError::Setup(
                "this fleet-agent was built without V4L2 support".into(),
            ))
        }
    }))
}

#[cfg(feature = "rpi")]
fn open_pins(
    cfg: &KioskConfig,
) -> anyhow::Result<(KioskPins, Option<fleet_hal::gpio::SimKioskPins>)> {
    match &cfg.pins {
        Some(map) => Ok((KioskPins::open_rpi(map)?, None)),
        None => {
            let (p, s) = KioskPins::simulated(cfg.slots);
            Ok((p, Some(s)))
        }
    }
}

#[cfg(not(feature = "rpi"))]
fn open_pins(
    cfg: &KioskConfig,
) -> anyhow::Result<(KioskPins, Option<fleet_hal::gpio::SimKioskPins>)> {
    if cfg.pins.is_some() {
        anyhow::bail!(
            "kiosk.pins are set but this fleet-agent was built without the `rpi` feature"
        );
    }
    let (p, s) = KioskPins::simulated(cfg.slots);
    Ok((p, Some(s)))
}

/// Keep the snapshot, custody and online state fresh; raise overdue flags.
async fn refresh(
    kiosk: Kiosk,
    data_dir: PathBuf,
    clock: SharedClock,
    overdue_every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(REFRESH);
    let mut last_overdue: Option<tokio::time::Instant> = None;
    let mut last_counts = crate::metrics::agent().snapshot();
    let mut warned = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if kiosk.trust().is_none() {
            // Enrollment (or the sync loop) hands the key over after start.
            kiosk.set_trust(load_trust(&data_dir));
        }
        if let Some(trust) = &kiosk.trust() {
            match load_snapshot(&data_dir, trust, clock.wall_ms()) {
                Ok(s) => {
                    kiosk.set_snapshot(s);
                    warned = false;
                }
                Err(e) if !warned => {
                    warned = true;
                    tracing::error!(error = %e, "the snapshot on disk does not verify; keeping the last good one");
                }
                Err(_) => {}
            }
        }
        if let Err(e) = kiosk.refresh_custody().await {
            tracing::warn!(error = %e, "cannot read custody documents");
        }
        // Online while batches are acknowledged; offline once a sync fails.
        let counts = crate::metrics::agent().snapshot();
        if counts.sync_failures > last_counts.sync_failures {
            kiosk.set_online(false);
        } else if counts.sync_batches > last_counts.sync_batches {
            kiosk.set_online(true);
        }
        last_counts = counts;
        if last_overdue.is_none_or(|t| t.elapsed() >= overdue_every) {
            last_overdue = Some(tokio::time::Instant::now());
            match kiosk.check_overdue().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(flags = n, "overdue returns or no-shows flagged"),
                Err(e) => tracing::warn!(error = %e, "cannot check for overdue returns"),
            }
        }
    }
}

/// Frames from `source` go to the decoder; each new scan to the flow. The
/// latest frame is kept for check-in photos.
async fn scan_loop<S: FrameSource + 'static>(
    kiosk: Kiosk,
    source: S,
    mut stop: watch::Receiver<bool>,
) {
    let (tx, mut rx) = mpsc::channel(16);
    let tee = Tee {
        source,
        kiosk: kiosk.clone(),
    };
    let camera = tokio::spawn(super::camera::run(tee, tx));
    // The watch's guard must not live in the select across the flow's await.
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            scan = rx.recv() => match scan {
                Some(scan) => {
                    if let Err(e) = kiosk.handle(Input::Scan(scan.text)).await {
                        tracing::debug!(error = %e, "scan not taken");
                    }
                }
                None => break,
            },
            () = &mut stopped => break,
        }
    }
    camera.abort();
    match camera.await {
        Ok(Err(e)) => tracing::error!(error = %e, "the kiosk camera stopped"),
        Ok(Ok(stats)) => tracing::info!(
            frames = stats.frames,
            scans = stats.scans,
            "the kiosk camera ended"
        ),
        Err(_) => {}
    }
}

/// A frame source that also hands each frame to the kiosk.
struct Tee<S> {
    source: S,
    kiosk: Kiosk,
}

impl<S: FrameSource> FrameSource for Tee<S> {
    async fn next_frame(&mut self) -> Result<Option<Frame>, CameraError> {
        let f = self.source.next_frame().await?;
        if let Some(f) = &f {
            self.kiosk.set_frame(f.clone());
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AgentConfig, Role};

    #[test]
    fn the_example_config_runs_as_a_kiosk_with_its_kiosk_section() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fleet-agent.example.toml");
        let env = [("FLEET_DEVICE__ROLE".to_string(), "kiosk".to_string())];
        let cfg = AgentConfig::load_with_env(Some(&path), env).expect("example loads");
        assert_eq!(cfg.device.role, Role::Kiosk);
        assert_eq!(cfg.kiosk.ui_port, 8090);
        assert_eq!(
            cfg.sync_options(None).kiosk_yard.as_deref(),
            Some("main"),
            "a kiosk pulls its yard's snapshot"
        );
    }

    fn load(text: &str) -> anyhow::Result<AgentConfig> {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("k.toml");
        std::fs::write(&path, text).expect("write");
        AgentConfig::load_with_env(Some(&path), Vec::new())
    }

    #[test]
    fn a_v4l2_camera_takes_its_device_resolution_and_rate_or_the_device_sections_camera() {
        let cfg = load(
            "version = 1\n[device]\nrole = \"kiosk\"\ncamera = \"/dev/video2\"\n\
             [kiosk.camera]\nsource = \"v4l2\"\nresolution = \"1280x720\"\nfps = 10\n",
        )
        .expect("loads");
        assert_eq!(
            cfg.kiosk.camera_setup(),
            Ok(CameraSetup::V4l2 {
                device: PathBuf::from("/dev/video2"),
                width: 1280,
                height: 720,
                fps: 10.0
            })
        );
        assert_eq!(cfg.kiosk.meter_max_age_ms(), 12 * 3_600_000);
        let old = load(
            "version = 1\n[device]\nrole = \"kiosk\"\n[kiosk]\ncamera_folder = \"/srv/cam\"\ncamera_fps = 2.0\n",
        )
        .expect("the older keys still load");
        assert_eq!(
            old.kiosk.camera_setup(),
            Ok(CameraSetup::Folder {
                dir: PathBuf::from("/srv/cam"),
                fps: 2.0
            })
        );
    }

    #[test]
    fn bad_camera_settings_are_refused_with_what_is_wrong() {
        let kiosk = "version = 1\n[device]\nrole = \"kiosk\"\n[kiosk]\n";
        for (camera, needle) in [
            (
                "source = \"v4l2\"\nresolution = \"640by480\"\ndevice = \"/dev/video0\"\n",
                "kiosk.camera.resolution \"640by480\" is not WIDTHxHEIGHT",
            ),
            (
                "source = \"v4l2\"\nresolution = \"20000x480\"\ndevice = \"/dev/video0\"\n",
                "must be within 160x120 and 4096x4096",
            ),
            (
                "source = \"v4l2\"\nresolution = \"641x480\"\ndevice = \"/dev/video0\"\n",
                "width 641 must be even",
            ),
            ("source = \"v4l2\"\n", "kiosk.camera.device is missing"),
            ("source = \"usb\"\n", "unknown variant `usb`"),
            ("source = \"folder\"\n", "kiosk.camera.path is missing"),
            (
                "source = \"mjpeg\"\npath = \"/a.mjpeg\"\nfps = 0\n",
                "kiosk.camera.fps 0 must be within (0, 60]",
            ),
        ] {
            let err = format!(
                "{:#}",
                load(&format!(
                    "{kiosk}meter_max_age_h = 0\n[kiosk.camera]\n{camera}"
                ))
                .expect_err("refused")
            );
            assert!(err.contains(needle), "{needle} missing from {err}");
            if !needle.contains("usb") {
                assert!(err.contains("kiosk.meter_max_age_h 0"), "{err}");
            }
        }
        let both = format!(
            "{kiosk}camera_folder = \"/a\"\n[kiosk.camera]\nsource = \"mjpeg\"\npath = \"/b\"\n"
        );
        let err = format!("{:#}", load(&both).expect_err("refused"));
        assert!(err.contains("not both"), "{err}");
    }

    #[test]
    fn a_kiosk_config_names_each_bad_value() {
        let text = "version = 1\n[device]\nrole = \"kiosk\"\n[kiosk]\nyard = \"\"\nslots = 0\n\
                    pulse_ms = 5\ncamera_folder = \"/a\"\ncamera_mjpeg = \"/b\"\nlocation = [95.0, 0.0]\n";
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("k.toml");
        std::fs::write(&path, text).expect("write");
        let err = format!(
            "{:#}",
            AgentConfig::load_with_env(Some(&path), Vec::new()).expect_err("refused")
        );
        for needle in [
            "kiosk.yard",
            "kiosk.slots",
            "kiosk.pulse_ms",
            "not both",
            "kiosk.location",
        ] {
            assert!(err.contains(needle), "{needle} missing from {err}");
        }
    }
}
