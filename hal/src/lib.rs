//! Hardware behind traits, each with a simulator or replay implementation.
//!
//! A source is something the agent awaits: CAN frames, NMEA sentences, the ignition
//! line. Real drivers (SocketCAN, serial ports, GPIO) implement the same traits
//! behind features; the simulator in [`sim`] produces the same bytes a vehicle would.

pub mod can;
pub mod elm327;
pub mod gnss;
pub mod ignition;
pub mod sim;

pub use can::{CanError, CanFrame, CanSource};
pub use gnss::{NmeaError, NmeaSource};
pub use ignition::{IgnitionError, IgnitionInput};
