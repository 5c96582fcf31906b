//! The yard kiosk: scans in, keys out. Badge and vehicle labels are checked
//! offline against the tenant's key and the signed snapshot; check-outs are
//! recorded durably before a key-box relay fires; custody of each asset lives
//! in an automerge document that syncs like any other.
//!
//! `fleet-agent run` with `[device] role = "kiosk"` starts [`run`]: the camera
//! task, the flow, the door watch, the overdue check and the local touch UI.

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
mod start;

pub use engine::{BlobSink, Kiosk, KioskError, KioskParts};
pub use start::{
    describe as describe_camera, load_snapshot, open_camera, parse_resolution, run, Camera,
    CameraConfig, CameraSetup, CameraSourceKind, KioskConfig, KioskRun, SNAPSHOT_FILE, TRUST_FILE,
};
