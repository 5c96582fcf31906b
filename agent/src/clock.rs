//! Where the agent reads time: a boot id, a monotonic clock that never steps, and
//! the wall clock, which may be wrong on a gateway without an RTC.

use fleet_protocol::BootId;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + 'static {
    fn boot_id(&self) -> BootId;
    /// Milliseconds since boot; never goes backwards within one boot.
    fn mono_ms(&self) -> u64;
    /// The wall clock as the system reports it, Unix milliseconds.
    fn wall_ms(&self) -> i64;
}

pub type SharedClock = Arc<dyn Clock>;

/// The real clocks: `CLOCK_BOOTTIME` (counts suspend too) and the kernel's boot id.
pub struct SystemClock {
    boot_id: BootId,
}

impl SystemClock {
    pub fn new() -> Self {
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .and_then(|s| BootId::parse(&s))
            .unwrap_or_else(BootId::random);
        Self { boot_id }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn boot_id(&self) -> BootId {
        self.boot_id
    }

    fn mono_ms(&self) -> u64 {
        let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
    }

    fn wall_ms(&self) -> i64 {
        wall_now_ms()
    }
}

pub fn wall_now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// A clock for simulations and tests: starts at a given boot time and wall time and
/// runs `speed` times faster than real time. The wall clock can be set to anything
/// (1970, a jump of hours) to exercise rebasing.
pub struct SimClock {
    boot_id: BootId,
    start: Instant,
    mono_start_ms: u64,
    speed: f64,
    wall_offset_ms: AtomicI64,
}

impl SimClock {
    pub fn new(boot_id: BootId, mono_start_ms: u64, wall_start_ms: i64, speed: f64) -> Self {
        Self {
            boot_id,
            start: Instant::now(),
            mono_start_ms,
            speed: speed.max(0.001),
            wall_offset_ms: AtomicI64::new(wall_start_ms - mono_start_ms as i64),
        }
    }

    /// Step the wall clock by `delta_ms`, as an NTP jump or a bad RTC would.
    pub fn jump_wall(&self, delta_ms: i64) {
        self.wall_offset_ms.fetch_add(delta_ms, Ordering::Relaxed);
    }

    pub fn speed(&self) -> f64 {
        self.speed
    }
}

impl Clock for SimClock {
    fn boot_id(&self) -> BootId {
        self.boot_id
    }

    fn mono_ms(&self) -> u64 {
        self.mono_start_ms + (self.start.elapsed().as_secs_f64() * 1000.0 * self.speed) as u64
    }

    fn wall_ms(&self) -> i64 {
        self.mono_ms() as i64 + self.wall_offset_ms.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_monotonic_clock_does_not_go_backwards() {
        let c = SystemClock::new();
        let a = c.mono_ms();
        let b = c.mono_ms();
        assert!(b >= a);
    }

    #[test]
    fn sim_clock_wall_jumps_leave_monotonic_time_alone() {
        let c = SimClock::new(BootId::random(), 1_000, 0, 1.0);
        let m = c.mono_ms();
        c.jump_wall(-3_600_000);
        assert!(c.mono_ms() >= m);
        assert!(c.wall_ms() < 0);
    }
}
