//! Decoders: bytes from the bus or a receiver in, values in engineering units out.
//! Pure (no I/O), allocation-light, and never fatal on bad input.

pub mod nmea;
pub mod obd;
pub mod obd_can;
