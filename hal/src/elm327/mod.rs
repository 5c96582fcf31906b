//! ELM327 OBD-II adapters: the adapter's text format ([`reply`], pure), a session
//! over any byte stream with init, timeouts, discovery and reconnection
//! ([`session`]), and the serial port behind the `serial` feature ([`serial`]).

pub mod reply;
#[cfg(feature = "serial")]
pub mod serial;
pub mod session;

pub use reply::{
    assemble, parse_data_line, parse_reply, AdapterError, BusKind, DataLine, EcuMessage,
    FrameError, RawReply, Reply, ReplyFramer,
};
pub use session::{
    mode01_requests, Connector, Discovery, Elm327, Elm327Config, Elm327Error, ReconnectBackoff,
    Reconnecting, MAX_PIDS_PER_REQUEST,
};
