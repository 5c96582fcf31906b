//! Staged rollout of a device group's config: which version each device is
//! offered, and when a rollout moves to its next stage, completes or aborts.
//!
//! Pure: values in, decisions out. The HTTP layer feeds it the group's members as
//! stored and applies the decision with a compare-and-set on the stored state.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How a version rolls out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Percent of the group per stage, ascending, the last one 100.
    pub stages: Vec<u8>,
    /// A stage lasts at least this long before the next starts.
    pub min_soak_ms: i64,
    /// Abort when more than this share (0..=1) of the devices offered the version
    /// failed to apply it or stopped syncing.
    pub failure_threshold: f64,
    /// A device offered the version and not seen for this long counts as failed.
    pub silent_after_ms: i64,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            stages: vec![10, 100],
            min_soak_ms: 10 * 60_000,
            failure_threshold: 0.2,
            silent_after_ms: 15 * 60_000,
        }
    }
}

impl Plan {
    /// What is wrong with the plan, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if self.stages.is_empty() || self.stages.len() > 10 {
            errs.push("stages must list 1 to 10 percentages".into());
        }
        if self.stages.windows(2).any(|w| w[0] >= w[1]) {
            errs.push("stages must be strictly ascending".into());
        }
        if self.stages.first().is_some_and(|s| *s == 0) {
            errs.push("a stage of 0 % would offer the version to nobody".into());
        }
        if self.stages.last().is_some_and(|s| *s != 100) {
            errs.push("the last stage must be 100 %".into());
        }
        if !(0..=30 * 86_400_000).contains(&self.min_soak_ms) {
            errs.push("min_soak_ms must be between 0 and 30 days".into());
        }
        if !(self.failure_threshold.is_finite() && (0.0..=1.0).contains(&self.failure_threshold)) {
            errs.push("failure_threshold must be between 0 and 1".into());
        }
        if !(1_000..=30 * 86_400_000).contains(&self.silent_after_ms) {
            errs.push("silent_after_ms must be between 1 second and 30 days".into());
        }
        errs
    }
}

/// Where a rollout is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RolloutState {
    Rolling {
        stage: usize,
        stage_started_ms: i64,
    },
    Completed,
    Aborted,
    /// A newer version replaced it before it finished.
    Superseded,
}

impl RolloutState {
    pub fn name(&self) -> &'static str {
        match self {
            RolloutState::Rolling { .. } => "rolling",
            RolloutState::Completed => "completed",
            RolloutState::Aborted => "aborted",
            RolloutState::Superseded => "superseded",
        }
    }
}

/// The device's place in 0..100, stable across versions and restarts, so the same
/// devices go first every time.
pub fn bucket(device: Uuid) -> u8 {
    use sha2::Digest;
    let h = sha2::Sha256::digest(device.as_bytes());
    (u16::from_be_bytes([h[0], h[1]]) % 100) as u8
}

/// Whether `device` is in a stage reaching `percent` of the group.
pub fn in_stage(device: Uuid, percent: u8) -> bool {
    bucket(device) < percent
}

/// The version a device of the group should run (0: none).
pub fn offered_version(
    version: u32,
    previous: u32,
    plan: &Plan,
    state: &RolloutState,
    device: Uuid,
) -> u32 {
    match state {
        RolloutState::Completed | RolloutState::Superseded => version,
        RolloutState::Aborted => previous,
        RolloutState::Rolling { stage, .. } => {
            let percent = plan.stages.get(*stage).copied().unwrap_or(100);
            if in_stage(device, percent) {
                version
            } else {
                previous
            }
        }
    }
}

/// One member of the group as the check sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub device_id: Uuid,
    pub last_seen_ms: Option<i64>,
    pub applied_version: u32,
    pub failed_version: Option<u32>,
}

/// The share of offered devices that failed, and how many are still pending.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageHealth {
    pub offered: usize,
    pub applied: usize,
    pub failed: usize,
    pub silent: usize,
    /// Neither applied, failed nor silent yet.
    pub pending: usize,
}

impl StageHealth {
    pub fn failure_share(&self) -> f64 {
        if self.offered == 0 {
            0.0
        } else {
            (self.failed + self.silent) as f64 / self.offered as f64
        }
    }
}

pub fn stage_health(
    version: u32,
    plan: &Plan,
    stage: usize,
    members: &[Member],
    now_ms: i64,
) -> StageHealth {
    let percent = plan.stages.get(stage).copied().unwrap_or(100);
    let mut h = StageHealth {
        offered: 0,
        applied: 0,
        failed: 0,
        silent: 0,
        pending: 0,
    };
    for m in members.iter().filter(|m| in_stage(m.device_id, percent)) {
        h.offered += 1;
        if m.failed_version == Some(version) {
            h.failed += 1;
        } else if m.applied_version == version {
            h.applied += 1;
        } else if m
            .last_seen_ms
            .is_none_or(|seen| now_ms - seen > plan.silent_after_ms)
        {
            h.silent += 1;
        } else {
            h.pending += 1;
        }
    }
    h
}

/// What to do with a rollout now.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Stay,
    Advance { stage: usize },
    Complete,
    Abort { reason: String },
}

/// The next step of a rolling rollout; `Stay` for one that is not rolling.
pub fn evaluate(
    version: u32,
    plan: &Plan,
    state: &RolloutState,
    members: &[Member],
    now_ms: i64,
) -> Decision {
    let RolloutState::Rolling {
        stage,
        stage_started_ms,
    } = *state
    else {
        return Decision::Stay;
    };
    let h = stage_health(version, plan, stage, members, now_ms);
    if h.offered > 0 && h.failure_share() > plan.failure_threshold {
        return Decision::Abort {
            reason: format!(
                "{} of {} devices in stage {} ({} %) failed to apply version {version} or stopped syncing ({} failed, {} silent), above the threshold of {:.0} %",
                h.failed + h.silent,
                h.offered,
                stage + 1,
                plan.stages.get(stage).copied().unwrap_or(100),
                h.failed,
                h.silent,
                plan.failure_threshold * 100.0
            ),
        };
    }
    if now_ms - stage_started_ms < plan.min_soak_ms || h.pending > 0 {
        return Decision::Stay;
    }
    if stage + 1 >= plan.stages.len() {
        Decision::Complete
    } else {
        Decision::Advance { stage: stage + 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            stages: vec![30, 100],
            min_soak_ms: 60_000,
            failure_threshold: 0.25,
            silent_after_ms: 120_000,
        }
    }

    fn members(n: usize) -> Vec<Member> {
        (0..n)
            .map(|i| Member {
                device_id: Uuid::from_u128(0x1000 + i as u128),
                last_seen_ms: Some(0),
                applied_version: 1,
                failed_version: None,
            })
            .collect()
    }

    fn rolling(stage: usize) -> RolloutState {
        RolloutState::Rolling {
            stage,
            stage_started_ms: 0,
        }
    }

    #[test]
    fn buckets_are_stable_and_spread_over_the_group() {
        let ids: Vec<Uuid> = (0..1000u128).map(Uuid::from_u128).collect();
        let first: Vec<u8> = ids.iter().map(|d| bucket(*d)).collect();
        let again: Vec<u8> = ids.iter().map(|d| bucket(*d)).collect();
        assert_eq!(first, again);
        let in_ten = ids.iter().filter(|d| in_stage(**d, 10)).count();
        assert!((60..=140).contains(&in_ten), "{in_ten} of 1000 in 10 %");
        assert!(ids.iter().all(|d| in_stage(*d, 100)));
        assert!(!ids.iter().any(|d| in_stage(*d, 0)));
    }

    #[test]
    fn devices_outside_the_stage_keep_the_previous_version_until_completion() {
        let p = plan();
        for d in members(50) {
            let offered = offered_version(2, 1, &p, &rolling(0), d.device_id);
            assert_eq!(offered, if in_stage(d.device_id, 30) { 2 } else { 1 });
            assert_eq!(offered_version(2, 1, &p, &rolling(1), d.device_id), 2);
            assert_eq!(
                offered_version(2, 1, &p, &RolloutState::Completed, d.device_id),
                2
            );
            assert_eq!(
                offered_version(2, 1, &p, &RolloutState::Aborted, d.device_id),
                1
            );
        }
    }

    #[test]
    fn a_stage_waits_for_its_soak_time_and_for_every_device() {
        let p = plan();
        let mut group = members(20);
        // Nobody has applied yet: pending, stay even after the soak.
        assert_eq!(evaluate(2, &p, &rolling(0), &group, 70_000), Decision::Stay);
        for m in group.iter_mut() {
            if in_stage(m.device_id, 30) {
                m.applied_version = 2;
            }
        }
        assert_eq!(
            evaluate(2, &p, &rolling(0), &group, 30_000),
            Decision::Stay,
            "still soaking"
        );
        assert_eq!(
            evaluate(2, &p, &rolling(0), &group, 60_000),
            Decision::Advance { stage: 1 }
        );
        for m in group.iter_mut() {
            m.applied_version = 2;
        }
        assert_eq!(
            evaluate(2, &p, &rolling(1), &group, 60_000),
            Decision::Complete
        );
    }

    #[test]
    fn failures_above_the_threshold_abort_at_once() {
        let p = plan();
        let mut group = members(40);
        let staged: Vec<usize> = (0..group.len())
            .filter(|i| in_stage(group[*i].device_id, 30))
            .collect();
        assert!(staged.len() >= 4, "{} staged", staged.len());
        // One failure of several is within 25 %.
        group[staged[0]].failed_version = Some(2);
        assert_eq!(evaluate(2, &p, &rolling(0), &group, 1_000), Decision::Stay);
        // A failure for another version does not count against this one.
        for &i in &staged[1..] {
            group[i].failed_version = Some(7);
        }
        assert_eq!(evaluate(2, &p, &rolling(0), &group, 1_000), Decision::Stay);
        for &i in &staged[1..] {
            group[i].failed_version = Some(2);
        }
        match evaluate(2, &p, &rolling(0), &group, 1_000) {
            Decision::Abort { reason } => assert!(reason.contains("failed"), "{reason}"),
            other => panic!("expected an abort, got {other:?}"),
        }
    }

    #[test]
    fn devices_that_stop_syncing_count_as_failures() {
        let p = plan();
        let group = members(40);
        // All last seen at 0; at 200 s every staged device is silent.
        match evaluate(2, &p, &rolling(0), &group, 200_000) {
            Decision::Abort { reason } => assert!(reason.contains("silent"), "{reason}"),
            other => panic!("expected an abort, got {other:?}"),
        }
    }

    #[test]
    fn finished_rollouts_stay_put_and_bad_plans_are_named() {
        let p = plan();
        assert_eq!(
            evaluate(2, &p, &RolloutState::Aborted, &members(5), 0),
            Decision::Stay
        );
        let bad = Plan {
            stages: vec![50, 20],
            min_soak_ms: -1,
            failure_threshold: 1.5,
            silent_after_ms: 0,
        };
        let errs = bad.problems().join("\n");
        for needle in [
            "ascending",
            "last stage must be 100",
            "min_soak_ms",
            "failure_threshold",
            "silent_after_ms",
        ] {
            assert!(errs.contains(needle), "{needle} in {errs}");
        }
        assert!(Plan::default().problems().is_empty());
    }
}
