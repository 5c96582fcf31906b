use crate::clock::SystemClock;
use crate::identity::Identity;
use crate::sync::client::SyncClient;
use crate::sync::docs;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, Args)]
pub struct NoteArgs {
    #[command(subcommand)]
    action: NoteAction,
}

#[derive(Debug, Subcommand)]
enum NoteAction {
    /// Print the note (empty if there is none yet).
    Show {
        #[arg(long = "data", value_name = "DIR")]
        data_dir: PathBuf,
        /// The vehicle whose note to show; this device's own by default.
        #[arg(long)]
        vehicle: Option<Uuid>,
    },
    /// Replace the note's text; saved locally, synced by the daemon.
    Set {
        #[arg(long = "data", value_name = "DIR")]
        data_dir: PathBuf,
        #[arg(long)]
        vehicle: Option<Uuid>,
        text: String,
    },
    /// Sync every document with the server once and exit.
    Sync {
        #[arg(long = "data", value_name = "DIR")]
        data_dir: PathBuf,
    },
}

fn vehicle_or_self(data_dir: &std::path::Path, vehicle: Option<Uuid>) -> anyhow::Result<Uuid> {
    match vehicle {
        Some(v) => Ok(v),
        None => Ok(Identity::load(data_dir)
            .map_err(|e| anyhow::anyhow!("{e}; or name the vehicle with --vehicle"))?
            .device_id),
    }
}

pub async fn run(args: NoteArgs) -> anyhow::Result<()> {
    match args.action {
        NoteAction::Show { data_dir, vehicle } => {
            let vehicle = vehicle_or_self(&data_dir, vehicle)?;
            let store = super::open_store(&data_dir)?;
            let doc = store.doc_load(&docs::vehicle_note_id(vehicle)).await?;
            store.close().await?;
            println!(
                "{}",
                doc.as_ref().and_then(docs::note_text).unwrap_or_default()
            );
        }
        NoteAction::Set {
            data_dir,
            vehicle,
            text,
        } => {
            let vehicle = vehicle_or_self(&data_dir, vehicle)?;
            let store = super::open_store(&data_dir)?;
            let (doc_id, mut doc) = docs::load_note(&store, vehicle).await?;
            docs::set_note_text(&doc_id, &mut doc, &text)?;
            store.doc_save(&doc_id, &mut doc).await?;
            store.close().await?;
        }
        NoteAction::Sync { data_dir } => {
            let identity = Identity::load(&data_dir)?;
            let store = super::open_store(&data_dir)?;
            let client = SyncClient::new(
                &identity,
                Arc::new(SystemClock::new()),
                Duration::from_secs(30),
            )?;
            let result = docs::sync_all(&store, &client, identity.device_id).await;
            store.close().await?;
            let report = match result {
                Err(docs::DocError::Request(e)) if e.code() == "clock_skew" => {
                    // The reply carried the server's time: sign with it and go again.
                    let store = super::open_store(&data_dir)?;
                    let again = docs::sync_all(&store, &client, identity.device_id).await;
                    store.close().await?;
                    again?
                }
                other => other?,
            };
            println!(
                "{}",
                serde_json::json!({ "synced": report.synced, "changed": report.changed })
            );
        }
    }
    Ok(())
}
