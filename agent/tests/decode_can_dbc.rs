//! DBC-defined signals decoded from the fixture DBC files: byte orders, signs,
//! value tables, multiplexing (simple, SG_MUL_VAL_ and cascaded) and J1939 PGN
//! matching.

use fleet_agent::decode::dbc::{Database, DecodeStats};

fn fixture(path: &str) -> Database {
    Database::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../../shared/fixtures/{path}")),
    )
    .expect(path)
}

fn decode(
    db: &Database,
    id: u32,
    extended: bool,
    data: &[u8],
) -> Vec<(String, f64, Option<String>)> {
    let mut out = Vec::new();
    let mut stats = DecodeStats::default();
    db.decode_data(id, extended, data, &mut stats, |v| {
        out.push((v.signal.name.clone(), v.value, v.choice.map(str::to_owned)))
    })
    .expect("known id");
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn motohawk_example_decodes_as_the_cantools_documentation_says() {
    let db = fixture("can/cantools-motohawk.dbc");
    let got = decode(&db, 0x1F0, false, &[0x80, 0x4A, 0x0F, 0, 0, 0, 0, 0]);
    assert_eq!(got[0], ("AverageRadius".into(), 0.0, None));
    assert_eq!(got[1], ("Enable".into(), 1.0, Some("Enabled".into())));
    assert_eq!(got[2].0, "Temperature");
    assert!((got[2].1 - 255.92).abs() < 1e-9, "{}", got[2].1);
}

#[test]
fn signed_fields_of_every_width_sign_extend_in_both_byte_orders() {
    let db = fixture("can/cantools-signed.dbc");
    // s64 little-endian: all ones is -1.
    assert_eq!(decode(&db, 2, false, &[0xFF; 8])[0].1, -1.0);
    // s64big: 0x80.. is i64::MIN.
    assert_eq!(
        decode(&db, 3, false, &[0x80, 0, 0, 0, 0, 0, 0, 0])[0].1,
        i64::MIN as f64
    );
    // s33 little-endian: bit 32 set, the rest clear, is -2^32.
    assert_eq!(
        decode(&db, 1, false, &[0, 0, 0, 0, 1, 0, 0, 0])[0].1,
        -4_294_967_296.0
    );
    // s33big at start bit 7: the MSB of byte 0.
    assert_eq!(
        decode(&db, 4, false, &[0x80, 0, 0, 0, 0, 0, 0, 0])[0].1,
        -4_294_967_296.0
    );
    // s8big at start bit 0 spans byte 0 bit 0 and byte 1 bits 7..1.
    let m = decode(&db, 10, false, &[0x01, 0x00, 0, 0, 0, 0, 0, 0]);
    let s8big = m.iter().find(|s| s.0 == "s8big").expect("s8big");
    assert_eq!(s8big.1, -128.0);
}

#[test]
fn negative_value_table_key_and_latin1_label_are_read() {
    let db = fixture("can/cantools-choices.dbc");
    let got = decode(&db, 0, false, &[0xFB, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        got[0],
        ("Foo".into(), -5.0, Some("A negative value".into()))
    );
    let got = decode(&db, 0, false, &[1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(got[0].2.as_deref(), Some("#%=*\u{e4}'"));
}

#[test]
fn sg_mul_val_ranges_select_signals_for_several_multiplexor_values() {
    let db = fixture("can/cantools-multiplex.dbc");
    let m = db
        .lookup(0x123456, true)
        .expect("extended id without bit 31");
    assert!(m.extended);
    // Multiplexor 16 (bits 2..8 = 0x40): BIT_L (m8 with ranges 8, 16, 24) is present,
    // BIT_A (m24 only) is not.
    let got = decode(&db, 0x123456, true, &[0x40, 0, 0, 0x01, 0, 0, 0, 0]);
    let names: Vec<_> = got.iter().map(|s| s.0.as_str()).collect();
    assert!(names.contains(&"BIT_L"), "{names:?}");
    assert!(!names.contains(&"BIT_A"), "{names:?}");
    assert_eq!(got.iter().find(|s| s.0 == "BIT_L").map(|s| s.1), Some(1.0));
}

#[test]
fn cascaded_multiplexing_follows_the_chain_of_multiplexors() {
    let db = fixture("can/cantools-issue_184_extended_mux_cascaded.dbc");
    // MUX_A = 2 selects muxed_A_2_MUX_B = 1, which selects muxed_B_1.
    let got = decode(&db, 1, true, &[2, 1, 0, 0xFE, 0, 0, 0, 0]);
    let names: Vec<_> = got.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, vec!["MUX_A", "muxed_A_2_MUX_B", "muxed_B_1"]);
    assert_eq!(got[2].1, -2.0);
    // MUX_A = 1: only muxed_A_1.
    let got = decode(&db, 1, true, &[1, 7, 0, 0, 0, 0, 0, 0]);
    let names: Vec<_> = got.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, vec!["MUX_A", "muxed_A_1"]);
}

#[test]
fn j1939_messages_match_by_pgn_whatever_priority_and_source() {
    let db = fixture("j1939/CSS-Electronics-SAE-J1939-DEMO.dbc");
    // The truck's EEC1 is 0CF00400: priority 3, SA 0x00; the DBC says 8CF004FE.
    let got = decode(&db, 0x0CF0_0400, true, &[0, 0, 0, 0x68, 0x13, 0, 0, 0]);
    assert_eq!(got, vec![("EngineSpeed".into(), 621.0, None)]);
    assert_eq!(
        db.lookup(0x0CF0_0400, true).map(|m| m.signals[0].spn),
        Some(Some(190))
    );
    assert!(db.lookup(0x0CF0_0400, false).is_none());
}

#[test]
fn pdu1_pgn_drops_the_destination_byte() {
    let db = fixture("j1939/cantools-j1939.dbc");
    // Message1 is 15340201 (PDU1, PGN 0x13400, DA 02): another destination and
    // source still match it.
    let m = db.lookup(0x1934_0533, true).expect("PDU1 PGN match");
    assert_eq!(m.name, "Message1");
    assert_eq!(decode(&db, 0x1934_0533, true, &[0xFF])[0].1, -1.0);
}

#[test]
fn signals_past_a_short_frame_are_counted_not_decoded() {
    let db = fixture("can/cantools-motohawk.dbc");
    let mut stats = DecodeStats::default();
    let mut n = 0;
    db.decode_data(0x1F0, false, &[0x80], &mut stats, |_| n += 1);
    assert_eq!(n, 2, "Enable and AverageRadius fit in byte 0");
    assert_eq!(stats.truncated_signals, 1, "Temperature spans three bytes");
    assert!(db
        .decode_data(0x7FF, false, &[0], &mut stats, |_| ())
        .is_none());
    assert_eq!(stats.unknown_id, 1);
}

#[test]
fn a_multiplexor_cycle_is_rejected_with_a_clear_message() {
    let text = "VERSION \"\"\nNS_ :\nBS_:\nBU_:\nBO_ 2147483649 M: 8 Vector__XXX\n SG_ A m1M : 0|8@1+ (1,0) [0|0] \"\" Vector__XXX\n SG_ B m1M : 8|8@1+ (1,0) [0|0] \"\" Vector__XXX\n\nSG_MUL_VAL_ 2147483649 A B 1-1;\nSG_MUL_VAL_ 2147483649 B A 1-1;\n";
    let e = Database::parse(text).expect_err("cycle");
    assert!(e.to_string().contains("cycle"), "{e}");
    let e = Database::parse("BO_ nonsense").expect_err("garbage");
    assert!(e.to_string().starts_with("not a DBC file"), "{e}");
}

#[test]
fn motorola_layouts_of_a_real_car_stay_inside_their_frames() {
    for f in [
        "can/opendbc-toyota_prius_2010_pt.dbc",
        "can/opendbc-hyundai_santafe_2007.dbc",
    ] {
        let db = fixture(f);
        for m in db.messages() {
            let mut n = 0;
            let truncated = m.decode(&vec![0xA5; m.size], |_| n += 1);
            assert_eq!(truncated, 0, "{f} {}", m.name);
            assert!(n > 0 || m.signals.is_empty(), "{f} {}", m.name);
        }
    }
}

/// A light-vehicle bus: engine speed in an 11-bit message, tagged with SPN 190.
const CAR_DBC: &str = "VERSION \"\"\nNS_ :\nBS_:\nBU_: ECM\n\
BO_ 513 ENGINE: 8 ECM\n SG_ RPM : 7|16@0+ (0.25,0) [0|16383.75] \"rpm\" Vector__XXX\n\
 SG_ Gear : 16|4@1+ (1,0) [0|15] \"\" Vector__XXX\n\n\
BA_DEF_ SG_ \"SPN\" INT 0 524287;\nBA_ \"SPN\" SG_ 513 RPM 190;\n";

#[test]
fn dbc_signals_with_an_spn_feed_the_rules_engine() {
    use fleet_agent::pipeline::Processor;
    use fleet_agent::rules::RulesConfig;
    use fleet_hal::CanFrame;

    let run = |with_dbc: bool| {
        let mut p = Processor::new(RulesConfig::default());
        if with_dbc {
            p.set_dbc(Database::parse(CAR_DBC).expect("dbc"));
        }
        let mut out = Vec::new();
        // 850 rpm (raw 3400 = 0x0D48, big-endian) at 10 Hz for 30 s.
        for i in 0..300u64 {
            let f = CanFrame::new(0x201, false, &[0x0D, 0x48, 3, 0, 0, 0, 0, 0], i * 100_000)
                .expect("frame");
            p.on_can(&f, i * 100, &mut out);
        }
        (p.engine().ignition(), p.dbc_stats())
    };
    let (ignition, stats) = run(true);
    assert!(ignition, "engine speed from the DBC turns ignition on");
    assert_eq!((stats.decoded, stats.unknown_id), (300, 0));
    let (ignition, _) = run(false);
    assert!(!ignition, "without the DBC the frames mean nothing");
}
