//! `fleet-agent decode …`: offline decoders that print one JSON object per
//! decoded item, so a user can check a capture without running the agent.
//! Each input format lives in its own module.

pub mod candump;
pub mod j1939;
pub mod nmea;
pub mod obd;
pub mod qr;

use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct DecodeArgs {
    #[command(subcommand)]
    pub what: DecodeCommand,
}

#[derive(Debug, Subcommand)]
pub enum DecodeCommand {
    /// An ELM327 transcript (commands and the adapter's replies) to JSON lines.
    Obd {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// An NMEA 0183 log to gpsd-style TPV and SKY JSON lines.
    Nmea {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Move dates before this day (YYYY-MM-DD) forward by 1024-week GPS eras,
        /// for receivers that missed a week-number wrap; 2019-04-06 gives gpsd's
        /// times. Without it, dates are the receiver's.
        #[arg(long, value_name = "DATE")]
        rollover_floor: Option<String>,
    },
    /// A candump log (`-l` or default text format) decoded by a DBC file, one
    /// JSON object per decoded message; unknown ids and bad lines are counted.
    Candump {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The DBC file that defines the bus's messages.
        #[arg(long, value_name = "DBC")]
        dbc: PathBuf,
    },
    /// A candump log of a J1939 bus: SPNs in engineering units, DM1 codes and
    /// lamps, transport-reassembled messages.
    J1939 {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// QR codes in JPEG or PNG images: one line per image with each code's
    /// text and corners; exits non-zero if any file could not be read.
    Qr {
        #[arg(value_name = "IMAGE", required = true)]
        images: Vec<PathBuf>,
    },
}

pub async fn run(args: DecodeArgs) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match args.what {
        DecodeCommand::Obd { file } => {
            let summary = obd::decode_obd_file(&file, &mut out)?;
            out.flush()?;
            eprintln!(
                "{}: {} exchanges, {} items, {} errors",
                file.display(),
                summary.exchanges,
                summary.items,
                summary.errors
            );
        }
        DecodeCommand::Nmea {
            file,
            rollover_floor,
        } => {
            let floor = rollover_floor
                .as_deref()
                .map(nmea::parse_date)
                .transpose()?;
            let s = nmea::decode_nmea_file(&file, floor, &mut out)?;
            out.flush()?;
            eprintln!(
                "{}: {} sentences ({} without checksum), {} bad, {} ignored; {} TPV ({} with a fix), {} SKY",
                file.display(),
                s.sentences,
                s.unchecked,
                s.bad,
                s.ignored,
                s.tpv,
                s.fixes,
                s.sky
            );
        }
        DecodeCommand::Candump { file, dbc } => {
            let s = candump::decode_candump_file(&file, &dbc, &mut out)?;
            out.flush()?;
            eprintln!(
                "{}: {} lines, {} frames, {} decoded, {} unknown ({} distinct ids), {} transport frames, {} bad lines, {} signals past the end of their frame",
                file.display(),
                s.lines.lines,
                s.lines.frames,
                s.decoded,
                s.unknown_frames,
                s.unknown_ids.len(),
                s.transport_frames,
                s.lines.bad,
                s.truncated_signals
            );
        }
        DecodeCommand::J1939 { file } => {
            let s = j1939::decode_j1939_file(&file, &mut out)?;
            out.flush()?;
            eprintln!(
                "{}: {} lines, {} frames, {} bad lines; {} parameter groups, {} DM1, {} other messages; transport {} completed, {} dropped; {} non-J1939 frames",
                file.display(),
                s.lines.lines,
                s.lines.frames,
                s.lines.bad,
                s.groups,
                s.dm1,
                s.messages,
                s.tp_completed,
                s.tp_dropped,
                s.skipped
            );
        }
        DecodeCommand::Qr { images } => {
            let s = qr::decode_qr_files(&images, &mut out)?;
            out.flush()?;
            eprintln!(
                "{} images: {} codes, {} with none, {} unreadable",
                s.images + s.errors,
                s.codes,
                s.empty,
                s.errors
            );
            if s.errors > 0 {
                anyhow::bail!("{} of {} files could not be read", s.errors, images.len());
            }
        }
    }
    out.flush()?;
    Ok(())
}
