use crate::config::AgentConfig;
use crate::identity::{Identity, IdentityError};
use crate::sync::{META_LAST_SYNC, META_LAST_SYNC_ERROR};
use clap::Args;
use std::path::{Path, PathBuf};

/// The packaged config, read for its version when `--config` is not given.
const DEFAULT_CONFIG: &str = "/etc/fleet-agent/config.toml";

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long = "data", value_name = "DIR")]
    data_dir: PathBuf,
    /// The config file, for its version; /etc/fleet-agent/config.toml when it exists.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let store = super::open_store(&args.data_dir)?;
    let stats = store.stats().await?;
    let last_sync: Option<serde_json::Value> = store
        .get_meta(META_LAST_SYNC)
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok());
    let last_error: Option<serde_json::Value> = store
        .get_meta(META_LAST_SYNC_ERROR)
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok());
    store.close().await?;
    let config_path = args.config.clone().or_else(|| {
        Path::new(DEFAULT_CONFIG)
            .exists()
            .then(|| PathBuf::from(DEFAULT_CONFIG))
    });
    let config_version = match &config_path {
        Some(p) => Some(
            AgentConfig::load(Some(p))
                .map_err(|e| anyhow::anyhow!("{e:#}"))?
                .version,
        ),
        None => None,
    };
    let identity = match Identity::load(&args.data_dir) {
        Ok(id) => Some(id),
        Err(IdentityError::NotEnrolled(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let last_sync_ms = last_sync.as_ref().and_then(|v| v["at_ms"].as_i64());
    let last_error_ms = last_error.as_ref().and_then(|v| v["at_ms"].as_i64());
    // Failing when the latest attempt we know of is a failure.
    let result = match (last_sync_ms, last_error_ms) {
        (_, None) if last_sync_ms.is_some() => "ok",
        (None, None) => "never",
        (Some(ok), Some(err)) if ok >= err => "ok",
        _ => "failing",
    };
    if args.json {
        let out = serde_json::json!({
            "device_id": identity.as_ref().map(|i| i.device_id),
            "server_url": identity.as_ref().map(|i| i.server_url.clone()),
            "last_seq": stats.last_seq,
            "acked_seq": stats.acked_seq,
            "queue_depth": stats.unacked_events,
            "oldest_unsynced": stats.oldest_unacked_wall_ms.map(super::events::rfc3339),
            "last_sync": last_sync_ms.map(super::events::rfc3339),
            "last_sync_result": result,
            "last_sync_error": last_error.as_ref().map(|e| serde_json::json!({
                "at": e["at_ms"].as_i64().map(super::events::rfc3339),
                "code": e["code"],
                "message": e["message"],
            })),
            "config_version": config_version,
            "evicted_events": stats.evicted_events,
            "evicted_critical": stats.evicted_critical,
            "db_bytes": stats.db_bytes,
            "disk_budget_bytes": stats.disk_budget_bytes,
            "disk_full": stats.disk_full,
            "disk_full_writes": stats.disk_full_total,
            "disk_free_bytes": stats.disk_free_bytes,
            "evicted_telemetry": stats.evicted_telemetry,
            "evicted_normal": stats.evicted_normal,
        });
        println!("{out}");
        return Ok(());
    }
    match &identity {
        Some(id) => println!(
            "device:          {} ({}) at {}",
            id.device_id, id.name, id.server_url
        ),
        None => println!("device:          not enrolled"),
    }
    println!(
        "events:          {} recorded, {} acknowledged",
        stats.last_seq, stats.acked_seq
    );
    println!("queue depth:     {} unsynced", stats.unacked_events);
    println!(
        "oldest unsynced: {}",
        stats
            .oldest_unacked_wall_ms
            .map_or_else(|| "-".to_owned(), super::events::rfc3339)
    );
    println!(
        "last sync:       {} ({result})",
        last_sync_ms.map_or_else(|| "never".to_owned(), super::events::rfc3339)
    );
    if let (Some(e), "failing") = (&last_error, result) {
        println!(
            "last failure:    {} {}: {}",
            last_error_ms.map_or_else(|| "-".to_owned(), super::events::rfc3339),
            e["code"].as_str().unwrap_or("?"),
            e["message"].as_str().unwrap_or("")
        );
    }
    match (&config_path, config_version) {
        (Some(p), Some(v)) => println!("config:          {} (version {v})", p.display()),
        _ => println!("config:          - (pass --config FILE)"),
    }
    println!(
        "evictions:       {} events ({} critical)",
        stats.evicted_events, stats.evicted_critical
    );
    println!(
        "disk:            {:.1} of {:.1} MB{}",
        stats.db_bytes as f64 / 1_048_576.0,
        stats.disk_budget_bytes as f64 / 1_048_576.0,
        match (stats.disk_full, stats.disk_free_bytes) {
            (true, _) => format!(
                "; FULL ({} writes refused, evicting to make room)",
                stats.disk_full_total
            ),
            (false, Some(free)) => format!("; {:.1} MB free", free as f64 / 1_048_576.0),
            (false, None) => String::new(),
        }
    );
    Ok(())
}
