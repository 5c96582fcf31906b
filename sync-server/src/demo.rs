//! `fleet-sync demo`: the server on SQLite plus simulated trucks, each running the
//! real agent (pipeline, store and sync client) in this process, enrolled with a
//! real enrollment token and syncing over HTTP like a device would.

use anyhow::Context;
use fleet_agent::config::AgentConfig;
use fleet_agent::daemon::{self, RunOptions};
use fleet_agent::identity::{self, Identity};
use fleet_agent::pipeline::{FrameRates, SimOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

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
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
}

/// `DIR/demo.json`: how to reach the demo tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoFile {
    pub url: String,
    pub api_key: String,
    pub tenant_id: Uuid,
}

/// Each vehicle is offline about this share of the time, in spells of minutes.
const OFFLINE_SHARE: f64 = 0.12;
const OFFLINE_MIN: Duration = Duration::from_secs(90);
const OFFLINE_MAX: Duration = Duration::from_secs(420);

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.vehicles == 0 {
        anyhow::bail!("--vehicles must be at least 1");
    }
    if !(args.speed > 0.0 && args.speed <= 1000.0) {
        anyhow::bail!("--speed must be within (0, 1000]");
    }
    let storage = crate::open_sqlite(&args.data).await?;
    let demo_path = args.data.join("demo.json");
    let (tenant_id, api_key) = match read_demo_file(&demo_path)? {
        Some(f) if storage.tenant_for_api_key(&f.api_key).await? == Some(f.tenant_id) => {
            (f.tenant_id, f.api_key)
        }
        _ => {
            let t = storage.create_tenant("demo").await?;
            (t.tenant_id, t.api_key)
        }
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}");
    write_demo_file(
        &demo_path,
        &DemoFile {
            url: url.clone(),
            api_key: api_key.clone(),
            tenant_id,
        },
    )?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(crate::serve(
        listener,
        crate::AppState::new(storage.clone()),
        async move {
            let _ = server_stop.wait_for(|s| *s).await;
        },
    ));

    let mut vehicles = Vec::new();
    let mut links = Vec::new();
    for i in 0..args.vehicles {
        let name = format!("truck-{:02}", i + 1);
        let dir = args.data.join("vehicles").join(&name);
        if !Identity::exists(&dir) {
            let token = storage
                .create_enrollment_token(tenant_id, Duration::from_secs(600), 1)
                .await?;
            identity::enroll(&url, &token.token, &dir, Some(&name))
                .await
                .with_context(|| format!("enrolling {name}"))?;
        } else {
            refresh_server_url(&dir, &url)?;
        }
        let (online_tx, online_rx) = watch::channel(true);
        links.push(online_tx);
        let mut cfg = AgentConfig {
            data_dir: dir.clone(),
            ..AgentConfig::default()
        };
        cfg.sources.simulator.frame_rates = FrameRates::Thinned;
        cfg.sources.simulator.network_seed = args.seed;
        let opts = RunOptions {
            data_dir: dir,
            simulate: Some(SimOptions {
                seed: args.seed.wrapping_mul(1_000).wrapping_add(u64::from(i)),
                speed: args.speed,
            }),
            clock: None,
            online: Some(online_rx),
            shutdown: Some(stop_rx.clone()),
        };
        vehicles.push((name, tokio::spawn(daemon::run(cfg, opts))));
    }
    let outages = tokio::spawn(drive_outages(links, args.seed, args.speed, stop_rx.clone()));

    println!(
        "fleet-sync demo: {} vehicles syncing to {url}",
        args.vehicles
    );
    println!("dashboard: {url}/#key={api_key}");
    println!("details in {}; Ctrl-C stops", demo_path.display());

    tokio::signal::ctrl_c().await?;
    tracing::info!("stopping the demo");
    let _ = stop_tx.send(true);
    outages.abort();
    for (name, task) in vehicles {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(vehicle = %name, error = %e, "vehicle stopped with an error")
            }
            Err(e) => tracing::warn!(vehicle = %name, error = %e, "vehicle task failed"),
        }
    }
    server.await??;
    Ok(())
}

fn read_demo_file(path: &Path) -> anyhow::Result<Option<DemoFile>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_demo_file(path: &Path, f: &DemoFile) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(f)?)?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A re-run may listen elsewhere (`--listen`): point the vehicles' identities at
/// the server they will talk to now.
fn refresh_server_url(dir: &Path, url: &str) -> anyhow::Result<()> {
    let path = dir.join("identity.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    if v.get("server_url").and_then(|u| u.as_str()) == Some(url) {
        return Ok(());
    }
    v["server_url"] = serde_json::Value::String(url.to_owned());
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&v)?)?;
    // The identity holds the device's private key: keep the original's mode.
    std::fs::set_permissions(&tmp, std::fs::metadata(&path)?.permissions())?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

/// Take vehicles offline now and then (a tunnel, a dead zone, a depot with no
/// coverage), on a schedule drawn from the seed.
async fn drive_outages(
    links: Vec<watch::Sender<bool>>,
    seed: u64,
    speed: f64,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x0FF1_17E5);
    let n = links.len();
    let mut back_at: Vec<Option<tokio::time::Instant>> = vec![None; n];
    let check = Duration::from_secs(15);
    let mean_online =
        ((OFFLINE_MIN + OFFLINE_MAX) / 2).as_secs_f64() * (1.0 - OFFLINE_SHARE) / OFFLINE_SHARE;
    let p_drop = (check.as_secs_f64() * speed.min(20.0) / mean_online).min(1.0);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(check) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = tokio::time::Instant::now();
        for (i, link) in links.iter().enumerate() {
            match back_at[i] {
                Some(t) if now >= t => {
                    back_at[i] = None;
                    let _ = link.send(true);
                    tracing::info!(vehicle = i + 1, "demo: vehicle back in coverage");
                }
                None if rng.gen_bool(p_drop) => {
                    let secs = rng.gen_range(OFFLINE_MIN.as_secs_f64()..OFFLINE_MAX.as_secs_f64());
                    back_at[i] = Some(now + Duration::from_secs_f64(secs / speed.clamp(1.0, 20.0)));
                    let _ = link.send(false);
                    tracing::info!(
                        vehicle = i + 1,
                        seconds = secs as u64,
                        "demo: vehicle lost coverage"
                    );
                }
                _ => {}
            }
        }
    }
}
