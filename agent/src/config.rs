//! The agent's configuration: TOML with a `version` key. Values come from the
//! defaults, then the file, then `FLEET_*` environment variables, where `__`
//! separates sections: `FLEET_SYNC__BATCH_MAX_EVENTS=1000`, `FLEET_DATA_DIR=/x`.
//! Unknown keys are errors, in the file and in `FLEET_` variables that name a
//! known section; secrets never appear in `Debug` output.

use crate::pipeline::SourcesConfig;
use crate::rules::RulesConfig;
use crate::store::StoreOptions;
use crate::sync::SyncOptions;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::watch;

/// The config format this agent reads.
pub const CONFIG_VERSION: u32 = 1;
pub const ENV_PREFIX: &str = "FLEET_";

/// A value that must not end up in logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    pub version: u32,
    /// Where the store and the identity live (`--data` overrides it).
    pub data_dir: PathBuf,
    pub log: LogConfig,
    pub store: StoreConfig,
    pub sync: SyncConfig,
    pub metrics: MetricsConfig,
    pub device: DeviceConfig,
    pub power: crate::power::PowerConfig,
    /// Enroll at first start, for devices provisioned with a token in their config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrollment: Option<EnrollmentConfig>,
    pub sources: SourcesConfig,
    pub rules: RulesConfig,
    /// The kiosk's flows, UI and lines, for `[device] role = "kiosk"`.
    pub kiosk: crate::kiosk::KioskConfig,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            version: CONFIG_VERSION,
            data_dir: PathBuf::from("/var/lib/fleet-agent"),
            log: LogConfig::default(),
            store: StoreConfig::default(),
            sync: SyncConfig::default(),
            metrics: MetricsConfig::default(),
            device: DeviceConfig::default(),
            power: crate::power::PowerConfig::default(),
            enrollment: None,
            sources: SourcesConfig::default(),
            rules: RulesConfig::default(),
            kiosk: crate::kiosk::KioskConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter: `info`, `fleet_agent=debug,info`, …; `RUST_LOG` wins.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub disk_budget_mb: u64,
    pub group_commit_ms: u64,
    pub group_commit_max_events: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let d = StoreOptions::default();
        Self {
            disk_budget_mb: d.disk_budget_bytes >> 20,
            group_commit_ms: u64::try_from(d.group_commit.as_millis()).unwrap_or(1_000),
            group_commit_max_events: d.group_commit_max_events,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    pub enabled: bool,
    pub batch_max_events: usize,
    pub zstd_level: i32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub idle_poll_ms: u64,
    pub request_timeout_ms: u64,
    pub docs_interval_ms: u64,
    /// How often to pull the desired config and report status to the server.
    pub control_interval_ms: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        let d = SyncOptions::default();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            enabled: true,
            batch_max_events: d.batch_max_events,
            zstd_level: d.zstd_level,
            backoff_base_ms: ms(d.backoff_base),
            backoff_max_ms: ms(d.backoff_max),
            idle_poll_ms: ms(d.idle_poll),
            request_timeout_ms: ms(d.request_timeout),
            docs_interval_ms: ms(d.docs_interval),
            control_interval_ms: ms(d.control_interval),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A truck's gateway: CAN/J1939, OBD-II, GNSS, ignition.
    #[default]
    Vehicle,
    /// A yard kiosk: camera, touch screen, key-box relay (`[kiosk]`).
    Kiosk,
}

/// `[device]`: what this box is and the hardware outside `[sources]` that
/// `fleet-agent doctor` checks (`cross/provision` writes it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceConfig {
    pub role: Role,
    /// The bitrate `can0` is brought up with (systemd-networkd or fleet-can0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_bitrate: Option<u32>,
    /// A V4L2 camera, `/dev/video0`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera: Option<PathBuf>,
    /// The GPIO character device the pins below are on, `/dev/gpiochip0`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpiochip: Option<PathBuf>,
    /// BCM pin numbers of the kiosk's key-box relay, status LED and buzzer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_gpio: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub led_gpio: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buzzer_gpio: Option<u8>,
}

impl DeviceConfig {
    /// The GPIO pins in use, by what they do (the ignition pin lives in `[sources]`).
    pub fn gpio_pins(&self) -> Vec<(&'static str, u8)> {
        [
            ("relay", self.relay_gpio),
            ("led", self.led_gpio),
            ("buzzer", self.buzzer_gpio),
        ]
        .into_iter()
        .filter_map(|(name, pin)| pin.map(|p| (name, p)))
        .collect()
    }
}

/// `[metrics]`: Prometheus text on `http://LISTEN/metrics`, loopback only.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "127.0.0.1:9187".into(),
        }
    }
}

impl MetricsConfig {
    /// The address to bind, which must be a loopback one: the page tells anyone
    /// who can read it how much the vehicle moved and when.
    pub fn listen_addr(&self) -> Result<std::net::SocketAddr, String> {
        let addr: std::net::SocketAddr = self
            .listen
            .parse()
            .map_err(|_| format!("metrics.listen {:?} is not IP:PORT", self.listen))?;
        if !addr.ip().is_loopback() {
            return Err(format!(
                "metrics.listen {addr} must be a loopback address (127.0.0.1 or ::1)"
            ));
        }
        Ok(addr)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentConfig {
    pub server_url: String,
    /// The one-time token itself; it stays in the config after use, so prefer
    /// `token_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// A file holding the one-time token (`cross/provision` writes one); the agent
    /// deletes it once the identity it bought is on disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub name: Option<String>,
    /// SHA-256 of the server certificate, hex; without it the first one seen is trusted.
    #[serde(default)]
    pub server_fingerprint: Option<String>,
}

/// Everything wrong with a configuration, one problem per line.
#[derive(Debug, Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigErrors(pub Vec<String>);

impl AgentConfig {
    /// Defaults, then `path` (if any), then `FLEET_*` environment variables; validated.
    pub fn load(path: Option<&Path>) -> anyhow::Result<AgentConfig> {
        Self::load_with_env(path, std::env::vars())
    }

    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<AgentConfig> {
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read config file {}", p.display()))?;
                Self::parse_file(&text).with_context(|| format!("config file {}", p.display()))?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, env)?;
        let mut cfg = AgentConfig::deserialize(toml::Value::Table(table))
            .context("configuration from FLEET_* environment variables")?;
        // A kiosk's V4L2 camera is the one `[device]` names unless it names its own.
        if cfg.kiosk.camera.device.is_none()
            && cfg.kiosk.camera.source == crate::kiosk::CameraSourceKind::V4l2
        {
            cfg.kiosk.camera.device = cfg.device.camera.clone();
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parse config text: the file must name its `version`, and every key must be known.
    pub fn parse_file(text: &str) -> anyhow::Result<toml::Table> {
        // Deserializing the text itself gives errors with line numbers.
        toml::from_str::<AgentConfig>(text)?;
        let table: toml::Table = toml::from_str(text)?;
        if !table.contains_key("version") {
            anyhow::bail!("missing `version = {CONFIG_VERSION}` at the top of the file");
        }
        Ok(table)
    }

    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errs = Vec::new();
        if self.version > CONFIG_VERSION {
            errs.push(format!(
                "version {} is newer than this agent understands ({CONFIG_VERSION}); upgrade fleet-agent",
                self.version
            ));
        } else if self.version == 0 {
            errs.push(format!("version must be {CONFIG_VERSION}"));
        }
        errs.extend(self.power.problems());
        if self.data_dir.as_os_str().is_empty() {
            errs.push("data_dir must not be empty".into());
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            errs.push(format!("log.level {:?}: {e}", self.log.level));
        }
        let s = &self.store;
        if s.disk_budget_mb < 8 {
            errs.push(format!(
                "store.disk_budget_mb {} is below the 8 MB minimum",
                s.disk_budget_mb
            ));
        }
        if s.group_commit_ms == 0 || s.group_commit_ms > 10_000 {
            errs.push(format!(
                "store.group_commit_ms {} must be within 1..=10000",
                s.group_commit_ms
            ));
        }
        if s.group_commit_max_events == 0 {
            errs.push("store.group_commit_max_events must be at least 1".into());
        }
        let y = &self.sync;
        if !(1..=fleet_protocol::batch::MAX_EVENTS).contains(&y.batch_max_events) {
            errs.push(format!(
                "sync.batch_max_events {} must be within 1..={}",
                y.batch_max_events,
                fleet_protocol::batch::MAX_EVENTS
            ));
        }
        if !(0..=19).contains(&y.zstd_level) {
            errs.push(format!(
                "sync.zstd_level {} must be within 0..=19 (0 = uncompressed)",
                y.zstd_level
            ));
        }
        if y.backoff_base_ms == 0 {
            errs.push("sync.backoff_base_ms must be at least 1".into());
        }
        if y.backoff_max_ms < y.backoff_base_ms {
            errs.push(format!(
                "sync.backoff_max_ms {} is below sync.backoff_base_ms {}",
                y.backoff_max_ms, y.backoff_base_ms
            ));
        }
        for (name, v) in [
            ("idle_poll_ms", y.idle_poll_ms),
            ("request_timeout_ms", y.request_timeout_ms),
            ("docs_interval_ms", y.docs_interval_ms),
        ] {
            if v == 0 {
                errs.push(format!("sync.{name} must be at least 1"));
            }
        }
        errs.extend(self.sources.problems());
        errs.extend(self.rules.problems());
        if self.device.role == Role::Kiosk {
            errs.extend(self.kiosk.problems());
        }
        if self.metrics.enabled {
            if let Err(err) = self.metrics.listen_addr() {
                errs.push(err);
            }
        }
        if let Some(rate) = self.device.can_bitrate {
            if !(10_000..=1_000_000).contains(&rate) {
                errs.push(format!(
                    "device.can_bitrate {rate} must be within 10000..=1000000 (250000 for J1939, 500000 for most OBD-II cars)"
                ));
            }
        }
        let pins = self.device.gpio_pins();
        for (i, (name, pin)) in pins.iter().enumerate() {
            if *pin > 53 {
                errs.push(format!(
                    "device.{name}_gpio {pin} is not a BCM pin (0..=53)"
                ));
            }
            if let Some((other, _)) = pins[..i].iter().find(|(_, p)| p == pin) {
                errs.push(format!(
                    "device.{name}_gpio and device.{other}_gpio are both pin {pin}"
                ));
            }
        }
        if let Some(e) = &self.enrollment {
            if let Err(err) = crate::sync::client::check_server_url(&e.server_url) {
                errs.push(format!("enrollment.server_url: {err}"));
            }
            match (&e.token, &e.token_file) {
                (Some(_), Some(_)) => {
                    errs.push("enrollment: give token or token_file, not both".into())
                }
                (None, None) => errs.push("enrollment: token_file (or token) is missing".into()),
                (Some(t), None) if t.expose().trim().is_empty() => {
                    errs.push("enrollment.token must not be empty".into())
                }
                // The file may be gone already: deleted after a successful enrollment.
                (None, Some(f)) if !f.is_absolute() => errs.push(format!(
                    "enrollment.token_file {} must be an absolute path",
                    f.display()
                )),
                _ => {}
            }
            if let Some(fp) = &e.server_fingerprint {
                if let Err(err) = crate::sync::tls::parse_fingerprint(fp) {
                    errs.push(format!("enrollment.server_fingerprint: {err}"));
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errs))
        }
    }

    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            disk_budget_bytes: self.store.disk_budget_mb << 20,
            group_commit: Duration::from_millis(self.store.group_commit_ms),
            group_commit_max_events: self.store.group_commit_max_events,
        }
    }

    pub fn sync_options(&self, online: Option<watch::Receiver<bool>>) -> SyncOptions {
        let y = &self.sync;
        SyncOptions {
            batch_max_events: y.batch_max_events,
            zstd_level: y.zstd_level,
            backoff_base: Duration::from_millis(y.backoff_base_ms),
            backoff_max: Duration::from_millis(y.backoff_max_ms),
            idle_poll: Duration::from_millis(y.idle_poll_ms),
            online,
            request_timeout: Duration::from_millis(y.request_timeout_ms),
            docs_interval: Duration::from_millis(y.docs_interval_ms),
            jitter_seed: None,
            control_interval: Duration::from_millis(y.control_interval_ms),
            control: None,
            kiosk_yard: (self.device.role == Role::Kiosk).then(|| self.kiosk.yard.clone()),
            snapshot_interval: SyncOptions::default().snapshot_interval,
        }
    }
}

/// Lay `FLEET_*` variables over `table`. A variable whose first segment is not a
/// config key belongs to some other program and is left alone. A value is read as
/// TOML (`42`, `true`, `[1, 2]`) where the default is not a string, else taken as is.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<()> {
    let defaults = toml::Table::try_from(AgentConfig::default()).expect("defaults serialize");
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    vars.sort();
    for (key, raw) in vars {
        let path: Vec<String> = key[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        let top = path[0].as_str();
        if !defaults.contains_key(top) && top != "enrollment" {
            continue;
        }
        if path.iter().any(String::is_empty) {
            anyhow::bail!("environment variable {key}: empty section name");
        }
        let default_is_string = lookup(&defaults, &path).is_none_or(|v| v.is_str());
        let value = if default_is_string {
            toml::Value::String(raw)
        } else {
            toml::from_str::<toml::Table>(&format!("v = {raw}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .with_context(|| {
                    format!("environment variable {key}: {raw:?} is not a valid value")
                })?
        };
        set_path(table, &path, value).with_context(|| format!("environment variable {key}"))?;
    }
    Ok(())
}

fn lookup<'a>(table: &'a toml::Table, path: &[String]) -> Option<&'a toml::Value> {
    let (last, parents) = path.split_last()?;
    let mut t = table;
    for p in parents {
        t = t.get(p)?.as_table()?;
    }
    t.get(last)
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> anyhow::Result<()> {
    let (last, parents) = path.split_last().expect("at least one segment");
    let mut t = table;
    for p in parents {
        t = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .with_context(|| format!("{p} is not a section"))?;
    }
    t.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().expect("tempfile");
        std::fs::write(f.path(), text).expect("write");
        f
    }

    #[test]
    fn defaults_are_valid() {
        AgentConfig::default()
            .validate()
            .expect("defaults validate");
    }

    #[test]
    fn the_file_overrides_defaults_and_the_environment_overrides_the_file() {
        let f = write(
            "version = 1\ndata_dir = \"/srv/a\"\n[sync]\nbatch_max_events = 100\nzstd_level = 5\n",
        );
        let cfg = AgentConfig::load_with_env(
            Some(f.path()),
            env(&[
                ("FLEET_SYNC__BATCH_MAX_EVENTS", "250"),
                ("FLEET_LOG__FORMAT", "json"),
                ("FLEET_DATA_DIR", "/srv/b"),
                ("FLEET_SYNC__ENABLED", "false"),
            ]),
        )
        .expect("load");
        assert_eq!(cfg.sync.batch_max_events, 250);
        assert_eq!(cfg.sync.zstd_level, 5);
        assert_eq!(cfg.data_dir, PathBuf::from("/srv/b"));
        assert_eq!(cfg.log.format, LogFormat::Json);
        assert!(!cfg.sync.enabled);
        assert_eq!(
            cfg.sync.backoff_max_ms,
            SyncConfig::default().backoff_max_ms
        );
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors_with_a_line_number() {
        let f = write("version = 1\n[sync]\nbatch_max_event = 100\n");
        let err = format!(
            "{:#}",
            AgentConfig::load_with_env(Some(f.path()), env(&[])).expect_err("must fail")
        );
        assert!(err.contains("batch_max_event"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn a_file_without_a_version_is_refused() {
        let f = write("[sync]\nbatch_max_events = 100\n");
        let err = format!(
            "{:#}",
            AgentConfig::load_with_env(Some(f.path()), env(&[])).expect_err("must fail")
        );
        assert!(err.contains("version"), "{err}");
    }

    #[test]
    fn a_newer_config_version_asks_for_a_newer_agent() {
        let f = write("version = 2\n");
        let err = format!(
            "{:#}",
            AgentConfig::load_with_env(Some(f.path()), env(&[])).expect_err("must fail")
        );
        assert!(err.contains("newer"), "{err}");
    }

    #[test]
    fn unknown_keys_in_a_known_section_of_the_environment_are_errors() {
        let err = AgentConfig::load_with_env(None, env(&[("FLEET_SYNC__BOGUS", "1")]))
            .expect_err("must fail");
        assert!(format!("{err:#}").contains("bogus"), "{err:#}");
        // Someone else's variable.
        AgentConfig::load_with_env(None, env(&[("FLEET_SERVER_URL", "x")])).expect("ignored");
    }

    #[test]
    fn validation_lists_every_problem() {
        let mut cfg = AgentConfig::default();
        cfg.sync.batch_max_events = 0;
        cfg.sync.backoff_max_ms = 1;
        cfg.store.group_commit_ms = 0;
        let errs = cfg.validate().expect_err("invalid").0;
        assert_eq!(errs.len(), 3, "{errs:?}");
    }

    #[test]
    fn the_enrollment_token_is_redacted_in_debug_output() {
        let f = write(
            "version = 1\n[enrollment]\nserver_url = \"https://fleet.example\"\ntoken = \"s3cret-token\"\n",
        );
        let cfg = AgentConfig::load_with_env(Some(f.path()), env(&[])).expect("load");
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cret-token"), "{shown}");
        assert!(shown.contains("<redacted>"));
        let token = cfg.enrollment.expect("set").token.expect("token");
        assert_eq!(token.expose(), "s3cret-token");
    }

    #[test]
    fn a_numeric_token_from_the_environment_stays_a_string() {
        let cfg = AgentConfig::load_with_env(
            None,
            env(&[
                ("FLEET_ENROLLMENT__SERVER_URL", "http://127.0.0.1:8080"),
                ("FLEET_ENROLLMENT__TOKEN", "123456"),
            ]),
        )
        .expect("load");
        let token = cfg.enrollment.expect("set").token.expect("token");
        assert_eq!(token.expose(), "123456");
    }

    #[test]
    fn plain_http_enrollment_to_a_remote_server_fails_validation() {
        let f = write(
            "version = 1\n[enrollment]\nserver_url = \"http://fleet.example\"\ntoken = \"t\"\n",
        );
        let err = format!(
            "{:#}",
            AgentConfig::load_with_env(Some(f.path()), env(&[])).expect_err("must fail")
        );
        assert!(err.contains("https://"), "{err}");
    }

    #[test]
    fn metrics_may_only_listen_on_loopback() {
        let f = write("version = 1\n[metrics]\nlisten = \"0.0.0.0:9187\"\n");
        let err = format!(
            "{:#}",
            AgentConfig::load_with_env(Some(f.path()), env(&[])).expect_err("must fail")
        );
        assert!(err.contains("loopback"), "{err}");
        let off = write("version = 1\n[metrics]\nenabled = false\nlisten = \"0.0.0.0:1\"\n");
        AgentConfig::load_with_env(Some(off.path()), env(&[])).expect("off: not checked");
    }

    #[test]
    fn enrollment_takes_a_token_or_an_absolute_token_file_but_not_both() {
        let both = write(
            "version = 1\n[enrollment]\nserver_url = \"https://f.example\"\ntoken = \"t\"\ntoken_file = \"/x\"\n",
        );
        let err = format!(
            "{:#}",
            AgentConfig::load_with_env(Some(both.path()), env(&[])).expect_err("both")
        );
        assert!(err.contains("not both"), "{err}");
        let relative = write(
            "version = 1\n[enrollment]\nserver_url = \"https://f.example\"\ntoken_file = \"enroll.token\"\n",
        );
        let err = format!(
            "{:#}",
            AgentConfig::load_with_env(Some(relative.path()), env(&[])).expect_err("relative")
        );
        assert!(err.contains("absolute"), "{err}");
        // A token file already used and deleted still validates (ExecStartPre).
        let gone = write(
            "version = 1\n[enrollment]\nserver_url = \"https://f.example\"\ntoken_file = \"/nonexistent/enroll.token\"\n",
        );
        AgentConfig::load_with_env(Some(gone.path()), env(&[])).expect("deleted token file");
    }

    #[test]
    fn kiosk_pins_must_differ_and_the_can_bitrate_be_plausible() {
        let f = write(
            "version = 1\n[device]\nrole = \"kiosk\"\ncan_bitrate = 5\nrelay_gpio = 5\nled_gpio = 5\n",
        );
        let err = format!(
            "{:#}",
            AgentConfig::load_with_env(Some(f.path()), env(&[])).expect_err("bad")
        );
        assert!(
            err.contains("can_bitrate") && err.contains("both pin 5"),
            "{err}"
        );
    }

    #[test]
    fn the_annotated_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fleet-agent.example.toml");
        let cfg = AgentConfig::load_with_env(Some(&path), env(&[])).expect("example loads");
        assert_eq!(cfg.version, CONFIG_VERSION);
    }
}
