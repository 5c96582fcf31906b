//! The sync batch: a versioned, checksummed, compressed, column-oriented run of
//! events. Format in `docs/PROTOCOL.md`; this module is its reference implementation.
//!
//! Decoding separates two kinds of trouble. Damage to the frame or its structure
//! (bad magic, checksum, truncation, a count that does not fit) refuses the whole
//! batch with [`BatchError`]. An event that is well framed but makes no sense (an
//! unknown kind code, a latitude of 200°, broken JSON) is returned in
//! [`Batch::rejects`] so the server can quarantine it and keep the rest.

use crate::event::{
    BootId, Event, EventData, EventTime, Kind, Position, Priority, TimeAnchor, TimeSource,
};
use crate::varint::{put_i64, put_u64, Reader, VarintError};
use crate::Hlc;
use thiserror::Error;
use uuid::Uuid;

pub const MAGIC: [u8; 3] = *b"FLB";
pub const VERSION: u8 = 1;
pub const FRAME_HEADER_LEN: usize = 13;
/// Largest body a decoder will inflate, whatever the frame claims.
pub const MAX_UNCOMPRESSED: usize = 16 << 20;
pub const MAX_EVENTS: usize = 200_000;
const MAX_ANCHORS: usize = 1_024;

const COMPRESSION_NONE: u8 = 0;
const COMPRESSION_ZSTD: u8 = 1;

const TAG_NONE: u8 = 0;
const TAG_POSITION: u8 = 1;
const TAG_JSON: u8 = 2;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("not a batch: bad magic bytes")]
    BadMagic,
    #[error("batch format version {0} is not supported (this build reads version {VERSION})")]
    UnsupportedVersion(u8),
    #[error("compression method {0} is not supported")]
    UnsupportedCompression(u8),
    #[error("batch declares {0} bytes uncompressed, more than the {MAX_UNCOMPRESSED} allowed")]
    TooLarge(usize),
    #[error("batch is truncated")]
    Truncated,
    #[error("batch body does not decompress: {0}")]
    Decompress(String),
    #[error("batch checksum does not match its contents")]
    Checksum,
    #[error("malformed batch: {0}")]
    Malformed(String),
    #[error("cannot encode batch: {0}")]
    Invalid(String),
}

impl BatchError {
    /// The stable error code clients see at the HTTP edge.
    pub fn code(&self) -> &'static str {
        match self {
            BatchError::BadMagic | BatchError::Malformed(_) | BatchError::Invalid(_) => {
                "batch_malformed"
            }
            BatchError::UnsupportedVersion(_) | BatchError::UnsupportedCompression(_) => {
                "batch_unsupported_version"
            }
            BatchError::TooLarge(_) => "batch_too_large",
            BatchError::Truncated => "batch_truncated",
            BatchError::Decompress(_) | BatchError::Checksum => "batch_corrupt",
        }
    }
}

impl From<VarintError> for BatchError {
    fn from(e: VarintError) -> Self {
        match e {
            VarintError::Truncated => BatchError::Truncated,
            VarintError::Overlong => BatchError::Malformed("overlong varint".into()),
        }
    }
}

/// Who sent the batch and which sequence numbers it accounts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchHeader {
    pub tenant_id: Uuid,
    pub device_id: Uuid,
    /// The batch accounts for every seq in `first_seq..=last_seq`. A seq in that range
    /// with no event was evicted on the device and will never come.
    pub first_seq: u64,
    pub last_seq: u64,
    /// What the device has learned about true time, per boot.
    pub anchors: Vec<TimeAnchor>,
}

/// An event that was framed correctly but can't be stored as it is.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedEvent {
    pub seq: u64,
    pub kind: Option<String>,
    pub reason: String,
    /// What could be read of the event, for the operator.
    pub raw: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub header: BatchHeader,
    pub events: Vec<Event>,
    pub rejects: Vec<RejectedEvent>,
}

impl Batch {
    /// Seqs in the covered range that carry no event: evicted on the device.
    pub fn evicted_count(&self) -> u64 {
        let span = self.header.last_seq - self.header.first_seq + 1;
        span - (self.events.len() + self.rejects.len()) as u64
    }
}

/// Encode events (sorted by strictly increasing seq, all within the header's range).
/// `level` is the zstd level; 0 stores the body uncompressed.
pub fn encode_batch(
    header: &BatchHeader,
    events: &[Event],
    level: i32,
) -> Result<Vec<u8>, BatchError> {
    let body = encode_body(header, events)?;
    if body.len() > MAX_UNCOMPRESSED {
        return Err(BatchError::TooLarge(body.len()));
    }
    let crc = crc32fast::hash(&body);
    let (method, payload) = if level == 0 {
        (COMPRESSION_NONE, body.clone())
    } else {
        let z =
            zstd::bulk::compress(&body, level).map_err(|e| BatchError::Invalid(e.to_string()))?;
        (COMPRESSION_ZSTD, z)
    };
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(method);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Read only the frame and the sender's identity, without decoding the events.
pub fn peek_header(frame: &[u8]) -> Result<BatchHeader, BatchError> {
    let body = unframe(frame)?;
    let mut r = Reader::new(&body);
    read_header(&mut r)
}

pub fn decode_batch(frame: &[u8]) -> Result<Batch, BatchError> {
    let body = unframe(frame)?;
    decode_body(&body)
}

fn unframe(frame: &[u8]) -> Result<Vec<u8>, BatchError> {
    if frame.len() < 3 {
        return Err(BatchError::Truncated);
    }
    if frame[..3] != MAGIC {
        return Err(BatchError::BadMagic);
    }
    if frame.len() < FRAME_HEADER_LEN {
        return Err(BatchError::Truncated);
    }
    if frame[3] != VERSION {
        return Err(BatchError::UnsupportedVersion(frame[3]));
    }
    let method = frame[4];
    let len = u32::from_le_bytes(frame[5..9].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(frame[9..13].try_into().expect("4 bytes"));
    if len > MAX_UNCOMPRESSED {
        return Err(BatchError::TooLarge(len));
    }
    let payload = &frame[FRAME_HEADER_LEN..];
    let body = match method {
        COMPRESSION_NONE => payload.to_vec(),
        COMPRESSION_ZSTD => {
            // The capacity bounds the output, so a decompression bomb stops at `len`.
            zstd::bulk::decompress(payload, len)
                .map_err(|e| BatchError::Decompress(e.to_string()))?
        }
        m => return Err(BatchError::UnsupportedCompression(m)),
    };
    if body.len() != len {
        return Err(if body.len() < len {
            BatchError::Truncated
        } else {
            BatchError::Malformed("body longer than declared".into())
        });
    }
    if crc32fast::hash(&body) != crc {
        return Err(BatchError::Checksum);
    }
    Ok(body)
}

fn put_section(out: &mut Vec<u8>, section: &[u8]) {
    put_u64(out, section.len() as u64);
    out.extend_from_slice(section);
}

fn encode_body(h: &BatchHeader, events: &[Event]) -> Result<Vec<u8>, BatchError> {
    if h.last_seq < h.first_seq || h.first_seq == 0 {
        return Err(BatchError::Invalid(
            "seq range is empty or starts at 0".into(),
        ));
    }
    if events.len() > MAX_EVENTS {
        return Err(BatchError::Invalid(format!(
            "{} events, at most {MAX_EVENTS}",
            events.len()
        )));
    }
    let mut out = Vec::with_capacity(64 + events.len() * 12);
    out.extend_from_slice(h.tenant_id.as_bytes());
    out.extend_from_slice(h.device_id.as_bytes());
    put_u64(&mut out, h.first_seq);
    put_u64(&mut out, h.last_seq - h.first_seq);
    put_u64(&mut out, events.len() as u64);
    put_u64(&mut out, h.anchors.len() as u64);
    for a in &h.anchors {
        out.extend_from_slice(&a.boot_id.0);
        put_u64(&mut out, a.mono_ms);
        put_i64(&mut out, a.true_ms);
        out.push(a.source as u8);
        put_u64(&mut out, u64::from(a.uncertainty_ms));
    }

    let mut boots: Vec<BootId> = Vec::new();
    let mut seqs = Vec::new();
    let mut boot_ix = Vec::new();
    let mut monos = Vec::new();
    let mut walls = Vec::new();
    let mut hlcs = Vec::new();
    let mut kinds = Vec::new();
    let mut meta = Vec::new();
    let mut tags = Vec::new();
    let mut positions = Vec::new();
    let mut jsons = Vec::new();

    let mut prev_seq = h.first_seq - 1;
    let mut prev_mono = 0i64;
    let mut prev_offset = 0i64;
    let mut prev_config = 0i64;
    let mut pos_state = PositionDelta::default();
    for e in events {
        if e.seq <= prev_seq || e.seq > h.last_seq {
            return Err(BatchError::Invalid(format!(
                "seq {} out of order or outside the range",
                e.seq
            )));
        }
        put_u64(&mut seqs, e.seq - prev_seq - 1);
        prev_seq = e.seq;

        let b = match boots.iter().position(|b| *b == e.time.boot_id) {
            Some(i) => i,
            None => {
                boots.push(e.time.boot_id);
                boots.len() - 1
            }
        };
        put_u64(&mut boot_ix, b as u64);
        let mono = e.time.mono_ms as i64;
        put_i64(&mut monos, mono.wrapping_sub(prev_mono));
        prev_mono = mono;
        let offset = e.time.wall_ms.wrapping_sub(mono);
        put_i64(&mut walls, offset.wrapping_sub(prev_offset));
        prev_offset = offset;
        put_i64(
            &mut hlcs,
            (e.time.hlc.physical_ms() as i64).wrapping_sub(e.time.wall_ms),
        );
        put_u64(&mut hlcs, u64::from(e.time.hlc.logical()));

        let code = e.kind.code();
        put_u64(&mut kinds, code);
        if code == 0 {
            put_u64(&mut kinds, e.kind.as_str().len() as u64);
            kinds.extend_from_slice(e.kind.as_str().as_bytes());
        }
        meta.push(e.priority as u8);
        put_i64(&mut meta, i64::from(e.config_version) - prev_config);
        prev_config = i64::from(e.config_version);

        match &e.data {
            EventData::None => tags.push(TAG_NONE),
            EventData::Position(p) => {
                tags.push(TAG_POSITION);
                pos_state.encode(&mut positions, p);
            }
            EventData::Json(v) => {
                tags.push(TAG_JSON);
                let s = serde_json::to_vec(v).map_err(|e| BatchError::Invalid(e.to_string()))?;
                put_u64(&mut jsons, s.len() as u64);
                jsons.extend_from_slice(&s);
            }
        }
    }
    put_u64(&mut out, boots.len() as u64);
    for b in &boots {
        out.extend_from_slice(&b.0);
    }
    for s in [
        &seqs, &boot_ix, &monos, &walls, &hlcs, &kinds, &meta, &tags, &positions, &jsons,
    ] {
        put_section(&mut out, s);
    }
    Ok(out)
}

fn read_uuid(r: &mut Reader<'_>) -> Result<Uuid, BatchError> {
    let b: [u8; 16] = r.bytes(16)?.try_into().expect("16 bytes");
    Ok(Uuid::from_bytes(b))
}

fn read_count(r: &mut Reader<'_>, max: usize, what: &str) -> Result<usize, BatchError> {
    let n = r.u64()?;
    if n > max as u64 {
        return Err(BatchError::Malformed(format!("{n} {what}, at most {max}")));
    }
    Ok(n as usize)
}

fn read_header(r: &mut Reader<'_>) -> Result<BatchHeader, BatchError> {
    let tenant_id = read_uuid(r)?;
    let device_id = read_uuid(r)?;
    let first_seq = r.u64()?;
    let span = r.u64()?;
    if first_seq == 0 {
        return Err(BatchError::Malformed("first seq is 0".into()));
    }
    let last_seq = first_seq
        .checked_add(span)
        .ok_or_else(|| BatchError::Malformed("seq range overflows".into()))?;
    Ok(BatchHeader {
        tenant_id,
        device_id,
        first_seq,
        last_seq,
        anchors: Vec::new(),
    })
}

fn decode_body(body: &[u8]) -> Result<Batch, BatchError> {
    let mut r = Reader::new(body);
    let mut header = read_header(&mut r)?;
    let n = read_count(&mut r, MAX_EVENTS, "events")?;
    if n as u64 > header.last_seq - header.first_seq + 1 {
        return Err(BatchError::Malformed(
            "more events than seqs in the range".into(),
        ));
    }
    let n_anchors = read_count(&mut r, MAX_ANCHORS, "time anchors")?;
    for _ in 0..n_anchors {
        let boot_id = BootId(r.bytes(16)?.try_into().expect("16 bytes"));
        let mono_ms = r.u64()?;
        let true_ms = r.i64()?;
        let source = TimeSource::from_u8(r.u8()?)
            .ok_or_else(|| BatchError::Malformed("unknown time source".into()))?;
        let uncertainty_ms = u32::try_from(r.u64()?)
            .map_err(|_| BatchError::Malformed("uncertainty overflows".into()))?;
        header.anchors.push(TimeAnchor {
            boot_id,
            mono_ms,
            true_ms,
            source,
            uncertainty_ms,
        });
    }
    let n_boots = read_count(&mut r, n.max(1), "boot ids")?;
    let mut boots = Vec::with_capacity(n_boots);
    for _ in 0..n_boots {
        boots.push(BootId(r.bytes(16)?.try_into().expect("16 bytes")));
    }
    let mut sections = Vec::with_capacity(10);
    for _ in 0..10 {
        let len = r.u64()?;
        let len = usize::try_from(len).map_err(|_| BatchError::Truncated)?;
        sections.push(Reader::new(r.bytes(len)?));
    }
    if !r.is_empty() {
        return Err(BatchError::Malformed(
            "trailing bytes after the last section".into(),
        ));
    }
    let [mut seqs, mut boot_ix, mut monos, mut walls, mut hlcs, mut kinds, mut meta, mut tags, mut positions, mut jsons]: [Reader<'_>; 10] =
        sections.try_into().expect("ten sections");

    // Every event takes at least one byte in each of several sections, so the body
    // length bounds what a truthful count can be; a lying count can't make us reserve more.
    let mut events = Vec::with_capacity(n.min(body.len() / 8));
    let mut rejects = Vec::new();
    let mut prev_seq = header.first_seq - 1;
    let mut prev_mono = 0i64;
    let mut prev_offset = 0i64;
    let mut prev_config = 0i64;
    let mut pos_state = PositionDelta::default();
    for _ in 0..n {
        let gap = seqs.u64()?;
        let seq = prev_seq
            .checked_add(gap)
            .and_then(|s| s.checked_add(1))
            .filter(|s| *s <= header.last_seq)
            .ok_or_else(|| BatchError::Malformed("seq outside the batch range".into()))?;
        prev_seq = seq;
        let b = boot_ix.u64()?;
        let boot_id = *boots
            .get(usize::try_from(b).unwrap_or(usize::MAX))
            .ok_or_else(|| BatchError::Malformed("boot index out of range".into()))?;
        let mono = prev_mono.wrapping_add(monos.i64()?);
        prev_mono = mono;
        let offset = prev_offset.wrapping_add(walls.i64()?);
        prev_offset = offset;
        let wall_ms = mono.wrapping_add(offset);
        let hlc_phys = wall_ms.wrapping_add(hlcs.i64()?);
        let logical = hlcs.u64()?;
        let code = kinds.u64()?;
        let kind = if code == 0 {
            let len = read_count(&mut kinds, 64, "kind name bytes")?;
            let name = kinds.bytes(len)?;
            Err(String::from_utf8_lossy(name).into_owned())
        } else {
            Kind::from_code(code).ok_or_else(|| format!("#{code}"))
        };
        let prio_byte = meta.u8()?;
        let config = prev_config.wrapping_add(meta.i64()?);
        prev_config = config;
        let tag = tags.u8()?;
        let data = match tag {
            TAG_NONE => Ok(EventData::None),
            TAG_POSITION => Ok(EventData::Position(pos_state.decode(&mut positions)?)),
            TAG_JSON => {
                let len = read_count(&mut jsons, MAX_UNCOMPRESSED, "json bytes")?;
                let raw = jsons.bytes(len)?;
                serde_json::from_slice::<serde_json::Value>(raw)
                    .map(EventData::Json)
                    .map_err(|e| format!("payload is not valid JSON: {e}"))
            }
            t => return Err(BatchError::Malformed(format!("unknown data tag {t}"))),
        };

        let mono_ms = u64::try_from(mono).map_err(|_| String::from("negative monotonic time"));
        let time = mono_ms.map(|mono_ms| EventTime {
            boot_id,
            mono_ms,
            wall_ms,
            hlc: Hlc::new(
                hlc_phys.max(0) as u64,
                logical.min(u64::from(u16::MAX)) as u16,
            ),
        });
        let built = (|| {
            let kind = match &kind {
                Ok(k) => k.clone(),
                Err(name) if code == 0 && Kind::is_valid_name(name) => Kind::new(name.clone()),
                Err(name) if code == 0 => return Err(format!("invalid kind name {name:?}")),
                Err(_) => return Err(format!("unknown kind code {code}")),
            };
            let priority = Priority::from_u8(prio_byte)
                .ok_or_else(|| format!("unknown priority {prio_byte}"))?;
            let config_version = u32::try_from(config)
                .map_err(|_| format!("config version {config} out of range"))?;
            let time = time.clone()?;
            let data = data.clone()?;
            let e = Event {
                seq,
                kind,
                priority,
                time,
                config_version,
                data,
            };
            match e.invalid_reason() {
                Some(reason) => Err(reason),
                None => Ok(e),
            }
        })();
        match built {
            Ok(e) => events.push(e),
            Err(reason) => rejects.push(RejectedEvent {
                seq,
                kind: Some(match &kind {
                    Ok(k) => k.as_str().to_owned(),
                    Err(n) => n.clone(),
                }),
                reason,
                raw: serde_json::json!({
                    "boot_id": boot_id.to_string(),
                    "mono_ms": mono,
                    "wall_ms": wall_ms,
                    "priority": prio_byte,
                    "config_version": config,
                    "data": data.as_ref().map(EventData::to_json).unwrap_or(serde_json::Value::Null),
                }),
            }),
        }
    }
    for (name, s) in [
        ("seq", &seqs),
        ("boot", &boot_ix),
        ("mono", &monos),
        ("wall", &walls),
        ("hlc", &hlcs),
        ("kind", &kinds),
        ("meta", &meta),
        ("tag", &tags),
        ("position", &positions),
        ("json", &jsons),
    ] {
        if !s.is_empty() {
            return Err(BatchError::Malformed(format!(
                "{name} section has trailing bytes"
            )));
        }
    }
    Ok(Batch {
        header,
        events,
        rejects,
    })
}

/// Delta coding state for consecutive positions in one batch: latitude and
/// longitude as deltas of deltas (a vehicle at steady speed costs a byte each),
/// the rest as plain deltas.
#[derive(Default)]
struct PositionDelta {
    lat: i64,
    lon: i64,
    dlat: i64,
    dlon: i64,
    alt: i64,
    speed: i64,
    heading: i64,
}

const P_ALT: u8 = 1;
const P_SPEED: u8 = 2;
const P_HEADING: u8 = 4;
const P_HDOP: u8 = 8;
const P_SATS: u8 = 16;

impl PositionDelta {
    fn encode(&mut self, out: &mut Vec<u8>, p: &Position) {
        let mut flags = (p.fix & 3) << 5;
        flags |= if p.alt_dm.is_some() { P_ALT } else { 0 };
        flags |= if p.speed_cms.is_some() { P_SPEED } else { 0 };
        flags |= if p.heading_cdeg.is_some() {
            P_HEADING
        } else {
            0
        };
        flags |= if p.hdop_d.is_some() { P_HDOP } else { 0 };
        flags |= if p.sats.is_some() { P_SATS } else { 0 };
        // Fix values above 3 don't fit two bits; the high bit says so and a byte follows.
        if p.fix > 3 {
            flags |= 0x80;
        }
        out.push(flags);
        if p.fix > 3 {
            out.push(p.fix);
        }
        let lat = i64::from(p.lat_e7);
        let lon = i64::from(p.lon_e7);
        let dlat = lat - self.lat;
        let dlon = lon - self.lon;
        put_i64(out, dlat - self.dlat);
        put_i64(out, dlon - self.dlon);
        (self.lat, self.lon, self.dlat, self.dlon) = (lat, lon, dlat, dlon);
        if let Some(a) = p.alt_dm {
            put_i64(out, i64::from(a) - self.alt);
            self.alt = i64::from(a);
        }
        if let Some(s) = p.speed_cms {
            put_i64(out, i64::from(s) - self.speed);
            self.speed = i64::from(s);
        }
        if let Some(h) = p.heading_cdeg {
            put_i64(out, i64::from(h) - self.heading);
            self.heading = i64::from(h);
        }
        if let Some(h) = p.hdop_d {
            put_u64(out, u64::from(h));
        }
        if let Some(s) = p.sats {
            out.push(s);
        }
    }

    fn decode(&mut self, r: &mut Reader<'_>) -> Result<Position, BatchError> {
        let flags = r.u8()?;
        let fix = if flags & 0x80 != 0 {
            r.u8()?
        } else {
            (flags >> 5) & 3
        };
        let bad = |what: &str| BatchError::Malformed(format!("position {what} overflows"));
        self.dlat = self.dlat.wrapping_add(r.i64()?);
        self.dlon = self.dlon.wrapping_add(r.i64()?);
        self.lat = self.lat.wrapping_add(self.dlat);
        self.lon = self.lon.wrapping_add(self.dlon);
        let lat_e7 = i32::try_from(self.lat).map_err(|_| bad("latitude"))?;
        let lon_e7 = i32::try_from(self.lon).map_err(|_| bad("longitude"))?;
        let alt_dm = if flags & P_ALT != 0 {
            self.alt = self.alt.wrapping_add(r.i64()?);
            Some(i32::try_from(self.alt).map_err(|_| bad("altitude"))?)
        } else {
            None
        };
        let speed_cms = if flags & P_SPEED != 0 {
            self.speed = self.speed.wrapping_add(r.i64()?);
            Some(u32::try_from(self.speed).map_err(|_| bad("speed"))?)
        } else {
            None
        };
        let heading_cdeg = if flags & P_HEADING != 0 {
            self.heading = self.heading.wrapping_add(r.i64()?);
            Some(u16::try_from(self.heading).map_err(|_| bad("heading"))?)
        } else {
            None
        };
        let hdop_d = if flags & P_HDOP != 0 {
            Some(u16::try_from(r.u64()?).map_err(|_| bad("hdop"))?)
        } else {
            None
        };
        let sats = if flags & P_SATS != 0 {
            Some(r.u8()?)
        } else {
            None
        };
        Ok(Position {
            lat_e7,
            lon_e7,
            alt_dm,
            speed_cms,
            heading_cdeg,
            hdop_d,
            sats,
            fix,
        })
    }
}
