//! `fleet-agent decode obd FILE`: an ELM327 transcript to JSON lines.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::Context;
use serde_json::json;

use crate::decode::elm327::{items_to_json, TranscriptParser};

/// What a transcript held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TranscriptSummary {
    pub exchanges: u64,
    pub items: u64,
    /// Adapter errors, unassemblable frames and undecodable payloads (each is
    /// printed as a JSON line with an `error` or `adapter_error` field).
    pub errors: u64,
}

/// Decodes the transcript at `path`, one JSON object per decoded item to `out`.
pub fn decode_obd_file(path: &Path, out: &mut impl Write) -> anyhow::Result<TranscriptSummary> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut parser = TranscriptParser::new();
    let mut summary = TranscriptSummary::default();
    let mut buf = [0u8; 8192];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        parser.push(&buf[..n]);
        while let Some(x) = parser.next_exchange() {
            write_exchange(&mut parser, &x, out, &mut summary)?;
        }
    }
    if let Some(x) = parser.finish() {
        write_exchange(&mut parser, &x, out, &mut summary)?;
    }
    Ok(summary)
}

fn write_exchange(
    parser: &mut TranscriptParser,
    x: &crate::decode::elm327::Exchange,
    out: &mut impl Write,
    summary: &mut TranscriptSummary,
) -> anyhow::Result<()> {
    summary.exchanges += 1;
    let items = parser.decode(x);
    for mut line in items_to_json(&x.command, &items) {
        if line.get("error").is_some() || line.get("adapter_error").is_some() {
            summary.errors += 1;
        } else {
            summary.items += 1;
        }
        line["source"] = json!("elm327");
        writeln!(out, "{line}")?;
    }
    Ok(())
}
