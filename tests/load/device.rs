//! A simulated gateway: its own key, one persistent HTTP/1 connection (bound to
//! a chosen loopback source address), enrollment, and batches shaped like the
//! agent's. Batch contents are made by pure functions; only `SimDevice` does I/O.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use ed25519_dalek::{Signer, SigningKey};
use fleet_protocol::event::{kinds, Position};
use fleet_protocol::{api, auth, encode_batch, BatchHeader, BootId, Event, EventData, EventTime};
use fleet_protocol::{Hlc, Priority};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How much a batch holds, as the agent sends them: one minute of driving, or
/// five minutes (positions at 1 Hz after thinning, engine signals, trip and
/// fault events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    OneMinute,
    FiveMinutes,
    /// A few positions: a probe whose newest position times the live stream.
    Probe,
}

impl Shape {
    /// Device `i`'s usual batch: even devices sync every minute, odd ones every five.
    pub fn of_device(i: usize) -> Shape {
        if i % 2 == 0 {
            Shape::OneMinute
        } else {
            Shape::FiveMinutes
        }
    }

    fn seconds(self) -> u64 {
        match self {
            Shape::OneMinute => 60,
            Shape::FiveMinutes => 300,
            Shape::Probe => 3,
        }
    }
}

/// Where a device's recording stands: its boot, next seq and monotonic time.
#[derive(Debug, Clone, Copy)]
pub struct Recording {
    pub boot: BootId,
    pub next_seq: u64,
    pub mono_ms: u64,
    /// Picks the route and the fault codes, so devices differ.
    pub device_no: u32,
}

impl Recording {
    pub fn new(device_no: u32) -> Recording {
        Recording {
            boot: BootId::random(),
            next_seq: 1,
            mono_ms: 10_000,
            device_no,
        }
    }
}

/// The events of one batch ending at wall time `end_wall_ms` (the newest
/// position carries exactly that time). Advances `rec`. Pure.
pub fn batch_events(rec: &mut Recording, shape: Shape, end_wall_ms: i64) -> Vec<Event> {
    let secs = shape.seconds();
    let mut out = Vec::with_capacity(secs as usize + secs as usize / 10 + 4);
    let start_mono = rec.mono_ms;
    let wall_of = |mono: u64| end_wall_ms - (start_mono + (secs - 1) * 1000 - mono) as i64;
    let d = i64::from(rec.device_no);
    let mut push = |rec: &mut Recording, mono: u64, kind, priority, data| {
        let wall_ms = wall_of(mono);
        out.push(Event {
            seq: rec.next_seq,
            kind,
            priority,
            time: EventTime {
                boot_id: rec.boot,
                mono_ms: mono,
                wall_ms,
                hlc: Hlc::new(wall_ms as u64, 0),
            },
            config_version: 1,
            data,
        });
        rec.next_seq += 1;
    };
    if shape == Shape::FiveMinutes {
        push(
            rec,
            start_mono,
            kinds::TRIP_START,
            Priority::Normal,
            EventData::Json(json!({"odometer_km": 10_000 + d})),
        );
    }
    for s in 0..secs {
        let mono = start_mono + s * 1000;
        let t = (mono / 1000) as i32;
        let position = Position {
            lat_e7: 525_000_000 + (d % 1000) as i32 * 1_000 + t * 90,
            lon_e7: 134_000_000 + (d / 1000) as i32 * 1_000 + t * 55,
            alt_dm: Some(340 + t % 7),
            speed_cms: Some(1_200 + (t % 40) as u32 * 10),
            heading_cdeg: Some(4_500 + (t % 90) as u16),
            hdop_d: Some(9),
            sats: Some(11),
            fix: 2,
        };
        push(
            rec,
            mono,
            kinds::POSITION,
            Priority::Telemetry,
            EventData::Position(position),
        );
        if shape != Shape::Probe && s % 10 == 5 {
            let signal = json!({"rpm": 1_400 + (t % 300), "coolant_c": 88, "fuel_pct": 61});
            push(
                rec,
                mono,
                kinds::SIGNAL,
                Priority::Telemetry,
                EventData::Json(signal),
            );
        }
    }
    if shape == Shape::FiveMinutes {
        let last = start_mono + (secs - 1) * 1000;
        if rec.device_no % 7 == 0 {
            let dtc = json!({"code": format!("P0{:03}", 300 + d % 9), "source": "obd"});
            push(
                rec,
                last,
                kinds::DTC_SET,
                Priority::Critical,
                EventData::Json(dtc),
            );
        }
        push(
            rec,
            last,
            kinds::TRIP_END,
            Priority::Normal,
            EventData::Json(json!({"distance_m": 4_100, "duration_s": secs})),
        );
    }
    // The newest position must be the batch's last position event.
    out.sort_by_key(|e| e.seq);
    rec.mono_ms = start_mono + secs * 1000;
    out
}

/// The wire frame of `events` from `device` (zstd level 3, as the agent sends).
pub fn frame(tenant: Uuid, device: Uuid, events: &[Event]) -> Result<Bytes> {
    let header = BatchHeader {
        tenant_id: tenant,
        device_id: device,
        first_seq: events.first().context("an empty batch")?.seq,
        last_seq: events.last().context("an empty batch")?.seq,
        anchors: vec![],
    };
    Ok(Bytes::from(encode_batch(&header, events, 3)?))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One HTTP/1 connection from `source` to `server`, kept open.
pub async fn connect(server: SocketAddr, source: IpAddr) -> Result<SendRequest<Full<Bytes>>> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket
        .bind(SocketAddr::new(source, 0))
        .with_context(|| format!("binding a source port on {source}"))?;
    let stream = tokio::time::timeout(REQUEST_TIMEOUT, socket.connect(server))
        .await
        .with_context(|| format!("connecting {source} -> {server}: timed out"))?
        .with_context(|| format!("connecting {source} -> {server}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// A device's answer from the server.
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
}

/// A simulated device with its identity and connection.
pub struct SimDevice {
    pub tenant: Uuid,
    pub device: Uuid,
    key: SigningKey,
    server: SocketAddr,
    source: IpAddr,
    conn: SendRequest<Full<Bytes>>,
    pub recording: Recording,
    /// Events the server reported as newly stored.
    pub stored: u64,
    /// Connections re-opened after the server closed one.
    pub reconnects: u32,
}

/// Longest a request may take before the device gives up: a server that stops
/// accepting must fail the run, not hang it. Far above the agent's own 30 s, so
/// that a burst's queueing is measured rather than cut off.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

async fn request(
    conn: &mut SendRequest<Full<Bytes>>,
    server: SocketAddr,
    path: &str,
    content_type: &str,
    authorization: Option<String>,
    body: Bytes,
) -> Result<Reply> {
    tokio::time::timeout(
        REQUEST_TIMEOUT,
        request_unbounded(conn, server, path, content_type, authorization, body),
    )
    .await
    .with_context(|| format!("POST {path}: no answer within {REQUEST_TIMEOUT:?}"))?
}

async fn request_unbounded(
    conn: &mut SendRequest<Full<Bytes>>,
    server: SocketAddr,
    path: &str,
    content_type: &str,
    authorization: Option<String>,
    body: Bytes,
) -> Result<Reply> {
    conn.ready().await?;
    let mut req = hyper::Request::post(path)
        .header("host", server.to_string())
        .header("content-type", content_type);
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let resp = conn.send_request(req.body(Full::new(body))?).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Reply { status, body })
}

impl SimDevice {
    /// Connects from `source` and enrolls with `token`.
    pub async fn enroll(
        server: SocketAddr,
        source: IpAddr,
        token: &str,
        device_no: u32,
    ) -> Result<SimDevice> {
        let mut conn = connect(server, source).await?;
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let public_key = auth::encode_public_key(&key.verifying_key());
        let proof = key.sign(&auth::enroll_message(token, &public_key));
        let body = serde_json::to_vec(&api::EnrollRequest {
            token: token.to_owned(),
            public_key,
            name: Some(format!("load-{device_no:05}")),
            proof: base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                proof.to_bytes(),
            ),
            agent_version: Some("fleet-load".into()),
            kind: Default::default(),
        })?;
        let reply = request(
            &mut conn,
            server,
            api::PATH_ENROLL,
            "application/json",
            None,
            body.into(),
        )
        .await?;
        if reply.status != 200 && reply.status != 201 {
            bail!(
                "enrollment answered {}: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
        }
        let enrolled: api::EnrollResponse = serde_json::from_slice(&reply.body)?;
        Ok(SimDevice {
            tenant: enrolled.tenant_id,
            device: enrolled.device_id,
            key,
            server,
            source,
            conn,
            recording: Recording::new(device_no),
            stored: 0,
            reconnects: 0,
        })
    }

    /// The next batch of `shape`, framed, its newest position stamped `end_wall_ms`.
    pub fn next_frame(&mut self, shape: Shape, end_wall_ms: i64) -> Result<(Bytes, u64)> {
        let events = batch_events(&mut self.recording, shape, end_wall_ms);
        let last = events.last().map_or(0, |e| e.seq);
        Ok((frame(self.tenant, self.device, &events)?, last))
    }

    /// Sends one framed batch, signed now; the ack and how long it took. A
    /// connection the server closed is re-opened once (the resend is idempotent).
    pub async fn send(&mut self, frame: Bytes, last_seq: u64) -> Result<Duration> {
        let started = Instant::now();
        let mut attempt = 0;
        let reply = loop {
            let authorization = auth::sign_request(
                &self.key,
                self.device,
                "POST",
                api::PATH_BATCHES,
                now_ms(),
                &frame,
            );
            let sent = request(
                &mut self.conn,
                self.server,
                api::PATH_BATCHES,
                api::CONTENT_TYPE_BATCH,
                Some(authorization),
                frame.clone(),
            )
            .await;
            match sent {
                Ok(r) => break r,
                Err(e) if attempt == 0 => {
                    tracing_note(&format!("device {}: {e:#}; reconnecting", self.device));
                    attempt += 1;
                    self.reconnects += 1;
                    self.conn = connect(self.server, self.source).await?;
                }
                Err(e) => return Err(e),
            }
        };
        let took = started.elapsed();
        if reply.status != 200 {
            bail!(
                "batch up to seq {last_seq} answered {}: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
        }
        let ack: api::BatchAck = serde_json::from_slice(&reply.body)?;
        if ack.acked_seq != last_seq {
            bail!("batch up to seq {last_seq} was acked to {}", ack.acked_seq);
        }
        self.stored += u64::from(ack.stored);
        Ok(took)
    }
}

fn tracing_note(msg: &str) {
    eprintln!("fleet-load: {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_five_minute_batch_holds_a_trip_with_positions_signals_and_its_newest_position_last() {
        let mut rec = Recording::new(14);
        let end = 1_767_225_600_000;
        let events = batch_events(&mut rec, Shape::FiveMinutes, end);
        let count = |k: &str| events.iter().filter(|e| e.kind.as_str() == k).count();
        assert_eq!(count("position"), 300);
        assert_eq!(count("signal"), 30);
        assert_eq!(count("trip_start"), 1);
        assert_eq!(count("trip_end"), 1);
        assert_eq!(count("dtc_set"), 1);
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
        let newest = events
            .iter()
            .filter(|e| e.kind.as_str() == "position")
            .max_by_key(|e| e.seq)
            .unwrap();
        assert_eq!(newest.time.wall_ms, end);
        assert!(events.iter().all(|e| e.invalid_reason().is_none()));
        let next = batch_events(&mut rec, Shape::OneMinute, end + 60_000);
        assert_eq!(next[0].seq, events.len() as u64 + 1);
        assert_eq!(next.len(), 66);
        assert!(next[0].time.mono_ms > events.last().unwrap().time.mono_ms);
    }

    #[test]
    fn a_framed_batch_decodes_to_the_same_events() {
        let mut rec = Recording::new(3);
        let events = batch_events(&mut rec, Shape::OneMinute, 1_767_225_600_000);
        let (t, d) = (Uuid::new_v4(), Uuid::new_v4());
        let wire = frame(t, d, &events).unwrap();
        let batch = fleet_protocol::decode_batch(&wire).unwrap();
        assert_eq!(batch.header.device_id, d);
        assert_eq!(batch.events, events);
        assert!(batch.rejects.is_empty());
    }
}
