//! A folder of JPEG/PNG images played as a camera: sorted by file name, at a
//! frame rate, once or looped.

use super::{convert, CameraError, Frame, FrameSource};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::{Instant, Interval, MissedTickBehavior};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FolderOptions {
    /// Frames per second; `None` plays as fast as the reader asks.
    pub fps: Option<f64>,
    /// Start again from the first image after the last.
    pub looped: bool,
}

impl Default for FolderOptions {
    fn default() -> Self {
        Self {
            fps: Some(10.0),
            looped: false,
        }
    }
}

/// Images from a folder, one frame each.
pub struct ImageFolder {
    files: Vec<PathBuf>,
    next: usize,
    looped: bool,
    period: Option<Duration>,
    /// Made at the first frame, so a source can be built outside a runtime.
    ticker: Option<Interval>,
}

/// True for the file names the folder source plays.
fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
}

impl ImageFolder {
    /// The `.jpg`, `.jpeg` and `.png` files of `dir`, sorted by name; other
    /// files are left alone. An empty folder is a setup error.
    pub fn open(dir: &Path, opts: FolderOptions) -> Result<Self, CameraError> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_file() && is_image(&path) {
                files.push(path);
            }
        }
        if files.is_empty() {
            return Err(CameraError::Setup(format!(
                "no .jpg, .jpeg or .png images in {}",
                dir.display()
            )));
        }
        files.sort();
        Self::from_files(files, opts)
    }

    /// Exactly these files, in this order.
    pub fn from_files(files: Vec<PathBuf>, opts: FolderOptions) -> Result<Self, CameraError> {
        let period = match opts.fps {
            Some(fps) if !(fps.is_finite() && fps > 0.0 && fps <= 1000.0) => {
                return Err(CameraError::Setup(format!(
                    "frame rate {fps} must be within (0, 1000]"
                )))
            }
            Some(fps) => Some(Duration::from_secs_f64(1.0 / fps)),
            None => None,
        };
        Ok(Self {
            files,
            next: 0,
            looped: opts.looped,
            period,
            ticker: None,
        })
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

impl FrameSource for ImageFolder {
    async fn next_frame(&mut self) -> Result<Option<Frame>, CameraError> {
        if self.next >= self.files.len() {
            if !self.looped {
                return Ok(None);
            }
            self.next = 0;
        }
        if let Some(period) = self.period {
            let ticker = self.ticker.get_or_insert_with(|| {
                let mut t = tokio::time::interval(period);
                // A slow decoder gets the next frame late, not a burst of them.
                t.set_missed_tick_behavior(MissedTickBehavior::Delay);
                t
            });
            ticker.tick().await;
        }
        let path = self.files[self.next].clone();
        self.next += 1;
        let captured = Instant::now();
        let decoded = tokio::task::spawn_blocking(move || {
            let bytes = std::fs::read(&path)?;
            convert::decode_image(&bytes).map_err(|e| match e {
                CameraError::BadFrame(m) => {
                    CameraError::BadFrame(format!("{}: {m}", path.display()))
                }
                other => other,
            })
        })
        .await
        .map_err(|e| CameraError::Io(std::io::Error::other(e)))??;
        let (w, h, gray) = decoded;
        Frame::new(w, h, gray, captured).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, w: u32, h: u32, v: u8) {
        image::GrayImage::from_pixel(w, h, image::Luma([v]))
            .save(path)
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_folder_plays_its_images_in_name_order_at_the_frame_rate_once() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("b.png"), 4, 2, 20);
        write_png(&dir.path().join("a.PNG"), 2, 2, 10);
        std::fs::write(dir.path().join("notes.txt"), "not a frame").unwrap();
        let mut src = ImageFolder::open(
            dir.path(),
            FolderOptions {
                fps: Some(5.0),
                looped: false,
            },
        )
        .unwrap();
        assert_eq!(src.len(), 2);
        let t0 = Instant::now();
        let a = src.next_frame().await.unwrap().unwrap();
        let b = src.next_frame().await.unwrap().unwrap();
        assert_eq!((a.width, a.height, a.at(0, 0)), (2, 2, 10));
        assert_eq!((b.width, b.height, b.at(3, 1)), (4, 2, 20));
        assert_eq!(b.captured - a.captured, Duration::from_millis(200));
        assert!(a.captured >= t0);
        assert!(src.next_frame().await.unwrap().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_looped_folder_starts_again_and_a_bad_image_is_recoverable() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("1.png"), 2, 2, 1);
        std::fs::write(dir.path().join("2.jpg"), b"truncated").unwrap();
        let mut src = ImageFolder::open(
            dir.path(),
            FolderOptions {
                fps: None,
                looped: true,
            },
        )
        .unwrap();
        assert_eq!(src.next_frame().await.unwrap().unwrap().at(1, 1), 1);
        let err = src.next_frame().await.unwrap_err();
        assert!(err.is_recoverable(), "{err}");
        assert!(err.to_string().contains("2.jpg"), "{err}");
        assert_eq!(src.next_frame().await.unwrap().unwrap().at(0, 0), 1);
    }

    #[test]
    fn an_empty_folder_or_a_bad_rate_is_a_setup_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            ImageFolder::open(dir.path(), FolderOptions::default()),
            Err(CameraError::Setup(_))
        ));
        assert!(matches!(
            ImageFolder::from_files(
                vec![PathBuf::from("x.png")],
                FolderOptions {
                    fps: Some(0.0),
                    looped: false
                }
            ),
            Err(CameraError::Setup(_))
        ));
    }
}
