//! Conventions for the automerge documents that devices and the server share.
//!
//! A vehicle note (`vehicle-note/<vehicle uuid>`) is a map whose key `"text"` holds
//! an automerge Text, edited with `update_text` so concurrent edits merge.
//!
//! Two replicas that each create the note offline must not each create their own
//! `"text"` object: one would win the key and the other's edits would vanish. So
//! every side starts a new note from the same first change — actor
//! [`NOTE_BASE_ACTOR`], the single operation `put_object(ROOT, "text", Text)`,
//! commit time 0, no message — which has the same bytes and hash everywhere, and
//! then switches to its own actor.

use uuid::Uuid;

pub const VEHICLE_NOTE_PREFIX: &str = "vehicle-note/";
pub const NOTE_TEXT_KEY: &str = "text";
pub const NOTE_BASE_ACTOR: [u8; 16] = *b"fleet-note-base\0";

pub fn vehicle_note_id(vehicle: Uuid) -> String {
    format!("{VEHICLE_NOTE_PREFIX}{vehicle}")
}
