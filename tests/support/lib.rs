//! Helpers shared by the workspace-level tests and benchmarks: real processes of
//! the two binaries with kill-on-drop guards, the operator API over loopback, and
//! a believable GPS drive for the wire-size benchmark.

pub mod drive;
/// Fault injection for the `fault_*` tests (tests/faults/).
#[path = "../faults/mod.rs"]
pub mod faults;
pub mod process;
pub mod services;
