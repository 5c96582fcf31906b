//! Hybrid logical clock: wall-clock milliseconds in the high 48 bits, a logical
//! counter in the low 16, so that ordering survives clocks that stall or step back.

use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Hlc(pub u64);

const LOGICAL_BITS: u32 = 16;
const LOGICAL_MASK: u64 = (1 << LOGICAL_BITS) - 1;
const MAX_PHYSICAL: u64 = (1 << (64 - LOGICAL_BITS)) - 1;

impl Hlc {
    pub fn new(physical_ms: u64, logical: u16) -> Self {
        Hlc((physical_ms.min(MAX_PHYSICAL) << LOGICAL_BITS) | u64::from(logical))
    }

    pub fn physical_ms(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    pub fn logical(self) -> u16 {
        (self.0 & LOGICAL_MASK) as u16
    }
}

/// The clock state of one node. Pure: the caller passes in the wall time it read.
#[derive(Debug, Clone, Default)]
pub struct HlcClock {
    last: Hlc,
}

impl HlcClock {
    /// Resume after a restart from the largest timestamp this node ever issued.
    pub fn resume(last: Hlc) -> Self {
        Self { last }
    }

    pub fn last(&self) -> Hlc {
        self.last
    }

    /// A timestamp for a local event, strictly greater than every earlier one.
    pub fn tick(&mut self, wall_ms: i64) -> Hlc {
        let wall = wall_ms.max(0) as u64;
        let next = if wall > self.last.physical_ms() {
            Hlc::new(wall, 0)
        } else {
            self.bump(self.last)
        };
        self.last = next;
        next
    }

    /// Merge a timestamp received from a peer, then tick.
    pub fn observe(&mut self, remote: Hlc, wall_ms: i64) -> Hlc {
        if remote > self.last {
            self.last = remote;
        }
        self.tick(wall_ms)
    }

    fn bump(&self, from: Hlc) -> Hlc {
        if from.logical() == u16::MAX {
            // Logical space exhausted within one millisecond: borrow the next one.
            Hlc::new(from.physical_ms() + 1, 0)
        } else {
            Hlc(from.0 + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_strictly_increasing_when_the_wall_clock_steps_back() {
        let mut c = HlcClock::default();
        let a = c.tick(10_000);
        let b = c.tick(5_000);
        let d = c.tick(10_000);
        assert!(a < b && b < d);
        assert_eq!(b.physical_ms(), 10_000);
    }

    #[test]
    fn observing_a_future_peer_moves_the_clock_past_it() {
        let mut c = HlcClock::default();
        c.tick(1_000);
        let remote = Hlc::new(9_000, 7);
        let t = c.observe(remote, 1_001);
        assert!(t > remote);
    }

    #[test]
    fn a_clock_booted_at_1970_still_orders_events() {
        let mut c = HlcClock::default();
        let a = c.tick(0);
        let b = c.tick(-5);
        assert!(b > a);
    }

    #[test]
    fn logical_overflow_borrows_the_next_millisecond() {
        let mut c = HlcClock::resume(Hlc::new(100, u16::MAX));
        let t = c.tick(100);
        assert_eq!((t.physical_ms(), t.logical()), (101, 0));
    }
}
