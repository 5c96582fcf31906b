//! The stream's JSON messages, both ways. Pure: text in, values out.
//!
//! Client → server: `{"type":"subscribe","vehicles":[…],"kinds":[…],"resume_after":ID}`
//! (every field but `type` optional; a later subscribe replaces the filter).
//!
//! Server → client: `{"type":"event","id","kind","vehicle","data","at"}`,
//! `{"type":"heartbeat"}`, `{"type":"resumed","from":ID}`, `{"type":"gap"}`,
//! `{"type":"subscribed"}` and `{"type":"error","code","message"}`.

use super::LiveKind;
use crate::storage::rfc3339_ms;
use crate::storage::stream::StreamRow;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashSet;
use uuid::Uuid;

/// Most vehicles one filter may name.
pub const MAX_FILTER_VEHICLES: usize = 10_000;

/// Which events a client wants; an empty set means all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub vehicles: HashSet<Uuid>,
    pub kinds: HashSet<LiveKind>,
}

impl Filter {
    pub fn matches(&self, kind: &str, vehicle: Option<Uuid>) -> bool {
        self.matches_live(LiveKind::parse(kind), vehicle)
    }

    /// [`Filter::matches`] for a kind already parsed (`None`: one this server
    /// does not know, which only an empty kind set takes).
    pub fn matches_live(&self, kind: Option<LiveKind>, vehicle: Option<Uuid>) -> bool {
        let kind_ok = self.kinds.is_empty() || kind.is_some_and(|k| self.kinds.contains(&k));
        let vehicle_ok =
            self.vehicles.is_empty() || vehicle.is_some_and(|v| self.vehicles.contains(&v));
        kind_ok && vehicle_ok
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    Subscribe {
        filter: Filter,
        resume_after: Option<u64>,
    },
}

/// Why a client message was refused: a stable code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMessage {
    pub code: &'static str,
    pub message: String,
}

fn bad(code: &'static str, message: impl Into<String>) -> BadMessage {
    BadMessage {
        code,
        message: message.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubscribe {
    #[serde(rename = "type")]
    _type: String,
    #[serde(default)]
    vehicles: Vec<String>,
    #[serde(default)]
    kinds: Vec<String>,
    #[serde(default)]
    resume_after: Option<u64>,
}

pub fn parse_client(text: &str) -> Result<ClientMessage, BadMessage> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| bad("bad_message", format!("message is not JSON: {e}")))?;
    match v.get("type").and_then(|t| t.as_str()) {
        Some("subscribe") => {}
        Some(other) => {
            return Err(bad(
                "unknown_message_type",
                format!("unknown message type {other:?}; the stream accepts \"subscribe\""),
            ))
        }
        None => return Err(bad("bad_message", "message has no \"type\"")),
    }
    let raw: RawSubscribe = serde_json::from_value(v).map_err(|e| {
        bad(
            "bad_message",
            format!("subscribe message is not valid: {e}"),
        )
    })?;
    if raw.vehicles.len() > MAX_FILTER_VEHICLES {
        return Err(bad(
            "bad_message",
            format!("a filter names at most {MAX_FILTER_VEHICLES} vehicles"),
        ));
    }
    let vehicles = raw
        .vehicles
        .iter()
        .map(|s| Uuid::parse_str(s).map_err(|_| bad("bad_vehicle", format!("{s:?} is not a UUID"))))
        .collect::<Result<_, _>>()?;
    let kinds = raw
        .kinds
        .iter()
        .map(|s| {
            LiveKind::parse(s).ok_or_else(|| {
                let known: Vec<&str> = LiveKind::ALL.iter().map(|k| k.as_str()).collect();
                bad(
                    "bad_kind",
                    format!("unknown kind {s:?}; kinds are {}", known.join(", ")),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(ClientMessage::Subscribe {
        filter: Filter { vehicles, kinds },
        resume_after: raw.resume_after,
    })
}

pub fn event_text(row: &StreamRow) -> String {
    json!({
        "type": "event",
        "id": row.id,
        "kind": row.kind,
        "vehicle": row.vehicle,
        "data": row.data,
        "at": rfc3339_ms(row.at_ms),
    })
    .to_string()
}

pub fn heartbeat_text() -> String {
    json!({"type": "heartbeat"}).to_string()
}

pub fn subscribed_text(head: u64) -> String {
    json!({"type": "subscribed", "head": head}).to_string()
}

pub fn resumed_text(from: u64) -> String {
    json!({"type": "resumed", "from": from}).to_string()
}

pub fn gap_text(oldest: u64, head: u64) -> String {
    json!({"type": "gap", "oldest": oldest, "head": head}).to_string()
}

pub fn error_text(e: &BadMessage) -> String {
    json!({"type": "error", "code": e.code, "message": e.message}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscribe_with_every_field_parses() {
        let v = Uuid::new_v4();
        let msg = parse_client(&format!(
            r#"{{"type":"subscribe","vehicles":["{v}"],"kinds":["position","fault"],"resume_after":41}}"#
        ))
        .unwrap();
        let ClientMessage::Subscribe {
            filter,
            resume_after,
        } = msg;
        assert_eq!(resume_after, Some(41));
        assert!(filter.vehicles.contains(&v));
        assert!(filter.matches("position", Some(v)));
        assert!(filter.matches("fault", Some(v)));
        assert!(!filter.matches("geofence", Some(v)));
        assert!(!filter.matches("position", Some(Uuid::new_v4())));
        assert!(!filter.matches("position", None));
    }

    #[test]
    fn an_empty_subscribe_matches_everything() {
        let ClientMessage::Subscribe {
            filter,
            resume_after,
        } = parse_client(r#"{"type":"subscribe"}"#).unwrap();
        assert_eq!(resume_after, None);
        assert!(filter.matches("custody", None));
        assert!(filter.matches("position", Some(Uuid::new_v4())));
    }

    #[test]
    fn bad_messages_get_stable_codes() {
        let code = |t: &str| parse_client(t).unwrap_err().code;
        assert_eq!(code("not json"), "bad_message");
        assert_eq!(code(r#"{"vehicles":[]}"#), "bad_message");
        assert_eq!(code(r#"{"type":"publish"}"#), "unknown_message_type");
        assert_eq!(
            code(r#"{"type":"subscribe","vehicles":["nope"]}"#),
            "bad_vehicle"
        );
        assert_eq!(
            code(r#"{"type":"subscribe","kinds":["costs"]}"#),
            "bad_kind"
        );
        assert_eq!(
            code(r#"{"type":"subscribe","resume_after":-1}"#),
            "bad_message"
        );
        assert_eq!(code(r#"{"type":"subscribe","extra":1}"#), "bad_message");
    }

    #[test]
    fn an_event_renders_with_its_id_and_time() {
        let v = Uuid::new_v4();
        let row = StreamRow {
            tenant: Uuid::new_v4(),
            id: 7,
            kind: "position".into(),
            vehicle: Some(v),
            data: json!({"lat": 1.5}),
            at_ms: 1_767_225_600_000,
        };
        let out: serde_json::Value = serde_json::from_str(&event_text(&row)).unwrap();
        assert_eq!(
            out,
            json!({"type":"event","id":7,"kind":"position","vehicle":v,"data":{"lat":1.5},"at":"2026-01-01T00:00:00Z"})
        );
    }
}
