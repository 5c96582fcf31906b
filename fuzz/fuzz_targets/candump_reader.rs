//! Any bytes as a candump `-l` log: every line either parses or is an error
//! (never a panic); a parsed frame writes back to a line that parses to the same
//! frame; and the replay source hands out exactly the frames the line parser
//! accepts, counting every other non-blank, non-comment line as bad.
#![no_main]

use fleet_hal::candump::{format_line, parse_line, CandumpReplay, Pace};
use fleet_hal::{CanError, CanSource};
use libfuzzer_sys::fuzz_target;

thread_local! {
    // One runtime for all inputs: building one per input would be most of the cost.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
}

fuzz_target!(|data: &[u8]| {
    let mut expected = Vec::new();
    let mut bad = 0u64;
    for line in data.split_inclusive(|b| *b == b'\n') {
        let Ok(text) = std::str::from_utf8(line) else {
            bad += 1;
            continue;
        };
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        match parse_line(text) {
            Ok(l) => {
                let f = l.frame;
                assert!(f.len <= 8, "{f:?}");
                assert!(
                    f.id <= if f.extended { 0x1FFF_FFFF } else { 0x7FF },
                    "{f:?}"
                );
                let mut back = String::new();
                format_line(l.interface, &f, &mut back);
                let again = parse_line(&back).unwrap_or_else(|e| panic!("{back:?}: {e}"));
                assert_eq!(again.interface, l.interface);
                let g = again.frame;
                assert_eq!(
                    (g.id, g.extended, g.rtr, g.timestamp_us),
                    (f.id, f.extended, f.rtr, f.timestamp_us),
                    "{back:?}"
                );
                // A remote frame's requested length is not written back.
                if !f.rtr {
                    assert_eq!(g.payload(), f.payload(), "{back:?}");
                }
                expected.push(f);
            }
            Err(_) => bad += 1,
        }
    }

    let (frames, progress) = RUNTIME.with(|rt| {
        rt.block_on(async {
            let mut replay = CandumpReplay::from_reader(data, Pace::Unpaced);
            let mut frames = Vec::new();
            loop {
                match replay.recv().await {
                    Ok(f) => frames.push(f),
                    Err(CanError::Closed) => break,
                    Err(e) => panic!("a replay of bytes in memory failed: {e}"),
                }
            }
            (frames, replay.progress())
        })
    });
    assert_eq!(frames, expected);
    assert_eq!(progress.items, expected.len() as u64);
    assert_eq!(progress.bad_lines, bad);
    assert_eq!(progress.bytes_read, data.len() as u64);
});
