//! `fleet-sync`: serve the API, administer tenants and devices, run the demo.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

#[derive(Parser)]
#[command(name = "fleet-sync", version, about = "The fleet cloud sync server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the device and operator APIs and the dashboard.
    Serve {
        #[arg(long, env = "FLEET_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        #[arg(long, env = "FLEET_DATA", default_value = "./fleet-data")]
        data: PathBuf,
    },
    /// Administer tenants, enrollment tokens and devices.
    Admin {
        #[arg(long, env = "FLEET_DATA", default_value = "./fleet-data")]
        data: PathBuf,
        #[command(subcommand)]
        command: Admin,
    },
    /// Run the server with simulated vehicles.
    #[cfg(feature = "demo")]
    Demo(fleet_sync::demo::DemoArgs),
}

#[derive(Subcommand)]
enum Admin {
    Tenant {
        #[command(subcommand)]
        command: TenantCmd,
    },
    EnrollmentToken {
        #[command(subcommand)]
        command: TokenCmd,
    },
    Device {
        #[command(subcommand)]
        command: DeviceCmd,
    },
}

#[derive(Subcommand)]
enum TenantCmd {
    /// Create a tenant; prints {"tenant_id", "api_key"}. The key is shown only once.
    Create {
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create an enrollment token; prints {"token", "expires_at"}.
    Create {
        #[arg(long)]
        tenant: Uuid,
        /// How long the token stays valid: a number with s, m, h or d.
        #[arg(long, default_value = "24h", value_parser = parse_ttl)]
        ttl: Duration,
        /// How many devices may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
    },
}

#[derive(Subcommand)]
enum DeviceCmd {
    /// Revoke a device's credentials; its next request is refused.
    Revoke {
        #[arg(long)]
        device: Uuid,
    },
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 90s, 30m, 24h or 7d"))?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" | "" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => return Err(format!("unknown unit {unit:?}; use s, m, h or d")),
    };
    secs.filter(|&s| s > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is zero or too long"))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(v)?);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve { listen, data } => {
            let storage = fleet_sync::open_sqlite(&data).await?;
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            tracing::info!(addr = %listener.local_addr()?, data = %data.display(), "fleet-sync listening");
            fleet_sync::serve(
                listener,
                fleet_sync::AppState::new(storage),
                shutdown_signal(),
            )
            .await?;
        }
        Command::Admin { data, command } => {
            let storage = fleet_sync::open_sqlite(&data).await?;
            match command {
                Admin::Tenant {
                    command: TenantCmd::Create { name },
                } => print_json(&storage.create_tenant(&name).await?)?,
                Admin::EnrollmentToken {
                    command: TokenCmd::Create { tenant, ttl, uses },
                } => print_json(&storage.create_enrollment_token(tenant, ttl, uses).await?)?,
                Admin::Device {
                    command: DeviceCmd::Revoke { device },
                } => {
                    let d = storage
                        .revoke_device(device, fleet_sync::storage::now_ms())
                        .await?;
                    print_json(
                        &serde_json::json!({ "device_id": d.device_id, "tenant_id": d.tenant_id, "revoked": d.revoked }),
                    )?
                }
            }
        }
        #[cfg(feature = "demo")]
        Command::Demo(args) => fleet_sync::demo::run(args).await?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;
    use std::time::Duration;

    #[test]
    fn ttl_accepts_units_and_refuses_nonsense() {
        assert_eq!(parse_ttl("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_ttl("0h").is_err());
        assert!(parse_ttl("3 weeks").is_err());
        assert!(parse_ttl("h").is_err());
    }
}
