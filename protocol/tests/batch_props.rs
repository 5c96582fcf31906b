//! Properties of the batch codec: every batch the encoder can write decodes to the
//! same events; damaged frames are refused with a `BatchError`, never a panic or an
//! unbounded allocation; and a bad event inside a good frame is set aside as a reject
//! without failing the rest of the batch.

use fleet_protocol::batch::{FRAME_HEADER_LEN, MAGIC, MAX_UNCOMPRESSED, VERSION};
use fleet_protocol::event::KNOWN_KINDS;
use fleet_protocol::varint::{put_i64, put_u64};
use fleet_protocol::{
    decode_batch, encode_batch, BatchError, BatchHeader, BootId, Event, EventData, EventTime, Hlc,
    Kind, Position, Priority, TimeAnchor, TimeSource,
};
use proptest::collection::vec;
use proptest::prelude::*;
use uuid::Uuid;

const MAX_PHYSICAL_MS: u64 = (1 << 48) - 1;

fn boot_pool() -> impl Strategy<Value = Vec<BootId>> {
    vec(any::<[u8; 16]>().prop_map(BootId), 1..4)
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => proptest::sample::select(KNOWN_KINDS).prop_map(Kind::known),
        // Names the wire carries inline: anything valid that is not a known kind.
        1 => "[a-z0-9_.]{1,64}"
            .prop_filter("a known name travels as a code", |n| !KNOWN_KINDS.contains(&n.as_str()))
            .prop_map(Kind::new),
    ]
}

fn priority() -> impl Strategy<Value = Priority> {
    prop_oneof![
        Just(Priority::Telemetry),
        Just(Priority::Normal),
        Just(Priority::Critical)
    ]
}

fn position() -> impl Strategy<Value = Position> {
    (
        (
            -900_000_000i32..=900_000_000,
            -1_800_000_000i32..=1_800_000_000,
        ),
        proptest::option::of(any::<i32>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(0u16..36_000),
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u8>()),
        0u8..=3,
    )
        .prop_map(
            |((lat_e7, lon_e7), alt_dm, speed_cms, heading_cdeg, hdop_d, sats, fix)| Position {
                lat_e7,
                lon_e7,
                alt_dm,
                speed_cms,
                heading_cdeg,
                hdop_d,
                sats,
                fix,
            },
        )
}

/// JSON objects without floats: serde_json's default float parsing may differ from
/// what it printed in the last digit, which is serde_json's business, not the codec's.
fn json_object() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::from),
    ];
    let value = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    proptest::collection::btree_map(".{0,8}", value, 0..5)
        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect()))
}

fn data() -> impl Strategy<Value = EventData> {
    prop_oneof![
        1 => Just(EventData::None),
        3 => position().prop_map(EventData::Position),
        1 => json_object().prop_map(EventData::Json),
    ]
}

/// One event before its seq is known: the batch strategy assigns seqs with holes.
#[derive(Debug, Clone)]
struct Draft {
    gap: u64,
    boot: usize,
    mono_ms: u64,
    wall_ms: i64,
    hlc_physical: u64,
    hlc_logical: u16,
    kind: Kind,
    priority: Priority,
    config_version: u32,
    data: EventData,
}

fn draft() -> impl Strategy<Value = Draft> {
    (
        prop_oneof![6 => Just(0u64), 1 => 1u64..5, 1 => 5u64..100_000],
        0usize..8,
        prop_oneof![0u64..=i64::MAX as u64, 0u64..10_000_000],
        prop_oneof![any::<i64>(), 1_600_000_000_000i64..1_900_000_000_000],
        (0..=MAX_PHYSICAL_MS, any::<u16>()),
        kind(),
        priority(),
        any::<u32>(),
        data(),
    )
        .prop_map(
            |(
                gap,
                boot,
                mono_ms,
                wall_ms,
                (hlc_physical, hlc_logical),
                kind,
                priority,
                config_version,
                data,
            )| Draft {
                gap,
                boot,
                mono_ms,
                wall_ms,
                hlc_physical,
                hlc_logical,
                kind,
                priority,
                config_version,
                data,
            },
        )
}

fn anchor(boots: Vec<BootId>) -> impl Strategy<Value = TimeAnchor> {
    (
        proptest::sample::select(boots),
        any::<u64>(),
        any::<i64>(),
        prop_oneof![
            Just(TimeSource::Server),
            Just(TimeSource::Gps),
            Just(TimeSource::Ntp)
        ],
        any::<u32>(),
    )
        .prop_map(
            |(boot_id, mono_ms, true_ms, source, uncertainty_ms)| TimeAnchor {
                boot_id,
                mono_ms,
                true_ms,
                source,
                uncertainty_ms,
            },
        )
}

#[derive(Debug, Clone)]
struct Case {
    header: BatchHeader,
    events: Vec<Event>,
}

fn case(max_events: usize) -> impl Strategy<Value = Case> {
    boot_pool().prop_flat_map(move |boots| {
        (
            any::<u128>(),
            any::<u128>(),
            prop_oneof![1u64..1_000, 1u64..(1 << 40)],
            vec(draft(), 0..=max_events),
            0u64..4,
            vec(anchor(boots.clone()), 0..4),
            Just(boots),
        )
            .prop_map(
                |(tenant, device, first_seq, drafts, tail_gap, anchors, boots)| {
                    let mut seq = first_seq - 1;
                    let events: Vec<Event> = drafts
                        .into_iter()
                        .map(|d| {
                            seq += d.gap + 1;
                            Event {
                                seq,
                                kind: d.kind,
                                priority: d.priority,
                                time: EventTime {
                                    boot_id: boots[d.boot % boots.len()],
                                    mono_ms: d.mono_ms,
                                    wall_ms: d.wall_ms,
                                    hlc: Hlc::new(d.hlc_physical, d.hlc_logical),
                                },
                                config_version: d.config_version,
                                data: d.data,
                            }
                        })
                        .collect();
                    let last_seq = seq.max(first_seq) + tail_gap;
                    Case {
                        header: BatchHeader {
                            tenant_id: Uuid::from_u128(tenant),
                            device_id: Uuid::from_u128(device),
                            first_seq,
                            last_seq,
                            anchors,
                        },
                        events,
                    }
                },
            )
    })
}

fn level() -> impl Strategy<Value = i32> {
    prop_oneof![Just(0), Just(3)]
}

// 256 cases each by default; `tests/run --long` raises PROPTEST_CASES.
proptest! {
    #[test]
    fn every_encodable_batch_decodes_to_the_same_events(c in case(40), level in level()) {
        let frame = encode_batch(&c.header, &c.events, level).unwrap();
        let batch = decode_batch(&frame).unwrap();
        prop_assert_eq!(&batch.header, &c.header);
        prop_assert_eq!(&batch.events, &c.events);
        prop_assert!(batch.rejects.is_empty(), "rejects: {:?}", batch.rejects);
        let span = c.header.last_seq - c.header.first_seq + 1;
        prop_assert_eq!(batch.evicted_count(), span - c.events.len() as u64);
    }

    #[test]
    fn both_compression_levels_carry_the_same_batch(c in case(20)) {
        let stored = decode_batch(&encode_batch(&c.header, &c.events, 0).unwrap()).unwrap();
        let packed = decode_batch(&encode_batch(&c.header, &c.events, 3).unwrap()).unwrap();
        prop_assert_eq!(stored, packed);
    }

    #[test]
    fn every_single_bit_flip_of_a_stored_frame_is_refused(c in case(6)) {
        let frame = encode_batch(&c.header, &c.events, 0).unwrap();
        for bit in 0..frame.len() * 8 {
            let mut bad = frame.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode_batch(&bad).is_err(), "flip of bit {} of {} was accepted", bit, frame.len() * 8);
        }
    }

    /// zstd ignores a few bits of its own frame header (the "unused" descriptor bit),
    /// so a flip there inflates to the very same body. Anything else is refused: the
    /// checksum covers the inflated body, so no flip can change what is decoded.
    #[test]
    fn a_bit_flip_in_a_compressed_frame_is_refused_or_changes_nothing(c in case(6)) {
        let frame = encode_batch(&c.header, &c.events, 3).unwrap();
        let original = decode_batch(&frame).unwrap();
        for bit in 0..frame.len() * 8 {
            let mut bad = frame.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            if let Ok(b) = decode_batch(&bad) {
                prop_assert!(bit / 8 >= FRAME_HEADER_LEN, "flip of frame header bit {} was accepted", bit);
                prop_assert_eq!(&b, &original, "flip of bit {} changed the batch", bit);
            }
        }
    }

    #[test]
    fn every_truncation_is_refused(c in case(6), level in level()) {
        let frame = encode_batch(&c.header, &c.events, level).unwrap();
        for len in 0..frame.len() {
            prop_assert!(decode_batch(&frame[..len]).is_err(), "frame cut to {} of {} bytes was accepted", len, frame.len());
        }
    }

    #[test]
    fn appended_bytes_are_refused(c in case(6), level in level(), extra in vec(any::<u8>(), 1..16)) {
        let mut frame = encode_batch(&c.header, &c.events, level).unwrap();
        frame.extend_from_slice(&extra);
        prop_assert!(decode_batch(&frame).is_err());
    }

    #[test]
    fn garbage_is_refused(bytes in vec(any::<u8>(), 0..512)) {
        prop_assert!(decode_batch(&bytes).is_err());
    }

    #[test]
    fn garbage_behind_a_valid_frame_header_is_refused(method in 0u8..2, len in 0u32..4096, crc: u32, payload in vec(any::<u8>(), 0..512)) {
        let frame = frame_of(method, len, crc, &payload);
        prop_assert!(decode_batch(&frame).is_err());
    }

    /// Damage the checksum can't see (a bug on the sending side, say): the decoder
    /// reads the body defensively and either refuses it or returns a batch whose
    /// events stay inside the range it declares.
    #[test]
    fn a_damaged_body_with_a_matching_checksum_never_panics(c in case(10), flips in vec(any::<prop::sample::Index>(), 1..4)) {
        let frame = encode_batch(&c.header, &c.events, 0).unwrap();
        let mut body = frame[FRAME_HEADER_LEN..].to_vec();
        for f in &flips {
            let bit = f.index(body.len() * 8);
            body[bit / 8] ^= 1 << (bit % 8);
        }
        let crc = crc32fast::hash(&body);
        if let Ok(b) = decode_batch(&frame_of(0, body.len() as u32, crc, &body)) {
            prop_assert!(b.header.first_seq >= 1 && b.header.first_seq <= b.header.last_seq);
            let span = b.header.last_seq - b.header.first_seq + 1;
            prop_assert!((b.events.len() + b.rejects.len()) as u64 <= span);
            for s in b.events.iter().map(|e| e.seq).chain(b.rejects.iter().map(|r| r.seq)) {
                prop_assert!((b.header.first_seq..=b.header.last_seq).contains(&s));
            }
        }
    }
}

fn frame_of(method: u8, len: u32, crc: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    f.extend_from_slice(&MAGIC);
    f.push(VERSION);
    f.push(method);
    f.extend_from_slice(&len.to_le_bytes());
    f.extend_from_slice(&crc.to_le_bytes());
    f.extend_from_slice(payload);
    f
}

fn header() -> BatchHeader {
    BatchHeader {
        tenant_id: Uuid::from_u128(0x1111),
        device_id: Uuid::from_u128(0x2222),
        first_seq: 1,
        last_seq: 1,
        anchors: Vec::new(),
    }
}

#[test]
fn a_decompression_bomb_is_refused_without_inflating_it() {
    let zeros = vec![0u8; 4 * MAX_UNCOMPRESSED];
    let bomb = zstd::bulk::compress(&zeros, 1).unwrap();
    assert!(
        bomb.len() < 64 * 1024,
        "the bomb should be small on the wire: {}",
        bomb.len()
    );
    let crc = crc32fast::hash(&zeros);
    // Declaring the true size is refused before any work.
    let honest = frame_of(1, u32::MAX, crc, &bomb);
    assert!(matches!(
        decode_batch(&honest),
        Err(BatchError::TooLarge(_))
    ));
    // Declaring a small size stops inflation at that size.
    for declared in [0u32, 100, MAX_UNCOMPRESSED as u32] {
        let liar = frame_of(1, declared, crc, &bomb);
        assert!(
            matches!(decode_batch(&liar), Err(BatchError::Decompress(_))),
            "declared {declared}"
        );
    }
}

#[test]
fn unknown_versions_and_compressions_are_refused_with_their_own_codes() {
    let frame = encode_batch(&header(), &[], 3).unwrap();
    let mut v2 = frame.clone();
    v2[3] = VERSION + 1;
    let err = decode_batch(&v2).unwrap_err();
    assert_eq!(err, BatchError::UnsupportedVersion(VERSION + 1));
    assert_eq!(err.code(), "batch_unsupported_version");

    let mut brotli = frame.clone();
    brotli[4] = 7;
    let err = decode_batch(&brotli).unwrap_err();
    assert_eq!(err, BatchError::UnsupportedCompression(7));
    assert_eq!(err.code(), "batch_unsupported_version");

    let mut foreign = frame;
    foreign[..3].copy_from_slice(b"PK\x03");
    assert_eq!(
        decode_batch(&foreign).unwrap_err().code(),
        "batch_malformed"
    );
    assert_eq!(decode_batch(&[]).unwrap_err().code(), "batch_truncated");
}

#[test]
fn error_codes_are_stable() {
    let cases = [
        (BatchError::BadMagic, "batch_malformed"),
        (BatchError::Malformed("x".into()), "batch_malformed"),
        (BatchError::Invalid("x".into()), "batch_malformed"),
        (
            BatchError::UnsupportedVersion(9),
            "batch_unsupported_version",
        ),
        (
            BatchError::UnsupportedCompression(9),
            "batch_unsupported_version",
        ),
        (BatchError::TooLarge(1), "batch_too_large"),
        (BatchError::Truncated, "batch_truncated"),
        (BatchError::Decompress("x".into()), "batch_corrupt"),
        (BatchError::Checksum, "batch_corrupt"),
    ];
    for (err, code) in cases {
        assert_eq!(err.code(), code, "{err:?}");
    }
}

/// Append-only: a released code keeps its meaning. New kinds go at the end.
#[test]
fn known_kind_codes_never_move() {
    let v1 = [
        "position",
        "ignition_on",
        "ignition_off",
        "trip_start",
        "trip_end",
        "stop",
        "idle",
        "harsh_acceleration",
        "harsh_braking",
        "harsh_cornering",
        "speeding",
        "geofence_enter",
        "geofence_exit",
        "fuel_drop",
        "dtc_set",
        "dtc_clear",
        "battery_low",
        "cranking_weak",
        "odometer",
        "engine_hours",
        "signal",
        "device_health",
        "eviction",
        "checkout",
        "checkin",
        "custody",
        "clock_rebased",
        "door_open",
        "note",
    ];
    assert!(KNOWN_KINDS.len() >= v1.len());
    for (i, name) in v1.iter().enumerate() {
        assert_eq!(KNOWN_KINDS[i], *name, "code {} changed meaning", i + 1);
        assert_eq!(Kind::known(name).code(), i as u64 + 1);
    }
}

/// The columns of a batch body as `docs/PROTOCOL.md` lays them out, written by hand
/// so the tests can say things the encoder never would.
#[derive(Default)]
struct Body {
    boots: Vec<[u8; 16]>,
    n_events: u64,
    seqs: Vec<u8>,
    boot_ix: Vec<u8>,
    monos: Vec<u8>,
    walls: Vec<u8>,
    hlcs: Vec<u8>,
    kinds: Vec<u8>,
    meta: Vec<u8>,
    tags: Vec<u8>,
    positions: Vec<u8>,
    jsons: Vec<u8>,
}

impl Body {
    /// Appends an event one seq after the previous, on boot 0, at mono 1000·n ms,
    /// wall = mono + 1.7e12, hlc = wall, priority normal, config 1.
    fn event(&mut self, kind_code: u64, tag: u8, payload: &[u8]) {
        let first = self.n_events == 0;
        self.n_events += 1;
        put_u64(&mut self.seqs, 0);
        put_u64(&mut self.boot_ix, 0);
        put_i64(&mut self.monos, 1000);
        put_i64(&mut self.walls, if first { 1_700_000_000_000 } else { 0 });
        put_i64(&mut self.hlcs, 0);
        put_u64(&mut self.hlcs, 0);
        put_u64(&mut self.kinds, kind_code);
        self.meta.push(Priority::Normal as u8);
        put_i64(&mut self.meta, if first { 1 } else { 0 });
        self.tags.push(tag);
        match tag {
            1 => self.positions.extend_from_slice(payload),
            2 => {
                put_u64(&mut self.jsons, payload.len() as u64);
                self.jsons.extend_from_slice(payload);
            }
            _ => {}
        }
    }

    fn frame(&self, tenant: Uuid, device: Uuid, first_seq: u64, last_seq: u64) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(tenant.as_bytes());
        b.extend_from_slice(device.as_bytes());
        put_u64(&mut b, first_seq);
        put_u64(&mut b, last_seq - first_seq);
        put_u64(&mut b, self.n_events);
        put_u64(&mut b, 0);
        put_u64(&mut b, self.boots.len() as u64);
        for boot in &self.boots {
            b.extend_from_slice(boot);
        }
        for s in [
            &self.seqs,
            &self.boot_ix,
            &self.monos,
            &self.walls,
            &self.hlcs,
            &self.kinds,
            &self.meta,
            &self.tags,
            &self.positions,
            &self.jsons,
        ] {
            put_u64(&mut b, s.len() as u64);
            b.extend_from_slice(s);
        }
        frame_of(0, b.len() as u32, crc32fast::hash(&b), &b)
    }
}

/// A position with only latitude and longitude (fix 2), as the first of its batch.
fn position_bytes(lat_e7: i64, lon_e7: i64) -> Vec<u8> {
    let mut p = vec![2 << 5];
    put_i64(&mut p, lat_e7);
    put_i64(&mut p, lon_e7);
    p
}

#[test]
fn the_encoder_writes_the_documented_layout() {
    let boot = BootId([7; 16]);
    let events = vec![
        Event {
            seq: 1,
            kind: Kind::known("ignition_on"),
            priority: Priority::Normal,
            time: EventTime {
                boot_id: boot,
                mono_ms: 1000,
                wall_ms: 1_700_000_001_000,
                hlc: Hlc::new(1_700_000_001_000, 0),
            },
            config_version: 1,
            data: EventData::None,
        },
        Event {
            seq: 2,
            kind: Kind::known("position"),
            priority: Priority::Normal,
            time: EventTime {
                boot_id: boot,
                mono_ms: 2000,
                wall_ms: 1_700_000_002_000,
                hlc: Hlc::new(1_700_000_002_000, 0),
            },
            config_version: 1,
            data: EventData::Position(Position {
                lat_e7: 523_000_000,
                lon_e7: 134_000_000,
                alt_dm: None,
                speed_cms: None,
                heading_cdeg: None,
                hdop_d: None,
                sats: None,
                fix: 2,
            }),
        },
    ];
    let (tenant, device) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let header = BatchHeader {
        tenant_id: tenant,
        device_id: device,
        first_seq: 1,
        last_seq: 2,
        anchors: Vec::new(),
    };

    let mut body = Body {
        boots: vec![boot.0],
        ..Body::default()
    };
    body.event(2, 0, &[]);
    body.event(1, 1, &position_bytes(523_000_000, 134_000_000));

    assert_eq!(
        encode_batch(&header, &events, 0).unwrap(),
        body.frame(tenant, device, 1, 2)
    );
}

#[test]
fn bad_events_are_rejected_one_by_one_and_the_rest_of_the_batch_is_kept() {
    let (tenant, device) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let mut body = Body {
        boots: vec![[9; 16]],
        ..Body::default()
    };
    body.event(2, 0, &[]); // seq 10: ignition_on, fine
    body.event(60_000, 0, &[]); // seq 11: a kind code from a newer agent
    body.event(1, 1, &position_bytes(2_000_000_000, 0)); // seq 12: latitude 200°
    body.event(21, 2, b"{\"rpm\": 8"); // seq 13: broken JSON
    body.event(21, 2, b"[1,2]"); // seq 14: JSON that is not an object
    body.event(21, 2, b"{\"rpm\":800}"); // seq 15: fine
    let frame = body.frame(tenant, device, 10, 17);

    let batch = decode_batch(&frame).unwrap();
    assert_eq!(
        batch.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [10, 15]
    );
    assert_eq!(
        batch.events[1].data,
        EventData::Json(serde_json::json!({"rpm": 800}))
    );
    let rejects: Vec<(u64, &str)> = batch
        .rejects
        .iter()
        .map(|r| (r.seq, r.reason.as_str()))
        .collect();
    assert_eq!(rejects.len(), 4, "{rejects:?}");
    assert_eq!(rejects[0], (11, "unknown kind code 60000"));
    assert_eq!(rejects[1].0, 12);
    assert!(rejects[1].1.contains("latitude"), "{}", rejects[1].1);
    assert_eq!(rejects[2].0, 13);
    assert!(rejects[2].1.contains("not valid JSON"), "{}", rejects[2].1);
    assert_eq!(rejects[3], (14, "json payload is not an object"));
    // Seqs 16 and 17 carry nothing: the device evicted them.
    assert_eq!(batch.evicted_count(), 2);
    // The operator sees what could be read of a reject.
    assert_eq!(
        batch.rejects[1].raw["data"]["lat"],
        serde_json::json!(200.0)
    );
}

#[test]
fn an_inline_kind_name_that_breaks_the_naming_rule_is_rejected_not_fatal() {
    let (tenant, device) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let mut body = Body {
        boots: vec![[9; 16]],
        ..Body::default()
    };
    body.event(0, 0, &[]);
    put_u64(&mut body.kinds, 5);
    body.kinds.extend_from_slice(b"Bad!!");
    body.event(0, 0, &[]);
    put_u64(&mut body.kinds, 9);
    body.kinds.extend_from_slice(b"door.rear");
    let batch = decode_batch(&body.frame(tenant, device, 1, 2)).unwrap();
    assert_eq!(batch.rejects.len(), 1);
    assert_eq!(batch.rejects[0].seq, 1);
    assert_eq!(batch.events.len(), 1);
    assert_eq!(batch.events[0].kind, Kind::new("door.rear"));
}

#[test]
fn a_structural_lie_refuses_the_whole_batch() {
    let (tenant, device) = (Uuid::from_u128(1), Uuid::from_u128(2));
    // Three events claimed in a range of two seqs.
    let mut body = Body {
        boots: vec![[9; 16]],
        ..Body::default()
    };
    for _ in 0..3 {
        body.event(2, 0, &[]);
    }
    assert!(matches!(
        decode_batch(&body.frame(tenant, device, 1, 2)),
        Err(BatchError::Malformed(_))
    ));
    // A data tag this version doesn't know can't be skipped: its length is unknown.
    let mut body = Body {
        boots: vec![[9; 16]],
        ..Body::default()
    };
    body.event(2, 9, &[]);
    assert!(matches!(
        decode_batch(&body.frame(tenant, device, 1, 1)),
        Err(BatchError::Malformed(_))
    ));
    // A first seq of 0.
    let body = Body::default();
    assert!(matches!(
        decode_batch(&body.frame(tenant, device, 0, 0)),
        Err(BatchError::Malformed(_))
    ));
}

#[test]
fn an_empty_range_batch_reports_every_seq_as_evicted() {
    let h = BatchHeader {
        first_seq: 5,
        last_seq: 9,
        ..header()
    };
    let batch = decode_batch(&encode_batch(&h, &[], 3).unwrap()).unwrap();
    assert!(batch.events.is_empty());
    assert_eq!(batch.evicted_count(), 5);
}
