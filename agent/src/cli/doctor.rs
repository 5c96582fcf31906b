//! `fleet-agent doctor`: check the hardware and the link to the server, each
//! check bounded in time, and say what to do about each failure. Hardware the
//! config does not name is "skipped", not a failure. Exits non-zero when any
//! check fails.

use crate::clock::{wall_now_ms, SystemClock};
use crate::config::AgentConfig;
use crate::identity::{Identity, IdentityError};
use crate::sync::client::{self, RequestError, SyncClient};
use crate::sync::tls::Pin;
use clap::Args;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the packaged config lives; used when `--config` is not given.
const DEFAULT_CONFIG: &str = "/etc/fleet-agent/config.toml";
/// A clock further from the server's than this is worth a warning: events are
/// still rebased from anchors, but logs and local displays are off.
const CLOCK_WARN_MS: i64 = 2_000;
/// The store's share of its budget above which the disk check warns.
const BUDGET_WARN: f64 = 0.9;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The config file; /etc/fleet-agent/config.toml when it exists.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the agent keeps its data; overrides `data_dir` from the config.
    #[arg(long = "data", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// How long to listen to the GNSS receiver for a fix.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    gnss_seconds: u64,
    /// Time allowed for each network or device check.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    timeout: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    Skipped,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skipped => "skipped",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do about it, for warnings and failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn new(name: &'static str, status: Status, detail: impl Into<String>) -> Self {
        Check {
            name,
            status,
            detail: detail.into(),
            fix: None,
        }
    }
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Ok, detail)
    }
    fn skipped(name: &'static str, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Skipped, detail)
    }
    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(name, Status::Fail, detail).with_fix(fix)
    }
    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(name, Status::Warn, detail).with_fix(fix)
    }
    fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

pub async fn run(args: DoctorArgs) -> anyhow::Result<()> {
    let checks = run_checks(&args).await;
    if args.json {
        let failed = checks.iter().any(|c| c.status == Status::Fail);
        println!(
            "{}",
            serde_json::json!({ "healthy": !failed, "checks": checks })
        );
    } else {
        print!("{}", render_text(&checks));
    }
    if checks.iter().any(|c| c.status == Status::Fail) {
        std::process::exit(1);
    }
    Ok(())
}

async fn run_checks(args: &DoctorArgs) -> Vec<Check> {
    let path = args.config.clone().or_else(|| {
        Path::new(DEFAULT_CONFIG)
            .exists()
            .then(|| PathBuf::from(DEFAULT_CONFIG))
    });
    let mut cfg = match AgentConfig::load(path.as_deref()) {
        Ok(cfg) => cfg,
        Err(e) => {
            return vec![Check::fail(
                "config",
                format!("{e:#}"),
                "fix the file, then `fleet-agent validate --config FILE`",
            )];
        }
    };
    if let Some(dir) = &args.data_dir {
        cfg.data_dir = dir.clone();
    }
    let timeout = Duration::from_secs(args.timeout.max(1));
    let where_from = path.map_or("defaults".to_owned(), |p| p.display().to_string());
    let role = match cfg.device.role {
        crate::config::Role::Vehicle => "vehicle",
        crate::config::Role::Kiosk => "kiosk",
    };
    let mut out = vec![Check::ok(
        "config",
        format!("{where_from}: version {}, role {role}", cfg.version),
    )];
    out.push(bounded("can", timeout, check_can(&cfg)).await);
    out.push(bounded("elm327", timeout * 3, check_elm327(&cfg)).await);
    out.push(
        bounded(
            "gnss",
            Duration::from_secs(args.gnss_seconds) + timeout,
            check_gnss(&cfg, Duration::from_secs(args.gnss_seconds)),
        )
        .await,
    );
    out.push(bounded("camera", timeout * 2, check_camera(&cfg, timeout)).await);
    out.push(check_gpio(&cfg));
    out.push(bounded("disk", timeout, check_disk(&cfg)).await);
    out.extend(check_server(&cfg, timeout).await);
    out
}

/// Runs a check within `limit`; a check that hangs fails and says so.
async fn bounded(
    name: &'static str,
    limit: Duration,
    check: impl std::future::Future<Output = Check>,
) -> Check {
    match tokio::time::timeout(limit, check).await {
        Ok(c) => c,
        Err(_) => Check::fail(
            name,
            format!("no answer within {} s", limit.as_secs()),
            "the device or link hangs; unplug and replug it, then run doctor again",
        ),
    }
}

/// The report as a technician reads it.
pub fn render_text(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        s.push_str(&format!(
            "{:<8} {:<11} {}\n",
            c.status.label(),
            c.name,
            c.detail
        ));
        if let Some(fix) = &c.fix {
            s.push_str(&format!("{:<20} -> {fix}\n", ""));
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warned = checks.iter().filter(|c| c.status == Status::Warn).count();
    s.push_str(&match (failed, warned) {
        (0, 0) => "healthy\n".to_owned(),
        (0, w) => format!("healthy, {w} warning(s)\n"),
        (f, _) => format!("{f} check(s) failed\n"),
    });
    s
}

// --- CAN -------------------------------------------------------------------

async fn check_can(cfg: &AgentConfig) -> Check {
    let Some(can) = &cfg.sources.can else {
        return Check::skipped("can", "no [sources.can] configured");
    };
    let iface = &can.interface;
    let out = tokio::process::Command::new("ip")
        .args(["-details", "-json", "link", "show", "dev", iface])
        .kill_on_drop(true)
        .output()
        .await;
    match out {
        Err(e) => Check::fail("can", format!("cannot run `ip`: {e}"), "install iproute2"),
        Ok(o) if !o.status.success() => Check::fail(
            "can",
            format!("{iface}: no such interface"),
            "check the HAT overlay in /boot/firmware/config.txt (dtoverlay=mcp2515-can0,…), \
             the SPI wiring and `dmesg | grep -i mcp251`; see TECHNICIAN.md",
        ),
        Ok(o) => can_check_from(
            iface,
            &String::from_utf8_lossy(&o.stdout),
            cfg.device.can_bitrate,
        ),
    }
}

/// Judge `ip -details -json link show` output for a CAN interface. Pure.
pub fn can_check_from(iface: &str, ip_json: &str, want_bitrate: Option<u32>) -> Check {
    let v: serde_json::Value = match serde_json::from_str(ip_json) {
        Ok(v) => v,
        Err(e) => return Check::fail("can", format!("unreadable `ip` output: {e}"), "report this"),
    };
    let link = v.get(0).unwrap_or(&v);
    let kind = link["linkinfo"]["info_kind"].as_str().unwrap_or("");
    if kind != "can" && kind != "vcan" {
        return Check::fail(
            "can",
            format!("{iface} is not a CAN interface (kind {kind:?})"),
            "set [sources.can] interface to the CAN interface, usually can0",
        );
    }
    let up = link["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "UP"));
    let data = &link["linkinfo"]["info_data"];
    let state =
        data["state"]
            .as_str()
            .unwrap_or(if kind == "vcan" { "virtual" } else { "unknown" });
    let bitrate = data["bittiming"]["bitrate"].as_u64();
    let detail = format!(
        "{iface}: {}, state {state}, bitrate {}",
        if up { "up" } else { "down" },
        bitrate.map_or("-".to_owned(), |b| b.to_string())
    );
    if !up {
        return Check::fail(
            "can",
            detail,
            "bring it up: `systemctl start fleet-can0` (bitrate in /etc/default/fleet-can0)",
        );
    }
    match state {
        "BUS-OFF" => {
            return Check::fail(
                "can",
                detail,
                "the controller gave up on the bus: check CAN-H/CAN-L, termination (120 Ω at each end) and the bitrate",
            )
        }
        "ERROR-PASSIVE" | "ERROR-WARNING" => {
            return Check::warn(
                "can",
                detail,
                "frames are failing: check the wiring, termination and that the bitrate matches the vehicle",
            )
        }
        "STOPPED" => {
            return Check::fail("can", detail, "`systemctl restart fleet-can0`");
        }
        _ => {}
    }
    if let (Some(want), Some(have)) = (want_bitrate, bitrate) {
        if u64::from(want) != have {
            return Check::fail(
                "can",
                detail,
                format!("the config says {want}: set BITRATE={want} in /etc/default/fleet-can0 and restart fleet-can0"),
            );
        }
    }
    Check::ok("can", detail)
}

// --- ELM327 ----------------------------------------------------------------

#[cfg(feature = "serial")]
async fn check_elm327(cfg: &AgentConfig) -> Check {
    use fleet_hal::elm327::session::{Connector, Elm327, Elm327Config};
    let Some(e) = &cfg.sources.elm327 else {
        return Check::skipped("elm327", "no [sources.elm327] configured");
    };
    let mut connector = fleet_hal::elm327::serial::SerialConnector::new(e.port.clone(), e.baud);
    let io = match connector.connect().await {
        Ok(io) => io,
        Err(err) => return serial_open_failure("elm327", &e.port, &err),
    };
    let config = Elm327Config {
        slow_timeout: Duration::from_secs(5),
        ..Elm327Config::default()
    };
    let mut elm = match Elm327::init(io, config).await {
        Ok(elm) => elm,
        Err(err) => {
            return Check::fail(
                "elm327",
                format!("{} at {} baud: no ELM327 answer ({err})", e.port, e.baud),
                "check the baud rate (38400 for most, 9600 or 115200 for some clones), that the adapter is powered (ignition on) and paired (Bluetooth)",
            )
        }
    };
    match elm.command("ATI").await {
        Ok(reply) => Check::ok(
            "elm327",
            format!(
                "{}: {}",
                e.port,
                reply
                    .lines
                    .iter()
                    .find(|l| !l.trim().is_empty())
                    .map_or(elm.version().to_owned(), |l| l.trim().to_owned())
            ),
        ),
        Err(err) => Check::fail(
            "elm327",
            format!("{}: ATI failed: {err}", e.port),
            "the adapter answers garbage: try another baud rate or adapter",
        ),
    }
}

#[cfg(not(feature = "serial"))]
async fn check_elm327(cfg: &AgentConfig) -> Check {
    match &cfg.sources.elm327 {
        None => Check::skipped("elm327", "no [sources.elm327] configured"),
        Some(_) => Check::fail(
            "elm327",
            "this fleet-agent was built without serial support",
            "install the packaged fleet-agent",
        ),
    }
}

#[cfg(feature = "serial")]
fn serial_open_failure(name: &'static str, port: &str, err: &std::io::Error) -> Check {
    let fix = match err.kind() {
        std::io::ErrorKind::NotFound => format!(
            "{port} is missing: plug the adapter in, check `ls -l /dev/serial/by-id/`, or pair it (rfcomm) for Bluetooth"
        ),
        std::io::ErrorKind::PermissionDenied => {
            format!("no access to {port}: the fleet-agent user must be in the dialout group")
        }
        _ => "check the port and that nothing else holds it open (`fuser PORT`)".into(),
    };
    Check::fail(name, format!("cannot open {port}: {err}"), fix)
}

// --- GNSS ------------------------------------------------------------------

/// What listening to a receiver for a while showed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct GnssSeen {
    pub lines: u64,
    pub bad: u64,
    pub fixes: u64,
    pub sats: Option<u8>,
    /// UTC of the latest fix that carried a date.
    pub utc_ms: Option<i64>,
}

/// Judge what a receiver sent during the listening window. Pure.
pub fn gnss_check_from(source: &str, seen: &GnssSeen, listened: Duration, now_ms: i64) -> Check {
    let secs = listened.as_secs();
    if seen.lines == 0 && seen.fixes == 0 {
        return Check::fail(
            "gnss",
            format!("{source}: nothing received in {secs} s"),
            "check the baud rate (9600 for most receivers), TX->RX wiring, and that the UART console is off (raspi-config)",
        );
    }
    if seen.lines > 0 && seen.bad * 2 > seen.lines {
        return Check::fail(
            "gnss",
            format!("{source}: {} of {} sentences garbled", seen.bad, seen.lines),
            "wrong baud rate: try 9600, 38400 or 115200",
        );
    }
    if seen.fixes == 0 {
        return Check::warn(
            "gnss",
            format!(
                "{source}: receiver talks ({} sentences) but has no fix yet",
                seen.lines
            ),
            "give it a clear view of the sky; a cold start takes minutes",
        );
    }
    let time = match seen.utc_ms {
        Some(t) => format!(
            "GPS time {:+.1} s from this clock",
            (t - now_ms) as f64 / 1000.0
        ),
        None => "no date yet (time source not usable)".into(),
    };
    let sats = seen
        .sats
        .map_or(String::new(), |s| format!(", {s} satellites"));
    Check::ok(
        "gnss",
        format!("{source}: {} fixes{sats}; {time}", seen.fixes),
    )
}

async fn check_gnss(cfg: &AgentConfig, listen: Duration) -> Check {
    let until = Instant::now() + listen;
    if let Some(g) = &cfg.sources.gnss {
        if let Some(addr) = &g.gpsd {
            return check_gpsd(addr, until, listen).await;
        }
        #[cfg(feature = "serial")]
        if let Some(port) = &g.serial {
            let mut src = match fleet_hal::gnss::SerialNmea::open(port, g.baud) {
                Ok(s) => s,
                Err(err) => return serial_open_failure("gnss", port, &err),
            };
            let seen = listen_nmea(until, &mut src).await;
            return gnss_check_from(
                &format!("{port} at {} baud", g.baud),
                &seen,
                listen,
                wall_now_ms(),
            );
        }
    }
    if let Some(r) = &cfg.sources.nmea_file {
        let pace = fleet_hal::candump::Pace::Unpaced;
        let mut src = match fleet_hal::gnss::NmeaReplay::open(&r.file, pace).await {
            Ok(s) => s,
            Err(err) => {
                return Check::fail(
                    "gnss",
                    format!("cannot open {}: {err}", r.file.display()),
                    "check [sources.nmea_file] file",
                )
            }
        };
        let seen = listen_nmea(until, &mut src).await;
        return gnss_check_from(
            &format!("replay {}", r.file.display()),
            &seen,
            listen,
            wall_now_ms(),
        );
    }
    Check::skipped("gnss", "no [sources.gnss] configured")
}

/// Feed NMEA lines to the fix assembler until `until` or the source ends.
async fn listen_nmea(until: Instant, src: &mut impl fleet_hal::gnss::NmeaSource) -> GnssSeen {
    let mut asm = crate::decode::nmea::FixAssembler::new();
    let mut seen = GnssSeen::default();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, src.next_line()).await {
            Ok(Ok((line, _))) => {
                seen.lines += 1;
                if let Some(fix) = asm.push_line(&line) {
                    seen.fixes += 1;
                    seen.sats = fix.sats.or(seen.sats);
                    seen.utc_ms = fix.utc_ms.or(seen.utc_ms);
                }
            }
            Ok(Err(_)) | Err(_) => break,
        }
    }
    seen.bad = asm.bad;
    seen
}

async fn check_gpsd(addr: &str, until: Instant, listen: Duration) -> Check {
    let mut client = match fleet_hal::gnss::GpsdClient::connect(addr).await {
        Ok(c) => c,
        Err(e) => {
            return Check::fail(
                "gnss",
                format!("gpsd at {addr}: {e}"),
                "start gpsd (`systemctl start gpsd`) and check GPSD_OPTIONS/DEVICES in /etc/default/gpsd",
            )
        }
    };
    let mut seen = GnssSeen::default();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, client.next_fix()).await {
            Ok(Ok(fix)) => {
                seen.fixes += 1;
                seen.sats = fix.sats.or(seen.sats);
                seen.utc_ms = fix.utc_ms.or(seen.utc_ms);
                // One fix with a time is all the check needs.
                if seen.utc_ms.is_some() {
                    break;
                }
            }
            Ok(Err(_)) | Err(_) => break,
        }
    }
    let stats = client.stats();
    seen.lines = stats.fixes + stats.no_fix + stats.bad_lines;
    seen.bad = stats.bad_lines;
    gnss_check_from(&format!("gpsd at {addr}"), &seen, listen, wall_now_ms())
}

// --- camera, GPIO ----------------------------------------------------------

/// A kiosk's `[kiosk.camera]`: opened as the kiosk would, with the resolution
/// the driver chose and the time to a first frame. Otherwise `[device] camera`
/// must be a video device that opens.
async fn check_camera(cfg: &AgentConfig, timeout: Duration) -> Check {
    use crate::kiosk::{CameraSetup, CameraSourceKind};
    let kiosk_camera = cfg.device.role == crate::config::Role::Kiosk
        && (cfg.kiosk.camera.source != CameraSourceKind::None
            || cfg.kiosk.camera_folder.is_some()
            || cfg.kiosk.camera_mjpeg.is_some());
    if !kiosk_camera {
        let Some(dev) = &cfg.device.camera else {
            return Check::skipped("camera", "no [device] camera configured");
        };
        return check_char_device("camera", dev, false, "video");
    }
    let setup = match cfg.kiosk.camera_setup() {
        Ok(s) => s,
        Err(errs) => {
            return Check::fail(
                "camera",
                errs.join("; "),
                "fix [kiosk.camera], then `fleet-agent validate --config FILE`",
            )
        }
    };
    let what = crate::kiosk::describe_camera(&setup);
    let asked = match &setup {
        CameraSetup::V4l2 { width, height, .. } => Some((*width, *height)),
        _ => None,
    };
    let started = Instant::now();
    let camera = match crate::kiosk::open_camera(&setup).await {
        Ok(Some(c)) => c,
        Ok(None) => return Check::skipped("camera", "no kiosk camera configured"),
        Err(e) => return camera_open_failed(&setup, &what, &e),
    };
    let (negotiated, frame) = first_frame(camera, timeout).await;
    let got = negotiated
        .map(|(w, h, fourcc)| format!("{w}x{h} {}", String::from_utf8_lossy(&fourcc).trim()));
    match frame {
        Ok(f) => {
            let mut detail = format!(
                "{what}: first frame {}x{} gray in {} ms",
                f.width,
                f.height,
                started.elapsed().as_millis()
            );
            if let Some(got) = &got {
                detail.push_str(&format!(", negotiated {got}"));
            }
            match (asked, negotiated) {
                (Some((w, h)), Some((gw, gh, _))) if (w, h) != (gw, gh) => Check::warn(
                    "camera",
                    format!("{detail}; asked for {w}x{h}"),
                    format!("the camera has no {w}x{h} mode; set [kiosk.camera] resolution = \"{gw}x{gh}\""),
                ),
                _ => Check::ok("camera", detail),
            }
        }
        Err(e) => Check::fail(
            "camera",
            format!(
                "{what}: opened{} but no frame: {e}",
                got.map(|g| format!(" at {g}")).unwrap_or_default()
            ),
            "check the lighting and the cable; another program may hold the camera (`fuser /dev/video0`)",
        ),
    }
}

fn camera_open_failed(
    setup: &crate::kiosk::CameraSetup,
    what: &str,
    e: &fleet_hal::camera::CameraError,
) -> Check {
    use fleet_hal::camera::CameraError;
    match e {
        CameraError::Io(io) if io.kind() == std::io::ErrorKind::NotFound => Check::fail(
            "camera",
            format!("{what}: not found"),
            match setup {
                crate::kiosk::CameraSetup::V4l2 { .. } => {
                    "no such video device: check the camera's cable and that its driver loaded (`dmesg`, `v4l2-ctl --list-devices`)"
                }
                _ => "the configured camera folder or file does not exist",
            },
        ),
        CameraError::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => Check::fail(
            "camera",
            format!("{what}: {io}"),
            "the fleet-agent user must be in the `video` group",
        ),
        e => Check::fail(
            "camera",
            format!("{what}: {e}"),
            "check [kiosk.camera]: the device, resolution and source",
        ),
    }
}

/// The camera's negotiated mode (V4L2 only) and its first frame.
async fn first_frame(
    camera: crate::kiosk::Camera,
    timeout: Duration,
) -> (
    Option<(u32, u32, [u8; 4])>,
    Result<fleet_hal::camera::Frame, String>,
) {
    use crate::kiosk::Camera;
    use fleet_hal::camera::FrameSource;
    async fn one<S: FrameSource>(
        mut s: S,
        timeout: Duration,
    ) -> Result<fleet_hal::camera::Frame, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, s.next_frame()).await {
                Err(_) => return Err(format!("none within {} s", timeout.as_secs())),
                Ok(Ok(Some(f))) => return Ok(f),
                Ok(Ok(None)) => return Err("the source is empty".into()),
                Ok(Err(e)) if e.is_recoverable() => continue,
                Ok(Err(e)) => return Err(e.to_string()),
            }
        }
    }
    match camera {
        Camera::Folder(s) => (None, one(s, timeout).await),
        Camera::Mjpeg(s) => (None, one(s, timeout).await),
        #[cfg(all(feature = "v4l2", target_os = "linux"))]
        Camera::V4l2(s) => (Some(s.negotiated()), one(s, timeout).await),
    }
}

fn check_gpio(cfg: &AgentConfig) -> Check {
    let mut pins: Vec<String> = cfg
        .device
        .gpio_pins()
        .iter()
        .map(|(n, p)| format!("{n} {p}"))
        .collect();
    if let Some(i) = &cfg.sources.ignition {
        pins.push(format!("ignition {}", i.gpio));
    }
    if pins.is_empty() {
        return Check::skipped("gpio", "no GPIO pins configured");
    }
    let chip = cfg
        .device
        .gpiochip
        .clone()
        .unwrap_or_else(|| PathBuf::from("/dev/gpiochip0"));
    let c = check_char_device("gpio", &chip, true, "gpio");
    if c.status == Status::Ok {
        Check::ok("gpio", format!("{} ({})", c.detail, pins.join(", ")))
    } else {
        c
    }
}

/// A character device that must exist and open (read, or read-write).
fn check_char_device(name: &'static str, dev: &Path, write: bool, group: &str) -> Check {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::metadata(dev) {
        Ok(m) => m,
        Err(e) => {
            return Check::fail(
                name,
                format!("{}: {e}", dev.display()),
                format!(
                    "{} is missing: check the cable/ribbon and that the driver loaded (`dmesg`)",
                    dev.display()
                ),
            )
        }
    };
    if !meta.file_type().is_char_device() {
        return Check::fail(
            name,
            format!("{} is not a device", dev.display()),
            "point the config at the /dev node",
        );
    }
    match std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(dev)
    {
        Ok(_) => Check::ok(name, format!("{} opens", dev.display())),
        Err(e) => Check::fail(
            name,
            format!("cannot open {}: {e}", dev.display()),
            format!("the fleet-agent user must be in the {group} group"),
        ),
    }
}

// --- disk ------------------------------------------------------------------

async fn check_disk(cfg: &AgentConfig) -> Check {
    let dir = &cfg.data_dir;
    let free = match rustix::fs::statvfs(dir) {
        Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
        Err(e) => {
            return Check::fail(
                "disk",
                format!("{}: {e}", dir.display()),
                "the data directory is missing: reinstall the package or create it (owner fleet-agent, mode 0700)",
            )
        }
    };
    let budget = cfg.store.disk_budget_mb << 20;
    let used = if dir.join(crate::store::DB_FILE).exists() {
        match super::open_store(dir) {
            Ok(store) => {
                let stats = store.stats().await;
                let _ = store.close().await;
                match stats {
                    Ok(s) => Some(s.db_bytes),
                    Err(e) => {
                        return Check::fail(
                            "disk",
                            format!("store unreadable: {e}"),
                            "see the agent's journal",
                        )
                    }
                }
            }
            Err(e) => return Check::fail("disk", format!("{e:#}"), "see the agent's journal"),
        }
    } else {
        None
    };
    disk_check_from(used, budget, free)
}

/// Judge the store's size against its budget and the free space. Pure.
pub fn disk_check_from(used: Option<u64>, budget: u64, free: u64) -> Check {
    let mb = |b: u64| b as f64 / 1_048_576.0;
    let used_b = used.unwrap_or(0);
    let detail = format!(
        "store {:.1} of {:.0} MB budget, {:.0} MB free on the disk",
        mb(used_b),
        mb(budget),
        mb(free)
    );
    let room = budget.saturating_sub(used_b);
    if free < room {
        return Check::fail(
            "disk",
            detail,
            "the disk fills before the budget does: lower [store] disk_budget_mb or free space, or the store stops at disk-full instead of evicting",
        );
    }
    if used_b as f64 > budget as f64 * BUDGET_WARN {
        return Check::warn(
            "disk",
            detail,
            "the store is evicting to stay in budget: is sync stuck? see `fleet-agent status`",
        );
    }
    match used {
        None => Check::ok("disk", format!("{detail} (no store yet)")),
        Some(_) => Check::ok("disk", detail),
    }
}

// --- server, clock, enrollment ---------------------------------------------

async fn check_server(cfg: &AgentConfig, timeout: Duration) -> Vec<Check> {
    let identity = match Identity::load(&cfg.data_dir) {
        Ok(id) => Some(id),
        Err(IdentityError::NotEnrolled(_)) => None,
        Err(e) => {
            return vec![Check::fail(
                "enrollment",
                e.to_string(),
                "move the damaged identity.json aside and enroll again",
            )]
        }
    };
    let (url, pin) = match (&identity, &cfg.enrollment) {
        (Some(id), _) => (id.server_url.clone(), id.server_pin().map(Pin::Exactly)),
        (None, Some(e)) => (
            e.server_url.clone(),
            Some(
                match e
                    .server_fingerprint
                    .as_deref()
                    .map(crate::sync::tls::parse_fingerprint)
                {
                    Some(Ok(fp)) => Pin::Exactly(fp),
                    _ => Pin::TrustOnFirstUse,
                },
            ),
        ),
        (None, None) => {
            return vec![
                Check::skipped("server", "no server known (not enrolled, no [enrollment])"),
                Check::skipped("clock", "no server to compare with"),
                Check::fail(
                    "enrollment",
                    "not enrolled",
                    "run `fleet-agent enroll --server URL --token TOKEN`, or provision a token",
                ),
            ]
        }
    };
    let mut out = Vec::new();
    let reachable = check_reachable(&url, pin, timeout).await;
    let up = reachable.status == Status::Ok;
    out.push(reachable);
    if !up {
        out.push(Check::skipped("clock", "server unreachable"));
    }
    match identity {
        Some(id) => {
            let clock = Arc::new(SystemClock::new());
            let client = match SyncClient::new(&id, clock, timeout) {
                Ok(c) => c,
                Err(e) => {
                    out.push(Check::fail("enrollment", e.to_string(), "enroll again"));
                    return out;
                }
            };
            if up {
                out.push(check_clock(&client, timeout).await);
            }
            out.push(if up {
                check_signed(&client, &id, timeout).await
            } else {
                Check::skipped(
                    "enrollment",
                    format!(
                        "enrolled as {} ({}); server unreachable",
                        id.name, id.device_id
                    ),
                )
            });
        }
        None => {
            if up {
                out.push(check_clock_unsigned(&url, timeout).await);
            }
            let token = cfg.enrollment.as_ref().and_then(|e| e.token_file.clone());
            out.push(match token {
                Some(t) if t.exists() => Check::warn(
                    "enrollment",
                    format!("not enrolled yet; token {} waiting", t.display()),
                    "the agent enrolls on its own once the server is reachable; a refused token is logged (journalctl -u fleet-agent)",
                ),
                Some(t) => Check::fail(
                    "enrollment",
                    format!("not enrolled and the token {} is gone", t.display()),
                    "write a new token there (mode 600, owner fleet-agent) or run `fleet-agent enroll`",
                ),
                None => Check::warn(
                    "enrollment",
                    "not enrolled yet; token in the config",
                    "the agent enrolls on its own once the server is reachable",
                ),
            });
        }
    }
    out
}

async fn check_reachable(url: &str, pin: Option<Pin>, timeout: Duration) -> Check {
    let base = match client::check_server_url(url) {
        Ok(u) => u,
        Err(e) => return Check::fail("server", e.to_string(), "fix the server URL"),
    };
    let http = match client::http_client(&base, pin, timeout) {
        Ok((h, _)) => h,
        Err(e) => return Check::fail("server", e.to_string(), "enroll again over https"),
    };
    let started = Instant::now();
    let health = format!("{}/healthz", url.trim_end_matches('/'));
    match http.get(&health).send().await {
        Ok(r) if r.status().is_success() => Check::ok(
            "server",
            format!("{url} answers ({} ms)", started.elapsed().as_millis()),
        ),
        Ok(r) => Check::fail(
            "server",
            format!("{url} answered {}", r.status()),
            "the server or a proxy in front of it is failing; tell the operator",
        ),
        Err(e) => Check::fail(
            "server",
            format!("cannot reach {url}: {e}"),
            "check the cellular/Wi-Fi link (`ip route`, `ping`), DNS, and that the server's certificate is still the pinned one",
        ),
    }
}

/// Judge the local clock against the server's. Pure.
pub fn clock_check_from(skew_ms: i64) -> Check {
    let detail = format!("{:+.1} s from the server", skew_ms as f64 / 1000.0);
    if skew_ms.abs() > CLOCK_WARN_MS {
        Check::warn(
            "clock",
            detail,
            "no NTP or RTC: events are still placed right from server and GPS anchors; enable systemd-timesyncd or fit an RTC",
        )
    } else {
        Check::ok("clock", detail)
    }
}

async fn check_clock(client: &SyncClient, timeout: Duration) -> Check {
    let sent = Instant::now();
    match tokio::time::timeout(timeout, client.server_time()).await {
        Ok(Ok(t)) => {
            let half = i64::try_from(sent.elapsed().as_millis() / 2).unwrap_or(0);
            clock_check_from(wall_now_ms() - (t.server_time_ms + half))
        }
        Ok(Err(e)) => Check::warn(
            "clock",
            format!("server time unavailable: {e}"),
            "see the server check",
        ),
        Err(_) => Check::warn(
            "clock",
            "server time did not come in time",
            "see the server check",
        ),
    }
}

async fn check_clock_unsigned(url: &str, timeout: Duration) -> Check {
    let fetch = async {
        let base = client::check_server_url(url).ok()?;
        let (http, _) = client::http_client(&base, Some(Pin::TrustOnFirstUse), timeout).ok()?;
        let sent = Instant::now();
        let r = http
            .get(format!(
                "{}{}",
                url.trim_end_matches('/'),
                fleet_protocol::api::PATH_TIME
            ))
            .send()
            .await
            .ok()?;
        let body = r.bytes().await.ok()?;
        let t: fleet_protocol::api::TimeResponse = serde_json::from_slice(&body).ok()?;
        let half = i64::try_from(sent.elapsed().as_millis() / 2).unwrap_or(0);
        Some(wall_now_ms() - (t.server_time_ms + half))
    };
    match fetch.await {
        Some(skew) => clock_check_from(skew),
        None => Check::warn("clock", "server time unavailable", "see the server check"),
    }
}

/// A signed request the server must authenticate: an empty batch, which an
/// authenticated device gets refused as malformed (stores nothing); an unknown
/// or revoked device is refused before that.
async fn check_signed(client: &SyncClient, id: &Identity, timeout: Duration) -> Check {
    let who = format!("{} ({})", id.name, id.device_id);
    match tokio::time::timeout(timeout, client.post_batch(Vec::new())).await {
        Err(_) => Check::fail(
            "enrollment",
            format!("{who}: no answer"),
            "see the server check",
        ),
        Ok(Ok(_)) => Check::ok("enrollment", format!("{who}: signed requests accepted")),
        Ok(Err(RequestError::Status { status, code, .. })) if status == 400 || status == 413 => {
            Check::ok(
                "enrollment",
                format!("{who}: signed requests accepted (probe refused as {code}, as expected)"),
            )
        }
        Ok(Err(RequestError::Status { code, message, .. })) => {
            let fix = match code.as_str() {
                "device_revoked" => "the operator revoked this device: ask for a new token and enroll again (move identity.json aside)",
                "unknown_device" => "the server does not know this device (another server or a reset database): enroll again",
                "clock_skew" => "the clock is far off and the server refused: check the clock line above",
                _ => "tell the operator the code above",
            };
            Check::fail(
                "enrollment",
                format!("{who}: refused ({code}): {message}"),
                fix,
            )
        }
        Ok(Err(e)) => Check::fail("enrollment", format!("{who}: {e}"), "see the server check"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kiosk_config(camera: &str) -> AgentConfig {
        let text = format!("version = 1\n[device]\nrole = \"kiosk\"\n[kiosk.camera]\n{camera}");
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("k.toml");
        std::fs::write(&path, text).expect("write");
        AgentConfig::load_with_env(Some(&path), Vec::new()).expect("loads")
    }

    #[cfg(all(feature = "v4l2", target_os = "linux"))]
    #[tokio::test]
    async fn a_kiosk_camera_that_is_not_there_is_reported_not_found_with_what_to_check() {
        let cfg = kiosk_config(
            "source = \"v4l2\"\ndevice = \"/dev/video-fleet-absent\"\nresolution = \"1280x720\"\n",
        );
        let c = check_camera(&cfg, Duration::from_secs(2)).await;
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert_eq!(
            c.detail,
            "V4L2 /dev/video-fleet-absent at 1280x720, 5 fps: not found"
        );
        assert!(c.fix.as_deref().unwrap_or("").contains("v4l2-ctl"), "{c:?}");
    }

    #[tokio::test]
    async fn a_simulated_kiosk_camera_reports_its_first_frame() {
        let dir = tempfile::tempdir().expect("tmp");
        image::GrayImage::from_pixel(320, 240, image::Luma([200]))
            .save(dir.path().join("0.png"))
            .expect("png");
        let cfg = kiosk_config(&format!(
            "source = \"folder\"\npath = {:?}\n",
            dir.path().display().to_string()
        ));
        let c = check_camera(&cfg, Duration::from_secs(2)).await;
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert!(c.detail.contains("first frame 320x240 gray"), "{c:?}");
        let missing = kiosk_config("source = \"mjpeg\"\npath = \"/nonexistent/cam.mjpeg\"\n");
        let c = check_camera(&missing, Duration::from_secs(2)).await;
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.ends_with("not found"), "{c:?}");
    }

    const IP_UP: &str = r#"[{"ifname":"can0","flags":["NOARP","UP","LOWER_UP"],"linkinfo":{"info_kind":"can","info_data":{"state":"ERROR-ACTIVE","restart_ms":100,"bittiming":{"bitrate":250000,"sample_point":"0.875"}}}}]"#;

    #[test]
    fn a_can_link_up_at_the_configured_bitrate_is_healthy() {
        let c = can_check_from("can0", IP_UP, Some(250_000));
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert!(c.detail.contains("ERROR-ACTIVE") && c.detail.contains("250000"));
    }

    #[test]
    fn a_can_link_at_the_wrong_bitrate_or_bus_off_fails_with_what_to_do() {
        let c = can_check_from("can0", IP_UP, Some(500_000));
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.fix.as_deref().unwrap_or("").contains("BITRATE=500000"),
            "{c:?}"
        );
        let off = IP_UP.replace("ERROR-ACTIVE", "BUS-OFF");
        let c = can_check_from("can0", &off, None);
        assert_eq!(c.status, Status::Fail);
        assert!(c.fix.as_deref().unwrap_or("").contains("termination"));
        let down = IP_UP.replace("\"UP\",", "");
        assert_eq!(can_check_from("can0", &down, None).status, Status::Fail);
        let passive = IP_UP.replace("ERROR-ACTIVE", "ERROR-PASSIVE");
        assert_eq!(can_check_from("can0", &passive, None).status, Status::Warn);
    }

    #[test]
    fn an_ethernet_interface_is_not_taken_for_can() {
        let eth = r#"[{"ifname":"eth0","flags":["UP"],"linkinfo":{"info_kind":"veth"}}]"#;
        assert_eq!(can_check_from("eth0", eth, None).status, Status::Fail);
    }

    #[test]
    fn gnss_silence_garble_no_fix_and_a_fix_are_told_apart() {
        let d = Duration::from_secs(5);
        let silent = GnssSeen::default();
        assert_eq!(gnss_check_from("x", &silent, d, 0).status, Status::Fail);
        let garbled = GnssSeen {
            lines: 10,
            bad: 9,
            ..GnssSeen::default()
        };
        assert!(gnss_check_from("x", &garbled, d, 0)
            .fix
            .unwrap_or_default()
            .contains("baud"));
        let no_fix = GnssSeen {
            lines: 10,
            ..GnssSeen::default()
        };
        assert_eq!(gnss_check_from("x", &no_fix, d, 0).status, Status::Warn);
        let fix = GnssSeen {
            lines: 10,
            fixes: 2,
            sats: Some(9),
            utc_ms: Some(10_500),
            ..GnssSeen::default()
        };
        let c = gnss_check_from("x", &fix, d, 10_000);
        assert_eq!(c.status, Status::Ok);
        assert!(
            c.detail.contains("9 satellites") && c.detail.contains("+0.5 s"),
            "{c:?}"
        );
    }

    #[test]
    fn a_disk_that_fills_before_the_budget_fails_and_a_nearly_full_budget_warns() {
        let mb = 1 << 20;
        assert_eq!(
            disk_check_from(Some(10 * mb), 256 * mb, 100 * mb).status,
            Status::Fail
        );
        assert_eq!(
            disk_check_from(Some(250 * mb), 256 * mb, 1000 * mb).status,
            Status::Warn
        );
        assert_eq!(
            disk_check_from(None, 256 * mb, 1000 * mb).status,
            Status::Ok
        );
    }

    #[test]
    fn the_text_report_lists_fixes_and_a_verdict() {
        let checks = vec![
            Check::ok("config", "fine"),
            Check::fail("can", "can0: no such interface", "check the overlay"),
            Check::skipped("camera", "none"),
        ];
        let text = render_text(&checks);
        assert!(text.contains("FAIL     can"), "{text}");
        assert!(text.contains("-> check the overlay"), "{text}");
        assert!(text.ends_with("1 check(s) failed\n"), "{text}");
        assert_eq!(clock_check_from(-5_000).status, Status::Warn);
        assert_eq!(clock_check_from(300).status, Status::Ok);
    }
}
