//! automerge documents: the vehicle note, and syncing every local document with
//! the server over automerge's sync protocol, one HTTP round per message.

use crate::store::{Store, StoreError};
use crate::sync::client::{RequestError, SyncClient};
use automerge::sync::{Message, State, SyncDoc};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, AutomergeError, ObjType, ReadDoc, ROOT};
use fleet_protocol::docs::{NOTE_BASE_ACTOR, NOTE_TEXT_KEY, VEHICLE_NOTE_PREFIX};
use thiserror::Error;
use uuid::Uuid;

/// The sync state the device keeps for the server, per document.
pub const PEER_SERVER: &str = "server";
/// A sync that has not converged after this many rounds resumes next time.
const MAX_ROUNDS: usize = 32;

#[derive(Debug, Error)]
pub enum DocError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("document {doc_id}: {source}")]
    Automerge {
        doc_id: String,
        source: Box<AutomergeError>,
    },
    #[error("document {doc_id}: the server sent an unreadable sync message: {reason}")]
    BadMessage { doc_id: String, reason: String },
    #[error("document {doc_id} has {key:?} but it is not text")]
    NotText { doc_id: String, key: &'static str },
}

pub use fleet_protocol::docs::vehicle_note_id;

/// A new vehicle note, starting from the shared first change (see
/// [`fleet_protocol::docs`]) so notes created apart merge into one text.
pub fn new_note() -> AutoCommit {
    let mut doc = AutoCommit::new().with_actor(ActorId::from(NOTE_BASE_ACTOR));
    doc.put_object(ROOT, NOTE_TEXT_KEY, ObjType::Text)
        .expect("a fresh document takes a root key");
    doc.commit_with(CommitOptions::default().with_time(0));
    doc.set_actor(ActorId::random());
    doc
}

/// The note's text; `None` when the document has no note text yet.
pub fn note_text(doc: &AutoCommit) -> Option<String> {
    match doc.get(ROOT, NOTE_TEXT_KEY).ok().flatten() {
        Some((automerge::Value::Object(ObjType::Text), id)) => doc.text(&id).ok(),
        _ => None,
    }
}

/// Replace the note's text with `text`, as the smallest edit, so that edits made
/// elsewhere to other parts of the text survive the merge.
pub fn set_note_text(doc_id: &str, doc: &mut AutoCommit, text: &str) -> Result<(), DocError> {
    let am = |source| DocError::Automerge {
        doc_id: doc_id.to_owned(),
        source: Box::new(source),
    };
    let id = match doc.get(ROOT, NOTE_TEXT_KEY).map_err(am)? {
        Some((automerge::Value::Object(ObjType::Text), id)) => id,
        Some(_) => {
            return Err(DocError::NotText {
                doc_id: doc_id.to_owned(),
                key: NOTE_TEXT_KEY,
            })
        }
        None => {
            // A document from elsewhere without the shared first change: merge it in.
            let mut base = new_note();
            doc.merge(&mut base).map_err(am)?;
            match doc.get(ROOT, NOTE_TEXT_KEY).map_err(am)? {
                Some((_, id)) => id,
                None => {
                    return Err(DocError::NotText {
                        doc_id: doc_id.to_owned(),
                        key: NOTE_TEXT_KEY,
                    })
                }
            }
        }
    };
    doc.update_text(&id, text).map_err(am)?;
    doc.commit();
    Ok(())
}

/// Load the vehicle note of `vehicle`, or a new one.
pub async fn load_note(store: &Store, vehicle: Uuid) -> Result<(String, AutoCommit), DocError> {
    let doc_id = vehicle_note_id(vehicle);
    let doc = store.doc_load(&doc_id).await?.unwrap_or_else(new_note);
    Ok((doc_id, doc))
}

/// What a sync pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocsReport {
    pub synced: usize,
    /// Documents that changed locally from what the server sent.
    pub changed: usize,
}

/// The documents a device syncs: every local one, and its own vehicle note even
/// before it exists locally, so a note the office wrote reaches the device.
pub fn doc_ids_to_sync(local: Vec<String>, own_device: Uuid) -> Vec<String> {
    let mut ids = local;
    let own = vehicle_note_id(own_device);
    if !ids.contains(&own) {
        ids.push(own);
    }
    ids
}

/// Sync every document once. Stops at the first failure; what was synced before
/// it is saved.
pub async fn sync_all(
    store: &Store,
    client: &SyncClient,
    own_device: Uuid,
) -> Result<DocsReport, DocError> {
    let mut report = DocsReport::default();
    for doc_id in doc_ids_to_sync(store.doc_ids().await?, own_device) {
        if sync_doc(store, client, &doc_id).await? {
            report.changed += 1;
        }
        report.synced += 1;
    }
    Ok(report)
}

/// Run sync rounds for one document until neither side has anything to send.
/// Returns whether the local document changed.
pub async fn sync_doc(store: &Store, client: &SyncClient, doc_id: &str) -> Result<bool, DocError> {
    let am = |source| DocError::Automerge {
        doc_id: doc_id.to_owned(),
        source: Box::new(source),
    };
    let stored = store.doc_load(doc_id).await?;
    let existed = stored.is_some();
    let mut doc = match stored {
        Some(d) => d,
        None if doc_id.starts_with(VEHICLE_NOTE_PREFIX) => new_note(),
        None => AutoCommit::new(),
    };
    let mut state = match store.doc_sync_state(doc_id, PEER_SERVER).await? {
        Some(bytes) => State::decode(&bytes).unwrap_or_else(|e| {
            tracing::warn!(doc = doc_id, error = %e, "stored sync state unreadable; starting over");
            State::new()
        }),
        None => State::new(),
    };
    let before = doc.get_heads();
    for _ in 0..MAX_ROUNDS {
        let Some(message) = doc.sync().generate_sync_message(&mut state) else {
            break;
        };
        let Some(reply) = client.doc_sync(doc_id, message.encode()).await? else {
            continue;
        };
        let message = Message::decode(&reply).map_err(|e| DocError::BadMessage {
            doc_id: doc_id.to_owned(),
            reason: e.to_string(),
        })?;
        doc.sync()
            .receive_sync_message(&mut state, message)
            .map_err(am)?;
    }
    let changed = doc.get_heads() != before;
    if changed || !existed {
        store.doc_save(doc_id, &mut doc).await?;
    }
    // The state names heads both sides hold; save it only after the document, or
    // a crash between the two would tell the server we have changes we lost.
    store
        .set_doc_sync_state(doc_id, PEER_SERVER, &state.encode())
        .await?;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_created_apart_merge_their_edits() {
        let id = "vehicle-note/x";
        let mut driver = new_note();
        let mut office = new_note();
        set_note_text(id, &mut driver, "tyre pressure low").expect("edit");
        set_note_text(id, &mut office, "service due").expect("edit");
        driver.merge(&mut office).expect("merge");
        office.merge(&mut driver).expect("merge");
        let merged = note_text(&driver).expect("text");
        assert_eq!(Some(merged.clone()), note_text(&office));
        assert!(merged.contains("tyre pressure low"), "{merged}");
        assert!(merged.contains("service due"), "{merged}");
    }

    #[test]
    fn concurrent_edits_to_one_note_keep_both_changes() {
        let id = "vehicle-note/x";
        let mut a = new_note();
        set_note_text(id, &mut a, "check oil").expect("edit");
        let mut b = a.fork();
        set_note_text(id, &mut a, "check oil and tyres").expect("edit");
        set_note_text(id, &mut b, "please check oil").expect("edit");
        a.merge(&mut b).expect("merge");
        assert_eq!(note_text(&a).as_deref(), Some("please check oil and tyres"));
    }

    #[test]
    fn a_note_without_text_gets_the_shared_text_object() {
        let id = "vehicle-note/x";
        let mut doc = AutoCommit::new();
        assert_eq!(note_text(&doc), None);
        set_note_text(id, &mut doc, "hello").expect("edit");
        let mut other = new_note();
        set_note_text(id, &mut other, "world").expect("edit");
        doc.merge(&mut other).expect("merge");
        let t = note_text(&doc).expect("text");
        assert!(t.contains("hello") && t.contains("world"), "{t}");
    }

    #[test]
    fn the_device_always_syncs_its_own_note() {
        let me = Uuid::new_v4();
        let ids = doc_ids_to_sync(vec!["custody/1".into()], me);
        assert_eq!(ids, vec!["custody/1".to_string(), vehicle_note_id(me)]);
        let again = doc_ids_to_sync(ids.clone(), me);
        assert_eq!(again, ids);
    }
}
