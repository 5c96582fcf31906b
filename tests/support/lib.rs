//! Helpers shared by the workspace-level tests and benchmarks: real processes of
//! the two binaries with kill-on-drop guards, the operator API over loopback, and
//! a believable GPS drive for the wire-size benchmark.

pub mod drive;
pub mod process;
pub mod services;
