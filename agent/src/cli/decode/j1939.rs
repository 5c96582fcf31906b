//! `fleet-agent decode j1939 FILE`: a candump log of a J1939 bus, one JSON
//! object per parameter group with known SPNs (engineering units), per DM1 (codes
//! as `{"spn","fmi","oc"}` with lamp status) and per other transport-reassembled
//! message.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use serde_json::{json, Map, Value};

use super::candump::{id_text, number, read_log, rfc3339, LineStats, LogFrame};
use crate::decode::j1939::{spn_info, Decoded, J1939Decoder, SpnValue};

/// What a J1939 decode of a log found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct J1939Summary {
    pub lines: LineStats,
    pub groups: u64,
    pub dm1: u64,
    pub messages: u64,
    /// 11-bit frames and remote frames, which J1939 does not use.
    pub skipped: u64,
    pub tp_completed: u64,
    pub tp_dropped: u64,
}

fn header(lf: &LogFrame, source: u8) -> Map<String, Value> {
    let mut o = Map::new();
    if lf.timed {
        if let Some(t) = rfc3339(lf.frame.timestamp_us) {
            o.insert("time".into(), json!(t));
        }
    }
    o.insert("interface".into(), json!(lf.interface));
    o.insert("id".into(), json!(id_text(lf.frame.id, lf.frame.extended)));
    o.insert("source".into(), json!(source));
    o
}

fn spn_value(v: SpnValue) -> Value {
    match v {
        SpnValue::Value(x) => number((x * 1e6).round() / 1e6),
        SpnValue::Error => json!("error"),
        SpnValue::NotAvailable => json!("not_available"),
    }
}

/// The JSON lines for what one frame decoded to.
pub fn frame_json(lf: &LogFrame, decoded: Vec<Decoded>) -> Vec<Value> {
    let mut out = Vec::new();
    // SPNs of one parameter group arrive together: one object per group.
    let mut groups: Vec<((u8, u32), Map<String, Value>)> = Vec::new();
    for d in decoded {
        match d {
            Decoded::Spn {
                source,
                pgn,
                reading,
            } => {
                let (name, unit) = spn_info(reading.spn).unwrap_or(("", ""));
                let i = match groups.iter().position(|g| g.0 == (source, pgn)) {
                    Some(i) => i,
                    None => {
                        groups.push(((source, pgn), Map::new()));
                        groups.len() - 1
                    }
                };
                groups[i].1.insert(
                    reading.spn.to_string(),
                    json!({"name": name, "value": spn_value(reading.value), "unit": unit}),
                );
            }
            Decoded::Dm1 { source, dm1 } => {
                let mut o = header(lf, source);
                o.insert("pgn".into(), json!(crate::decode::j1939::PGN_DM1));
                o.insert("dm1".into(), json!(dm1.codes));
                o.insert("lamps".into(), json!(dm1.lamp_status()));
                if dm1.old_conversion > 0 {
                    o.insert("old_conversion_codes".into(), json!(dm1.old_conversion));
                }
                out.push(Value::Object(o));
            }
            Decoded::Message(m) => {
                let mut o = header(lf, m.source);
                o.insert("pgn".into(), json!(m.pgn));
                o.insert("destination".into(), json!(m.destination));
                o.insert("length".into(), json!(m.data.len()));
                o.insert("data".into(), json!(hex::encode_upper(&m.data)));
                out.push(Value::Object(o));
            }
        }
    }
    for ((source, pgn), spns) in groups {
        let mut o = header(lf, source);
        o.insert("pgn".into(), json!(pgn));
        o.insert("spns".into(), Value::Object(spns));
        out.push(Value::Object(o));
    }
    out
}

/// Decodes the J1939 log at `path`, one JSON line per decoded item to `out`.
pub fn decode_j1939_file(path: &Path, out: &mut impl Write) -> anyhow::Result<J1939Summary> {
    let mut decoder = J1939Decoder::new();
    let mut summary = J1939Summary::default();
    let mut per_kind: HashMap<&'static str, u64> = HashMap::new();
    summary.lines = read_log(path, |lf| {
        let mut decoded = Vec::new();
        decoder.decode(&lf.frame, |d| decoded.push(d));
        for line in frame_json(lf, decoded) {
            let kind = if line.get("dm1").is_some() {
                "dm1"
            } else if line.get("spns").is_some() {
                "groups"
            } else {
                "messages"
            };
            *per_kind.entry(kind).or_default() += 1;
            writeln!(out, "{line}")?;
        }
        Ok(())
    })?;
    let tp = decoder.transport.stats;
    summary.groups = per_kind.get("groups").copied().unwrap_or(0);
    summary.dm1 = per_kind.get("dm1").copied().unwrap_or(0);
    summary.messages = per_kind.get("messages").copied().unwrap_or(0);
    summary.skipped = decoder.skipped;
    summary.tp_completed = tp.completed;
    summary.tp_dropped =
        tp.timed_out + tp.aborted + tp.errors + decoder.transport.open_sessions() as u64;
    Ok(summary)
}
