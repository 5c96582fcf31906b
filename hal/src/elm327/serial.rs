//! The ELM327 on a serial port (USB or Bluetooth SPP), through tokio-serial.

use std::io;

use tokio_serial::{SerialPortBuilderExt, SerialStream};

use super::session::Connector;

/// Baud rate of most USB ELM327 clones; genuine chips default to 38400 too.
pub const DEFAULT_BAUD: u32 = 38_400;

/// Opens `path` at `baud`, again on every reconnect: a USB adapter that was
/// unplugged comes back under the same path once it is plugged in.
#[derive(Debug, Clone)]
pub struct SerialConnector {
    pub path: String,
    pub baud: u32,
}

impl SerialConnector {
    pub fn new(path: impl Into<String>, baud: u32) -> Self {
        Self {
            path: path.into(),
            baud,
        }
    }
}

impl Connector for SerialConnector {
    type Io = SerialStream;

    async fn connect(&mut self) -> io::Result<SerialStream> {
        if !std::path::Path::new(&self.path).exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("serial device {} is not present", self.path),
            ));
        }
        tokio_serial::new(&self.path, self.baud)
            .open_native_async()
            .map_err(io::Error::from)
    }
}
