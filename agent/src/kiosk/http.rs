//! The kiosk's local web page and API, on a loopback address for the kiosk
//! browser. One request per connection (HTTP/1.1 with `Connection: close`),
//! small bounded bodies, JSON in and out; errors are
//! `{"error": {"code", "message"}}` as on the server.
//!
//! | request | does |
//! | --- | --- |
//! | `GET /` | the touch UI |
//! | `GET /api/state` | the current step, last result, online, events waiting to sync |
//! | `POST /api/scan {"text"}` | a scan: a label's text or a typed short code |
//! | `POST /api/confirm`, `POST /api/cancel` | confirm a check-out; back to the start |
//! | `POST /api/checkin/rating {"rating"}` | 1–5 |
//! | `POST /api/checkin/notes {"notes"}` | free text |
//! | `POST /api/checkin/damage {"marks": [{"x","y","note"}]}` | marks on the outline |
//! | `POST /api/checkin/photo` | a photo from the kiosk's camera |
//! | `POST /api/checkin/signature {"png"}` | the signature pad as a PNG data URL |
//! | `POST /api/checkin/submit` | finish the check-in |
//! | `GET /api/gpio` | simulated GPIO only: every line's transitions |
//! | `POST /api/sim/door {"open"}` | simulated GPIO only: open or close the key box |

use super::engine::{Kiosk, KioskError};
use super::flow::{DamageMark, Input, InputError};
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const MAX_HEAD: usize = 16 << 10;
const MAX_BODY: usize = 1 << 20;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

const INDEX_HTML: &str = include_str!("ui/index.html");
const KIOSK_JS: &str = include_str!("ui/kiosk.js");
const KIOSK_CSS: &str = include_str!("ui/kiosk.css");

/// A request line and the one header we need.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    pub path: String,
    pub content_length: usize,
}

/// Parse a request head (up to and including the blank line). Pure.
pub fn parse_head(head: &[u8]) -> Result<Head, &'static str> {
    let text = std::str::from_utf8(head).map_err(|_| "request head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let line = lines.next().ok_or("empty request")?;
    let mut parts = line.split(' ');
    let (method, target, version) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    if method.is_empty() || !target.starts_with('/') || !version.starts_with("HTTP/1.") {
        return Err("not an HTTP/1.x request line");
    }
    let mut content_length = 0;
    for h in lines {
        let Some((name, value)) = h.split_once(':') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("content-length") {
            content_length = value
                .trim()
                .parse()
                .map_err(|_| "content-length is not a number")?;
        } else if name.trim().eq_ignore_ascii_case("transfer-encoding") {
            return Err("chunked bodies are not accepted; send content-length");
        }
    }
    Ok(Head {
        method: method.to_owned(),
        path: target.split('?').next().unwrap_or("").to_owned(),
        content_length,
    })
}

/// Serve until `stop` turns true.
pub async fn serve(listener: TcpListener, kiosk: Kiosk, mut stop: watch::Receiver<bool>) {
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (stream, _) = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "kiosk UI accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let kiosk = kiosk.clone();
        tokio::spawn(async move {
            if tokio::time::timeout(IO_TIMEOUT, answer(stream, &kiosk))
                .await
                .is_err()
            {
                tracing::debug!("kiosk UI request timed out");
            }
        });
    }
}

struct Reply {
    status: u16,
    ctype: &'static str,
    body: Vec<u8>,
}

fn error(status: u16, code: &str, message: &str) -> Reply {
    Reply {
        status,
        ctype: "application/json",
        body: json!({"error": {"code": code, "message": message}})
            .to_string()
            .into_bytes(),
    }
}

fn json_reply(v: serde_json::Value) -> Reply {
    Reply {
        status: 200,
        ctype: "application/json",
        body: v.to_string().into_bytes(),
    }
}

async fn answer(mut stream: TcpStream, kiosk: &Kiosk) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            let _ = respond(
                &mut stream,
                error(431, "request_too_large", "request head too large"),
            )
            .await;
            return;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = match parse_head(&buf[..head_end]) {
        Ok(h) => h,
        Err(e) => {
            let _ = respond(&mut stream, error(400, "bad_request", e)).await;
            return;
        }
    };
    if head.content_length > MAX_BODY {
        let _ = respond(
            &mut stream,
            error(
                413,
                "body_too_large",
                &format!("bodies are at most {MAX_BODY} bytes"),
            ),
        )
        .await;
        return;
    }
    let mut body = buf[head_end..].to_vec();
    while body.len() < head.content_length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(head.content_length);
    let reply = route(&head, &body, kiosk).await;
    let _ = respond(&mut stream, reply).await;
}

async fn respond(stream: &mut TcpStream, r: Reply) -> std::io::Result<()> {
    let reason = match r.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        r.status,
        r.ctype,
        r.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&r.body).await?;
    stream.shutdown().await
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Reply> {
    serde_json::from_slice(body).map_err(|e| error(400, "invalid_json", &e.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanBody {
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RatingBody {
    rating: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotesBody {
    notes: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DamageBody {
    marks: Vec<DamageMark>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureBody {
    png: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DoorBody {
    open: bool,
}

fn kiosk_error(e: KioskError) -> Reply {
    match e {
        KioskError::Input(e @ InputError::Invalid(_)) => error(400, e.code(), &e.to_string()),
        KioskError::Input(e) => error(409, e.code(), &e.to_string()),
        KioskError::Image(e) => error(400, "invalid_image", &e.to_string()),
        KioskError::NoFrame => error(409, "no_camera_frame", &e.to_string()),
        e => error(503, "not_recorded", &e.to_string()),
    }
}

async fn route(head: &Head, body: &[u8], kiosk: &Kiosk) -> Reply {
    let static_file = |ctype: &'static str, text: &'static str| Reply {
        status: 200,
        ctype,
        body: text.as_bytes().to_vec(),
    };
    let input = match (head.method.as_str(), head.path.as_str()) {
        ("GET", "/") => return static_file("text/html; charset=utf-8", INDEX_HTML),
        ("GET", "/kiosk.js") => return static_file("text/javascript; charset=utf-8", KIOSK_JS),
        ("GET", "/kiosk.css") => return static_file("text/css; charset=utf-8", KIOSK_CSS),
        ("GET", "/api/state") => return json_reply(kiosk.view().await),
        ("GET", "/api/gpio") => {
            return match kiosk.gpio_record() {
                Some(v) => json_reply(v),
                None => error(404, "not_found", "the GPIO is not simulated"),
            }
        }
        ("POST", "/api/sim/door") => {
            let b: DoorBody = match parse(body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            return if kiosk.sim_door(b.open) {
                json_reply(kiosk.view().await)
            } else {
                error(404, "not_found", "the GPIO is not simulated")
            };
        }
        ("POST", "/api/checkin/photo") => {
            return match kiosk.take_photo().await {
                Ok(()) => json_reply(kiosk.view().await),
                Err(e) => kiosk_error(e),
            }
        }
        ("POST", "/api/checkin/signature") => {
            let b: SignatureBody = match parse(body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            return match kiosk.sign(&b.png).await {
                Ok(()) => json_reply(kiosk.view().await),
                Err(e) => kiosk_error(e),
            };
        }
        ("POST", "/api/scan") => match parse::<ScanBody>(body) {
            Ok(b) if b.text.len() <= 1024 => Input::Scan(b.text),
            Ok(_) => return error(400, "invalid_input", "a scan is at most 1024 characters"),
            Err(r) => return r,
        },
        ("POST", "/api/confirm") => Input::Confirm,
        ("POST", "/api/cancel") => Input::Cancel,
        ("POST", "/api/checkin/rating") => match parse::<RatingBody>(body) {
            Ok(b) => Input::Rating(b.rating),
            Err(r) => return r,
        },
        ("POST", "/api/checkin/notes") => match parse::<NotesBody>(body) {
            Ok(b) => Input::Notes(b.notes),
            Err(r) => return r,
        },
        ("POST", "/api/checkin/damage") => match parse::<DamageBody>(body) {
            Ok(b) => Input::Damage(b.marks),
            Err(r) => return r,
        },
        ("POST", "/api/checkin/submit") => Input::Submit,
        (_, "/" | "/api/state" | "/api/gpio" | "/api/scan" | "/api/confirm" | "/api/cancel") => {
            return error(405, "method_not_allowed", "wrong method for this path")
        }
        _ => return error(404, "not_found", "no such page"),
    };
    match kiosk.handle(input).await {
        Ok(()) => json_reply(kiosk.view().await),
        Err(e) => kiosk_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_head_gives_method_path_and_body_length() {
        let h = parse_head(b"POST /api/scan?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n")
            .expect("parses");
        assert_eq!(
            h,
            Head {
                method: "POST".into(),
                path: "/api/scan".into(),
                content_length: 12
            }
        );
        assert!(parse_head(b"GARBAGE\r\n\r\n").is_err());
        assert!(parse_head(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(parse_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
    }
}
