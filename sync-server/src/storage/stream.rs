//! The live stream's log: every event published to `/api/v1/stream` gets a
//! per-tenant increasing id and is kept for a while, so a client that reconnects
//! can resume after the last id it saw.
//!
//! Ids are handed out under a per-tenant row lock held until commit, so they
//! become visible in id order: a reader that has seen id N never later finds a
//! new row below N. On PostgreSQL every append also sends `NOTIFY fleet_live`
//! in its own transaction, which is how replicas learn of each other's events.

use super::StorageError;
use async_trait::async_trait;
use uuid::Uuid;

/// The PostgreSQL channel every replica listens on. Payload: `<tenant>:<first id>`,
/// the first id the transaction appended for that tenant.
pub const NOTIFY_CHANNEL: &str = "fleet_live";

/// An event to append to a tenant's stream log.
#[derive(Debug, Clone, PartialEq)]
pub struct NewStreamEvent {
    pub tenant: Uuid,
    pub kind: String,
    pub vehicle: Option<Uuid>,
    pub data: serde_json::Value,
    /// When it happened, as best known (Unix ms).
    pub at_ms: i64,
    /// Where it came from (`<device>:<seq>` for ingested events). An event whose
    /// source is already in the log is skipped, so a resent batch announces
    /// nothing twice, whichever replica it reaches.
    pub source: Option<String>,
}

/// An event in a tenant's stream log.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRow {
    pub tenant: Uuid,
    pub id: u64,
    pub kind: String,
    pub vehicle: Option<Uuid>,
    pub data: serde_json::Value,
    pub at_ms: i64,
}

/// What a tenant's log still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamBounds {
    /// The smallest id still kept; `head + 1` when nothing is kept.
    pub oldest: u64,
    /// The largest id ever handed out (0 before the first event).
    pub head: u64,
}

impl StreamBounds {
    /// Whether every event after `after` is still kept.
    pub fn can_resume_after(&self, after: u64) -> bool {
        after <= self.head && after.saturating_add(1) >= self.oldest
    }
}

/// A change another process made to the log (PostgreSQL only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamNotice {
    /// Some process appended events for `tenant`, the first with `first_id`.
    Appended { tenant: Uuid, first_id: u64 },
    /// The listening connection was re-established: notices may have been
    /// missed, so readers catch up by id.
    Reconnected,
}

#[async_trait]
pub trait StreamStore: Send + Sync + 'static {
    /// Appends the events in one transaction, giving each a per-tenant id in
    /// order; events whose `source` is already logged are skipped. Answers the
    /// rows appended.
    async fn append_stream_events(
        &self,
        events: Vec<NewStreamEvent>,
        now_ms: i64,
    ) -> Result<Vec<StreamRow>, StorageError>;

    /// The tenant's events with id > `after`, ascending, at most `limit`.
    async fn stream_events_after(
        &self,
        tenant: Uuid,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StreamRow>, StorageError>;

    async fn stream_bounds(&self, tenant: Uuid) -> Result<StreamBounds, StorageError>;

    /// Drops events appended before `before_ms`, and all but the newest
    /// `keep_per_tenant` of each tenant. Answers how many went.
    async fn prune_stream_events(
        &self,
        before_ms: i64,
        keep_per_tenant: u64,
    ) -> Result<u64, StorageError>;

    /// Notices of appends by any process sharing the database, for backends that
    /// can be shared (PostgreSQL). `None`: this process is the only writer, and
    /// what it appends is all there is.
    fn stream_notices(&self) -> Option<tokio::sync::mpsc::Receiver<StreamNotice>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::StreamBounds;

    #[test]
    fn resuming_needs_every_later_event_to_be_kept() {
        let b = StreamBounds {
            oldest: 11,
            head: 20,
        };
        assert!(b.can_resume_after(10));
        assert!(b.can_resume_after(20));
        assert!(!b.can_resume_after(9));
        assert!(!b.can_resume_after(21), "an id from the future");
        let empty = StreamBounds {
            oldest: 21,
            head: 20,
        };
        assert!(empty.can_resume_after(20));
        assert!(!empty.can_resume_after(19));
        let fresh = StreamBounds { oldest: 1, head: 0 };
        assert!(fresh.can_resume_after(0));
    }
}
