//! `fleet-agent obd`: query a live ELM327 adapter once and print what the vehicle says.

#[cfg(feature = "serial")]
use anyhow::Context;
#[cfg(feature = "serial")]
use serde_json::json;
use serde_json::Value as Json;

use crate::decode::elm327::parse_pid_list;

/// PIDs read when `--pids` is not given (those the vehicle supports).
pub const DEFAULT_PIDS: [u8; 8] = [0x0C, 0x0D, 0x05, 0x10, 0x11, 0x2F, 0x04, 0x42];

#[derive(Debug, clap::Args)]
pub struct ObdArgs {
    /// Serial device of the adapter, such as /dev/ttyUSB0 or /dev/rfcomm0.
    #[arg(long, value_name = "DEV")]
    pub port: String,
    /// Serial baud rate.
    #[arg(long, default_value_t = 38_400)]
    pub baud: u32,
    /// Mode 01 PIDs as hex numbers or names (0C,0D,RPM,…); default: a core set the
    /// vehicle supports.
    #[arg(long, value_delimiter = ',', value_name = "PIDS")]
    pub pids: Vec<String>,
    /// Also read stored, pending and permanent trouble codes (modes 03, 07, 0A).
    #[arg(long)]
    pub dtc: bool,
    /// Also read the VIN (mode 09).
    #[arg(long)]
    pub vin: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait for each reply.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

/// Queries the adapter once and prints the result.
pub async fn run(args: ObdArgs) -> anyhow::Result<()> {
    let pids = parse_pid_list(&args.pids)?;
    let report = query(&args, &pids).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_text(&report);
    }
    Ok(())
}

#[cfg(not(feature = "serial"))]
async fn query(_args: &ObdArgs, _pids: &[u8]) -> anyhow::Result<Json> {
    anyhow::bail!(
        "this fleet-agent was built without the `serial` feature, so it cannot open {}",
        _args.port
    )
}

#[cfg(feature = "serial")]
async fn query(args: &ObdArgs, pids: &[u8]) -> anyhow::Result<Json> {
    use std::time::Duration;

    use fleet_hal::elm327::serial::SerialConnector;
    use fleet_hal::elm327::{
        mode01_requests, Connector, Elm327, Elm327Config, Elm327Error, MAX_PIDS_PER_REQUEST,
    };

    let io = SerialConnector::new(&args.port, args.baud)
        .connect()
        .await
        .with_context(|| format!("opening {}", args.port))?;
    let config = Elm327Config {
        command_timeout: Duration::from_secs(args.timeout),
        slow_timeout: Duration::from_secs(args.timeout.max(10)),
        ..Elm327Config::default()
    };
    let mut elm = Elm327::init(io, config)
        .await
        .with_context(|| format!("initialising the ELM327 on {}", args.port))?;
    let discovery = elm
        .discover()
        .await
        .context("reading supported PIDs (0100)")?;
    let wanted: Vec<u8> = if pids.is_empty() {
        DEFAULT_PIDS
            .iter()
            .copied()
            .filter(|p| discovery.supports(*p))
            .collect()
    } else {
        pids.to_vec()
    };

    let mut readings: Vec<Json> = Vec::new();
    let mut errors: Vec<Json> = Vec::new();
    for chunk in wanted.chunks(MAX_PIDS_PER_REQUEST) {
        let cmd = mode01_requests(chunk).concat();
        let result = elm.query(&cmd).await;
        let refused = matches!(&result, Err(Elm327Error::Adapter { .. })) && chunk.len() > 1;
        if refused {
            // Some ECUs refuse multi-PID requests: ask one PID at a time instead.
            for pid in chunk {
                let single = format!("01{pid:02X}");
                let r = elm.query(&single).await;
                decode_into(&single, r, &mut readings, &mut errors);
            }
        } else {
            decode_into(&cmd, result, &mut readings, &mut errors);
        }
    }

    let mut report = json!({
        "adapter": elm.version(),
        "supported": discovery.data_pids().iter().map(|p| format!("{p:02X}")).collect::<Vec<_>>(),
        "readings": readings,
    });
    if args.dtc {
        let mut dtcs = serde_json::Map::new();
        for (cmd, name) in [("03", "stored"), ("07", "pending"), ("0A", "permanent")] {
            let mut out = Vec::new();
            let result = elm.query(cmd).await;
            let no_data = matches!(
                &result,
                Err(Elm327Error::Adapter {
                    source: fleet_hal::elm327::AdapterError::NoData,
                    ..
                })
            );
            if no_data {
                dtcs.insert(name.into(), json!([]));
                continue;
            }
            decode_into(cmd, result, &mut out, &mut errors);
            let mut codes: Vec<Json> = out
                .iter()
                .filter_map(|o| o.get("dtcs").and_then(Json::as_array).cloned())
                .flatten()
                .collect();
            codes.dedup();
            dtcs.insert(name.into(), Json::Array(codes));
        }
        report["dtcs"] = Json::Object(dtcs);
    }
    if args.vin {
        let mut out = Vec::new();
        let result = elm.query("0902").await;
        decode_into("0902", result, &mut out, &mut errors);
        report["vin"] = out
            .iter()
            .find_map(|o| o.get("vin").cloned())
            .unwrap_or(Json::Null);
    }
    report["errors"] = Json::Array(errors);
    Ok(report)
}

/// Sorts one query's outcome into decoded items and errors.
#[cfg(feature = "serial")]
fn decode_into(
    cmd: &str,
    result: Result<
        (
            Vec<fleet_hal::elm327::EcuMessage>,
            Vec<fleet_hal::elm327::FrameError>,
        ),
        fleet_hal::elm327::Elm327Error,
    >,
    out: &mut Vec<Json>,
    errors: &mut Vec<Json>,
) {
    use crate::decode::elm327::{decode_messages, items_to_json};
    match result {
        Ok((messages, frame_errors)) => {
            for j in items_to_json(cmd, &decode_messages(messages, frame_errors)) {
                if j.get("error").is_some() || j.get("adapter_error").is_some() {
                    errors.push(j);
                } else {
                    out.push(j);
                }
            }
        }
        Err(e) => errors.push(json!({ "command": cmd, "error": e.to_string() })),
    }
}

fn print_text(report: &Json) {
    if let Some(a) = report.get("adapter").and_then(Json::as_str) {
        println!("adapter: {a}");
    }
    for r in report
        .get("readings")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        let name = r.get("name").and_then(Json::as_str).unwrap_or("?");
        let value = r.get("value").map(Json::to_string).unwrap_or_default();
        let unit = r.get("unit").and_then(Json::as_str).unwrap_or("");
        let ecu = r.get("ecu").and_then(Json::as_str).unwrap_or("");
        println!("{name:<28} {value} {unit} {ecu}");
    }
    if let Some(d) = report.get("dtcs") {
        println!("dtcs: {d}");
    }
    if let Some(v) = report.get("vin") {
        println!("vin: {v}");
    }
    for e in report
        .get("errors")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        eprintln!("warning: {e}");
    }
}
