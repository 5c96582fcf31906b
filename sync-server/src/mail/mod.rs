//! Email through the durable outbox (`storage::mail`): what a message id looks
//! like, when a failed message is tried again, and how a queued message
//! becomes an RFC 5322 message (with its `Message-ID`, the same on every
//! attempt, so a receiver that saw a half-finished attempt can tell the retry
//! is the same message). The sending task is in [`sender`].

pub mod sender;

use crate::storage::mail::NewMail;
use crate::storage::reservations::SmtpSettings;
use std::time::Duration;

/// The domain of every Message-ID this server makes.
pub const MESSAGE_ID_DOMAIN: &str = "fleet-sync";

/// How the sender paces itself and when it gives up.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// How often the outbox is looked at when it was empty.
    pub poll: Duration,
    /// Attempts before a message is dead.
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How long a claimed message is kept from other replicas: longer than
    /// one SMTP exchange may take.
    pub lease: Duration,
    pub smtp_timeout: Duration,
}

impl Default for MailSettings {
    fn default() -> Self {
        MailSettings {
            poll: Duration::from_secs(5),
            max_attempts: 8,
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
            lease: Duration::from_secs(300),
            smtp_timeout: Duration::from_secs(20),
        }
    }
}

/// A Message-ID (without angle brackets) for a stable key such as a webhook
/// event id: the same key always gives the same id, and the id is a valid
/// dot-atom whatever the key holds.
pub fn message_id(key: &str) -> String {
    let local: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '.'
            }
        })
        .collect();
    let local = local.trim_matches('.');
    let mut out = String::with_capacity(local.len());
    for c in local.chars() {
        // A dot-atom has no empty atoms.
        if !(c == '.' && out.ends_with('.')) {
            out.push(c);
        }
    }
    if out.is_empty() {
        out.push('x');
    }
    format!("{out}@{MESSAGE_ID_DOMAIN}")
}

/// When to try again after `attempts` failed attempts (this one included), or
/// `None` once they reach the cap. `jitter` in 0.5..=1.0 spreads retries.
pub fn retry_at(settings: &MailSettings, attempts: u32, now_ms: i64, jitter: f64) -> Option<i64> {
    if attempts >= settings.max_attempts {
        return None;
    }
    let delay =
        crate::webhooks::retry_delay(attempts, settings.retry_base, settings.retry_max, jitter);
    Some(now_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2)))
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("bad address: {0}")]
    Address(#[from] lettre::address::AddressError),
    #[error("cannot build the message: {0}")]
    Message(#[from] lettre::error::Error),
    #[error("bad attachment type: {0}")]
    ContentType(String),
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("SMTP: no answer within {0:?}")]
    Timeout(Duration),
}

impl MailError {
    /// A message that can never be built is not worth trying again.
    pub fn is_permanent(&self) -> bool {
        match self {
            MailError::Address(_) | MailError::Message(_) | MailError::ContentType(_) => true,
            MailError::Smtp(e) => e.is_permanent(),
            MailError::Timeout(_) => false,
        }
    }
}

/// The message `m` from `from`, carrying `m.message_id` as its Message-ID.
pub fn build(from: &str, m: &NewMail) -> Result<lettre::Message, MailError> {
    use lettre::message::header::ContentType;
    use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
    let to = Mailbox::new(m.to_name.clone(), m.to_addr.parse()?);
    let builder = lettre::Message::builder()
        .from(from.parse::<Mailbox>()?)
        .to(to)
        .subject(m.subject.clone())
        .message_id(Some(format!("<{}>", m.message_id)));
    let message = match &m.attachment {
        None => builder
            .header(ContentType::TEXT_PLAIN)
            .body(m.body.clone())?,
        Some(a) => {
            let kind = ContentType::parse(&a.content_type)
                .map_err(|_| MailError::ContentType(a.content_type.clone()))?;
            builder.multipart(
                MultiPart::mixed()
                    .singlepart(SinglePart::plain(m.body.clone()))
                    .singlepart(Attachment::new(a.name.clone()).body(a.bytes.clone(), kind)),
            )?
        }
    };
    Ok(message)
}

/// One message through the tenant's SMTP server.
pub async fn send(
    smtp: &SmtpSettings,
    message: lettre::Message,
    timeout: Duration,
) -> Result<(), MailError> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
    let mut builder = if smtp.starttls {
        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)?
    } else {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
    }
    .port(smtp.port)
    .timeout(Some(timeout));
    if let (Some(user), Some(pass)) = (&smtp.username, &smtp.password) {
        builder = builder.credentials(Credentials::new(user.clone(), pass.clone()));
    }
    let transport = builder.build();
    // lettre's timeout is per socket operation; this bounds the whole exchange.
    match tokio::time::timeout(timeout * 3, transport.send(message)).await {
        Ok(r) => r.map(|_| ()).map_err(MailError::from),
        Err(_) => Err(MailError::Timeout(timeout * 3)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::mail::Attachment;

    #[test]
    fn message_ids_are_stable_dot_atoms() {
        let id = message_id("reservation_rejected:6f1c:2");
        assert_eq!(id, "reservation_rejected.6f1c.2@fleet-sync");
        assert_eq!(message_id("reservation_rejected:6f1c:2"), id);
        assert_eq!(message_id("::a::b::"), "a.b@fleet-sync");
        assert_eq!(message_id("<>"), "x@fleet-sync");
    }

    #[test]
    fn retries_back_off_and_stop_at_the_cap() {
        let s = MailSettings {
            max_attempts: 3,
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(15),
            ..MailSettings::default()
        };
        assert_eq!(retry_at(&s, 1, 1_000, 1.0), Some(11_000));
        assert_eq!(
            retry_at(&s, 2, 1_000, 1.0),
            Some(16_000),
            "capped at retry_max"
        );
        assert_eq!(retry_at(&s, 2, 1_000, 0.5), Some(8_500), "jitter shortens");
        assert_eq!(
            retry_at(&s, 3, 1_000, 1.0),
            None,
            "the third failure is the last"
        );
    }

    #[test]
    fn a_built_message_carries_its_id_and_its_attachment() {
        let m = NewMail {
            message_id: "report.1@fleet-sync".into(),
            source: "report".into(),
            to_addr: "ops@example.com".into(),
            to_name: None,
            subject: "Utilization".into(),
            body: "Attached.\n".into(),
            attachment: Some(Attachment {
                name: "utilization.csv".into(),
                content_type: "text/csv; charset=utf-8".into(),
                bytes: b"id,name\n1,Van\n".to_vec(),
            }),
        };
        let text =
            String::from_utf8(build("Fleet <fleet@example.com>", &m).unwrap().formatted()).unwrap();
        assert!(text.contains("Message-ID: <report.1@fleet-sync>"), "{text}");
        assert!(text.contains("filename=\"utilization.csv\""), "{text}");
        assert!(text.contains("id,name"), "{text}");
        let bad = NewMail {
            to_addr: "not an address".into(),
            ..m
        };
        assert!(build("fleet@example.com", &bad).unwrap_err().is_permanent());
    }
}
