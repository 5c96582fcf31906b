//! An ELM327 session over any byte stream: the init sequence, one command at a
//! time with a per-command timeout, resynchronisation after a lost prompt,
//! supported-PID discovery, and reconnection when the adapter comes back.
//!
//! The parsing is in [`super::reply`]; this layer only moves bytes and keeps time.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

use super::reply::{
    assemble, parse_reply, AdapterError, BusKind, EcuMessage, FrameError, Reply, ReplyFramer,
};

/// Older ECUs refuse mode 01 requests for more than this many PIDs.
pub const MAX_PIDS_PER_REQUEST: usize = 6;

#[derive(Debug, Clone)]
pub struct Elm327Config {
    /// Commands after `ATZ`, each expected to answer `OK`.
    pub setup: Vec<String>,
    /// Time for an ordinary command's reply.
    pub command_timeout: Duration,
    /// Time for `ATZ` and for the first OBD request, which may search protocols.
    pub slow_timeout: Duration,
    /// Quiet time that ends a resynchronisation after a lost prompt.
    pub resync_quiet: Duration,
}

impl Default for Elm327Config {
    fn default() -> Self {
        Self {
            // Echo off, no linefeeds, spaces on, headers on (to tell ECUs apart),
            // automatic protocol search.
            setup: ["ATE0", "ATL0", "ATS1", "ATH1", "ATSP0"]
                .map(String::from)
                .to_vec(),
            command_timeout: Duration::from_secs(2),
            slow_timeout: Duration::from_secs(10),
            resync_quiet: Duration::from_millis(300),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Elm327Error {
    /// The adapter went away (unplugged, port closed). Reconnect.
    #[error("ELM327 disconnected")]
    Disconnected,
    #[error("ELM327 I/O error: {0}")]
    Io(#[from] io::Error),
    /// No prompt in time, and none after interrupting either.
    #[error("no reply to {command:?} within {timeout:?}")]
    Timeout { command: String, timeout: Duration },
    #[error("{command:?}: {source}")]
    Adapter {
        command: String,
        source: AdapterError,
    },
    #[error("init command {command:?} answered {reply:?}")]
    Init { command: String, reply: String },
    #[error("{0}")]
    Frame(#[from] FrameError),
}

impl Elm327Error {
    /// The session can no longer be used; open the port again.
    pub fn needs_reconnect(&self) -> bool {
        matches!(
            self,
            Self::Disconnected | Self::Io(_) | Self::Timeout { .. }
        )
    }
}

/// A `01` request for up to [`MAX_PIDS_PER_REQUEST`] PIDs each.
pub fn mode01_requests(pids: &[u8]) -> Vec<String> {
    pids.chunks(MAX_PIDS_PER_REQUEST)
        .map(|chunk| {
            let mut s = String::from("01");
            for p in chunk {
                s.push_str(&format!("{p:02X}"));
            }
            s
        })
        .collect()
}

/// Supported mode 01 PIDs per ECU, from the 0100/0120/… bitmaps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    pub per_ecu: BTreeMap<Option<u32>, BTreeSet<u8>>,
}

impl Discovery {
    /// Every PID at least one ECU supports, bitmap PIDs left out.
    pub fn data_pids(&self) -> BTreeSet<u8> {
        self.per_ecu
            .values()
            .flatten()
            .copied()
            .filter(|p| p % 0x20 != 0)
            .collect()
    }

    pub fn supports(&self, pid: u8) -> bool {
        self.per_ecu.values().any(|s| s.contains(&pid))
    }

    /// Adds the bitmap answers to a `01<base>` request; returns whether any ECU
    /// announced the next range.
    fn add(&mut self, base: u8, messages: &[EcuMessage]) -> bool {
        let mut more = false;
        for m in messages {
            let [0x41, pid, a, b, c, d, ..] = m.payload[..] else {
                continue;
            };
            if pid != base {
                continue;
            }
            let set = self.per_ecu.entry(m.ecu).or_default();
            let bits = u32::from_be_bytes([a, b, c, d]);
            for i in 0..32u32 {
                if bits & (0x8000_0000 >> i) != 0 {
                    if let Ok(pid) = u8::try_from(u32::from(base) + i + 1) {
                        set.insert(pid);
                    }
                }
            }
            more |= base.checked_add(0x20).is_some_and(|n| set.contains(&n));
        }
        more
    }
}

/// One initialised adapter on one open port.
pub struct Elm327<T> {
    io: T,
    framer: ReplyFramer,
    config: Elm327Config,
    version: String,
    kind: BusKind,
    headers: bool,
    searched: bool,
    /// Answer signatures of commands that timed out, whose answers may still arrive.
    late: Vec<String>,
    /// Bare CRs of a resync that ended in silence: the adapter may still answer
    /// each with `?`, which must not stand for the next command's refusal.
    owed_questions: u32,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Elm327<T> {
    /// Resets the adapter and applies the setup commands.
    pub async fn init(io: T, config: Elm327Config) -> Result<Self, Elm327Error> {
        let mut s = Self {
            io,
            framer: ReplyFramer::new(),
            config,
            version: String::new(),
            kind: BusKind::Can11,
            headers: false,
            searched: false,
            late: Vec::new(),
            owed_questions: 0,
        };
        // A bare CR first: ends whatever a previous user left half typed.
        s.io.write_all(b"\r").await?;
        s.resync().await?;
        let slow = s.config.slow_timeout;
        let reset = s.raw_command("ATZ", slow).await?;
        s.version = reset
            .lines
            .iter()
            .find(|l| l.to_ascii_uppercase().contains("ELM"))
            .cloned()
            .unwrap_or_default();
        for cmd in s.config.setup.clone() {
            let reply = s.raw_command(&cmd, s.config.command_timeout).await?;
            if !reply.lines.iter().any(|l| l.eq_ignore_ascii_case("OK")) {
                return Err(Elm327Error::Init {
                    command: cmd,
                    reply: reply.lines.join(" | "),
                });
            }
            let c = cmd.to_ascii_uppercase();
            if c == "ATH1" {
                s.headers = true;
            } else if c == "ATH0" {
                s.headers = false;
            }
        }
        tracing::debug!(version = %s.version, "ELM327 initialised");
        Ok(s)
    }

    /// The adapter's identification from `ATZ`, such as `ELM327 v1.5`.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn bus_kind(&self) -> BusKind {
        self.kind
    }

    pub fn headers(&self) -> bool {
        self.headers
    }

    /// Sends one command and returns its cleaned reply; adapter errors (`NO DATA`…)
    /// come back as [`Elm327Error::Adapter`].
    pub async fn command(&mut self, cmd: &str) -> Result<Reply, Elm327Error> {
        let is_obd = !cmd.to_ascii_uppercase().starts_with("AT");
        let limit = if is_obd && !self.searched {
            self.config.slow_timeout
        } else {
            self.config.command_timeout
        };
        let reply = self.raw_command(cmd, limit).await?;
        if is_obd && !self.searched {
            self.searched = true;
            self.learn_protocol().await?;
        }
        Ok(reply)
    }

    /// Sends an OBD request and assembles the answer per ECU. Lines that do not
    /// assemble are returned beside the good messages.
    pub async fn query(
        &mut self,
        cmd: &str,
    ) -> Result<(Vec<EcuMessage>, Vec<FrameError>), Elm327Error> {
        let reply = self.command(cmd).await?;
        Ok(assemble(&reply, self.kind, self.headers))
    }

    /// Finds the supported mode 01 PIDs of every ECU that answers.
    pub async fn discover(&mut self) -> Result<Discovery, Elm327Error> {
        let mut found = Discovery::default();
        let mut base = 0x00u8;
        loop {
            let cmd = format!("01{base:02X}");
            let messages = match self.query(&cmd).await {
                Ok((m, _)) => m,
                // A range nobody supports may answer NO DATA instead of zeros.
                Err(Elm327Error::Adapter {
                    source: AdapterError::NoData,
                    ..
                }) if base > 0 => break,
                Err(e) => return Err(e),
            };
            if !found.add(base, &messages) {
                break;
            }
            match base.checked_add(0x20) {
                Some(next) => base = next,
                None => break,
            }
        }
        Ok(found)
    }

    async fn learn_protocol(&mut self) -> Result<(), Elm327Error> {
        let reply = self
            .raw_command("ATDPN", self.config.command_timeout)
            .await?;
        if let Some(kind) = reply
            .lines
            .first()
            .and_then(|l| BusKind::from_protocol_number(l))
        {
            self.kind = kind;
        }
        Ok(())
    }

    async fn raw_command(&mut self, cmd: &str, limit: Duration) -> Result<Reply, Elm327Error> {
        self.framer.clear();
        self.io.write_all(cmd.as_bytes()).await?;
        self.io.write_all(b"\r").await?;
        self.io.flush().await?;
        let deadline = Instant::now() + limit;
        let read = async {
            loop {
                let text = self.read_reply(deadline).await?;
                if text.trim() == "?" && self.owed_questions > 0 {
                    self.owed_questions -= 1;
                    tracing::debug!(command = cmd, "discarding the `?` of a resync CR");
                    continue;
                }
                if reply_belongs_to(cmd, &text, &self.late) {
                    // The adapter answers in order: a `?` still owed to a CR
                    // would have come before this.
                    self.owed_questions = 0;
                    return Ok(text);
                }
                // The answer to an earlier command that timed out, or the prompt of a
                // stray CR, arriving late: never let it stand for this command's answer.
                tracing::debug!(command = cmd, stale = %text, "discarding a reply that belongs to another command");
            }
        };
        let text = match read.await {
            Ok(text) => text,
            Err(Elm327Error::Timeout { .. }) => {
                tracing::warn!(
                    command = cmd,
                    ?limit,
                    "ELM327 prompt missing, resynchronising"
                );
                if let Some(sig) = answer_signature(cmd) {
                    // Its answer may still come; remember how to recognise it.
                    if self.late.len() == 4 {
                        self.late.remove(0);
                    }
                    self.late.push(sig);
                }
                self.resync().await?;
                return Err(Elm327Error::Timeout {
                    command: cmd.to_string(),
                    timeout: limit,
                });
            }
            Err(e) => return Err(e),
        };
        parse_reply(cmd, &text).map_err(|source| Elm327Error::Adapter {
            command: cmd.to_string(),
            source,
        })
    }

    async fn read_reply(&mut self, deadline: Instant) -> Result<String, Elm327Error> {
        let mut buf = [0u8; 256];
        loop {
            if let Some(r) = self.framer.next_reply() {
                if r.truncated {
                    tracing::warn!("ELM327 reply overflowed; garbage discarded");
                }
                return Ok(r.text);
            }
            let n = match timeout_at(deadline, self.io.read(&mut buf)).await {
                Ok(read) => read?,
                Err(_) => {
                    return Err(Elm327Error::Timeout {
                        command: String::new(),
                        timeout: Duration::ZERO,
                    })
                }
            };
            if n == 0 {
                return Err(Elm327Error::Disconnected);
            }
            self.framer.push(&buf[..n]);
        }
    }

    /// Interrupts whatever the adapter is doing (any byte stops it) and discards
    /// everything until the line has been quiet for a while after a prompt.
    async fn resync(&mut self) -> Result<(), Elm327Error> {
        self.io.write_all(b"\r").await?;
        self.io.flush().await?;
        let mut crs = 1u32;
        let quiet = self.config.resync_quiet;
        let give_up = Instant::now() + self.config.command_timeout;
        // Some adapters ignore a bare CR when idle (others repeat the last
        // command), so silence right after it also means the line is in sync.
        let mut seen_prompt = false;
        let mut seen_bytes = false;
        let mut buf = [0u8; 256];
        loop {
            let until = (Instant::now() + quiet).min(give_up);
            match timeout_at(until, self.io.read(&mut buf)).await {
                Ok(Ok(0)) => return Err(Elm327Error::Disconnected),
                Ok(Ok(n)) => {
                    // An echoed CR alone is not an answer.
                    seen_bytes |= buf[..n].iter().any(|b| !b.is_ascii_whitespace());
                    seen_prompt |= buf[..n].contains(&super::reply::PROMPT);
                }
                Ok(Err(e)) => return Err(e.into()),
                Err(_) if seen_prompt || !seen_bytes => break,
                Err(_) if Instant::now() >= give_up => {
                    return Err(Elm327Error::Timeout {
                        command: "(resync)".into(),
                        timeout: self.config.command_timeout,
                    })
                }
                Err(_) => {
                    self.io.write_all(b"\r").await?;
                    self.io.flush().await?;
                    crs += 1;
                }
            }
        }
        self.framer.clear();
        // After a prompt and a quiet spell everything the CRs caused was read; after
        // silence alone, an adapter slow to wake may still answer them.
        self.owed_questions = if seen_prompt { 0 } else { crs };
        Ok(())
    }
}

/// What an OBD answer to `cmd` starts with once spaces are gone: the mode plus 0x40,
/// then the PID for modes that echo it (`010C` -> `410C`).
fn answer_signature(cmd: &str) -> Option<String> {
    let cmd = cmd.trim().to_ascii_uppercase();
    if cmd.starts_with("AT") {
        return None;
    }
    let hex: String = cmd.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    let mode = u8::from_str_radix(hex.get(0..2)?, 16).ok()?;
    let answer = format!("{:02X}", mode.wrapping_add(0x40));
    Some(match (mode, hex.get(2..4)) {
        (0x01 | 0x02 | 0x05 | 0x06 | 0x08 | 0x09, Some(pid)) => format!("{answer}{pid}"),
        _ => answer,
    })
}

/// Whether `text` can be the answer to `cmd`, given the answers still owed to
/// commands that timed out. A late answer to one of those, the reset banner, or an
/// empty prompt is never taken for this command's answer; anything else (garbled
/// lines, adapter errors, `?` for a command the adapter refuses) is, so that it
/// gets reported. A `?` owed to a resync CR is discarded before this is asked.
fn reply_belongs_to(cmd: &str, text: &str, late: &[String]) -> bool {
    let flat: String = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    let upper = cmd.trim().to_ascii_uppercase();
    if let Some(at) = upper.strip_prefix("AT") {
        let banner = flat.contains("ELM");
        return match at {
            "Z" | "WS" | "I" | "@1" => banner,
            _ => !flat.is_empty() && !banner,
        };
    }
    let Some(own) = answer_signature(cmd) else {
        return true;
    };
    if flat.contains(&own) {
        return true;
    }
    !flat.is_empty() && !flat.contains("ELM") && !late.iter().any(|sig| flat.contains(sig.as_str()))
}

/// Opens the port; called again after the adapter disappears.
pub trait Connector: Send {
    type Io: AsyncRead + AsyncWrite + Unpin + Send;
    fn connect(&mut self) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

/// Waits between reconnect attempts: doubling from `min` up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct ReconnectBackoff {
    pub min: Duration,
    pub max: Duration,
}

impl Default for ReconnectBackoff {
    fn default() -> Self {
        Self {
            min: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl ReconnectBackoff {
    /// The wait before attempt `n` (0-based) after a failure.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.min
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max)
    }
}

/// An adapter that may be unplugged and plugged back: queries reconnect, re-run
/// the init sequence and rediscover the vehicle's PIDs as needed.
pub struct Reconnecting<C: Connector> {
    connector: C,
    config: Elm327Config,
    backoff: ReconnectBackoff,
    session: Option<Elm327<C::Io>>,
    discovery: Option<Discovery>,
    failures: u32,
    reconnects: u64,
}

impl<C: Connector> Reconnecting<C> {
    pub fn new(connector: C, config: Elm327Config, backoff: ReconnectBackoff) -> Self {
        Self {
            connector,
            config,
            backoff,
            session: None,
            discovery: None,
            failures: 0,
            reconnects: 0,
        }
    }

    /// Times a session was (re)established.
    pub fn connects(&self) -> u64 {
        self.reconnects
    }

    /// The PIDs found on the current connection.
    pub fn discovery(&self) -> Option<&Discovery> {
        self.discovery.as_ref()
    }

    /// Connects (retrying with backoff until it works) and discovers PIDs.
    pub async fn ensure_connected(&mut self) -> Result<&mut Elm327<C::Io>, Elm327Error> {
        while self.session.is_none() {
            if self.failures > 0 {
                tokio::time::sleep(self.backoff.delay(self.failures - 1)).await;
            }
            match self.try_connect().await {
                Ok(()) => self.failures = 0,
                Err(e) => {
                    self.failures = self.failures.saturating_add(1);
                    tracing::warn!(attempt = self.failures, error = %e, "ELM327 not available");
                    if !e.needs_reconnect() && !matches!(e, Elm327Error::Init { .. }) {
                        return Err(e);
                    }
                }
            }
        }
        self.session.as_mut().ok_or(Elm327Error::Disconnected)
    }

    async fn try_connect(&mut self) -> Result<(), Elm327Error> {
        let io = self.connector.connect().await?;
        let mut session = Elm327::init(io, self.config.clone()).await?;
        let discovery = match session.discover().await {
            Ok(d) => Some(d),
            // An adapter with the ignition off answers nothing; still connected.
            Err(Elm327Error::Adapter { source, .. }) if source.is_transient() => None,
            Err(e) => return Err(e),
        };
        self.discovery = discovery;
        self.session = Some(session);
        self.reconnects += 1;
        Ok(())
    }

    /// One OBD request; a lost adapter is dropped so the next call reconnects.
    pub async fn query(
        &mut self,
        cmd: &str,
    ) -> Result<(Vec<EcuMessage>, Vec<FrameError>), Elm327Error> {
        let result = self.ensure_connected().await?.query(cmd).await;
        if let Err(e) = &result {
            if e.needs_reconnect() {
                tracing::warn!(command = cmd, error = %e, "ELM327 lost; will reconnect");
                self.session = None;
                self.discovery = None;
                self.failures = 1;
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_answer_or_a_stray_prompt_is_not_taken_for_the_next_command() {
        let late = vec![answer_signature("010C").unwrap()];
        assert!(!reply_belongs_to("010D", "7E8 04 41 0C 00 00", &late));
        // A refusal is the command's own answer (a stray one is caught earlier).
        assert!(reply_belongs_to("010D", "?", &late));
        assert!(!reply_belongs_to("010D", "", &late));
        assert!(reply_belongs_to("010D", "7E8 03 41 0D 37", &late));
        assert!(reply_belongs_to("010D", "NO DATA", &late));
        // Garbled lines are this command's, so that they are reported.
        assert!(reply_belongs_to("010C", "7E8 04 4#\u{7} 0C 1A", &[]));
    }

    #[test]
    fn setup_commands_never_take_the_reset_banner_and_reset_needs_it() {
        assert!(!reply_belongs_to("ATE0", "ATZ ELM327 v1.5", &[]));
        assert!(!reply_belongs_to("ATE0", "", &[]));
        assert!(reply_belongs_to("ATE0", "OK", &[]));
        assert!(!reply_belongs_to("ATZ", "", &[]));
        assert!(reply_belongs_to("ATZ", "ELM327 v1.5", &[]));
    }
}
