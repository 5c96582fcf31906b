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
    /// Run on simulated vehicle sources instead of the configured hardware.
    #[arg(long)]
    simulate: bool,
    /// Seed of the simulation.
    #[arg(long, default_value_t = 1, requires = "simulate")]
    seed: u64,
    /// How many times faster than real time the simulation runs.
    #[arg(long, default_value_t = 1.0, requires = "simulate")]
    speed: f64,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut cfg = AgentConfig::load(args.config.as_deref())?;
    if let Some(dir) = args.data_dir {
        cfg.data_dir = dir;
    }
    super::init_logging(&cfg.log.level, cfg.log.format);
    if !(args.speed > 0.0 && args.speed.is_finite()) {
        anyhow::bail!("--speed must be a positive number, got {}", args.speed);
    }
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
