//! Hardware behind traits, each with a simulator or replay implementation.
//!
//! A source is something the agent awaits: CAN frames, NMEA sentences, the ignition
//! line. Real drivers (SocketCAN, serial ports, GPIO) implement the same traits
//! behind features; the simulator in [`sim`] produces the same bytes a vehicle would,
//! and [`candump`] and [`gnss::NmeaReplay`] play recordings back.

pub mod camera;
pub mod can;
pub mod candump;
pub mod elm327;
pub mod gnss;
pub mod gpio;
pub mod ignition;
pub mod sim;
#[cfg(all(feature = "socketcan", target_os = "linux"))]
pub mod socketcan;

pub use camera::{CameraError, Frame, FrameSource};
pub use can::{CanError, CanFrame, CanSource};
pub use gnss::{GnssFix, NmeaError, NmeaSource};
pub use ignition::{IgnitionError, IgnitionInput};
