//! The fleet edge agent: sources -> decoders -> rules -> local store -> sync.
//!
//! Pure logic (decoders, rules, batch assembly) does no I/O; the async layer in
//! `daemon`, `pipeline` and `sync` only moves bytes between them.

pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod decode;
pub mod identity;
pub mod kiosk;
pub mod metrics;
pub mod pipeline;
pub mod power;
pub mod rules;
pub mod store;
pub mod sync;
pub mod systemd;
