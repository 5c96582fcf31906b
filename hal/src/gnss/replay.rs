//! Replaying an NMEA log. A log has no receive times, so the sentences' own UTC
//! times pace it: each new time of day advances the replay clock by the step.

use super::lines::{LineFramer, MAX_LINE};
use super::{NmeaError, NmeaSource};
use crate::candump::{Pace, ReplayProgress};
use std::collections::VecDeque;
use std::io;
use std::path::Path;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio::time::Instant;

const DAY_MS: u32 = 86_400_000;
/// A step back in time, or forward by more than this, is a receiver restart or a
/// gap in the log: the replay does not wait for it.
const MAX_STEP_MS: u32 = 60_000;

/// The UTC time of day of a sentence that carries one (RMC, GGA, GLL, GNS, ZDA),
/// milliseconds since midnight. Checksums are the decoder's business.
pub fn sentence_time_of_day(line: &str) -> Option<u32> {
    let body = line.strip_prefix('$')?;
    let body = body.split('*').next()?;
    let mut fields = body.split(',');
    let tag = fields.next()?;
    let kind = tag.get(tag.len().checked_sub(3)?..)?;
    let field = match kind {
        "RMC" | "GGA" | "GNS" | "ZDA" => fields.next()?,
        "GLL" => fields.nth(4)?,
        _ => return None,
    };
    parse_hhmmss(field)
}

fn parse_hhmmss(f: &str) -> Option<u32> {
    let (whole, frac) = f.split_once('.').unwrap_or((f, ""));
    if whole.len() != 6 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |i: usize| u32::from(whole.as_bytes()[i] - b'0');
    let (h, m, s) = (n(0) * 10 + n(1), n(2) * 10 + n(3), n(4) * 10 + n(5));
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    let mut ms = 0;
    for (i, b) in frac.bytes().take(3).enumerate() {
        if !b.is_ascii_digit() {
            return None;
        }
        ms += u32::from(b - b'0') * [100, 10, 1][i];
    }
    Some(((h * 60 + m) * 60 + s) * 1000 + ms)
}

/// Replays an NMEA log line by line. The time handed out with each line is the
/// log's own time, in microseconds since its first timed sentence.
pub struct NmeaReplay<R = BufReader<tokio::fs::File>> {
    reader: R,
    pace: Pace,
    start: Option<Instant>,
    framer: LineFramer,
    queue: VecDeque<String>,
    last_tod: Option<u32>,
    log_us: u64,
    progress: ReplayProgress,
}

impl NmeaReplay {
    pub async fn open(path: &Path, pace: Pace) -> io::Result<Self> {
        let file = tokio::fs::File::open(path).await?;
        let size = file.metadata().await?.len();
        let mut r = Self::from_reader(BufReader::with_capacity(16 * 1024, file), pace);
        r.progress.bytes_total = Some(size);
        Ok(r)
    }
}

impl<R: AsyncBufRead + Unpin + Send> NmeaReplay<R> {
    pub fn from_reader(reader: R, pace: Pace) -> Self {
        Self {
            reader,
            pace,
            start: None,
            framer: LineFramer::new(MAX_LINE),
            queue: VecDeque::new(),
            last_tod: None,
            log_us: 0,
            progress: ReplayProgress::default(),
        }
    }

    pub fn progress(&self) -> ReplayProgress {
        ReplayProgress {
            bad_lines: self.framer.dropped,
            ..self.progress
        }
    }

    async fn fill(&mut self) -> Result<bool, NmeaError> {
        let mut lines = Vec::new();
        while lines.is_empty() {
            let buf = self.reader.fill_buf().await?;
            if buf.is_empty() {
                // A last line without a newline still counts.
                self.framer.push(b"\n", &mut lines);
                self.queue.extend(lines);
                return Ok(!self.queue.is_empty());
            }
            let n = buf.len();
            self.framer.push(buf, &mut lines);
            self.reader.consume(n);
            self.progress.bytes_read += n as u64;
        }
        self.queue.extend(lines);
        Ok(true)
    }

    fn advance(&mut self, line: &str) {
        let Some(tod) = sentence_time_of_day(line) else {
            return;
        };
        if let Some(last) = self.last_tod {
            let step = (tod + DAY_MS - last) % DAY_MS;
            if step <= MAX_STEP_MS {
                self.log_us += u64::from(step) * 1000;
            }
        }
        self.last_tod = Some(tod);
    }
}

impl<R: AsyncBufRead + Unpin + Send> NmeaSource for NmeaReplay<R> {
    async fn next_line(&mut self) -> Result<(String, u64), NmeaError> {
        if self.queue.is_empty() && !self.fill().await? {
            return Err(NmeaError::Closed);
        }
        let line = self.queue.pop_front().ok_or(NmeaError::Closed)?;
        self.advance(&line);
        self.progress.items += 1;
        let start = *self.start.get_or_insert_with(Instant::now);
        self.pace.wait(start, self.log_us).await;
        Ok((line, self.log_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentence_times_come_from_the_fields_that_carry_them() {
        assert_eq!(
            sentence_time_of_day("$GPRMC,083723.00,A,5155.55,N*00"),
            Some(((8 * 60 + 37) * 60 + 23) * 1000)
        );
        assert_eq!(sentence_time_of_day("$GNGGA,000001.5,x"), Some(1_500));
        assert_eq!(
            sentence_time_of_day("$GPGLL,5155.5,N,00434.6,E,235959.99,A"),
            Some(DAY_MS - 10)
        );
        assert_eq!(sentence_time_of_day("$GPGSV,3,1,12"), None);
        assert_eq!(sentence_time_of_day("$GPRMC,25xx00,A"), None);
        assert_eq!(sentence_time_of_day("garbage"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_log_plays_at_the_pace_of_its_sentence_times_across_midnight() {
        let log = "$GPRMC,235959.00,A\r\n$GPGSV,1\r\n$GPRMC,000001.00,A\r\nno newline";
        let mut r = NmeaReplay::from_reader(log.as_bytes(), Pace::Scaled(2.0));
        let t0 = Instant::now();
        assert_eq!(r.next_line().await.expect("1").1, 0);
        assert_eq!(r.next_line().await.expect("2"), ("$GPGSV,1".into(), 0));
        let (l, t) = r.next_line().await.expect("3");
        assert_eq!((l.as_str(), t), ("$GPRMC,000001.00,A", 2_000_000));
        assert_eq!(Instant::now() - t0, std::time::Duration::from_secs(1));
        assert_eq!(r.next_line().await.expect("4").0, "no newline");
        assert!(matches!(r.next_line().await, Err(NmeaError::Closed)));
    }
}
