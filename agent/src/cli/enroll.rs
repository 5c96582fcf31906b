use crate::identity::{self, EnrollOptions};
use crate::sync::tls;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The sync server, `https://…` (plain `http://` only to this machine).
    #[arg(long, value_name = "URL")]
    server: String,
    /// The one-time enrollment token from `fleet-sync admin enrollment-token create`.
    #[arg(long, env = "FLEET_ENROLL_TOKEN", hide_env_values = true)]
    token: String,
    /// Where the agent keeps its data; the identity goes to DIR/identity.json.
    #[arg(long = "data", value_name = "DIR")]
    data_dir: PathBuf,
    /// A name for this device (the server picks one otherwise).
    #[arg(long)]
    name: Option<String>,
    /// SHA-256 of the server's certificate (64 hex digits) to check instead of
    /// trusting the first certificate seen.
    #[arg(long, value_name = "SHA256HEX")]
    server_fingerprint: Option<String>,
    /// Enroll as a yard kiosk (kept out of the server's vehicle lists and reports).
    #[arg(long)]
    kiosk: bool,
}

pub async fn run(args: EnrollArgs) -> anyhow::Result<()> {
    let server_fingerprint = args
        .server_fingerprint
        .as_deref()
        .map(tls::parse_fingerprint)
        .transpose()?;
    let id = identity::enroll_with(EnrollOptions {
        server_url: &args.server,
        token: &args.token,
        data_dir: &args.data_dir,
        name: args.name.as_deref(),
        server_fingerprint,
        kind: if args.kiosk {
            fleet_protocol::api::DeviceKind::Kiosk
        } else {
            fleet_protocol::api::DeviceKind::Vehicle
        },
    })
    .await?;
    let out = serde_json::json!({
        "device_id": id.device_id,
        "tenant_id": id.tenant_id,
        "name": id.name,
        "server_url": id.server_url,
        "server_cert_sha256": id.server_pin().map(hex::encode),
        "public_key": id.public_key_b64(),
    });
    println!("{out}");
    Ok(())
}
