//! Reservation logic that does no I/O: window checks and approval
//! ([`rules`]), what the background task does to each booking ([`schedule`]),
//! the iCalendar writer ([`ical`]) and notification text ([`notify`]). The
//! HTTP handlers and the scheduler task move bytes around these.

pub mod ical;
pub mod notify;
pub mod rules;
pub mod schedule;
pub mod task;
