//! Checks on a requested booking and the approval it gets.

use crate::storage::reservations::{Approval, ReservationSettings, Status};

/// The longest booking taken.
pub const MAX_LENGTH_MS: i64 = 31 * 24 * 3_600_000;
/// How far ahead a booking may start.
pub const MAX_AHEAD_MS: i64 = 2 * 366 * 24 * 3_600_000;
/// A start this far in the past is still taken (a clock a little behind, or
/// a booking made as the driver walks up).
pub const PAST_TOLERANCE_MS: i64 = 5 * 60_000;

/// Why a window is refused: a stable code and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub code: &'static str,
    pub message: String,
}

fn refused(code: &'static str, message: impl Into<String>) -> Refused {
    Refused {
        code,
        message: message.into(),
    }
}

/// A window a booking may take: ends after it starts, is not too long, and
/// does not start in the past or too far ahead.
pub fn check_window(start_ms: i64, end_ms: i64, now_ms: i64) -> Result<(), Refused> {
    if end_ms <= start_ms {
        return Err(refused("bad_window", "end must be after start"));
    }
    if end_ms.saturating_sub(start_ms) > MAX_LENGTH_MS {
        return Err(refused("bad_window", "a booking may last at most 31 days"));
    }
    if start_ms < now_ms - PAST_TOLERANCE_MS {
        return Err(refused("bad_window", "start is in the past"));
    }
    if start_ms > now_ms + MAX_AHEAD_MS {
        return Err(refused("bad_window", "start is more than two years ahead"));
    }
    Ok(())
}

/// The last millisecond of the year 9999: query windows end by then, so the
/// queries' own arithmetic on them (buffers, scan bounds) cannot overflow.
pub const MAX_QUERY_MS: i64 = 253_402_300_799_999;

/// A query window (availability, lists): ordered, not absurdly long, and
/// between 1970 and the year 9999.
pub fn check_query_window(from_ms: i64, to_ms: i64) -> Result<(), Refused> {
    if !(0..=MAX_QUERY_MS).contains(&from_ms) || !(0..=MAX_QUERY_MS).contains(&to_ms) {
        return Err(refused(
            "bad_window",
            "from and to must be epoch milliseconds between 1970 and the year 9999",
        ));
    }
    if to_ms <= from_ms {
        return Err(refused("bad_window", "to must be after from"));
    }
    if to_ms - from_ms > MAX_AHEAD_MS {
        return Err(refused("bad_window", "a window may span at most two years"));
    }
    Ok(())
}

/// The status a new booking starts in: approved when its vehicle group's rule
/// approves automatically, else pending.
pub fn initial_status(settings: &ReservationSettings, group: Option<&str>) -> Status {
    match settings.approval_for(group) {
        Approval::Auto => Status::Approved,
        Approval::Manager => Status::Pending,
    }
}

/// Limits on settings an administrator may set.
pub fn check_settings(s: &ReservationSettings) -> Result<(), Refused> {
    let bad =
        |what: &str, max: u32| refused("bad_settings", format!("{what} must be at most {max}"));
    if s.turnaround_minutes > 24 * 60 {
        return Err(bad("turnaround_minutes", 24 * 60));
    }
    if s.no_show_minutes == 0 || s.no_show_minutes > 24 * 60 {
        return Err(refused("bad_settings", "no_show_minutes must be 1 to 1440"));
    }
    if s.reminder_minutes > 7 * 24 * 60 {
        return Err(bad("reminder_minutes", 7 * 24 * 60));
    }
    if s.late_grace_minutes > 24 * 60 {
        return Err(bad("late_grace_minutes", 24 * 60));
    }
    if s.snapshot_days == 0 || s.snapshot_days > 31 {
        return Err(refused("bad_settings", "snapshot_days must be 1 to 31"));
    }
    if s.approval.len() > 1000 || s.approval.keys().any(|g| g.is_empty() || g.len() > 100) {
        return Err(refused(
            "bad_settings",
            "approval: at most 1000 groups, each named in 1 to 100 characters",
        ));
    }
    if let Some(smtp) = &s.smtp {
        if smtp.host.trim().is_empty() || smtp.host.len() > 253 {
            return Err(refused("bad_settings", "smtp.host is required"));
        }
        if smtp.port == 0 {
            return Err(refused("bad_settings", "smtp.port must be 1 to 65535"));
        }
        if !plausible_mailbox(&smtp.from) {
            return Err(refused(
                "bad_settings",
                "smtp.from must be an address, e.g. `Fleet <fleet@example.com>`",
            ));
        }
    }
    Ok(())
}

/// `name@host` or `Name <name@host>`, with no spaces or controls in the address.
fn plausible_mailbox(s: &str) -> bool {
    let addr = match (s.find('<'), s.strip_suffix('>')) {
        (Some(i), Some(rest)) => &rest[i + 1..],
        (None, None) => s.trim(),
        _ => return false,
    };
    match addr.split_once('@') {
        Some((local, host)) => {
            !local.is_empty()
                && host.contains('.')
                && !addr
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '<')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const H: i64 = 3_600_000;

    #[test]
    fn windows_must_be_ordered_bounded_and_not_past() {
        assert!(check_window(NOW + H, NOW + 2 * H, NOW).is_ok());
        assert!(check_window(NOW - 60_000, NOW + H, NOW).is_ok());
        for (s, e) in [
            (NOW + H, NOW + H),
            (NOW + 2 * H, NOW + H),
            (NOW - H, NOW + H),
            (NOW, NOW + MAX_LENGTH_MS + 1),
            (NOW + MAX_AHEAD_MS + 1, NOW + MAX_AHEAD_MS + H),
        ] {
            assert_eq!(check_window(s, e, NOW).unwrap_err().code, "bad_window");
        }
    }

    #[test]
    fn extreme_times_are_refused_without_overflowing() {
        assert_eq!(
            check_window(i64::MIN, i64::MAX, NOW).unwrap_err().code,
            "bad_window"
        );
        assert!(check_query_window(NOW, NOW + H).is_ok());
        assert!(check_query_window(0, H).is_ok());
        for (from, to) in [
            (i64::MIN, i64::MAX),
            (-1, H),
            (i64::MIN, i64::MIN + H),
            (MAX_QUERY_MS - H, MAX_QUERY_MS + 1),
            (i64::MAX - H, i64::MAX),
        ] {
            assert_eq!(
                check_query_window(from, to).unwrap_err().code,
                "bad_window",
                "{from}..{to}"
            );
        }
    }

    #[test]
    fn approval_follows_the_vehicle_group_rule_then_the_default() {
        let mut s = ReservationSettings::default();
        s.approval.insert("vans".into(), Approval::Auto);
        assert_eq!(initial_status(&s, Some("vans")), Status::Approved);
        assert_eq!(initial_status(&s, Some("trucks")), Status::Pending);
        assert_eq!(initial_status(&s, None), Status::Pending);
        s.default_approval = Approval::Auto;
        s.approval.insert("trucks".into(), Approval::Manager);
        assert_eq!(initial_status(&s, Some("trucks")), Status::Pending);
        assert_eq!(initial_status(&s, None), Status::Approved);
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        assert!(check_settings(&ReservationSettings::default()).is_ok());
        let s = ReservationSettings {
            snapshot_days: 0,
            ..Default::default()
        };
        assert_eq!(check_settings(&s).unwrap_err().code, "bad_settings");
        let s = ReservationSettings {
            smtp: Some(crate::storage::reservations::SmtpSettings {
                host: "mail.example.com".into(),
                port: 587,
                from: "not an address".into(),
                starttls: true,
                username: None,
                password: None,
            }),
            ..Default::default()
        };
        assert_eq!(check_settings(&s).unwrap_err().code, "bad_settings");
    }
}
