//! Any bytes from an ELM327 adapter: through the prompt framer, the reply and
//! data-line parsers and ISO-TP assembly for every bus kind with headers on and
//! off, and through the transcript decoder of `fleet-agent decode obd`. Nothing
//! panics, and the framer never holds more than one reply's worth of bytes.
#![no_main]

use fleet_agent::decode::elm327::TranscriptParser;
use fleet_hal::elm327::reply::MAX_REPLY;
use fleet_hal::elm327::{assemble, parse_reply, BusKind, ReplyFramer};
use libfuzzer_sys::fuzz_target;

const COMMANDS: &[&str] = &["0100", "010C0D05", "03", "0902", "ATZ", ""];

fuzz_target!(|data: &[u8]| {
    let mut framer = ReplyFramer::new();
    // Arrive in two reads, split where the input says, as a serial port delivers.
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    for part in [&data[..cut], &data[cut..]] {
        framer.push(part);
        assert!(framer.pending() <= MAX_REPLY + 1);
        while let Some(reply) = framer.next_reply() {
            for command in COMMANDS {
                let Ok(parsed) = parse_reply(command, &reply.text) else {
                    continue;
                };
                for kind in [BusKind::Can11, BusKind::Can29, BusKind::Legacy] {
                    for headers in [true, false] {
                        let _ = assemble(&parsed, kind, headers);
                    }
                }
            }
        }
    }

    let mut transcript = TranscriptParser::new();
    transcript.push(data);
    while let Some(x) = transcript.next_exchange() {
        let _ = transcript.decode(&x);
    }
    if let Some(x) = transcript.finish() {
        let _ = transcript.decode(&x);
    }
});
