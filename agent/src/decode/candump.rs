//! candump `-l` log lines: `(1635188455.020850) can0 18F00E00#821639C4FFFFFFFF`.

use fleet_hal::CanFrame;
use std::fmt::Write;

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
}
