//! MJPEG: a stream of JPEG images, either simply concatenated (what
//! `ffmpeg -f mjpeg` writes) or as the parts of a `multipart/x-mixed-replace`
//! body (what IP cameras serve). [`JpegSplitter`] finds each JPEG by walking its
//! markers, so headers and boundaries between parts are skipped and a thumbnail
//! inside an EXIF segment does not end its image early.

use super::{convert, CameraError, Frame, FrameSource};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::{Instant, Interval, MissedTickBehavior};

/// The largest JPEG accepted; a longer one is dropped as a bad frame so a
/// stream without an end marker cannot grow the buffer without bound.
pub const MAX_JPEG: usize = 8 * 1024 * 1024;

/// Splits a byte stream into whole JPEG images. Pure: push bytes, pop images.
#[derive(Debug, Default)]
pub struct JpegSplitter {
    buf: Vec<u8>,
}

enum Walk {
    /// The image ends at this offset (exclusive).
    Done(usize),
    NeedMore,
    /// Not a JPEG after all: drop the start marker and look again.
    Malformed,
}

impl JpegSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that are not yet part of a whole image.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next whole JPEG, `None` when more bytes are needed. An image past
    /// [`MAX_JPEG`] comes out as a bad frame and the splitter looks for the
    /// next start of image.
    pub fn next_jpeg(&mut self) -> Option<Result<Vec<u8>, CameraError>> {
        loop {
            let Some(start) = find_soi(&self.buf) else {
                // Keep a trailing 0xFF 0xD8 that may start an image.
                let keep = self.buf.len().min(2);
                self.buf.drain(..self.buf.len() - keep);
                return None;
            };
            self.buf.drain(..start);
            match walk(&self.buf) {
                Walk::Done(end) => {
                    let jpeg: Vec<u8> = self.buf.drain(..end).collect();
                    return Some(Ok(jpeg));
                }
                Walk::Malformed => {
                    self.buf.drain(..2);
                }
                Walk::NeedMore if self.buf.len() > MAX_JPEG => {
                    self.buf.drain(..2);
                    return Some(Err(CameraError::BadFrame(format!(
                        "JPEG longer than {MAX_JPEG} bytes with no end marker"
                    ))));
                }
                Walk::NeedMore => return None,
            }
        }
    }
}

/// The start of image marker followed by another marker.
fn find_soi(buf: &[u8]) -> Option<usize> {
    buf.windows(3)
        .position(|w| w == [0xFF, 0xD8, 0xFF])
        .or_else(|| {
            // An image whose third byte has not arrived yet.
            let n = buf.len();
            (n >= 2 && buf[n - 2..] == [0xFF, 0xD8]).then(|| n - 2)
        })
}

/// Walks the markers of the JPEG at the start of `buf` to its end of image.
fn walk(buf: &[u8]) -> Walk {
    let mut i = 2;
    loop {
        if i + 1 >= buf.len() {
            return Walk::NeedMore;
        }
        if buf[i] != 0xFF {
            return Walk::Malformed;
        }
        let marker = buf[i + 1];
        match marker {
            // Fill bytes before a marker.
            0xFF => i += 1,
            0xD9 => return Walk::Done(i + 2),
            0x01 | 0xD0..=0xD7 => i += 2,
            0x00 | 0xD8 => return Walk::Malformed,
            _ => {
                if i + 3 >= buf.len() {
                    return Walk::NeedMore;
                }
                let len = u16::from_be_bytes([buf[i + 2], buf[i + 3]]) as usize;
                if len < 2 {
                    return Walk::Malformed;
                }
                i += 2 + len;
                if marker == 0xDA {
                    // Entropy-coded data: a 0xFF is either stuffed (0xFF 0x00),
                    // a restart marker or the next marker.
                    loop {
                        if i + 1 >= buf.len() {
                            return Walk::NeedMore;
                        }
                        if buf[i] == 0xFF {
                            let next = buf[i + 1];
                            if next != 0x00 && next != 0xFF && !(0xD0..=0xD7).contains(&next) {
                                break;
                            }
                        }
                        i += 1;
                    }
                }
            }
        }
    }
}

/// Frames from an MJPEG file or stream, optionally paced to a frame rate.
pub struct MjpegReader<R> {
    reader: R,
    splitter: JpegSplitter,
    eof: bool,
    period: Option<Duration>,
    ticker: Option<Interval>,
}

impl MjpegReader<tokio::fs::File> {
    /// An MJPEG file played at `fps` (or as fast as asked).
    pub async fn open(path: &Path, fps: Option<f64>) -> Result<Self, CameraError> {
        let file = tokio::fs::File::open(path).await?;
        Self::new(file, fps)
    }
}

impl<R: AsyncRead + Unpin + Send> MjpegReader<R> {
    pub fn new(reader: R, fps: Option<f64>) -> Result<Self, CameraError> {
        let period = match fps {
            Some(f) if !(f.is_finite() && f > 0.0 && f <= 1000.0) => {
                return Err(CameraError::Setup(format!(
                    "frame rate {f} must be within (0, 1000]"
                )))
            }
            Some(f) => Some(Duration::from_secs_f64(1.0 / f)),
            None => None,
        };
        Ok(Self {
            reader,
            splitter: JpegSplitter::new(),
            eof: false,
            period,
            ticker: None,
        })
    }

    async fn next_jpeg(&mut self) -> Result<Option<Vec<u8>>, CameraError> {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some(jpeg) = self.splitter.next_jpeg() {
                return jpeg.map(Some);
            }
            if self.eof {
                return Ok(None);
            }
            let n = self.reader.read(&mut chunk).await?;
            if n == 0 {
                self.eof = true;
            } else {
                self.splitter.push(&chunk[..n]);
            }
        }
    }
}

impl<R: AsyncRead + Unpin + Send> FrameSource for MjpegReader<R> {
    async fn next_frame(&mut self) -> Result<Option<Frame>, CameraError> {
        let Some(jpeg) = self.next_jpeg().await? else {
            return Ok(None);
        };
        if let Some(period) = self.period {
            let ticker = self.ticker.get_or_insert_with(|| {
                let mut t = tokio::time::interval(period);
                t.set_missed_tick_behavior(MissedTickBehavior::Delay);
                t
            });
            ticker.tick().await;
        }
        let captured = Instant::now();
        let (w, h, gray) = tokio::task::spawn_blocking(move || convert::decode_image(&jpeg))
            .await
            .map_err(|e| CameraError::Io(std::io::Error::other(e)))??;
        Frame::new(w, h, gray, captured).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32, v: u8) -> Vec<u8> {
        let img = image::GrayImage::from_fn(w, h, |x, y| image::Luma([v ^ ((x + y) as u8)]));
        let mut out = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut out),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
        out
    }

    /// The JPEG with an APP1 segment holding a whole thumbnail JPEG, as EXIF does.
    fn with_thumbnail(main: &[u8], thumb: &[u8]) -> Vec<u8> {
        let mut app1 = vec![0xFF, 0xE1];
        app1.extend_from_slice(&((thumb.len() + 8) as u16).to_be_bytes());
        app1.extend_from_slice(b"Exif\0\0");
        app1.extend_from_slice(thumb);
        let mut out = main[..2].to_vec();
        out.extend_from_slice(&app1);
        out.extend_from_slice(&main[2..]);
        out
    }

    fn split_all(bytes: &[u8], chunk: usize) -> Vec<Result<Vec<u8>, CameraError>> {
        let mut s = JpegSplitter::new();
        let mut out = Vec::new();
        for c in bytes.chunks(chunk) {
            s.push(c);
            while let Some(j) = s.next_jpeg() {
                out.push(j);
            }
        }
        out
    }

    #[test]
    fn concatenated_jpegs_split_whole_whatever_the_read_size() {
        let a = jpeg(16, 8, 3);
        let b = jpeg(8, 8, 200);
        let stream = [a.clone(), b.clone(), a.clone()].concat();
        for chunk in [1, 7, 100, stream.len()] {
            let got: Vec<Vec<u8>> = split_all(&stream, chunk)
                .into_iter()
                .map(|r| r.unwrap())
                .collect();
            assert_eq!(got, vec![a.clone(), b.clone(), a.clone()], "chunk {chunk}");
        }
    }

    #[test]
    fn multipart_headers_and_boundaries_between_parts_are_skipped() {
        let a = jpeg(16, 8, 3);
        let b = jpeg(8, 16, 9);
        let mut body = Vec::new();
        for j in [&a, &b] {
            body.extend_from_slice(
                format!(
                    "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                    j.len()
                )
                .as_bytes(),
            );
            body.extend_from_slice(j);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--frame--\r\n");
        let got: Vec<Vec<u8>> = split_all(&body, 333)
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(got, vec![a, b]);
    }

    #[test]
    fn a_thumbnail_inside_an_exif_segment_does_not_end_the_image() {
        let main = jpeg(32, 32, 1);
        let full = with_thumbnail(&main, &jpeg(4, 4, 2));
        let got = split_all(&full, 50);
        assert_eq!(got.len(), 1);
        let one = got.into_iter().next().unwrap().unwrap();
        assert_eq!(one, full);
        assert_eq!(convert::decode_image(&one).unwrap().0, 32);
    }

    #[test]
    fn garbage_and_a_broken_image_are_skipped_up_to_the_next_good_one() {
        let a = jpeg(8, 8, 5);
        let mut stream = b"junk\xFF\xD8\xFF\x00\x01".to_vec();
        stream.extend_from_slice(&a);
        let got: Vec<Vec<u8>> = split_all(&stream, 4)
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(got, vec![a]);
    }

    #[test]
    fn an_image_with_no_end_is_dropped_past_the_limit() {
        let mut s = JpegSplitter::new();
        // A start of scan, then entropy data that never ends.
        s.push(&[0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02]);
        s.push(&vec![0x11; MAX_JPEG]);
        assert!(matches!(s.next_jpeg(), Some(Err(CameraError::BadFrame(_)))));
        assert!(s.next_jpeg().is_none());
        assert!(s.pending() <= 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_mjpeg_stream_yields_gray_frames_at_its_rate_then_ends() {
        let stream = [jpeg(16, 8, 3), jpeg(8, 8, 4)].concat();
        let mut src = MjpegReader::new(std::io::Cursor::new(stream), Some(25.0)).unwrap();
        let a = src.next_frame().await.unwrap().unwrap();
        let b = src.next_frame().await.unwrap().unwrap();
        assert_eq!((a.width, a.height, b.width), (16, 8, 8));
        assert_eq!(b.captured - a.captured, Duration::from_millis(40));
        assert!(src.next_frame().await.unwrap().is_none());
    }
}
