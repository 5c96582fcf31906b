//! GNSS receivers that speak NMEA 0183: one sentence per line.

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
