//! CAN frames and the trait every CAN source implements.

use std::fmt;
use std::future::Future;

/// The largest 29-bit identifier.
pub const EXTENDED_ID_MAX: u32 = 0x1FFF_FFFF;
/// The largest 11-bit identifier.
pub const STANDARD_ID_MAX: u32 = 0x7FF;

/// One classic CAN frame (up to 8 data bytes) with the time it was received.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CanFrame {
    /// 11-bit or 29-bit identifier, without flag bits.
    pub id: u32,
    pub extended: bool,
    /// Remote transmission request: no data, `len` is the requested length.
    pub rtr: bool,
    pub len: u8,
    pub data: [u8; 8],
    /// Microseconds on the source's clock: the kernel receive time for SocketCAN,
    /// the log time for a replay, the simulated monotonic time for the simulator.
    pub timestamp_us: u64,
}

impl CanFrame {
    /// A data frame; `None` if the id does not fit its format or data is over 8 bytes.
    pub fn new(id: u32, extended: bool, data: &[u8], timestamp_us: u64) -> Option<Self> {
        let max = if extended {
            EXTENDED_ID_MAX
        } else {
            STANDARD_ID_MAX
        };
        if id > max || data.len() > 8 {
            return None;
        }
        let mut buf = [0u8; 8];
        buf[..data.len()].copy_from_slice(data);
        Some(Self {
            id,
            extended,
            rtr: false,
            len: data.len() as u8,
            data: buf,
            timestamp_us,
        })
    }

    /// A 29-bit data frame with a full 8-byte payload, as J1939 sends them.
    pub fn extended8(id: u32, data: [u8; 8], timestamp_us: u64) -> Self {
        Self {
            id: id & EXTENDED_ID_MAX,
            extended: true,
            rtr: false,
            len: 8,
            data,
            timestamp_us,
        }
    }

    /// The data bytes actually carried.
    pub fn payload(&self) -> &[u8] {
        if self.rtr {
            &[]
        } else {
            &self.data[..usize::from(self.len.min(8))]
        }
    }
}

impl fmt::Debug for CanFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.extended {
            write!(f, "{:08X}#", self.id)?;
        } else {
            write!(f, "{:03X}#", self.id)?;
        }
        if self.rtr {
            return write!(f, "R @{}us", self.timestamp_us);
        }
        for b in self.payload() {
            write!(f, "{b:02X}")?;
        }
        write!(f, " @{}us", self.timestamp_us)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CanError {
    /// The source has no more frames (a replay reached its end, a simulator stopped).
    #[error("CAN source closed")]
    Closed,
    #[error("CAN bus is off")]
    BusOff,
    #[error("CAN I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Anything that yields received CAN frames: SocketCAN, a candump replay, a simulator.
pub trait CanSource: Send {
    /// The next received frame. `Err(Closed)` ends the stream; other errors may be
    /// transient (the caller decides whether to reopen).
    fn recv(&mut self) -> impl Future<Output = Result<CanFrame, CanError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_rejects_ids_that_do_not_fit_their_format() {
        assert!(CanFrame::new(0x800, false, &[1], 0).is_none());
        assert!(CanFrame::new(0x2000_0000, true, &[1], 0).is_none());
        assert!(CanFrame::new(0x7FF, false, &[0; 9], 0).is_none());
        let f = CanFrame::new(0x18FEF100, true, &[1, 2, 3], 7).expect("valid frame");
        assert_eq!(f.payload(), &[1, 2, 3]);
        assert_eq!(format!("{f:?}"), "18FEF100#010203 @7us");
    }
}
