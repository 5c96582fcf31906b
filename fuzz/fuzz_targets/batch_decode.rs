//! Any bytes into the batch decoder: it must never panic, and whatever it accepts
//! must survive a re-encode and decode unchanged.
#![no_main]

use fleet_protocol::{decode_batch, encode_batch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = decode_batch(data) else {
        return;
    };
    for level in [0, 3] {
        let frame =
            encode_batch(&batch.header, &batch.events, level).expect("a decoded batch re-encodes");
        let again = decode_batch(&frame).expect("a re-encoded batch decodes");
        assert_eq!(again.header, batch.header);
        assert_eq!(again.events, batch.events);
        assert!(
            again.rejects.is_empty(),
            "only valid events were re-encoded"
        );
    }
});
