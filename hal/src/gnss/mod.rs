//! GNSS receivers: NMEA 0183 sentences (a serial receiver, a log replay, the
//! simulator) and fixes from a gpsd daemon.

mod gpsd;
mod lines;
mod replay;
#[cfg(feature = "serial")]
mod serial;

pub use gpsd::{
    parse_gpsd_line, GpsdClient, GpsdError, GpsdLine, GpsdStats, DEFAULT_ADDR as GPSD_DEFAULT_ADDR,
};
pub use lines::{LineFramer, MAX_LINE};
pub use replay::NmeaReplay;
#[cfg(feature = "serial")]
pub use serial::{SerialNmea, DEFAULT_BAUD as SERIAL_DEFAULT_BAUD};

use std::future::Future;

#[derive(Debug, thiserror::Error)]
pub enum NmeaError {
    #[error("NMEA source closed")]
    Closed,
    #[error("NMEA I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Anything that yields NMEA sentences: a serial receiver, a log replay, a simulator.
pub trait NmeaSource: Send {
    /// The next line, without its line ending, and its receive time in microseconds
    /// on the source's clock. Lines are not validated here: decoders do that.
    fn next_line(&mut self) -> impl Future<Output = Result<(String, u64), NmeaError>> + Send;
}

/// A position fix as a receiver daemon reports it, in the units gpsd uses.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GnssFix {
    /// UTC Unix milliseconds of the fix, when the receiver knows the time.
    pub utc_ms: Option<i64>,
    pub lat: f64,
    pub lon: f64,
    /// Altitude above mean sea level, metres.
    pub alt_m: Option<f64>,
    pub speed_mps: Option<f64>,
    /// Course over ground, degrees from true north.
    pub course_deg: Option<f64>,
    pub hdop: Option<f64>,
    /// Satellites used in the fix.
    pub sats: Option<u8>,
    /// 1 2D, 2 3D, 3 differential (the `Position::fix` scale).
    pub quality: u8,
}
