//! candump `-l` log files: `(1635188455.020850) can0 18F00E00#821639C4FFFFFFFF`.
//!
//! The line format (parse and write), a writer for recording a bus, and
//! [`CandumpReplay`], a [`CanSource`] that plays a log back at real time, N times
//! faster, or as fast as the reader takes frames.

use crate::can::{CanError, CanFrame, CanSource};
use std::fmt::Write as _;
use std::io;
use std::path::Path;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CandumpError {
    #[error("no '(seconds.micros)' timestamp")]
    Timestamp,
    #[error("no interface name")]
    Interface,
    #[error("no 'ID#DATA' frame")]
    Frame,
    #[error("bad CAN id")]
    Id,
    #[error("bad data bytes")]
    Data,
    #[error("CAN FD frames are not supported")]
    Fd,
}

/// One logged frame: the timestamp (microseconds since the Unix epoch) is also in
/// `frame.timestamp_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggedFrame<'a> {
    pub interface: &'a str,
    pub frame: CanFrame,
}

fn hex_nibble(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

fn parse_ts(s: &str) -> Option<u64> {
    let (secs, micros) = s.split_once('.')?;
    if micros.len() != 6 || secs.is_empty() {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let micros: u64 = micros.parse().ok()?;
    secs.checked_mul(1_000_000)?.checked_add(micros)
}

/// Parse one line. Blank lines and `#` comments are the caller's to skip.
pub fn parse_line(line: &str) -> Result<LoggedFrame<'_>, CandumpError> {
    let mut parts = line.split_ascii_whitespace();
    let ts = parts
        .next()
        .and_then(|t| t.strip_prefix('(')?.strip_suffix(')'))
        .and_then(parse_ts)
        .ok_or(CandumpError::Timestamp)?;
    let interface = parts.next().ok_or(CandumpError::Interface)?;
    let frame = parts.next().ok_or(CandumpError::Frame)?;
    let (id_text, data_text) = frame.split_once('#').ok_or(CandumpError::Frame)?;
    if data_text.starts_with('#') {
        return Err(CandumpError::Fd);
    }
    let extended = match id_text.len() {
        3 => false,
        8 => true,
        _ => return Err(CandumpError::Id),
    };
    let id = u32::from_str_radix(id_text, 16).map_err(|_| CandumpError::Id)?;
    if let Some(rest) = data_text.strip_prefix('R') {
        let len = if rest.is_empty() {
            0
        } else {
            rest.parse::<u8>().map_err(|_| CandumpError::Data)?
        };
        let mut f = CanFrame::new(id, extended, &[], ts).ok_or(CandumpError::Id)?;
        f.rtr = true;
        f.len = len.min(8);
        return Ok(LoggedFrame {
            interface,
            frame: f,
        });
    }
    let bytes = data_text.as_bytes();
    if bytes.len() % 2 != 0 || bytes.len() > 16 {
        return Err(CandumpError::Data);
    }
    let mut data = [0u8; 8];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let (h, l) = (hex_nibble(pair[0]), hex_nibble(pair[1]));
        data[i] = match (h, l) {
            (Some(h), Some(l)) => h << 4 | l,
            _ => return Err(CandumpError::Data),
        };
    }
    let frame =
        CanFrame::new(id, extended, &data[..bytes.len() / 2], ts).ok_or(CandumpError::Id)?;
    Ok(LoggedFrame { interface, frame })
}

/// Write a frame as a candump `-l` line (no newline), for recording a bus.
pub fn format_line(interface: &str, frame: &CanFrame, out: &mut String) {
    let ts = frame.timestamp_us;
    let _ = write!(
        out,
        "({}.{:06}) {interface} ",
        ts / 1_000_000,
        ts % 1_000_000
    );
    let _ = if frame.extended {
        write!(out, "{:08X}#", frame.id)
    } else {
        write!(out, "{:03X}#", frame.id)
    };
    if frame.rtr {
        out.push('R');
        return;
    }
    for b in frame.payload() {
        let _ = write!(out, "{b:02X}");
    }
}

/// Records frames as a candump `-l` log that `candump`, `canplayer` and
/// [`CandumpReplay`] read back. Buffered: call [`CandumpWriter::flush`] to make
/// what was written durable up to that point.
pub struct CandumpWriter<W: io::Write> {
    out: io::BufWriter<W>,
    interface: String,
    line: String,
    frames: u64,
}

impl CandumpWriter<std::fs::File> {
    /// Create (or truncate) `path`.
    pub fn create(path: &Path, interface: &str) -> io::Result<Self> {
        Ok(Self::new(std::fs::File::create(path)?, interface))
    }
}

impl<W: io::Write> CandumpWriter<W> {
    /// Lines name `interface` (`can0`, `vcan0`).
    pub fn new(out: W, interface: &str) -> Self {
        Self {
            out: io::BufWriter::new(out),
            interface: interface.to_owned(),
            line: String::with_capacity(64),
            frames: 0,
        }
    }

    pub fn write(&mut self, frame: &CanFrame) -> io::Result<()> {
        self.line.clear();
        format_line(&self.interface, frame, &mut self.line);
        self.line.push('\n');
        io::Write::write_all(&mut self.out, self.line.as_bytes())?;
        self.frames += 1;
        Ok(())
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    pub fn flush(&mut self) -> io::Result<()> {
        io::Write::flush(&mut self.out)
    }

    /// Flush and give the inner writer back.
    pub fn into_inner(self) -> io::Result<W> {
        self.out.into_inner().map_err(|e| e.into_error())
    }
}

/// How a replay paces its frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As fast as the reader takes them.
    Unpaced,
    /// `speed` times real time: 1.0 is the pace of the recording.
    Scaled(f64),
}

impl Pace {
    /// `speed = 0` means as fast as possible, N means N times real time.
    pub fn from_speed(speed: f64) -> Result<Pace, String> {
        if !speed.is_finite() || speed < 0.0 {
            return Err(format!(
                "replay speed must be 0 (as fast as possible) or a positive number, got {speed}"
            ));
        }
        Ok(if speed == 0.0 {
            Pace::Unpaced
        } else {
            Pace::Scaled(speed)
        })
    }

    /// When an item `log_offset_us` into the recording is due, the replay having
    /// started at `start`.
    pub fn due(self, start: Instant, log_offset_us: u64) -> Option<Instant> {
        match self {
            Pace::Unpaced => None,
            Pace::Scaled(speed) => {
                let us = (log_offset_us as f64 / speed).min(u64::MAX as f64 / 2.0);
                Some(start + Duration::from_micros(us as u64))
            }
        }
    }
}

/// A replay hands out an item this much before it is due rather than sleep for
/// less: a bus at full load has a frame every 125 us, and a timer per frame would
/// cost more than the frames.
pub const PACE_SLACK: Duration = Duration::from_millis(4);

impl Pace {
    /// Wait until an item `log_offset_us` into the recording is due (within
    /// [`PACE_SLACK`]), the replay having started at `start`.
    pub async fn wait(self, start: Instant, log_offset_us: u64) {
        if let Some(due) = self.due(start, log_offset_us) {
            if due > Instant::now() + PACE_SLACK {
                tokio::time::sleep_until(due).await;
            }
        }
    }
}

/// How far a replay has got, for progress reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayProgress {
    pub bytes_read: u64,
    /// The file's size, when known.
    pub bytes_total: Option<u64>,
    /// Items (frames, sentences) handed out.
    pub items: u64,
    /// Lines that did not parse and were skipped.
    pub bad_lines: u64,
}

impl ReplayProgress {
    /// Fraction done, 0..=1, when the size is known.
    pub fn fraction(&self) -> Option<f64> {
        self.bytes_total
            .filter(|t| *t > 0)
            .map(|t| (self.bytes_read as f64 / t as f64).min(1.0))
    }
}

/// Replays a candump `-l` log. Frames keep their logged timestamps; malformed
/// lines are counted and skipped; the end of the file is [`CanError::Closed`].
pub struct CandumpReplay<R = BufReader<tokio::fs::File>> {
    reader: R,
    pace: Pace,
    /// The real time the first frame was handed out and its log time.
    start: Option<(Instant, u64)>,
    line: Vec<u8>,
    progress: ReplayProgress,
    last_bad: Option<(u64, CandumpError)>,
    line_no: u64,
}

impl CandumpReplay {
    pub async fn open(path: &Path, pace: Pace) -> io::Result<Self> {
        let file = tokio::fs::File::open(path).await?;
        let size = file.metadata().await?.len();
        let mut r = Self::from_reader(BufReader::with_capacity(64 * 1024, file), pace);
        r.progress.bytes_total = Some(size);
        Ok(r)
    }
}

impl<R: AsyncBufRead + Unpin + Send> CandumpReplay<R> {
    pub fn from_reader(reader: R, pace: Pace) -> Self {
        Self {
            reader,
            pace,
            start: None,
            line: Vec::with_capacity(64),
            progress: ReplayProgress::default(),
            last_bad: None,
            line_no: 0,
        }
    }

    pub fn progress(&self) -> ReplayProgress {
        self.progress
    }

    /// The line number and error of the last malformed line.
    pub fn last_bad_line(&self) -> Option<&(u64, CandumpError)> {
        self.last_bad.as_ref()
    }

    async fn next_frame(&mut self) -> Result<CanFrame, CanError> {
        loop {
            self.line.clear();
            let n = self.reader.read_until(b'\n', &mut self.line).await?;
            if n == 0 {
                return Err(CanError::Closed);
            }
            self.line_no += 1;
            self.progress.bytes_read += n as u64;
            // A log is text; a line that is not is bad input, not an outage.
            let Ok(text) = std::str::from_utf8(&self.line) else {
                self.progress.bad_lines += 1;
                continue;
            };
            let text = text.trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            match parse_line(text) {
                Ok(l) => {
                    self.progress.items += 1;
                    return Ok(l.frame);
                }
                Err(e) => {
                    self.progress.bad_lines += 1;
                    self.last_bad = Some((self.line_no, e));
                }
            }
        }
    }
}

impl<R: AsyncBufRead + Unpin + Send> CanSource for CandumpReplay<R> {
    async fn recv(&mut self) -> Result<CanFrame, CanError> {
        let frame = self.next_frame().await?;
        let (start, t0) = *self
            .start
            .get_or_insert((Instant::now(), frame.timestamp_us));
        // A log whose time steps back (two buses merged, a clock set) plays on.
        self.pace
            .wait(start, frame.timestamp_us.saturating_sub(t0))
            .await;
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_extended_and_standard_lines_and_writes_them_back() {
        for line in [
            "(1635188455.020850) can0 18F00E00#821639C4FFFFFFFF",
            "(1725695000.000001) can1 7E8#0341",
            "(0.000000) vcan0 123#",
            "(12.500000) can0 7DF#R",
        ] {
            let f = parse_line(line).expect(line);
            let mut back = String::new();
            format_line(f.interface, &f.frame, &mut back);
            assert_eq!(back, line);
        }
        let f = parse_line("(1635188455.020850) can0 18F00E00#821639C4FFFFFFFF").expect("valid");
        assert!(f.frame.extended);
        assert_eq!(f.frame.id, 0x18F0_0E00);
        assert_eq!(f.frame.timestamp_us, 1_635_188_455_020_850);
        assert_eq!(
            f.frame.payload(),
            &[0x82, 0x16, 0x39, 0xC4, 0xFF, 0xFF, 0xFF, 0xFF]
        );
    }

    #[test]
    fn rejects_malformed_lines() {
        assert_eq!(parse_line("can0 123#00"), Err(CandumpError::Timestamp));
        assert_eq!(parse_line("(1.000000) can0"), Err(CandumpError::Frame));
        assert_eq!(
            parse_line("(1.000000) can0 12345#00"),
            Err(CandumpError::Id)
        );
        assert_eq!(parse_line("(1.000000) can0 800#00"), Err(CandumpError::Id));
        assert_eq!(parse_line("(1.000000) can0 123#0"), Err(CandumpError::Data));
        assert_eq!(
            parse_line("(1.000000) can0 123#0G"),
            Err(CandumpError::Data)
        );
        assert_eq!(
            parse_line("(1.000000) can0 123#000102030405060708"),
            Err(CandumpError::Data)
        );
        assert_eq!(
            parse_line("(1.000000) can0 123##1001122"),
            Err(CandumpError::Fd)
        );
    }

    #[test]
    fn every_line_of_the_truck_log_parses() {
        let log = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/fixtures/j1939/canedge-j1939-truck-idle-10s.log"
        ))
        .expect("fixture");
        let mut n = 0;
        for l in log.lines() {
            parse_line(l).expect(l);
            n += 1;
        }
        assert_eq!(n, 3_582);
    }

    #[test]
    fn a_speed_of_zero_is_unpaced_and_negative_speeds_are_refused() {
        assert_eq!(Pace::from_speed(0.0), Ok(Pace::Unpaced));
        assert_eq!(Pace::from_speed(2.5), Ok(Pace::Scaled(2.5)));
        assert!(Pace::from_speed(-1.0).is_err());
        assert!(Pace::from_speed(f64::NAN).is_err());
        let start = Instant::now();
        assert_eq!(
            Pace::Scaled(4.0).due(start, 2_000_000),
            Some(start + Duration::from_millis(500))
        );
    }
}
