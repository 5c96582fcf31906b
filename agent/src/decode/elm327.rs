//! ELM327 replies and transcripts to OBD-II values.
//!
//! The adapter's text format (prompt framing, `NO DATA` and the other adapter
//! messages, headers, ISO-TP segments) is parsed in [`fleet_hal::elm327`], because
//! the hal session needs it too; it is re-exported here. This module adds the OBD
//! layer on top, request building, and a "need more bytes" parser for transcripts
//! of a terminal session with an adapter (`>` prompt, the typed command, its reply).

use serde_json::{json, Value as Json};

pub use fleet_hal::elm327::{
    assemble, mode01_requests, parse_data_line, parse_reply, AdapterError, BusKind, DataLine,
    EcuMessage, FrameError, Reply, ReplyFramer, MAX_PIDS_PER_REQUEST,
};

use super::obd::{decode_response, parse_pid, ObdError, Response};

/// One decoded result of a reply.
#[derive(Debug, Clone, PartialEq)]
pub enum ElmItem {
    Response {
        ecu: Option<u32>,
        response: Response,
    },
    Adapter(AdapterError),
    Frame(FrameError),
    Decode {
        ecu: Option<u32>,
        payload: Vec<u8>,
        error: ObdError,
    },
}

/// Decodes the text of one reply to `command` into OBD-II responses per ECU.
pub fn decode_reply(command: &str, text: &str, kind: BusKind, headers: bool) -> Vec<ElmItem> {
    let reply = match parse_reply(command, text) {
        Ok(r) => r,
        Err(e) => return vec![ElmItem::Adapter(e)],
    };
    let (messages, errors) = assemble(&reply, kind, headers);
    decode_messages(messages, errors)
}

/// Decodes assembled ECU messages; assembly errors are kept beside them.
pub fn decode_messages(messages: Vec<EcuMessage>, errors: Vec<FrameError>) -> Vec<ElmItem> {
    let mut out: Vec<ElmItem> = messages
        .into_iter()
        .map(|m| match decode_response(&m.payload) {
            Ok(response) => ElmItem::Response {
                ecu: m.ecu,
                response,
            },
            Err(error) => ElmItem::Decode {
                ecu: m.ecu,
                payload: m.payload,
                error,
            },
        })
        .collect();
    out.extend(errors.into_iter().map(ElmItem::Frame));
    out
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a PID number or name: {0:?}")]
pub struct BadPid(pub String);

/// Parses `0C,0D,RPM` into PIDs, in order, without repeats.
pub fn parse_pid_list(items: &[String]) -> Result<Vec<u8>, BadPid> {
    let mut out = Vec::new();
    for item in items.iter().flat_map(|s| s.split(',')) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let pid = parse_pid(item).ok_or_else(|| BadPid(item.to_string()))?;
        if !out.contains(&pid) {
            out.push(pid);
        }
    }
    Ok(out)
}

/// JSON lines for decoded items: `ecu` and `command` are added to each.
pub fn items_to_json(command: &str, items: &[ElmItem]) -> Vec<Json> {
    let ecu_hex = |e: &Option<u32>| e.map(|e| format!("{e:X}"));
    let mut out = Vec::new();
    for item in items {
        match item {
            ElmItem::Response { ecu, response } => {
                for mut o in response.to_json_items() {
                    o["command"] = json!(command);
                    if let Some(e) = ecu_hex(ecu) {
                        o["ecu"] = json!(e);
                    }
                    out.push(o);
                }
            }
            ElmItem::Adapter(e) => {
                out.push(json!({ "command": command, "adapter_error": e.to_string() }))
            }
            ElmItem::Frame(e) => out.push(json!({ "command": command, "error": e.to_string() })),
            ElmItem::Decode {
                ecu,
                payload,
                error,
            } => out.push(json!({
                "command": command,
                "ecu": ecu_hex(ecu),
                "payload": hex::encode_upper(payload),
                "error": error.to_string(),
            })),
        }
    }
    out
}

/// One command and its reply from a transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub command: String,
    pub reply: String,
}

/// Splits a transcript into exchanges as bytes arrive: the text between two
/// prompts is the typed command (first line) and the adapter's reply. Also tracks
/// the adapter settings the transcript changes (headers, protocol).
#[derive(Debug)]
pub struct TranscriptParser {
    framer: ReplyFramer,
    started: bool,
    headers: bool,
    kind: Option<BusKind>,
}

impl Default for TranscriptParser {
    fn default() -> Self {
        Self::new()
    }
}

impl TranscriptParser {
    pub fn new() -> Self {
        Self {
            framer: ReplyFramer::new(),
            started: false,
            headers: false,
            kind: None,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.framer.push(bytes);
    }

    /// The next complete exchange, or `None` when more bytes are needed.
    pub fn next_exchange(&mut self) -> Option<Exchange> {
        loop {
            let raw = self.framer.next_reply()?;
            // Whatever precedes the first prompt is the adapter's banner.
            if !std::mem::replace(&mut self.started, true) {
                continue;
            }
            if let Some(x) = split_exchange(&raw.text) {
                return Some(x);
            }
        }
    }

    /// The last exchange, which has no prompt after it; call at end of input.
    pub fn finish(&mut self) -> Option<Exchange> {
        self.framer.push(b">");
        self.next_exchange()
    }

    /// Decodes one exchange in the context of the settings seen so far.
    pub fn decode(&mut self, x: &Exchange) -> Vec<ElmItem> {
        let cmd: String = x
            .command
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_uppercase();
        if let Some(at) = cmd.strip_prefix("AT") {
            match at {
                "H1" => self.headers = true,
                "H0" | "Z" | "D" | "WS" => self.headers = false,
                "DPN" => {
                    if let Ok(reply) = parse_reply(&x.command, &x.reply) {
                        self.kind = reply
                            .lines
                            .first()
                            .and_then(|l| BusKind::from_protocol_number(l));
                    }
                }
                _ => {
                    if let Some(p) = at.strip_prefix("SP").or_else(|| at.strip_prefix("TP")) {
                        self.kind = BusKind::from_protocol_number(p);
                    }
                }
            }
            return Vec::new();
        }
        let kind = self
            .kind
            .unwrap_or_else(|| guess_kind(&x.reply, self.headers));
        decode_reply(&x.command, &x.reply, kind, self.headers)
    }
}

fn split_exchange(text: &str) -> Option<Exchange> {
    let text = text.trim_start_matches([' ', '\r', '\n']);
    if text.trim().is_empty() {
        return None;
    }
    let (command, reply) = text.split_once(['\r', '\n']).unwrap_or((text, ""));
    Some(Exchange {
        command: command.trim().to_string(),
        reply: reply.to_string(),
    })
}

/// The bus kind a reply's shape implies, when the transcript never said.
fn guess_kind(reply: &str, headers: bool) -> BusKind {
    if !headers {
        return BusKind::Can11;
    }
    let first = reply
        .split(['\r', '\n'])
        .map(|l| l.split_whitespace().collect::<String>())
        .find(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_hexdigit()));
    match first {
        Some(l) if l.len() % 2 == 1 => BusKind::Can11,
        Some(l) if l.starts_with("18DA") || l.starts_with("18DB") => BusKind::Can29,
        Some(_) => BusKind::Legacy,
        None => BusKind::Can11,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::obd::{Dtc, Value};

    #[test]
    fn requests_carry_at_most_six_pids() {
        let pids: Vec<u8> = (0x04..=0x11).collect();
        let reqs = mode01_requests(&pids);
        assert_eq!(reqs, ["01040506070809", "010A0B0C0D0E0F", "011011"]);
    }

    #[test]
    fn multi_ecu_headers_on_reply_decodes_per_ecu() {
        let items = decode_reply(
            "010C0D",
            "7E8 06 41 0C 1A F8 0D 37\r7E9 03 41 0D 36\r",
            BusKind::Can11,
            true,
        );
        assert_eq!(items.len(), 2);
        let ElmItem::Response {
            ecu: Some(0x7E8),
            response: Response::Current(r),
        } = &items[0]
        else {
            panic!("{items:?}")
        };
        assert_eq!(
            r[0].value,
            Value::Quantity {
                value: 1726.0,
                unit: "rpm"
            }
        );
        assert_eq!(
            r[1].value,
            Value::Quantity {
                value: 55.0,
                unit: "km/h"
            }
        );
    }

    #[test]
    fn dtc_reply_without_count_byte_decodes_all_codes() {
        let items = decode_reply(
            "03",
            "7E81009430143C19602\r7E82134430000000000\r",
            BusKind::Can11,
            true,
        );
        let ElmItem::Response {
            response: Response::Dtcs { mode: 3, codes },
            ..
        } = &items[0]
        else {
            panic!("{items:?}")
        };
        let codes: Vec<String> = codes.iter().map(Dtc::to_string).collect();
        assert_eq!(codes, ["P0143", "U0196", "P0234", "C0300"]);
    }

    #[test]
    fn pid_list_accepts_hex_and_names() {
        let pids = parse_pid_list(&["0C,0d".into(), "RPM".into(), "fuel_level".into()]).unwrap();
        assert_eq!(pids, vec![0x0C, 0x0D, 0x2F]);
        assert_eq!(
            parse_pid_list(&["0C,BOGUS".into()]),
            Err(BadPid("BOGUS".into()))
        );
    }

    #[test]
    fn transcript_splits_on_prompts_and_tracks_headers() {
        let mut t = TranscriptParser::new();
        t.push(b"ELM327 v1.5\r\r>ATH1\rOK\r\r>0100\rSEARCHING...\r7E8 06 41 00 BE 3F A8 13\r\r>01");
        let mut decoded = Vec::new();
        while let Some(x) = t.next_exchange() {
            decoded.push((x.command.clone(), t.decode(&x)));
        }
        t.push(b"0D\r7E8 03 41 0D 37\r");
        let last = t.finish().expect("tail exchange");
        assert_eq!(last.command, "010D");
        decoded.push((last.command.clone(), t.decode(&last)));
        assert_eq!(decoded[0].0, "ATH1");
        assert!(decoded[0].1.is_empty());
        assert!(matches!(
            &decoded[1].1[0],
            ElmItem::Response {
                ecu: Some(0x7E8),
                response: Response::Current(_)
            }
        ));
        assert!(matches!(
            &decoded[2].1[0],
            ElmItem::Response {
                ecu: Some(0x7E8),
                ..
            }
        ));
    }

    #[test]
    fn transcript_reports_adapter_errors() {
        let mut t = TranscriptParser::new();
        t.push(b">0105\rNO DATA\r\r>0902\rCAN ERROR\r\r>");
        let x = t.next_exchange().unwrap();
        assert_eq!(t.decode(&x), vec![ElmItem::Adapter(AdapterError::NoData)]);
        let x = t.next_exchange().unwrap();
        assert_eq!(t.decode(&x), vec![ElmItem::Adapter(AdapterError::CanError)]);
    }
}
