//! NMEA 0183 sentences as a GNSS receiver writes them, checksums included.

use std::fmt::Write;

/// What the receiver knows at one epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GnssFix {
    /// Unix milliseconds (UTC) of the epoch.
    pub time_ms: i64,
    pub lat: f64,
    pub lon: f64,
    pub alt_m: f64,
    pub speed_mps: f64,
    /// Course over ground, degrees from true north.
    pub course_deg: f64,
    pub sats: u8,
    pub hdop: f64,
}

/// `$` + body + `*` + checksum (XOR of the body bytes, two hex digits).
pub fn sentence(body: &str) -> String {
    let sum = body.bytes().fold(0u8, |a, b| a ^ b);
    format!("${body}*{sum:02X}")
}

fn civil(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn hhmmss(time_ms: i64) -> (String, String) {
    let secs = time_ms.div_euclid(1000);
    let ms = time_ms.rem_euclid(1000);
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let time = format!(
        "{:02}{:02}{:02}.{:02}",
        s / 3600,
        (s / 60) % 60,
        s % 60,
        ms / 10
    );
    let date = format!("{d:02}{m:02}{:02}", y.rem_euclid(100));
    (time, date)
}

fn coord(v: f64, deg_width: usize, pos: char, neg: char) -> String {
    let hemi = if v < 0.0 { neg } else { pos };
    let a = v.abs();
    let deg = a.trunc();
    let min = (a - deg) * 60.0;
    let mut s = String::with_capacity(16);
    let _ = write!(s, "{:0w$}{:08.5},{hemi}", deg as u32, min, w = deg_width);
    s
}

/// `$GPRMC`: time, status, position, speed in knots, course, date.
pub fn rmc(f: &GnssFix) -> String {
    let (time, date) = hhmmss(f.time_ms);
    sentence(&format!(
        "GPRMC,{time},A,{},{},{:.2},{:.1},{date},,,A",
        coord(f.lat, 2, 'N', 'S'),
        coord(f.lon, 3, 'E', 'W'),
        f.speed_mps * 3600.0 / 1852.0,
        f.course_deg.rem_euclid(360.0),
    ))
}

/// `$GPGGA`: time, position, quality, satellites, HDOP, altitude, geoid separation.
pub fn gga(f: &GnssFix) -> String {
    let (time, _) = hhmmss(f.time_ms);
    sentence(&format!(
        "GPGGA,{time},{},{},1,{:02},{:.1},{:.1},M,46.0,M,,",
        coord(f.lat, 2, 'N', 'S'),
        coord(f.lon, 3, 'E', 'W'),
        f.sats,
        f.hdop,
        f.alt_m,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rmc_matches_a_real_receiver_layout() {
        let f = GnssFix {
            time_ms: 1_282_379_843_000,
            lat: 51.925907,
            lon: 4.5776455,
            alt_m: -4.0,
            speed_mps: 0.109,
            course_deg: 0.0,
            sats: 6,
            hdop: 2.51,
        };
        let s = rmc(&f);
        assert!(
            s.starts_with("$GPRMC,083723.00,A,5155.55442,N,00434.65873,E,0.21,0.0,210810,,,A*"),
            "{s}"
        );
        assert!(gga(&f).starts_with("$GPGGA,083723.00,5155.55442,N,00434.65873,E,1,06,2.5,-4.0,M"));
        assert_eq!(
            sentence("GPVTG,,T,,M,0.211,N,0.391,K,A"),
            "$GPVTG,,T,,M,0.211,N,0.391,K,A*2A"
        );
    }
}
