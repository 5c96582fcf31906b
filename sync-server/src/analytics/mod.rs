//! Analytics and maintenance logic, free of I/O: folding stored events into
//! per-vehicle-per-day rollups, report arithmetic over those rollups, the
//! heatmap, maintenance due-date prediction and alert rules, and CSV rendering.
//! The formulas are stated in `docs/ANALYTICS.md`.

pub mod csv;
pub mod maintenance;
pub mod pdf;
pub mod report;
pub mod rollup;
pub mod schedule;
pub mod scheduled;

/// Milliseconds in a day and an hour.
pub const DAY_MS: i64 = 86_400_000;
pub const HOUR_MS: i64 = 3_600_000;

/// The local day number (days since 1970-01-01 in the tenant's zone) of `time_ms`.
pub fn local_day(time_ms: i64, utc_offset_min: i32) -> i32 {
    (local_ms(time_ms, utc_offset_min).div_euclid(DAY_MS)) as i32
}

pub fn local_ms(time_ms: i64, utc_offset_min: i32) -> i64 {
    time_ms + i64::from(utc_offset_min) * 60_000
}

/// The UTC instant at which local day `day` starts.
pub fn day_start_ms(day: i32, utc_offset_min: i32) -> i64 {
    i64::from(day) * DAY_MS - i64::from(utc_offset_min) * 60_000
}

/// Day of week of a local day number, Monday = 0 (1970-01-01 was a Thursday).
pub fn weekday(day: i32) -> u8 {
    (day + 3).rem_euclid(7) as u8
}

/// `YYYY-MM-DD` of a local day number.
pub fn day_string(day: i32) -> String {
    let date = time::Date::from_julian_day(UNIX_EPOCH_JULIAN + day).unwrap_or(time::Date::MIN);
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// Parses `YYYY-MM-DD` into a local day number.
pub fn parse_day(s: &str) -> Option<i32> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(s, &fmt).ok()?;
    Some(d.to_julian_day() - UNIX_EPOCH_JULIAN)
}

const UNIX_EPOCH_JULIAN: i32 = 2_440_588;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_days_follow_the_tenant_offset() {
        // 2026-03-02T23:30Z is still 2026-03-02 in UTC and already 2026-03-03 at +01:00.
        let t = 1_772_494_200_000;
        assert_eq!(day_string(local_day(t, 0)), "2026-03-02");
        assert_eq!(day_string(local_day(t, 60)), "2026-03-03");
        assert_eq!(day_string(local_day(t, -600)), "2026-03-02");
        assert_eq!(parse_day("1970-01-01"), Some(0));
        assert_eq!(parse_day("2026-03-02"), Some(local_day(t, 0)));
        assert_eq!(weekday(parse_day("2026-03-02").unwrap()), 0, "a Monday");
        assert_eq!(day_start_ms(1, 60), DAY_MS - 3_600_000);
        assert_eq!(parse_day("2026-02-30"), None);
    }
}
