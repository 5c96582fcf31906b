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
        /// Keep everything in PostgreSQL (`postgres://user:password@host/db`)
        /// instead of SQLite in --data.
        #[arg(
            long,
            env = "FLEET_DATABASE_URL",
            value_name = "URL",
            hide_env_values = true
        )]
        database_url: Option<String>,
        /// On PostgreSQL, detach (not drop) event partitions of months older than
        /// this many before the current one, checked hourly.
        #[arg(long, env = "FLEET_RETENTION_MONTHS", value_name = "N")]
        retention_months: Option<u32>,
        /// Serve HTTPS with this PEM certificate chain (end-entity first); needs --tls-key.
        #[arg(
            long,
            env = "FLEET_TLS_CERT",
            value_name = "FILE",
            requires = "tls_key"
        )]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(
            long,
            env = "FLEET_TLS_KEY",
            value_name = "FILE",
            requires = "tls_cert"
        )]
        tls_key: Option<PathBuf>,
        /// Serve /metrics (Prometheus text) to requests bearing this token.
        #[arg(
            long,
            env = "FLEET_METRICS_TOKEN",
            value_name = "TOKEN",
            hide_env_values = true
        )]
        metrics_token: Option<String>,
        /// A file holding the operator key, which alone creates and configures
        /// tenants (`/api/v1/tenants`); FLEET_OPERATOR_KEY gives the key itself.
        #[arg(long, value_name = "FILE")]
        operator_key_file: Option<PathBuf>,
        #[arg(long, env = "FLEET_OPERATOR_KEY", hide = true, hide_env_values = true)]
        operator_key: Option<String>,
        /// A file holding the key that seals tenant signing keys at rest (32 bytes,
        /// 64 hex digits or base64); FLEET_KEY_ENCRYPTION_KEY gives the key itself.
        /// Without one the server makes no new signing keys.
        #[arg(long, value_name = "FILE")]
        key_encryption_key_file: Option<PathBuf>,
        #[arg(
            long,
            env = "FLEET_KEY_ENCRYPTION_KEY",
            hide = true,
            hide_env_values = true
        )]
        key_encryption_key: Option<String>,
        /// Let webhooks target loopback and private addresses (closed networks, tests).
        #[arg(long, env = "FLEET_ALLOW_PRIVATE_WEBHOOKS")]
        allow_private_webhooks: bool,
        /// Where uploaded photos and signatures are kept [default: DATA/blobs].
        #[arg(long, env = "FLEET_BLOB_DIR", value_name = "DIR")]
        blob_dir: Option<PathBuf>,
        /// Seconds between live-stream heartbeats; keep it below any proxy's idle
        /// timeout. A client silent for three of these is closed.
        #[arg(long, env = "FLEET_STREAM_HEARTBEAT_SECS", value_name = "SECS", default_value_t = 15,
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        stream_heartbeat_secs: u64,
        /// Live-stream events queued per client before it counts as too slow and
        /// is closed with 4008.
        #[arg(long, env = "FLEET_STREAM_CLIENT_QUEUE", value_name = "N", default_value_t = 1024,
              value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        stream_client_queue: u64,
    },
    /// Administer tenants, enrollment tokens and devices.
    Admin {
        #[arg(long, env = "FLEET_DATA", default_value = "./fleet-data")]
        data: PathBuf,
        /// Keep everything in PostgreSQL (`postgres://user:password@host/db`)
        /// instead of SQLite in --data.
        #[arg(
            long,
            env = "FLEET_DATABASE_URL",
            value_name = "URL",
            hide_env_values = true
        )]
        database_url: Option<String>,
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
    /// A tenant's users: create, list, disable.
    User {
        #[command(subcommand)]
        command: UserCmd,
    },
    /// A tenant's API keys: create, list, revoke.
    Key {
        #[command(subcommand)]
        command: KeyCmd,
    },
    /// Monthly event partitions on PostgreSQL: list, or detach for retention.
    Partitions {
        #[command(subcommand)]
        command: PartitionsCmd,
    },
    /// Signed QR labels for kiosks (asset and vehicle tags, key tags, driver badges).
    Label {
        #[command(subcommand)]
        command: LabelCmd,
    },
    /// Tenant signing keys at rest: re-seal them under a new key-encryption key.
    SigningKey {
        #[command(subcommand)]
        command: SigningKeyCmd,
    },
    /// Write a self-signed certificate and key to DIR/tls/ for a test yard; prints
    /// {"cert", "key", "sha256"}, the fingerprint `fleet-agent enroll
    /// --server-fingerprint` takes.
    TlsCert {
        /// DNS names or IP addresses the certificate is valid for.
        #[arg(long = "hostname", value_name = "NAME", required = true)]
        hostnames: Vec<String>,
    },
}

#[derive(Subcommand)]
enum PartitionsCmd {
    /// List the monthly event partitions (PostgreSQL), attached or detached.
    List,
    /// Detach the partitions of months older than N before the current one; the
    /// tables stay, outside `events`, to archive or drop. Prints {"detached": […]}.
    Detach {
        #[arg(long, value_name = "N")]
        older_than_months: u32,
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

#[derive(Subcommand)]
enum UserCmd {
    /// Create a user; prints the user as `GET /api/v1/users/{id}` does.
    Create {
        #[arg(long)]
        tenant: Uuid,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// admin, manager, dispatcher, driver, technician or read_only.
        #[arg(long)]
        role: String,
        /// Also set the dashboard password, read as the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's dashboard password, read as the first line of standard input;
    /// ends the user's sessions.
    SetPassword {
        #[arg(long)]
        tenant: Uuid,
        #[arg(long)]
        user: Uuid,
    },
    /// List the tenant's users; prints {"users": […]}.
    List {
        #[arg(long)]
        tenant: Uuid,
    },
    /// Disable a user: their keys stop working at once.
    Disable {
        #[arg(long)]
        tenant: Uuid,
        #[arg(long)]
        user: Uuid,
    },
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Create an API key; prints it with its "secret", shown only this once.
    Create {
        #[arg(long)]
        tenant: Uuid,
        #[arg(long)]
        name: String,
        /// admin, manager, dispatcher, driver, technician or read_only.
        #[arg(long)]
        role: String,
        /// The user the key signs in as (its role may not exceed theirs).
        #[arg(long)]
        user: Option<Uuid>,
        /// RFC 3339 time after which the key is refused.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List the tenant's keys (never their secrets); prints {"keys": […]}.
    List {
        #[arg(long)]
        tenant: Uuid,
    },
    /// Revoke a key; its next request is refused.
    Revoke {
        #[arg(long)]
        tenant: Uuid,
        #[arg(long)]
        key: Uuid,
    },
}

#[derive(Subcommand)]
enum SigningKeyCmd {
    /// Re-seal every tenant's signing key from the old key-encryption key to the
    /// new one, one transaction and audit entry per tenant; a wrong old key
    /// changes nothing. Prints {"tenants", "resealed", "sealed_plain", "unchanged", …}.
    /// Then start the server with the new key.
    Reseal {
        /// The key-encryption key the signing keys are sealed with now.
        #[arg(long, value_name = "FILE")]
        old_key_file: PathBuf,
        /// The key-encryption key to seal them with.
        #[arg(long, value_name = "FILE")]
        new_key_file: PathBuf,
    },
}

#[derive(Subcommand)]
enum LabelCmd {
    /// Issue a label signed by the tenant's key; prints {"id", "text", "short_code", …}.
    Issue {
        #[arg(long)]
        tenant: Uuid,
        /// asset, vehicle, key or badge.
        #[arg(long)]
        kind: String,
        /// Asset or vehicle name, key description, or the driver (badges).
        #[arg(long)]
        name: Option<String>,
        /// Assets and vehicles: the id the label names; keys: the asset the key opens.
        #[arg(long)]
        asset_id: Option<Uuid>,
        /// Keys: the key-box slot.
        #[arg(long)]
        slot: Option<u32>,
        /// RFC 3339 time after which kiosks refuse the label.
        #[arg(long)]
        expires_at: Option<String>,
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
            // Agent code runs here only inside the demo, where its per-vehicle start-up
            // lines would bury the few lines a newcomer needs.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,fleet_agent=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve {
            listen,
            data,
            database_url,
            retention_months,
            tls_cert,
            tls_key,
            metrics_token,
            operator_key_file,
            operator_key,
            key_encryption_key_file,
            key_encryption_key,
            allow_private_webhooks,
            blob_dir,
            stream_heartbeat_secs,
            stream_client_queue,
        } => {
            raise_open_file_limit();
            // Check the certificate before touching the database or the port, so a
            // bad file is the first and only thing reported.
            let tls = match (&tls_cert, &tls_key) {
                (Some(cert), Some(key)) => Some(fleet_sync::tls::load_server_config(cert, key)?),
                _ => None,
            };
            let backend = fleet_sync::open_backend(database_url.as_deref(), &data).await?;
            match (backend.postgres(), retention_months) {
                // Partitions ahead and retention, hourly, for the life of the process.
                (Some(pg), _) => drop(tokio::spawn(pg.clone().maintain(retention_months))),
                (None, Some(_)) => anyhow::bail!(
                    "--retention-months applies to PostgreSQL event partitions; give --database-url postgres://…"
                ),
                (None, None) => {}
            }
            let storage = backend.storage();
            fleet_sync::sealing::install(
                key_encryption_key_file.as_deref(),
                key_encryption_key.as_deref(),
                &*storage,
                true,
            )
            .await?;
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let state = fleet_sync::AppState::new(storage)
                .with_settings(fleet_sync::Settings {
                    metrics_token: metrics_token.filter(|t| !t.trim().is_empty()),
                    allow_private_webhooks,
                    blob_dir: Some(blob_dir.unwrap_or_else(|| data.join("blobs"))),
                    ..fleet_sync::Settings::default()
                })
                .with_stream_settings(fleet_sync::live::StreamSettings {
                    heartbeat: Duration::from_secs(stream_heartbeat_secs),
                    idle_timeout: Duration::from_secs(stream_heartbeat_secs * 3),
                    client_queue: stream_client_queue as usize,
                    ..fleet_sync::live::StreamSettings::default()
                });
            // Webhook deliveries, the device-offline check and rollout checks;
            // stops with the process.
            let _background = fleet_sync::webhooks::worker::spawn(
                state.clone(),
                fleet_sync::webhooks::WebhookSettings {
                    allow_private: allow_private_webhooks,
                    ..Default::default()
                },
            );
            // Maintenance alerts on to the live stream and webhooks.
            let _alerts = fleet_sync::http::maintenance::spawn_alert_notifier(
                state.clone(),
                std::time::Duration::from_secs(30),
            );
            // Reservation reminders, pick-ups, returns, no-shows and overdue alerts.
            let _reservations = fleet_sync::reservations::task::spawn(
                state.clone(),
                std::time::Duration::from_secs(60),
            );
            // The email outbox, and scheduled reports into it.
            let _mail = fleet_sync::mail::sender::spawn(
                state.clone(),
                fleet_sync::mail::MailSettings::default(),
            );
            let _reports = fleet_sync::analytics::scheduled::spawn(
                state.clone(),
                std::time::Duration::from_secs(60),
            );
            let operator_key = match operator_key_file {
                Some(path) => Some(std::fs::read_to_string(&path).with_context(|| {
                    format!("reading the operator key file {}", path.display())
                })?),
                None => operator_key,
            };
            let state = match operator_key.as_deref().map(str::trim) {
                Some(k) if k.len() < 16 => {
                    anyhow::bail!("the operator key must be at least 16 characters")
                }
                Some(k) => state.with_operator_key(k),
                None => state,
            };
            match tls {
                Some(tls) => {
                    tracing::info!(addr = %listener.local_addr()?, data = %data.display(), cert_sha256 = %tls.fingerprint, "fleet-sync listening for HTTPS");
                    fleet_sync::tls::serve_tls(listener, state, tls.config, shutdown_signal())
                        .await?;
                }
                None => {
                    tracing::info!(addr = %listener.local_addr()?, data = %data.display(), "fleet-sync listening");
                    fleet_sync::serve(listener, state, shutdown_signal()).await?;
                }
            }
        }
        Command::Admin {
            data,
            database_url,
            command,
        } => {
            let backend = fleet_sync::open_backend(database_url.as_deref(), &data).await?;
            let storage = backend.storage();
            let kek = std::env::var("FLEET_KEY_ENCRYPTION_KEY").ok();
            fleet_sync::sealing::install(None, kek.as_deref(), &*storage, false).await?;
            match command {
                Admin::TlsCert { hostnames } => print_json(&write_self_signed(&data, &hostnames)?)?,
                Admin::Tenant {
                    command: TenantCmd::Create { name },
                } => print_json(&storage.create_tenant(&name).await?)?,
                Admin::EnrollmentToken {
                    command: TokenCmd::Create { tenant, ttl, uses },
                } => print_json(&storage.create_enrollment_token(tenant, ttl, uses).await?)?,
                Admin::Label {
                    command:
                        LabelCmd::Issue {
                            tenant,
                            kind,
                            name,
                            asset_id,
                            slot,
                            expires_at,
                        },
                } => {
                    let kind =
                        fleet_protocol::label::LabelKind::parse(&kind).with_context(|| {
                            format!("--kind {kind:?}: use asset, vehicle, key or badge")
                        })?;
                    let req = fleet_sync::http::kiosk::IssueLabel {
                        kind,
                        name,
                        driver_name: None,
                        asset_id,
                        slot,
                        expires_at,
                    };
                    match fleet_sync::http::kiosk::issue_label(&*storage, tenant, &req).await? {
                        Ok(label) => print_json(&fleet_sync::http::kiosk::label_json(&label))?,
                        Err(refused) => anyhow::bail!("{} ({})", refused.message, refused.code),
                    }
                }
                Admin::SigningKey {
                    command:
                        SigningKeyCmd::Reseal {
                            old_key_file,
                            new_key_file,
                        },
                } => print_json(
                    &fleet_sync::admin::reseal_signing_keys(
                        &*storage,
                        &old_key_file,
                        &new_key_file,
                    )
                    .await?,
                )?,
                Admin::Partitions { command } => {
                    let pg = backend.postgres().context(
                        "event partitions exist only on PostgreSQL; give --database-url postgres://…",
                    )?;
                    match command {
                        PartitionsCmd::List => print_json(&pg.list_partitions().await?)?,
                        PartitionsCmd::Detach { older_than_months } => {
                            let detached = pg
                                .detach_partitions(fleet_sync::storage::now_ms(), older_than_months)
                                .await?;
                            print_json(&serde_json::json!({ "detached": detached }))?
                        }
                    }
                }
                Admin::User { command } => {
                    use fleet_sync::admin;
                    let answer = match command {
                        UserCmd::Create {
                            tenant,
                            email,
                            name,
                            role,
                            password_stdin,
                        } => {
                            // Read before creating, so a failed read creates nobody.
                            let password = match password_stdin {
                                true => Some(admin::read_password_line(std::io::stdin().lock())?),
                                false => None,
                            };
                            match password {
                                Some(p) => {
                                    if let Err(e) = fleet_sync::http::session::check_password(&p) {
                                        anyhow::bail!("{} ({})", e.message, e.code);
                                    }
                                    match admin::create_user(
                                        &*storage, tenant, &email, &name, &role, None,
                                    )
                                    .await
                                    {
                                        Ok(user) => {
                                            let id: Uuid =
                                                serde_json::from_value(user["id"].clone())?;
                                            admin::set_password(&*storage, tenant, id, p)
                                                .await
                                                .map(|_| user)
                                        }
                                        Err(e) => Err(e),
                                    }
                                }
                                None => {
                                    admin::create_user(
                                        &*storage, tenant, &email, &name, &role, None,
                                    )
                                    .await
                                }
                            }
                        }
                        UserCmd::SetPassword { tenant, user } => {
                            let password = admin::read_password_line(std::io::stdin().lock())?;
                            admin::set_password(&*storage, tenant, user, password).await
                        }
                        UserCmd::List { tenant } => admin::list_users(&*storage, tenant).await,
                        UserCmd::Disable { tenant, user } => {
                            admin::disable_user(&*storage, tenant, user).await
                        }
                    };
                    match answer {
                        Ok(v) => print_json(&v)?,
                        Err(refused) => anyhow::bail!("{} ({})", refused.message, refused.code),
                    }
                }
                Admin::Key { command } => {
                    use fleet_sync::admin;
                    let answer = match command {
                        KeyCmd::Create {
                            tenant,
                            name,
                            role,
                            user,
                            expires_at,
                        } => {
                            admin::create_key(
                                &*storage,
                                tenant,
                                &name,
                                &role,
                                user,
                                expires_at.as_deref(),
                            )
                            .await
                        }
                        KeyCmd::List { tenant } => admin::list_keys(&*storage, tenant).await,
                        KeyCmd::Revoke { tenant, key } => {
                            admin::revoke_key(&*storage, tenant, key).await
                        }
                    };
                    match answer {
                        Ok(v) => print_json(&v)?,
                        Err(refused) => anyhow::bail!("{} ({})", refused.message, refused.code),
                    }
                }
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

/// Writes DIR/tls/cert.pem and DIR/tls/key.pem (the key mode 0600), refusing to replace
/// an existing pair: devices enrolled against it would stop syncing.
fn write_self_signed(
    data: &std::path::Path,
    hostnames: &[String],
) -> anyhow::Result<serde_json::Value> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = data.join("tls");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    for p in [&cert_path, &key_path] {
        if p.exists() {
            anyhow::bail!(
                "{} already exists; devices enrolled against it would refuse a new certificate, so remove it yourself if you mean to replace it",
                p.display()
            );
        }
    }
    let made = fleet_sync::tls::self_signed(hostnames)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |path: &std::path::Path, mode: u32, text: &str| -> anyhow::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", path.display()))
    };
    write(&key_path, 0o600, &made.key_pem)?;
    write(&cert_path, 0o644, &made.cert_pem)?;
    Ok(serde_json::json!({
        "cert": cert_path,
        "key": key_path,
        "sha256": made.fingerprint,
    }))
}

/// Every device and stream subscriber holds a connection, and services usually
/// start with a soft limit of 1,024 open files (systemd's default), past which
/// the listener stops accepting. Serve raises the soft limit to the hard one.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return;
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    if let Err(e) = setrlimit(Resource::Nofile, raised) {
        tracing::warn!(soft = ?limit.current, "could not raise the open-file limit: {e}");
    }
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
