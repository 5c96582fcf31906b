//! What a device batch tells the live stream. Pure: a batch in, events out.
//!
//! A batch moves its vehicle at most once on the stream (its newest position),
//! however many points it carries; every fault (DTC set or cleared) and every
//! geofence crossing is its own event. Each carries its source, `<device>:<seq>`,
//! so a resent batch is announced once.

use super::{LiveEvent, LiveKind};
use crate::timebase::event_time;
use fleet_protocol::{Batch, Event, EventData};
use serde_json::{json, Value};

/// One event for the stream, with when it happened and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct FromIngest {
    pub event: LiveEvent,
    pub at_ms: i64,
    pub source: String,
}

fn kind_of(e: &Event) -> Option<LiveKind> {
    match (e.kind.as_str(), &e.data) {
        (_, EventData::Position(_)) => Some(LiveKind::Position),
        ("dtc_set" | "dtc_clear", _) => Some(LiveKind::Fault),
        ("geofence_enter" | "geofence_exit", _) => Some(LiveKind::Geofence),
        _ => None,
    }
}

/// The live events of `batch`, in seq order. Times are the device's own clock
/// (`now_ms` when it is implausible); the stored events may later be rebased.
pub fn live_events(batch: &Batch, now_ms: i64) -> Vec<FromIngest> {
    let device = batch.header.device_id;
    let newest_position = batch
        .events
        .iter()
        .filter(|e| matches!(e.data, EventData::Position(_)) && e.invalid_reason().is_none())
        .max_by_key(|e| e.seq)
        .map(|e| e.seq);
    let mut out = Vec::new();
    for e in &batch.events {
        let Some(kind) = kind_of(e) else { continue };
        if kind == LiveKind::Position && Some(e.seq) != newest_position {
            continue;
        }
        if e.invalid_reason().is_some() {
            continue;
        }
        let (time_ms, source) = event_time(&e.time, None, now_ms);
        let at_ms = if source == "device" { time_ms } else { now_ms };
        let mut data = match e.data.to_json() {
            Value::Object(m) => m,
            other => {
                let mut m = serde_json::Map::new();
                m.insert("value".into(), other);
                m
            }
        };
        data.insert("seq".into(), json!(e.seq));
        if kind != LiveKind::Position {
            data.insert("event".into(), json!(e.kind.as_str()));
        }
        out.push(FromIngest {
            event: LiveEvent {
                kind,
                vehicle: Some(device),
                data: Value::Object(data),
            },
            at_ms,
            source: format!("{device}:{}", e.seq),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_protocol::event::Position;
    use fleet_protocol::{BatchHeader, BootId, EventTime, Hlc, Kind, Priority};
    use uuid::Uuid;

    const NOW: i64 = 1_767_225_600_000;

    fn event(seq: u64, kind: &str, data: EventData) -> Event {
        Event {
            seq,
            kind: Kind::new(kind),
            priority: Priority::Normal,
            time: EventTime {
                boot_id: BootId::default(),
                mono_ms: seq * 1000,
                wall_ms: NOW - 10_000 + seq as i64,
                hlc: Hlc(seq),
            },
            config_version: 1,
            data,
        }
    }

    fn position(seq: u64, lat_e7: i32) -> Event {
        event(
            seq,
            "position",
            EventData::Position(Position {
                lat_e7,
                lon_e7: 100_000_000,
                alt_dm: None,
                speed_cms: Some(500),
                heading_cdeg: None,
                hdop_d: None,
                sats: None,
                fix: 2,
            }),
        )
    }

    fn batch(events: Vec<Event>) -> Batch {
        let device = Uuid::new_v4();
        Batch {
            header: BatchHeader {
                tenant_id: Uuid::new_v4(),
                device_id: device,
                first_seq: events.first().map_or(1, |e| e.seq),
                last_seq: events.last().map_or(1, |e| e.seq),
                anchors: vec![],
            },
            events,
            rejects: vec![],
        }
    }

    #[test]
    fn a_batch_moves_its_vehicle_once_to_its_newest_position() {
        let b = batch(vec![
            position(1, 500_000_000),
            position(2, 500_000_100),
            position(3, 500_000_200),
        ]);
        let out = live_events(&b, NOW);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].event.kind, LiveKind::Position);
        assert_eq!(out[0].event.vehicle, Some(b.header.device_id));
        assert_eq!(out[0].event.data["seq"], 3);
        assert_eq!(out[0].event.data["lat"], 50.00002);
        assert_eq!(out[0].source, format!("{}:3", b.header.device_id));
        assert_eq!(out[0].at_ms, NOW - 10_000 + 3);
    }

    #[test]
    fn every_fault_and_geofence_crossing_is_announced() {
        let b = batch(vec![
            event(1, "dtc_set", EventData::Json(json!({"code": "P0301"}))),
            position(2, 1),
            event(3, "ignition_off", EventData::None),
            event(
                4,
                "geofence_enter",
                EventData::Json(json!({"geofence_id": "yard"})),
            ),
            event(5, "dtc_clear", EventData::Json(json!({"code": "P0301"}))),
        ]);
        let out = live_events(&b, NOW);
        let kinds: Vec<(LiveKind, Value)> = out
            .iter()
            .map(|f| (f.event.kind, f.event.data["event"].clone()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (LiveKind::Fault, json!("dtc_set")),
                (LiveKind::Position, Value::Null),
                (LiveKind::Geofence, json!("geofence_enter")),
                (LiveKind::Fault, json!("dtc_clear")),
            ]
        );
        assert_eq!(out[0].event.data["code"], "P0301");
    }

    #[test]
    fn a_batch_without_news_announces_nothing() {
        let b = batch(vec![event(
            1,
            "signal",
            EventData::Json(json!({"rpm": 900})),
        )]);
        assert!(live_events(&b, NOW).is_empty());
    }
}
