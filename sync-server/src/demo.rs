//! `fleet-sync demo`: the server on SQLite plus simulated trucks, each running the
//! real agent (pipeline, store and sync client) in this process, enrolled with a
//! real enrollment token and syncing over HTTP like a device would. The tenant
//! is seeded (once) with what a fleet office would have: the vehicles in the
//! asset catalog linked to their gateways, users with badges, and yard geofences.
//! A yard kiosk runs the agent's kiosk code too, worked by scripted staff (`kiosk`).

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

mod kiosk;
mod seed;

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Where the demo keeps its data.
    #[arg(long, env = "FLEET_DATA", default_value = "./fleet-data")]
    pub data: PathBuf,
    /// Keep the server's data in PostgreSQL (`postgres://…`) instead of SQLite
    /// in --data; the vehicles' own stores stay in --data.
    #[arg(
        long,
        env = "FLEET_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
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
    /// The yard kiosk's touch UI port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 8090)]
    pub kiosk_port: u16,
    /// Run the vehicles only, without the yard kiosk.
    #[arg(long)]
    pub no_kiosk: bool,
}

/// `DIR/demo.json`: how to reach the demo tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoFile {
    pub url: String,
    pub api_key: String,
    pub tenant_id: Uuid,
    /// The dashboard login of the demo's manager (absent in files written
    /// before the demo had one; a re-run adds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<DemoLogin>,
}

/// What the dashboard's sign-in form takes for the demo user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoLogin {
    pub tenant: String,
    pub email: String,
    pub password: String,
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
    // The vehicles' stores live in --data whichever database the server uses.
    std::fs::create_dir_all(&args.data)?;
    let storage = crate::open_backend(args.database_url.as_deref(), &args.data)
        .await?
        .storage();
    crate::sealing::install_demo(&args.data, &*storage).await?;
    let demo_path = args.data.join("demo.json");
    let (tenant_id, api_key, password) = match read_demo_file(&demo_path)? {
        Some(f) if storage.tenant_for_api_key(&f.api_key).await? == Some(f.tenant_id) => {
            let password = f.login.map(|l| l.password);
            (f.tenant_id, f.api_key, password)
        }
        _ => {
            let t = storage.create_tenant("demo").await?;
            (t.tenant_id, t.api_key, None)
        }
    };
    let password = password.unwrap_or_else(seed::new_login_password);
    let login = DemoLogin {
        tenant: tenant_id.to_string(),
        email: seed::LOGIN_EMAIL.to_owned(),
        password,
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
            login: Some(login.clone()),
        },
    )?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut server_stop = stop_rx.clone();
    // Kiosk check-in photos and signatures are uploaded as blobs.
    let state = crate::AppState::new(storage.clone()).with_settings(crate::Settings {
        blob_dir: Some(args.data.join("blobs")),
        ..crate::Settings::default()
    });
    // The background work `serve` does: webhook deliveries and device checks,
    // maintenance alerts, and reservation reminders, no-shows and overdue returns.
    let _webhooks = crate::webhooks::worker::spawn(state.clone(), Default::default());
    let _alerts =
        crate::http::maintenance::spawn_alert_notifier(state.clone(), Duration::from_secs(30));
    let _reservations = crate::reservations::task::spawn(state.clone(), Duration::from_secs(60));
    let server = tokio::spawn(crate::serve(listener, state.clone(), async move {
        let _ = server_stop.wait_for(|s| *s).await;
    }));

    let mut vehicles = Vec::new();
    let mut links = Vec::new();
    let mut devices = Vec::new();
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
        devices.push((name.clone(), Identity::load(&dir)?.device_id));
        let (online_tx, online_rx) = watch::channel(true);
        links.push(online_tx);
        let mut cfg = AgentConfig {
            data_dir: dir.clone(),
            ..AgentConfig::default()
        };
        cfg.sources.simulator.frame_rates = FrameRates::Thinned;
        cfg.sources.simulator.network_seed = args.seed;
        // Twenty agents in one process cannot all listen on the metrics port.
        cfg.metrics.enabled = false;
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
    let city = AgentConfig::default().sources.simulator.city.city();
    seed::seed(&storage, tenant_id, &devices, city, args.seed)
        .await
        .context("seeding the demo tenant")?;
    seed::reservations(&state, &api_key, tenant_id)
        .await
        .context("seeding the demo's bookings")?;
    seed::login(&state, tenant_id, &login.password)
        .await
        .context("setting the demo login's password")?;
    let outages = tokio::spawn(drive_outages(links, args.seed, args.speed, stop_rx.clone()));
    let yard_kiosk = if args.no_kiosk {
        None
    } else {
        Some(
            kiosk::start(kiosk::KioskSetup {
                state: &state,
                api_key: &api_key,
                tenant: tenant_id,
                url: &url,
                data: &args.data,
                ui_port: args.kiosk_port,
                seed: args.seed,
                location: kiosk::depot_location(city, args.seed),
                stop: stop_rx.clone(),
            })
            .await
            .context("starting the yard kiosk")?,
        )
    };

    let kiosk_line = yard_kiosk.as_ref().map_or_else(
        || "  yard kiosk:      off (--no-kiosk)".to_owned(),
        |k| format!("  yard kiosk UI:   {}", k.ui_url),
    );
    println!(
        "\nfleet-sync demo: {} simulated vehicles{} syncing to {url}\n  dashboard:       {url}/#tenant={tenant_id}\n  sign in as:      {} with password {}\n  or with the key: {url}/#key={api_key}\n{kiosk_line}\n  logins, tenant:  {}\n  Ctrl-C stops the demo\n",
        args.vehicles,
        if yard_kiosk.is_some() { " and a yard kiosk" } else { "" },
        login.email,
        login.password,
        demo_path.display()
    );

    tokio::signal::ctrl_c().await?;
    tracing::info!("stopping the demo");
    let _ = stop_tx.send(true);
    outages.abort();
    if let Some(k) = yard_kiosk {
        k.staff.abort();
        vehicles.push((kiosk::KIOSK_NAME.to_owned(), k.kiosk));
    }
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
/// coverage), on a schedule drawn from the seed. A few lose coverage within the
/// first minute, so a newcomer soon sees vehicles go offline and catch up.
async fn drive_outages(
    links: Vec<watch::Sender<bool>>,
    seed: u64,
    speed: f64,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x0FF1_17E5);
    // Outages are drawn in simulated time and waited for in real time.
    let pace = speed.clamp(1.0, 20.0);
    let real = |sim_s: f64| Duration::from_secs_f64(sim_s / pace);
    let mean_online_s =
        ((OFFLINE_MIN + OFFLINE_MAX) / 2).as_secs_f64() * (1.0 - OFFLINE_SHARE) / OFFLINE_SHARE;
    let start = tokio::time::Instant::now();
    let mut online = vec![true; links.len()];
    let mut next: Vec<tokio::time::Instant> = (0..links.len())
        .map(|_| {
            let first_s = if rng.gen_bool(OFFLINE_SHARE) {
                rng.gen_range(5.0..40.0)
            } else {
                exponential(&mut rng, mean_online_s)
            };
            start + real(first_s)
        })
        .collect();
    loop {
        let Some(&due) = next.iter().min() else {
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = tokio::time::Instant::now();
        for (i, link) in links.iter().enumerate() {
            if next[i] > now {
                continue;
            }
            online[i] = !online[i];
            let _ = link.send(online[i]);
            let span_s = if online[i] {
                tracing::debug!(vehicle = i + 1, "demo: vehicle back in coverage");
                exponential(&mut rng, mean_online_s)
            } else {
                let s = rng.gen_range(OFFLINE_MIN.as_secs_f64()..OFFLINE_MAX.as_secs_f64());
                tracing::debug!(
                    vehicle = i + 1,
                    seconds = s as u64,
                    "demo: vehicle lost coverage"
                );
                s
            };
            next[i] = now + real(span_s);
        }
    }
}

/// A draw from the exponential distribution with this mean: the time until the
/// next event that is equally likely at any moment.
fn exponential(rng: &mut StdRng, mean: f64) -> f64 {
    let u: f64 = rng.gen_range(f64::EPSILON..1.0);
    -u.ln() * mean
}
