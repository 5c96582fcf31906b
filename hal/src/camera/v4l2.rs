//! A V4L2 camera through linuxvideo. The capture loop runs on its own thread
//! (dequeuing a buffer blocks) and hands gray frames to the async side; the
//! pixel conversions it calls are in [`super::convert`], where they are tested.

use super::{convert, CameraError, Frame, FrameSource};
use linuxvideo::format::{PixFormat, PixelFormat};
use linuxvideo::{BufType, Device, Fract};
use std::path::PathBuf;
use tokio::sync::mpsc;
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq)]
pub struct V4l2Options {
    pub device: PathBuf,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

impl Default for V4l2Options {
    fn default() -> Self {
        Self {
            device: PathBuf::from("/dev/video0"),
            width: 640,
            height: 480,
            fps: 10,
        }
    }
}

/// A V4L2 capture device yielding gray frames at the resolution the driver
/// agreed to (the nearest it has to the one asked for).
pub struct V4l2Camera {
    rx: mpsc::Receiver<Result<Frame, CameraError>>,
    /// (width, height, fourcc) as negotiated.
    negotiated: (u32, u32, [u8; 4]),
}

impl V4l2Camera {
    /// Opens the device, picks YUYV (the gray is its Y bytes) or else MJPEG,
    /// and starts streaming on a capture thread.
    pub fn open(opts: &V4l2Options) -> Result<Self, CameraError> {
        let device = Device::open(&opts.device).map_err(|e| {
            CameraError::Io(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", opts.device.display()),
            ))
        })?;
        let offered = device
            .formats(BufType::VIDEO_CAPTURE)
            .map(|f| f.map(|f| f.pixel_format()))
            .collect::<std::io::Result<Vec<_>>>()?;
        let pixel = [PixelFormat::YUYV, PixelFormat::MJPG, PixelFormat::JPEG]
            .into_iter()
            .find(|p| offered.contains(p))
            .ok_or_else(|| {
                CameraError::Setup(format!(
                    "{} offers none of YUYV, MJPG, JPEG (it has {offered:?})",
                    opts.device.display()
                ))
            })?;
        let capture = device.video_capture(PixFormat::new(opts.width, opts.height, pixel))?;
        if opts.fps > 0 {
            // Not every driver takes a frame interval; the camera's own rate is fine then.
            if let Err(e) = capture.set_frame_interval(Fract::new(1, opts.fps)) {
                tracing::debug!(device = %opts.device.display(), "frame interval not set: {e}");
            }
        }
        let fmt = capture.format();
        let (width, height, pixel) = (fmt.width(), fmt.height(), fmt.pixel_format());
        let mut stream = capture.into_stream()?;
        let (tx, rx) = mpsc::channel(2);
        let name = opts.device.display().to_string();
        std::thread::Builder::new()
            .name("v4l2-capture".into())
            .spawn(move || loop {
                let got = stream.dequeue(|buf| {
                    let captured = Instant::now();
                    if buf.is_error() {
                        return Ok(Err(CameraError::BadFrame(
                            "driver flagged the buffer".into(),
                        )));
                    }
                    Ok(to_gray(pixel, width, height, &buf)
                        .and_then(|(w, h, gray)| Frame::new(w, h, gray, captured)))
                });
                let item = match got {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(device = %name, "capture stopped: {e}");
                        let _ = tx.blocking_send(Err(CameraError::Io(e)));
                        return;
                    }
                };
                match tx.try_send(item) {
                    // The decoder is behind: this frame is dropped, a newer one follows.
                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            })?;
        Ok(Self {
            rx,
            negotiated: (width, height, pixel.as_fourcc()),
        })
    }

    /// Width, height and fourcc the driver chose.
    pub fn negotiated(&self) -> (u32, u32, [u8; 4]) {
        self.negotiated
    }
}

fn to_gray(
    pixel: PixelFormat,
    width: u32,
    height: u32,
    data: &[u8],
) -> Result<(u32, u32, Vec<u8>), CameraError> {
    if pixel == PixelFormat::YUYV {
        Ok((width, height, convert::yuyv_to_gray(width, height, data)?))
    } else {
        convert::decode_image(data)
    }
}

impl FrameSource for V4l2Camera {
    async fn next_frame(&mut self) -> Result<Option<Frame>, CameraError> {
        match self.rx.recv().await {
            Some(r) => r.map(Some),
            None => Ok(None),
        }
    }
}
