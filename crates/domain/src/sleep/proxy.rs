//! The daemon owns every managed bucket's host ports, at all times, and passes the bytes to the
//! container's address on the bucket network (replacing Docker's userland proxy, which sat in
//! the same place at the default 127.0.0.1 binding). So the port is the bucket's for life, a
//! connection is accepted whether the container runs or sleeps, and every byte is seen.
//!
//! A connection is passed through as it is (TLS, HTTP/1.1 keep-alive, anything). It holds a
//! connection to the server only while it is used: when its bucket goes to sleep, a connection
//! that is between requests (the server answered last and nothing moved for [`QUIET`]) lets its
//! server connection go and keeps the client's; the client's next bytes wake the bucket and go
//! to a new server connection. A client never sees its connection closed by a sleep.
//!
//! Caveats: a response that pauses for longer than [`QUIET`] while the bucket is put to sleep
//! by hand may be cut (an idle sleep waits for `sleepAfterSecs` of silence); while the daemon
//! restarts, direct connections are refused (awake traffic through Traefik takes the same path).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::gate::{now_ms, Gate, SleepState};
use crate::context::Core;
use crate::model::{BucketKind, BucketRecord, BucketStatus};

/// How long a connection must be silent, with the server having answered last, to count as
/// between requests.
const QUIET: Duration = Duration::from_millis(250);

/// How long connecting to a bucket's server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a connection without a request in flight may stay silent before it is closed.
const IDLE: Duration = Duration::from_secs(120);

/// How long a request to a RUNNING bucket whose server is down is held while the daemon brings
/// it back.
const BRING_BACK: Duration = Duration::from_secs(20);

/// Bytes read at once in each direction.
const CHUNK: usize = 64 * 1024;

/// Listens on `b`'s host ports (S3, and the console when it has one) unless the daemon already
/// does. With `wait`, a port another process holds is tried again every second, saying so;
/// without, that port is the error (a new bucket then takes another).
pub fn open(core: &Core, b: &BucketRecord, wait: bool) -> Result<(), u16> {
    if b.kind() != BucketKind::Managed || b.deleting || core.proxies.has(&b.id) {
        return Ok(());
    }
    let profile = core.config.profile(b.engine);
    let mut pairs = Vec::new();
    if let Some(port) = b.port {
        pairs.push((port, profile.s3_port));
    }
    if let (Some(host), Some(inner)) = (b.console_port, profile.console_port) {
        pairs.push((host, inner));
    }
    if pairs.is_empty() {
        return Ok(());
    }
    let mut bound = Vec::new();
    for (host_port, engine_port) in pairs {
        match bind(core, host_port) {
            Ok(l) => bound.push((Some(l), host_port, engine_port)),
            Err(_) if wait => bound.push((None, host_port, engine_port)),
            Err(e) => {
                tracing::warn!(bucket = %b.id, port = host_port, error = %e, "the new bucket's port is taken");
                return Err(host_port);
            }
        }
    }
    let gate = core.sleep.of(b);
    // On a cluster the server is reached at its node's published port, the same number.
    let published = core.runtime.capabilities().host_ports;
    let tasks = bound
        .into_iter()
        .map(|(listener, host_port, engine_port)| {
            let engine_port = if published { host_port } else { engine_port };
            tokio::spawn(listen(
                core.clone(),
                b.id.clone(),
                gate.clone(),
                listener,
                host_port,
                engine_port,
            ))
        })
        .collect();
    core.proxies.insert(&b.id, tasks);
    Ok(())
}

/// A listener on `port` at the bind address, bound now.
fn bind(core: &Core, port: u16) -> std::io::Result<TcpListener> {
    let l = std::net::TcpListener::bind(SocketAddr::new(core.config.bind_ip, port))?;
    l.set_nonblocking(true)?;
    TcpListener::from_std(l)
}

async fn listen(
    core: Core,
    id: String,
    gate: Arc<Gate>,
    listener: Option<TcpListener>,
    host_port: u16,
    engine_port: u16,
) {
    let mut tries = 0u64;
    let mut listener = listener;
    let listener = loop {
        if let Some(l) = listener.take() {
            break l;
        }
        match bind(&core, host_port) {
            Ok(l) => break l,
            Err(e) => {
                // Every 30 s, not every second: a port held for long is one line per half minute.
                if tries.is_multiple_of(30) {
                    tracing::warn!(bucket = %id, port = host_port, error = %e,
                        "cannot listen on the bucket's port (another process holds it?); trying again every second");
                }
                tries += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    if tries > 1 {
        tracing::info!(bucket = %id, port = host_port, "listening on the bucket's port");
    }
    loop {
        match listener.accept().await {
            Ok((sock, _)) => {
                let _ = sock.set_nodelay(true);
                tokio::spawn(connection(
                    core.clone(),
                    id.clone(),
                    gate.clone(),
                    sock,
                    engine_port,
                ));
            }
            Err(e) => {
                // Out of descriptors, usually: wait rather than spin.
                tracing::warn!(bucket = %id, port = host_port, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// How a connection's exchange with one server connection ended.
enum Ended {
    /// Either side closed: the connection is over.
    Closed,
    /// Its bucket is going to sleep and the connection was between requests.
    Detached,
}

async fn connection(
    core: Core,
    id: String,
    gate: Arc<Gate>,
    mut client: TcpStream,
    engine_port: u16,
) {
    let mut first = vec![0u8; CHUNK];
    loop {
        // No server connection: the client's next bytes decide (a connection silent for
        // IDLE is closed, as an HTTP server closes an idle kept-alive connection).
        let n = match tokio::time::timeout(IDLE, client.read(&mut first)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return,
        };
        gate.request();
        let use_ = match super::use_gate(&core, &id, &gate).await {
            Ok(u) => u,
            Err(e) => return refuse(&mut client, &e.to_string()).await,
        };
        let mut server = match server(&core, &id, engine_port).await {
            Ok(s) => s,
            Err(why) => return refuse(&mut client, &why).await,
        };
        if server.write_all(&first[..n]).await.is_err() {
            return refuse(&mut client, "the bucket's server closed the connection").await;
        }
        let ended = exchange(&gate, &mut client, &mut server).await;
        drop(use_);
        match ended {
            Ended::Closed => return,
            Ended::Detached => {
                tracing::debug!(bucket = %id, "connection kept while the bucket sleeps");
            }
        }
    }
}

/// A connection to the bucket's server, at the address the runtime gave for it. A RUNNING
/// bucket whose server is down (a daemon killed mid-sleep, a container stopped by hand, an
/// engine restarting) is brought back by reconcile, asked for at once: the request is held for
/// up to [`BRING_BACK`] meanwhile, as a wake holds it, rather than refused.
async fn server(core: &Core, id: &str, engine_port: u16) -> Result<TcpStream, String> {
    let deadline = tokio::time::Instant::now() + BRING_BACK;
    let mut asked = false;
    loop {
        let why = match connect(core, id, engine_port).await? {
            Ok(s) => return Ok(s),
            Err(why) => why,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(why.into());
        }
        if !asked {
            core.reconciler.request(id);
            asked = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One try at [`server`]: the outer error ends the request (no such bucket, not RUNNING), the
/// inner one is worth another try.
async fn connect(
    core: &Core,
    id: &str,
    engine_port: u16,
) -> Result<Result<TcpStream, &'static str>, String> {
    let origin = match core.addresses.get(id) {
        Some(o) => Some(o),
        None => {
            let s3_port = match core.store.get_bucket(id).await {
                Ok(Some(b)) => {
                    if b.deleting {
                        return Err(format!("bucket {} is being deleted", b.name));
                    }
                    if b.status != BucketStatus::Running {
                        return Err(format!(
                            "bucket {} is {}; it serves nothing until it is started",
                            b.name,
                            b.status.as_str()
                        ));
                    }
                    core.config.profile(b.engine).s3_port
                }
                _ => return Err("no such bucket".into()),
            };
            let o = core.runtime.address(id, s3_port).await.ok().flatten();
            core.addresses.set(id, o.clone());
            o
        }
    };
    let Some(host) = origin
        .as_deref()
        .and_then(|o| o.strip_prefix("http://"))
        .and_then(|hp| hp.rsplit_once(':'))
        .map(|(h, _)| h.to_string())
    else {
        return Ok(Err("the bucket's server is not running; try again shortly"));
    };
    let addr = format!("{host}:{engine_port}");
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(Ok(s))
        }
        _ => {
            // The address may be stale (the container was replaced): look again next time.
            core.addresses.set(id, None);
            Ok(Err(
                "the bucket's server is not reachable; try again shortly",
            ))
        }
    }
}

/// Passes bytes both ways until a side closes or the bucket goes to sleep while the connection
/// is between requests.
async fn exchange(gate: &Gate, client: &mut TcpStream, server: &mut TcpStream) -> Ended {
    // The client sent bytes the server has not answered yet: a request is in flight.
    let awaiting = AtomicBool::new(true);
    let last_byte = AtomicU64::new(now_ms());
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    let up = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = sw.shutdown().await;
                    return;
                }
                Ok(n) => n,
            };
            if !awaiting.swap(true, SeqCst) {
                gate.request();
            } else {
                gate.touch();
            }
            last_byte.store(now_ms(), SeqCst);
            if sw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = cw.shutdown().await;
                    return;
                }
                Ok(n) => n,
            };
            awaiting.store(false, SeqCst);
            last_byte.store(now_ms(), SeqCst);
            gate.touch();
            if cw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let detach = async {
        let mut changes = gate.watch();
        loop {
            if changes
                .wait_for(|s| *s == SleepState::GoingToSleep)
                .await
                .is_err()
            {
                return std::future::pending().await;
            }
            while gate.state() == SleepState::GoingToSleep {
                let quiet =
                    now_ms().saturating_sub(last_byte.load(SeqCst)) >= QUIET.as_millis() as u64;
                if !awaiting.load(SeqCst) && quiet {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    };
    tokio::pin!(up, down, detach);
    tokio::select! {
        () = &mut up => {
            // The client is done sending; the server may still answer.
            (&mut down).await;
            Ended::Closed
        }
        () = &mut down => Ended::Closed,
        () = &mut detach => Ended::Detached,
    }
}

/// Answers an HTTP client that cannot be served with an S3-style 503 and closes.
async fn refuse(client: &mut TcpStream, why: &str) {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>ServiceUnavailable</Code><Message>{}</Message></Error>",
        why.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
    );
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nRetry-After: 2\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = client.write_all(head.as_bytes()).await;
    let _ = client.write_all(body.as_bytes()).await;
    let _ = client.shutdown().await;
}
