//! SocketCAN on Linux: a raw CAN socket that yields frames with their kernel
//! receive time, decodes and counts error frames, and counts the frames the kernel
//! dropped because we did not read fast enough.
//!
//! The socket is opened and bound by the `socketcan` crate; frames are read with
//! `recvmsg` (through `nix`) so that each one arrives together with its
//! `SCM_TIMESTAMPNS` time and the socket's `SO_RXQ_OVFL` drop counter. No unsafe
//! code: the byte layout of `struct can_frame` is decoded by [`decode_raw_frame`].
//!
//! [`SocketCanSource`] is one open socket; an I/O error (the interface went down,
//! a USB adapter was unplugged) ends it. [`ReopeningSocketCan`] wraps it for the
//! pipeline: it reopens the interface with backoff and keeps the counters.

use crate::can::{CanError, CanFrame, CanSource};
use nix::sys::socket::{self, sockopt, ControlMessageOwned, MsgFlags};
use nix::sys::time::TimeSpec;
use socketcan::{EmbeddedFrame, SocketOptions};
use std::fmt;
use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::unix::AsyncFd;

/// `struct can_frame` on the wire: id (u32, host order), len, pad, res0, len8_dlc,
/// eight data bytes.
pub const CAN_FRAME_SIZE: usize = 16;

const CAN_EFF_FLAG: u32 = 0x8000_0000;
const CAN_RTR_FLAG: u32 = 0x4000_0000;
const CAN_ERR_FLAG: u32 = 0x2000_0000;
const CAN_EFF_MASK: u32 = 0x1FFF_FFFF;
const CAN_SFF_MASK: u32 = 0x0000_07FF;

/// Error classes in the id of an error frame (`linux/can/error.h`).
pub mod err_class {
    pub const TX_TIMEOUT: u32 = 0x0001;
    pub const LOST_ARBITRATION: u32 = 0x0002;
    pub const CONTROLLER: u32 = 0x0004;
    pub const PROTOCOL: u32 = 0x0008;
    pub const TRANSCEIVER: u32 = 0x0010;
    pub const NO_ACK: u32 = 0x0020;
    pub const BUS_OFF: u32 = 0x0040;
    pub const BUS_ERROR: u32 = 0x0080;
    pub const RESTARTED: u32 = 0x0100;
    pub const COUNTERS: u32 = 0x0200;
    /// Every class: what the source asks the kernel to deliver.
    pub const ALL: u32 = 0x1FFF_FFFF;
}

/// Controller status bits in data byte 1 of a `CONTROLLER` error frame.
pub mod ctrl {
    pub const RX_OVERFLOW: u8 = 0x01;
    pub const TX_OVERFLOW: u8 = 0x02;
    pub const RX_WARNING: u8 = 0x04;
    pub const TX_WARNING: u8 = 0x08;
    pub const RX_PASSIVE: u8 = 0x10;
    pub const TX_PASSIVE: u8 = 0x20;
    pub const ACTIVE: u8 = 0x40;
}

/// Counters of one source since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketCanStats {
    /// Data and remote frames received.
    pub frames: u64,
    /// Error frames received (any class).
    pub error_frames: u64,
    /// Times the controller went bus-off.
    pub bus_off: u64,
    /// Frames the kernel dropped from our receive queue (`SO_RXQ_OVFL`), plus
    /// controller receive overflows reported in error frames.
    pub overflows: u64,
}

/// A decoded error frame: the class bits of its id and its eight data bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ErrorFrame {
    pub class: u32,
    pub data: [u8; 8],
    pub timestamp_us: u64,
}

impl ErrorFrame {
    pub fn bus_off(&self) -> bool {
        self.class & err_class::BUS_OFF != 0
    }

    pub fn restarted(&self) -> bool {
        self.class & err_class::RESTARTED != 0
    }

    /// Nobody acknowledged our frame: we are alone on the bus or the bitrate is wrong.
    pub fn no_ack(&self) -> bool {
        self.class & err_class::NO_ACK != 0
    }

    /// The controller status byte, when this is a controller-problem frame.
    pub fn controller(&self) -> Option<u8> {
        (self.class & err_class::CONTROLLER != 0).then_some(self.data[1])
    }

    /// The controller lost received frames (its own FIFO overflowed).
    pub fn rx_overflow(&self) -> bool {
        self.controller()
            .is_some_and(|c| c & ctrl::RX_OVERFLOW != 0)
    }

    /// Transmit and receive error counters, when the frame carries them.
    pub fn counters(&self) -> Option<(u8, u8)> {
        (self.class & err_class::COUNTERS != 0).then_some((self.data[6], self.data[7]))
    }
}

impl fmt::Debug for ErrorFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// "bus-off", "controller: rx-passive, tx-warning", "no ACK", … joined by "; ".
impl fmt::Display for ErrorFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        let names = [
            (err_class::TX_TIMEOUT, "tx timeout"),
            (err_class::LOST_ARBITRATION, "lost arbitration"),
            (err_class::PROTOCOL, "protocol violation"),
            (err_class::TRANSCEIVER, "transceiver"),
            (err_class::NO_ACK, "no ACK"),
            (err_class::BUS_OFF, "bus-off"),
            (err_class::BUS_ERROR, "bus error"),
            (err_class::RESTARTED, "restarted"),
        ];
        for (bit, name) in names {
            if self.class & bit != 0 {
                parts.push(name.to_owned());
            }
        }
        if let Some(status) = self.controller() {
            let bits = [
                (ctrl::RX_OVERFLOW, "rx-overflow"),
                (ctrl::TX_OVERFLOW, "tx-overflow"),
                (ctrl::RX_WARNING, "rx-warning"),
                (ctrl::TX_WARNING, "tx-warning"),
                (ctrl::RX_PASSIVE, "rx-passive"),
                (ctrl::TX_PASSIVE, "tx-passive"),
                (ctrl::ACTIVE, "error-active again"),
            ];
            let named: Vec<&str> = bits
                .iter()
                .filter(|(b, _)| status & b != 0)
                .map(|(_, n)| *n)
                .collect();
            if named.is_empty() {
                parts.push("controller problem".to_owned());
            } else {
                parts.push(format!("controller: {}", named.join(", ")));
            }
        }
        if let Some((tx, rx)) = self.counters() {
            parts.push(format!("tec {tx} rec {rx}"));
        }
        if parts.is_empty() {
            parts.push(format!("error class {:#x}", self.class));
        }
        f.write_str(&parts.join("; "))
    }
}

impl ErrorFrame {
    /// The candump `-l` line of this error frame (no newline): the id carries the
    /// error flag, as `candump -l` writes it and `canplayer` reads it back.
    pub fn format_line(&self, interface: &str, out: &mut String) {
        use std::fmt::Write;
        let ts = self.timestamp_us;
        let _ = write!(
            out,
            "({}.{:06}) {interface} {:08X}#",
            ts / 1_000_000,
            ts % 1_000_000,
            CAN_ERR_FLAG | self.class
        );
        for b in self.data {
            let _ = write!(out, "{b:02X}");
        }
    }

    /// Parse a candump `-l` line if it holds an error frame; `None` for any other
    /// line (data frames are [`crate::candump::parse_line`]'s).
    pub fn parse_line(line: &str) -> Option<ErrorFrame> {
        let mut parts = line.split_ascii_whitespace();
        let ts = parts.next()?.strip_prefix('(')?.strip_suffix(')')?;
        let (secs, micros) = ts.split_once('.')?;
        if micros.len() != 6 {
            return None;
        }
        let ts = secs
            .parse::<u64>()
            .ok()?
            .checked_mul(1_000_000)?
            .checked_add(micros.parse::<u64>().ok()?)?;
        let _interface = parts.next()?;
        let (id, data) = parts.next()?.split_once('#')?;
        if id.len() != 8 {
            return None;
        }
        let id = u32::from_str_radix(id, 16).ok()?;
        if id & CAN_ERR_FLAG == 0 || id & (CAN_EFF_FLAG | CAN_RTR_FLAG) != 0 {
            return None;
        }
        if data.len() % 2 != 0 || data.len() > 16 || !data.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 8];
        for (i, b) in bytes.iter_mut().enumerate().take(data.len() / 2) {
            *b = u8::from_str_radix(&data[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(ErrorFrame {
            class: id & CAN_EFF_MASK,
            data: bytes,
            timestamp_us: ts,
        })
    }
}

/// What one `struct can_frame` read from a raw socket holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawFrame {
    Data(CanFrame),
    Error(ErrorFrame),
}

/// Decode the bytes of a `struct can_frame` (host byte order for the id).
pub fn decode_raw_frame(bytes: &[u8; CAN_FRAME_SIZE], timestamp_us: u64) -> RawFrame {
    let can_id = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let len = bytes[4].min(8);
    let mut data = [0u8; 8];
    data.copy_from_slice(&bytes[8..16]);
    if can_id & CAN_ERR_FLAG != 0 {
        return RawFrame::Error(ErrorFrame {
            class: can_id & CAN_EFF_MASK,
            data,
            timestamp_us,
        });
    }
    let extended = can_id & CAN_EFF_FLAG != 0;
    let rtr = can_id & CAN_RTR_FLAG != 0;
    let id = if extended {
        can_id & CAN_EFF_MASK
    } else {
        can_id & CAN_SFF_MASK
    };
    RawFrame::Data(CanFrame {
        id,
        extended,
        rtr,
        len,
        data: if rtr { [0; 8] } else { data },
        timestamp_us,
    })
}

/// Microseconds since the Unix epoch of a kernel `timespec`; negative fields
/// (never sent by the kernel) count as zero.
pub fn timespec_to_us(sec: i64, nsec: i64) -> u64 {
    let sec = u64::try_from(sec).unwrap_or(0);
    let nsec = u64::try_from(nsec).unwrap_or(0).min(999_999_999);
    sec.saturating_mul(1_000_000).saturating_add(nsec / 1_000)
}

fn system_time_us(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Frames dropped since the last reading of the socket's `SO_RXQ_OVFL` counter,
/// which is cumulative and wraps at 2^32.
pub fn overflow_delta(previous: u32, now: u32) -> u32 {
    now.wrapping_sub(previous)
}

/// Whether `/sys/class/net/IF/flags` says the interface is up (`IFF_UP`).
fn interface_state(interface: &str) -> io::Result<bool> {
    let path = format!("/sys/class/net/{interface}/flags");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            not_found(interface)
        } else {
            e
        }
    })?;
    let flags = u32::from_str_radix(text.trim().trim_start_matches("0x"), 16)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {text:?}")))?;
    Ok(flags & 1 != 0)
}

fn not_found(interface: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "CAN interface {interface} does not exist (adapter unplugged or driver not loaded?)"
        ),
    )
}

fn is_down(interface: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        format!(
            "CAN interface {interface} is down (bring it up with: ip link set {interface} up type can bitrate 250000)"
        ),
    )
}

/// Turn the errno of a failed socket call into an error that names the interface.
fn explain(interface: &str, e: io::Error) -> io::Error {
    use nix::errno::Errno;
    match e.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ENODEV) => not_found(interface),
        Some(Errno::ENETDOWN) => is_down(interface),
        _ => io::Error::new(e.kind(), format!("CAN interface {interface}: {e}")),
    }
}

fn open_socket(interface: &str) -> io::Result<socketcan::CanSocket> {
    use socketcan::Socket;
    if !interface_state(interface)? {
        return Err(is_down(interface));
    }
    let sock = socketcan::CanSocket::open(interface).map_err(|e| explain(interface, e))?;
    sock.set_nonblocking(true)?;
    Ok(sock)
}

/// One `recvmsg`: the frame bytes, its receive time and the drop counter.
fn read_one(
    fd: RawFd,
    cmsg: &mut [u8],
) -> io::Result<([u8; CAN_FRAME_SIZE], Option<u64>, Option<u32>)> {
    let mut buf = [0u8; CAN_FRAME_SIZE];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = socket::recvmsg::<()>(fd, &mut iov, Some(cmsg), MsgFlags::MSG_DONTWAIT)
        .map_err(io::Error::from)?;
    if msg.bytes != CAN_FRAME_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("short CAN frame: {} bytes", msg.bytes),
        ));
    }
    let mut ts = None;
    let mut drops = None;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        match c {
            ControlMessageOwned::ScmTimestampns(t) => {
                ts = Some(timespec_to_us(t.tv_sec(), t.tv_nsec()));
            }
            ControlMessageOwned::RxqOvfl(n) => drops = Some(n),
            _ => {}
        }
    }
    Ok((buf, ts, drops))
}

/// Hand the socket to tokio's reactor. `AsyncFd::new` is deprecated because it
/// cannot check that `T` owns its descriptor; `socketcan::CanSocket` does (it
/// closes it on drop), which is the case the constructor is sound for, and the
/// `socketcan` crate's own tokio wrapper registers its sockets the same way.
#[allow(deprecated)]
fn register(sock: socketcan::CanSocket) -> io::Result<AsyncFd<socketcan::CanSocket>> {
    AsyncFd::new(sock)
}

/// One open raw CAN socket on an interface.
pub struct SocketCanSource {
    interface: String,
    fd: AsyncFd<socketcan::CanSocket>,
    stats: SocketCanStats,
    drops_seen: u32,
    in_bus_off: bool,
    cmsg: Vec<u8>,
}

impl SocketCanSource {
    /// Open and bind `interface` (e.g. `can0`); error frames of every class are
    /// delivered, frames carry their kernel receive time. Needs a tokio runtime.
    pub fn open(interface: &str) -> Result<Self, CanError> {
        let sock = open_socket(interface)?;
        sock.set_error_mask(err_class::ALL)?;
        socket::setsockopt(&sock, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)?;
        socket::setsockopt(&sock, sockopt::RxqOvfl, &1).map_err(io::Error::from)?;
        Ok(Self {
            interface: interface.to_owned(),
            fd: register(sock)?,
            stats: SocketCanStats::default(),
            drops_seen: 0,
            in_bus_off: false,
            cmsg: nix::cmsg_space!(TimeSpec, u32),
        })
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    pub fn stats(&self) -> SocketCanStats {
        self.stats
    }

    /// Count and log an error frame; the caller goes on reading.
    fn on_error_frame(&mut self, e: &ErrorFrame) {
        self.stats.error_frames += 1;
        if e.rx_overflow() {
            self.stats.overflows += 1;
        }
        if e.bus_off() {
            if !self.in_bus_off {
                self.stats.bus_off += 1;
                self.in_bus_off = true;
                tracing::warn!(interface = %self.interface, "CAN bus-off: {e}; waiting for the controller to restart");
            }
        } else if e.restarted() {
            if self.in_bus_off {
                tracing::warn!(interface = %self.interface, "CAN controller restarted after bus-off");
            }
            self.in_bus_off = false;
        } else {
            tracing::debug!(interface = %self.interface, "CAN error frame: {e}");
        }
    }
}

impl SocketCanSource {
    /// The next frame the socket delivers, error frames included (counted and
    /// logged as well). `fleet-agent can record` keeps both kinds.
    pub async fn recv_raw(&mut self) -> Result<RawFrame, CanError> {
        let (bytes, ts, drops) = loop {
            let mut guard = self.fd.readable().await?;
            match read_one(self.fd.get_ref().as_raw_fd(), &mut self.cmsg) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                r => break r.map_err(|e| explain(&self.interface, e))?,
            }
        };
        if let Some(now) = drops {
            let lost = overflow_delta(self.drops_seen, now);
            if lost > 0 {
                tracing::warn!(interface = %self.interface, lost, "kernel dropped CAN frames: reader too slow");
                self.stats.overflows += u64::from(lost);
            }
            self.drops_seen = now;
        }
        let ts = ts.unwrap_or_else(|| system_time_us(SystemTime::now()));
        let raw = decode_raw_frame(&bytes, ts);
        match &raw {
            RawFrame::Data(_) => {
                if self.in_bus_off {
                    tracing::warn!(interface = %self.interface, "CAN traffic again after bus-off");
                    self.in_bus_off = false;
                }
                self.stats.frames += 1;
            }
            RawFrame::Error(e) => self.on_error_frame(e),
        }
        Ok(raw)
    }
}

impl CanSource for SocketCanSource {
    async fn recv(&mut self) -> Result<CanFrame, CanError> {
        loop {
            if let RawFrame::Data(f) = self.recv_raw().await? {
                return Ok(f);
            }
        }
    }
}

/// A SocketCAN source that survives its interface going away: on an I/O error or
/// a failed open it waits (doubling from `min` to `max`) and reopens. Each outage
/// is logged once when it starts and once when it ends.
pub struct ReopeningSocketCan {
    interface: String,
    current: Option<SocketCanSource>,
    /// Counters of sources already closed.
    closed: SocketCanStats,
    min: Duration,
    max: Duration,
    reopens: u64,
}

impl ReopeningSocketCan {
    pub fn new(interface: &str) -> Self {
        Self::with_backoff(
            interface,
            Duration::from_millis(500),
            Duration::from_secs(30),
        )
    }

    pub fn with_backoff(interface: &str, min: Duration, max: Duration) -> Self {
        Self {
            interface: interface.to_owned(),
            current: None,
            closed: SocketCanStats::default(),
            min,
            max,
            reopens: 0,
        }
    }

    /// Counters over every socket this source opened.
    pub fn stats(&self) -> SocketCanStats {
        let now = self.current.as_ref().map(|s| s.stats()).unwrap_or_default();
        add_stats(self.closed, now)
    }

    /// Successful opens after the first.
    pub fn reopens(&self) -> u64 {
        self.reopens
    }

    async fn ensure_open(&mut self) -> &mut SocketCanSource {
        let mut delay = self.min;
        let mut failing = false;
        let mut opened_before = self.reopens > 0 || self.closed != SocketCanStats::default();
        loop {
            if self.current.is_some() {
                break;
            }
            match SocketCanSource::open(&self.interface) {
                Ok(s) => {
                    if failing || opened_before {
                        tracing::warn!(interface = %self.interface, "CAN interface back; reading again");
                    } else {
                        tracing::info!(interface = %self.interface, "reading CAN interface");
                    }
                    if opened_before {
                        self.reopens += 1;
                    }
                    self.current = Some(s);
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(interface = %self.interface, "cannot open CAN interface: {e}; retrying with backoff");
                        failing = true;
                    } else {
                        tracing::debug!(interface = %self.interface, ?delay, "CAN interface still unavailable: {e}");
                    }
                    opened_before = opened_before || self.reopens > 0;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.max);
                }
            }
        }
        self.current.as_mut().expect("opened above")
    }
}

fn add_stats(a: SocketCanStats, b: SocketCanStats) -> SocketCanStats {
    SocketCanStats {
        frames: a.frames + b.frames,
        error_frames: a.error_frames + b.error_frames,
        bus_off: a.bus_off + b.bus_off,
        overflows: a.overflows + b.overflows,
    }
}

impl CanSource for ReopeningSocketCan {
    async fn recv(&mut self) -> Result<CanFrame, CanError> {
        loop {
            let source = self.ensure_open().await;
            match source.recv().await {
                Ok(f) => return Ok(f),
                Err(e) => {
                    tracing::warn!(interface = %self.interface, "CAN source failed: {e}; reopening");
                    if let Some(old) = self.current.take() {
                        self.closed = add_stats(self.closed, old.stats());
                    }
                }
            }
        }
    }
}

/// A raw socket for sending frames (`fleet-agent can play`).
pub struct SocketCanSink {
    interface: String,
    socket: socketcan::tokio::CanSocket,
}

impl SocketCanSink {
    pub fn open(interface: &str) -> Result<Self, CanError> {
        open_socket(interface)?;
        let socket = socketcan::tokio::CanSocket::open(interface)
            .map_err(|e| CanError::Io(explain(interface, e)))?;
        Ok(Self {
            interface: interface.to_owned(),
            socket,
        })
    }

    /// Send a data or remote frame; waits while the transmit queue is full.
    pub async fn send(&self, frame: &CanFrame) -> Result<(), CanError> {
        let id = to_socketcan_id(frame)?;
        let out = if frame.rtr {
            socketcan::CanFrame::new_remote(id, usize::from(frame.len.min(8)))
        } else {
            socketcan::CanFrame::new(id, frame.payload())
        }
        .ok_or_else(|| invalid(format!("cannot build frame {frame:?}")))?;
        self.write(out).await
    }

    /// Send an error frame, as a controller would report one (vcan carries them
    /// to every reader that asked for error frames).
    pub async fn send_error(&self, e: &ErrorFrame) -> Result<(), CanError> {
        let out = socketcan::CanErrorFrame::new_error(e.class, &e.data)
            .map_err(|err| invalid(format!("cannot build error frame: {err}")))?;
        self.write(socketcan::CanFrame::Error(out)).await
    }

    async fn write(&self, frame: socketcan::CanFrame) -> Result<(), CanError> {
        loop {
            match self.socket.write_frame(frame).await {
                // ENOBUFS: the device queue is full; the kernel does not wait for us.
                Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOBUFS as i32) => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                r => return r.map_err(|e| CanError::Io(explain(&self.interface, e))),
            }
        }
    }
}

fn invalid(msg: String) -> CanError {
    CanError::Io(io::Error::new(io::ErrorKind::InvalidInput, msg))
}

fn to_socketcan_id(frame: &CanFrame) -> Result<socketcan::Id, CanError> {
    let id = if frame.extended {
        socketcan::ExtendedId::new(frame.id).map(socketcan::Id::Extended)
    } else {
        u16::try_from(frame.id)
            .ok()
            .and_then(socketcan::StandardId::new)
            .map(socketcan::Id::Standard)
    };
    id.ok_or_else(|| invalid(format!("CAN id {:#x} does not fit its format", frame.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(can_id: u32, len: u8, data: [u8; 8]) -> [u8; CAN_FRAME_SIZE] {
        let mut b = [0u8; CAN_FRAME_SIZE];
        b[..4].copy_from_slice(&can_id.to_ne_bytes());
        b[4] = len;
        b[8..].copy_from_slice(&data);
        b
    }

    #[test]
    fn extended_standard_and_remote_frames_decode_with_their_flags() {
        let ext = decode_raw_frame(&raw(0x98FE_F100, 8, [1, 2, 3, 4, 5, 6, 7, 8]), 42);
        assert_eq!(
            ext,
            RawFrame::Data(CanFrame::extended8(
                0x18FE_F100,
                [1, 2, 3, 4, 5, 6, 7, 8],
                42
            ))
        );
        let std = decode_raw_frame(&raw(0x7E8, 3, [0x41, 0x0C, 0x1A, 0, 0, 0, 0, 0]), 7);
        let RawFrame::Data(f) = std else {
            panic!("data frame expected")
        };
        assert!(!f.extended && !f.rtr);
        assert_eq!((f.id, f.payload()), (0x7E8, &[0x41, 0x0C, 0x1A][..]));
        let rtr = decode_raw_frame(&raw(0x4000_07DF, 8, [0xAA; 8]), 0);
        let RawFrame::Data(f) = rtr else {
            panic!("remote frame expected")
        };
        assert!(f.rtr);
        assert_eq!((f.id, f.len, f.payload()), (0x7DF, 8, &[][..]));
    }

    #[test]
    fn a_length_over_eight_is_clamped_not_trusted() {
        let RawFrame::Data(f) = decode_raw_frame(&raw(0x123, 15, [9; 8]), 0) else {
            panic!("data frame expected")
        };
        assert_eq!(f.payload().len(), 8);
    }

    #[test]
    fn bus_off_error_frame_decodes_and_describes_itself() {
        let RawFrame::Error(e) = decode_raw_frame(&raw(0x2000_0040, 8, [0; 8]), 5) else {
            panic!("error frame expected")
        };
        assert!(e.bus_off() && !e.restarted() && !e.no_ack());
        assert_eq!(e.to_string(), "bus-off");
        assert_eq!(e.timestamp_us, 5);
    }

    #[test]
    fn controller_problem_names_each_status_bit_and_rx_overflow_counts() {
        let class = err_class::CONTROLLER | err_class::COUNTERS;
        let data = [0, ctrl::RX_OVERFLOW | ctrl::TX_PASSIVE, 0, 0, 0, 0, 130, 96];
        let RawFrame::Error(e) = decode_raw_frame(&raw(CAN_ERR_FLAG | class, 8, data), 0) else {
            panic!("error frame expected")
        };
        assert!(e.rx_overflow());
        assert_eq!(e.counters(), Some((130, 96)));
        assert_eq!(
            e.to_string(),
            "controller: rx-overflow, tx-passive; tec 130 rec 96"
        );
    }

    #[test]
    fn no_ack_and_restart_are_told_apart() {
        let RawFrame::Error(e) =
            decode_raw_frame(&raw(CAN_ERR_FLAG | err_class::NO_ACK, 8, [0; 8]), 0)
        else {
            panic!("error frame expected")
        };
        assert!(e.no_ack() && !e.bus_off());
        assert_eq!(e.to_string(), "no ACK");
        let RawFrame::Error(e) =
            decode_raw_frame(&raw(CAN_ERR_FLAG | err_class::RESTARTED, 8, [0; 8]), 0)
        else {
            panic!("error frame expected")
        };
        assert!(e.restarted());
        assert_eq!(format!("{e:?}"), "restarted");
    }

    #[test]
    fn kernel_timespec_becomes_microseconds_since_the_epoch() {
        assert_eq!(
            timespec_to_us(1_635_188_455, 20_850_999),
            1_635_188_455_020_850
        );
        assert_eq!(timespec_to_us(0, 0), 0);
        assert_eq!(timespec_to_us(-1, -5), 0);
        assert_eq!(timespec_to_us(1, 5_000_000_000), 1_999_999);
        assert_eq!(timespec_to_us(i64::MAX, 0), u64::MAX);
    }

    #[test]
    fn drop_counter_deltas_survive_the_wrap() {
        assert_eq!(overflow_delta(0, 0), 0);
        assert_eq!(overflow_delta(10, 17), 7);
        assert_eq!(overflow_delta(u32::MAX - 1, 3), 5);
    }

    #[test]
    fn sink_ids_keep_their_format() {
        let f = CanFrame::new(0x7FF, false, &[1], 0).expect("valid");
        assert!(matches!(
            to_socketcan_id(&f),
            Ok(socketcan::Id::Standard(_))
        ));
        let f = CanFrame::extended8(0x18FE_F100, [0; 8], 0);
        assert!(matches!(
            to_socketcan_id(&f),
            Ok(socketcan::Id::Extended(_))
        ));
        let mut bad = CanFrame::new(0x123, false, &[], 0).expect("valid");
        bad.id = 0x800;
        assert!(to_socketcan_id(&bad).is_err());
    }

    #[test]
    fn error_frame_lines_round_trip_and_data_lines_are_not_error_frames() {
        let e = ErrorFrame {
            class: err_class::CONTROLLER | err_class::BUS_OFF,
            data: [0, ctrl::TX_PASSIVE, 0, 0, 0, 0, 0, 0],
            timestamp_us: 1_700_000_000_000_001,
        };
        let mut line = String::new();
        e.format_line("vcan0", &mut line);
        assert_eq!(line, "(1700000000.000001) vcan0 20000044#0020000000000000");
        assert_eq!(ErrorFrame::parse_line(&line), Some(e));
        for other in [
            "(1635188455.020850) can0 18F00E00#821639C4FFFFFFFF",
            "(1.000000) can0 7DF#R",
            "(1.000000) can0 2000004#00",
            "(1.000000) can0 20000040#0",
            "garbage",
        ] {
            assert_eq!(ErrorFrame::parse_line(other), None, "{other}");
        }
    }

    #[tokio::test]
    async fn a_missing_interface_is_a_clear_error() {
        let err = SocketCanSource::open("fleetnone0")
            .err()
            .expect("no such interface");
        let msg = err.to_string();
        assert!(
            msg.contains("fleetnone0") && msg.contains("does not exist"),
            "{msg}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reopening_source_keeps_retrying_with_backoff_until_the_interface_appears() {
        let mut src = ReopeningSocketCan::with_backoff(
            "fleetnone1",
            Duration::from_millis(100),
            Duration::from_millis(400),
        );
        let started = tokio::time::Instant::now();
        let r = tokio::time::timeout(Duration::from_millis(1_450), src.recv()).await;
        assert!(r.is_err(), "no interface, so no frame and no error");
        // 100 + 200 + 400 + 400 + … ms between attempts: still waiting, never failed.
        assert!(started.elapsed() >= Duration::from_millis(1_450));
        assert_eq!(src.stats(), SocketCanStats::default());
        assert_eq!(src.reopens(), 0);
    }
}
