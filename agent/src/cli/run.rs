use crate::config::AgentConfig;
use crate::daemon::{self, RunOptions};
use crate::pipeline::SimOptions;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The config file (TOML); defaults and FLEET_* variables apply without one.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where to keep data; overrides `data_dir` from the config.
    #[arg(long = "data", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Log lines as `text` (journald-friendly under systemd) or `json`;
    /// overrides `[log] format`.
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<crate::config::LogFormat>,
    /// Run on simulated vehicle sources instead of the configured hardware.
    #[arg(long)]
    simulate: bool,
    /// Seed of the simulation.
    #[arg(long, default_value_t = 1, requires = "simulate")]
    seed: u64,
    /// How many times faster than real time the simulation or the replays run;
    /// 0 replays as fast as possible.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Replay a candump `-l` log as the CAN bus (instead of `[sources.candump]`).
    #[arg(long, value_name = "FILE")]
    replay_can: Option<PathBuf>,
    /// Replay an NMEA log as the GNSS receiver (instead of `[sources.nmea_file]`).
    #[arg(long, value_name = "FILE")]
    replay_nmea: Option<PathBuf>,
    /// Stop once every replay has reached its end.
    #[arg(long)]
    exit_at_end: bool,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut cfg = AgentConfig::load(args.config.as_deref())?;
    if let Some(dir) = args.data_dir {
        cfg.data_dir = dir;
    }
    if let Some(format) = args.log_format {
        cfg.log.format = format;
    }
    super::init_logging(&cfg.log.level, cfg.log.format);
    let replaying = args.replay_can.is_some() || args.replay_nmea.is_some();
    if args.simulate && !(args.speed > 0.0 && args.speed.is_finite()) {
        anyhow::bail!("--speed must be a positive number, got {}", args.speed);
    }
    if !args.simulate && !replaying && args.speed != 1.0 {
        anyhow::bail!("--speed needs --simulate, --replay-can or --replay-nmea");
    }
    let replay = |file| crate::pipeline::ReplayConfig {
        file,
        speed: args.speed,
    };
    if let Some(f) = args.replay_can {
        cfg.sources.candump = Some(replay(f));
    }
    if let Some(f) = args.replay_nmea {
        cfg.sources.nmea_file = Some(replay(f));
    }
    cfg.sources.exit_at_end |= args.exit_at_end;
    cfg.validate()?;
    let opts = RunOptions {
        data_dir: cfg.data_dir.clone(),
        simulate: args.simulate.then_some(SimOptions {
            seed: args.seed,
            speed: args.speed,
        }),
        ..RunOptions::default()
    };
    daemon::run(cfg, opts).await
}
