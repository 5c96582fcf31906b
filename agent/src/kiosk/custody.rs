//! Custody documents on the kiosk: one automerge document per asset
//! (`custody/<asset uuid>`, format in [`fleet_protocol::custody`]), appended to
//! at each check-out and check-in, saved in the agent's document store and
//! synced with the server by the sync loop like every other document.

use crate::store::{Store, StoreError};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, ObjType, ReadDoc, ScalarValue, Value, ROOT};
use fleet_protocol::custody::{
    self, custody_doc_id, CustodyAction, CustodyOp, CUSTODY_BASE_ACTOR, FIELD_AT_MS, FIELD_BADGE,
    FIELD_EVENT_ID, FIELD_KIOSK, FIELD_OP, OPS_KEY,
};
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum CustodyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("custody document {doc_id}: {reason}")]
    Doc { doc_id: String, reason: String },
}

/// A new custody document, starting from the first change every side shares,
/// so documents begun apart hold one `ops` list after they merge.
pub fn new_doc() -> AutoCommit {
    let mut doc = AutoCommit::new().with_actor(ActorId::from(CUSTODY_BASE_ACTOR));
    doc.put_object(ROOT, OPS_KEY, ObjType::List)
        .expect("a fresh document takes a root key");
    doc.commit_with(CommitOptions::default().with_time(0));
    doc.set_actor(ActorId::random());
    doc
}

/// Append one operation to the document's `ops` list.
pub fn append(doc_id: &str, doc: &mut AutoCommit, op: &CustodyOp) -> Result<(), CustodyError> {
    let err = |e: automerge::AutomergeError| CustodyError::Doc {
        doc_id: doc_id.to_owned(),
        reason: e.to_string(),
    };
    let ops = match doc.get(ROOT, OPS_KEY).map_err(err)? {
        Some((Value::Object(ObjType::List), id)) => id,
        Some(_) => {
            return Err(CustodyError::Doc {
                doc_id: doc_id.to_owned(),
                reason: "`ops` is not a list".into(),
            })
        }
        None => {
            // Begun elsewhere without the shared first change: merge it in.
            doc.merge(&mut new_doc()).map_err(err)?;
            match doc.get(ROOT, OPS_KEY).map_err(err)? {
                Some((_, id)) => id,
                None => unreachable!("the shared first change creates `ops`"),
            }
        }
    };
    let n = doc.length(&ops);
    let entry = doc.insert_object(&ops, n, ObjType::Map).map_err(err)?;
    doc.put(&entry, FIELD_OP, op.op.as_str()).map_err(err)?;
    doc.put(&entry, FIELD_KIOSK, op.kiosk.as_str())
        .map_err(err)?;
    doc.put(&entry, FIELD_BADGE, op.badge.to_string())
        .map_err(err)?;
    doc.put(&entry, FIELD_AT_MS, op.at_ms).map_err(err)?;
    doc.put(&entry, FIELD_EVENT_ID, op.event_id.to_string())
        .map_err(err)?;
    doc.commit();
    Ok(())
}

/// Every readable operation in the document. An entry that does not parse is
/// skipped: it cannot name a holder, and the server reports it.
pub fn read_ops(doc: &AutoCommit) -> Vec<CustodyOp> {
    let Ok(Some((Value::Object(ObjType::List), ops))) = doc.get(ROOT, OPS_KEY) else {
        return Vec::new();
    };
    let str_at = |obj: &automerge::ObjId, key: &str| match doc.get(obj, key) {
        Ok(Some((Value::Scalar(s), _))) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    };
    let int_at = |obj: &automerge::ObjId, key: &str| match doc.get(obj, key) {
        Ok(Some((Value::Scalar(s), _))) => match s.as_ref() {
            ScalarValue::Int(i) => Some(*i),
            ScalarValue::Uint(u) => i64::try_from(*u).ok(),
            _ => None,
        },
        _ => None,
    };
    (0..doc.length(&ops))
        .filter_map(|i| {
            let (_, entry) = doc.get(&ops, i).ok().flatten()?;
            Some(CustodyOp {
                op: CustodyAction::parse(&str_at(&entry, FIELD_OP)?)?,
                kiosk: str_at(&entry, FIELD_KIOSK)?,
                badge: Uuid::parse_str(&str_at(&entry, FIELD_BADGE)?).ok()?,
                at_ms: int_at(&entry, FIELD_AT_MS)?,
                event_id: Uuid::parse_str(&str_at(&entry, FIELD_EVENT_ID)?).ok()?,
            })
        })
        .collect()
}

/// Record `op` in the asset's custody document, durably (documents commit at once).
pub async fn record(store: &Store, asset: Uuid, op: &CustodyOp) -> Result<(), CustodyError> {
    let doc_id = custody_doc_id(asset);
    let mut doc = store.doc_load(&doc_id).await?.unwrap_or_else(new_doc);
    append(&doc_id, &mut doc, op)?;
    store.doc_save(&doc_id, &mut doc).await?;
    Ok(())
}

/// The fold of every custody document in the store, by asset.
pub async fn load_all(store: &Store) -> Result<BTreeMap<Uuid, custody::Custody>, CustodyError> {
    let mut out = BTreeMap::new();
    for doc_id in store.doc_ids().await? {
        let Some(asset) = custody::asset_of_doc_id(&doc_id) else {
            continue;
        };
        if let Some(doc) = store.doc_load(&doc_id).await? {
            out.insert(asset, custody::fold(&read_ops(&doc)));
        }
    }
    Ok(out)
}

/// Every custody operation in the store, by asset (for overdue and no-show checks).
pub async fn load_ops(store: &Store) -> Result<BTreeMap<Uuid, Vec<CustodyOp>>, CustodyError> {
    let mut out = BTreeMap::new();
    for doc_id in store.doc_ids().await? {
        let Some(asset) = custody::asset_of_doc_id(&doc_id) else {
            continue;
        };
        if let Some(doc) = store.doc_load(&doc_id).await? {
            out.insert(asset, read_ops(&doc));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(action: CustodyAction, kiosk: &str, at_ms: i64, ev: u128) -> CustodyOp {
        CustodyOp {
            op: action,
            kiosk: kiosk.into(),
            badge: Uuid::from_u128(0xa1),
            at_ms,
            event_id: Uuid::from_u128(ev),
        }
    }

    #[test]
    fn two_kiosks_offline_check_out_one_asset_and_merge_into_one_conflict() {
        let id = "custody/x";
        let mut a = new_doc();
        let mut b = new_doc();
        append(id, &mut a, &op(CustodyAction::CheckOut, "kiosk-a", 100, 1)).expect("a");
        append(id, &mut b, &op(CustodyAction::CheckOut, "kiosk-b", 150, 2)).expect("b");
        a.merge(&mut b).expect("merge");
        b.merge(&mut a.clone()).expect("merge");
        let (fa, fb) = (custody::fold(&read_ops(&a)), custody::fold(&read_ops(&b)));
        assert_eq!(fa, fb, "both sides read the same custody");
        assert_eq!(fa.conflicts.len(), 1);
        assert_eq!(fa.holder.expect("held").kiosk, "kiosk-b");
        assert_eq!(read_ops(&a).len(), 2, "neither operation was lost");
    }

    #[test]
    fn out_and_in_round_trip_through_the_document() {
        let id = "custody/x";
        let mut d = new_doc();
        let out = op(CustodyAction::CheckOut, "k", 1_780_000_000_000, 7);
        let back = op(CustodyAction::CheckIn, "k", 1_780_000_100_000, 8);
        append(id, &mut d, &out).expect("out");
        assert_eq!(custody::fold(&read_ops(&d)).holder, Some(out.clone()));
        append(id, &mut d, &back).expect("in");
        let loaded = AutoCommit::load(&d.save()).expect("load");
        assert_eq!(read_ops(&loaded), vec![out, back]);
        assert_eq!(custody::fold(&read_ops(&loaded)).holder, None);
    }

    #[test]
    fn a_document_begun_without_the_shared_change_still_takes_ops() {
        let mut d = AutoCommit::new();
        append("custody/x", &mut d, &op(CustodyAction::CheckOut, "k", 1, 1)).expect("append");
        assert_eq!(read_ops(&d).len(), 1);
    }
}
