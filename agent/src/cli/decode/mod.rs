//! `fleet-agent decode …`: offline decoders that print one JSON object per
//! decoded item, so a user can check a capture without running the agent.
//! Each input format lives in its own module.

pub mod obd;

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
    }
    out.flush()?;
    Ok(())
}
