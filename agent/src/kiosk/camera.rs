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

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_hal::camera::{FolderOptions, ImageFolder};
    use std::path::Path;

    /// `text` as a QR code in a 160x160 PNG (`None`: a blank frame).
    fn frame_png(path: &Path, text: Option<&str>) {
        let mut img = image::GrayImage::from_pixel(160, 160, image::Luma([230]));
        if let Some(text) = text {
            let code = qrcode::QrCode::new(text.as_bytes()).unwrap();
            let n = code.width();
            let colors = code.to_colors();
            for (i, c) in colors.iter().enumerate() {
                if *c == qrcode::Color::Dark {
                    let (mx, my) = ((i % n) as u32, (i / n) as u32);
                    for d in 0..16 {
                        img.put_pixel(20 + mx * 4 + d % 4, 20 + my * 4 + d / 4, image::Luma([20]));
                    }
                }
            }
        }
        img.save(path).unwrap();
    }

    #[tokio::test]
    async fn a_label_held_over_frames_is_sent_once_and_the_task_ends_with_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let shown = [Some("BADGE-1"), Some("BADGE-1"), None, Some("KEY-7")];
        for (i, t) in shown.iter().enumerate() {
            frame_png(&dir.path().join(format!("{i}.png")), *t);
        }
        std::fs::write(dir.path().join("4.jpg"), b"corrupt").unwrap();
        let src = ImageFolder::open(
            dir.path(),
            FolderOptions {
                fps: None,
                looped: false,
            },
        )
        .unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        let stats = run(src, tx).await.unwrap();
        let mut got = Vec::new();
        while let Some(s) = rx.recv().await {
            got.push(s.text);
        }
        assert_eq!(got, ["BADGE-1", "KEY-7"]);
        assert_eq!(
            stats,
            CameraStats {
                frames: 4,
                bad_frames: 1,
                sightings: 3,
                scans: 2
            }
        );
    }
}
