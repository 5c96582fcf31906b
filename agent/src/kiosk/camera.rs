//! The kiosk's camera task: frames in, one [`Scan`] per label shown out.
//!
//! Decoding a frame is CPU work, so it runs on tokio's blocking pool; the
//! source paces itself (a camera's frame rate, a folder's). A frame that fails
//! to decode is skipped and counted; a source that fails ends the task with
//! its error, and the caller decides whether to reopen it.

use super::scan::{Scan, ScanDeduper, DEFAULT_WINDOW};
use crate::decode::qr;
use fleet_hal::camera::{CameraError, FrameSource};
use std::time::Duration;
use tokio::sync::mpsc;

/// What the task saw, for the status page and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CameraStats {
    pub frames: u64,
    /// Frames the source could not produce (a corrupt JPEG, a driver error flag).
    pub bad_frames: u64,
    /// Codes read, counting a code once per frame it was in.
    pub sightings: u64,
    pub scans: u64,
}

/// Reads `source` until it ends or `tx`'s receiver is dropped, sending each new
/// scan once (see [`ScanDeduper`], with a 2 s window).
pub async fn run<S: FrameSource>(
    source: S,
    tx: mpsc::Sender<Scan>,
) -> Result<CameraStats, CameraError> {
    run_with_window(source, tx, DEFAULT_WINDOW).await
}

/// [`run`] with a chosen dedup window.
pub async fn run_with_window<S: FrameSource>(
    mut source: S,
    tx: mpsc::Sender<Scan>,
    window: Duration,
) -> Result<CameraStats, CameraError> {
    let mut dedup = ScanDeduper::new(window);
    let mut stats = CameraStats::default();
    loop {
        let frame = match source.next_frame().await {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(stats),
            Err(e) if e.is_recoverable() => {
                stats.bad_frames += 1;
                tracing::debug!(bad_frames = stats.bad_frames, "frame skipped: {e}");
                continue;
            }
            Err(e) => return Err(e),
        };
        stats.frames += 1;
        let at = frame.captured;
        let codes = tokio::task::spawn_blocking(move || qr::decode(&frame))
            .await
            .map_err(|e| CameraError::Io(std::io::Error::other(e)))?;
        stats.sightings += codes.len() as u64;
        for scan in dedup.frame(at, codes) {
            stats.scans += 1;
            if tx.send(scan).await.is_err() {
                return Ok(stats);
            }
        }
        if tx.is_closed() {
            return Ok(stats);
        }
    }
}
