//! The live stream: what happens in a tenant's fleet, pushed to `/api/v1/stream`
//! clients as it is stored.
//!
//! Anyone with an [`crate::AppState`] calls `state.live.publish(tenant, event)`;
//! it never blocks. The [`Hub`] appends events to the tenant's stream log (which
//! gives them their ids and lets clients resume), then fans them out to the
//! local subscribers. On PostgreSQL every replica learns of every append through
//! `LISTEN fleet_live` and fans out from the log, so a client on one replica sees
//! what was ingested through another.

mod hub;
pub mod ingest;
pub mod messages;

pub use hub::{Delivered, Hub, HubStats, Kick, Subscription};

use serde::Serialize;
use std::time::Duration;
use uuid::Uuid;

/// What a live event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveKind {
    /// A vehicle moved: its newest position from one batch.
    Position,
    /// A device came online, went offline or reported its status.
    DeviceStatus,
    /// A diagnostic trouble code was set or cleared.
    Fault,
    /// A vehicle entered or left a geofence.
    Geofence,
    Reservation,
    Custody,
    /// A maintenance alert was raised.
    Maintenance,
}

impl LiveKind {
    pub const ALL: [LiveKind; 7] = [
        LiveKind::Position,
        LiveKind::DeviceStatus,
        LiveKind::Fault,
        LiveKind::Geofence,
        LiveKind::Reservation,
        LiveKind::Custody,
        LiveKind::Maintenance,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LiveKind::Position => "position",
            LiveKind::DeviceStatus => "device_status",
            LiveKind::Fault => "fault",
            LiveKind::Geofence => "geofence",
            LiveKind::Reservation => "reservation",
            LiveKind::Custody => "custody",
            LiveKind::Maintenance => "maintenance",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One thing to tell a tenant's live clients. Keep cost data out of `data`: the
/// stream goes to every role that may read the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveEvent {
    pub kind: LiveKind,
    /// The vehicle (device) it concerns, which clients can filter on.
    pub vehicle: Option<Uuid>,
    pub data: serde_json::Value,
}

/// Knobs of the stream; the defaults suit production, tests shorten them.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// How often a client gets `{"type":"heartbeat"}` and a WebSocket ping.
    pub heartbeat: Duration,
    /// A client that sends nothing (not even a pong) for this long is closed.
    pub idle_timeout: Duration,
    /// Events queued for one client; when it is full the client is too slow and
    /// is closed with 4008, so it never holds anyone else up.
    pub client_queue: usize,
    /// How long a closing client gets to take its close frame.
    pub close_grace: Duration,
    /// Published events waiting to be logged; when full, publishing drops (and
    /// counts) rather than wait.
    pub publish_queue: usize,
    /// The log keeps events this long…
    pub retention: Duration,
    /// …and at most this many per tenant.
    pub retention_count: u64,
    /// How often the log is pruned.
    pub prune_every: Duration,
    /// On a shared database, how often each replica checks the log for events
    /// whose notice it missed.
    pub catch_up_every: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            heartbeat: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            client_queue: 1024,
            close_grace: Duration::from_secs(10),
            publish_queue: 16_384,
            retention: Duration::from_secs(24 * 3600),
            retention_count: 100_000,
            prune_every: Duration::from_secs(60),
            catch_up_every: Duration::from_secs(5),
        }
    }
}

impl StreamSettings {
    /// Sets the heartbeat and an idle timeout of three heartbeats.
    pub fn with_heartbeat(mut self, heartbeat: Duration) -> Self {
        self.heartbeat = heartbeat;
        self.idle_timeout = heartbeat * 3;
        self
    }
}
