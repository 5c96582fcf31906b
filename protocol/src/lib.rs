//! Wire types that the agent and the sync server share.
//!
//! Everything here is pure: values in, values out, no I/O. The batch format is
//! documented in `docs/PROTOCOL.md`; the tests in this crate pin it.

pub mod api;
pub mod auth;
pub mod batch;
pub mod clock;
pub mod control;
pub mod custody;
pub mod docs;
pub mod event;
pub mod label;
pub mod prometheus;
pub mod snapshot;
pub mod varint;

pub use batch::{decode_batch, encode_batch, Batch, BatchError, BatchHeader};
pub use clock::{Hlc, HlcClock};
pub use event::{
    BootId, Event, EventData, EventTime, Kind, Position, Priority, TimeAnchor, TimeSource,
};
