//! `fleet-agent decode candump FILE --dbc DBC`: a candump log decoded by a
//! user's DBC file, one JSON object per decoded message.
//!
//! Reads candump's `-l` log format (`(1635188455.020850) can0 18F00E00#…`) and
//! its default text format (`  can0  09F8027F   [8]  00 FC …`, optionally after
//! a `(seconds.micros)` timestamp). Comment lines (`#`) and blank lines are
//! skipped; a line that is neither is counted as bad and skipped.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::Context;
use fleet_hal::CanFrame;
use serde_json::{json, Map, Value};

use crate::decode::candump;
use crate::decode::dbc::{Database, DecodeStats, MessageDef, SignalValue};
use crate::decode::j1939::{self, Transport, PGN_TP_CM, PGN_TP_DT};

/// What reading a log met, line by line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineStats {
    pub lines: u64,
    pub frames: u64,
    /// Lines that were neither a frame, a comment nor blank.
    pub bad: u64,
}

/// A frame read from a log line; `timestamp_us` is meaningless when `timed` is false.
#[derive(Debug, Clone)]
pub struct LogFrame {
    pub interface: String,
    pub frame: CanFrame,
    /// Whether the line carried a timestamp (the default format may not).
    pub timed: bool,
}

fn hex_byte(s: &str) -> Option<u8> {
    if s.len() == 2 {
        u8::from_str_radix(s, 16).ok()
    } else {
        None
    }
}

fn parse_timestamp(s: &str) -> Option<u64> {
    let (secs, frac) = s.strip_prefix('(')?.strip_suffix(')')?.split_once('.')?;
    if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = secs.trim().parse().ok()?;
    let micros: u64 = format!("{frac:0<6}")[..6].parse().ok()?;
    secs.checked_mul(1_000_000)?.checked_add(micros)
}

/// candump's default text format: `[(ts)] IFACE ID [LEN] BYTES…` or
/// `IFACE ID [LEN] remote request`.
pub fn parse_text_line(line: &str) -> Option<LogFrame> {
    let mut parts = line.split_ascii_whitespace().peekable();
    let mut ts = None;
    if parts.peek()?.starts_with('(') {
        ts = Some(parse_timestamp(parts.next()?)?);
    }
    let interface = parts.next()?;
    let id_text = parts.next()?;
    let extended = match id_text.len() {
        3 => false,
        8 => true,
        _ => return None,
    };
    let id = u32::from_str_radix(id_text, 16).ok()?;
    let len: usize = parts
        .next()?
        .strip_prefix('[')?
        .strip_suffix(']')?
        .parse()
        .ok()?;
    if len > 8 {
        return None;
    }
    let rest: Vec<&str> = parts.collect();
    let mut frame = if rest.first() == Some(&"remote") {
        let mut f = CanFrame::new(id, extended, &[], ts.unwrap_or(0))?;
        f.rtr = true;
        f.len = len as u8;
        f
    } else {
        if rest.len() != len {
            return None;
        }
        let mut data = [0u8; 8];
        for (d, b) in data.iter_mut().zip(&rest) {
            *d = hex_byte(b)?;
        }
        CanFrame::new(id, extended, &data[..len], ts.unwrap_or(0))?
    };
    frame.timestamp_us = ts.unwrap_or(0);
    Some(LogFrame {
        interface: interface.to_owned(),
        frame,
        timed: ts.is_some(),
    })
}

/// One line of either candump format; `Ok(None)` for comments and blank lines.
pub fn parse_any_line(line: &str) -> Result<Option<LogFrame>, candump::CandumpError> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return Ok(None);
    }
    match candump::parse_line(t) {
        Ok(f) => Ok(Some(LogFrame {
            interface: f.interface.to_owned(),
            frame: f.frame,
            timed: true,
        })),
        Err(e) => parse_text_line(t).map(Some).ok_or(e),
    }
}

/// Calls `f` with every frame of the log at `path`; bad lines are counted and
/// skipped, never fatal. Only I/O errors stop the read.
pub fn read_log(
    path: &Path,
    mut f: impl FnMut(&LogFrame) -> anyhow::Result<()>,
) -> anyhow::Result<LineStats> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let mut stats = LineStats::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        stats.lines += 1;
        let Ok(line) = std::str::from_utf8(&buf) else {
            stats.bad += 1;
            continue;
        };
        match parse_any_line(line) {
            Ok(Some(frame)) => {
                stats.frames += 1;
                f(&frame)?;
            }
            Ok(None) => {}
            Err(_) => stats.bad += 1,
        }
    }
    Ok(stats)
}

/// RFC 3339 (UTC, microseconds) for a log timestamp.
pub fn rfc3339(timestamp_us: u64) -> Option<String> {
    let t =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(timestamp_us) * 1000).ok()?;
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// The id as candump writes it: 3 hex digits, or 8 for an extended id.
pub fn id_text(id: u32, extended: bool) -> String {
    if extended {
        format!("{id:08X}")
    } else {
        format!("{id:03X}")
    }
}

/// A JSON number for a signal value: integral values print without a fraction.
pub fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

/// What a DBC decode of a log found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CandumpSummary {
    pub lines: LineStats,
    pub decoded: u64,
    pub unknown_frames: u64,
    pub unknown_ids: HashSet<(u32, bool)>,
    /// Frames of J1939 transport sessions (their messages are decoded when complete).
    pub transport_frames: u64,
    pub truncated_signals: u64,
}

/// The JSON line for one decoded message.
pub fn message_json<'a>(
    lf: &LogFrame,
    id: u32,
    extended: bool,
    m: &'a MessageDef,
    values: &[SignalValue<'a>],
) -> Value {
    let mut o = Map::new();
    if lf.timed {
        if let Some(t) = rfc3339(lf.frame.timestamp_us) {
            o.insert("time".into(), json!(t));
        }
    }
    o.insert("interface".into(), json!(lf.interface));
    o.insert("id".into(), json!(id_text(id, extended)));
    o.insert("message".into(), json!(m.name));
    if m.j1939 {
        let j = j1939::parse_id(id);
        o.insert("pgn".into(), json!(j.pgn));
        o.insert("source".into(), json!(j.source));
        o.insert("priority".into(), json!(j.priority));
    }
    let mut signals = Map::new();
    for v in values {
        let mut s = Map::new();
        s.insert("value".into(), number(v.value));
        if !v.signal.unit.is_empty() {
            s.insert("unit".into(), json!(v.signal.unit));
        }
        if let Some(c) = v.choice {
            s.insert("choice".into(), json!(c));
        }
        signals.insert(v.signal.name.clone(), Value::Object(s));
    }
    o.insert("signals".into(), Value::Object(signals));
    Value::Object(o)
}

/// Decodes the log at `log` with the DBC file at `dbc`, one JSON line per
/// decoded message to `out`.
pub fn decode_candump_file(
    log: &Path,
    dbc: &Path,
    out: &mut impl Write,
) -> anyhow::Result<CandumpSummary> {
    let db = Database::load(dbc)?;
    let has_j1939 = db.messages().iter().any(|m| m.j1939);
    let mut transport = Transport::new();
    let mut stats = DecodeStats::default();
    let mut summary = CandumpSummary::default();
    let mut values = Vec::new();
    summary.lines = read_log(log, |lf| {
        let f = &lf.frame;
        if f.rtr {
            return Ok(());
        }
        if f.extended && has_j1939 && db.lookup(f.id, true).is_none() {
            let jid = j1939::parse_id(f.id);
            if matches!(jid.pgn, PGN_TP_CM | PGN_TP_DT) {
                summary.transport_frames += 1;
                if let Some(m) = transport.push(&jid, f) {
                    // The reassembled message, as if it had come in one frame.
                    let id = u32::from(jid.priority) << 26 | m.pgn << 8 | u32::from(m.source);
                    let id = if m.pgn >> 8 & 0xFF < 240 {
                        id | u32::from(m.destination) << 8
                    } else {
                        id
                    };
                    values.clear();
                    if let Some(def) =
                        db.decode_data(id, true, &m.data, &mut stats, |v| values.push(v))
                    {
                        writeln!(out, "{}", message_json(lf, id, true, def, &values))?;
                    }
                }
                return Ok(());
            }
        }
        values.clear();
        match db.decode(f, &mut stats, |v| values.push(v)) {
            Some(def) => writeln!(out, "{}", message_json(lf, f.id, f.extended, def, &values))?,
            None => {
                summary.unknown_frames += 1;
                summary.unknown_ids.insert((f.id, f.extended));
            }
        }
        Ok(())
    })?;
    summary.decoded = stats.decoded;
    summary.truncated_signals = stats.truncated_signals;
    Ok(summary)
}
