//! Who holds an asset: the custody document and its fold.
//!
//! Each asset has one automerge document, `custody/<asset uuid>`, synced like any
//! other document (`/sync/v1/docs/…`). Its root map holds a list `ops`; a kiosk
//! appends one map per check-out or check-in:
//! `{op: "check_out"|"check_in", kiosk, badge, at_ms, event_id}` (`badge` and
//! `event_id` as uuid strings, `at_ms` an integer).
//!
//! Two kiosks that each start the document offline must share one `ops` list, or
//! one list would win the key and the other's operations would vanish. So, as
//! with vehicle notes (`crate::docs`), every side starts a new custody document
//! from the same first change: actor [`CUSTODY_BASE_ACTOR`], the single operation
//! `put_object(ROOT, "ops", List)`, commit time 0, no message; then it switches
//! to its own actor.
//!
//! [`fold`] is the one reading of the list both sides use: it sorts operations
//! by `(at_ms, kiosk, event_id)`, so every replica that has the same operations
//! reaches the same holder and the same conflicts, whatever order they merged in.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const CUSTODY_PREFIX: &str = "custody/";
pub const OPS_KEY: &str = "ops";
pub const CUSTODY_BASE_ACTOR: [u8; 16] = *b"fleet-custody-0\0";
/// Field names of one operation in the `ops` list.
pub const FIELD_OP: &str = "op";
pub const FIELD_KIOSK: &str = "kiosk";
pub const FIELD_BADGE: &str = "badge";
pub const FIELD_AT_MS: &str = "at_ms";
pub const FIELD_EVENT_ID: &str = "event_id";

pub fn custody_doc_id(asset: Uuid) -> String {
    format!("{CUSTODY_PREFIX}{asset}")
}

/// The asset a custody doc id names, or `None` for any other document.
pub fn asset_of_doc_id(doc_id: &str) -> Option<Uuid> {
    let rest = doc_id.strip_prefix(CUSTODY_PREFIX)?;
    let id = Uuid::parse_str(rest).ok()?;
    // Only the canonical spelling names the doc, so one asset has one doc.
    (custody_doc_id(id) == doc_id).then_some(id)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustodyAction {
    CheckOut,
    CheckIn,
}

impl CustodyAction {
    pub fn as_str(self) -> &'static str {
        match self {
            CustodyAction::CheckOut => "check_out",
            CustodyAction::CheckIn => "check_in",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "check_out" => Some(CustodyAction::CheckOut),
            "check_in" => Some(CustodyAction::CheckIn),
            _ => None,
        }
    }
}

/// One entry of a custody document's `ops` list.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CustodyOp {
    pub op: CustodyAction,
    /// The kiosk (device) that recorded it.
    pub kiosk: String,
    /// The driver's badge label id.
    pub badge: Uuid,
    pub at_ms: i64,
    pub event_id: Uuid,
}

impl CustodyOp {
    fn sort_key(&self) -> (i64, &str, Uuid) {
        (self.at_ms, self.kiosk.as_str(), self.event_id)
    }
}

/// Two check-outs with no check-in between them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustodyConflict {
    /// The check-out that was in force.
    pub first: CustodyOp,
    /// The check-out that came after it with no check-in between.
    pub second: CustodyOp,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Custody {
    /// The check-out in force: who holds the asset, from which kiosk, since when.
    /// `None` when the asset is in.
    pub holder: Option<CustodyOp>,
    /// Every conflict, in order.
    pub conflicts: Vec<CustodyConflict>,
    /// Check-ins with nothing checked out: kept for the record, not a conflict.
    pub unmatched_check_ins: Vec<CustodyOp>,
    /// Operations folded (duplicates of one event id counted once).
    pub ops: usize,
}

/// The custody of one asset from its operations, in any order.
///
/// After a conflict the later check-out holds the asset: it is the most recent
/// thing a kiosk saw. The same event id twice counts once.
pub fn fold(ops: &[CustodyOp]) -> Custody {
    let mut sorted: Vec<&CustodyOp> = ops.iter().collect();
    sorted.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()).then(a.op.cmp(&b.op)));
    let mut seen = std::collections::HashSet::new();
    let mut out = Custody::default();
    for op in sorted {
        if !seen.insert(op.event_id) {
            continue;
        }
        out.ops += 1;
        match op.op {
            CustodyAction::CheckOut => {
                if let Some(first) = out.holder.take() {
                    out.conflicts.push(CustodyConflict {
                        first,
                        second: op.clone(),
                    });
                }
                out.holder = Some(op.clone());
            }
            CustodyAction::CheckIn => {
                if out.holder.take().is_none() {
                    out.unmatched_check_ins.push(op.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn op(op: CustodyAction, kiosk: &str, badge: u128, at_ms: i64, ev: u128) -> CustodyOp {
        CustodyOp {
            op,
            kiosk: kiosk.into(),
            badge: Uuid::from_u128(badge),
            at_ms,
            event_id: Uuid::from_u128(ev),
        }
    }

    use CustodyAction::{CheckIn, CheckOut};

    #[test]
    fn an_orderly_out_and_in_has_no_holder_and_no_conflict() {
        let c = fold(&[op(CheckIn, "k1", 1, 20, 2), op(CheckOut, "k1", 1, 10, 1)]);
        assert_eq!(c.holder, None);
        assert!(c.conflicts.is_empty());
        assert!(c.unmatched_check_ins.is_empty());
        assert_eq!(c.ops, 2);
    }

    #[test]
    fn two_offline_check_outs_are_one_conflict_and_the_later_one_holds() {
        let a = op(CheckOut, "kiosk-a", 1, 100, 1);
        let b = op(CheckOut, "kiosk-b", 2, 150, 2);
        let c = fold(&[b.clone(), a.clone()]);
        assert_eq!(
            c.conflicts,
            vec![CustodyConflict {
                first: a,
                second: b.clone()
            }]
        );
        assert_eq!(c.holder, Some(b));
    }

    #[test]
    fn same_instant_ties_break_on_kiosk_then_event_id() {
        let a = op(CheckOut, "kiosk-a", 1, 100, 9);
        let b = op(CheckOut, "kiosk-b", 2, 100, 1);
        let c = fold(&[b.clone(), a.clone()]);
        assert_eq!(c.conflicts[0].first, a);
        assert_eq!(c.holder, Some(b));
    }

    #[test]
    fn a_repeated_event_counts_once_and_a_stray_check_in_is_kept() {
        let out = op(CheckOut, "k", 1, 10, 1);
        let stray = op(CheckIn, "k", 1, 5, 7);
        let c = fold(&[out.clone(), out.clone(), stray.clone()]);
        assert_eq!(c.ops, 2);
        assert!(c.conflicts.is_empty());
        assert_eq!(c.unmatched_check_ins, vec![stray]);
        assert_eq!(c.holder, Some(out));
    }

    #[test]
    fn custody_doc_ids_name_exactly_one_asset() {
        let a = Uuid::from_u128(0xabc);
        assert_eq!(asset_of_doc_id(&custody_doc_id(a)), Some(a));
        assert_eq!(
            asset_of_doc_id(
                &custody_doc_id(a)
                    .to_uppercase()
                    .replace("CUSTODY", "custody")
            ),
            None
        );
        assert_eq!(asset_of_doc_id("vehicle-note/x"), None);
    }

    fn any_op() -> impl Strategy<Value = CustodyOp> {
        (any::<bool>(), 0u8..3, 0u128..4, 0i64..50, 0u128..40).prop_map(
            |(out, k, badge, at, ev)| {
                op(
                    if out { CheckOut } else { CheckIn },
                    ["k0", "k1", "k2"][k as usize],
                    badge,
                    at,
                    ev,
                )
            },
        )
    }

    proptest! {
        #[test]
        fn the_fold_does_not_depend_on_merge_order(
            ops in proptest::collection::vec(any_op(), 0..20),
            seed in any::<u64>(),
        ) {
            // Distinct event ids, as kiosks make them.
            let ops: Vec<CustodyOp> = ops
                .into_iter()
                .enumerate()
                .map(|(i, mut o)| { o.event_id = Uuid::from_u128(i as u128); o })
                .collect();
            let mut shuffled = ops.clone();
            let mut s = seed;
            for i in (1..shuffled.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            let a = fold(&ops);
            prop_assert_eq!(&a, &fold(&shuffled));
            let outs = ops.iter().filter(|o| o.op == CheckOut).count();
            prop_assert!(a.conflicts.len() < outs.max(1));
        }
    }
}
