use crate::identity::{Identity, IdentityError};
use crate::sync::META_LAST_SYNC;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long = "data", value_name = "DIR")]
    data_dir: PathBuf,
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
    store.close().await?;
    let identity = match Identity::load(&args.data_dir) {
        Ok(id) => Some(id),
        Err(IdentityError::NotEnrolled(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let last_sync_ms = last_sync.as_ref().and_then(|v| v["at_ms"].as_i64());
    if args.json {
        let out = serde_json::json!({
            "device_id": identity.as_ref().map(|i| i.device_id),
            "server_url": identity.as_ref().map(|i| i.server_url.clone()),
            "last_seq": stats.last_seq,
            "acked_seq": stats.acked_seq,
            "queue_depth": stats.unacked_events,
            "oldest_unsynced": stats.oldest_unacked_wall_ms.map(super::events::rfc3339),
            "last_sync": last_sync_ms.map(super::events::rfc3339),
            "evicted_events": stats.evicted_events,
            "evicted_critical": stats.evicted_critical,
            "db_bytes": stats.db_bytes,
            "disk_budget_bytes": stats.disk_budget_bytes,
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
        "last sync:       {}",
        last_sync_ms.map_or_else(|| "never".to_owned(), super::events::rfc3339)
    );
    println!(
        "evictions:       {} events ({} critical)",
        stats.evicted_events, stats.evicted_critical
    );
    println!(
        "disk:            {:.1} of {:.1} MB",
        stats.db_bytes as f64 / 1_048_576.0,
        stats.disk_budget_bytes as f64 / 1_048_576.0
    );
    Ok(())
}
