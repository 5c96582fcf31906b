//! Decoders: bytes from the bus or a receiver in, values in engineering units out.
//! Pure (no I/O), allocation-light, and never fatal on bad input.

pub mod candump;
pub mod dbc;
pub mod elm327;
pub mod j1939;
pub mod nmea;
pub mod obd;
pub mod obd_can;
pub mod qr;
