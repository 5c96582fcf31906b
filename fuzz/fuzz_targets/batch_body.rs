//! Any bytes as a batch body, framed with a correct checksum: reaches the column
//! decoder that `batch_decode` mostly can't get past the checksum to. The decoder
//! must never panic, and whatever it accepts must survive a re-encode unchanged.
#![no_main]

use fleet_protocol::batch::{FRAME_HEADER_LEN, MAGIC, VERSION};
use fleet_protocol::{decode_batch, encode_batch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    frame.extend_from_slice(&MAGIC);
    frame.push(VERSION);
    frame.push(0);
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    frame.extend_from_slice(body);
    let Ok(batch) = decode_batch(&frame) else {
        return;
    };
    assert!(
        batch.events.len() + batch.rejects.len()
            <= (batch.header.last_seq - batch.header.first_seq + 1) as usize
    );
    let again = encode_batch(&batch.header, &batch.events, 0).expect("a decoded batch re-encodes");
    let again = decode_batch(&again).expect("a re-encoded batch decodes");
    assert_eq!(again.header, batch.header);
    assert_eq!(again.events, batch.events);
});
