//! The ELM327's text: replies framed by the `>` prompt, adapter status lines, and
//! data lines (with or without headers, spaces, or ISO-TP segment numbers)
//! assembled into one service payload per ECU. Pure: bytes in, values out.

use std::collections::BTreeMap;

/// The adapter prints this when it is ready for the next command.
pub const PROMPT: u8 = b'>';
/// A reply longer than this without a prompt is garbage (an adapter that lost sync).
pub const MAX_REPLY: usize = 4096;

/// Collects bytes from the serial line and yields each reply once its prompt is in.
#[derive(Debug, Default)]
pub struct ReplyFramer {
    buf: Vec<u8>,
    overflowed: bool,
}

/// A reply as read off the line, up to and without its prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawReply {
    pub text: String,
    /// Bytes were thrown away because no prompt came within [`MAX_REPLY`].
    pub truncated: bool,
}

impl ReplyFramer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            // NUL and other control bytes show up on some clones after a reset.
            if b == 0 || (b < 0x20 && b != b'\r' && b != b'\n') || b >= 0x7F {
                continue;
            }
            if self.buf.len() >= MAX_REPLY && b != PROMPT {
                self.buf.clear();
                self.overflowed = true;
            }
            self.buf.push(b);
        }
    }

    /// The next complete reply, or `None` when more bytes are needed.
    pub fn next_reply(&mut self) -> Option<RawReply> {
        let end = self.buf.iter().position(|b| *b == PROMPT)?;
        let text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..=end);
        let truncated = std::mem::take(&mut self.overflowed);
        Some(RawReply { text, truncated })
    }

    /// Bytes received since the last prompt.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.overflowed = false;
    }
}

/// An error the adapter reports in place of data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    #[error("NO DATA: no ECU answered")]
    NoData,
    #[error("?: the adapter did not understand the command")]
    Unknown,
    #[error("CAN ERROR: the adapter cannot talk on the CAN bus")]
    CanError,
    #[error("STOPPED: the command was interrupted")]
    Stopped,
    #[error("UNABLE TO CONNECT: no OBD protocol found")]
    UnableToConnect,
    #[error("BUS INIT: ...ERROR: the vehicle bus did not initialise")]
    BusInitError,
    #[error("BUFFER FULL")]
    BufferFull,
    #[error("BUS BUSY")]
    BusBusy,
    #[error("BUS ERROR")]
    BusError,
    #[error("DATA ERROR")]
    DataError,
    #[error("RX ERROR")]
    RxError,
    #[error("FB ERROR")]
    FeedbackError,
    #[error("LV RESET: the adapter reset on low voltage")]
    LowVoltageReset,
    #[error("ACT ALERT: the adapter is going to sleep")]
    ActivityAlert,
    #[error("adapter error {0}")]
    Internal(String),
}

impl AdapterError {
    /// Whether the vehicle may answer if asked again (as opposed to a command or
    /// wiring problem).
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Unknown)
    }

    fn from_line(line: &str) -> Option<Self> {
        let l = line.trim().to_ascii_uppercase();
        let e = match l.as_str() {
            "NO DATA" => Self::NoData,
            "?" => Self::Unknown,
            "CAN ERROR" => Self::CanError,
            "STOPPED" => Self::Stopped,
            "UNABLE TO CONNECT" => Self::UnableToConnect,
            "BUFFER FULL" => Self::BufferFull,
            "BUS BUSY" => Self::BusBusy,
            "BUS ERROR" => Self::BusError,
            "DATA ERROR" => Self::DataError,
            "FB ERROR" => Self::FeedbackError,
            "LV RESET" => Self::LowVoltageReset,
            "ACT ALERT" => Self::ActivityAlert,
            _ if l.starts_with("BUS INIT") && l.contains("ERROR") => Self::BusInitError,
            _ if l.starts_with("<RX ERROR") || l == "RX ERROR" => Self::RxError,
            _ if l.starts_with("ERR")
                && l[3..].chars().all(|c| c.is_ascii_digit())
                && l.len() > 3 =>
            {
                Self::Internal(l)
            }
            _ => return None,
        };
        Some(e)
    }
}

/// A reply cleaned of echo, blank lines and progress messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub lines: Vec<String>,
}

fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(|c| c.to_uppercase())
        .collect()
}

/// Parses the text of one reply to `command`: drops the echo, `SEARCHING...` and
/// `BUS INIT: ...OK`; an error line anywhere makes the whole reply that error, unless
/// data from another ECU came with it (then the data wins and the error is dropped).
pub fn parse_reply(command: &str, text: &str) -> Result<Reply, AdapterError> {
    let cmd = squash(command);
    let mut lines = Vec::new();
    let mut error = None;
    for (i, raw) in text.split(['\r', '\n']).enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if i == 0 && !cmd.is_empty() && squash(line) == cmd {
            continue;
        }
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("SEARCHING")
            || (upper.starts_with("BUS INIT") && upper.ends_with("OK"))
        {
            continue;
        }
        match AdapterError::from_line(line) {
            Some(e) => error = error.or(Some(e)),
            None => lines.push(line.to_string()),
        }
    }
    match error {
        Some(e) if !lines.iter().any(|l| is_hex_line(l)) => Err(e),
        _ => Ok(Reply { lines }),
    }
}

fn is_hex_line(line: &str) -> bool {
    let body = match line.split_once(':') {
        Some((idx, rest)) if idx.trim().len() == 1 => rest,
        _ => line,
    };
    let squashed = squash(body);
    !squashed.is_empty() && squashed.bytes().all(|b| b.is_ascii_hexdigit())
}

/// How the vehicle bus frames its messages, from `ATDPN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusKind {
    /// ISO 15765-4 with 11-bit ids (protocols 6, 8, B).
    Can11,
    /// ISO 15765-4 with 29-bit ids (protocols 7, 9, A, C).
    Can29,
    /// SAE J1850, ISO 9141-2, ISO 14230-4 (protocols 1-5): 3 header bytes and a
    /// checksum around at most 7 data bytes, no ISO-TP.
    Legacy,
}

impl BusKind {
    /// From the answer to `ATDPN` (`6`, `A6` when found by automatic search).
    pub fn from_protocol_number(answer: &str) -> Option<Self> {
        let t = answer.trim().to_ascii_uppercase();
        let digit = t.strip_prefix('A').filter(|r| !r.is_empty()).unwrap_or(&t);
        match digit {
            "1" | "2" | "3" | "4" | "5" => Some(Self::Legacy),
            "6" | "8" | "B" => Some(Self::Can11),
            "7" | "9" | "A" | "C" => Some(Self::Can29),
            _ => None,
        }
    }
}

/// One data line of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataLine {
    /// A frame; `header` is the CAN id or the legacy source address when headers
    /// are on. For CAN the first byte is the ISO-TP PCI byte when headers are on.
    Frame { header: Option<u32>, bytes: Vec<u8> },
    /// Headers off, multi-frame CAN: the total length line (`014`).
    Length(usize),
    /// Headers off, multi-frame CAN: a numbered segment (`0: 49 02 01 31 44 34`).
    Segment { index: u8, bytes: Vec<u8> },
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    let digits = squash(s);
    if digits.len() % 2 != 0 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).ok())
        .collect()
}

/// Parses one line of a data reply; `None` for a line that is not data.
pub fn parse_data_line(line: &str, kind: BusKind, headers: bool) -> Option<DataLine> {
    let line = line.trim();
    if let Some((idx, rest)) = line.split_once(':') {
        let index = u8::from_str_radix(idx.trim(), 16).ok()?;
        return Some(DataLine::Segment {
            index,
            bytes: hex_bytes(rest)?,
        });
    }
    let squashed = squash(line);
    if !squashed.bytes().all(|b| b.is_ascii_hexdigit()) || squashed.is_empty() {
        return None;
    }
    if !headers {
        if squashed.len() == 3 && kind != BusKind::Legacy {
            return usize::from_str_radix(&squashed, 16)
                .ok()
                .map(DataLine::Length);
        }
        return Some(DataLine::Frame {
            header: None,
            bytes: hex_bytes(&squashed)?,
        });
    }
    match kind {
        BusKind::Can11 => {
            if squashed.len() < 5 {
                return None;
            }
            let header = u32::from_str_radix(&squashed[..3], 16).ok()?;
            Some(DataLine::Frame {
                header: Some(header),
                bytes: hex_bytes(&squashed[3..])?,
            })
        }
        BusKind::Can29 => {
            if squashed.len() < 10 {
                return None;
            }
            let header = u32::from_str_radix(&squashed[..8], 16).ok()?;
            Some(DataLine::Frame {
                header: Some(header),
                bytes: hex_bytes(&squashed[8..])?,
            })
        }
        BusKind::Legacy => {
            let bytes = hex_bytes(&squashed)?;
            // priority, target, source, data…, checksum
            if bytes.len() < 5 {
                return None;
            }
            Some(DataLine::Frame {
                header: Some(u32::from(bytes[2])),
                bytes: bytes[3..bytes.len() - 1].to_vec(),
            })
        }
    }
}

/// One ECU's whole answer: the service payload (from the response service id on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcuMessage {
    /// The replying ECU's CAN id or source address, when headers are on.
    pub ecu: Option<u32>,
    pub payload: Vec<u8>,
}

/// A data line or message that did not fit, reported and skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("line is neither data nor a known adapter message: {0:?}")]
    NotData(String),
    #[error("ISO-TP frames from {ecu:X} do not form a message: {why}")]
    BadSegments { ecu: u32, why: &'static str },
    #[error("numbered segments do not form a message: {0}")]
    BadNumbered(&'static str),
}

/// Assembles the data lines of one reply into one message per ECU, in ECU order.
/// Messages that cannot be assembled come back as errors beside the good ones.
pub fn assemble(reply: &Reply, kind: BusKind, headers: bool) -> (Vec<EcuMessage>, Vec<FrameError>) {
    let mut errors = Vec::new();
    let mut by_ecu: BTreeMap<u32, Vec<Vec<u8>>> = BTreeMap::new();
    let mut plain: Vec<Vec<u8>> = Vec::new();
    let mut numbered: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut length = None;
    for line in &reply.lines {
        match parse_data_line(line, kind, headers) {
            Some(DataLine::Frame {
                header: Some(h),
                bytes,
            }) => by_ecu.entry(h).or_default().push(bytes),
            Some(DataLine::Frame {
                header: None,
                bytes,
            }) => plain.push(bytes),
            Some(DataLine::Length(n)) => length = Some(n),
            Some(DataLine::Segment { index, bytes }) => numbered.push((index, bytes)),
            None => errors.push(FrameError::NotData(line.clone())),
        }
    }
    let mut out = Vec::new();
    for (ecu, frames) in by_ecu {
        let assembled = match kind {
            BusKind::Legacy => Ok(join_legacy(&frames)),
            BusKind::Can11 | BusKind::Can29 => join_isotp(&frames),
        };
        match assembled {
            Ok(payload) => out.push(EcuMessage {
                ecu: Some(ecu),
                payload,
            }),
            Err(why) => errors.push(FrameError::BadSegments { ecu, why }),
        }
    }
    if !numbered.is_empty() {
        match join_numbered(length, numbered) {
            Ok(payload) => out.push(EcuMessage { ecu: None, payload }),
            Err(why) => errors.push(FrameError::BadNumbered(why)),
        }
    }
    if kind == BusKind::Legacy && !plain.is_empty() {
        out.push(EcuMessage {
            ecu: None,
            payload: join_legacy(&plain),
        });
    } else {
        out.extend(
            plain
                .into_iter()
                .map(|payload| EcuMessage { ecu: None, payload }),
        );
    }
    (out, errors)
}

/// ISO-TP frames (PCI byte first) of one ECU, in the order the adapter printed them.
fn join_isotp(frames: &[Vec<u8>]) -> Result<Vec<u8>, &'static str> {
    let first = frames.first().ok_or("no frames")?;
    let pci = *first.first().ok_or("empty frame")?;
    match pci >> 4 {
        0 => {
            if frames.len() > 1 {
                return Err("several single frames from one ECU");
            }
            let len = usize::from(pci & 0x0F);
            first
                .get(1..=len)
                .map(<[u8]>::to_vec)
                .ok_or("single frame shorter than its length")
        }
        1 => {
            let len = usize::from(pci & 0x0F) << 8
                | usize::from(*first.get(1).ok_or("short first frame")?);
            let mut data = first[2..].to_vec();
            for (i, f) in frames[1..].iter().enumerate() {
                let expected = ((i + 1) & 0x0F) as u8;
                match f.first() {
                    Some(p) if p >> 4 == 2 && p & 0x0F == expected => {
                        data.extend_from_slice(&f[1..])
                    }
                    _ => return Err("consecutive frame missing or out of order"),
                }
            }
            if data.len() < len {
                return Err("message shorter than its first frame announced");
            }
            data.truncate(len);
            Ok(data)
        }
        _ => Err("first frame is neither single nor first frame"),
    }
}

/// Legacy multi-line answers: mode 03/07/0A repeat the service id on each line,
/// mode 09 repeats service id, info type and a sequence number.
fn join_legacy(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        if i == 0 {
            out.extend_from_slice(f);
            continue;
        }
        let skip = match f.first() {
            Some(0x49) => 3,
            Some(0x43 | 0x47 | 0x4A) => 1,
            _ => 0,
        };
        out.extend_from_slice(f.get(skip..).unwrap_or(&[]));
    }
    if out.first() == Some(&0x49) && frames.len() > 1 {
        // Legacy VIN lines each carry a sequence byte; drop the first one too.
        out.remove(2);
    }
    out
}

fn join_numbered(
    length: Option<usize>,
    mut segments: Vec<(u8, Vec<u8>)>,
) -> Result<Vec<u8>, &'static str> {
    for (i, (index, _)) in segments.iter().enumerate() {
        if usize::from(*index) != i % 16 {
            return Err("segment missing or out of order");
        }
    }
    let mut data: Vec<u8> = segments.drain(..).flat_map(|(_, b)| b).collect();
    if let Some(len) = length {
        if data.len() < len {
            return Err("segments shorter than the announced length");
        }
        data.truncate(len);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framer_needs_the_prompt_and_keeps_what_follows() {
        let mut f = ReplyFramer::new();
        f.push(b"41 0C 1A F8 \r\r");
        assert_eq!(f.next_reply(), None);
        f.push(b">SEARCH");
        assert_eq!(f.next_reply().unwrap().text, "41 0C 1A F8 \r\r");
        assert_eq!(f.pending(), 6);
    }

    #[test]
    fn framer_drops_nuls_and_recovers_from_runaway_garbage() {
        let mut f = ReplyFramer::new();
        f.push(&[0, b'O', 0, b'K', 0xFF, b'\r', b'>']);
        assert_eq!(f.next_reply().unwrap().text, "OK\r");
        f.push(&vec![b'A'; MAX_REPLY + 10]);
        f.push(b"OK\r>");
        let r = f.next_reply().unwrap();
        assert!(r.truncated);
        assert!(r.text.ends_with("OK\r"));
    }

    #[test]
    fn echo_searching_and_bus_init_are_dropped() {
        let r = parse_reply("0100", "0100\rSEARCHING...\r7E8 06 41 00 BE 3F A8 13\r\r").unwrap();
        assert_eq!(r.lines, vec!["7E8 06 41 00 BE 3F A8 13"]);
        let r = parse_reply("0100", "BUS INIT: ...OK\r41 00 BE 3F A8 13\r").unwrap();
        assert_eq!(r.lines, vec!["41 00 BE 3F A8 13"]);
    }

    #[test]
    fn adapter_errors_are_classified() {
        let cases = [
            ("NO DATA", AdapterError::NoData),
            ("?", AdapterError::Unknown),
            ("CAN ERROR", AdapterError::CanError),
            ("STOPPED", AdapterError::Stopped),
            ("UNABLE TO CONNECT", AdapterError::UnableToConnect),
            ("BUS INIT: ...ERROR", AdapterError::BusInitError),
            (
                "SEARCHING...\rUNABLE TO CONNECT",
                AdapterError::UnableToConnect,
            ),
            ("<RX ERROR", AdapterError::RxError),
            ("ERR94", AdapterError::Internal("ERR94".into())),
        ];
        for (text, want) in cases {
            assert_eq!(parse_reply("010C", text), Err(want), "{text}");
        }
    }

    #[test]
    fn data_from_one_ecu_survives_no_data_from_another() {
        let r = parse_reply("0100", "7E8 06 41 00 BE 3F A8 13\rNO DATA\r").unwrap();
        assert_eq!(r.lines.len(), 1);
    }

    #[test]
    fn headers_on_replies_from_two_ecus_assemble_separately() {
        let r = parse_reply(
            "0100",
            "7E9 06 41 00 98 18 80 10\r7E8 06 41 00 BE 3F A8 13\r",
        )
        .unwrap();
        let (msgs, errs) = assemble(&r, BusKind::Can11, true);
        assert!(errs.is_empty());
        assert_eq!(msgs[0].ecu, Some(0x7E8));
        assert_eq!(msgs[0].payload, vec![0x41, 0x00, 0xBE, 0x3F, 0xA8, 0x13]);
        assert_eq!(msgs[1].ecu, Some(0x7E9));
    }

    #[test]
    fn spaceless_headers_and_segmented_vin_assemble() {
        let r = parse_reply(
            "0902",
            "7E81014490201575030\r7E8215A5A5A39395A54\r7E82253333930303030\r",
        )
        .unwrap();
        let (msgs, errs) = assemble(&r, BusKind::Can11, true);
        assert!(errs.is_empty());
        assert_eq!(&msgs[0].payload[..3], &[0x49, 0x02, 0x01]);
        assert_eq!(&msgs[0].payload[3..], b"WP0ZZZ99ZTS390000");
    }

    #[test]
    fn headers_off_numbered_segments_assemble() {
        let r = parse_reply(
            "0902",
            "014\r0: 49 02 01 4D 41 54\r1: 34 30 33 30 39 36 42\r2: 4E 4C 30 30 30 30 30\r",
        )
        .unwrap();
        let (msgs, errs) = assemble(&r, BusKind::Can11, false);
        assert!(errs.is_empty());
        assert_eq!(&msgs[0].payload[3..], b"MAT403096BNL00000");
        let bad = parse_reply(
            "0902",
            "014\r0: 49 02 01 4D 41 54\r2: 4E 4C 30 30 30 30 30\r",
        )
        .unwrap();
        let (msgs, errs) = assemble(&bad, BusKind::Can11, false);
        assert!(msgs.is_empty());
        assert_eq!(errs.len(), 1);
    }

    #[test]
    fn missing_consecutive_frame_is_an_error_not_a_short_message() {
        let r = parse_reply(
            "0902",
            "7E8 10 14 49 02 01 57 50 30\r7E8 22 53 33 39 30 30 30 30\r",
        )
        .unwrap();
        let (msgs, errs) = assemble(&r, BusKind::Can11, true);
        assert!(msgs.is_empty());
        assert!(matches!(
            errs[0],
            FrameError::BadSegments { ecu: 0x7E8, .. }
        ));
    }

    #[test]
    fn twenty_nine_bit_and_legacy_headers_parse() {
        let l = parse_data_line("18 DA F1 10 03 41 0D 32", BusKind::Can29, true);
        assert_eq!(
            l,
            Some(DataLine::Frame {
                header: Some(0x18DAF110),
                bytes: vec![0x03, 0x41, 0x0D, 0x32]
            })
        );
        let r = parse_reply(
            "0902",
            "48 6B 10 49 02 01 00 00 00 31 C5\r48 6B 10 49 02 02 44 34 47 50 AA\r",
        )
        .unwrap();
        let (msgs, _) = assemble(&r, BusKind::Legacy, true);
        assert_eq!(msgs[0].ecu, Some(0x10));
        assert_eq!(
            msgs[0].payload,
            vec![0x49, 0x02, 0, 0, 0, 0x31, 0x44, 0x34, 0x47, 0x50]
        );
    }

    #[test]
    fn protocol_numbers_map_to_bus_kinds() {
        assert_eq!(BusKind::from_protocol_number("A6"), Some(BusKind::Can11));
        assert_eq!(BusKind::from_protocol_number("7"), Some(BusKind::Can29));
        assert_eq!(BusKind::from_protocol_number("A"), Some(BusKind::Can29));
        assert_eq!(BusKind::from_protocol_number("A3"), Some(BusKind::Legacy));
        assert_eq!(BusKind::from_protocol_number("0"), None);
    }
}
