//! The ignition sense line: a digital input wired to the key switch.

use std::future::Future;

#[derive(Debug, thiserror::Error)]
pub enum IgnitionError {
    #[error("ignition input closed")]
    Closed,
    #[error("ignition input I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// A digital input that reports the key switch.
pub trait IgnitionInput: Send {
    /// The level right now.
    fn is_on(&self) -> bool;
    /// Wait for the next edge and return the new level with its time (microseconds
    /// on the source's clock).
    fn changed(&mut self) -> impl Future<Output = Result<(bool, u64), IgnitionError>> + Send;
}
