//! systemd service notifications (`sd_notify`) without libsystemd: one datagram
//! per state change to the socket named by `$NOTIFY_SOCKET`.
//!
//! The unit is `Type=notify` with `WatchdogSec=`: the agent says `READY=1` once
//! its store is open and its sources and sync are started, pets the watchdog
//! (`WATCHDOG=1`) only while the store writer still answers, and says
//! `STOPPING=1` when it begins its bounded shutdown. Outside systemd (no
//! `$NOTIFY_SOCKET`) every call is a no-op.

use std::ffi::OsString;
use std::future::Future;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET={0:?} is neither an absolute path nor an abstract name (@…)")]
    InvalidSocket(String),
    #[error("WATCHDOG_USEC={0:?} is not a positive number of microseconds")]
    InvalidWatchdog(String),
    #[error("abstract notify sockets are supported on Linux only")]
    AbstractUnsupported,
    #[error("cannot notify systemd: {0}")]
    Io(#[from] std::io::Error),
}

/// Where the notification datagrams go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyTarget {
    /// A socket file, such as `/run/systemd/notify`.
    Path(PathBuf),
    /// A Linux abstract-namespace socket (`@name` in the variable).
    Abstract(Vec<u8>),
}

/// What the environment asks of the service, decided without any I/O.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NotifyConfig {
    pub target: Option<NotifyTarget>,
    /// The watchdog timeout, when the watchdog is enabled for this process.
    pub watchdog: Option<Duration>,
}

impl NotifyConfig {
    /// Reads the service environment the way `sd_notify(3)` and
    /// `sd_watchdog_enabled(3)` do: `WATCHDOG_USEC` counts only when
    /// `WATCHDOG_PID` is unset or names `own_pid`.
    pub fn parse(
        notify_socket: Option<&OsString>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        own_pid: u32,
    ) -> Result<NotifyConfig, NotifyError> {
        let target = match notify_socket {
            None => None,
            Some(s) if s.is_empty() => None,
            Some(s) => Some(parse_target(s)?),
        };
        let for_us = match watchdog_pid.map(str::trim) {
            None | Some("") => true,
            Some(pid) => pid.parse::<u32>().ok() == Some(own_pid),
        };
        let watchdog = match watchdog_usec.map(str::trim) {
            Some(usec) if for_us && !usec.is_empty() => match usec.parse::<u64>() {
                Ok(n) if n > 0 => Some(Duration::from_micros(n)),
                _ => return Err(NotifyError::InvalidWatchdog(usec.to_owned())),
            },
            _ => None,
        };
        Ok(NotifyConfig { target, watchdog })
    }

    /// How often to pet the watchdog: half its timeout, as systemd recommends,
    /// so one late pet is not fatal.
    pub fn pet_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }
}

fn parse_target(s: &OsString) -> Result<NotifyTarget, NotifyError> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = s.as_bytes();
    match bytes.first() {
        Some(b'/') => Ok(NotifyTarget::Path(PathBuf::from(s))),
        Some(b'@') if bytes.len() > 1 => Ok(NotifyTarget::Abstract(bytes[1..].to_vec())),
        _ => Err(NotifyError::InvalidSocket(s.to_string_lossy().into_owned())),
    }
}

/// The `sd_notify` message for `state` with an optional human-readable status.
pub fn message(state: State, status: Option<&str>) -> String {
    let mut msg = String::from(state.assignment());
    if let Some(status) = status {
        // One line per assignment: a newline inside the status would start
        // a bogus assignment.
        msg.push_str("\nSTATUS=");
        msg.extend(status.chars().map(|c| if c == '\n' { ' ' } else { c }));
    }
    msg
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Ready,
    Watchdog,
    Stopping,
}

impl State {
    fn assignment(self) -> &'static str {
        match self {
            State::Ready => "READY=1",
            State::Watchdog => "WATCHDOG=1",
            State::Stopping => "STOPPING=1",
        }
    }
}

/// Sends notifications to systemd. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    inner: Option<Arc<Connected>>,
    watchdog: Option<Duration>,
}

#[derive(Debug)]
struct Connected {
    socket: UnixDatagram,
    target: NotifyTarget,
}

impl Notifier {
    /// A notifier for this process's environment. A malformed environment is
    /// logged and leaves notifications off: the agent itself still runs, and
    /// systemd reports the missing READY.
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET");
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        let parsed = NotifyConfig::parse(
            socket.as_ref(),
            usec.as_deref(),
            pid.as_deref(),
            std::process::id(),
        );
        match parsed.and_then(Notifier::new) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "systemd notifications are off");
                Notifier::default()
            }
        }
    }

    /// A notifier for `config`; opens an unbound datagram socket when there is
    /// somewhere to send to.
    pub fn new(config: NotifyConfig) -> Result<Notifier, NotifyError> {
        let Some(target) = config.target else {
            return Ok(Notifier::default());
        };
        Ok(Notifier {
            inner: Some(Arc::new(Connected {
                socket: UnixDatagram::unbound()?,
                target,
            })),
            watchdog: config.watchdog,
        })
    }

    /// True when running under a service manager that listens.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// How often to pet the watchdog, when it is enabled.
    pub fn pet_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    /// Sends `state`; `Ok(false)` when there is no service manager to tell.
    pub fn notify(&self, state: State, status: Option<&str>) -> Result<bool, NotifyError> {
        let Some(c) = &self.inner else {
            return Ok(false);
        };
        let msg = message(state, status);
        match &c.target {
            NotifyTarget::Path(path) => c.socket.send_to(msg.as_bytes(), path)?,
            NotifyTarget::Abstract(name) => send_abstract(&c.socket, name, msg.as_bytes())?,
        };
        Ok(true)
    }

    /// `READY=1`: startup is complete.
    pub fn ready(&self, status: &str) {
        self.log_failure(State::Ready, Some(status));
    }

    /// `STOPPING=1`: the bounded shutdown has begun.
    pub fn stopping(&self) {
        self.log_failure(State::Stopping, Some("flushing the store"));
    }

    fn log_failure(&self, state: State, status: Option<&str>) {
        if let Err(e) = self.notify(state, status) {
            tracing::warn!(?state, error = %e, "systemd notification failed");
        }
    }
}

#[cfg(target_os = "linux")]
fn send_abstract(socket: &UnixDatagram, name: &[u8], msg: &[u8]) -> Result<usize, NotifyError> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    Ok(socket.send_to_addr(msg, &addr)?)
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &[u8]) -> Result<usize, NotifyError> {
    Err(NotifyError::AbstractUnsupported)
}

/// Something whose answer shows the agent is not stuck.
pub trait Health {
    /// True when healthy; a probe that does not finish in time counts as stuck.
    fn check(&self) -> impl Future<Output = bool> + Send;
}

impl Health for crate::store::Store {
    /// The store's single writer thread answers a flush: every event passes
    /// through it, so if it is wedged (a hung SD card, a deadlock) nothing is
    /// being recorded and a restart is the cure. An idle flush does no I/O.
    fn check(&self) -> impl Future<Output = bool> + Send {
        let store = self.clone();
        async move {
            match store.flush().await {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "watchdog: the store is not healthy");
                    false
                }
            }
        }
    }
}

/// Pets the watchdog every half timeout for as long as `health` answers true
/// within that half; a probe that fails or hangs skips the pet, so systemd
/// restarts an agent that stays stuck for the whole timeout. Returns at once
/// when the watchdog is off; otherwise runs until dropped or aborted.
pub async fn keep_alive<H: Health>(notifier: Notifier, health: H) {
    let Some(every) = notifier.pet_interval() else {
        return;
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match tokio::time::timeout(every, health.check()).await {
            Ok(true) => match notifier.notify(State::Watchdog, None) {
                Ok(_) => crate::metrics::agent().watchdog_pet(),
                Err(e) => tracing::warn!(error = %e, "watchdog pet failed"),
            },
            Ok(false) => tracing::warn!("watchdog: unhealthy; not petting"),
            Err(_) => tracing::warn!(timeout = ?every, "watchdog: health probe hung; not petting"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn os(s: &str) -> OsString {
        OsString::from(s)
    }

    #[test]
    fn no_notify_socket_means_not_under_systemd() {
        let cfg = NotifyConfig::parse(None, None, None, 7).unwrap();
        assert_eq!(cfg, NotifyConfig::default());
        let empty = NotifyConfig::parse(Some(&os("")), Some("30000000"), None, 7).unwrap();
        assert_eq!(empty.target, None);
        let notifier = Notifier::new(empty).unwrap();
        assert!(!notifier.is_enabled());
        assert_eq!(notifier.pet_interval(), None);
        assert!(!notifier.notify(State::Ready, None).unwrap());
    }

    #[test]
    fn socket_paths_and_abstract_names_are_recognised() {
        let path = NotifyConfig::parse(Some(&os("/run/systemd/notify")), None, None, 1).unwrap();
        assert_eq!(
            path.target,
            Some(NotifyTarget::Path("/run/systemd/notify".into()))
        );
        let abs = NotifyConfig::parse(Some(&os("@/org/systemd/x")), None, None, 1).unwrap();
        assert_eq!(
            abs.target,
            Some(NotifyTarget::Abstract(b"/org/systemd/x".to_vec()))
        );
    }

    #[test]
    fn relative_or_bare_at_socket_is_refused() {
        for bad in ["notify", "@", "./sock"] {
            let err = NotifyConfig::parse(Some(&os(bad)), None, None, 1).unwrap_err();
            assert!(matches!(err, NotifyError::InvalidSocket(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn watchdog_is_petted_at_half_its_timeout() {
        let cfg = NotifyConfig::parse(Some(&os("/s")), Some("30000000"), None, 1).unwrap();
        assert_eq!(cfg.watchdog, Some(Duration::from_secs(30)));
        assert_eq!(cfg.pet_interval(), Some(Duration::from_secs(15)));
    }

    #[test]
    fn watchdog_for_another_pid_is_ignored() {
        let theirs = NotifyConfig::parse(Some(&os("/s")), Some("30000000"), Some("99"), 1).unwrap();
        assert_eq!(theirs.watchdog, None);
        let ours = NotifyConfig::parse(Some(&os("/s")), Some("30000000"), Some("1"), 1).unwrap();
        assert_eq!(ours.watchdog, Some(Duration::from_secs(30)));
    }

    #[test]
    fn zero_or_garbage_watchdog_usec_is_an_error() {
        for bad in ["0", "-5", "30s", "1e6"] {
            let err = NotifyConfig::parse(Some(&os("/s")), Some(bad), None, 1).unwrap_err();
            assert!(
                matches!(err, NotifyError::InvalidWatchdog(_)),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn status_text_cannot_inject_an_assignment() {
        assert_eq!(message(State::Stopping, None), "STOPPING=1");
        assert_eq!(
            message(State::Ready, Some("ok\nREADY=1")),
            "READY=1\nSTATUS=ok READY=1"
        );
    }

    fn listener() -> (tempfile::TempDir, UnixDatagram, NotifyConfig) {
        // A socket path must fit in 108 bytes; TMPDIR may be deep in a checkout.
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let cfg = NotifyConfig {
            target: Some(NotifyTarget::Path(path)),
            watchdog: Some(Duration::from_secs(10)),
        };
        (dir, rx, cfg)
    }

    fn recv(rx: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = rx.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn ready_and_stopping_reach_the_socket_as_datagrams() {
        let (_dir, rx, cfg) = listener();
        let n = Notifier::new(cfg).unwrap();
        assert!(n.is_enabled());
        n.ready("recording");
        assert_eq!(recv(&rx), "READY=1\nSTATUS=recording");
        n.stopping();
        assert_eq!(recv(&rx), "STOPPING=1\nSTATUS=flushing the store");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn abstract_socket_receives_notifications() {
        let name = format!("fleet-agent-test-{}", std::process::id());
        let addr = {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap()
        };
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let cfg = NotifyConfig::parse(Some(&os(&format!("@{name}"))), None, None, 1).unwrap();
        let n = Notifier::new(cfg).unwrap();
        assert!(n.notify(State::Watchdog, None).unwrap());
        assert_eq!(recv(&rx), "WATCHDOG=1");
    }

    #[test]
    fn a_missing_socket_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = NotifyConfig {
            target: Some(NotifyTarget::Path(dir.path().join("gone"))),
            watchdog: None,
        };
        let err = Notifier::new(cfg)
            .unwrap()
            .notify(State::Ready, None)
            .unwrap_err();
        assert!(matches!(err, NotifyError::Io(_)), "{err}");
    }

    /// Healthy until `stuck` turns true; then its probe never finishes.
    struct Switch(Arc<AtomicBool>);

    impl Health for Switch {
        fn check(&self) -> impl Future<Output = bool> + Send {
            let stuck = self.0.load(Ordering::SeqCst);
            async move {
                if stuck {
                    std::future::pending::<()>().await;
                }
                true
            }
        }
    }

    fn pending_datagrams(rx: &UnixDatagram) -> Vec<String> {
        rx.set_nonblocking(true).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok(n) = rx.recv(&mut buf) {
            out.push(String::from_utf8(buf[..n].to_vec()).unwrap());
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn watchdog_pets_while_healthy_and_stops_when_the_probe_hangs() {
        let (_dir, rx, cfg) = listener();
        let stuck = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(keep_alive(
            Notifier::new(cfg).unwrap(),
            Switch(stuck.clone()),
        ));
        // Pets at 0 s, 5 s, 10 s and 15 s for a 10 s watchdog.
        tokio::time::sleep(Duration::from_millis(15_500)).await;
        assert_eq!(pending_datagrams(&rx), vec!["WATCHDOG=1"; 4]);

        stuck.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(pending_datagrams(&rx).is_empty());
        assert!(!task.is_finished());
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alive_returns_at_once_without_a_watchdog() {
        let (_dir, rx, mut cfg) = listener();
        cfg.watchdog = None;
        let healthy = Switch(Arc::new(AtomicBool::new(false)));
        keep_alive(Notifier::new(cfg).unwrap(), healthy).await;
        assert!(pending_datagrams(&rx).is_empty());
    }
}
