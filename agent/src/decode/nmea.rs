//! NMEA 0183 sentences from any talker (GP, GN, GL, GA, GB/BD, GQ, GI, NMEA 4.11
//! system and signal ids): RMC, GGA, GLL, VTG, GSA, GSV and ZDA, checksum validated;
//! and [`FixAssembler`], which merges the sentences of one epoch into one fix and,
//! for the offline decoder, into gpsd-style [`Report`]s (TPV and SKY). Bad
//! sentences are errors the caller counts and skips; nothing here is fatal and
//! nothing allocates per sentence.
//!
//! Checksums follow gpsd: a sentence whose `*hh` does not match is rejected, and a
//! sentence with no `*hh` at all is accepted (gpsd 3.22 does the same; some
//! receivers never send one) and counted in [`FixAssembler::unchecked`]. A line
//! holding two sentences run into each other (a lost line end) is split at each
//! `$`: a cut-off head is accepted only if it still ends with a matching checksum,
//! and the sentence after the cut is read on its own, as gpsd's lexer resyncs.

use std::str::Split;

/// Longest sentence accepted: the standard says 82, receivers sometimes write more.
pub const MAX_SENTENCE_LEN: usize = 200;

const KNOTS_TO_MPS: f64 = 1852.0 / 3600.0;

/// One GPS era: the 10-bit week number that older receivers count wraps after
/// 1024 weeks, and a receiver that misses the wrap reports dates this much early.
pub const GPS_ERA_MS: i64 = 1024 * 7 * 86_400_000;

/// The last week-number wrap (2019-04-06/07): no receiver working today can be
/// right about a date before it, which is what gpsd assumes.
pub const LAST_WEEK_ROLLOVER: Date = Date {
    year: 2019,
    month: 4,
    day: 6,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NmeaError {
    #[error("not a sentence: no leading '$'")]
    NoStart,
    #[error("sentence longer than {MAX_SENTENCE_LEN} bytes")]
    TooLong,
    #[error("sentence is not printable ASCII")]
    NotAscii,
    #[error("sentence cut off by the next one (no checksum before the '$')")]
    Spliced,
    #[error("checksum mismatch: computed {computed:02X}, sentence says {stated}")]
    BadChecksum { computed: u8, stated: String },
    #[error("bad address field")]
    BadAddress,
    #[error("{sentence}: bad field {field}")]
    BadField {
        sentence: &'static str,
        field: usize,
    },
}

/// UTC time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay {
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub millis: u16,
}

impl TimeOfDay {
    pub fn millis_of_day(&self) -> u32 {
        ((u32::from(self.hour) * 60 + u32::from(self.minute)) * 60 + u32::from(self.second)) * 1000
            + u32::from(self.millis)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Date {
    /// Days since 1970-01-01 (Howard Hinnant's days-from-civil).
    pub fn days_since_epoch(&self) -> i64 {
        let (y, m, d) = (
            i64::from(self.year) - i64::from(self.month <= 2),
            i64::from(self.month),
            i64::from(self.day),
        );
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    pub fn unix_ms(&self, t: TimeOfDay) -> i64 {
        self.days_since_epoch() * 86_400_000 + i64::from(t.millis_of_day())
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rmc {
    pub time: Option<TimeOfDay>,
    /// Status `A`: the position is valid. Void sentences still carry the time.
    pub valid: bool,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub speed_mps: Option<f64>,
    pub course_deg: Option<f64>,
    pub date: Option<Date>,
    /// NMEA 2.3+ mode indicator (`A` autonomous, `D` differential, `N` none...).
    pub faa_mode: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gga {
    pub time: Option<TimeOfDay>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    /// 0 invalid, 1 GPS, 2 DGPS, 4 RTK fixed, 5 RTK float, 6 dead reckoning...
    pub quality: u8,
    pub sats: Option<u8>,
    pub hdop: Option<f64>,
    /// Altitude above mean sea level, metres.
    pub alt_m: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gll {
    pub time: Option<TimeOfDay>,
    pub valid: bool,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Vtg {
    pub course_deg: Option<f64>,
    pub speed_mps: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gsa {
    /// 1 no fix, 2 2D, 3 3D.
    pub mode: u8,
    pub sats_used: u8,
    pub pdop: Option<f64>,
    pub hdop: Option<f64>,
    pub vdop: Option<f64>,
    /// GNSS system of the listed satellites (NMEA 4.11 system id, else from the
    /// talker): 1 GPS, 2 GLONASS, 3 Galileo, 4 BeiDou, 5 QZSS, 6 NavIC; `None`
    /// for a `GN` talker without a system id.
    pub system: Option<u8>,
    /// Satellite ids used in the fix, `0` where a slot is empty.
    pub prns: [u16; 12],
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gsv {
    pub messages: u8,
    pub number: u8,
    pub in_view: u8,
    /// As [`Gsa::system`].
    pub system: Option<u8>,
    /// NMEA 4.11 signal id (which frequency band the list is for).
    pub signal: Option<u8>,
}

/// The GNSS system a talker id stands for (`GN`, combined, is none).
pub fn talker_system(talker: &str) -> Option<u8> {
    Some(match talker {
        "GP" => 1,
        "GL" => 2,
        "GA" => 3,
        "GB" | "BD" => 4,
        "GQ" => 5,
        "GI" => 6,
        _ => return None,
    })
}

/// The system of a satellite id in the NMEA 2.x/4.10 numbering, for `GN` lists
/// that do not say: 1-64 GPS and SBAS, 65-96 GLONASS, 193-202 QZSS, 201-235
/// or 401-437 BeiDou, 301-336 Galileo.
fn prn_system(prn: u16) -> u8 {
    match prn {
        65..=96 => 2,
        301..=336 => 3,
        401..=437 => 4,
        193..=200 => 5,
        201..=235 => 4,
        _ => 1,
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Zda {
    pub time: Option<TimeOfDay>,
    pub date: Option<Date>,
}

/// One valid sentence. `Other` is a well-formed sentence of a type not decoded
/// here (TXT, GNS, proprietary `$P...`): not an error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sentence<'a> {
    Rmc(Rmc),
    Gga(Gga),
    Gll(Gll),
    Vtg(Vtg),
    Gsa(Gsa),
    Gsv(Gsv),
    Zda(Zda),
    Other(&'a str),
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Whether a sentence carried a checksum (a wrong one is an error, not a kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    Valid,
    /// No `*hh`: accepted, as gpsd does.
    Missing,
}

/// Check framing and checksum; return the body between `$` and `*`.
pub fn validate(line: &str) -> Result<&str, NmeaError> {
    validate_sentence(line).map(|(body, _)| body)
}

/// Check framing and checksum; return the body and whether it was checksummed.
pub fn validate_sentence(line: &str) -> Result<(&str, Checksum), NmeaError> {
    let line = line.trim_end_matches(['\r', '\n', '\0', ' ']);
    let line = line.trim_start_matches(['\0', ' ']);
    let rest = line.strip_prefix('$').ok_or(NmeaError::NoStart)?;
    if line.len() > MAX_SENTENCE_LEN {
        return Err(NmeaError::TooLong);
    }
    if !rest.bytes().all(|b| (0x20..0x7F).contains(&b)) {
        return Err(NmeaError::NotAscii);
    }
    let Some((body, sum)) = rest.rsplit_once('*') else {
        if rest.contains('$') {
            return Err(NmeaError::Spliced);
        }
        return Ok((rest, Checksum::Missing));
    };
    let computed = body.bytes().fold(0u8, |a, b| a ^ b);
    let stated = sum.as_bytes();
    let ok = stated.len() == 2
        && matches!((hex(stated[0]), hex(stated[1])), (Some(h), Some(l)) if (h << 4 | l) == computed);
    if !ok {
        return Err(NmeaError::BadChecksum {
            computed,
            stated: sum.chars().take(8).collect(),
        });
    }
    // A second '$' means two sentences were spliced together.
    if body.contains('$') {
        return Err(NmeaError::Spliced);
    }
    Ok((body, Checksum::Valid))
}

/// The candidate sentences of one received line: normally the line itself; when
/// a line end was lost, one piece per `$`, each with whether the line ended it
/// (`false`: the next `$` cut it off). Leading noise before the first `$` is a
/// piece of its own when it is more than NULs and blanks.
pub fn pieces(line: &str) -> impl Iterator<Item = (&str, bool)> {
    let mut rest = line;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        // Past the first character, which may be the '$' itself or any noise.
        let skip = rest.chars().next().map_or(0, char::len_utf8);
        let next = rest[skip..].find('$').map(|i| i + skip);
        let (piece, after) = match next {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        rest = after;
        if piece.trim_matches(['\0', ' ', '\r', '\n']).is_empty() {
            continue;
        }
        return Some((piece, after.is_empty()));
    })
}

struct Fields<'a> {
    it: Split<'a, char>,
    sentence: &'static str,
    n: usize,
}

impl<'a> Fields<'a> {
    fn next(&mut self) -> &'a str {
        self.n += 1;
        self.it.next().unwrap_or("")
    }

    fn err(&self) -> NmeaError {
        NmeaError::BadField {
            sentence: self.sentence,
            field: self.n,
        }
    }

    fn f64(&mut self) -> Result<Option<f64>, NmeaError> {
        let s = self.next();
        if s.is_empty() {
            return Ok(None);
        }
        match s.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Some(v)),
            _ => Err(self.err()),
        }
    }

    fn u8(&mut self) -> Result<Option<u8>, NmeaError> {
        let s = self.next();
        if s.is_empty() {
            return Ok(None);
        }
        s.parse::<u8>().map(Some).map_err(|_| self.err())
    }

    fn time(&mut self) -> Result<Option<TimeOfDay>, NmeaError> {
        let s = self.next();
        if s.is_empty() {
            return Ok(None);
        }
        parse_time(s).map(Some).ok_or_else(|| self.err())
    }

    /// Latitude or longitude: `[d]ddmm.mmmm` then a hemisphere field.
    fn coord(&mut self, deg_digits: usize, pos: &str, neg: &str) -> Result<Option<f64>, NmeaError> {
        let v = self.next();
        let hemi = self.next();
        if v.is_empty() && hemi.is_empty() {
            return Ok(None);
        }
        let max = if deg_digits == 2 { 90.0 } else { 180.0 };
        let parsed = (|| {
            if v.len() < deg_digits + 2
                || !v.as_bytes()[..deg_digits].iter().all(u8::is_ascii_digit)
            {
                return None;
            }
            let deg: f64 = v[..deg_digits].parse().ok()?;
            let min: f64 = v[deg_digits..].parse().ok()?;
            if !(0.0..60.0).contains(&min) {
                return None;
            }
            let x = deg + min / 60.0;
            if x > max {
                return None;
            }
            match hemi {
                h if h == pos => Some(x),
                h if h == neg => Some(-x),
                _ => None,
            }
        })();
        parsed.map(Some).ok_or_else(|| self.err())
    }
}

fn digits2(b: &[u8]) -> Option<u8> {
    if b.len() == 2 && b[0].is_ascii_digit() && b[1].is_ascii_digit() {
        Some((b[0] - b'0') * 10 + (b[1] - b'0'))
    } else {
        None
    }
}

fn parse_time(s: &str) -> Option<TimeOfDay> {
    let b = s.as_bytes();
    if b.len() < 6 {
        return None;
    }
    let (hour, minute, second) = (digits2(&b[0..2])?, digits2(&b[2..4])?, digits2(&b[4..6])?);
    let millis = match &s[6..] {
        "" => 0,
        frac => {
            let f = frac.strip_prefix('.')?;
            if f.is_empty() || !f.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let mut ms = 0u32;
            for (i, c) in f.bytes().take(3).enumerate() {
                ms += u32::from(c - b'0') * [100, 10, 1][i];
            }
            ms as u16
        }
    };
    (hour < 24 && minute < 60 && second <= 60).then_some(TimeOfDay {
        hour,
        minute,
        second,
        millis,
    })
}

fn plausible_date(year: u16, month: u8, day: u8) -> Option<Date> {
    ((1..=12).contains(&month) && (1..=31).contains(&day)).then_some(Date { year, month, day })
}

/// `ddmmyy`; two-digit years 80-99 are 19xx, as gpsd reads them.
fn parse_date6(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    if b.len() != 6 {
        return None;
    }
    let (d, m, y) = (digits2(&b[0..2])?, digits2(&b[2..4])?, digits2(&b[4..6])?);
    let year = if y >= 80 { 1900 } else { 2000 } + u16::from(y);
    plausible_date(year, m, d)
}

/// Decode one line. `Err` means a bad sentence, to be counted and skipped.
pub fn parse(line: &str) -> Result<Sentence<'_>, NmeaError> {
    parse_sentence(line).map(|(s, _)| s)
}

/// Decode one line, also saying whether it carried a checksum.
pub fn parse_sentence(line: &str) -> Result<(Sentence<'_>, Checksum), NmeaError> {
    let (body, checksum) = validate_sentence(line)?;
    decode_body(body).map(|s| (s, checksum))
}

fn decode_body(body: &str) -> Result<Sentence<'_>, NmeaError> {
    let (address, rest) = body.split_once(',').unwrap_or((body, ""));
    if address.starts_with('P') {
        return Ok(Sentence::Other(address));
    }
    if address.len() != 5
        || !address
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Err(NmeaError::BadAddress);
    }
    let (talker, kind) = address.split_at(2);
    let name: &'static str = match kind {
        "RMC" => "RMC",
        "GGA" => "GGA",
        "GLL" => "GLL",
        "VTG" => "VTG",
        "GSA" => "GSA",
        "GSV" => "GSV",
        "ZDA" => "ZDA",
        _ => return Ok(Sentence::Other(address)),
    };
    let mut f = Fields {
        it: rest.split(','),
        sentence: name,
        n: 0,
    };
    Ok(match name {
        "RMC" => {
            let time = f.time()?;
            let valid = match f.next() {
                "A" => true,
                "V" | "" => false,
                _ => return Err(f.err()),
            };
            let lat = f.coord(2, "N", "S")?;
            let lon = f.coord(3, "E", "W")?;
            let speed_mps = f.f64()?.map(|k| k * KNOTS_TO_MPS);
            let course_deg = f.f64()?;
            // A garbage date (e.g. "2208-1" after a week rollover) gives no date,
            // not a bad sentence: the position is still good.
            let date = parse_date6(f.next());
            let _magvar = f.next();
            let _magvar_dir = f.next();
            // NMEA 2.3+ mode indicator: N means no fix whatever the status says.
            let faa_mode = f.next().bytes().next();
            let valid = valid && faa_mode != Some(b'N');
            Sentence::Rmc(Rmc {
                time,
                valid,
                lat,
                lon,
                speed_mps,
                course_deg,
                date,
                faa_mode,
            })
        }
        "GGA" => {
            let time = f.time()?;
            let lat = f.coord(2, "N", "S")?;
            let lon = f.coord(3, "E", "W")?;
            let quality = f.u8()?.unwrap_or(0);
            let sats = f.u8()?;
            let hdop = f.f64()?;
            let alt_m = f.f64()?;
            Sentence::Gga(Gga {
                time,
                lat,
                lon,
                quality,
                sats,
                hdop,
                alt_m,
            })
        }
        "GLL" => {
            let lat = f.coord(2, "N", "S")?;
            let lon = f.coord(3, "E", "W")?;
            let time = f.time()?;
            let valid = f.next() == "A" && f.next() != "N";
            Sentence::Gll(Gll {
                time,
                valid,
                lat,
                lon,
            })
        }
        "VTG" => {
            let course_deg = f.f64()?;
            let _t = f.next();
            let _mag = f.f64()?;
            let _m = f.next();
            let knots = f.f64()?;
            let _n = f.next();
            let kmh = f.f64()?;
            Sentence::Vtg(Vtg {
                course_deg,
                speed_mps: knots.map(|k| k * KNOTS_TO_MPS).or(kmh.map(|k| k / 3.6)),
            })
        }
        "GSA" => {
            let _auto = f.next();
            let mode = f.u8()?.unwrap_or(1);
            let mut sats_used = 0u8;
            let mut prns = [0u16; 12];
            for slot in &mut prns {
                let s = f.next();
                if !s.is_empty() {
                    *slot = s.parse().map_err(|_| f.err())?;
                    sats_used += 1;
                }
            }
            let pdop = f.f64()?;
            let hdop = f.f64()?;
            let vdop = f.f64()?;
            // NMEA 4.11 adds the system id; older sentences end here.
            let system = f.u8().ok().flatten().or(talker_system(talker));
            Sentence::Gsa(Gsa {
                mode,
                sats_used,
                pdop,
                hdop,
                vdop,
                system,
                prns,
            })
        }
        "GSV" => {
            let messages = f.u8()?.ok_or_else(|| f.err())?;
            let number = f.u8()?.ok_or_else(|| f.err())?;
            let in_view = f.u8()?.unwrap_or(0);
            if number == 0 || number > messages {
                return Err(f.err());
            }
            // Up to four satellites of four fields each, then (NMEA 4.11) the
            // signal id: a count that leaves one field over says it is there.
            let fields = rest.split(',').count();
            let signal = if fields > 3 && (fields - 3) % 4 == 1 {
                rest.rsplit(',')
                    .next()
                    .and_then(|s| u8::from_str_radix(s, 16).ok())
            } else {
                None
            };
            if fields < 3 || (fields - 3) % 4 > 1 {
                // A satellite cut short: the malformed GSV with a good checksum
                // that the cold-boot log carries.
                return Err(NmeaError::BadField {
                    sentence: "GSV",
                    field: fields,
                });
            }
            Sentence::Gsv(Gsv {
                messages,
                number,
                in_view,
                system: talker_system(talker),
                signal,
            })
        }
        _ => {
            let time = f.time()?;
            let d = f.u8()?;
            let m = f.u8()?;
            let y = f.next();
            let year = if y.len() == 4 {
                y.parse::<u16>().ok()
            } else {
                None
            };
            let date = match (d, m, year) {
                (Some(d), Some(m), Some(y)) => plausible_date(y, m, d),
                _ => None,
            };
            Sentence::Zda(Zda { time, date })
        }
    })
}

/// A position fix: what one epoch of RMC/GGA/GSA/VTG/ZDA says together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fix {
    pub time_of_day: TimeOfDay,
    /// UTC Unix milliseconds, when a date is known.
    pub utc_ms: Option<i64>,
    pub lat: f64,
    pub lon: f64,
    pub alt_m: Option<f64>,
    pub speed_mps: Option<f64>,
    pub course_deg: Option<f64>,
    pub hdop: Option<f64>,
    pub sats: Option<u8>,
    /// 1 2D, 2 3D, 3 differential (the `Position::fix` scale).
    pub quality: u8,
}

impl Fix {
    /// The fix without its time of day, as every GNSS source hands it on.
    pub fn gnss(&self) -> fleet_hal::GnssFix {
        fleet_hal::GnssFix {
            utc_ms: self.utc_ms,
            lat: self.lat,
            lon: self.lon,
            alt_m: self.alt_m,
            speed_mps: self.speed_mps,
            course_deg: self.course_deg,
            hdop: self.hdop,
            sats: self.sats,
            quality: self.quality,
        }
    }
}

/// gpsd's fix modes (TPV `mode`).
pub mod mode {
    pub const NO_FIX: u8 = 1;
    pub const FIX_2D: u8 = 2;
    pub const FIX_3D: u8 = 3;
}

/// gpsd's fix status (TPV `status`), printed only when it is not a plain fix.
pub mod status {
    pub const NO_FIX: u8 = 0;
    pub const FIX: u8 = 1;
    pub const DGPS: u8 = 2;
    pub const RTK_FIX: u8 = 3;
    pub const RTK_FLOAT: u8 = 4;
    pub const DEAD_RECKONING: u8 = 5;
    pub const TIME: u8 = 7;
    pub const SIMULATED: u8 = 8;
}

/// Time, position and velocity of one epoch, as gpsd's TPV report has them.
/// Position, altitude and speed are only present with a fix (`mode` 2 or 3);
/// a void RMC still gives the time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tpv {
    pub time_of_day: Option<TimeOfDay>,
    /// UTC Unix milliseconds, when a date is known.
    pub utc_ms: Option<i64>,
    /// [`mode`]: 1 no fix, 2 2D, 3 3D.
    pub mode: u8,
    /// [`status`]: DGPS, RTK and the like.
    pub status: u8,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    /// Altitude above mean sea level, metres (3D fixes only).
    pub alt_msl_m: Option<f64>,
    pub speed_mps: Option<f64>,
    pub track_deg: Option<f64>,
}

/// Dilution of precision and satellite counts of one epoch (gpsd's SKY).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sky {
    pub time_of_day: Option<TimeOfDay>,
    pub utc_ms: Option<i64>,
    pub hdop: Option<f64>,
    pub pdop: Option<f64>,
    pub vdop: Option<f64>,
    /// Satellites used in the fix, counted once across all GSAs of the epoch.
    pub used: Option<u16>,
    /// Satellites in view, summed over the systems' GSV lists.
    pub in_view: Option<u16>,
}

/// One item the offline decoder prints.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Report {
    Tpv(Tpv),
    Sky(Sky),
}

/// Satellites used across the GSAs of one epoch, kept without allocating.
const MAX_USED: usize = 64;
/// (system, signal) GSV lists of one epoch.
const MAX_GSV_LISTS: usize = 16;

#[derive(Debug, Clone, Copy)]
struct SkyEpoch {
    gsa: Option<Gsa>,
    used: [(u8, u16); MAX_USED],
    n_used: usize,
    gsv: [(u8, u8, u8); MAX_GSV_LISTS],
    n_gsv: usize,
}

impl Default for SkyEpoch {
    fn default() -> Self {
        Self {
            gsa: None,
            used: [(0, 0); MAX_USED],
            n_used: 0,
            gsv: [(0, 0, 0); MAX_GSV_LISTS],
            n_gsv: 0,
        }
    }
}

impl SkyEpoch {
    fn is_empty(&self) -> bool {
        self.gsa.is_none() && self.n_gsv == 0
    }

    fn add_gsa(&mut self, g: Gsa) {
        for prn in g.prns.into_iter().filter(|p| *p != 0) {
            let key = (g.system.unwrap_or_else(|| prn_system(prn)), prn);
            if !self.used[..self.n_used].contains(&key) && self.n_used < MAX_USED {
                self.used[self.n_used] = key;
                self.n_used += 1;
            }
        }
        self.gsa = Some(g);
    }

    fn add_gsv(&mut self, g: Gsv) {
        if g.number != 1 {
            return;
        }
        let (system, signal) = (g.system.unwrap_or(0), g.signal.unwrap_or(0));
        let lists = &mut self.gsv[..self.n_gsv];
        if let Some(l) = lists.iter_mut().find(|l| (l.0, l.1) == (system, signal)) {
            l.2 = g.in_view;
        } else if self.n_gsv < MAX_GSV_LISTS {
            self.gsv[self.n_gsv] = (system, signal, g.in_view);
            self.n_gsv += 1;
        }
    }

    /// The same satellites are listed once per signal band: a system's count is
    /// its largest list.
    fn in_view(&self) -> u16 {
        let lists = &self.gsv[..self.n_gsv];
        let mut total = 0u16;
        for (i, l) in lists.iter().enumerate() {
            if lists[..i].iter().any(|m| m.0 == l.0) {
                continue;
            }
            let most = lists.iter().filter(|m| m.0 == l.0).map(|m| m.2).max();
            total += u16::from(most.unwrap_or(0));
        }
        total
    }
}

#[derive(Debug, Default, Clone)]
struct Epoch {
    time: Option<TimeOfDay>,
    rmc: Option<Rmc>,
    gga: Option<Gga>,
    gll: Option<Gll>,
    vtg: Option<Vtg>,
    zda_date: Option<Date>,
    sky: SkyEpoch,
    flushed: bool,
}

/// Merges the sentences of one epoch (same UTC time) into one [`Fix`]. A fix is
/// emitted as soon as the epoch has both RMC and GGA, or when the next epoch
/// begins, so receivers that send only one of them still give fixes.
///
/// The same assembler also gives gpsd-style reports ([`FixAssembler::push_line_reports`]):
/// one TPV per epoch, with or without a fix, and one SKY per epoch that had GSA or
/// GSV, both once the epoch is over (the next epoch's first sentence, or
/// [`FixAssembler::finish_reports`]), so that the epoch's GSA decides the mode.
#[derive(Debug, Default, Clone)]
pub struct FixAssembler {
    epoch: Epoch,
    date: Option<Date>,
    /// Dates before this (Unix ms) are moved forward by whole GPS eras.
    rollover_floor_ms: Option<i64>,
    gsa_mode: Option<u8>,
    gsa_hdop: Option<f64>,
    /// Well-formed sentences that were decoded.
    pub sentences: u64,
    /// Sentences rejected (bad checksum, framing, field).
    pub bad: u64,
    /// Well-formed sentences of types not used here.
    pub ignored: u64,
    /// Sentences accepted without a checksum (gpsd accepts them too).
    pub unchecked: u64,
}

impl FixAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Treats any time before `floor` as a receiver that missed a GPS week-number
    /// wrap and moves it forward by whole 1024-week eras, as gpsd does (with
    /// [`LAST_WEEK_ROLLOVER`] as the floor it gives gpsd's times). Without a floor,
    /// times are the receiver's, so a replayed old log keeps its own dates.
    pub fn with_rollover_floor(mut self, floor: Date) -> Self {
        self.rollover_floor_ms = Some(floor.unix_ms(TimeOfDay {
            hour: 0,
            minute: 0,
            second: 0,
            millis: 0,
        }));
        self
    }

    /// The last date seen (from RMC or ZDA): lets a clock be set from GPS.
    pub fn date(&self) -> Option<Date> {
        self.date
    }

    /// Feed one line; returns a fix when one is complete. A line holding two
    /// spliced sentences that would both complete a fix returns the later one.
    pub fn push_line(&mut self, line: &str) -> Option<Fix> {
        let mut fix = None;
        for (piece, ended) in pieces(line) {
            if let Some(s) = self.accept(piece, ended) {
                fix = self.push_inner(s, &mut |_| {}).or(fix);
            }
        }
        fix
    }

    /// Feed one line, handing each finished report to `emit`.
    pub fn push_line_reports(&mut self, line: &str, emit: &mut dyn FnMut(Report)) {
        for (piece, ended) in pieces(line) {
            if let Some(s) = self.accept(piece, ended) {
                self.push_inner(s, emit);
            }
        }
    }

    /// End of input: report the epoch still open.
    pub fn finish_reports(&mut self, emit: &mut dyn FnMut(Report)) {
        self.report_epoch(emit);
        self.epoch = Epoch::default();
    }

    fn accept<'a>(&mut self, piece: &'a str, ended: bool) -> Option<Sentence<'a>> {
        match parse_sentence(piece) {
            Ok((_, Checksum::Missing)) if !ended => {
                self.bad += 1;
                None
            }
            Ok((s, checksum)) => {
                self.sentences += 1;
                if checksum == Checksum::Missing {
                    self.unchecked += 1;
                }
                Some(s)
            }
            Err(_) => {
                self.bad += 1;
                None
            }
        }
    }

    pub fn push(&mut self, s: Sentence<'_>) -> Option<Fix> {
        self.push_inner(s, &mut |_| {})
    }

    fn push_inner(&mut self, s: Sentence<'_>, emit: &mut dyn FnMut(Report)) -> Option<Fix> {
        let time = match s {
            Sentence::Rmc(r) => r.time,
            Sentence::Gga(g) => g.time,
            Sentence::Gll(g) => g.time,
            Sentence::Zda(z) => {
                if z.date.is_some() {
                    self.date = z.date;
                    if z.time.is_some() && z.time == self.epoch.time {
                        self.epoch.zda_date = z.date;
                    }
                }
                return None;
            }
            Sentence::Gsa(g) => {
                self.gsa_mode = Some(g.mode);
                self.gsa_hdop = g.hdop;
                self.epoch.sky.add_gsa(g);
                return None;
            }
            Sentence::Vtg(v) => {
                self.epoch.vtg = Some(v);
                return None;
            }
            Sentence::Gsv(g) => {
                self.epoch.sky.add_gsv(g);
                return None;
            }
            Sentence::Other(_) => {
                self.ignored += 1;
                return None;
            }
        };
        let Some(time) = time else {
            // No time, so no epoch to join; gpsd still reports what it says.
            if matches!(s, Sentence::Rmc(_) | Sentence::Gga(_)) {
                emit(Report::Tpv(untimed_tpv(s)));
            }
            return None;
        };
        let mut out = None;
        if self.epoch.time != Some(time) {
            out = self.flush();
            self.report_epoch(emit);
            // GSA and GSV before the first timed sentence belong to it.
            let sky = match self.epoch.time {
                None => self.epoch.sky,
                Some(_) => SkyEpoch::default(),
            };
            self.epoch = Epoch {
                time: Some(time),
                sky,
                ..Epoch::default()
            };
        }
        match s {
            Sentence::Rmc(r) => {
                if r.date.is_some() {
                    self.date = r.date;
                }
                self.epoch.rmc = Some(r);
            }
            Sentence::Gga(g) => self.epoch.gga = Some(g),
            Sentence::Gll(g) => self.epoch.gll = Some(g),
            _ => {}
        }
        if self.epoch.rmc.is_some() && self.epoch.gga.is_some() {
            let now = self.flush();
            out = out.or(now);
        }
        out
    }

    /// The epoch's position: GGA's if it has a fix, else a valid RMC's or GLL's.
    fn epoch_position(&self) -> Option<(f64, f64)> {
        let (rmc, gga) = (self.epoch.rmc, self.epoch.gga);
        let rmc_pos = rmc.filter(|r| r.valid).and_then(|r| Some((r.lat?, r.lon?)));
        let gga_pos = gga
            .filter(|g| g.quality > 0)
            .and_then(|g| Some((g.lat?, g.lon?)));
        let gll_pos = self
            .epoch
            .gll
            .filter(|g| g.valid)
            .and_then(|g| Some((g.lat?, g.lon?)));
        gga_pos.or(rmc_pos).or(gll_pos)
    }

    fn epoch_utc_ms(&self, time: TimeOfDay) -> Option<i64> {
        let rmc_date = self.epoch.rmc.and_then(|r| r.date);
        let ms = rmc_date
            .or(self.epoch.zda_date)
            .or(self.date)
            .map(|d| d.unix_ms(time))?;
        Some(match self.rollover_floor_ms {
            // The fewest whole eras that bring the time to the floor or past it.
            Some(floor) if ms < floor => {
                ms + (floor - ms + GPS_ERA_MS - 1) / GPS_ERA_MS * GPS_ERA_MS
            }
            _ => ms,
        })
    }

    /// Emit what the current epoch holds, if it has a position.
    pub fn flush(&mut self) -> Option<Fix> {
        if self.epoch.flushed {
            return None;
        }
        let time = self.epoch.time?;
        self.epoch.flushed = true;
        let (rmc, gga) = (self.epoch.rmc, self.epoch.gga);
        if rmc.is_some_and(|r| !r.valid) && gga.is_none() {
            return None;
        }
        let (lat, lon) = self.epoch_position()?;
        let alt_m = gga
            .and_then(|g| g.alt_m)
            .filter(|_| self.gsa_mode != Some(2));
        let quality = match gga.map(|g| g.quality) {
            Some(2..=5) => 3,
            _ if alt_m.is_some() => 2,
            _ => 1,
        };
        let vtg = self.epoch.vtg;
        Some(Fix {
            time_of_day: time,
            utc_ms: self.epoch_utc_ms(time),
            lat,
            lon,
            alt_m,
            speed_mps: rmc
                .and_then(|r| r.speed_mps)
                .or(vtg.and_then(|v| v.speed_mps)),
            course_deg: rmc
                .and_then(|r| r.course_deg)
                .or(vtg.and_then(|v| v.course_deg)),
            hdop: gga.and_then(|g| g.hdop).or(self.gsa_hdop),
            sats: gga.and_then(|g| g.sats),
            quality,
        })
    }

    /// The finished epoch as gpsd reports it: its TPV, then its SKY.
    fn report_epoch(&self, emit: &mut dyn FnMut(Report)) {
        let Some(time) = self.epoch.time else {
            return;
        };
        let utc_ms = self.epoch_utc_ms(time);
        emit(Report::Tpv(self.epoch_tpv(time, utc_ms)));
        let sky = &self.epoch.sky;
        if !sky.is_empty() {
            let gsa = sky.gsa;
            emit(Report::Sky(Sky {
                time_of_day: Some(time),
                utc_ms,
                hdop: gsa.and_then(|g| g.hdop),
                pdop: gsa.and_then(|g| g.pdop),
                vdop: gsa.and_then(|g| g.vdop),
                used: gsa.map(|_| sky.n_used as u16),
                in_view: (sky.n_gsv > 0).then(|| sky.in_view()),
            }));
        }
    }

    fn epoch_tpv(&self, time: TimeOfDay, utc_ms: Option<i64>) -> Tpv {
        let (rmc, gga, vtg) = (self.epoch.rmc, self.epoch.gga, self.epoch.vtg);
        let mut tpv = Tpv {
            time_of_day: Some(time),
            utc_ms,
            mode: mode::NO_FIX,
            status: status::NO_FIX,
            lat: None,
            lon: None,
            alt_msl_m: None,
            speed_mps: None,
            track_deg: None,
        };
        // A void RMC or a GGA without a fix outvotes the other sentences.
        let void = rmc.is_some_and(|r| !r.valid) || gga.is_some_and(|g| g.quality == 0);
        let Some((lat, lon)) = self.epoch_position().filter(|_| !void) else {
            return tpv;
        };
        let alt = gga.and_then(|g| g.alt_m);
        // The epoch's GSA, else the last one: gpsd keeps the mode GSA last said.
        tpv.mode = match self.epoch.sky.gsa.map(|g| g.mode).or(self.gsa_mode) {
            Some(m @ (mode::FIX_2D | mode::FIX_3D)) => m,
            _ if alt.is_some() => mode::FIX_3D,
            _ => mode::FIX_2D,
        };
        tpv.status = match (gga.map(|g| g.quality), rmc.and_then(|r| r.faa_mode)) {
            (Some(2), _) | (None, Some(b'D')) => status::DGPS,
            (Some(4), _) | (None, Some(b'R')) => status::RTK_FIX,
            (Some(5), _) | (None, Some(b'F')) => status::RTK_FLOAT,
            (Some(6), _) | (None, Some(b'E')) => status::DEAD_RECKONING,
            (Some(7), _) | (None, Some(b'M')) => status::TIME,
            (Some(8), _) | (None, Some(b'S')) => status::SIMULATED,
            _ => status::FIX,
        };
        tpv.lat = Some(lat);
        tpv.lon = Some(lon);
        tpv.alt_msl_m = alt.filter(|_| tpv.mode == mode::FIX_3D);
        tpv.speed_mps = rmc
            .and_then(|r| r.speed_mps)
            .or(vtg.and_then(|v| v.speed_mps));
        tpv.track_deg = rmc
            .and_then(|r| r.course_deg)
            .or(vtg.and_then(|v| v.course_deg));
        tpv
    }
}

/// A TPV for an RMC or GGA with no time: a position only if it has a fix.
fn untimed_tpv(s: Sentence<'_>) -> Tpv {
    let mut tpv = Tpv {
        time_of_day: None,
        utc_ms: None,
        mode: mode::NO_FIX,
        status: status::NO_FIX,
        lat: None,
        lon: None,
        alt_msl_m: None,
        speed_mps: None,
        track_deg: None,
    };
    let pos = match s {
        Sentence::Rmc(r) if r.valid => r.lat.zip(r.lon),
        Sentence::Gga(g) if g.quality > 0 => g.lat.zip(g.lon),
        _ => None,
    };
    if let Some((lat, lon)) = pos {
        (tpv.lat, tpv.lon) = (Some(lat), Some(lon));
        (tpv.mode, tpv.status) = (mode::FIX_2D, status::FIX);
        if let Sentence::Rmc(r) = s {
            (tpv.speed_mps, tpv.track_deg) = (r.speed_mps, r.course_deg);
        }
    }
    tpv
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/nmea");

    fn lines(name: &str) -> Vec<String> {
        let bytes = std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture");
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    }

    fn decode_log(name: &str) -> (Vec<Fix>, FixAssembler) {
        let mut asm = FixAssembler::new();
        let mut out: Vec<Fix> = lines(name)
            .iter()
            .filter_map(|l| asm.push_line(l))
            .collect();
        out.extend(asm.flush());
        (out, asm)
    }

    fn rfc3339(ms: i64) -> String {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .expect("in range");
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        )
    }

    #[test]
    fn ublox_first_rmc_is_rotterdam_2010() {
        let (fixes, asm) = decode_log("ublox-lea-5h.log");
        let f = fixes[0];
        assert_eq!(
            rfc3339(f.utc_ms.expect("dated")),
            "2010-08-21T08:37:23.000Z"
        );
        assert!((f.lat - 51.925907).abs() < 1e-7, "{}", f.lat);
        assert!((f.lon - 4.5776455).abs() < 1e-7, "{}", f.lon);
        assert_eq!(f.alt_m, Some(-4.0));
        assert_eq!(asm.bad, 0, "TXT lines are skipped, not bad");
        assert!(asm.ignored >= 7);
    }

    #[test]
    fn southern_and_western_hemispheres_are_negative() {
        let (fixes, _) = decode_log("bu353s4.log");
        assert!((fixes[0].lat - -37.7848).abs() < 1e-3, "{}", fixes[0].lat);
        assert!((fixes[0].lon - 175.3149).abs() < 1e-3);
        let (fixes, _) = decode_log("triton400.log");
        assert!(fixes[0].lon < -80.0);
    }

    #[test]
    fn spliced_triton_line_is_rejected_and_the_stream_recovers() {
        let all = lines("triton400.log");
        let spliced = all
            .iter()
            .find(|l| l.starts_with("$GPGGA,030130$"))
            .expect("line 19");
        assert!(matches!(parse(spliced), Err(NmeaError::BadChecksum { .. })));
        let (fixes, asm) = decode_log("triton400.log");
        assert_eq!(asm.bad, 1);
        assert!(fixes.iter().any(|f| f.time_of_day.second == 31));
    }

    #[test]
    fn void_rmc_gives_no_position_but_zda_gives_the_date() {
        let s = parse("$GPRMC,,V,,,,,,,,,,N*53").expect("valid");
        assert!(matches!(
            s,
            Sentence::Rmc(Rmc {
                valid: false,
                lat: None,
                ..
            })
        ));
        let (fixes, asm) = decode_log("bu353-glonass.log");
        assert!(
            asm.date().is_some_and(|d| d.year == 2014),
            "{:?}",
            asm.date()
        );
        assert!(!fixes.is_empty());
    }

    #[test]
    fn garbage_dates_are_dropped_and_1999_dates_kept() {
        let s = parse("$GPRMC,000231.099,A,4829.0005,N,00022.0015,E,0.15,212.28,2208-1,,,A*73")
            .expect("valid");
        assert!(matches!(
            s,
            Sentence::Rmc(Rmc {
                date: None,
                valid: true,
                ..
            })
        ));
        let s = parse("$GPRMC,000231.42,A,4829.0005,N,00022.0016,E,0.16,212.28,220899,,,A*59")
            .expect("valid");
        let Sentence::Rmc(r) = s else {
            panic!("not rmc")
        };
        let f = Date {
            ..r.date.expect("dated")
        };
        assert_eq!(
            rfc3339(f.unix_ms(r.time.expect("timed"))),
            "1999-08-22T00:02:31.420Z"
        );
    }

    #[test]
    fn cold_boot_log_with_nuls_and_bad_checksums_never_fails() {
        let (fixes, asm) = decode_log("gp-320fw-2019-04-07-coldboot.log");
        assert!(asm.bad > 0);
        assert!(!fixes.is_empty());
        for f in fixes {
            assert!(f.lat.abs() <= 90.0 && f.lon.abs() <= 180.0);
        }
    }

    #[test]
    fn rejects_bad_framing_and_fields() {
        assert_eq!(parse("GPRMC,1*00"), Err(NmeaError::NoStart));
        assert_eq!(
            parse("$GPRMC,083723.00,A,5155.55442,N$GPGGA,1"),
            Err(NmeaError::Spliced)
        );
        assert!(matches!(
            parse("$GPGGA,1*00"),
            Err(NmeaError::BadChecksum { .. })
        ));
        let bad_lat =
            hal_sentence("GPGGA,083723.00,9155.55442,N,00434.65873,E,1,06,2.51,-4.0,M,46.0,M,,");
        assert!(matches!(
            parse(&bad_lat),
            Err(NmeaError::BadField {
                sentence: "GGA",
                ..
            })
        ));
        let bad_time = hal_sentence("GPRMC,256000.00,A,5155.55442,N,00434.65873,E,0.2,,210810,,,A");
        assert!(matches!(
            parse(&bad_time),
            Err(NmeaError::BadField { field: 1, .. })
        ));
    }

    fn hal_sentence(body: &str) -> String {
        fleet_hal::sim::nmea::sentence(body)
    }

    #[test]
    fn reads_every_talker_and_the_types_it_knows() {
        for talker in ["GP", "GN", "GL", "GA", "BD"] {
            let s = hal_sentence(&format!("{talker}VTG,054.7,T,034.4,M,005.5,N,010.2,K"));
            let Ok(Sentence::Vtg(v)) = parse(&s) else {
                panic!("{s}")
            };
            assert!((v.speed_mps.expect("speed") - 5.5 * KNOTS_TO_MPS).abs() < 1e-9);
        }
        let gsa = parse("$GPGSA,A,3,27,15,09,28,18,08,,,,,,,3.33,2.51,2.20*04").expect("valid");
        assert_eq!(
            gsa,
            Sentence::Gsa(Gsa {
                mode: 3,
                sats_used: 6,
                pdop: Some(3.33),
                hdop: Some(2.51),
                vdop: Some(2.20),
                system: Some(1),
                prns: [27, 15, 9, 28, 18, 8, 0, 0, 0, 0, 0, 0],
            })
        );
        let line = hal_sentence("GPZDA,201530.00,04,07,2002,00,00");
        let zda = parse(&line).expect("valid");
        assert_eq!(
            zda,
            Sentence::Zda(Zda {
                time: parse_time("201530.00"),
                date: Some(Date {
                    year: 2002,
                    month: 7,
                    day: 4
                })
            })
        );
    }

    #[test]
    fn rollover_floor_moves_week_wrap_dates_forward_by_whole_eras() {
        let lines = [
            "$GPRMC,000231.42,A,4829.0005,N,00022.0016,E,0.16,212.28,220899,,,A*59",
            "$GPRMC,083723.00,A,5155.55442,N,00434.65873,E,0.2,,210810,,,A",
            "$GPRMC,000345.03,A,4808.9993,N,01135.0798,E,000.1,000.0,070419,003.0,E,A*33",
        ];
        let times = |asm: &mut FixAssembler| -> Vec<String> {
            lines
                .iter()
                .map(|l| {
                    asm.push_line(l);
                    rfc3339(asm.flush().and_then(|f| f.utc_ms).expect("dated fix"))
                })
                .collect()
        };
        assert_eq!(
            times(&mut FixAssembler::new()),
            [
                "1999-08-22T00:02:31.420Z",
                "2010-08-21T08:37:23.000Z",
                "2019-04-07T00:03:45.030Z"
            ]
        );
        // gpsd's answers for the same sentences.
        assert_eq!(
            times(&mut FixAssembler::new().with_rollover_floor(LAST_WEEK_ROLLOVER)),
            [
                "2019-04-07T00:02:31.420Z",
                "2030-04-06T08:37:23.000Z",
                "2019-04-07T00:03:45.030Z"
            ]
        );
    }

    #[test]
    fn sentence_without_checksum_is_accepted_like_gpsd_and_counted() {
        let line = "$GPRMC,083723.00,A,5155.55442,N,00434.65873,E,0.2,,210810,,,A";
        assert!(matches!(
            parse_sentence(line),
            Ok((Sentence::Rmc(Rmc { valid: true, .. }), Checksum::Missing))
        ));
        let mut asm = FixAssembler::new();
        asm.push_line(line);
        assert_eq!((asm.sentences, asm.unchecked, asm.bad), (1, 1, 0));
        // A wrong checksum is still a bad sentence.
        asm.push_line(&format!("{line}*00"));
        assert_eq!(asm.bad, 1);
    }

    #[test]
    fn spliced_line_resyncs_on_the_second_dollar() {
        let mut asm = FixAssembler::new();
        let mut tpv = Vec::new();
        // Cold-boot log line 40: a whole GSA run into a whole RMC.
        asm.push_line_reports(
            "$GPGSA,A,1,,,,,,,,,,,,,,,*1E$GPRMC,235949.00,V,0000.0000,N,00000.0000,E,,,161206,,,N*44\r",
            &mut |r| tpv.push(r),
        );
        assert_eq!((asm.sentences, asm.bad), (2, 0));
        asm.finish_reports(&mut |r| tpv.push(r));
        assert!(matches!(
            tpv[0],
            Report::Tpv(Tpv {
                mode: mode::NO_FIX,
                utc_ms: Some(_),
                lat: None,
                ..
            })
        ));
        // Triton line 19: a GGA cut off after its time, then a whole GLL. The
        // head has no checksum, so it is a fragment, not a sentence.
        let mut asm = FixAssembler::new();
        asm.push_line("$GPGGA,030130$GPGLL,2638.1728,N,08011.3893,W,030131.000,A,A*41");
        assert_eq!((asm.sentences, asm.bad), (1, 1));
        let fix = asm.flush().expect("GLL gives a fix");
        assert!((fix.lat - 26.636213).abs() < 1e-6, "{}", fix.lat);
    }

    #[test]
    fn noise_that_is_not_ascii_before_a_sentence_is_one_bad_piece() {
        // Found by the nmea_lines fuzz target: a multi-byte character first.
        let mut asm = FixAssembler::new();
        asm.push_line("\u{729}QGSV,7,056$GPZDA,201530.00,04,07,2002,00,00*60");
        assert_eq!((asm.bad, asm.sentences), (1, 1));
        asm.push_line("\u{fffd}\u{fffd}");
        assert_eq!(asm.bad, 2);
    }

    #[test]
    fn nmea_4_11_system_and_signal_ids_are_read() {
        let Ok(Sentence::Gsa(g)) = parse("$GNGSA,A,3,69,76,78,85,,,,,,,,,1.2,0.9,0.9,2*3D") else {
            panic!("GSA")
        };
        assert_eq!((g.system, g.sats_used, g.prns[3]), (Some(2), 4, 85));
        let Ok(Sentence::Gsv(v)) = parse("$GAGSV,1,1,03,07,23,126,,12,,,,24,19,329,,7*76") else {
            panic!("GSV")
        };
        assert_eq!((v.system, v.signal, v.in_view), (Some(3), Some(7), 3));
        let Ok(Sentence::Gsv(v)) =
            parse("$GPGSV,3,3,12,15,27,056,,21,02,265,,26,07,203,,30,09,343,,1*69")
        else {
            panic!("GSV")
        };
        assert_eq!((v.system, v.signal), (Some(1), Some(1)));
        // Before 4.11 there is no signal id.
        let Ok(Sentence::Gsv(v)) =
            parse("$GPGSV,3,1,12,20,76,058,40,11,73,252,,06,41,274,,14,41,185,*7D")
        else {
            panic!("GSV")
        };
        assert_eq!(v.signal, None);
    }

    #[test]
    fn gsv_with_a_satellite_cut_short_is_bad_despite_its_checksum() {
        assert!(matches!(
            parse("$GPGSV,3,3,12,2,40,16,00,090,*72"),
            Err(NmeaError::BadField {
                sentence: "GSV",
                ..
            })
        ));
    }

    #[test]
    fn beidou_qzss_and_navic_talkers_map_to_their_systems() {
        for (talker, system) in [("GB", 4), ("BD", 4), ("GQ", 5), ("GI", 6), ("GA", 3)] {
            let s = hal_sentence(&format!("{talker}GSA,A,3,05,07,,,,,,,,,,,2.0,1.0,1.7"));
            let Ok(Sentence::Gsa(g)) = parse(&s) else {
                panic!("{s}")
            };
            assert_eq!(g.system, Some(system), "{talker}");
            let s = hal_sentence(&format!(
                "{talker}RMC,083723.00,A,5155.55442,N,00434.65873,E,0.2,,210810,,,A"
            ));
            assert!(matches!(parse(&s), Ok(Sentence::Rmc(_))), "{s}");
        }
    }

    /// Every dated TPV that gpsd reported with a position, we report too, with the
    /// same time, position and speed.
    #[test]
    fn fixes_match_gpsd_reports_across_real_receivers() {
        for name in [
            "ublox-lea-5h.log",
            "bu353s4.log",
            "bu353-glonass.log",
            "garmin15x.log",
            "mt3339.log",
            "quectel-eg25-g-2.log",
            "nmea-fuzzy-cases.log",
            "triton400.log",
        ] {
            let (ours, _) = decode_log(name);
            let chk = std::fs::read_to_string(format!("{FIXTURES}/{name}.chk")).expect("chk");
            let mut compared = 0;
            let mut after = "";
            for line in chk.lines() {
                if line.starts_with('$') {
                    after = line;
                }
                if !line.starts_with("{\"class\":\"TPV\"") {
                    continue;
                }
                let v: serde_json::Value = serde_json::from_str(line).expect("json");
                let (Some(t), Some(lat), Some(lon)) =
                    (v["time"].as_str(), v["lat"].as_f64(), v["lon"].as_f64())
                else {
                    continue;
                };
                if v["mode"].as_u64().unwrap_or(0) < 2 {
                    continue;
                }
                let Some(f) = ours
                    .iter()
                    .find(|f| f.utc_ms.map(rfc3339).as_deref() == Some(t))
                else {
                    panic!("{name}: no fix at {t}");
                };
                if (f.lat - lat).abs() > 1e-6 || (f.lon - lon).abs() > 1e-6 {
                    // gpsd reports the epoch's last sentence; a receiver may repeat
                    // a time with a moved position (GLL after RMC), so any of ours
                    // at that time may match.
                    let any = ours.iter().any(|g| {
                        g.utc_ms == f.utc_ms
                            && (g.lat - lat).abs() < 1e-6
                            && (g.lon - lon).abs() < 1e-6
                    });
                    assert!(any, "{name} {t}: ours {},{} gpsd {lat},{lon}", f.lat, f.lon);
                }
                // gpsd derives speed from successive positions when a sentence
                // has none; only RMC and VTG speeds are the receiver's own.
                let reported = after.get(3..6).is_some_and(|k| k == "RMC" || k == "VTG");
                if let (true, Some(s), Some(ours)) = (reported, v["speed"].as_f64(), f.speed_mps) {
                    assert!((s - ours).abs() < 0.002, "{name} {t}: speed {ours} vs {s}");
                }
                compared += 1;
            }
            assert!(compared > 0, "{name}: nothing compared");
        }
    }
}
