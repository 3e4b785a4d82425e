//! One daemon per store: a lease in the store, taken at start and renewed while the daemon runs.
//!
//! Guarantees: a daemon whose store lease is held by another (unexpired) refuses to start, naming
//! the holder; a daemon that finds its lease taken over (it was cut off from the store for longer
//! than the lease) stops at once rather than act on buckets another daemon now runs.
//! Assumptions: daemons sharing a store have clocks within a fraction of the lease of each other.
//! Caveat: the holder is `instance@host:data dir`, so the same daemon restarted (after a crash)
//! takes its lease back at once; two daemons with the same instance name, host and data dir
//! would be taken for one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::context::Core;
use crate::error::{Error, Result};

/// Who this daemon is, as the lease names it.
pub fn holder(state: &Core) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    let dir = std::fs::canonicalize(&state.config.data_dir)
        .unwrap_or_else(|_| state.config.data_dir.clone());
    format!("{}@{host}:{}", state.config.instance, dir.display())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Refuses to go on with a master key other than the one that sealed the store's secrets (the
/// first daemon on a store records its key's fingerprint): daemons sharing a store must share
/// `KALPANA_MASTER_KEY`, or one could decrypt nothing the other wrote. Caveat: a store written
/// before fingerprints were recorded takes the first key it sees.
pub async fn check_master_key(state: &Core) -> Result<()> {
    let ours = state.master_key.fingerprint();
    let recorded = state.store.claim_master_key(&ours).await?;
    if recorded != ours {
        return Err(Error::Conflict(format!(
            "this daemon's master key (fingerprint {ours}) is not the one that sealed this store's secrets (fingerprint {recorded}): give every daemon on this store the same KALPANA_MASTER_KEY"
        )));
    }
    tracing::info!(fingerprint = %ours, "master key matches the store's");
    Ok(())
}

/// Takes the lease, or fails naming the daemon that holds it.
pub async fn acquire(state: &Core, holder: &str) -> Result<()> {
    let ttl = state.config.lease_ttl.as_millis() as i64;
    state
        .store
        .acquire_lease(holder, now_ms(), ttl)
        .await
        .map_err(|e| match e {
            Error::Conflict(m) => Error::Conflict(format!(
                "{m}: two daemons must not act on the same buckets; stop the other one, or give this one its own store"
            )),
            e => e,
        })?;
    tracing::info!(holder, ttl_ms = ttl, "store lease taken");
    Ok(())
}

/// Renews the lease every third of its lifetime. A renewal refused because another daemon took
/// the lease over ends the process (exit code 3); a store that does not answer is retried, and
/// once it has not answered for a whole lease (another daemon may have taken over meanwhile)
/// the store is `fence`d: the daemon makes no change until a renewal succeeds again.
/// Not under the supervisor: the lease must outlive the work it guards, so a stop ends the
/// renewal (abort the handle) only once that work has ended, right before it closes the store.
pub fn spawn_renewal(
    state: Core,
    holder: String,
    fence: std::sync::Arc<crate::store::fenced::FencedStore>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = (state.config.lease_ttl / 3).max(Duration::from_millis(200));
        // Counted from before the request: the lease runs from when it was asked for.
        let mut held_since = std::time::Instant::now();
        loop {
            tokio::time::sleep(every).await;
            let ttl = state.config.lease_ttl.as_millis() as i64;
            let asked = std::time::Instant::now();
            match state.store.acquire_lease(&holder, now_ms(), ttl).await {
                Ok(()) => {
                    held_since = asked;
                    if fence.is_suspended() {
                        fence.resume();
                        tracing::warn!(holder = %holder, "store lease held again: changes resume");
                    }
                }
                Err(Error::Conflict(m)) => {
                    tracing::error!(holder = %holder, reason = %m, "store lease lost to another daemon; stopping so that only one acts on the buckets");
                    std::process::exit(3);
                }
                Err(e) => {
                    if held_since.elapsed() >= state.config.lease_ttl && !fence.is_suspended() {
                        fence.suspend();
                        tracing::error!(holder = %holder, error = %e,
                            "the store lease may have run out (no renewal for a whole lease): no change is made until it is held again");
                    } else {
                        tracing::warn!(error = %e, "renewing the store lease failed; retrying");
                    }
                }
            }
        }
    })
}
