//! `fleet-agent`: see `fleet-agent --help`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    fleet_agent::cli::main().await
}
