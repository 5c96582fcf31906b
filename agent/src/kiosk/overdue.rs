//! Overdue returns and no-shows, flagged from the snapshot and the custody
//! documents the kiosk holds, so they are raised offline too. Pure: each check
//! returns the flags not raised before; the caller records them as events and
//! remembers their keys so each is raised once.

use fleet_protocol::custody::{self, CustodyAction, CustodyOp};
use fleet_protocol::snapshot::Snapshot;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "flag", rename_all = "snake_case")]
pub enum Flag {
    /// Checked out and not back by its due time.
    Overdue {
        asset: Uuid,
        badge: Uuid,
        event_id: Uuid,
        checked_out_ms: i64,
        due_ms: i64,
    },
    /// A reservation whose driver has not come within the grace time.
    NoShow {
        reservation: Uuid,
        vehicle: Uuid,
        badge: Uuid,
        start_ms: i64,
    },
}

impl Flag {
    /// What makes a flag the same flag on the next check.
    pub fn key(&self) -> String {
        match self {
            Flag::Overdue { event_id, .. } => format!("overdue/{event_id}"),
            Flag::NoShow { reservation, .. } => format!("no_show/{reservation}"),
        }
    }
}

/// When the check-out `op` is due back: the end of the reservation it
/// fulfilled, or the policy's longest check-out after it began.
pub fn due_ms(snap: &Snapshot, asset: Uuid, op: &CustodyOp) -> i64 {
    let grace = i64::from(snap.policy.grace_minutes) * MINUTE_MS;
    snap.reservations
        .iter()
        .find(|r| {
            r.vehicle == asset
                && r.badge == op.badge
                && r.start_ms - grace <= op.at_ms
                && op.at_ms < r.end_ms
        })
        .map(|r| r.end_ms)
        .unwrap_or(op.at_ms + i64::from(snap.policy.max_checkout_hours) * HOUR_MS)
}

/// The flags due at `now_ms` that are not in `raised`.
pub fn check(
    snap: &Snapshot,
    ops: &BTreeMap<Uuid, Vec<CustodyOp>>,
    now_ms: i64,
    raised: &BTreeSet<String>,
) -> Vec<Flag> {
    let mut out = Vec::new();
    for (asset, asset_ops) in ops {
        if let Some(holder) = custody::fold(asset_ops).holder {
            let due = due_ms(snap, *asset, &holder);
            if now_ms > due {
                out.push(Flag::Overdue {
                    asset: *asset,
                    badge: holder.badge,
                    event_id: holder.event_id,
                    checked_out_ms: holder.at_ms,
                    due_ms: due,
                });
            }
        }
    }
    let grace = i64::from(snap.policy.grace_minutes) * MINUTE_MS;
    for r in &snap.reservations {
        if now_ms <= r.start_ms + grace {
            continue;
        }
        let came = ops.get(&r.vehicle).is_some_and(|v| {
            v.iter().any(|op| {
                op.op == CustodyAction::CheckOut
                    && op.badge == r.badge
                    && r.start_ms - grace <= op.at_ms
                    && op.at_ms < r.end_ms
            })
        });
        if !came {
            out.push(Flag::NoShow {
                reservation: r.id,
                vehicle: r.vehicle,
                badge: r.badge,
                start_ms: r.start_ms,
            });
        }
    }
    out.retain(|f| !raised.contains(&f.key()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kiosk::policy::tests::{Yard, NOW};

    fn out(y: &Yard, at_ms: i64, ev: u128) -> CustodyOp {
        CustodyOp {
            op: CustodyAction::CheckOut,
            kiosk: "k".into(),
            badge: y.ann,
            at_ms,
            event_id: Uuid::from_u128(ev),
        }
    }

    #[test]
    fn a_reserved_check_out_is_overdue_after_the_reservation_ends_and_flagged_once() {
        let y = Yard::new();
        let ops = BTreeMap::from([(y.van, vec![out(&y, NOW, 1)])]);
        let end = NOW + 2 * HOUR_MS;
        assert!(check(&y.snap, &ops, end, &BTreeSet::new()).is_empty());
        let flags = check(&y.snap, &ops, end + 1, &BTreeSet::new());
        assert_eq!(
            flags,
            vec![Flag::Overdue {
                asset: y.van,
                badge: y.ann,
                event_id: Uuid::from_u128(1),
                checked_out_ms: NOW,
                due_ms: end
            }]
        );
        let raised: BTreeSet<_> = flags.iter().map(Flag::key).collect();
        assert!(check(&y.snap, &ops, end + HOUR_MS, &raised).is_empty());
    }

    #[test]
    fn a_walk_up_is_due_after_the_longest_check_out_and_a_returned_one_never() {
        let y = Yard::new();
        let mut ops = BTreeMap::from([(y.car, vec![out(&y, NOW, 2)])]);
        // The van (reserved until NOW + 2 h) is overdue long before the car.
        ops.insert(y.van, vec![out(&y, NOW, 3)]);
        let car_overdue = |flags: Vec<Flag>| {
            flags
                .iter()
                .any(|f| matches!(f, Flag::Overdue { asset, .. } if *asset == y.car))
        };
        let due = NOW + 8 * HOUR_MS;
        assert!(!car_overdue(check(&y.snap, &ops, due, &BTreeSet::new())));
        assert!(car_overdue(check(&y.snap, &ops, due + 1, &BTreeSet::new())));
        let mut back = out(&y, NOW + HOUR_MS, 4);
        back.op = CustodyAction::CheckIn;
        ops.get_mut(&y.car).expect("car").push(back);
        assert!(!car_overdue(check(
            &y.snap,
            &ops,
            due + 1,
            &BTreeSet::new()
        )));
    }

    #[test]
    fn a_driver_who_does_not_come_within_the_grace_time_is_a_no_show() {
        let y = Yard::new();
        let start = NOW - 10 * MINUTE_MS;
        let ops = BTreeMap::new();
        assert!(check(&y.snap, &ops, start + 15 * MINUTE_MS, &BTreeSet::new()).is_empty());
        assert_eq!(
            check(&y.snap, &ops, start + 15 * MINUTE_MS + 1, &BTreeSet::new()),
            vec![Flag::NoShow {
                reservation: y.res,
                vehicle: y.van,
                badge: y.ann,
                start_ms: start
            }]
        );
        let came = BTreeMap::from([(y.van, vec![out(&y, start + 20 * MINUTE_MS, 5)])]);
        assert!(
            !check(&y.snap, &came, start + 30 * MINUTE_MS, &BTreeSet::new())
                .iter()
                .any(|f| matches!(f, Flag::NoShow { .. }))
        );
    }
}
