//! Fault injection for the `fault_*` tests: the profile that sets how hard they
//! push (`FLEET_FAULT_PROFILE=long` from `tests/run --long`), a TCP proxy that
//! misbehaves on command between an agent and a server, a small file system to
//! fill, and a wall clock that jumps under a real process.

pub mod fake_clock;
pub mod proxy;
pub mod small_fs;

/// How many faults a suite injects: the fast profile runs in CI, the long one by
/// hand (`tests/run --long`), with the same tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Fast,
    Long,
}

impl Profile {
    /// `FLEET_FAULT_PROFILE=long` selects the long profile; anything else, or
    /// nothing, the fast one.
    pub fn from_env() -> Profile {
        match std::env::var("FLEET_FAULT_PROFILE").as_deref() {
            Ok("long") => Profile::Long,
            _ => Profile::Fast,
        }
    }

    /// `fast` in the fast profile, `long` in the long one.
    pub fn pick<T>(self, fast: T, long: T) -> T {
        match self {
            Profile::Fast => fast,
            Profile::Long => long,
        }
    }
}

/// Whether a test whose peer or privilege is missing must fail rather than skip:
/// in CI (`CI=true`) nothing is allowed to skip quietly.
pub fn must_not_skip() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}
