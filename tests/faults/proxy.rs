//! A TCP proxy on loopback that can be told to misbehave: add latency, cut a
//! connection mid-request or mid-response, swallow traffic, truncate or corrupt
//! what the server answers, or refuse connections. The fault is read for every
//! chunk, so a change takes effect on connections already open (a pooled HTTP
//! connection is not a way around it).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does to traffic from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything as it comes.
    Pass,
    /// Hold every chunk this long before forwarding it, both ways.
    Latency(Duration),
    /// Forward this many bytes of a request, then reset the connection.
    CutRequest(u64),
    /// Forward the request, this many bytes of the response, then reset.
    CutResponse(u64),
    /// Accept and read, forward nothing, answer nothing.
    Blackhole,
    /// Forward this many bytes of the response, then close cleanly (FIN).
    TruncateResponse(u64),
    /// Flip the bits of one byte in every response chunk, past the first
    /// this many bytes (so the status line can survive and the body not).
    CorruptResponse(u64),
    /// Reset new connections at once; reset open ones on their next chunk.
    Refuse,
}

/// Counters of what the proxy did, for the test's report.
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub connections: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
    /// Connections reset, truncated or refused, and chunks corrupted or swallowed.
    pub faults: AtomicU64,
}

/// A running proxy; it stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    stats: Arc<ProxyStats>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let fault = Arc::new(Mutex::new(Fault::Pass));
        let stats = Arc::new(ProxyStats::default());
        let task = tokio::spawn(accept_loop(
            listener,
            upstream,
            fault.clone(),
            stats.clone(),
        ));
        Ok(FaultProxy {
            addr,
            fault,
            stats,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().expect("fault lock") = fault;
    }

    pub fn stats(&self) -> &ProxyStats {
        &self.stats
    }
}

fn current(fault: &Mutex<Fault>) -> Fault {
    *fault.lock().expect("fault lock")
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    stats: Arc<ProxyStats>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let fault = fault.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            let _ = relay(client, upstream, fault, stats).await;
        });
    }
}

/// Drops a stream with an RST rather than a FIN, as a dead route or a NAT
/// timeout shows itself to the peer.
/// A zero linger never blocks the drop, which is what the deprecation warns of.
#[allow(deprecated)]
fn reset(stream: TcpStream) {
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    stats: Arc<ProxyStats>,
) -> std::io::Result<()> {
    match current(&fault) {
        Fault::Refuse => {
            stats.faults.fetch_add(1, Ordering::Relaxed);
            reset(client);
            return Ok(());
        }
        Fault::Blackhole => {
            stats.faults.fetch_add(1, Ordering::Relaxed);
            let mut client = client;
            let mut sink = [0u8; 4096];
            while client.read(&mut sink).await? > 0 {}
            return Ok(());
        }
        _ => {}
    }
    let server = TcpStream::connect(upstream).await?;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up_fault = fault.clone();
    let up_stats = stats.clone();
    // Client to server. Ends the whole connection on a cut.
    let up = async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut sent = 0u64;
        loop {
            let n = cr.read(&mut buf).await?;
            if n == 0 {
                let _ = sw.shutdown().await;
                return Ok::<bool, std::io::Error>(false);
            }
            match current(&up_fault) {
                Fault::Latency(d) => tokio::time::sleep(d).await,
                Fault::Blackhole => {
                    up_stats.faults.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Fault::Refuse => {
                    up_stats.faults.fetch_add(1, Ordering::Relaxed);
                    return Ok(true);
                }
                Fault::CutRequest(limit) if sent + n as u64 > limit => {
                    let keep = limit.saturating_sub(sent) as usize;
                    sw.write_all(&buf[..keep]).await?;
                    up_stats.faults.fetch_add(1, Ordering::Relaxed);
                    return Ok(true);
                }
                _ => {}
            }
            sw.write_all(&buf[..n]).await?;
            sent += n as u64;
            up_stats.bytes_up.fetch_add(n as u64, Ordering::Relaxed);
        }
    };
    // Server to client.
    let down = async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut sent = 0u64;
        loop {
            let n = sr.read(&mut buf).await?;
            if n == 0 {
                let _ = cw.shutdown().await;
                return Ok::<bool, std::io::Error>(false);
            }
            let chunk = &mut buf[..n];
            match current(&fault) {
                Fault::Latency(d) => tokio::time::sleep(d).await,
                Fault::Blackhole => {
                    stats.faults.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Fault::Refuse => {
                    stats.faults.fetch_add(1, Ordering::Relaxed);
                    return Ok(true);
                }
                Fault::CutResponse(limit) if sent + n as u64 > limit => {
                    let keep = limit.saturating_sub(sent) as usize;
                    cw.write_all(&chunk[..keep]).await?;
                    stats.faults.fetch_add(1, Ordering::Relaxed);
                    return Ok(true);
                }
                Fault::TruncateResponse(limit) if sent + n as u64 > limit => {
                    let keep = limit.saturating_sub(sent) as usize;
                    cw.write_all(&chunk[..keep]).await?;
                    let _ = cw.shutdown().await;
                    stats.faults.fetch_add(1, Ordering::Relaxed);
                    return Ok(false);
                }
                Fault::CorruptResponse(skip) if sent + n as u64 > skip => {
                    let from = skip.saturating_sub(sent) as usize;
                    let at = from + (n - from) / 2;
                    chunk[at] ^= 0xff;
                    stats.faults.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
            cw.write_all(chunk).await?;
            sent += n as u64;
            stats.bytes_down.fetch_add(n as u64, Ordering::Relaxed);
        }
    };
    // Either side ending with a cut (true) drops both halves at once, which the
    // peers see as a reset or an early close mid-exchange.
    tokio::select! {
        r = up => { r?; }
        r = down => { r?; }
    }
    Ok(())
}
