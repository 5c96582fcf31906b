//! Any bytes, as lines from a GNSS receiver, into the NMEA decoder and the fix
//! assembler: nothing panics, every sentence is counted as decoded or bad, and
//! every reported fix lies on the globe with a gpsd mode.
#![no_main]

use fleet_agent::decode::nmea::{parse, FixAssembler, Report};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut asm = FixAssembler::new();
    let mut reports = Vec::new();
    for line in data.split(|b| *b == b'\n') {
        let text = String::from_utf8_lossy(line);
        let _ = parse(&text);
        asm.push_line_reports(&text, &mut |r| reports.push(r));
        if let Some(fix) = FixAssembler::new().push_line(&text) {
            assert!(fix.lat.abs() <= 90.0 && fix.lon.abs() <= 180.0, "{fix:?}");
        }
    }
    asm.finish_reports(&mut |r| reports.push(r));
    for r in reports {
        match r {
            Report::Tpv(t) => {
                assert!((1..=3).contains(&t.mode), "{t:?}");
                assert_eq!(t.lat.is_some(), t.mode >= 2, "{t:?}");
                if let (Some(lat), Some(lon)) = (t.lat, t.lon) {
                    assert!(lat.abs() <= 90.0 && lon.abs() <= 180.0, "{t:?}");
                }
                if let Some(s) = t.speed_mps {
                    assert!(s.is_finite(), "{t:?}");
                }
            }
            Report::Sky(s) => {
                assert!(s.used.unwrap_or(0) <= 64, "{s:?}");
            }
        }
    }
});
