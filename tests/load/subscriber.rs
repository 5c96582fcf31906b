//! Live-stream subscribers: WebSocket clients of `/api/v1/stream` that record,
//! for every position event of a probe vehicle, how long after the device stamped
//! it (the newest position of a batch carries the send time) it arrived.

use crate::load::device::now_ms;
use crate::load::stats::Latencies;
use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// Longest a subscriber waits to connect and be upgraded.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// What one subscriber saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub latencies: Latencies,
    /// Position events of probe vehicles received.
    pub probe_events: u64,
    /// Other events received (the background load's vehicles).
    pub other_events: u64,
    /// The close the server sent, if it ended the stream.
    pub closed: Option<String>,
}

/// Counts across all subscribers, readable while they run.
#[derive(Debug, Default)]
pub struct Progress {
    pub subscribed: AtomicU64,
    pub probe_events: AtomicU64,
}

/// Which vehicles a subscriber asks the server for.
#[derive(Debug, Clone)]
pub enum Watch {
    /// Every position of the tenant (a fleet map).
    All,
    /// Only these vehicles (a dispatcher's board).
    Vehicles(Vec<Uuid>),
}

/// Connects from `source`, subscribes to positions, and records until `stop`.
pub async fn run(
    server: SocketAddr,
    source: IpAddr,
    api_key: String,
    watch: Watch,
    probes: Arc<HashSet<Uuid>>,
    progress: Arc<Progress>,
    mut stop: watch::Receiver<bool>,
) -> Result<Seen> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, socket.connect(server))
        .await
        .context("connecting the stream: timed out")??;
    stream.set_nodelay(true)?;
    let mut req = format!("ws://{server}/api/v1/stream").into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {api_key}").parse()?);
    let (mut ws, _) = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_tungstenite::client_async(req, stream),
    )
    .await
    .context("stream handshake: timed out")?
    .context("stream handshake")?;
    let vehicles: Vec<String> = match &watch {
        Watch::All => vec![],
        Watch::Vehicles(v) => v.iter().map(Uuid::to_string).collect(),
    };
    let subscribe =
        serde_json::json!({"type": "subscribe", "kinds": ["position"], "vehicles": vehicles});
    ws.send(Message::text(subscribe.to_string())).await?;
    let mut seen = Seen::default();
    let mut subscribed = false;
    loop {
        let msg = tokio::select! {
            m = ws.next() => m,
            _ = stop.wait_for(|s| *s) => break,
        };
        let msg = match msg {
            None => bail!("the stream ended without a close"),
            Some(Err(e)) => bail!("stream error: {e}"),
            Some(Ok(m)) => m,
        };
        let received = now_ms();
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(frame) => {
                seen.closed =
                    Some(frame.map_or("no reason".into(), |f| format!("{} {}", f.code, f.reason)));
                return Ok(seen);
            }
            _ => continue,
        };
        let v: serde_json::Value = serde_json::from_str(text.as_str())?;
        match v["type"].as_str() {
            Some("subscribed") if !subscribed => {
                subscribed = true;
                progress.subscribed.fetch_add(1, Ordering::Relaxed);
            }
            Some("event") => {
                let vehicle = v["vehicle"].as_str().and_then(|s| Uuid::parse_str(s).ok());
                if vehicle.is_some_and(|id| probes.contains(&id)) {
                    let at = v["at"].as_str().context("event without at")?;
                    let at = time::OffsetDateTime::parse(
                        at,
                        &time::format_description::well_known::Rfc3339,
                    )?;
                    let at_ms = (at.unix_timestamp_nanos() / 1_000_000) as i64;
                    seen.latencies.push_ms(received - at_ms);
                    seen.probe_events += 1;
                    progress.probe_events.fetch_add(1, Ordering::Relaxed);
                } else {
                    seen.other_events += 1;
                }
            }
            Some("error") => bail!("the stream refused the subscription: {v}"),
            _ => {}
        }
    }
    let _ = ws.close(None).await;
    Ok(seen)
}
