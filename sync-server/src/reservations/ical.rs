//! An iCalendar (RFC 5545) feed of reservations: CRLF line ends, lines folded
//! at 75 octets (never inside a UTF-8 character), TEXT values escaped, UTC
//! times, a stable UID per booking and its STATUS.

use crate::storage::reservations::{Reservation, Status};
use std::fmt::Write as _;

/// One booking as a calendar shows it.
pub struct FeedEvent<'a> {
    pub reservation: &'a Reservation,
    pub summary: String,
    pub description: String,
}

/// `20261122T130000Z`.
pub fn utc_stamp(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// TEXT escaping: backslash, semicolon, comma and newlines.
pub fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends one content line, folded so no physical line exceeds 75 octets.
fn line(out: &mut String, content: &str) {
    let mut width = 0;
    for c in content.chars() {
        let n = c.len_utf8();
        if width + n > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += n;
    }
    out.push_str("\r\n");
}

fn status(s: Status) -> &'static str {
    match s {
        Status::Pending => "TENTATIVE",
        Status::Approved | Status::Active | Status::Completed => "CONFIRMED",
        Status::Rejected | Status::Cancelled | Status::NoShow => "CANCELLED",
    }
}

/// The whole feed; `name` is the calendar's display name.
pub fn calendar(name: &str, events: &[FeedEvent<'_>], now_ms: i64) -> String {
    let mut out = String::new();
    line(&mut out, "BEGIN:VCALENDAR");
    line(&mut out, "VERSION:2.0");
    line(
        &mut out,
        "PRODID:-//fleet-edge//fleet-sync reservations//EN",
    );
    line(&mut out, "CALSCALE:GREGORIAN");
    line(&mut out, "METHOD:PUBLISH");
    line(&mut out, &format!("X-WR-CALNAME:{}", escape_text(name)));
    let stamp = utc_stamp(now_ms);
    for e in events {
        let r = e.reservation;
        line(&mut out, "BEGIN:VEVENT");
        line(&mut out, &format!("UID:reservation-{}@fleet-sync", r.id));
        line(&mut out, &format!("DTSTAMP:{stamp}"));
        line(&mut out, &format!("DTSTART:{}", utc_stamp(r.start_ms)));
        line(&mut out, &format!("DTEND:{}", utc_stamp(r.end_ms)));
        line(
            &mut out,
            &format!("LAST-MODIFIED:{}", utc_stamp(r.updated_at_ms)),
        );
        // SEQUENCE counts revisions; ours start at version 1.
        line(&mut out, &format!("SEQUENCE:{}", (r.version - 1).max(0)));
        line(&mut out, &format!("SUMMARY:{}", escape_text(&e.summary)));
        if !e.description.is_empty() {
            line(
                &mut out,
                &format!("DESCRIPTION:{}", escape_text(&e.description)),
            );
        }
        line(&mut out, &format!("STATUS:{}", status(r.status)));
        line(&mut out, "END:VEVENT");
    }
    line(&mut out, "END:VCALENDAR");
    out
}

/// The event text for a booking: what, who, why, and the status in words.
pub fn describe(r: &Reservation, vehicle: &str, driver: &str) -> (String, String) {
    let summary = format!("{vehicle}: {driver}");
    let mut d = String::new();
    let _ = write!(d, "Status: {}", r.status);
    for (label, v) in [
        ("Purpose", &r.purpose),
        ("Department", &r.department),
        ("Cost center", &r.cost_center),
        ("Reason", &r.reason),
    ] {
        if let Some(v) = v {
            let _ = write!(d, "\n{label}: {v}");
        }
    }
    (summary, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn booking() -> Reservation {
        Reservation {
            id: Uuid::nil(),
            vehicle_id: Uuid::nil(),
            user_id: Uuid::nil(),
            start_ms: 1_795_856_400_000, // 2026-11-28T09:00:00Z
            end_ms: 1_795_863_600_000,
            buffer_ms: 0,
            status: Status::Approved,
            purpose: Some("Depot run; pallets, two, \"fragile\"\nback by noon".into()),
            department: None,
            cost_center: None,
            reason: None,
            created_by: None,
            approved_by: None,
            version: 3,
            created_at_ms: 0,
            updated_at_ms: 0,
            reminded_at_ms: None,
            overdue_at_ms: None,
        }
    }

    #[test]
    fn times_are_utc_basic_format() {
        assert_eq!(utc_stamp(1_795_856_400_000), "20261128T090000Z");
        assert_eq!(utc_stamp(0), "19700101T000000Z");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape_text("a;b,c\\d\ne\r"), "a\\;b\\,c\\\\d\\ne");
    }

    #[test]
    fn lines_end_in_crlf_and_fold_at_75_octets_between_characters() {
        let r = booking();
        let long = "Kühlwagen ".repeat(20);
        let cal = calendar(
            "Van 7",
            &[FeedEvent {
                reservation: &r,
                summary: long.clone(),
                description: String::new(),
            }],
            0,
        );
        assert!(cal.ends_with("END:VCALENDAR\r\n"));
        assert!(!cal.replace("\r\n", "").contains('\n'));
        for l in cal.split("\r\n") {
            assert!(l.len() <= 75, "{l:?} is {} octets", l.len());
        }
        // Unfolding gives the text back.
        let unfolded = cal.replace("\r\n ", "");
        assert!(unfolded.contains(&format!("SUMMARY:{long}\r\n")));
        assert!(cal.contains("STATUS:CONFIRMED\r\n"));
        assert!(cal.contains("SEQUENCE:2\r\n"));
        assert!(cal.contains("UID:reservation-00000000-0000-0000-0000-000000000000@fleet-sync\r\n"));
    }

    #[test]
    fn descriptions_carry_purpose_and_status() {
        let (s, d) = describe(&booking(), "Van 7", "Dana");
        assert_eq!(s, "Van 7: Dana");
        assert!(d.starts_with("Status: approved\nPurpose: Depot run;"));
    }
}
