//! Signals defined by a user's DBC file: the file is parsed by the `can-dbc`
//! crate, then compiled here into a lookup table and bit layouts so that decoding
//! a frame is a few shifts per signal and allocates nothing.
//!
//! Covered: standard and extended ids (bit 31 of a DBC id), Intel and Motorola
//! byte order (Motorola start bits name the most significant bit, in the DBC's
//! sawtooth numbering), signed and IEEE float signals, scale/offset, value
//! tables (negative keys included), simple multiplexing and extended/cascaded
//! multiplexing (`SG_MUL_VAL_`), and J1939 parameter groups (`VFrameFormat`
//! J1939PG, or a `ProtocolType` of J1939), which match by PGN whatever the
//! priority and source address. DBC text that is not UTF-8 is read as Latin-1.

use std::collections::HashMap;

use can_dbc::{
    AttributeDefinition, AttributeValue, AttributeValueType, ByteOrder, MessageId,
    MultiplexIndicator, SignalExtendedValueType, ValueDescription, ValueType,
};
use fleet_hal::CanFrame;

use super::j1939;

/// The most multiplexor signals one message may have.
const MAX_MULTIPLEXORS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum DbcError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("not a DBC file: {0}")]
    Parse(String),
    #[error("message {message}: {reason}")]
    Message { message: String, reason: String },
    #[error("message {message}, signal {signal}: {reason}")]
    Signal {
        message: String,
        signal: String,
        reason: String,
    },
}

/// How a signal's raw bits are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Unsigned,
    Signed,
    Float32,
    Float64,
}

/// When a multiplexed signal is present: its multiplexor's raw value lies in
/// one of the ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MuxCondition {
    /// Slot of the multiplexor among the message's multiplexors.
    pub slot: usize,
    pub ranges: Vec<(u64, u64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SignalDef {
    pub name: String,
    pub start_bit: u16,
    pub size: u16,
    pub little_endian: bool,
    pub encoding: Encoding,
    pub factor: f64,
    pub offset: f64,
    pub unit: String,
    /// Value-table names by raw value, sorted by raw value.
    pub choices: Vec<(i64, String)>,
    /// `None` for a signal that is always present.
    pub condition: Option<MuxCondition>,
    /// `Some(slot)` when other signals depend on this one's value.
    pub multiplexor_slot: Option<usize>,
    /// The J1939 suspect parameter number, from the `SPN` attribute.
    pub spn: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MessageDef {
    pub name: String,
    /// 11- or 29-bit identifier without the DBC's extended flag.
    pub id: u32,
    pub extended: bool,
    /// A J1939 parameter group: matched by PGN.
    pub j1939: bool,
    pub size: usize,
    /// Multiplexors come before the signals they select.
    pub signals: Vec<SignalDef>,
}

/// A signal's value in one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignalValue<'a> {
    pub signal: &'a SignalDef,
    /// The raw integer (sign-extended for signed signals; the bit pattern for floats).
    pub raw: i128,
    /// Engineering value: raw × factor + offset.
    pub value: f64,
    /// The value-table name of `raw`, if it has one.
    pub choice: Option<&'a str>,
}

/// Counts of what [`Database::decode`] met.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeStats {
    pub decoded: u64,
    pub unknown_id: u64,
    /// Signals that lay past the end of a short frame.
    pub truncated_signals: u64,
}

/// A compiled DBC file.
#[derive(Debug, Clone, Default)]
pub struct Database {
    messages: Vec<MessageDef>,
    by_id: HashMap<(u32, bool), usize>,
    by_pgn: HashMap<u32, usize>,
}

/// DBC text as a string: UTF-8 if it is, otherwise Latin-1 (every byte one char).
pub fn text_from_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

fn attr_int(v: &AttributeValue) -> Option<i64> {
    match v {
        AttributeValue::Uint(u) => i64::try_from(*u).ok(),
        AttributeValue::Int(i) => Some(*i),
        AttributeValue::Double(d) => Some(*d as i64),
        AttributeValue::String(_) => None,
    }
}

fn message_key(id: MessageId) -> (u32, bool) {
    match id {
        MessageId::Standard(i) => (u32::from(i), false),
        MessageId::Extended(i) => (i & 0x1FFF_FFFF, true),
    }
}

/// `true` when the `VFrameFormat` value (an enum index or name) means J1939PG.
fn is_j1939_frame_format(v: &AttributeValue, names: &[String]) -> bool {
    match v {
        AttributeValue::String(s) => s == "J1939PG",
        other => attr_int(other)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| names.get(i))
            .is_some_and(|n| n == "J1939PG"),
    }
}

impl Database {
    /// Reads and compiles the DBC file at `path`.
    pub fn load(path: &std::path::Path) -> Result<Self, DbcError> {
        let bytes = std::fs::read(path).map_err(|source| DbcError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DbcError> {
        Self::parse(&text_from_bytes(bytes))
    }

    pub fn parse(text: &str) -> Result<Self, DbcError> {
        let dbc = can_dbc::Dbc::try_from(text).map_err(|e| DbcError::Parse(e.to_string()))?;
        Self::compile(&dbc)
    }

    fn compile(dbc: &can_dbc::Dbc) -> Result<Self, DbcError> {
        let frame_format_names: Vec<String> = dbc
            .attribute_definitions
            .iter()
            .find_map(|d| match d {
                AttributeDefinition::Message(name, AttributeValueType::Enum(values))
                    if name == "VFrameFormat" =>
                {
                    Some(values.clone())
                }
                _ => None,
            })
            .unwrap_or_default();
        let default_j1939 = dbc.attribute_defaults.iter().any(|d| {
            d.name == "VFrameFormat" && is_j1939_frame_format(&d.value, &frame_format_names)
        }) || dbc
            .attribute_values_database
            .iter()
            .any(|a| a.name == "ProtocolType" && a.value == AttributeValue::String("J1939".into()));

        let mut db = Database::default();
        for m in &dbc.messages {
            let (id, extended) = message_key(m.id);
            let explicit = dbc
                .attribute_values_message
                .iter()
                .find(|a| a.message_id == m.id && a.name == "VFrameFormat");
            let j1939 = extended
                && match explicit {
                    Some(a) => is_j1939_frame_format(&a.value, &frame_format_names),
                    None => default_j1939,
                };
            let def = compile_message(dbc, m, id, extended, j1939)?;
            let index = db.messages.len();
            db.by_id.insert((id, extended), index);
            if j1939 {
                db.by_pgn.entry(j1939::parse_id(id).pgn).or_insert(index);
            }
            db.messages.push(def);
        }
        Ok(db)
    }

    pub fn messages(&self) -> &[MessageDef] {
        &self.messages
    }

    /// The definition a frame with this id decodes by: the exact id first, then
    /// a J1939 parameter group of the same PGN.
    pub fn lookup(&self, id: u32, extended: bool) -> Option<&MessageDef> {
        if let Some(&i) = self.by_id.get(&(id, extended)) {
            return Some(&self.messages[i]);
        }
        if extended && !self.by_pgn.is_empty() {
            let pgn = j1939::parse_id(id).pgn;
            return self.by_pgn.get(&pgn).map(|&i| &self.messages[i]);
        }
        None
    }

    /// Decodes `data` received with `id`; calls `f` for each present signal.
    /// `None` if no message of the database matches the id.
    pub fn decode_data<'a>(
        &'a self,
        id: u32,
        extended: bool,
        data: &[u8],
        stats: &mut DecodeStats,
        f: impl FnMut(SignalValue<'a>),
    ) -> Option<&'a MessageDef> {
        let Some(m) = self.lookup(id, extended) else {
            stats.unknown_id += 1;
            return None;
        };
        stats.decoded += 1;
        stats.truncated_signals += u64::from(m.decode(data, f));
        Some(m)
    }

    /// [`Database::decode_data`] for a received frame (remote frames carry no signals).
    pub fn decode<'a>(
        &'a self,
        frame: &CanFrame,
        stats: &mut DecodeStats,
        f: impl FnMut(SignalValue<'a>),
    ) -> Option<&'a MessageDef> {
        if frame.rtr {
            return None;
        }
        self.decode_data(frame.id, frame.extended, frame.payload(), stats, f)
    }
}

/// A signal's multiplexor (its index among the message's signals) and the raw
/// values of it that select the signal.
type Selector = (usize, Vec<(u64, u64)>);

fn compile_message(
    dbc: &can_dbc::Dbc,
    m: &can_dbc::Message,
    id: u32,
    extended: bool,
    j1939: bool,
) -> Result<MessageDef, DbcError> {
    let err = |signal: &str, reason: String| DbcError::Signal {
        message: m.name.clone(),
        signal: signal.to_owned(),
        reason,
    };
    let extended_mux: Vec<_> = dbc
        .extended_multiplex
        .iter()
        .filter(|x| x.message_id == m.id)
        .collect();
    let simple_mux = m
        .signals
        .iter()
        .find(|s| s.multiplexer_indicator == MultiplexIndicator::Multiplexor);

    // Who selects each signal, and for which raw values.
    let mut parent: Vec<Option<Selector>> = Vec::with_capacity(m.signals.len());
    for s in &m.signals {
        let find = |name: &str| m.signals.iter().position(|x| x.name == name);
        let p = if let Some(x) = extended_mux.iter().find(|x| x.signal_name == s.name) {
            let i = find(&x.multiplexor_signal_name).ok_or_else(|| {
                err(
                    &s.name,
                    format!(
                        "SG_MUL_VAL_ names unknown multiplexor {}",
                        x.multiplexor_signal_name
                    ),
                )
            })?;
            let ranges = x
                .mappings
                .iter()
                .map(|r| (r.min_value, r.max_value))
                .collect();
            Some((i, ranges))
        } else {
            match s.multiplexer_indicator {
                MultiplexIndicator::MultiplexedSignal(v)
                | MultiplexIndicator::MultiplexorAndMultiplexedSignal(v) => {
                    if extended_mux.is_empty() {
                        let mux = simple_mux.ok_or_else(|| {
                            err(
                                &s.name,
                                "multiplexed but the message has no multiplexor".into(),
                            )
                        })?;
                        Some((find(&mux.name).unwrap_or(0), vec![(v, v)]))
                    } else {
                        // With extended multiplexing every multiplexed signal needs
                        // its SG_MUL_VAL_ line; guessing the multiplexor would decode
                        // wrong values.
                        let multiplexors = m
                            .signals
                            .iter()
                            .filter(|x| {
                                matches!(
                                    x.multiplexer_indicator,
                                    MultiplexIndicator::Multiplexor
                                        | MultiplexIndicator::MultiplexorAndMultiplexedSignal(_)
                                )
                            })
                            .count();
                        if multiplexors != 1 {
                            return Err(err(
                                &s.name,
                                "extended multiplexing without an SG_MUL_VAL_ line for this signal"
                                    .into(),
                            ));
                        }
                        let mux = m
                            .signals
                            .iter()
                            .position(|x| {
                                matches!(
                                    x.multiplexer_indicator,
                                    MultiplexIndicator::Multiplexor
                                        | MultiplexIndicator::MultiplexorAndMultiplexedSignal(_)
                                )
                            })
                            .unwrap_or(0);
                        Some((mux, vec![(v, v)]))
                    }
                }
                _ => None,
            }
        };
        parent.push(p);
    }

    // Order signals so that each multiplexor comes before what it selects, and
    // reject a selection cycle.
    let n = m.signals.len();
    let mut order = Vec::with_capacity(n);
    let mut placed = vec![false; n];
    while order.len() < n {
        let before = order.len();
        for i in 0..n {
            if !placed[i] && parent[i].as_ref().is_none_or(|(p, _)| placed[*p]) {
                placed[i] = true;
                order.push(i);
            }
        }
        if order.len() == before {
            return Err(DbcError::Message {
                message: m.name.clone(),
                reason: "multiplexors select each other in a cycle".into(),
            });
        }
    }
    let mut slots: Vec<usize> = Vec::new();
    for p in parent.iter().flatten() {
        if !slots.contains(&p.0) {
            slots.push(p.0);
        }
    }
    if slots.len() > MAX_MULTIPLEXORS {
        return Err(DbcError::Message {
            message: m.name.clone(),
            reason: format!("more than {MAX_MULTIPLEXORS} multiplexors"),
        });
    }

    let mut signals = Vec::with_capacity(n);
    for &i in &order {
        let s = &m.signals[i];
        let float = dbc
            .signal_extended_value_type_list
            .iter()
            .find(|x| x.message_id == m.id && x.signal_name == s.name)
            .map(|x| x.signal_extended_value_type);
        let encoding = match (float, s.value_type) {
            (Some(SignalExtendedValueType::IEEEfloat32Bit), _) => Encoding::Float32,
            (Some(SignalExtendedValueType::IEEEdouble64bit), _) => Encoding::Float64,
            (_, ValueType::Signed) => Encoding::Signed,
            (_, ValueType::Unsigned) => Encoding::Unsigned,
        };
        let want = match encoding {
            Encoding::Float32 => Some(32),
            Encoding::Float64 => Some(64),
            _ => None,
        };
        if !(1..=64).contains(&s.size) || want.is_some_and(|w| w != s.size) {
            return Err(err(&s.name, format!("unsupported size of {} bits", s.size)));
        }
        let little_endian = s.byte_order == ByteOrder::LittleEndian;
        if last_byte(s.start_bit, s.size, little_endian) >= j1939::MAX_TP_SIZE as u64 {
            return Err(err(&s.name, "lies outside any CAN payload".into()));
        }
        let mut choices: Vec<(i64, String)> = dbc
            .value_descriptions
            .iter()
            .find_map(|v| match v {
                ValueDescription::Signal {
                    message_id,
                    name,
                    value_descriptions,
                } if *message_id == m.id && *name == s.name => Some(
                    value_descriptions
                        .iter()
                        .map(|d| (d.id, d.description.clone()))
                        .collect(),
                ),
                _ => None,
            })
            .unwrap_or_default();
        choices.sort_by_key(|c| c.0);
        choices.dedup_by_key(|c| c.0);
        let spn = dbc
            .attribute_values_signal
            .iter()
            .find(|a| a.message_id == m.id && a.signal_name == s.name && a.name == "SPN")
            .and_then(|a| attr_int(&a.value))
            .and_then(|v| u32::try_from(v).ok());
        signals.push(SignalDef {
            name: s.name.clone(),
            start_bit: s.start_bit as u16,
            size: s.size as u16,
            little_endian,
            encoding,
            factor: s.factor,
            offset: s.offset,
            unit: s.unit.clone(),
            choices,
            condition: parent[i].as_ref().map(|(p, ranges)| MuxCondition {
                slot: slots.iter().position(|x| x == p).unwrap_or(0),
                ranges: ranges.clone(),
            }),
            multiplexor_slot: slots.iter().position(|x| *x == i),
            spn,
        });
    }
    Ok(MessageDef {
        name: m.name.clone(),
        id,
        extended,
        j1939,
        size: m.size as usize,
        signals,
    })
}

/// The last payload byte a signal occupies (Motorola start bits name the MSB;
/// the rest of the signal runs on through the big-endian bit stream).
fn last_byte(start: u64, size: u64, little_endian: bool) -> u64 {
    if little_endian {
        (start + size - 1) / 8
    } else {
        ((start / 8) * 8 + (7 - start % 8) + size - 1) / 8
    }
}

impl SignalDef {
    /// The raw bits, if the signal lies inside `data`.
    pub fn extract(&self, data: &[u8]) -> Option<u64> {
        let size = u32::from(self.size);
        let start = u32::from(self.start_bit);
        let mask = if size == 64 {
            u64::MAX
        } else {
            (1u64 << size) - 1
        };
        if self.little_endian {
            let end = start + size;
            if end as usize > data.len() * 8 {
                return None;
            }
            if data.len() <= 8 {
                let mut buf = [0u8; 8];
                buf[..data.len()].copy_from_slice(data);
                return Some((u64::from_le_bytes(buf) >> start) & mask);
            }
            let mut v = 0u64;
            for i in (0..size).rev() {
                let bit = start + i;
                v = v << 1 | u64::from(data[(bit / 8) as usize] >> (bit % 8) & 1);
            }
            Some(v)
        } else {
            let msb = (start / 8) * 8 + (7 - start % 8);
            if (msb + size) as usize > data.len() * 8 {
                return None;
            }
            if data.len() <= 8 {
                let mut buf = [0u8; 8];
                buf[..data.len()].copy_from_slice(data);
                let be = u64::from_be_bytes(buf) << msb;
                return Some(if size == 64 { be } else { be >> (64 - size) });
            }
            let mut v = 0u64;
            for i in 0..size {
                let p = msb + i;
                v = v << 1 | u64::from(data[(p / 8) as usize] >> (7 - p % 8) & 1);
            }
            Some(v)
        }
    }

    /// Raw bits to the signal's integer and engineering value.
    pub fn convert(&self, bits: u64) -> (i128, f64) {
        let size = u32::from(self.size);
        match self.encoding {
            Encoding::Unsigned => (i128::from(bits), bits as f64 * self.factor + self.offset),
            Encoding::Signed => {
                let v = if size < 64 && bits >> (size - 1) & 1 == 1 {
                    (bits | (u64::MAX << size)) as i64
                } else {
                    bits as i64
                };
                (i128::from(v), v as f64 * self.factor + self.offset)
            }
            Encoding::Float32 => (
                i128::from(bits),
                f64::from(f32::from_bits(bits as u32)) * self.factor + self.offset,
            ),
            Encoding::Float64 => (
                i128::from(bits),
                f64::from_bits(bits) * self.factor + self.offset,
            ),
        }
    }

    pub fn choice(&self, raw: i128) -> Option<&str> {
        if self.choices.is_empty() {
            return None;
        }
        let raw = i64::try_from(raw).ok()?;
        self.choices
            .binary_search_by_key(&raw, |c| c.0)
            .ok()
            .map(|i| self.choices[i].1.as_str())
    }
}

impl MessageDef {
    /// Decodes the signals present in `data`; returns how many lay past its end.
    pub fn decode<'a>(&'a self, data: &[u8], mut f: impl FnMut(SignalValue<'a>)) -> u32 {
        let mut mux: [Option<u64>; MAX_MULTIPLEXORS] = [None; MAX_MULTIPLEXORS];
        let mut truncated = 0;
        for s in &self.signals {
            if let Some(c) = &s.condition {
                let Some(v) = mux[c.slot] else { continue };
                if !c.ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&v)) {
                    continue;
                }
            }
            let Some(bits) = s.extract(data) else {
                truncated += 1;
                continue;
            };
            let (raw, value) = s.convert(bits);
            if let Some(slot) = s.multiplexor_slot {
                mux[slot] = Some(bits);
            }
            f(SignalValue {
                signal: s,
                raw,
                value,
                choice: s.choice(raw),
            });
        }
        truncated
    }
}
