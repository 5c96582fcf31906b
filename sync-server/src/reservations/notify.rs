//! What a reservation notification says, for webhooks (JSON) and email
//! (subject and plain text), and the outbox rows ([`Notices`]) that carry it.
//! The rows are queued in the transaction of the booking change; the sending
//! is elsewhere.

use crate::storage::mail::NewMail;
use crate::storage::reservations::{Notices, Reservation, WebhookNotice};
use crate::storage::rfc3339_ms;
use serde_json::{json, Value};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Created,
    Approved,
    Rejected,
    Modified,
    Cancelled,
    Reminder,
    Overdue,
    NoShow,
}

impl Notice {
    /// The webhook `event_kind`.
    pub fn event_kind(self) -> &'static str {
        match self {
            Notice::Created => "reservation_created",
            Notice::Approved => "reservation_approved",
            Notice::Rejected => "reservation_rejected",
            Notice::Modified => "reservation_modified",
            Notice::Cancelled => "reservation_cancelled",
            Notice::Reminder => "reservation_reminder",
            Notice::Overdue => "reservation_overdue",
            Notice::NoShow => "reservation_no_show",
        }
    }

    /// A stable id for this notice about this booking at this version, so a
    /// retry or a second replica queues it once.
    pub fn event_id(self, r: &Reservation) -> String {
        format!("{}:{}:{}", self.event_kind(), r.id, r.version)
    }
}

/// The `data` of the webhook payload: the booking in the API's field names.
pub fn webhook_data(r: &Reservation, vehicle_name: &str) -> Value {
    json!({
        "id": r.id,
        "vehicle_id": r.vehicle_id,
        "vehicle_name": vehicle_name,
        "user_id": r.user_id,
        "status": r.status,
        "start_ms": r.start_ms,
        "end_ms": r.end_ms,
        "start": rfc3339_ms(r.start_ms),
        "end": rfc3339_ms(r.end_ms),
        "purpose": r.purpose,
        "reason": r.reason,
        "version": r.version,
    })
}

/// Subject and body of the email to the driver.
pub fn email(
    notice: Notice,
    r: &Reservation,
    vehicle_name: &str,
    driver: &str,
) -> (String, String) {
    let when = format!(
        "{} to {} (UTC)",
        rfc3339_ms(r.start_ms),
        rfc3339_ms(r.end_ms)
    );
    let subject = match notice {
        Notice::Created => format!("Booking received: {vehicle_name}"),
        Notice::Approved => format!("Booking approved: {vehicle_name}"),
        Notice::Rejected => format!("Booking rejected: {vehicle_name}"),
        Notice::Modified => format!("Booking changed: {vehicle_name}"),
        Notice::Cancelled => format!("Booking cancelled: {vehicle_name}"),
        Notice::Reminder => format!("Reminder: {vehicle_name} is booked for you soon"),
        Notice::Overdue => format!("Overdue: please return {vehicle_name}"),
        Notice::NoShow => format!("Booking released: {vehicle_name}"),
    };
    let what = match notice {
        Notice::Created => "Your booking was received.",
        Notice::Approved => "Your booking was approved.",
        Notice::Rejected => "Your booking was rejected.",
        Notice::Modified => "Your booking was changed.",
        Notice::Cancelled => "Your booking was cancelled.",
        Notice::Reminder => "Your booking starts soon.",
        Notice::Overdue => "Your booking has ended but the vehicle is not back yet.",
        Notice::NoShow => "The vehicle was not picked up, so the booking was released.",
    };
    let mut body = format!(
        "Hello {driver},\n\n{what}\n\nVehicle: {vehicle_name}\nWhen: {when}\nStatus: {}\n",
        r.status
    );
    if let Some(p) = &r.purpose {
        body.push_str(&format!("Purpose: {p}\n"));
    }
    if let Some(reason) = &r.reason {
        body.push_str(&format!("Reason: {reason}\n"));
    }
    body.push_str(&format!("Reference: {}\n", r.id));
    (subject, body)
}

/// Who the email goes to: the driver, when the tenant configured SMTP and
/// the driver's user is enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub name: String,
    pub email: String,
}

/// The outbox rows of `notice` about `r` as the write leaves it: one webhook
/// event, and an email when there is a recipient. Ids come from the notice's
/// event id, so a retry or a second replica queues each row once.
pub fn notices(
    tenant: Uuid,
    notice: Notice,
    r: &Reservation,
    vehicle_name: &str,
    to: Option<&Recipient>,
) -> Notices {
    let event_id = notice.event_id(r);
    let payload = crate::webhooks::payload(
        &event_id,
        crate::webhooks::KIND_RESERVATION,
        notice.event_kind(),
        tenant,
        None,
        r.updated_at_ms,
        webhook_data(r, vehicle_name),
    );
    let mail = to
        .map(|to| {
            let (subject, body) = email(notice, r, vehicle_name, &to.name);
            NewMail {
                message_id: crate::mail::message_id(&event_id),
                source: "reservation".into(),
                to_addr: to.email.clone(),
                to_name: Some(to.name.clone()),
                subject,
                body,
                attachment: None,
            }
        })
        .into_iter()
        .collect();
    Notices {
        webhooks: vec![WebhookNotice {
            kind: crate::webhooks::KIND_RESERVATION.into(),
            event_id,
            payload,
        }],
        mail,
        audit: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::reservations::Status;
    use uuid::Uuid;

    #[test]
    fn a_rejection_names_the_vehicle_the_window_and_the_reason() {
        let r = Reservation {
            id: Uuid::nil(),
            vehicle_id: Uuid::nil(),
            user_id: Uuid::nil(),
            start_ms: 1_795_856_400_000,
            end_ms: 1_795_863_600_000,
            buffer_ms: 0,
            status: Status::Rejected,
            purpose: None,
            department: None,
            cost_center: None,
            reason: Some("needed for the inspection".into()),
            created_by: None,
            approved_by: None,
            version: 2,
            created_at_ms: 0,
            updated_at_ms: 0,
            reminded_at_ms: None,
            overdue_at_ms: None,
        };
        let (s, b) = email(Notice::Rejected, &r, "Van 7", "Dana");
        assert_eq!(s, "Booking rejected: Van 7");
        assert!(
            b.contains("2026-11-28T09:00:00Z to 2026-11-28T11:00:00Z"),
            "{b}"
        );
        assert!(b.contains("Reason: needed for the inspection"));
        assert_eq!(
            Notice::Rejected.event_id(&r),
            format!("reservation_rejected:{}:2", Uuid::nil())
        );
        assert_eq!(webhook_data(&r, "Van 7")["status"], "rejected");
    }
}
