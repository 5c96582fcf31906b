//! The `fleet-agent` command line.

mod can;
pub mod decode;
mod doctor;
mod enroll;
mod events;
mod note;
pub mod obd;
mod run;
mod status;

use crate::config::{AgentConfig, LogFormat};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "fleet-agent", version, about = "The fleet edge agent")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: record events from the sources and sync them.
    Run(run::RunArgs),
    /// Register this device with a sync server using a one-time token.
    Enroll(enroll::EnrollArgs),
    /// Print the local events.
    Events(events::EventsArgs),
    /// Show, edit or sync a vehicle's shared note.
    Note(note::NoteArgs),
    /// Check a config file and exit (for systemd's ExecStartPre).
    Validate {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Show the outbox: queue depth, oldest unsynced event, last sync, evictions.
    Status(status::StatusArgs),
    /// Check the hardware, the server link and the enrollment; non-zero exit on failure.
    Doctor(doctor::DoctorArgs),
    /// Query a live ELM327 adapter once: PIDs, trouble codes, VIN.
    Obd(obd::ObdArgs),
    /// Decode a capture offline and print one JSON object per line.
    Decode(decode::DecodeArgs),
    /// Record a CAN bus to a candump log, or play a log onto a bus.
    Can(can::CanArgs),
}

/// Parse the command line and run it.
pub async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run::run(args).await,
        Command::Enroll(args) => {
            init_logging("warn", LogFormat::Text);
            enroll::run(args).await
        }
        Command::Events(args) => {
            init_logging("warn", LogFormat::Text);
            events::run(args).await
        }
        Command::Note(args) => {
            init_logging("warn", LogFormat::Text);
            note::run(args).await
        }
        Command::Validate { config } => {
            let cfg = AgentConfig::load(Some(&config))?;
            println!("{}: valid (version {})", config.display(), cfg.version);
            Ok(())
        }
        Command::Status(args) => {
            init_logging("warn", LogFormat::Text);
            status::run(args).await
        }
        Command::Doctor(args) => {
            init_logging("error", LogFormat::Text);
            doctor::run(args).await
        }
        Command::Obd(args) => {
            init_logging("warn", LogFormat::Text);
            obd::run(args).await
        }
        Command::Decode(args) => {
            init_logging("warn", LogFormat::Text);
            decode::run(args).await
        }
        Command::Can(args) => {
            init_logging("warn", LogFormat::Text);
            can::run(args).await
        }
    }
}

/// Log to stderr; `RUST_LOG` wins over `level`. Under systemd (`JOURNAL_STREAM`
/// set) text lines carry no timestamp, since the journal adds its own, and no
/// colour codes; colours only ever go to a terminal.
pub fn init_logging(level: &str, format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!journal && std::io::stderr().is_terminal());
    let _ = match (format, journal) {
        (LogFormat::Text, false) => builder.try_init(),
        (LogFormat::Text, true) => builder.without_time().try_init(),
        (LogFormat::Json, _) => builder.json().try_init(),
    };
}

/// Open the store of an existing data directory (never create one by mistake).
pub(crate) fn open_store(data_dir: &std::path::Path) -> anyhow::Result<crate::store::Store> {
    use crate::clock::Clock;
    let db = data_dir.join(crate::store::DB_FILE);
    if !db.exists() {
        anyhow::bail!(
            "no agent store in {} (expected {})",
            data_dir.display(),
            db.display()
        );
    }
    let boot = crate::clock::SystemClock::new().boot_id();
    Ok(crate::store::Store::open(
        data_dir,
        boot,
        crate::store::StoreOptions::default(),
    )?)
}
