//! Custody conflicts: after a merge of a `custody/<asset>` document the server
//! folds its operations (`fleet_protocol::custody::fold`), keeps the holder, and
//! raises every conflict it has not seen before — a row for managers, a
//! `custody` event on the live stream and a `custody_conflict` webhook.
//!
//! Reading the document is pure ([`read_ops`]); [`after_merge`] moves the bytes.

use crate::live::{LiveEvent, LiveKind};
use crate::storage::kiosk::ConflictRecord;
use crate::storage::{now_ms, StorageError};
use crate::AppState;
use automerge::{AutoCommit, ObjType, ReadDoc, ScalarValue, Value, ROOT};
use fleet_protocol::custody::{
    self, CustodyAction, CustodyOp, FIELD_AT_MS, FIELD_BADGE, FIELD_EVENT_ID, FIELD_KIOSK,
    FIELD_OP, OPS_KEY,
};
use serde_json::json;
use uuid::Uuid;

/// The operations of a custody document, and how many entries were not
/// operations (logged, never silently folded in as something else).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DocOps {
    pub ops: Vec<CustodyOp>,
    pub unreadable: usize,
}

fn scalar(doc: &AutoCommit, obj: &automerge::ObjId, key: &str) -> Option<ScalarValue> {
    match doc.get(obj, key).ok()?? {
        (Value::Scalar(s), _) => Some(s.into_owned()),
        _ => None,
    }
}

fn text(doc: &AutoCommit, obj: &automerge::ObjId, key: &str) -> Option<String> {
    match scalar(doc, obj, key)? {
        ScalarValue::Str(s) => Some(s.to_string()),
        _ => None,
    }
}

fn int(doc: &AutoCommit, obj: &automerge::ObjId, key: &str) -> Option<i64> {
    match scalar(doc, obj, key)? {
        ScalarValue::Int(i) => Some(i),
        ScalarValue::Uint(u) => i64::try_from(u).ok(),
        ScalarValue::Timestamp(t) => Some(t),
        _ => None,
    }
}

fn op_at(doc: &AutoCommit, map: &automerge::ObjId) -> Option<CustodyOp> {
    Some(CustodyOp {
        op: CustodyAction::parse(&text(doc, map, FIELD_OP)?)?,
        kiosk: text(doc, map, FIELD_KIOSK)?,
        badge: Uuid::parse_str(&text(doc, map, FIELD_BADGE)?).ok()?,
        at_ms: int(doc, map, FIELD_AT_MS)?,
        event_id: Uuid::parse_str(&text(doc, map, FIELD_EVENT_ID)?).ok()?,
    })
}

/// The `ops` list of a saved custody document.
pub fn read_ops(bytes: &[u8]) -> Result<DocOps, automerge::AutomergeError> {
    let doc = AutoCommit::load(bytes)?;
    let mut out = DocOps::default();
    let list = match doc.get(ROOT, OPS_KEY)? {
        Some((Value::Object(ObjType::List), id)) => id,
        Some(_) => {
            out.unreadable = 1;
            return Ok(out);
        }
        None => return Ok(out),
    };
    for i in 0..doc.length(&list) {
        match doc.get(&list, i)? {
            Some((Value::Object(ObjType::Map), map)) => match op_at(&doc, &map) {
                Some(op) => out.ops.push(op),
                None => out.unreadable += 1,
            },
            _ => out.unreadable += 1,
        }
    }
    Ok(out)
}

/// What the custody webhook and live event say about one conflict.
pub fn conflict_data(c: &ConflictRecord) -> serde_json::Value {
    json!({
        "conflict_id": c.id,
        "asset_id": c.asset_id,
        "first": c.first,
        "second": c.second,
        "detected_at_ms": c.detected_at_ms,
    })
}

/// Runs after a merge of `doc_id` was stored: for a custody document, folds its
/// operations, records the holder and raises each new conflict. Other documents
/// pass through. Answers the new conflicts.
pub async fn after_merge(
    state: &AppState,
    tenant: Uuid,
    doc_id: &str,
) -> Result<Vec<ConflictRecord>, StorageError> {
    let Some(asset) = custody::asset_of_doc_id(doc_id) else {
        return Ok(Vec::new());
    };
    let Some(stored) = state.storage.load_doc(tenant, doc_id).await? else {
        return Ok(Vec::new());
    };
    let read = tokio::task::spawn_blocking(move || read_ops(&stored.bytes))
        .await
        .map_err(|e| StorageError::Backend(format!("custody read task failed: {e}")))?
        .map_err(|e| StorageError::Corrupt(format!("custody document {asset}: {e}")))?;
    if read.unreadable > 0 {
        tracing::warn!(%tenant, %asset, unreadable = read.unreadable, "custody document has entries that are not operations; they are left out of the fold");
    }
    let folded = custody::fold(&read.ops);
    let ops = u32::try_from(folded.ops).unwrap_or(u32::MAX);
    let new = state
        .storage
        .record_custody(
            tenant,
            asset,
            folded.holder,
            ops,
            &folded.conflicts,
            now_ms(),
        )
        .await?;
    for c in &new {
        tracing::warn!(%tenant, %asset, conflict = %c.id, first_kiosk = %c.first.kiosk, second_kiosk = %c.second.kiosk, "custody conflict: two check-outs with no check-in between");
        let data = conflict_data(c);
        state.live.publish(
            tenant,
            LiveEvent {
                kind: LiveKind::Custody,
                vehicle: Some(asset),
                data: json!({ "type": "conflict", "conflict": data }),
            },
        );
        let event_id = format!(
            "custody_conflict:{}:{}:{}",
            asset, c.first.event_id, c.second.event_id
        );
        let payload = crate::webhooks::payload(
            &event_id,
            crate::webhooks::KIND_CUSTODY_CONFLICT,
            "custody_conflict",
            tenant,
            None,
            c.detected_at_ms,
            data,
        );
        crate::webhooks::enqueue(
            state,
            tenant,
            crate::webhooks::KIND_CUSTODY_CONFLICT,
            &event_id,
            &payload,
        )
        .await?;
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::{CommitOptions, Transactable};
    use automerge::ActorId;
    use fleet_protocol::custody::CUSTODY_BASE_ACTOR;

    fn genesis() -> AutoCommit {
        let mut doc = AutoCommit::new().with_actor(ActorId::from(CUSTODY_BASE_ACTOR.as_slice()));
        doc.put_object(ROOT, OPS_KEY, ObjType::List).unwrap();
        doc.commit_with(CommitOptions::default().with_time(0));
        doc.set_actor(ActorId::random());
        doc
    }

    fn append(doc: &mut AutoCommit, op: &CustodyOp) {
        let list = match doc.get(ROOT, OPS_KEY).unwrap() {
            Some((Value::Object(ObjType::List), id)) => id,
            _ => panic!("no ops list"),
        };
        let at = doc.length(&list);
        let m = doc.insert_object(&list, at, ObjType::Map).unwrap();
        doc.put(&m, FIELD_OP, op.op.as_str()).unwrap();
        doc.put(&m, FIELD_KIOSK, op.kiosk.as_str()).unwrap();
        doc.put(&m, FIELD_BADGE, op.badge.to_string()).unwrap();
        doc.put(&m, FIELD_AT_MS, op.at_ms).unwrap();
        doc.put(&m, FIELD_EVENT_ID, op.event_id.to_string())
            .unwrap();
        doc.commit();
    }

    fn out(kiosk: &str, at_ms: i64) -> CustodyOp {
        CustodyOp {
            op: CustodyAction::CheckOut,
            kiosk: kiosk.into(),
            badge: Uuid::new_v4(),
            at_ms,
            event_id: Uuid::new_v4(),
        }
    }

    #[test]
    fn two_kiosks_offline_check_outs_merge_into_one_list_and_one_conflict() {
        let mut a = genesis();
        let mut b = genesis();
        let (oa, ob) = (out("kiosk-a", 100), out("kiosk-b", 200));
        append(&mut a, &oa);
        append(&mut b, &ob);
        a.merge(&mut b).unwrap();
        let read = read_ops(&a.save()).unwrap();
        assert_eq!(read.unreadable, 0);
        assert_eq!(read.ops.len(), 2);
        let folded = custody::fold(&read.ops);
        assert_eq!(folded.conflicts.len(), 1);
        assert_eq!(folded.conflicts[0].first, oa);
        assert_eq!(folded.holder, Some(ob));
    }

    #[test]
    fn entries_that_are_not_operations_are_counted_not_folded() {
        let mut doc = genesis();
        append(&mut doc, &out("k", 1));
        let list = match doc.get(ROOT, OPS_KEY).unwrap() {
            Some((Value::Object(ObjType::List), id)) => id,
            _ => unreachable!(),
        };
        doc.insert(&list, 1, "junk").unwrap();
        let m = doc.insert_object(&list, 2, ObjType::Map).unwrap();
        doc.put(&m, FIELD_OP, "steal").unwrap();
        let read = read_ops(&doc.save()).unwrap();
        assert_eq!((read.ops.len(), read.unreadable), (1, 2));
        assert_eq!(
            read_ops(&AutoCommit::new().save()).unwrap(),
            DocOps::default()
        );
    }
}
