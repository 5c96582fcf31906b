//! Splitting a byte stream into text lines without trusting it: a receiver that
//! babbles binary or never sends a newline must not grow a buffer without bound.

/// NMEA 0183 caps a sentence at 82 characters; gpsd's JSON reports are longer
/// (a SKY with many satellites runs to a few kilobytes).
pub const MAX_LINE: usize = 16 * 1024;

/// Accumulates bytes and hands out complete lines (without `\r\n`). A line longer
/// than the limit is dropped up to its newline and counted.
#[derive(Debug)]
pub struct LineFramer {
    buf: Vec<u8>,
    max: usize,
    /// Inside an overlong line: drop bytes until the next newline.
    discarding: bool,
    /// Lines dropped for length or for not being UTF-8.
    pub dropped: u64,
}

impl LineFramer {
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::with_capacity(256),
            max,
            discarding: false,
            dropped: 0,
        }
    }

    /// Append received bytes; complete lines go to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<String>) {
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            let complete = chunk.last() == Some(&b'\n');
            let body = if complete {
                &chunk[..chunk.len() - 1]
            } else {
                chunk
            };
            if !self.discarding {
                if self.buf.len() + body.len() > self.max {
                    self.buf.clear();
                    self.discarding = true;
                    self.dropped += 1;
                } else {
                    self.buf.extend_from_slice(body);
                }
            }
            if complete {
                if !self.discarding {
                    self.emit(out);
                }
                self.buf.clear();
                self.discarding = false;
            }
        }
    }

    fn emit(&mut self, out: &mut Vec<String>) {
        let mut line = &self.buf[..];
        while let Some((last, rest)) = line.split_last() {
            if *last == b'\r' || *last == 0 {
                line = rest;
            } else {
                break;
            }
        }
        if line.is_empty() {
            return;
        }
        match std::str::from_utf8(line) {
            Ok(s) => out.push(s.to_owned()),
            Err(_) => self.dropped += 1,
        }
    }

    /// Forget a partial line (after a reconnect).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.discarding = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_reads_come_out_whole() {
        let mut f = LineFramer::new(MAX_LINE);
        let mut out = Vec::new();
        f.push(b"$GPRMC,1", &mut out);
        assert!(out.is_empty());
        f.push(b"23\r\n$GPGGA\r\n\r\n$GP", &mut out);
        assert_eq!(out, vec!["$GPRMC,123", "$GPGGA"]);
        f.push(b"VTG\n", &mut out);
        assert_eq!(out.last().map(String::as_str), Some("$GPVTG"));
    }

    #[test]
    fn an_endless_line_is_dropped_and_the_next_one_survives() {
        let mut f = LineFramer::new(16);
        let mut out = Vec::new();
        f.push(&[b'x'; 40], &mut out);
        f.push(&[b'y'; 40], &mut out);
        f.push(b"zz\nok\n", &mut out);
        f.push(&[0xFF, 0xFE, b'\n'], &mut out);
        assert_eq!(out, vec!["ok"]);
        assert_eq!(f.dropped, 2);
    }
}
