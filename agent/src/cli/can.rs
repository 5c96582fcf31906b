//! `fleet-agent can record|play`: a live CAN bus to a candump `-l` log and back,
//! the way `candump -l` and `canplayer` do, with the agent's own SocketCAN code.

use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct CanArgs {
    #[command(subcommand)]
    command: CanCommand,
}

#[derive(Debug, Subcommand)]
enum CanCommand {
    /// Record every frame on an interface, error frames included, as a candump
    /// `-l` log. Stops on Ctrl-C / SIGTERM, or after --count frames or --duration.
    Record {
        #[arg(long, default_value = "can0")]
        interface: String,
        /// The log to write (replaced if it exists).
        file: PathBuf,
        /// Stop after this many frames (data and error frames).
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long, value_name = "SECONDS")]
        duration: Option<f64>,
    },
    /// Play a candump `-l` log onto an interface, paced by its timestamps like
    /// `canplayer`. Frames go to --interface whatever interface the log names.
    Play {
        /// The log to play.
        file: PathBuf,
        #[arg(long, default_value = "vcan0")]
        interface: String,
        /// 1 plays at the recorded pace, N times faster for N, 0 as fast as the
        /// bus takes frames.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
    },
}

pub async fn run(args: CanArgs) -> anyhow::Result<()> {
    match args.command {
        CanCommand::Record {
            interface,
            file,
            count,
            duration,
        } => {
            let limit = Limit::new(count, duration)?;
            imp::record(&interface, &file, limit).await
        }
        CanCommand::Play {
            file,
            interface,
            speed,
        } => {
            let pace = fleet_hal::candump::Pace::from_speed(speed).map_err(anyhow::Error::msg)?;
            imp::play(&file, &interface, pace).await
        }
    }
}

/// When `can record` stops by itself.
// Without SocketCAN only the argument checks use these.
#[cfg_attr(not(all(feature = "socketcan", target_os = "linux")), allow(dead_code))]
#[derive(Debug, Clone, Copy)]
struct Limit {
    count: Option<u64>,
    duration: Option<std::time::Duration>,
}

impl Limit {
    fn new(count: Option<u64>, seconds: Option<f64>) -> anyhow::Result<Self> {
        let duration = match seconds {
            None => None,
            Some(s) if s.is_finite() && s > 0.0 => Some(std::time::Duration::from_secs_f64(s)),
            Some(s) => anyhow::bail!("--duration must be a positive number of seconds, got {s}"),
        };
        if count == Some(0) {
            anyhow::bail!("--count must be at least 1");
        }
        Ok(Self { count, duration })
    }
}

/// One line of a log to play.
#[cfg_attr(not(all(feature = "socketcan", target_os = "linux")), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq)]
enum PlayItem {
    Frame(fleet_hal::CanFrame),
    Error {
        class: u32,
        data: [u8; 8],
        timestamp_us: u64,
    },
}

#[cfg_attr(not(all(feature = "socketcan", target_os = "linux")), allow(dead_code))]
impl PlayItem {
    fn timestamp_us(&self) -> u64 {
        match self {
            PlayItem::Frame(f) => f.timestamp_us,
            PlayItem::Error { timestamp_us, .. } => *timestamp_us,
        }
    }
}

/// Parse a log line: `Ok(None)` for blank lines and comments.
#[cfg_attr(not(all(feature = "socketcan", target_os = "linux")), allow(dead_code))]
fn parse_play_line(line: &str) -> Result<Option<PlayItem>, fleet_hal::candump::CandumpError> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    #[cfg(all(feature = "socketcan", target_os = "linux"))]
    if let Some(e) = fleet_hal::socketcan::ErrorFrame::parse_line(line) {
        return Ok(Some(PlayItem::Error {
            class: e.class,
            data: e.data,
            timestamp_us: e.timestamp_us,
        }));
    }
    fleet_hal::candump::parse_line(line).map(|l| Some(PlayItem::Frame(l.frame)))
}

fn open_log(path: &Path) -> anyhow::Result<std::io::BufReader<std::fs::File>> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(std::io::BufReader::with_capacity(64 * 1024, f))
}

#[cfg(all(feature = "socketcan", target_os = "linux"))]
mod imp {
    use super::{open_log, parse_play_line, Limit, PlayItem};
    use anyhow::Context;
    use fleet_hal::candump::{format_line, Pace};
    use fleet_hal::socketcan::{ErrorFrame, RawFrame, SocketCanSink, SocketCanSource};
    use std::io::{BufRead, Write};
    use std::path::Path;
    use std::time::Duration;
    use tokio::signal::unix::{signal, SignalKind};

    pub async fn record(interface: &str, path: &Path, limit: Limit) -> anyhow::Result<()> {
        let mut source = SocketCanSource::open(interface)?;
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        eprintln!("recording {interface} to {}", path.display());
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let deadline = limit.duration.map(|d| tokio::time::Instant::now() + d);
        // What a power cut can cost: the frames since the last flush.
        let mut flush_tick = tokio::time::interval(Duration::from_secs(1));
        let mut line = String::with_capacity(64);
        let mut written = 0u64;
        let reason = loop {
            if limit.count.is_some_and(|n| written >= n) {
                break "count reached";
            }
            let until_deadline = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                raw = source.recv_raw() => {
                    line.clear();
                    match raw? {
                        RawFrame::Data(f) => format_line(interface, &f, &mut line),
                        RawFrame::Error(e) => e.format_line(interface, &mut line),
                    }
                    line.push('\n');
                    out.write_all(line.as_bytes())?;
                    written += 1;
                }
                _ = flush_tick.tick() => out.flush()?,
                _ = until_deadline => break "duration reached",
                _ = sigint.recv() => break "interrupted",
                _ = sigterm.recv() => break "terminated",
            }
        };
        out.flush()?;
        out.get_ref().sync_all()?;
        let s = source.stats();
        eprintln!(
            "recorded {written} frames from {interface} to {} ({reason}): {} data, {} error frames, {} bus-off, {} overflows",
            path.display(),
            s.frames,
            s.error_frames,
            s.bus_off,
            s.overflows
        );
        Ok(())
    }

    pub async fn play(path: &Path, interface: &str, pace: Pace) -> anyhow::Result<()> {
        let reader = open_log(path)?;
        let sink = SocketCanSink::open(interface)?;
        let started = tokio::time::Instant::now();
        let mut first_ts: Option<u64> = None;
        let (mut frames, mut errors, mut bad) = (0u64, 0u64, 0u64);
        for (n, line) in reader.lines().enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            let item = match parse_play_line(&line) {
                Ok(Some(item)) => item,
                Ok(None) => continue,
                Err(e) => {
                    bad += 1;
                    tracing::warn!(line = n + 1, "skipping log line: {e}: {line:?}");
                    continue;
                }
            };
            let ts = item.timestamp_us();
            let first = *first_ts.get_or_insert(ts);
            // A log whose clock steps back plays the earlier frame at once; frames
            // go out up to PACE_SLACK early rather than a timer each.
            pace.wait(started, ts.saturating_sub(first)).await;
            match item {
                PlayItem::Frame(f) => {
                    sink.send(&f).await?;
                    frames += 1;
                }
                PlayItem::Error {
                    class,
                    data,
                    timestamp_us,
                } => {
                    sink.send_error(&ErrorFrame {
                        class,
                        data,
                        timestamp_us,
                    })
                    .await?;
                    errors += 1;
                }
            }
        }
        eprintln!(
            "played {frames} frames and {errors} error frames from {} onto {interface} in {:.2} s; {bad} bad lines skipped",
            path.display(),
            started.elapsed().as_secs_f64()
        );
        if frames + errors == 0 {
            anyhow::bail!("{} holds no frames to play", path.display());
        }
        Ok(())
    }
}

#[cfg(not(all(feature = "socketcan", target_os = "linux")))]
mod imp {
    use super::Limit;
    use fleet_hal::candump::Pace;
    use std::path::Path;

    const MISSING: &str =
        "this fleet-agent was built without SocketCAN (Linux and the `socketcan` feature)";

    pub async fn record(_: &str, _: &Path, _: Limit) -> anyhow::Result<()> {
        anyhow::bail!(MISSING)
    }

    pub async fn play(path: &Path, _: &str, _: Pace) -> anyhow::Result<()> {
        // Still check the log, so a typo is reported before the missing feature.
        super::open_log(path)?;
        anyhow::bail!(MISSING)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn play_lines_are_frames_comments_or_errors() {
        assert_eq!(parse_play_line("  "), Ok(None));
        assert_eq!(parse_play_line("# recorded on the yard truck"), Ok(None));
        let Ok(Some(PlayItem::Frame(f))) =
            parse_play_line("(1635188455.020850) can0 18F00E00#821639C4FFFFFFFF")
        else {
            panic!("data frame expected")
        };
        assert_eq!((f.id, f.extended), (0x18F0_0E00, true));
        assert!(parse_play_line("(1.000000) can0 800#00").is_err());
    }

    #[cfg(all(feature = "socketcan", target_os = "linux"))]
    #[test]
    fn play_lines_with_the_error_flag_are_error_frames() {
        let item = parse_play_line("(12.000001) vcan0 20000040#0000000000000000");
        assert_eq!(
            item,
            Ok(Some(PlayItem::Error {
                class: 0x40,
                data: [0; 8],
                timestamp_us: 12_000_001
            }))
        );
    }

    #[test]
    fn record_limits_reject_nonsense() {
        assert!(Limit::new(Some(0), None).is_err());
        assert!(Limit::new(None, Some(-1.0)).is_err());
        assert!(Limit::new(None, Some(f64::NAN)).is_err());
        let l = Limit::new(Some(10), Some(2.5)).expect("valid");
        assert_eq!(l.duration, Some(std::time::Duration::from_millis(2_500)));
    }
}
