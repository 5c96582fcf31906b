//! Camera frames: 8-bit grayscale images with their capture time.
//!
//! A [`FrameSource`] is a V4L2 camera (feature `v4l2`, [`V4l2Camera`]), a
//! folder of images played at a frame rate ([`ImageFolder`]) or an MJPEG file
//! or stream: concatenated JPEGs or a multipart body ([`MjpegReader`]). The
//! folder and MJPEG sources stand in for the camera in tests and the demo.
//! Conversions from camera pixel formats to gray live in [`convert`] and are
//! pure.

pub mod convert;
mod folder;
mod mjpeg;
#[cfg(all(feature = "v4l2", target_os = "linux"))]
mod v4l2;

pub use folder::{FolderOptions, ImageFolder};
pub use mjpeg::{JpegSplitter, MjpegReader, MAX_JPEG};
#[cfg(all(feature = "v4l2", target_os = "linux"))]
pub use v4l2::{V4l2Camera, V4l2Options};

use std::future::Future;
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    /// The device or file could not be opened or read: fatal for the source.
    #[error("camera I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// One frame could not be decoded; the next one may be fine.
    #[error("bad frame: {0}")]
    BadFrame(String),
    /// The source is set up in a way it cannot work (no images, a format the
    /// camera does not offer).
    #[error("camera setup: {0}")]
    Setup(String),
}

impl CameraError {
    /// A bad frame is skipped; anything else stops the source.
    pub fn is_recoverable(&self) -> bool {
        matches!(self, CameraError::BadFrame(_))
    }
}

/// One 8-bit grayscale image, row-major, `width * height` bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub gray: Vec<u8>,
    /// When the source captured (or, for a file, produced) it, on tokio's clock.
    pub captured: Instant,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("captured", &self.captured)
            .finish_non_exhaustive()
    }
}

impl Frame {
    /// A frame from its pixels; refuses a buffer of the wrong size.
    pub fn new(
        width: u32,
        height: u32,
        gray: Vec<u8>,
        captured: Instant,
    ) -> Result<Self, CameraError> {
        let want = width as usize * height as usize;
        if gray.len() != want || want == 0 {
            return Err(CameraError::BadFrame(format!(
                "{width}x{height} frame needs {want} bytes, got {}",
                gray.len()
            )));
        }
        Ok(Self {
            width,
            height,
            gray,
            captured,
        })
    }

    /// The pixel at (x, y); panics outside the frame.
    pub fn at(&self, x: u32, y: u32) -> u8 {
        self.gray[y as usize * self.width as usize + x as usize]
    }
}

/// Anything that yields camera frames.
pub trait FrameSource: Send {
    /// The next frame, or `None` once the source has ended (a folder played
    /// once, the end of a file). A recoverable error (see
    /// [`CameraError::is_recoverable`]) leaves the source usable.
    fn next_frame(&mut self) -> impl Future<Output = Result<Option<Frame>, CameraError>> + Send;
}
