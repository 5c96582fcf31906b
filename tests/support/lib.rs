//! Helpers shared by the workspace-level tests and benchmarks: real processes of
//! the two binaries with kill-on-drop guards, the operator API over loopback
//! (of such a process, or of the router served in the test process), and a
//! believable GPS drive for the wire-size benchmark.

pub mod api_server;
pub mod drive;
/// Fault injection for the `fault_*` tests (tests/faults/).
#[path = "../faults/mod.rs"]
pub mod faults;
/// The load generator behind `fleet-load` and the `load_*` tests (tests/load/).
#[path = "../load/mod.rs"]
pub mod load;
pub mod process;
pub mod services;
