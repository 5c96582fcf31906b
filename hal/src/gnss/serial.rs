//! A GNSS receiver speaking NMEA 0183 on a serial port (USB puck, Pi HAT UART).

use super::lines::{LineFramer, MAX_LINE};
use super::{NmeaError, NmeaSource};
use std::collections::VecDeque;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// Most receivers start at 9600 baud; u-blox and MediaTek can be set faster.
pub const DEFAULT_BAUD: u32 = 9_600;

/// Lines from any byte stream: the serial port, or a pty in tests. A closed
/// stream (the receiver unplugged) is an I/O error, so the caller reopens it.
pub struct SerialNmea<S = tokio_serial::SerialStream> {
    io: S,
    framer: LineFramer,
    queue: VecDeque<(String, u64)>,
    opened: Instant,
    buf: Box<[u8]>,
}

impl SerialNmea {
    /// Open `path` at `baud`, 8N1.
    pub fn open(path: &str, baud: u32) -> io::Result<Self> {
        use tokio_serial::SerialPortBuilderExt;
        if !std::path::Path::new(path).exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("serial device {path} is not present"),
            ));
        }
        let port = tokio_serial::new(path, baud).open_native_async()?;
        Ok(Self::from_stream(port))
    }
}

impl<S: AsyncRead + Unpin + Send> SerialNmea<S> {
    pub fn from_stream(io: S) -> Self {
        Self {
            io,
            framer: LineFramer::new(MAX_LINE),
            queue: VecDeque::new(),
            opened: Instant::now(),
            buf: vec![0; 1024].into_boxed_slice(),
        }
    }

    /// Lines dropped for length or encoding before any decoder saw them.
    pub fn dropped_lines(&self) -> u64 {
        self.framer.dropped
    }
}

impl<S: AsyncRead + Unpin + Send> NmeaSource for SerialNmea<S> {
    async fn next_line(&mut self) -> Result<(String, u64), NmeaError> {
        let mut lines = Vec::new();
        while self.queue.is_empty() {
            let n = self.io.read(&mut self.buf).await?;
            if n == 0 {
                return Err(NmeaError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the receiver closed the port",
                )));
            }
            let t = self.opened.elapsed().as_micros() as u64;
            self.framer.push(&self.buf[..n], &mut lines);
            self.queue.extend(lines.drain(..).map(|l| (l, t)));
        }
        self.queue.pop_front().ok_or(NmeaError::Closed)
    }
}
