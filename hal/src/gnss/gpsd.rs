//! A client of gpsd's JSON protocol (<https://gpsd.io/gpsd_json.html>).
//!
//! We ask for JSON reports, not gpsd's raw NMEA pass-through: gpsd already merges
//! the receiver's sentences (or its binary protocol, which has no NMEA at all)
//! into one TPV report per epoch with the time, position, speed and fix mode, so
//! the agent gets the same fix whatever receiver is fitted. SKY reports supply
//! the HDOP and the satellites used, which TPV lacks.

use super::lines::{LineFramer, MAX_LINE};
use super::GnssFix;
use serde::Deserialize;
use std::collections::VecDeque;
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// gpsd's default address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:2947";
const WATCH: &[u8] = b"?WATCH={\"enable\":true,\"json\":true}\n";

#[derive(Debug, thiserror::Error)]
pub enum GpsdError {
    #[error("gpsd closed the connection")]
    Closed,
    #[error("gpsd I/O error: {0}")]
    Io(#[from] io::Error),
}

/// What the client saw, for health reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpsdStats {
    /// TPV reports with a 2D or 3D fix.
    pub fixes: u64,
    /// TPV reports without a fix (mode 0 or 1).
    pub no_fix: u64,
    /// Lines that were not JSON objects with a `class`, or overlong.
    pub bad_lines: u64,
}

#[derive(Deserialize)]
struct Report<'a> {
    class: &'a str,
    #[serde(default)]
    mode: Option<u8>,
    #[serde(default)]
    status: Option<i32>,
    #[serde(default)]
    time: Option<&'a str>,
    #[serde(default)]
    lat: Option<f64>,
    #[serde(default)]
    lon: Option<f64>,
    #[serde(default, rename = "altMSL")]
    alt_msl: Option<f64>,
    /// gpsd before 3.20 sent only `alt`.
    #[serde(default)]
    alt: Option<f64>,
    #[serde(default)]
    speed: Option<f64>,
    #[serde(default)]
    track: Option<f64>,
    #[serde(default)]
    hdop: Option<f64>,
    #[serde(default, rename = "uSat")]
    used_sats: Option<u8>,
    #[serde(default)]
    satellites: Option<Vec<Satellite>>,
}

#[derive(Deserialize)]
struct Satellite {
    #[serde(default)]
    used: bool,
}

/// What one line of gpsd output means to us.
#[derive(Debug, Clone, PartialEq)]
pub enum GpsdLine {
    Fix(GnssFix),
    NoFix,
    /// SKY: dilution and satellites in use, kept for the next fix.
    Sky {
        hdop: Option<f64>,
        sats: Option<u8>,
    },
    /// VERSION, DEVICES, WATCH and the rest.
    Other,
}

/// Parse one line of gpsd output. Pure, for tests and fuzzing.
pub fn parse_gpsd_line(line: &str) -> Result<GpsdLine, serde_json::Error> {
    let r: Report<'_> = serde_json::from_str(line)?;
    Ok(match r.class {
        "TPV" => match (r.mode, r.lat, r.lon) {
            (Some(mode @ 2..=3), Some(lat), Some(lon))
                if lat.abs() <= 90.0 && lon.abs() <= 180.0 =>
            {
                GpsdLine::Fix(GnssFix {
                    utc_ms: r.time.and_then(parse_rfc3339_ms),
                    lat,
                    lon,
                    alt_m: if mode == 3 { r.alt_msl.or(r.alt) } else { None },
                    speed_mps: r.speed.filter(|s| s.is_finite()),
                    course_deg: r.track.filter(|t| t.is_finite()),
                    hdop: None,
                    sats: None,
                    quality: match (mode, r.status) {
                        (_, Some(2)) => 3,
                        (3, _) => 2,
                        _ => 1,
                    },
                })
            }
            _ => GpsdLine::NoFix,
        },
        "SKY" => GpsdLine::Sky {
            hdop: r.hdop,
            sats: r.used_sats.or_else(|| {
                r.satellites
                    .map(|s| s.iter().filter(|s| s.used).count().min(255) as u8)
            }),
        },
        _ => GpsdLine::Other,
    })
}

fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// A connection to gpsd that yields fixes. Connect again after an error: gpsd
/// restarts when its receiver is replugged.
pub struct GpsdClient {
    stream: TcpStream,
    framer: LineFramer,
    queue: VecDeque<String>,
    buf: Box<[u8]>,
    hdop: Option<f64>,
    sats: Option<u8>,
    stats: GpsdStats,
}

impl GpsdClient {
    /// Connect to `addr` (`host:port`) and ask for JSON reports.
    pub async fn connect(addr: &str) -> Result<Self, GpsdError> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(WATCH).await?;
        Ok(Self {
            stream,
            framer: LineFramer::new(MAX_LINE),
            queue: VecDeque::new(),
            buf: vec![0; 4096].into_boxed_slice(),
            hdop: None,
            sats: None,
            stats: GpsdStats::default(),
        })
    }

    pub fn stats(&self) -> GpsdStats {
        GpsdStats {
            bad_lines: self.stats.bad_lines + self.framer.dropped,
            ..self.stats
        }
    }

    /// The next report with a position fix. Reports without one are counted and
    /// skipped, and so is anything that is not gpsd JSON.
    pub async fn next_fix(&mut self) -> Result<GnssFix, GpsdError> {
        loop {
            while let Some(line) = self.queue.pop_front() {
                match parse_gpsd_line(&line) {
                    Ok(GpsdLine::Fix(mut fix)) => {
                        self.stats.fixes += 1;
                        fix.hdop = self.hdop;
                        fix.sats = self.sats;
                        return Ok(fix);
                    }
                    Ok(GpsdLine::NoFix) => self.stats.no_fix += 1,
                    Ok(GpsdLine::Sky { hdop, sats }) => {
                        self.hdop = hdop.or(self.hdop);
                        self.sats = sats.or(self.sats);
                    }
                    Ok(GpsdLine::Other) => {}
                    Err(e) => {
                        self.stats.bad_lines += 1;
                        tracing::debug!(error = %e, "not a gpsd report; skipped");
                    }
                }
            }
            let n = self.stream.read(&mut self.buf).await?;
            if n == 0 {
                return Err(GpsdError::Closed);
            }
            let mut lines = Vec::new();
            self.framer.push(&self.buf[..n], &mut lines);
            self.queue.extend(lines);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_3d_tpv_becomes_a_fix_in_gpsd_units() {
        let l = r#"{"class":"TPV","device":"/dev/ttyUSB0","mode":3,"time":"2010-08-21T08:37:23.000Z","lat":51.925907,"lon":4.5776455,"altMSL":12.3,"speed":1.5,"track":270.0}"#;
        let GpsdLine::Fix(f) = parse_gpsd_line(l).expect("json") else {
            panic!("no fix")
        };
        assert_eq!(f.utc_ms, Some(1_282_379_843_000));
        assert_eq!((f.lat, f.lon, f.alt_m), (51.925907, 4.5776455, Some(12.3)));
        assert_eq!(
            (f.speed_mps, f.course_deg, f.quality),
            (Some(1.5), Some(270.0), 2)
        );
    }

    #[test]
    fn reports_without_a_fix_or_out_of_range_are_not_fixes() {
        for l in [
            r#"{"class":"TPV","mode":1,"time":"2010-08-21T08:37:23.000Z"}"#,
            r#"{"class":"TPV","mode":3}"#,
            r#"{"class":"TPV","mode":2,"lat":91.0,"lon":3.0}"#,
        ] {
            assert_eq!(parse_gpsd_line(l).expect(l), GpsdLine::NoFix, "{l}");
        }
        assert_eq!(
            parse_gpsd_line(r#"{"class":"VERSION","release":"3.25"}"#).expect("json"),
            GpsdLine::Other
        );
        assert!(parse_gpsd_line("{\"class\":\"TPV\",\"mode\":").is_err());
        assert!(parse_gpsd_line("$GPRMC,1,2").is_err());
    }

    #[test]
    fn sky_counts_used_satellites_when_usat_is_missing() {
        let l = r#"{"class":"SKY","hdop":0.9,"satellites":[{"PRN":1,"used":true},{"PRN":2,"used":false},{"PRN":3,"used":true}]}"#;
        assert_eq!(
            parse_gpsd_line(l).expect("json"),
            GpsdLine::Sky {
                hdop: Some(0.9),
                sats: Some(2)
            }
        );
    }
}
