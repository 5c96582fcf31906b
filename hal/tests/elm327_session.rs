//! The ELM327 session against a scripted fake adapter that misbehaves on purpose:
//! drops prompts, answers late, garbles bytes, disconnects and comes back.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleet_hal::elm327::{
    mode01_requests, AdapterError, Connector, Elm327, Elm327Config, Elm327Error, ReconnectBackoff,
    Reconnecting, MAX_PIDS_PER_REQUEST,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// What the fake adapter does with one command.
#[derive(Clone, Debug)]
enum Act {
    /// Answer normally (the prompt is added).
    Reply(String),
    /// Answer but never print the prompt.
    NoPrompt(String),
    /// Answer after a delay.
    Late(Duration, String),
    /// Raw bytes, prompt included or not.
    Bytes(Vec<u8>),
    /// Close the line (the adapter was unplugged).
    Unplug,
}

fn normal(cmd: &str) -> Act {
    let reply = match cmd {
        "" => "?",
        "ATZ" => "\r\rELM327 v1.5",
        "ATDPN" => "A6",
        "0100" => "SEARCHING...\r7E8 06 41 00 BE 3F A8 13\r7E9 06 41 00 88 00 00 00",
        "0120" => "7E8 06 41 20 80 01 00 00",
        "010C" => "7E8 04 41 0C 1A F8",
        "010D" => "7E8 03 41 0D 37",
        "0105" => "NO DATA",
        c if c.starts_with("AT") => "OK",
        _ => "?",
    };
    Act::Reply(reply.to_string())
}

/// Commands the peer received, shared with the test.
type Log = Arc<Mutex<Vec<String>>>;

/// Runs one fake adapter on `io`; `overrides` replace the normal answer for the
/// n-th occurrence of a command (first match wins, each used once).
async fn fake_adapter(mut io: DuplexStream, log: Log, mut overrides: VecDeque<(String, Act)>) {
    let mut line = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        let n = match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b != b'\r' {
                line.push(b);
                continue;
            }
            let cmd = String::from_utf8_lossy(&line).trim().to_ascii_uppercase();
            line.clear();
            log.lock().unwrap().push(cmd.clone());
            let act = match overrides.iter().position(|(c, _)| *c == cmd) {
                Some(i) => overrides
                    .remove(i)
                    .map(|(_, a)| a)
                    .unwrap_or_else(|| normal(&cmd)),
                None => normal(&cmd),
            };
            let out = match act {
                Act::Reply(r) => format!("{r}\r\r>").into_bytes(),
                Act::NoPrompt(r) => format!("{r}\r\r").into_bytes(),
                Act::Late(d, r) => {
                    tokio::time::sleep(d).await;
                    format!("{r}\r\r>").into_bytes()
                }
                Act::Bytes(b) => b,
                Act::Unplug => return,
            };
            if io.write_all(&out).await.is_err() {
                return;
            }
        }
    }
}

fn spawn_adapter(overrides: Vec<(&str, Act)>) -> (DuplexStream, Log) {
    let (ours, theirs) = tokio::io::duplex(4096);
    let log = Log::default();
    let o = overrides
        .into_iter()
        .map(|(c, a)| (c.to_string(), a))
        .collect();
    tokio::spawn(fake_adapter(theirs, log.clone(), o));
    (ours, log)
}

fn config() -> Elm327Config {
    Elm327Config {
        command_timeout: Duration::from_secs(1),
        slow_timeout: Duration::from_secs(5),
        resync_quiet: Duration::from_millis(200),
        ..Elm327Config::default()
    }
}

#[tokio::test(start_paused = true)]
async fn init_sends_reset_and_setup_then_discovers_pids_of_every_ecu() {
    let (io, log) = spawn_adapter(vec![]);
    let mut elm = Elm327::init(io, config()).await.expect("init");
    assert_eq!(elm.version(), "ELM327 v1.5");
    let d = elm.discover().await.expect("discovery");
    assert!(d.per_ecu[&Some(0x7E8)].contains(&0x0C));
    assert!(d.per_ecu[&Some(0x7E9)].contains(&0x05));
    assert!(!d.per_ecu[&Some(0x7E9)].contains(&0x0C));
    assert!(d.supports(0x30), "0120 range discovered");
    assert!(!d.data_pids().contains(&0x20));
    let sent = log.lock().unwrap().clone();
    let from_reset: Vec<_> = sent.iter().skip_while(|c| *c != "ATZ").cloned().collect();
    assert_eq!(
        from_reset,
        ["ATZ", "ATE0", "ATL0", "ATS1", "ATH1", "ATSP0", "0100", "ATDPN", "0120"]
    );
}

#[tokio::test(start_paused = true)]
async fn lost_prompt_times_out_and_the_next_command_gets_its_own_answer() {
    let (io, _log) = spawn_adapter(vec![("010C", Act::NoPrompt("7E8 04 41 0C 00 00".into()))]);
    let mut elm = Elm327::init(io, config()).await.expect("init");
    elm.discover().await.expect("discovery");
    let err = elm.query("010C").await.expect_err("no prompt");
    assert!(matches!(err, Elm327Error::Timeout { .. }), "{err}");
    let (msgs, errs) = elm.query("010D").await.expect("recovered");
    assert!(errs.is_empty());
    assert_eq!(msgs[0].payload, vec![0x41, 0x0D, 0x37]);
}

#[tokio::test(start_paused = true)]
async fn late_answer_is_discarded_not_taken_for_the_next_command() {
    let (io, _log) = spawn_adapter(vec![(
        "010C",
        Act::Late(Duration::from_millis(1500), "7E8 04 41 0C 00 00".into()),
    )]);
    let mut elm = Elm327::init(io, config()).await.expect("init");
    elm.discover().await.expect("discovery");
    assert!(matches!(
        elm.query("010C").await,
        Err(Elm327Error::Timeout { .. })
    ));
    let (msgs, _) = elm.query("010D").await.expect("next command");
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].payload, vec![0x41, 0x0D, 0x37]);
}

#[tokio::test(start_paused = true)]
async fn garbled_reply_is_reported_and_the_session_goes_on() {
    let (io, _log) = spawn_adapter(vec![(
        "010C",
        Act::Bytes(b"7E8 04 4#\x07\xff 0C 1A\r7E8 06\r\r>".to_vec()),
    )]);
    let mut elm = Elm327::init(io, config()).await.expect("init");
    elm.discover().await.expect("discovery");
    let (msgs, errs) = elm.query("010C").await.expect("reply framed");
    assert!(msgs.is_empty(), "{msgs:?}");
    assert!(!errs.is_empty());
    let (msgs, _) = elm.query("010C").await.expect("next reply");
    assert_eq!(msgs[0].payload, vec![0x41, 0x0C, 0x1A, 0xF8]);
}

#[tokio::test(start_paused = true)]
async fn no_data_is_an_adapter_error_not_an_empty_answer() {
    let (io, _log) = spawn_adapter(vec![]);
    let mut elm = Elm327::init(io, config()).await.expect("init");
    elm.discover().await.expect("discovery");
    match elm.query("0105").await {
        Err(Elm327Error::Adapter { source, .. }) => assert_eq!(source, AdapterError::NoData),
        other => panic!("want NO DATA, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn setup_command_refused_fails_init_clearly() {
    let (io, _log) = spawn_adapter(vec![("ATH1", Act::Reply("?".into()))]);
    match Elm327::init(io, config()).await {
        Err(Elm327Error::Adapter { command, source }) => {
            assert_eq!(command, "ATH1");
            assert_eq!(source, AdapterError::Unknown);
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("init should fail"),
    }
}

/// A device path that is gone for `absent` attempts after each unplug.
struct FlakyPort {
    adapters: VecDeque<Vec<(&'static str, Act)>>,
    absent: u32,
    missing_now: u32,
    connects: Arc<Mutex<u32>>,
    logs: Arc<Mutex<Vec<Log>>>,
}

impl Connector for FlakyPort {
    type Io = DuplexStream;

    async fn connect(&mut self) -> io::Result<DuplexStream> {
        *self.connects.lock().unwrap() += 1;
        if self.missing_now > 0 {
            self.missing_now -= 1;
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such device"));
        }
        let script = self.adapters.pop_front().unwrap_or_default();
        self.missing_now = self.absent;
        let (io, log) = spawn_adapter(script);
        self.logs.lock().unwrap().push(log);
        Ok(io)
    }
}

#[tokio::test(start_paused = true)]
async fn unplugged_adapter_reconnects_reinitialises_and_rediscovers() {
    let connects = Arc::new(Mutex::new(0));
    let logs = Arc::new(Mutex::new(Vec::new()));
    let port = FlakyPort {
        adapters: VecDeque::from([vec![("010D", Act::Unplug)], vec![]]),
        absent: 3,
        missing_now: 0,
        connects: connects.clone(),
        logs: logs.clone(),
    };
    let backoff = ReconnectBackoff {
        min: Duration::from_millis(100),
        max: Duration::from_secs(1),
    };
    let mut elm = Reconnecting::new(port, config(), backoff);
    let (msgs, _) = elm.query("010C").await.expect("first connection");
    assert_eq!(msgs[0].payload, vec![0x41, 0x0C, 0x1A, 0xF8]);
    assert!(elm.discovery().is_some_and(|d| d.supports(0x0D)));

    let err = elm.query("010D").await.expect_err("unplugged");
    assert!(err.needs_reconnect(), "{err}");
    assert!(elm.discovery().is_none());

    let started = tokio::time::Instant::now();
    let (msgs, _) = elm.query("010D").await.expect("after replug");
    assert_eq!(msgs[0].payload, vec![0x41, 0x0D, 0x37]);
    assert_eq!(*connects.lock().unwrap(), 1 + 3 + 1);
    assert_eq!(elm.connects(), 2);
    assert!(elm.discovery().is_some_and(|d| d.supports(0x0C)));
    // Waits before the four opens after the unplug: 100 + 200 + 400 + 800 ms.
    assert!(started.elapsed() >= Duration::from_millis(1500));
    let second = logs.lock().unwrap()[1].lock().unwrap().clone();
    assert!(second.contains(&"ATZ".to_string()) && second.contains(&"0100".to_string()));
}

#[tokio::test(start_paused = true)]
async fn can_error_stopped_and_unknown_are_reported_per_command_and_the_session_goes_on() {
    let (io, _log) = spawn_adapter(vec![
        ("010C", Act::Reply("CAN ERROR".into())),
        ("010D", Act::Reply("STOPPED".into())),
        ("0111", Act::Reply("?".into())),
    ]);
    let mut elm = Elm327::init(io, config()).await.expect("init");
    elm.discover().await.expect("discovery");
    for (cmd, want) in [
        ("010C", AdapterError::CanError),
        ("010D", AdapterError::Stopped),
        ("0111", AdapterError::Unknown),
    ] {
        match elm.query(cmd).await {
            Err(Elm327Error::Adapter { command, source }) => {
                assert_eq!((command.as_str(), &source), (cmd, &want));
                assert!(!Elm327Error::Adapter { command, source }.needs_reconnect());
            }
            other => panic!("{cmd}: want {want}, got {other:?}"),
        }
    }
    // The same adapter answers the next time round: nothing was left in the line.
    let (msgs, errs) = elm.query("010C").await.expect("recovered");
    assert!(errs.is_empty());
    assert_eq!(msgs[0].payload, vec![0x41, 0x0C, 0x1A, 0xF8]);
}

#[tokio::test(start_paused = true)]
async fn segmented_vin_and_dtc_list_assemble_per_ecu_with_headers_on() {
    let (io, _log) = spawn_adapter(vec![
        (
            "0902",
            Act::Reply(
                "7E8 10 14 49 02 01 54 4D 42\r7E8 21 4A 50 37 4E 58 35 4E\r7E8 22 59 30 38 34 39 32 33"
                    .into(),
            ),
        ),
        (
            // Two ECUs answer, their consecutive frames interleaved.
            "03",
            Act::Reply(
                "7E8 10 0A 43 04 01 33 C1 96\r7E9 02 43 00\r7E8 21 02 34 43 00 CC CC CC".into(),
            ),
        ),
    ]);
    let mut elm = Elm327::init(io, config()).await.expect("init");
    elm.discover().await.expect("discovery");
    let (msgs, errs) = elm.query("0902").await.expect("VIN");
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(msgs.len(), 1);
    assert_eq!(&msgs[0].payload[..3], &[0x49, 0x02, 0x01]);
    assert_eq!(&msgs[0].payload[3..], b"TMBJP7NX5NY084923");

    let (mut msgs, errs) = elm.query("03").await.expect("DTCs");
    assert!(errs.is_empty(), "{errs:?}");
    msgs.sort_by_key(|m| m.ecu);
    assert_eq!(msgs.len(), 2);
    assert_eq!(
        msgs[0].payload,
        vec![0x43, 0x04, 0x01, 0x33, 0xC1, 0x96, 0x02, 0x34, 0x43, 0x00]
    );
    assert_eq!(msgs[1].payload, vec![0x43, 0x00]);
}

#[tokio::test(start_paused = true)]
async fn seven_pids_go_out_as_requests_an_ecu_refusing_more_than_six_answers() {
    let seven = "010C0D0504111F2F";
    let (io, log) = spawn_adapter(vec![
        // An older ECU: more than six PIDs in one request is refused.
        (seven, Act::Reply("?".into())),
        (
            "010C0D0504111F",
            Act::Reply(
                "7E8 10 0F 41 0C 1A F8 0D 37\r7E8 21 05 7B 04 80 11 80 1F\r7E8 22 00 10 CC CC CC CC CC"
                    .into(),
            ),
        ),
        ("012F", Act::Reply("7E8 03 41 2F 5C".into())),
    ]);
    let mut elm = Elm327::init(io, config()).await.expect("init");
    elm.discover().await.expect("discovery");
    assert!(matches!(
        elm.query(seven).await,
        Err(Elm327Error::Adapter {
            source: AdapterError::Unknown,
            ..
        })
    ));
    let wanted = [0x0C, 0x0D, 0x05, 0x04, 0x11, 0x1F, 0x2F];
    let requests = mode01_requests(&wanted);
    assert_eq!(requests, ["010C0D0504111F", "012F"]);
    let mut payloads = Vec::new();
    for r in &requests {
        let (msgs, errs) = elm.query(r).await.expect("answered");
        assert!(errs.is_empty(), "{r}: {errs:?}");
        payloads.extend(msgs.into_iter().map(|m| m.payload));
    }
    assert_eq!(
        payloads,
        [
            vec![
                0x41, 0x0C, 0x1A, 0xF8, 0x0D, 0x37, 0x05, 0x7B, 0x04, 0x80, 0x11, 0x80, 0x1F, 0x00,
                0x10
            ],
            vec![0x41, 0x2F, 0x5C]
        ]
    );
    let sent = log.lock().unwrap().clone();
    let after_refusal: Vec<_> = sent.iter().skip_while(|c| *c != seven).skip(1).collect();
    assert!(
        after_refusal
            .iter()
            .all(|c| !c.starts_with("01") || c.len() <= 2 + 2 * MAX_PIDS_PER_REQUEST),
        "{after_refusal:?}"
    );
}
