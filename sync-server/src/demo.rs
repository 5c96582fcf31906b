//! `fleet-sync demo`: the server plus simulated vehicles.

use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Where the demo keeps its data.
    #[arg(long, env = "FLEET_DATA", default_value = "./fleet-data")]
    pub data: PathBuf,
    /// Address the server listens on.
    #[arg(long, env = "FLEET_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// How many simulated vehicles to run.
    #[arg(long, default_value_t = 20)]
    pub vehicles: u32,
    /// Seed of the simulation.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("demo not built yet")
}
