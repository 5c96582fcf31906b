//! The event: what a device records and the server keeps, one per sequence number.

use crate::clock::Hlc;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// Delivery and retention class. Critical events are committed at once and never
/// evicted before the server has them; telemetry is group-committed and evicted first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Telemetry = 0,
    Normal = 1,
    Critical = 2,
}

impl Priority {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Priority::Telemetry),
            1 => Some(Priority::Normal),
            2 => Some(Priority::Critical),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Telemetry => "telemetry",
            Priority::Normal => "normal",
            Priority::Critical => "critical",
        }
    }
}

/// The kernel's id of one boot (`/proc/sys/kernel/random/boot_id`), or a random one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BootId(pub [u8; 16]);

impl BootId {
    pub fn random() -> Self {
        BootId(*uuid::Uuid::new_v4().as_bytes())
    }

    pub fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::parse_str(s.trim())
            .ok()
            .map(|u| BootId(*u.as_bytes()))
    }
}

impl fmt::Display for BootId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_bytes(self.0).hyphenated().fmt(f)
    }
}

impl fmt::Debug for BootId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BootId({self})")
    }
}

impl Serialize for BootId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BootId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        BootId::parse(&s).ok_or_else(|| serde::de::Error::custom("boot id is not a uuid"))
    }
}

/// When an event happened, as well as the device could tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventTime {
    pub boot_id: BootId,
    /// Milliseconds since boot on a clock that never steps.
    pub mono_ms: u64,
    /// The device's wall-clock estimate, Unix milliseconds. May be wrong (no RTC).
    pub wall_ms: i64,
    pub hlc: Hlc,
}

/// Where a device learned the true time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeSource {
    Server = 1,
    Gps = 2,
    Ntp = 3,
}

impl TimeSource {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(TimeSource::Server),
            2 => Some(TimeSource::Gps),
            3 => Some(TimeSource::Ntp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TimeSource::Server => "server",
            TimeSource::Gps => "gps",
            TimeSource::Ntp => "ntp",
        }
    }

    /// Higher is better: GPS beats NTP beats a server round trip.
    pub fn rank(self) -> u8 {
        match self {
            TimeSource::Server => 1,
            TimeSource::Ntp => 2,
            TimeSource::Gps => 3,
        }
    }
}

/// "At `mono_ms` on boot `boot_id`, the true time was `true_ms`." Lets both sides
/// rebase every event of that boot: `true = true_ms + (event.mono_ms - mono_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeAnchor {
    pub boot_id: BootId,
    pub mono_ms: u64,
    pub true_ms: i64,
    pub source: TimeSource,
    pub uncertainty_ms: u32,
}

impl TimeAnchor {
    pub fn rebase(&self, mono_ms: u64) -> i64 {
        self.true_ms + (mono_ms as i64 - self.mono_ms as i64)
    }
}

/// No device wall clock reading before this can be true: 2025-01-01T00:00:00Z,
/// before any fleet-edge device ran. A device knows better (its build date).
pub const EARLIEST_PLAUSIBLE_WALL_MS: i64 = 1_735_689_600_000;
/// A wall clock this far ahead of the time its event was received is wrong.
pub const MAX_WALL_AHEAD_MS: i64 = 24 * 3_600_000;

/// Whether a device's wall-clock estimate can be taken at face value when
/// nothing better (an anchor) is known: not before [`EARLIEST_PLAUSIBLE_WALL_MS`]
/// and not more than a day after `received_ms`.
pub fn wall_plausible(wall_ms: i64, received_ms: i64) -> bool {
    wall_ms >= EARLIEST_PLAUSIBLE_WALL_MS
        && wall_ms <= received_ms.saturating_add(MAX_WALL_AHEAD_MS)
}

/// A GNSS fix, in integer units chosen so the batch codec can delta-code them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Degrees × 10⁷ (about 1 cm).
    pub lat_e7: i32,
    pub lon_e7: i32,
    /// Altitude above mean sea level in decimetres.
    pub alt_dm: Option<i32>,
    /// Ground speed in cm/s.
    pub speed_cms: Option<u32>,
    /// Course over ground in hundredths of a degree, 0..36000.
    pub heading_cdeg: Option<u16>,
    /// Horizontal dilution of precision × 10.
    pub hdop_d: Option<u16>,
    pub sats: Option<u8>,
    /// 0 no fix, 1 2D, 2 3D, 3 differential.
    pub fix: u8,
}

impl Position {
    pub fn lat(&self) -> f64 {
        f64::from(self.lat_e7) / 1e7
    }

    pub fn lon(&self) -> f64 {
        f64::from(self.lon_e7) / 1e7
    }

    /// Why this fix can't be stored, if it can't.
    pub fn invalid_reason(&self) -> Option<String> {
        if !(-900_000_000..=900_000_000).contains(&self.lat_e7) {
            return Some(format!("latitude {} out of range", self.lat()));
        }
        if !(-1_800_000_000..=1_800_000_000).contains(&self.lon_e7) {
            return Some(format!("longitude {} out of range", self.lon()));
        }
        if matches!(self.heading_cdeg, Some(h) if h >= 36_000) {
            return Some("heading out of range".into());
        }
        if self.fix > 3 {
            return Some(format!("unknown fix quality {}", self.fix));
        }
        None
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("lat".into(), self.lat().into());
        m.insert("lon".into(), self.lon().into());
        if let Some(a) = self.alt_dm {
            m.insert("alt_m".into(), (f64::from(a) / 10.0).into());
        }
        if let Some(s) = self.speed_cms {
            m.insert("speed_mps".into(), (f64::from(s) / 100.0).into());
        }
        if let Some(h) = self.heading_cdeg {
            m.insert("heading_deg".into(), (f64::from(h) / 100.0).into());
        }
        if let Some(h) = self.hdop_d {
            m.insert("hdop".into(), (f64::from(h) / 10.0).into());
        }
        if let Some(s) = self.sats {
            m.insert("sats".into(), s.into());
        }
        m.insert("fix".into(), self.fix.into());
        serde_json::Value::Object(m)
    }
}

/// An event kind: a stable snake_case name. Known names travel as a one-byte code.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Kind(pub Cow<'static, str>);

impl Kind {
    pub const fn known(name: &'static str) -> Self {
        Kind(Cow::Borrowed(name))
    }

    pub fn new(name: impl Into<String>) -> Self {
        Kind(Cow::Owned(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The wire code of a known kind; 0 means "name follows inline".
    pub fn code(&self) -> u64 {
        KNOWN_KINDS
            .iter()
            .position(|k| *k == self.as_str())
            .map_or(0, |i| i as u64 + 1)
    }

    pub fn from_code(code: u64) -> Option<Self> {
        let i = usize::try_from(code).ok()?.checked_sub(1)?;
        KNOWN_KINDS.get(i).map(|k| Kind::known(k))
    }

    /// A kind name is 1..=64 characters of `[a-z0-9_.]`.
    pub fn is_valid_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Wire codes of known kinds, by position (code = index + 1). Append only: a code,
/// once released, keeps its meaning forever.
pub const KNOWN_KINDS: &[&str] = &[
    "position",
    "ignition_on",
    "ignition_off",
    "trip_start",
    "trip_end",
    "stop",
    "idle",
    "harsh_acceleration",
    "harsh_braking",
    "harsh_cornering",
    "speeding",
    "geofence_enter",
    "geofence_exit",
    "fuel_drop",
    "dtc_set",
    "dtc_clear",
    "battery_low",
    "cranking_weak",
    "odometer",
    "engine_hours",
    "signal",
    "device_health",
    "eviction",
    "checkout",
    "checkin",
    "custody",
    "clock_rebased",
    "door_open",
    "note",
    "walkup_queued",
    "overdue",
    "no_show",
    "scan_refused",
    "door_closed",
];

pub mod kinds {
    use super::Kind;
    pub const POSITION: Kind = Kind::known("position");
    pub const IGNITION_ON: Kind = Kind::known("ignition_on");
    pub const IGNITION_OFF: Kind = Kind::known("ignition_off");
    pub const TRIP_START: Kind = Kind::known("trip_start");
    pub const TRIP_END: Kind = Kind::known("trip_end");
    pub const IDLE: Kind = Kind::known("idle");
    pub const SIGNAL: Kind = Kind::known("signal");
    pub const DEVICE_HEALTH: Kind = Kind::known("device_health");
    pub const EVICTION: Kind = Kind::known("eviction");
    pub const DTC_SET: Kind = Kind::known("dtc_set");
    pub const DTC_CLEAR: Kind = Kind::known("dtc_clear");
    pub const CHECKOUT: Kind = Kind::known("checkout");
    pub const CHECKIN: Kind = Kind::known("checkin");
    pub const DOOR_OPEN: Kind = Kind::known("door_open");
    pub const WALKUP_QUEUED: Kind = Kind::known("walkup_queued");
    pub const OVERDUE: Kind = Kind::known("overdue");
    pub const NO_SHOW: Kind = Kind::known("no_show");
    pub const SCAN_REFUSED: Kind = Kind::known("scan_refused");
    pub const DOOR_CLOSED: Kind = Kind::known("door_closed");
}

/// What an event says beyond its kind and time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventData {
    None,
    Position(Position),
    /// Any other payload: a JSON object.
    Json(serde_json::Value),
}

/// [`Position::to_json`] as a struct, for [`EventData::json_text`]: the same
/// keys and values, declared in the order a `serde_json::Map` (sorted by key)
/// writes them.
#[derive(Serialize)]
struct PositionText {
    #[serde(skip_serializing_if = "Option::is_none")]
    alt_m: Option<f64>,
    fix: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    hdop: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    heading_deg: Option<f64>,
    lat: f64,
    lon: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sats: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    speed_mps: Option<f64>,
}

impl EventData {
    /// The JSON text of [`EventData::to_json`], byte for byte (the server
    /// stores it and compares resent events with it), written without
    /// building a `serde_json::Value` first: ingest calls this per event.
    pub fn json_text(&self) -> Result<String, serde_json::Error> {
        match self {
            EventData::None => Ok("{}".to_owned()),
            EventData::Position(p) => serde_json::to_string(&PositionText {
                alt_m: p.alt_dm.map(|a| f64::from(a) / 10.0),
                fix: p.fix,
                hdop: p.hdop_d.map(|h| f64::from(h) / 10.0),
                heading_deg: p.heading_cdeg.map(|h| f64::from(h) / 100.0),
                lat: p.lat(),
                lon: p.lon(),
                sats: p.sats,
                speed_mps: p.speed_cms.map(|s| f64::from(s) / 100.0),
            }),
            EventData::Json(v) => serde_json::to_string(v),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            EventData::None => serde_json::Value::Object(Default::default()),
            EventData::Position(p) => p.to_json(),
            EventData::Json(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Per-device sequence number, from 1, dense except where the device evicted.
    pub seq: u64,
    pub kind: Kind,
    pub priority: Priority,
    pub time: EventTime,
    /// The device configuration version that produced this event.
    pub config_version: u32,
    pub data: EventData,
}

impl Event {
    /// Why the server should quarantine this event rather than store it, if it should.
    pub fn invalid_reason(&self) -> Option<String> {
        if !Kind::is_valid_name(self.kind.as_str()) {
            return Some(format!("invalid kind name {:?}", self.kind.as_str()));
        }
        match &self.data {
            EventData::Position(p) => p.invalid_reason(),
            EventData::Json(v) if !v.is_object() => Some("json payload is not an object".into()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_text_is_the_serialized_to_json_byte_for_byte() {
        // splitmix64, so the run is the same every time.
        let mut x = 0x5eed_u64;
        let mut next = move || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let mut datas = vec![
            EventData::None,
            EventData::Json(
                serde_json::json!({"rpm": 1400, "b": [1.5, null], "a": {"z": 1, "y": "é\u{0}"}}),
            ),
            EventData::Json(serde_json::json!({})),
        ];
        for _ in 0..20_000 {
            let r = next();
            let some = |bit: u64| r >> (40 + bit) & 1 == 1;
            datas.push(EventData::Position(Position {
                lat_e7: (next() % 1_800_000_001) as i32 - 900_000_000,
                lon_e7: next() as i32,
                alt_dm: some(0).then(|| next() as i32),
                speed_cms: some(1).then(|| next() as u32),
                heading_cdeg: some(2).then(|| (next() % 36_000) as u16),
                hdop_d: some(3).then(|| next() as u16),
                sats: some(4).then(|| next() as u8),
                fix: (r % 4) as u8,
            }));
        }
        for d in &datas {
            assert_eq!(
                d.json_text().unwrap(),
                serde_json::to_string(&d.to_json()).unwrap(),
                "{d:?}"
            );
        }
    }

    #[test]
    fn known_kind_codes_round_trip() {
        for (i, name) in KNOWN_KINDS.iter().enumerate() {
            let k = Kind::known(name);
            assert_eq!(k.code(), i as u64 + 1);
            assert_eq!(Kind::from_code(k.code()), Some(k));
        }
        assert_eq!(Kind::new("custom_thing").code(), 0);
        assert_eq!(Kind::from_code(0), None);
        assert_eq!(Kind::from_code(10_000), None);
    }

    #[test]
    fn anchor_rebases_by_monotonic_distance() {
        let a = TimeAnchor {
            boot_id: BootId::default(),
            mono_ms: 50_000,
            true_ms: 1_700_000_000_000,
            source: TimeSource::Server,
            uncertainty_ms: 20,
        };
        assert_eq!(a.rebase(40_000), 1_699_999_990_000);
    }
}
