//! Polling a live ELM327 adapter: PIDs in requests of at most six, the trouble
//! codes now and then, through `fleet_hal::elm327`'s reconnecting session (init,
//! per-vehicle PID discovery, reconnect when the adapter is replugged).

use super::sources::{Input, Outage, SourceCtx, Stopped};
use super::{Elm327SourceConfig, ALL_ECUS};
use crate::decode::elm327::{decode_messages, parse_pid_list, ElmItem};
use crate::decode::obd::{Reading, Response};
use crate::rules::Signal;
use fleet_hal::elm327::serial::SerialConnector;
use fleet_hal::elm327::{
    mode01_requests, AdapterError, EcuMessage, Elm327Config, Elm327Error, FrameError,
    ReconnectBackoff, Reconnecting, MAX_PIDS_PER_REQUEST,
};
use std::time::Duration;

/// The PIDs polled when the config names none: what the rules turn into events,
/// where the vehicle supports them.
pub const RULE_PIDS: [u8; 9] = [0x0C, 0x0D, 0x05, 0x2F, 0xA6, 0x42, 0x5E, 0x04, 0x49];

type QueryResult = Result<(Vec<EcuMessage>, Vec<FrameError>), Elm327Error>;

fn readings_of(items: Vec<ElmItem>) -> Vec<Reading> {
    items
        .into_iter()
        .filter_map(|i| match i {
            ElmItem::Response {
                response: Response::Current(r),
                ..
            } => Some(r),
            _ => None,
        })
        .flatten()
        .collect()
}

pub async fn elm327(ctx: SourceCtx, cfg: Elm327SourceConfig) -> Result<(), Stopped> {
    // Validated with the config; an empty list means "the rules' PIDs".
    let configured = parse_pid_list(&cfg.pids).unwrap_or_default();
    let mut elm = Reconnecting::new(
        SerialConnector::new(&cfg.port, cfg.baud),
        Elm327Config::default(),
        ReconnectBackoff::default(),
    );
    let interval = Duration::from_millis(cfg.interval_ms);
    let dtc_every = Duration::from_secs(cfg.dtc_interval_s.max(1));
    let mut outage = Outage::new(ctx.name);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_dtc: Option<tokio::time::Instant> = None;
    let mut connects = 0;
    loop {
        ticker.tick().await;
        if let Err(e) = elm.ensure_connected().await {
            outage.failed(&ctx, &e.to_string()).await?;
            continue;
        }
        if elm.connects() != connects {
            connects = elm.connects();
            last_dtc = None;
            outage.up(&ctx).await?;
        }
        let wanted: Vec<u8> = {
            let base: &[u8] = if configured.is_empty() {
                &RULE_PIDS
            } else {
                &configured
            };
            base.iter()
                .copied()
                .filter(|p| elm.discovery().is_none_or(|d| d.supports(*p)))
                .filter(|p| !configured.is_empty() || Signal::for_obd_pid(*p).is_some())
                .collect()
        };
        let mut readings = Vec::new();
        for chunk in wanted.chunks(MAX_PIDS_PER_REQUEST) {
            let cmd = mode01_requests(chunk).concat();
            let result = elm.query(&cmd).await;
            // Some ECUs refuse multi-PID requests: ask one PID at a time instead.
            if matches!(&result, Err(Elm327Error::Adapter { .. })) && chunk.len() > 1 {
                for pid in chunk {
                    let r = elm.query(&format!("01{pid:02X}")).await;
                    collect(r, &mut readings);
                }
            } else {
                collect(result, &mut readings);
            }
        }
        if !readings.is_empty() {
            ctx.send_now(Input::ObdReadings(readings)).await?;
        }
        if last_dtc.is_none_or(|t| t.elapsed() >= dtc_every) {
            last_dtc = Some(tokio::time::Instant::now());
            for mode in [0x03u8, 0x07] {
                let result = elm.query(&format!("{mode:02X}")).await;
                match result {
                    Ok((messages, errors)) => {
                        for item in decode_messages(messages, errors) {
                            if let ElmItem::Response {
                                ecu,
                                response: Response::Dtcs { mode, codes },
                            } = item
                            {
                                let ecu = ecu.unwrap_or(0);
                                ctx.send_now(Input::ObdDtcs { ecu, mode, codes }).await?;
                            }
                        }
                    }
                    Err(Elm327Error::Adapter {
                        source: AdapterError::NoData,
                        ..
                    }) => {
                        ctx.send_now(Input::ObdDtcs {
                            ecu: ALL_ECUS,
                            mode,
                            codes: Vec::new(),
                        })
                        .await?;
                    }
                    Err(e) => {
                        tracing::debug!(source = ctx.name, mode, error = %e, "DTC read failed")
                    }
                }
            }
        }
    }
}

fn collect(result: QueryResult, readings: &mut Vec<Reading>) {
    match result {
        Ok((messages, errors)) => readings.extend(readings_of(decode_messages(messages, errors))),
        // NO DATA with the engine off, a timeout: the next round asks again.
        Err(e) => tracing::debug!(error = %e, "OBD request failed"),
    }
}
