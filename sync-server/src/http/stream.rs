//! `GET /api/v1/stream`: the live stream over a WebSocket.
//!
//! Authentication is the API key, as `Authorization: Bearer KEY` or, from a
//! browser (which cannot set headers on a WebSocket), as a subprotocol:
//! `Sec-WebSocket-Protocol: fleet.v1, bearer.KEY`; the server answers `fleet.v1`.
//! A dashboard signed in with a password sends only `fleet.v1` and its session
//! cookie; since a WebSocket handshake is not held to the same-origin rule, a
//! cookie is taken only from a page of this server's own origin (the `Origin`
//! header names the host the request went to).
//! The caller needs `read_fleet`, and the tenant's `live_stream` feature.
//!
//! The client sends `subscribe` messages (see [`crate::live::messages`]); the
//! server sends events, heartbeats and, on a resume, `resumed` or `gap`. Close
//! codes: 4008 the client did not keep up ("client too slow"), 4001 nothing was
//! heard from the client (not even a pong) for the idle timeout, 1011 the server
//! could not read the stream log, 1001 the server is shutting down.

use super::auth::{Caller, Capability};
use super::error::ApiError;
use crate::live::messages::{self, ClientMessage, Filter};
use crate::live::{Hub, Kick, Subscription};
use crate::AppState;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::time::Instant;
use uuid::Uuid;

/// The subprotocol the server speaks, and the prefix of a key sent as one.
pub const SUBPROTOCOL: &str = "fleet.v1";
const KEY_SUBPROTOCOL_PREFIX: &str = "bearer.";

pub const CLOSE_TOO_SLOW: u16 = 4008;
pub const CLOSE_IDLE: u16 = 4001;
const CLOSE_LOG_FAILED: u16 = 1011;

/// Events read from the log per query when replaying.
const REPLAY_PAGE: u32 = 500;

/// The stream's caller: a [`Caller`], whose key may also come as a subprotocol.
pub struct StreamCaller(pub Caller);

impl FromRequestParts<AppState> for StreamCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            let key = parts
                .headers
                .get_all(header::SEC_WEBSOCKET_PROTOCOL)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .find_map(|p| p.trim().strip_prefix(KEY_SUBPROTOCOL_PREFIX))
                .map(str::to_owned);
            if let Some(key) = key {
                let value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                    ApiError::unauthorized("bad_api_key", "the API key is not valid")
                })?;
                parts.headers.insert(header::AUTHORIZATION, value);
            } else if super::session::cookie(&parts.headers, super::session::SESSION_COOKIE)
                .is_some()
                && !same_origin(&parts.headers)
            {
                return Err(ApiError::forbidden(
                    "cross_origin",
                    "a stream signed in by session cookie opens only from this server's own pages",
                ));
            }
        }
        Caller::from_request_parts(parts, state)
            .await
            .map(StreamCaller)
    }
}

/// Whether a request's `Origin`, if it has one, is the host it was sent to
/// (`Host`, or `X-Forwarded-Host` behind a proxy). Browsers always send
/// `Origin` on a WebSocket handshake; other clients need not.
fn same_origin(headers: &axum::http::HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|v| v.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest);
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h.trim()))
}

pub async fn stream(
    State(state): State<AppState>,
    StreamCaller(caller): StreamCaller,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    caller.require(Capability::ReadFleet)?;
    caller.require_feature("live_stream")?;
    let ws = ws.map_err(|e| {
        ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "websocket_required",
            format!("/api/v1/stream is a WebSocket: {}", e.body_text()),
        )
    })?;
    let tenant = caller.tenant;
    Ok(ws
        .protocols([SUBPROTOCOL])
        .on_upgrade(move |socket| async move {
            Connection::new(socket, state.live.clone(), state.storage.clone(), tenant)
                .run()
                .await;
        })
        .into_response())
}

/// Why a connection ends.
enum End {
    /// The client went away or closed; nothing more to send.
    Gone,
    Close(u16, &'static str),
}

struct Connection {
    socket: WebSocket,
    hub: Hub,
    storage: Arc<dyn crate::storage::Storage>,
    tenant: Uuid,
    sub: Option<Subscription>,
    filter: Filter,
    /// The highest event id this client has been sent (or skipped past).
    last_sent: u64,
    last_heard: Instant,
}

impl Connection {
    fn new(
        socket: WebSocket,
        hub: Hub,
        storage: Arc<dyn crate::storage::Storage>,
        tenant: Uuid,
    ) -> Self {
        Connection {
            socket,
            hub,
            storage,
            tenant,
            sub: None,
            filter: Filter::default(),
            last_sent: 0,
            last_heard: Instant::now(),
        }
    }

    async fn run(mut self) {
        let end = self.serve().await;
        if let End::Close(code, reason) = end {
            let grace = self.hub.settings().close_grace;
            let frame = Message::Close(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            }));
            // A slow client may take a while to read down to the close frame.
            let _ = tokio::time::timeout(grace, self.socket.send(frame)).await;
        }
    }

    async fn serve(&mut self) -> End {
        let settings = self.hub.settings().clone();
        let mut heartbeat =
            tokio::time::interval_at(Instant::now() + settings.heartbeat, settings.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let never = Arc::new(Kick::default());
        loop {
            let kick = self.kick(&never);
            tokio::select! {
                msg = self.socket.recv() => {
                    let msg = match msg {
                        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return End::Gone,
                        Some(Ok(m)) => m,
                    };
                    self.last_heard = Instant::now();
                    if let Message::Text(text) = msg {
                        if let Err(end) = self.on_text(text.as_str()).await {
                            return end;
                        }
                    } else if let Message::Binary(_) = msg {
                        let bad = messages::BadMessage { code: "bad_message", message: "the stream speaks JSON text messages".into() };
                        if let Err(end) = self.send_text(messages::error_text(&bad).into()).await {
                            return end;
                        }
                    }
                }
                ev = recv_event(&mut self.sub) => {
                    let Some(ev) = ev else {
                        return if self.kick(&never).fired() {
                            End::Close(CLOSE_TOO_SLOW, "client too slow")
                        } else {
                            End::Close(1001, "server shutting down")
                        };
                    };
                    if ev.id <= self.last_sent {
                        continue;
                    }
                    self.last_sent = ev.id;
                    if self.filter.matches(&ev.kind, ev.vehicle) {
                        if let Err(end) = self.send_text(ev.text.clone()).await {
                            return end;
                        }
                    }
                }
                _ = kick.wait() => return End::Close(CLOSE_TOO_SLOW, "client too slow"),
                _ = heartbeat.tick() => {
                    if self.last_heard.elapsed() >= settings.idle_timeout {
                        return End::Close(CLOSE_IDLE, "no pong within the idle timeout");
                    }
                    if let Err(end) = self.send_text(messages::heartbeat_text().into()).await {
                        return end;
                    }
                    if let Err(end) = self.send(Message::Ping(Default::default())).await {
                        return end;
                    }
                }
            }
        }
    }

    fn kick(&self, never: &Arc<Kick>) -> Arc<Kick> {
        self.sub
            .as_ref()
            .map_or_else(|| never.clone(), |s| s.kicked.clone())
    }

    async fn send_text(&mut self, text: Utf8Bytes) -> Result<(), End> {
        self.send(Message::Text(text)).await
    }

    /// Sends one message, giving up when the hub drops this client for being
    /// slow or the client has not taken anything for the idle timeout.
    async fn send(&mut self, msg: Message) -> Result<(), End> {
        let kick = self.sub.as_ref().map(|s| s.kicked.clone());
        let idle = self.hub.settings().idle_timeout;
        let kicked = async {
            match &kick {
                Some(k) => k.wait().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = self.socket.send(msg) => r.map_err(|_| End::Gone),
            _ = kicked => Err(End::Close(CLOSE_TOO_SLOW, "client too slow")),
            _ = tokio::time::sleep(idle) => Err(End::Close(CLOSE_TOO_SLOW, "client too slow")),
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        let (filter, resume_after) = match messages::parse_client(text) {
            Ok(ClientMessage::Subscribe {
                filter,
                resume_after,
            }) => (filter, resume_after),
            Err(bad) => return self.send_text(messages::error_text(&bad).into()).await,
        };
        let first = self.sub.is_none();
        match &self.sub {
            None => self.sub = Some(self.hub.subscribe(self.tenant, filter.clone()).await),
            Some(sub) => sub.set_filter(filter.clone()),
        }
        // Kept here too: events queued under the previous filter are checked
        // against this one before they are sent.
        self.filter = filter;
        let Some(store) = self.storage.stream_store() else {
            return Err(End::Close(
                CLOSE_LOG_FAILED,
                "the stream log is unavailable",
            ));
        };
        let bounds = match store.stream_bounds(self.tenant).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(tenant = %self.tenant, "live stream: reading the log bounds failed: {e}");
                return Err(End::Close(
                    CLOSE_LOG_FAILED,
                    "the stream log is unavailable",
                ));
            }
        };
        match resume_after {
            None => {
                if first {
                    self.last_sent = bounds.head;
                }
                self.send_text(messages::subscribed_text(bounds.head).into())
                    .await
            }
            Some(after) if bounds.can_resume_after(after) => {
                self.send_text(messages::resumed_text(after).into()).await?;
                self.replay(after, bounds.head).await
            }
            Some(_) => {
                self.last_sent = self.last_sent.max(bounds.head);
                self.send_text(messages::gap_text(bounds.oldest, bounds.head).into())
                    .await
            }
        }
    }

    /// Sends the logged events after `after` up to `head`; later ones arrive
    /// through the subscription.
    async fn replay(&mut self, after: u64, head: u64) -> Result<(), End> {
        let mut cursor = after;
        while cursor < head {
            let rows = match self.storage.stream_store() {
                Some(store) => store.stream_events_after(self.tenant, cursor, REPLAY_PAGE),
                None => {
                    return Err(End::Close(
                        CLOSE_LOG_FAILED,
                        "the stream log is unavailable",
                    ))
                }
            }
            .await;
            let rows = match rows {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(tenant = %self.tenant, "live stream: replaying the log failed: {e}");
                    return Err(End::Close(
                        CLOSE_LOG_FAILED,
                        "the stream log is unavailable",
                    ));
                }
            };
            let Some(last) = rows.last() else { break };
            cursor = last.id;
            for row in rows.iter().filter(|r| r.id <= head) {
                if self.filter.matches(&row.kind, row.vehicle) {
                    self.send_text(messages::event_text(row).into()).await?;
                }
            }
        }
        // Everything up to `head` is sent; what came later is in the subscription's queue.
        self.last_sent = head;
        Ok(())
    }
}

async fn recv_event(sub: &mut Option<Subscription>) -> Option<Arc<crate::live::Delivered>> {
    match sub {
        Some(s) => s.events.recv().await,
        None => std::future::pending().await,
    }
}

/// The OpenAPI fragment of the stream.
pub fn openapi() -> Value {
    json!({
        "paths": {
            "/api/v1/stream": {
                "get": {
                    "operationId": "liveStream",
                    "summary": "Live stream of the fleet (WebSocket)",
                    "description": "Upgrade to a WebSocket (subprotocol `fleet.v1`). Authenticate with `Authorization: Bearer KEY` or, from a browser, `Sec-WebSocket-Protocol: fleet.v1, bearer.KEY`, or with a dashboard session's cookie (`fleet.v1` only; the `Origin` must be this server's, else 403 `cross_origin`). Send `StreamSubscribe` messages; receive `StreamEvent`, `StreamHeartbeat` (every 15 s, with a WebSocket ping), `StreamSubscribed`, `StreamResumed`, `StreamGap` and `StreamError` messages. Event ids increase per tenant; resume after a reconnect with `resume_after` set to the last id seen. Close codes: 4008 `client too slow` (the client's queue filled up), 4001 nothing heard from the client (not even a pong) for 45 s, 1011 the stream log could not be read, 1001 the server is shutting down. Cost data is never sent on the stream.",
                    "x-capability": "read_fleet",
                    "tags": ["stream"],
                    "responses": {
                        "101": {"description": "switching to the WebSocket protocol"},
                        "401": {"description": "missing or bad API key", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                        "403": {"description": "the role may not read the fleet, or the live_stream feature is off", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                        "426": {"description": "not a WebSocket upgrade request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
                    }
                }
            }
        },
        "components": {
            "schemas": {
                "StreamSubscribe": {
                    "type": "object",
                    "required": ["type"],
                    "additionalProperties": false,
                    "properties": {
                        "type": {"type": "string", "enum": ["subscribe"]},
                        "vehicles": {"type": "array", "items": {"type": "string", "format": "uuid"}, "description": "only these vehicles; empty or absent: all"},
                        "kinds": {"type": "array", "items": {"$ref": "#/components/schemas/StreamKind"}, "description": "only these kinds; empty or absent: all"},
                        "resume_after": {"type": "integer", "format": "int64", "minimum": 0, "description": "replay the events after this id first"}
                    }
                },
                "StreamKind": {
                    "type": "string",
                    "enum": ["position", "device_status", "fault", "geofence", "reservation", "custody", "maintenance"]
                },
                "StreamEvent": {
                    "type": "object",
                    "required": ["type", "id", "kind", "vehicle", "data", "at"],
                    "properties": {
                        "type": {"type": "string", "enum": ["event"]},
                        "id": {"type": "integer", "format": "int64"},
                        "kind": {"$ref": "#/components/schemas/StreamKind"},
                        "vehicle": {"type": ["string", "null"], "format": "uuid"},
                        "data": {"type": "object"},
                        "at": {"type": "string", "format": "date-time"}
                    }
                },
                "StreamHeartbeat": {
                    "type": "object",
                    "required": ["type"],
                    "properties": {"type": {"type": "string", "enum": ["heartbeat"]}}
                },
                "StreamSubscribed": {
                    "type": "object",
                    "required": ["type", "head"],
                    "properties": {
                        "type": {"type": "string", "enum": ["subscribed"]},
                        "head": {"type": "integer", "format": "int64", "description": "the newest id so far; events after it follow"}
                    }
                },
                "StreamResumed": {
                    "type": "object",
                    "required": ["type", "from"],
                    "properties": {
                        "type": {"type": "string", "enum": ["resumed"]},
                        "from": {"type": "integer", "format": "int64", "description": "the events after this id follow, none missing"}
                    }
                },
                "StreamGap": {
                    "type": "object",
                    "required": ["type", "oldest", "head"],
                    "description": "resume_after is older than the log keeps: reload state over the REST API; events after `head` follow",
                    "properties": {
                        "type": {"type": "string", "enum": ["gap"]},
                        "oldest": {"type": "integer", "format": "int64"},
                        "head": {"type": "integer", "format": "int64"}
                    }
                },
                "StreamError": {
                    "type": "object",
                    "required": ["type", "code", "message"],
                    "description": "a client message was refused; the connection stays open",
                    "properties": {
                        "type": {"type": "string", "enum": ["error"]},
                        "code": {"type": "string", "enum": ["bad_message", "unknown_message_type", "bad_vehicle", "bad_kind"]},
                        "message": {"type": "string"}
                    }
                }
            }
        }
    })
}
