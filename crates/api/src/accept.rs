//! The HTTP listener: accepts connections under limits and serves each with hyper.
//!
//! Guarantees: a connection that has not sent a whole request head within the header timeout is
//! closed (this also reaps idle keep-alive connections, since hyper starts the timer whenever it
//! waits for a head); one client address never holds more than `per_address` connections and
//! the daemon never more than `total`, so half-open connections from one place cannot take the
//! file descriptors that `/healthz`, Docker and the store need. Connections over a cap are closed
//! at once. Accepted sockets get `TCP_NODELAY`: responses written in several segments must not
//! wait for the client's delayed ACK.
//!
//! Caveat: a cap per address counts a NAT or proxy in front of many clients as one client.

use kalpana_domain::config::ConnLimits;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// Open connections by client address.
#[derive(Debug, Default)]
struct Open {
    by_address: HashMap<IpAddr, usize>,
    total: usize,
}

/// Counts connections and hands out a permit per admitted one.
#[derive(Debug, Clone)]
pub struct Admission {
    limits: ConnLimits,
    open: Arc<Mutex<Open>>,
}

/// Held while a connection is open; gives its place back when dropped.
#[derive(Debug)]
pub struct Permit {
    addr: IpAddr,
    open: Arc<Mutex<Open>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_address.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                open.by_address.remove(&self.addr);
            }
        }
    }
}

impl Admission {
    /// Admission under `limits`.
    pub fn new(limits: ConnLimits) -> Self {
        Admission {
            limits,
            open: Default::default(),
        }
    }

    /// A permit for a connection from `addr`, or `None` when a cap is reached.
    pub fn admit(&self, addr: IpAddr) -> Option<Permit> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= self.limits.total {
            return None;
        }
        let n = open.by_address.entry(addr).or_insert(0);
        if *n >= self.limits.per_address {
            return None;
        }
        *n += 1;
        open.total += 1;
        Some(Permit {
            addr,
            open: self.open.clone(),
        })
    }
}

/// Serves `app` on `listener` until `signal` completes, then stops accepting and waits for the
/// open connections to finish (the caller bounds that wait). The listener stays open: a standby
/// hands it to the daemon it becomes, and connections that arrive meanwhile wait in its backlog.
pub async fn serve(
    listener: &TcpListener,
    app: Router,
    limits: ConnLimits,
    signal: impl Future<Output = ()>,
) {
    let admission = Admission::new(limits);
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);
    let mut signal = std::pin::pin!(signal);
    let mut refused_logged = std::time::Instant::now() - Duration::from_secs(60);
    loop {
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or a transient network error: wait a little
                    // rather than spin; connections that close meanwhile free descriptors.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut signal => break,
        };
        let Some(permit) = admission.admit(peer.ip()) else {
            if refused_logged.elapsed() > Duration::from_secs(10) {
                tracing::warn!(peer = %peer.ip(), "connection refused: connection cap reached");
                refused_logged = std::time::Instant::now();
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
}

/// Raises the soft limit of open files to the hard limit, so connection caps, not the kernel,
/// decide when clients are turned away. Returns the limit in force.
pub fn raise_open_files_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_in_all_and_frees_on_drop() {
        let a = Admission::new(ConnLimits {
            header_timeout: Duration::from_secs(1),
            per_address: 2,
            total: 3,
        });
        let one: IpAddr = [127, 0, 0, 2].into();
        let two: IpAddr = [127, 0, 0, 3].into();
        let p1 = a.admit(one).expect("first");
        let _p2 = a.admit(one).expect("second");
        assert!(a.admit(one).is_none(), "third from one address");
        let _p3 = a.admit(two).expect("other address");
        assert!(a.admit([127, 0, 0, 4].into()).is_none(), "total cap");
        drop(p1);
        assert!(
            a.admit(one).is_some(),
            "a closed connection frees its place"
        );
    }
}
