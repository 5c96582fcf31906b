//! `fleet-agent decode nmea FILE`: an NMEA 0183 log to gpsd-style JSON lines.
//!
//! One `TPV` object per epoch (with or without a fix) and one `SKY` object per
//! epoch that had GSA or GSV, with gpsd's field names (`time`, `lat`, `lon`,
//! `alt`/`altMSL`, `speed` in m/s, `track`, `mode`, `status`, `hdop`, `pdop`,
//! `vdop`, `uSat`, `nSat`) so output can be compared with `gpsdecode -j` directly.
//! Times are the receiver's unless a rollover floor is given: gpsd moves any date
//! before the last GPS week-number wrap forward by 1024-week eras, which makes a
//! replayed 2010 log come out in 2030; `--rollover-floor 2019-04-06` does the same.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::Context;
use serde_json::{json, Map, Value as Json};

use crate::decode::nmea::{mode, status, Date, FixAssembler, Report, Sky, Tpv};

/// What a log held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NmeaSummary {
    pub lines: u64,
    pub sentences: u64,
    pub bad: u64,
    pub ignored: u64,
    pub unchecked: u64,
    pub tpv: u64,
    pub fixes: u64,
    pub sky: u64,
}

/// `YYYY-MM-DD`, as `--rollover-floor` takes it.
pub fn parse_date(s: &str) -> anyhow::Result<Date> {
    let bad = || anyhow::anyhow!("not a date: {s:?} (want YYYY-MM-DD)");
    let mut it = s.splitn(3, '-');
    let mut next = || {
        it.next()
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(bad)
    };
    let (year, month, day) = (next()?, next()?, next()?);
    let (Ok(month), Ok(day)) = (u8::try_from(month), u8::try_from(day)) else {
        return Err(bad());
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || year < 1980 {
        return Err(bad());
    }
    Ok(Date { year, month, day })
}

/// Decodes the log at `path`, one JSON object per report to `out`. `#` comment
/// lines (the header of gpsd's test logs) are skipped. With `rollover_floor`,
/// earlier dates are moved forward by whole GPS eras, as gpsd does.
pub fn decode_nmea_file(
    path: &Path,
    rollover_floor: Option<Date>,
    out: &mut impl Write,
) -> anyhow::Result<NmeaSummary> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let mut asm = FixAssembler::new();
    if let Some(floor) = rollover_floor {
        asm = asm.with_rollover_floor(floor);
    }
    let mut summary = NmeaSummary::default();
    let mut line = Vec::with_capacity(256);
    let mut write_err: Option<std::io::Error> = None;
    let mut emit = |r: Report, summary: &mut NmeaSummary| {
        match r {
            Report::Tpv(t) => {
                summary.tpv += 1;
                if t.mode >= mode::FIX_2D {
                    summary.fixes += 1;
                }
            }
            Report::Sky(_) => summary.sky += 1,
        }
        if write_err.is_none() {
            if let Err(e) = writeln!(out, "{}", report_json(&r)) {
                write_err = Some(e);
            }
        }
    };
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        summary.lines += 1;
        if line.first() == Some(&b'#') {
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        asm.push_line_reports(&text, &mut |r| emit(r, &mut summary));
    }
    asm.finish_reports(&mut |r| emit(r, &mut summary));
    if let Some(e) = write_err {
        return Err(e).context("writing the decoded reports");
    }
    summary.sentences = asm.sentences;
    summary.bad = asm.bad;
    summary.ignored = asm.ignored;
    summary.unchecked = asm.unchecked;
    Ok(summary)
}

/// Unix milliseconds as gpsd writes them: RFC 3339 UTC, always with milliseconds.
pub fn gpsd_time(ms: i64) -> String {
    use time::macros::format_description;
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

fn put(o: &mut Map<String, Json>, key: &str, v: Option<f64>) {
    if let Some(v) = v {
        o.insert(key.into(), json!(v));
    }
}

/// One report as gpsd's JSON object.
pub fn report_json(r: &Report) -> Json {
    match r {
        Report::Tpv(t) => tpv_json(t),
        Report::Sky(s) => sky_json(s),
    }
}

fn tpv_json(t: &Tpv) -> Json {
    let mut o = Map::new();
    o.insert("class".into(), json!("TPV"));
    if t.mode >= mode::FIX_2D && t.status != status::FIX {
        o.insert("status".into(), json!(t.status));
    }
    o.insert("mode".into(), json!(t.mode));
    if let Some(ms) = t.utc_ms {
        o.insert("time".into(), json!(gpsd_time(ms)));
    }
    put(&mut o, "lat", t.lat);
    put(&mut o, "lon", t.lon);
    put(&mut o, "alt", t.alt_msl_m);
    put(&mut o, "altMSL", t.alt_msl_m);
    put(&mut o, "track", t.track_deg);
    put(&mut o, "speed", t.speed_mps);
    Json::Object(o)
}

fn sky_json(s: &Sky) -> Json {
    let mut o = Map::new();
    o.insert("class".into(), json!("SKY"));
    if let Some(ms) = s.utc_ms {
        o.insert("time".into(), json!(gpsd_time(ms)));
    }
    put(&mut o, "hdop", s.hdop);
    put(&mut o, "pdop", s.pdop);
    put(&mut o, "vdop", s.vdop);
    if let Some(n) = s.in_view {
        o.insert("nSat".into(), json!(n));
    }
    if let Some(n) = s.used {
        o.insert("uSat".into(), json!(n));
    }
    Json::Object(o)
}
