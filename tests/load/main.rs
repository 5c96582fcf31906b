//! `fleet-load`: simulated devices and stream subscribers against one
//! `fleet-sync serve` on loopback (started by this program from the same build).
//!
//!   fleet-load [--profile smoke|full|soak] [--backend sqlite|postgres]
//!              [--devices N] [--batches N] [--subscribers N,N,…] [--soak-minutes M]
//!              [--fanout-seconds S] [--settle-seconds S] [--json FILE]
//!
//! `--backend postgres` makes a fresh database (and unprivileged role) from the
//! superuser URL in FLEET_TEST_PG_URL. The server binary is found as the tests
//! find it: FLEET_BIN_DIR, else next to this program.

use anyhow::{bail, Context, Result};
use fleet_tests::load::{self, Backend, FanoutPlan, Plan};
use std::time::Duration;

fn usage() -> &'static str {
    "usage: fleet-load [--profile smoke|full|soak] [--backend sqlite|postgres] [--devices N] \
     [--batches N] [--subscribers N,N,...] [--soak-minutes M] [--fanout-seconds S] \
     [--settle-seconds S] [--json FILE]"
}

struct Args {
    profile: String,
    backend: String,
    devices: Option<usize>,
    batches: Option<usize>,
    subscribers: Option<Vec<usize>>,
    soak_minutes: Option<f64>,
    fanout_seconds: Option<f64>,
    settle_seconds: Option<f64>,
    json: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        profile: "smoke".into(),
        backend: "sqlite".into(),
        devices: None,
        batches: None,
        subscribers: None,
        soak_minutes: None,
        fanout_seconds: None,
        settle_seconds: None,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{}", usage());
            std::process::exit(0);
        }
        let value = it
            .next()
            .with_context(|| format!("{flag} needs a value\n{}", usage()))?;
        match flag.as_str() {
            "--profile" => a.profile = value,
            "--backend" => a.backend = value,
            "--devices" => a.devices = Some(value.parse()?),
            "--batches" => a.batches = Some(value.parse()?),
            "--subscribers" => {
                a.subscribers = Some(
                    value
                        .split(',')
                        .map(|s| s.trim().parse())
                        .collect::<Result<_, _>>()?,
                )
            }
            "--soak-minutes" => a.soak_minutes = Some(value.parse()?),
            "--fanout-seconds" => a.fanout_seconds = Some(value.parse()?),
            "--settle-seconds" => a.settle_seconds = Some(value.parse()?),
            "--json" => a.json = Some(value.into()),
            _ => bail!("unknown argument {flag}\n{}", usage()),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    // Keeps the PostgreSQL database alive until the run ends, then drops it.
    let mut _pg_guard = None;
    let backend = match args.backend.as_str() {
        "sqlite" => Backend::Sqlite,
        "postgres" => {
            let guard = fleet_sync::storage::postgres::testing::empty_database()
                .await
                .context("--backend postgres needs FLEET_TEST_PG_URL (a superuser URL)")?;
            let url = load::postgres_url(guard.app_config())?;
            _pg_guard = Some(guard);
            Backend::Postgres { url }
        }
        other => bail!("unknown backend {other}; sqlite or postgres"),
    };
    let mut plan = match args.profile.as_str() {
        "smoke" => Plan::smoke(backend),
        "full" => Plan::full(backend),
        "soak" => Plan::soak(backend, args.soak_minutes.unwrap_or(30.0)),
        other => bail!("unknown profile {other}; smoke, full or soak"),
    };
    if let Some(n) = args.devices {
        plan.devices = n;
    }
    if let Some(n) = args.batches {
        plan.batches = n;
    }
    if let Some(subs) = args.subscribers {
        plan.fanouts = subs
            .iter()
            .map(|&n| FanoutPlan {
                subscribers: n,
                watch_all: n <= 1_000,
                with_ingest: n > 1_000,
            })
            .collect();
    }
    if let Some(m) = args.soak_minutes {
        plan.soak = Duration::from_secs_f64(m * 60.0);
    }
    if let Some(s) = args.fanout_seconds {
        plan.fanout_window = Duration::from_secs_f64(s);
    }
    if let Some(s) = args.settle_seconds {
        plan.settle = Duration::from_secs_f64(s);
    }
    let dir = tempfile::tempdir()?;
    let report = load::run(&plan, dir.path()).await?;
    let text = serde_json::to_string_pretty(&report.to_json())?;
    println!("{text}");
    if let Some(path) = args.json {
        std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    let short = report.sync.devices_short + report.soak.as_ref().map_or(0, |s| s.devices_short);
    if short > 0 {
        bail!("{short} devices do not have every event they sent stored once");
    }
    if report.soak.as_ref().is_some_and(|s| !s.levels_off) {
        bail!("the server's memory kept growing through the soak's last third");
    }
    Ok(())
}
