//! Time from GPS, and telling when the wall clock cannot be right. Pure.
//!
//! A fix with a date ties this boot's monotonic clock to true time: a time anchor
//! with source GPS, which outranks the server's. The first one is stored at once
//! with a wide uncertainty (a receiver may report time before it has the leap
//! second count); once fixes have agreed with it for a while, a tighter one
//! replaces it. A wall clock that reads earlier than this agent's build, or more
//! than a day away from GPS time, is wrong: the boot is marked with a
//! `clock_implausible` event so its wall times are never trusted unmarked.

use fleet_protocol::{BootId, Kind, TimeAnchor, TimeSource};

/// Recorded once per boot whose wall clock is implausible; travels by name.
pub const CLOCK_IMPLAUSIBLE: Kind = Kind::known("clock_implausible");

const fn parse_u64(s: &str) -> u64 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut n = 0u64;
    while i < b.len() {
        n = n * 10 + (b[i] - b'0') as u64;
        i += 1;
    }
    n
}

/// When this agent was built, Unix milliseconds (from `build.rs`).
pub const BUILD_UNIX_MS: i64 = parse_u64(env!("FLEET_BUILD_UNIX_S")) as i64 * 1000;

/// A wall clock more than this far from true time is wrong, not drifting.
pub const IMPLAUSIBLE_SKEW_MS: i64 = 24 * 3_600_000;
/// The uncertainty of the first GPS anchor of a boot.
pub const FIRST_UNCERTAINTY_MS: u32 = 2_000;
/// The uncertainty once fixes have agreed with it for [`SETTLE_MS`]: NMEA arrives
/// within a second of the epoch it describes.
pub const SETTLED_UNCERTAINTY_MS: u32 = 1_000;
pub const SETTLE_MS: u64 = 10 * 60_000;
/// GPS time that strays this far from the stored anchor (a receiver that had the
/// wrong time at first) is stored again.
pub const DRIFT_BOUND_MS: i64 = 2_000;

/// Why a wall clock reading is not to be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implausible {
    /// Earlier than the agent's own build: an RTC-less board booting in 1970.
    BeforeBuild,
    /// More than a day away from GPS time.
    FarFromGps,
}

impl Implausible {
    pub fn as_str(self) -> &'static str {
        match self {
            Implausible::BeforeBuild => "before_build",
            Implausible::FarFromGps => "far_from_gps",
        }
    }
}

/// Check a wall clock reading against the build date and, when known, true time.
pub fn check_wall(wall_ms: i64, build_ms: i64, true_ms: Option<i64>) -> Option<Implausible> {
    if let Some(t) = true_ms {
        if (wall_ms - t).abs() > IMPLAUSIBLE_SKEW_MS {
            return Some(Implausible::FarFromGps);
        }
        return None;
    }
    (wall_ms < build_ms).then_some(Implausible::BeforeBuild)
}

/// Decides which GPS times become anchors for one boot.
#[derive(Debug, Clone)]
pub struct GpsAnchoring {
    boot: BootId,
    build_ms: i64,
    stored: Option<TimeAnchor>,
    /// GPS times that were no later than the build (week rollover, no date yet).
    pub rejected: u64,
}

impl GpsAnchoring {
    pub fn new(boot: BootId, build_ms: i64) -> Self {
        Self {
            boot,
            build_ms,
            stored: None,
            rejected: 0,
        }
    }

    pub fn anchor(&self) -> Option<&TimeAnchor> {
        self.stored.as_ref()
    }

    /// A fix said UTC was `utc_ms` at `mono_ms`: the anchor to store, if any.
    pub fn offer(&mut self, mono_ms: u64, utc_ms: i64) -> Option<TimeAnchor> {
        // A receiver after a GPS week rollover reports 1999 or 2019; one that has
        // no almanac yet may report its firmware date. Neither is now.
        if utc_ms < self.build_ms {
            self.rejected += 1;
            return None;
        }
        let candidate = |uncertainty_ms| TimeAnchor {
            boot_id: self.boot,
            mono_ms,
            true_ms: utc_ms,
            source: TimeSource::Gps,
            uncertainty_ms,
        };
        let next = match &self.stored {
            None => candidate(FIRST_UNCERTAINTY_MS),
            Some(a) => {
                let drift = (a.rebase(mono_ms) - utc_ms).abs();
                if drift > DRIFT_BOUND_MS {
                    tracing::warn!(
                        drift_ms = drift,
                        "GPS time moved away from this boot's anchor; anchoring again"
                    );
                    candidate(a.uncertainty_ms.min(FIRST_UNCERTAINTY_MS))
                } else if a.uncertainty_ms > SETTLED_UNCERTAINTY_MS
                    && mono_ms.saturating_sub(a.mono_ms) >= SETTLE_MS
                {
                    candidate(SETTLED_UNCERTAINTY_MS)
                } else {
                    return None;
                }
            }
        };
        self.stored = Some(next);
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUILD: i64 = 1_760_000_000_000;

    #[test]
    fn the_build_time_is_embedded_and_recent() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as i64;
        // After 2025-01-01, and not later than now.
        assert!(
            (1_735_689_600_000..=now).contains(&BUILD_UNIX_MS),
            "{BUILD_UNIX_MS}"
        );
    }

    #[test]
    fn first_fix_anchors_then_a_settled_one_tightens_and_jitter_is_ignored() {
        let mut g = GpsAnchoring::new(BootId::random(), BUILD);
        let t0 = BUILD + 86_400_000;
        let a = g.offer(5_000, t0).expect("first fix anchors");
        assert_eq!(
            (a.source, a.uncertainty_ms),
            (TimeSource::Gps, FIRST_UNCERTAINTY_MS)
        );
        assert_eq!(g.offer(6_000, t0 + 1_300), None, "300 ms jitter");
        let later = 5_000 + SETTLE_MS;
        let b = g.offer(later, t0 + SETTLE_MS as i64).expect("settled");
        assert_eq!(b.uncertainty_ms, SETTLED_UNCERTAINTY_MS);
        assert!(crate::sync::anchors::better(&b, &a));
        assert_eq!(
            g.offer(later + 60_000, t0 + SETTLE_MS as i64 + 60_000),
            None
        );
    }

    #[test]
    fn gps_time_before_the_build_never_anchors() {
        let mut g = GpsAnchoring::new(BootId::random(), BUILD);
        // 1999-08-22, a week-rollover date.
        assert_eq!(g.offer(1_000, 935_280_000_000), None);
        assert_eq!(g.rejected, 1);
        assert!(g.anchor().is_none());
    }

    #[test]
    fn a_jump_in_gps_time_anchors_again() {
        let mut g = GpsAnchoring::new(BootId::random(), BUILD);
        g.offer(0, BUILD + 10_000).expect("first");
        let a = g
            .offer(1_000, BUILD + 10_000 + 1_000 + 18_000)
            .expect("jump of 18 s");
        assert_eq!(a.rebase(1_000), BUILD + 29_000);
    }

    #[test]
    fn wall_clocks_before_the_build_or_a_day_off_gps_are_implausible() {
        assert_eq!(check_wall(0, BUILD, None), Some(Implausible::BeforeBuild));
        assert_eq!(check_wall(BUILD + 5, BUILD, None), None);
        let gps = BUILD + 1_000_000;
        assert_eq!(check_wall(gps + 3_600_000, BUILD, Some(gps)), None);
        assert_eq!(
            check_wall(gps + 2 * IMPLAUSIBLE_SKEW_MS, BUILD, Some(gps)),
            Some(Implausible::FarFromGps)
        );
        assert_eq!(
            check_wall(BUILD + 10, BUILD, Some(gps + 5 * IMPLAUSIBLE_SKEW_MS)),
            Some(Implausible::FarFromGps)
        );
    }
}
