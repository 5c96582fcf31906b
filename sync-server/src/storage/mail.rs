//! The durable email outbox. A message is queued in the transaction of the
//! event that causes it, under a message id that is its `Message-ID` header,
//! so queueing it again changes nothing and every retry carries the same id.
//! A background sender claims due messages (with a lease, so two replicas
//! never send one at the same time), and records each attempt; after the
//! last allowed attempt the message is dead, and stays listed. Every backend
//! implements [`MailStore`] and passes `conformance_mail.rs`.

use super::StorageError;
use async_trait::async_trait;
use serde::Serialize;
use uuid::Uuid;

/// One file sent with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// A message to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMail {
    /// The `Message-ID` without angle brackets, e.g. `x.y@fleet-sync`.
    pub message_id: String,
    /// What caused it: `reservation`, `report`.
    pub source: String,
    pub to_addr: String,
    pub to_name: Option<String>,
    pub subject: String,
    pub body: String,
    pub attachment: Option<Attachment>,
}

/// A claimed message, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueMail {
    pub tenant_id: Uuid,
    pub mail: NewMail,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// A message as the API lists it (without its body and attachment bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailRecord {
    pub message_id: String,
    pub source: String,
    pub to: String,
    pub subject: String,
    /// `pending`, `sent` or `dead`.
    pub state: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub attachment_name: Option<String>,
    pub created_at_ms: i64,
    pub next_attempt_at_ms: i64,
    pub sent_at_ms: Option<i64>,
}

/// What one send attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailOutcome {
    Sent,
    /// Try again at `retry_at_ms`, or give up (`None`): the message is dead.
    Failed {
        error: String,
        retry_at_ms: Option<i64>,
    },
}

#[async_trait]
pub trait MailStore: Send + Sync + 'static {
    /// Queues the messages, due at once; a message id the tenant already has
    /// is skipped. Answers how many were queued.
    async fn enqueue_mail(
        &self,
        tenant: Uuid,
        mails: &[NewMail],
        now_ms: i64,
    ) -> Result<u32, StorageError>;
    /// Pending messages due by `now_ms`, oldest first, across tenants; each is
    /// leased until `now_ms + lease_ms`, so no other claim takes it meanwhile.
    async fn claim_mail(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<DueMail>, StorageError>;
    /// Records an attempt on a pending message (a message already sent or dead
    /// is left as it is).
    async fn record_mail_attempt(
        &self,
        tenant: Uuid,
        message_id: &str,
        outcome: &MailOutcome,
        now_ms: i64,
    ) -> Result<(), StorageError>;
    /// Newest first, only those in `state` when given.
    async fn list_mail(
        &self,
        tenant: Uuid,
        state: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MailRecord>, StorageError>;
    /// Puts a dead message back in the queue, due at once, with its attempts
    /// counted afresh. False when the tenant has no dead message of that id.
    async fn retry_dead_mail(
        &self,
        tenant: Uuid,
        message_id: &str,
        now_ms: i64,
    ) -> Result<bool, StorageError>;
}
