//! Server side of automerge documents: doc id rules, one sync round, and the
//! vehicle note's text. Pure: stored bytes and messages in, bytes out.

use crate::storage::DocWrite;
use automerge::sync::{self, SyncDoc};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, ObjType, ReadDoc, ROOT};
use thiserror::Error;

pub const MAX_DOC_ID_LEN: usize = 128;
/// Past this many incremental chunks a write stores one full save instead.
pub const COMPACT_AFTER_CHUNKS: u32 = 32;
/// The note's text field.
pub const NOTE_FIELD: &str = fleet_protocol::docs::NOTE_TEXT_KEY;

#[derive(Debug, Error)]
pub enum DocError {
    #[error("invalid doc id: {0}")]
    BadId(String),
    #[error("sync message does not decode: {0}")]
    BadMessage(String),
    #[error("stored document does not load: {0}")]
    Corrupt(String),
    #[error("document change failed: {0}")]
    Apply(String),
}

/// Doc ids are `type/key` paths: 1 to 128 characters of `[A-Za-z0-9._:-]` in
/// non-empty `/`-separated segments, none of them `.` or `..`.
pub fn validate_doc_id(id: &str) -> Result<(), DocError> {
    if id.is_empty() || id.len() > MAX_DOC_ID_LEN {
        return Err(DocError::BadId(format!(
            "must be 1 to {MAX_DOC_ID_LEN} characters"
        )));
    }
    for seg in id.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(DocError::BadId("empty or relative path segment".into()));
        }
        if !seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        {
            return Err(DocError::BadId(
                "only letters, digits and . _ : - / are allowed".into(),
            ));
        }
    }
    Ok(())
}

pub fn note_doc_id(vehicle: uuid::Uuid) -> String {
    fleet_protocol::docs::vehicle_note_id(vehicle)
}

fn load(stored: Option<&[u8]>) -> Result<AutoCommit, DocError> {
    match stored {
        Some(b) => AutoCommit::load(b).map_err(|e| DocError::Corrupt(e.to_string())),
        None => Ok(AutoCommit::new()),
    }
}

/// What to store after a change: the new changes, or one full save once the
/// chunk list has grown long.
fn write_after(
    doc: &mut AutoCommit,
    before: &[automerge::ChangeHash],
    chunks: u32,
) -> Option<DocWrite> {
    if doc.get_heads() == before {
        return None;
    }
    Some(if chunks >= COMPACT_AFTER_CHUNKS {
        DocWrite::Replace(doc.save())
    } else {
        DocWrite::Append(doc.save_after(before))
    })
}

pub struct SyncRound {
    /// The server's message, if it has anything to say.
    pub reply: Option<Vec<u8>>,
    pub write: Option<DocWrite>,
}

/// One request of automerge's sync protocol: take in the device's message (if
/// any), answer with ours.
pub fn sync_round(
    stored: Option<&[u8]>,
    chunks: u32,
    state: &mut sync::State,
    message: Option<&[u8]>,
) -> Result<SyncRound, DocError> {
    let mut doc = load(stored)?;
    let before = doc.get_heads();
    if let Some(m) = message {
        let msg = sync::Message::decode(m).map_err(|e| DocError::BadMessage(e.to_string()))?;
        doc.sync()
            .receive_sync_message(state, msg)
            .map_err(|e| DocError::BadMessage(e.to_string()))?;
    }
    let reply = doc
        .sync()
        .generate_sync_message(state)
        .map(sync::Message::encode);
    let write = write_after(&mut doc, &before, chunks);
    Ok(SyncRound { reply, write })
}

fn note_text_obj(doc: &AutoCommit) -> Option<automerge::ObjId> {
    match doc.get(ROOT, NOTE_FIELD) {
        Ok(Some((automerge::Value::Object(ObjType::Text), id))) => Some(id),
        _ => None,
    }
}

pub fn note_text(stored: Option<&[u8]>) -> Result<String, DocError> {
    let doc = load(stored)?;
    match note_text_obj(&doc) {
        Some(obj) => doc.text(&obj).map_err(|e| DocError::Corrupt(e.to_string())),
        None => Ok(String::new()),
    }
}

/// The change that creates an empty note, identical on every node (see
/// `fleet_protocol::docs`), so notes created apart share one text object.
pub fn genesis_note() -> Result<AutoCommit, DocError> {
    let mut doc = AutoCommit::new().with_actor(ActorId::from(
        fleet_protocol::docs::NOTE_BASE_ACTOR.as_slice(),
    ));
    doc.put_object(ROOT, NOTE_FIELD, ObjType::Text)
        .map_err(|e| DocError::Apply(e.to_string()))?;
    doc.commit_with(CommitOptions::default().with_time(0));
    doc.set_actor(ActorId::random());
    Ok(doc)
}

/// Sets the note's text as an edit of what is there, so concurrent edits merge.
pub fn set_note_text(
    stored: Option<&[u8]>,
    chunks: u32,
    text: &str,
) -> Result<Option<DocWrite>, DocError> {
    let (mut doc, before, chunks) = match stored {
        Some(b) => {
            let mut d = load(Some(b))?;
            let heads = d.get_heads();
            (d, heads, chunks)
        }
        // A new doc is written whole, genesis included.
        None => (genesis_note()?, Vec::new(), COMPACT_AFTER_CHUNKS),
    };
    let obj = match note_text_obj(&doc) {
        Some(o) => o,
        None => {
            let mut genesis = genesis_note()?;
            doc.merge(&mut genesis)
                .map_err(|e| DocError::Apply(e.to_string()))?;
            note_text_obj(&doc).ok_or_else(|| DocError::Apply("note field is not text".into()))?
        }
    };
    doc.update_text(&obj, text)
        .map_err(|e| DocError::Apply(e.to_string()))?;
    doc.commit();
    Ok(write_after(&mut doc, &before, chunks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(stored: &mut Option<Vec<u8>>, chunks: &mut u32, w: Option<DocWrite>) {
        match w {
            Some(DocWrite::Append(b)) => {
                stored.get_or_insert_with(Vec::new).extend_from_slice(&b);
                *chunks += 1;
            }
            Some(DocWrite::Replace(b)) => {
                *stored = Some(b);
                *chunks = 1;
            }
            None => {}
        }
    }

    #[test]
    fn doc_ids_are_checked_for_length_and_charset() {
        validate_doc_id("vehicle-note/0b5f2c1e-93a4-4a57-8f07-3f1fd0b5e4a1").unwrap();
        for bad in [
            "",
            "a//b",
            "../etc",
            "a/./b",
            "note/x y",
            "note/\u{e9}",
            &"x".repeat(129),
            "/lead",
            "trail/",
        ] {
            assert!(validate_doc_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn note_edits_accumulate_across_incremental_saves() {
        let (mut stored, mut chunks) = (None, 0);
        for text in ["check tyres", "check tyres and oil", "oil done"] {
            let w = set_note_text(stored.as_deref(), chunks, text).unwrap();
            apply(&mut stored, &mut chunks, w);
            assert_eq!(note_text(stored.as_deref()).unwrap(), text);
        }
        assert_eq!(
            set_note_text(stored.as_deref(), chunks, "oil done")
                .unwrap()
                .map(|_| ()),
            None
        );
    }

    #[test]
    fn notes_created_apart_merge_into_one_text() {
        let mut a = genesis_note().unwrap();
        let mut b = genesis_note().unwrap();
        let oa = note_text_obj(&a).unwrap();
        let ob = note_text_obj(&b).unwrap();
        a.update_text(&oa, "from office. ").unwrap();
        b.update_text(&ob, "from driver.").unwrap();
        a.merge(&mut b).unwrap();
        let text = note_text(Some(&a.save())).unwrap();
        assert!(
            text.contains("from office.") && text.contains("from driver."),
            "{text}"
        );
    }

    /// Runs sync rounds between a device and the stored server doc until both are
    /// quiet. With `lose_first_changes`, the device drops the first reply that
    /// carries changes and resumes from what it had saved, as after a power cut
    /// before it saved them; the return value says whether that happened.
    fn sync_until_quiet(
        stored: &mut Option<Vec<u8>>,
        chunks: &mut u32,
        device: &mut AutoCommit,
        lose_first_changes: bool,
    ) -> bool {
        let mut server_state = sync::State::new();
        let mut device_state = sync::State::new();
        let mut lost = false;
        for _ in 0..10 {
            let msg = device
                .sync()
                .generate_sync_message(&mut device_state)
                .map(sync::Message::encode);
            let round = sync_round(
                stored.as_deref(),
                *chunks,
                &mut server_state,
                msg.as_deref(),
            )
            .unwrap();
            apply(stored, chunks, round.write);
            match round.reply {
                Some(r)
                    if lose_first_changes
                        && !lost
                        && !sync::Message::decode(&r).unwrap().changes.is_empty() =>
                {
                    // It comes back with the doc and sync state it last saved.
                    lost = true;
                    *device = AutoCommit::new();
                    device_state = sync::State::decode(&device_state.encode()).unwrap();
                }
                Some(r) => device
                    .sync()
                    .receive_sync_message(&mut device_state, sync::Message::decode(&r).unwrap())
                    .unwrap(),
                None if msg.is_none() => break,
                None => {}
            }
        }
        lost
    }

    #[test]
    fn a_device_gets_the_server_note_through_sync_rounds() {
        let (mut stored, mut chunks) = (None, 0);
        let w = set_note_text(None, 0, "hello from the office").unwrap();
        apply(&mut stored, &mut chunks, w);

        let mut device = AutoCommit::new();
        sync_until_quiet(&mut stored, &mut chunks, &mut device, false);
        assert_eq!(
            note_text(Some(&device.save())).unwrap(),
            "hello from the office"
        );
    }

    #[test]
    fn a_device_that_lost_a_reply_before_saving_is_sent_the_changes_again() {
        let (mut stored, mut chunks) = (None, 0);
        let w = set_note_text(None, 0, "tyres at 6 bar").unwrap();
        apply(&mut stored, &mut chunks, w);

        let mut device = AutoCommit::new();
        let lost = sync_until_quiet(&mut stored, &mut chunks, &mut device, true);
        assert!(lost, "the server never sent its changes");
        assert_eq!(note_text(Some(&device.save())).unwrap(), "tyres at 6 bar");
    }

    #[test]
    fn a_garbled_sync_message_is_refused_and_changes_nothing() {
        let mut state = sync::State::new();
        let err = sync_round(None, 0, &mut state, Some(b"\x42garbage"))
            .err()
            .unwrap();
        assert!(matches!(err, DocError::BadMessage(_)));
    }
}
