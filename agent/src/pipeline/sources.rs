//! Source tasks: each configured input runs as its own task and feeds one bounded
//! channel of [`Stamped`] inputs. A live source that fails (unplugged, gpsd
//! restarted, a serial error) is reopened with backoff and logged once per outage;
//! a replay that reaches its end reports [`SourceStatus::Closed`].

use crate::clock::SharedClock;
use crate::decode::obd::{Dtc, Reading};
use fleet_hal::candump::{CandumpReplay, Pace, ReplayProgress};
use fleet_hal::gnss::NmeaReplay;
use fleet_hal::{CanError, CanFrame, CanSource, GnssFix, NmeaError, NmeaSource};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

/// One input from a source.
#[derive(Debug)]
pub enum Input {
    Can(CanFrame),
    Nmea(String),
    Fix(GnssFix),
    Ignition(bool),
    ObdReadings(Vec<Reading>),
    /// The complete list of codes of one mode (0x03 stored, 0x07 pending) an ECU
    /// reports.
    ObdDtcs {
        ecu: u32,
        mode: u8,
        codes: Vec<Dtc>,
    },
    Status(SourceStatus),
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceStatus {
    Up,
    /// The source failed and is being reopened.
    Down(String),
    /// A replay has reached its end; nothing more will come from it.
    Closed,
    Progress(ReplayProgress),
}

/// An input with its source and its time on the pipeline's monotonic clock.
#[derive(Debug)]
pub struct Stamped {
    pub source: usize,
    pub mono_ms: u64,
    pub input: Input,
}

/// What a source task needs: where to send, who it is, the clock.
#[derive(Clone)]
pub struct SourceCtx {
    pub index: usize,
    pub name: &'static str,
    pub tx: mpsc::Sender<Stamped>,
    pub clock: SharedClock,
}

/// Nothing listens any more: the pipeline is stopping.
pub struct Stopped;

impl SourceCtx {
    pub async fn send(&self, mono_ms: u64, input: Input) -> Result<(), Stopped> {
        self.tx
            .send(Stamped {
                source: self.index,
                mono_ms,
                input,
            })
            .await
            .map_err(|_| Stopped)
    }

    /// An input received now.
    pub async fn send_now(&self, input: Input) -> Result<(), Stopped> {
        self.send(self.clock.mono_ms(), input).await
    }
}

/// Reopen delays: doubling from 500 ms to 30 s.
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Tracks one source's outages so each is logged once, with backoff between tries.
pub struct Outage {
    name: &'static str,
    failures: u32,
    since_ms: Option<u64>,
}

impl Outage {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            failures: 0,
            since_ms: None,
        }
    }

    pub fn delay(&self) -> Duration {
        BACKOFF_MIN
            .saturating_mul(1u32 << self.failures.min(16))
            .min(BACKOFF_MAX)
    }

    /// The source failed: report it (once per outage) and wait before reopening.
    pub async fn failed(&mut self, ctx: &SourceCtx, error: &str) -> Result<(), Stopped> {
        if self.since_ms.is_none() {
            tracing::warn!(
                source = self.name,
                error,
                "source failed; reopening with backoff"
            );
            self.since_ms = Some(ctx.clock.mono_ms());
            ctx.send_now(Input::Status(SourceStatus::Down(error.to_owned())))
                .await?;
        } else {
            tracing::debug!(
                source = self.name,
                error,
                attempt = self.failures,
                "still failing"
            );
        }
        let wait = self.delay();
        self.failures = self.failures.saturating_add(1);
        tokio::time::sleep(wait).await;
        Ok(())
    }

    pub fn is_down(&self) -> bool {
        self.since_ms.is_some()
    }

    /// The source works (again).
    pub async fn up(&mut self, ctx: &SourceCtx) -> Result<(), Stopped> {
        self.failures = 0;
        match self.since_ms.take() {
            Some(since) => {
                let down_s = ctx.clock.mono_ms().saturating_sub(since) / 1000;
                tracing::info!(source = self.name, down_s, "source back");
            }
            None => tracing::info!(source = self.name, "source started"),
        }
        ctx.send_now(Input::Status(SourceStatus::Up)).await
    }
}

/// Maps a replay's log time onto the pipeline's monotonic clock: the first item
/// lands at the time the replay started, later ones keep the log's spacing
/// (unscaled, so the rules see the drive as it happened at any replay speed).
struct LogTime {
    start_mono_ms: u64,
    first_us: Option<u64>,
}

impl LogTime {
    fn mono_ms(&mut self, log_us: u64) -> u64 {
        let first = *self.first_us.get_or_insert(log_us);
        self.start_mono_ms + log_us.saturating_sub(first) / 1000
    }
}

/// How often a replay reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// A log played back: the next item with its log time, or `None` at the end.
trait Replay: Send {
    fn next(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Option<(u64, Input)>, String>> + Send;
    fn progress(&self) -> ReplayProgress;
}

impl Replay for CandumpReplay {
    async fn next(&mut self) -> Result<Option<(u64, Input)>, String> {
        match self.recv().await {
            Ok(frame) => Ok(Some((frame.timestamp_us, Input::Can(frame)))),
            Err(CanError::Closed) => {
                if let Some((line, e)) = self.last_bad_line() {
                    tracing::warn!(bad_lines = self.progress().bad_lines, last_line = line, error = %e, "malformed candump lines skipped");
                }
                Ok(None)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn progress(&self) -> ReplayProgress {
        CandumpReplay::progress(self)
    }
}

impl Replay for NmeaReplay {
    async fn next(&mut self) -> Result<Option<(u64, Input)>, String> {
        match self.next_line().await {
            Ok((line, t_us)) => Ok(Some((t_us, Input::Nmea(line)))),
            Err(NmeaError::Closed) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    fn progress(&self) -> ReplayProgress {
        NmeaReplay::progress(self)
    }
}

/// Plays `opened` to its end: items keep the log's spacing on the monotonic
/// clock, progress goes out every few seconds, and the end is reported.
async fn play<R: Replay>(
    ctx: SourceCtx,
    file: PathBuf,
    opened: std::io::Result<R>,
) -> Result<(), Stopped> {
    let mut replay = match opened {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(source = ctx.name, file = %file.display(), error = %e, "cannot open the log to replay");
            ctx.send_now(Input::Status(SourceStatus::Down(e.to_string())))
                .await?;
            return ctx.send_now(Input::Status(SourceStatus::Closed)).await;
        }
    };
    ctx.send_now(Input::Status(SourceStatus::Up)).await?;
    let mut time = LogTime {
        start_mono_ms: ctx.clock.mono_ms(),
        first_us: None,
    };
    let mut reported = tokio::time::Instant::now();
    loop {
        match replay.next().await {
            Ok(Some((log_us, input))) => ctx.send(time.mono_ms(log_us), input).await?,
            Ok(None) => break,
            Err(e) => {
                tracing::error!(source = ctx.name, file = %file.display(), error = %e, "log unreadable; the replay ends here");
                break;
            }
        }
        if reported.elapsed() >= PROGRESS_EVERY {
            reported = tokio::time::Instant::now();
            ctx.send_now(Input::Status(SourceStatus::Progress(replay.progress())))
                .await?;
        }
    }
    ctx.send_now(Input::Status(SourceStatus::Progress(replay.progress())))
        .await?;
    ctx.send_now(Input::Status(SourceStatus::Closed)).await
}

/// Replays a candump log as the CAN bus.
pub async fn candump_replay(ctx: SourceCtx, file: PathBuf, pace: Pace) -> Result<(), Stopped> {
    let opened = CandumpReplay::open(&file, pace).await;
    play(ctx, file, opened).await
}

/// Replays an NMEA log as the GNSS receiver.
pub async fn nmea_replay(ctx: SourceCtx, file: PathBuf, pace: Pace) -> Result<(), Stopped> {
    let opened = NmeaReplay::open(&file, pace).await;
    play(ctx, file, opened).await
}

/// NMEA from a receiver on a serial port, reopened when it goes away.
#[cfg(feature = "serial")]
pub async fn gnss_serial(ctx: SourceCtx, path: String, baud: u32) -> Result<(), Stopped> {
    use fleet_hal::gnss::SerialNmea;
    let mut outage = Outage::new(ctx.name);
    loop {
        let mut port = match SerialNmea::open(&path, baud) {
            Ok(p) => p,
            Err(e) => {
                outage.failed(&ctx, &format!("{path}: {e}")).await?;
                continue;
            }
        };
        outage.up(&ctx).await?;
        let error = loop {
            match port.next_line().await {
                Ok((line, _)) => ctx.send_now(Input::Nmea(line)).await?,
                Err(e) => break e,
            }
        };
        outage.failed(&ctx, &format!("{path}: {error}")).await?;
    }
}

/// Fixes from gpsd, reconnecting when it restarts.
pub async fn gpsd(ctx: SourceCtx, addr: String) -> Result<(), Stopped> {
    use fleet_hal::gnss::GpsdClient;
    let mut outage = Outage::new(ctx.name);
    loop {
        let mut client = match GpsdClient::connect(&addr).await {
            Ok(c) => c,
            Err(e) => {
                outage.failed(&ctx, &format!("gpsd at {addr}: {e}")).await?;
                continue;
            }
        };
        outage.up(&ctx).await?;
        let error = loop {
            match client.next_fix().await {
                Ok(fix) => ctx.send_now(Input::Fix(fix)).await?,
                Err(e) => break e,
            }
        };
        let stats = client.stats();
        if stats.bad_lines > 0 {
            tracing::debug!(
                source = ctx.name,
                bad_lines = stats.bad_lines,
                "gpsd lines that were not reports"
            );
        }
        outage
            .failed(&ctx, &format!("gpsd at {addr}: {error}"))
            .await?;
    }
}

/// The ignition wire: its level at start, then every debounced edge.
pub async fn ignition<I: fleet_hal::IgnitionInput>(
    ctx: SourceCtx,
    mut input: I,
) -> Result<(), Stopped> {
    let mut outage = Outage::new(ctx.name);
    outage.up(&ctx).await?;
    ctx.send_now(Input::Ignition(input.is_on())).await?;
    loop {
        match input.changed().await {
            Ok((on, _)) => {
                if outage.is_down() {
                    outage.up(&ctx).await?;
                }
                ctx.send_now(Input::Ignition(on)).await?;
            }
            Err(e) => outage.failed(&ctx, &e.to_string()).await?,
        }
    }
}

/// A recording of a live bus: every frame goes to a candump `-l` file too.
pub struct Recorder {
    writer: fleet_hal::candump::CandumpWriter<std::fs::File>,
    path: PathBuf,
    flushed: tokio::time::Instant,
}

/// A recording is flushed this often: a power cut loses at most this much of it.
const RECORD_FLUSH: Duration = Duration::from_secs(1);

impl Recorder {
    pub fn create(path: &std::path::Path, interface: &str) -> std::io::Result<Self> {
        Ok(Self {
            writer: fleet_hal::candump::CandumpWriter::create(path, interface)?,
            path: path.to_owned(),
            flushed: tokio::time::Instant::now(),
        })
    }

    /// Writes are buffered, so this rarely touches the disk; a recording that
    /// fails stops recording, never the source.
    fn record(&mut self, frame: &CanFrame) -> bool {
        let mut r = self.writer.write(frame);
        if r.is_ok() && self.flushed.elapsed() >= RECORD_FLUSH {
            self.flushed = tokio::time::Instant::now();
            r = self.writer.flush();
        }
        if let Err(e) = &r {
            tracing::error!(file = %self.path.display(), error = %e, "cannot record the bus; recording stops");
        }
        r.is_ok()
    }
}

/// Any CAN source that reopens itself (SocketCAN): frames stamped on arrival,
/// recorded when asked.
pub async fn can_live<S: CanSource>(
    ctx: SourceCtx,
    mut source: S,
    mut recorder: Option<Recorder>,
) -> Result<(), Stopped> {
    let mut outage = Outage::new(ctx.name);
    outage.up(&ctx).await?;
    loop {
        match source.recv().await {
            Ok(frame) => {
                if outage.is_down() {
                    outage.up(&ctx).await?;
                }
                if recorder.as_mut().is_some_and(|r| !r.record(&frame)) {
                    recorder = None;
                }
                ctx.send_now(Input::Can(frame)).await?
            }
            Err(CanError::Closed) => {
                if let Some(mut r) = recorder.take() {
                    let _ = r.writer.flush();
                }
                return ctx.send_now(Input::Status(SourceStatus::Closed)).await;
            }
            Err(e) => outage.failed(&ctx, &e.to_string()).await?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_time_keeps_the_log_spacing_from_the_start_of_the_replay() {
        let mut t = LogTime {
            start_mono_ms: 5_000,
            first_us: None,
        };
        assert_eq!(t.mono_ms(1_635_188_455_020_850), 5_000);
        assert_eq!(t.mono_ms(1_635_188_465_020_850), 15_000);
        // A log whose time steps back stays at the start, never before it.
        assert_eq!(t.mono_ms(1_635_188_400_000_000), 5_000);
    }

    /// The first source of a pipeline on a simulated clock, and what it sends.
    fn sim_ctx(name: &'static str) -> (SourceCtx, mpsc::Receiver<Stamped>) {
        let (tx, rx) = mpsc::channel(16);
        let clock: SharedClock = std::sync::Arc::new(crate::clock::SimClock::new(
            fleet_protocol::BootId::random(),
            0,
            0,
            1.0,
        ));
        let ctx = SourceCtx {
            index: 0,
            name,
            tx,
            clock,
        };
        (ctx, rx)
    }

    struct Script(std::vec::IntoIter<Result<CanFrame, CanError>>);

    impl CanSource for Script {
        async fn recv(&mut self) -> Result<CanFrame, CanError> {
            self.0.next().unwrap_or(Err(CanError::Closed))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_live_bus_is_recorded_and_its_errors_reported_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rec.log");
        let frame = |i: u8| CanFrame::extended8(0x0CF0_0400, [i; 8], 1_000_000 + u64::from(i));
        let script = Script(
            vec![
                Ok(frame(1)),
                Err(CanError::BusOff),
                Err(CanError::BusOff),
                Ok(frame(2)),
            ]
            .into_iter(),
        );
        let (ctx, mut rx) = sim_ctx("can");
        let recorder = Recorder::create(&path, "can0").expect("create");
        can_live(ctx, script, Some(recorder)).await.ok();
        let mut seen = Vec::new();
        while let Ok(s) = rx.try_recv() {
            seen.push(s.input);
        }
        let kinds: Vec<&str> = seen
            .iter()
            .map(|i| match i {
                Input::Can(_) => "frame",
                Input::Status(SourceStatus::Up) => "up",
                Input::Status(SourceStatus::Down(_)) => "down",
                Input::Status(SourceStatus::Closed) => "closed",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["up", "frame", "down", "up", "frame", "closed"]);
        let text = std::fs::read_to_string(&path).expect("recording");
        assert_eq!(
            text,
            "(1.000001) can0 0CF00400#0101010101010101\n(1.000002) can0 0CF00400#0202020202020202\n"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_ignition_wire_reports_its_level_then_each_debounced_edge() {
        use fleet_hal::ignition::{DebouncedIgnition, SimPin};
        let pin = SimPin::new(true);
        let input =
            DebouncedIgnition::new(pin.clone(), false, Duration::from_millis(200)).expect("pin");
        let (ctx, mut rx) = sim_ctx("ignition");
        let task = tokio::spawn(ignition(ctx, input));
        tokio::time::sleep(Duration::from_secs(1)).await;
        // A 50 ms dip while cranking is not an edge; key off is.
        pin.set_high(false);
        tokio::time::sleep(Duration::from_millis(50)).await;
        pin.set_high(true);
        tokio::time::sleep(Duration::from_secs(1)).await;
        pin.set_high(false);
        tokio::time::sleep(Duration::from_secs(1)).await;
        task.abort();
        let mut levels = Vec::new();
        while let Ok(s) = rx.try_recv() {
            if let Input::Ignition(on) = s.input {
                levels.push(on);
            }
        }
        assert_eq!(levels, [true, false]);
    }

    #[test]
    fn reopening_backs_off_from_half_a_second_to_thirty() {
        let mut o = Outage::new("x");
        assert_eq!(o.delay(), BACKOFF_MIN);
        o.failures = 3;
        assert_eq!(o.delay(), Duration::from_secs(4));
        o.failures = 40;
        assert_eq!(o.delay(), BACKOFF_MAX);
    }
}
