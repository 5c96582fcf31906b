//! When a report schedule runs, and which days a run covers, free of I/O.
//! A schedule runs daily, weekly (on a weekday) or monthly (on a day 1..=28,
//! which every month has) at a local hour in an IANA time zone; a run covers
//! the whole days before the day it runs: yesterday, the last 7 days, or the
//! last month.

use crate::storage::reports::ScheduleSpec;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// The report kinds a schedule may ask for.
pub const KINDS: [&str; 5] = ["utilization", "idle", "trips", "costs", "summary"];
pub const PERIODS: [&str; 3] = ["daily", "weekly", "monthly"];
pub const MAX_RECIPIENTS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Daily,
    /// 1 (Monday) ..= 7 (Sunday).
    Weekly(u8),
    /// 1 ..= 28.
    Monthly(u8),
}

#[derive(Debug, Clone)]
pub struct Cadence {
    pub period: Period,
    pub hour: u8,
    pub tz: TimeZone,
}

/// Why a spec is refused: a stable code and a message for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: &'static str,
    pub message: String,
}

fn invalid(code: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        code,
        message: message.into(),
    }
}

/// Checks everything about `spec` but the caller's right to the report.
pub fn validate(spec: &ScheduleSpec) -> Result<Cadence, Invalid> {
    let name = spec.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(invalid("bad_name", "name must be 1 to 200 characters"));
    }
    if !KINDS.contains(&spec.kind.as_str()) {
        return Err(invalid(
            "bad_report",
            format!("kind must be one of {}", KINDS.join(", ")),
        ));
    }
    match spec.format.as_str() {
        "csv" => {}
        "pdf" if spec.kind == "summary" => {}
        "pdf" => {
            return Err(invalid(
                "bad_format",
                "only the summary report comes as a PDF",
            ))
        }
        f => {
            return Err(invalid(
                "bad_format",
                format!("format {f:?} is not csv or pdf"),
            ))
        }
    }
    if spec.recipients.is_empty() || spec.recipients.len() > MAX_RECIPIENTS {
        return Err(invalid(
            "bad_recipients",
            format!("give 1 to {MAX_RECIPIENTS} recipients"),
        ));
    }
    for r in &spec.recipients {
        if r.parse::<lettre::Address>().is_err() {
            return Err(invalid(
                "bad_recipients",
                format!("{r:?} is not an email address"),
            ));
        }
    }
    let Some(filters) = spec.filters.as_object() else {
        return Err(invalid("bad_filters", "filters must be an object"));
    };
    for (k, v) in filters {
        let ok = match k.as_str() {
            "vehicle" => v.as_str().is_some_and(|s| s.parse::<uuid::Uuid>().is_ok()),
            "days" => v.as_i64().is_some_and(|d| (1..=365).contains(&d)),
            _ => {
                return Err(invalid(
                    "bad_filters",
                    format!("unknown filter {k:?} (vehicle, days)"),
                ))
            }
        };
        if !ok {
            return Err(invalid(
                "bad_filters",
                "vehicle must be a vehicle id and days 1..=365",
            ));
        }
    }
    if spec.hour > 23 {
        return Err(invalid("bad_cadence", "hour must be 0..=23"));
    }
    let period = match (spec.period.as_str(), spec.weekday, spec.month_day) {
        ("daily", None, None) => Period::Daily,
        ("weekly", Some(d @ 1..=7), None) => Period::Weekly(d),
        ("monthly", None, Some(d @ 1..=28)) => Period::Monthly(d),
        ("daily" | "weekly" | "monthly", _, _) => return Err(invalid(
            "bad_cadence",
            "weekly takes a weekday 1 (Monday) to 7, monthly a month_day 1 to 28, daily neither",
        )),
        (p, _, _) => {
            return Err(invalid(
                "bad_cadence",
                format!("period {p:?} is not daily, weekly or monthly"),
            ))
        }
    };
    let tz = TimeZone::get(&spec.time_zone).map_err(|_| {
        invalid(
            "bad_time_zone",
            format!("{:?} is not a known time zone", spec.time_zone),
        )
    })?;
    Ok(Cadence {
        period,
        hour: spec.hour,
        tz,
    })
}

impl Cadence {
    fn local_date(&self, ms: i64) -> Date {
        Timestamp::from_millisecond(ms)
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .to_zoned(self.tz.clone())
            .date()
    }

    fn runs_on(&self, d: Date) -> bool {
        match self.period {
            Period::Daily => true,
            Period::Weekly(w) => d.weekday().to_monday_one_offset() == w as i8,
            Period::Monthly(m) => d.day() == m as i8,
        }
    }

    /// The instant of the run on local day `d` (a skipped hour, at a
    /// daylight-saving change, runs at the first instant after it).
    fn run_ms(&self, d: Date) -> Option<i64> {
        let z = d
            .at(self.hour as i8, 0, 0, 0)
            .to_zoned(self.tz.clone())
            .ok()?;
        Some(z.timestamp().as_millisecond())
    }

    /// The first run strictly after `after_ms`.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let mut d = self.local_date(after_ms).yesterday().ok()?;
        // Two months of days always hold a run of any cadence.
        for _ in 0..70 {
            if self.runs_on(d) {
                if let Some(at) = self.run_ms(d) {
                    if at > after_ms {
                        return Some(at);
                    }
                }
            }
            d = d.tomorrow().ok()?;
        }
        None
    }

    /// The local days a run at `due_ms` covers, first and last (inclusive),
    /// as `YYYY-MM-DD`.
    pub fn window(&self, due_ms: i64) -> (String, String) {
        let today = self.local_date(due_ms);
        let last = today.yesterday().unwrap_or(today);
        let first = match self.period {
            Period::Daily => last,
            Period::Weekly(_) => today.checked_sub(7.days()).unwrap_or(last),
            Period::Monthly(_) => today.checked_sub(1.month()).unwrap_or(last),
        };
        (first.to_string(), last.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(period: &str, weekday: Option<u8>, month_day: Option<u8>) -> ScheduleSpec {
        ScheduleSpec {
            name: "r".into(),
            kind: "utilization".into(),
            format: "csv".into(),
            period: period.into(),
            hour: 7,
            weekday,
            month_day,
            time_zone: "Europe/Berlin".into(),
            recipients: vec!["ops@example.com".into()],
            filters: json!({}),
        }
    }

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn a_daily_schedule_runs_at_its_local_hour_across_a_clock_change() {
        let c = validate(&spec("daily", None, None)).unwrap();
        // 07:00 in Berlin is 06:00Z in winter.
        assert_eq!(
            c.next_after(ms("2026-11-22T05:00:00Z")),
            Some(ms("2026-11-22T06:00:00Z"))
        );
        assert_eq!(
            c.next_after(ms("2026-11-22T06:00:00Z")),
            Some(ms("2026-11-23T06:00:00Z"))
        );
        // Summer time starts on 2026-03-29: 07:00 is then 05:00Z.
        assert_eq!(
            c.next_after(ms("2026-03-28T06:00:00Z")),
            Some(ms("2026-03-29T05:00:00Z"))
        );
        let (from, to) = c.window(ms("2026-11-22T06:00:00Z"));
        assert_eq!((from.as_str(), to.as_str()), ("2026-11-21", "2026-11-21"));
    }

    #[test]
    fn weekly_and_monthly_schedules_wait_for_their_day() {
        // 2026-11-22 is a Sunday; Monday is weekday 1.
        let w = validate(&spec("weekly", Some(1), None)).unwrap();
        assert_eq!(
            w.next_after(ms("2026-11-22T12:00:00Z")),
            Some(ms("2026-11-23T06:00:00Z"))
        );
        let (from, to) = w.window(ms("2026-11-23T06:00:00Z"));
        assert_eq!((from.as_str(), to.as_str()), ("2026-11-16", "2026-11-22"));
        let m = validate(&spec("monthly", None, Some(1))).unwrap();
        assert_eq!(
            m.next_after(ms("2026-11-22T12:00:00Z")),
            Some(ms("2026-12-01T06:00:00Z"))
        );
        let (from, to) = m.window(ms("2026-12-01T06:00:00Z"));
        assert_eq!((from.as_str(), to.as_str()), ("2026-11-01", "2026-11-30"));
    }

    #[test]
    fn bad_specs_are_refused_with_a_code() {
        let code = |s: ScheduleSpec| validate(&s).unwrap_err().code;
        assert_eq!(code(spec("hourly", None, None)), "bad_cadence");
        assert_eq!(code(spec("weekly", None, None)), "bad_cadence");
        assert_eq!(code(spec("monthly", None, Some(31))), "bad_cadence");
        let mut s = spec("daily", None, None);
        s.time_zone = "Mars/Olympus".into();
        assert_eq!(code(s), "bad_time_zone");
        let mut s = spec("daily", None, None);
        s.format = "pdf".into();
        assert_eq!(code(s), "bad_format", "only the summary is a PDF");
        let mut s = spec("daily", None, None);
        s.recipients = vec!["nobody".into()];
        assert_eq!(code(s), "bad_recipients");
        let mut s = spec("daily", None, None);
        s.filters = json!({"colour": "red"});
        assert_eq!(code(s), "bad_filters");
        let mut s = spec("daily", None, None);
        s.kind = "gossip".into();
        assert_eq!(code(s), "bad_report");
        let mut s = spec("daily", None, None);
        s.hour = 24;
        assert_eq!(code(s), "bad_cadence");
    }
}
