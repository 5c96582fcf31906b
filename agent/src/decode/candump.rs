//! candump `-l` log lines. The format lives in `fleet_hal::candump` with the
//! replay source and the writer; this re-export keeps decoder callers' paths.

pub use fleet_hal::candump::{format_line, parse_line, CandumpError, LoggedFrame};
