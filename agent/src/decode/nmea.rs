//! NMEA 0183 sentences from any talker (GP, GN, GL, GA, BD, ...): RMC, GGA, VTG,
//! GSA, GSV and ZDA, checksum validated; and [`FixAssembler`], which merges the
//! sentences of one epoch into one fix. Bad sentences are errors the caller counts
//! and skips; nothing here is fatal and nothing allocates.

use std::str::Split;

/// Longest sentence accepted: the standard says 82, receivers sometimes write more.
pub const MAX_SENTENCE_LEN: usize = 200;

const KNOTS_TO_MPS: f64 = 1852.0 / 3600.0;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NmeaError {
    #[error("not a sentence: no leading '$'")]
    NoStart,
    #[error("sentence longer than {MAX_SENTENCE_LEN} bytes")]
    TooLong,
    #[error("sentence is not printable ASCII")]
    NotAscii,
    #[error("no checksum")]
    NoChecksum,
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
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gsv {
    pub messages: u8,
    pub number: u8,
    pub in_view: u8,
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

/// Check framing and checksum; return the body between `$` and `*`.
pub fn validate(line: &str) -> Result<&str, NmeaError> {
    let line = line.trim_end_matches(['\r', '\n', '\0', ' ']);
    let line = line.trim_start_matches(['\0', ' ']);
    let rest = line.strip_prefix('$').ok_or(NmeaError::NoStart)?;
    if line.len() > MAX_SENTENCE_LEN {
        return Err(NmeaError::TooLong);
    }
    if !rest.bytes().all(|b| (0x20..0x7F).contains(&b)) {
        return Err(NmeaError::NotAscii);
    }
    let (body, sum) = rest.rsplit_once('*').ok_or(NmeaError::NoChecksum)?;
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
        return Err(NmeaError::BadChecksum {
            computed,
            stated: sum.into(),
        });
    }
    Ok(body)
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
    let body = validate(line)?;
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
    let kind = &address[2..];
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
            // NMEA 2.3+ mode indicator: N means no fix whatever the status says.
            let _magvar = f.next();
            let _magvar_dir = f.next();
            let valid = valid && f.next() != "N";
            Sentence::Rmc(Rmc {
                time,
                valid,
                lat,
                lon,
                speed_mps,
                course_deg,
                date,
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
            for _ in 0..12 {
                if !f.next().is_empty() {
                    sats_used += 1;
                }
            }
            let pdop = f.f64()?;
            let hdop = f.f64()?;
            let vdop = f.f64()?;
            Sentence::Gsa(Gsa {
                mode,
                sats_used,
                pdop,
                hdop,
                vdop,
            })
        }
        "GSV" => {
            let messages = f.u8()?.ok_or_else(|| f.err())?;
            let number = f.u8()?.ok_or_else(|| f.err())?;
            let in_view = f.u8()?.unwrap_or(0);
            if number == 0 || number > messages {
                return Err(f.err());
            }
            Sentence::Gsv(Gsv {
                messages,
                number,
                in_view,
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

#[derive(Debug, Default, Clone)]
struct Epoch {
    time: Option<TimeOfDay>,
    rmc: Option<Rmc>,
    gga: Option<Gga>,
    gll: Option<Gll>,
    vtg: Option<Vtg>,
    flushed: bool,
}

/// Merges the sentences of one epoch (same UTC time) into one [`Fix`]. A fix is
/// emitted as soon as the epoch has both RMC and GGA, or when the next epoch
/// begins, so receivers that send only one of them still give fixes.
#[derive(Debug, Default, Clone)]
pub struct FixAssembler {
    epoch: Epoch,
    date: Option<Date>,
    gsa_mode: Option<u8>,
    gsa_hdop: Option<f64>,
    /// Well-formed sentences that were decoded.
    pub sentences: u64,
    /// Sentences rejected (bad checksum, framing, field).
    pub bad: u64,
    /// Well-formed sentences of types not used here.
    pub ignored: u64,
}

impl FixAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// The last date seen (from RMC or ZDA): lets a clock be set from GPS.
    pub fn date(&self) -> Option<Date> {
        self.date
    }

    /// Feed one line; returns a fix when one is complete.
    pub fn push_line(&mut self, line: &str) -> Option<Fix> {
        match parse(line) {
            Ok(s) => {
                self.sentences += 1;
                self.push(s)
            }
            Err(_) => {
                self.bad += 1;
                None
            }
        }
    }

    pub fn push(&mut self, s: Sentence<'_>) -> Option<Fix> {
        let time = match s {
            Sentence::Rmc(r) => r.time,
            Sentence::Gga(g) => g.time,
            Sentence::Gll(g) => g.time,
            Sentence::Zda(z) => {
                if z.date.is_some() {
                    self.date = z.date;
                }
                return None;
            }
            Sentence::Gsa(g) => {
                self.gsa_mode = Some(g.mode);
                self.gsa_hdop = g.hdop;
                return None;
            }
            Sentence::Vtg(v) => {
                self.epoch.vtg = Some(v);
                return None;
            }
            Sentence::Gsv(_) => return None,
            Sentence::Other(_) => {
                self.ignored += 1;
                return None;
            }
        };
        let time = time?;
        let mut out = None;
        if self.epoch.time != Some(time) {
            out = self.flush();
            self.epoch = Epoch {
                time: Some(time),
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

    /// Emit what the current epoch holds, if it has a position.
    pub fn flush(&mut self) -> Option<Fix> {
        if self.epoch.flushed {
            return None;
        }
        let time = self.epoch.time?;
        self.epoch.flushed = true;
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
        if rmc.is_some_and(|r| !r.valid) && gga.is_none() {
            return None;
        }
        let (lat, lon) = gga_pos.or(rmc_pos).or(gll_pos)?;
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
            utc_ms: rmc
                .and_then(|r| r.date)
                .or(self.date)
                .map(|d| d.unix_ms(time)),
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
        assert_eq!(parse("$GPRMC,083723.00,A"), Err(NmeaError::NoChecksum));
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
                vdop: Some(2.20)
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
