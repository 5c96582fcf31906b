//! What the background task does to one booking at a moment: pure, so the
//! timing rules are tested without a clock or a database.
//!
//! The task applies each decision as a conditional update at the booking's
//! version, so two replicas deciding the same thing apply (and notify) it once.

use crate::storage::reservations::{Change, Reservation, ReservationSettings, Status};

/// An approved booking whose vehicle is already out this long before its
/// start counts as picked up.
pub const EARLY_PICKUP_MS: i64 = 30 * 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The driver has the vehicle: approved → active.
    Activate,
    /// Not picked up within the no-show time: approved → no_show, vehicle freed.
    NoShow,
    /// The vehicle is back: active → completed.
    Complete,
    /// Tell the driver the booking starts soon (once).
    Remind,
    /// Still out past the end and the grace time (once).
    Overdue,
}

/// The one thing to do to `r` now, if any. `held` says whether the vehicle is
/// checked out (kiosk or office custody).
pub fn decide(r: &Reservation, held: bool, now_ms: i64, s: &ReservationSettings) -> Option<Action> {
    let minutes = |m: u32| i64::from(m) * 60_000;
    match r.status {
        Status::Approved => {
            if held && now_ms >= r.start_ms - EARLY_PICKUP_MS && now_ms < r.end_ms {
                Some(Action::Activate)
            } else if !held && now_ms >= r.start_ms + minutes(s.no_show_minutes) {
                Some(Action::NoShow)
            } else if s.reminder_minutes > 0
                && r.reminded_at_ms.is_none()
                && now_ms >= r.start_ms - minutes(s.reminder_minutes)
                && now_ms < r.start_ms
            {
                Some(Action::Remind)
            } else {
                None
            }
        }
        Status::Active => {
            if !held {
                Some(Action::Complete)
            } else if r.overdue_at_ms.is_none()
                && now_ms >= r.end_ms + minutes(s.late_grace_minutes)
            {
                Some(Action::Overdue)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The conditional update that carries out `action` on `r`.
pub fn change_for(action: Action, r: &Reservation, now_ms: i64, s: &ReservationSettings) -> Change {
    let mut c = Change::new(now_ms);
    c.expected_version = Some(r.version);
    c.from = vec![r.status];
    match action {
        Action::Activate => c.to = Some(Status::Active),
        Action::NoShow => {
            c.to = Some(Status::NoShow);
            c.reason = Some(format!(
                "not picked up within {} minutes of the start",
                s.no_show_minutes
            ));
        }
        Action::Complete => c.to = Some(Status::Completed),
        Action::Remind => c.mark_reminded = true,
        Action::Overdue => c.mark_overdue = true,
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    const NOW: i64 = 1_800_000_000_000;
    const M: i64 = 60_000;

    fn booking(status: Status) -> Reservation {
        Reservation {
            id: Uuid::new_v4(),
            vehicle_id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            start_ms: NOW,
            end_ms: NOW + 120 * M,
            buffer_ms: 15 * M,
            status,
            purpose: None,
            department: None,
            cost_center: None,
            reason: None,
            created_by: None,
            approved_by: None,
            version: 4,
            created_at_ms: NOW - 1000 * M,
            updated_at_ms: NOW - 1000 * M,
            reminded_at_ms: None,
            overdue_at_ms: None,
        }
    }

    #[test]
    fn an_approved_booking_is_reminded_once_then_released_when_nobody_comes() {
        let s = ReservationSettings::default(); // reminder 60, no-show 30
        let r = booking(Status::Approved);
        assert_eq!(decide(&r, false, NOW - 61 * M, &s), None);
        assert_eq!(decide(&r, false, NOW - 60 * M, &s), Some(Action::Remind));
        let mut reminded = r.clone();
        change_for(Action::Remind, &r, NOW - 60 * M, &s).apply(&mut reminded);
        assert_eq!(reminded.reminded_at_ms, Some(NOW - 60 * M));
        assert_eq!(decide(&reminded, false, NOW - 10 * M, &s), None);
        assert_eq!(decide(&reminded, false, NOW + 29 * M, &s), None);
        assert_eq!(
            decide(&reminded, false, NOW + 30 * M, &s),
            Some(Action::NoShow)
        );
        let c = change_for(Action::NoShow, &reminded, NOW + 30 * M, &s);
        assert_eq!(c.expected_version, Some(5));
        assert_eq!(c.to, Some(Status::NoShow));
        assert!(c.reason.unwrap().contains("30 minutes"));
    }

    #[test]
    fn a_pickup_activates_and_a_return_completes() {
        let s = ReservationSettings::default();
        let r = booking(Status::Approved);
        assert_eq!(decide(&r, true, NOW - 31 * M, &s), Some(Action::Remind));
        assert_eq!(decide(&r, true, NOW - 30 * M, &s), Some(Action::Activate));
        // Picked up late but before the no-show release.
        assert_eq!(decide(&r, true, NOW + 29 * M, &s), Some(Action::Activate));
        let a = booking(Status::Active);
        assert_eq!(decide(&a, true, NOW + 60 * M, &s), None);
        assert_eq!(decide(&a, false, NOW + 60 * M, &s), Some(Action::Complete));
    }

    #[test]
    fn a_booking_still_out_after_its_end_and_grace_is_overdue_once() {
        let s = ReservationSettings::default(); // grace 15
        let a = booking(Status::Active);
        assert_eq!(decide(&a, true, NOW + 134 * M, &s), None);
        assert_eq!(decide(&a, true, NOW + 135 * M, &s), Some(Action::Overdue));
        let mut marked = a.clone();
        change_for(Action::Overdue, &a, NOW + 135 * M, &s).apply(&mut marked);
        assert_eq!(decide(&marked, true, NOW + 500 * M, &s), None);
        assert_eq!(
            decide(&marked, false, NOW + 500 * M, &s),
            Some(Action::Complete)
        );
    }

    #[test]
    fn finished_bookings_are_left_alone() {
        let s = ReservationSettings::default();
        for st in [
            Status::Pending,
            Status::Rejected,
            Status::Cancelled,
            Status::NoShow,
            Status::Completed,
        ] {
            for held in [false, true] {
                assert_eq!(decide(&booking(st), held, NOW + 1000 * M, &s), None, "{st}");
            }
        }
    }
}
