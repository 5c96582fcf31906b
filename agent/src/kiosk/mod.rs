//! The yard kiosk: scans in, keys out. Badge and vehicle labels are checked
//! offline against the tenant's key and the signed snapshot; check-outs are
//! recorded durably before a key-box relay fires; custody of each asset lives
//! in an automerge document that syncs like any other.

pub mod camera;
pub mod checkin;
pub mod custody;
pub mod engine;
pub mod flow;
pub mod http;
pub mod outputs;
pub mod overdue;
pub mod policy;
pub mod scan;

pub use engine::{BlobSink, Kiosk, KioskError, KioskParts};
