//! The task that keeps the volume pool full, and removes at start what an earlier run made
//! ahead and no bucket took.

use std::collections::HashSet;
use std::time::Duration;

use crate::context::Core;
use crate::model::new_id;

/// How long after a volume was taken the pool makes the next one.
const REFILL_AFTER: Duration = Duration::from_secs(3);

/// Removes the volumes an earlier run made ahead and no bucket took, then keeps the pool full
/// (the removal runs with the pool off too).
pub fn spawn_filler(state: Core) {
    let size = state.config.volume_pool;
    let core = state.clone();
    core.tasks.spawn_loop("volume pool", async move {
        // Until it has worked (Docker or the store may be away at start): a ledger id left in
        // place could otherwise outlive the bucket that holds it.
        let mut retry = Duration::from_secs(1);
        while let Err(e) = drop_leftovers(&state).await {
            tracing::warn!(error = %e, retry_in_secs = retry.as_secs(), "removing volumes made ahead by an earlier run failed");
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(Duration::from_secs(60));
        }
        if size == 0 {
            return;
        }
        let mut backoff = Duration::from_secs(1);
        loop {
            while state.pool.ready_count() < size {
                let profile = state.config.profile(state.config.engine);
                let id = new_id();
                if !state.pool.remember(&id) {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    continue;
                }
                let prepared = state
                    .runtime
                    .prepare_volume(
                        &id,
                        &profile.image,
                        profile.data_path,
                        profile.internal_security,
                    )
                    .await;
                match prepared {
                    Ok(()) => {
                        tracing::debug!(bucket = %id, "volume made ahead for a new bucket");
                        state
                            .pool
                            .ready
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push_back(id);
                        backoff = Duration::from_secs(1);
                    }
                    Err(e) => {
                        // The image may not be pulled yet, or Docker away: creates make their
                        // own volumes meanwhile.
                        tracing::debug!(error = %e, "making a volume ahead failed; trying later");
                        let dropped = state.runtime.drop_staging(&id).await;
                        if dropped.is_ok() && state.runtime.remove_volume(&id).await.is_ok() {
                            state.pool.forget(&id);
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                    }
                }
            }
            state.pool.wanted.notified().await;
            // Not beside the provisioning that took the volume: Docker does one thing at a
            // time well, and that create is waiting for it.
            tokio::time::sleep(REFILL_AFTER).await;
        }
    });
}

/// Removes the ledger's ids an earlier run left that no record holds (their helper first: a
/// daemon stopped while it made a volume ready leaves the helper, which holds the volume).
async fn drop_leftovers(state: &Core) -> crate::error::Result<()> {
    let left: Vec<String> = state
        .pool
        .unclaimed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .cloned()
        .collect();
    if left.is_empty() {
        return Ok(());
    }
    let known: HashSet<String> = crate::store::all_buckets(&*state.store)
        .await?
        .into_iter()
        .map(|b| b.id)
        .collect();
    // Ids a record holds leave the ledger first, whatever happens to the others.
    let (held, unheld): (Vec<String>, Vec<String>) =
        left.into_iter().partition(|id| known.contains(id));
    for id in held {
        state.pool.forget(&id);
    }
    let mut failed = None;
    for id in unheld {
        let removed = async {
            state.runtime.drop_staging(&id).await?;
            state.runtime.remove_volume(&id).await
        }
        .await;
        match removed {
            Ok(()) => {
                tracing::info!(bucket = %id, "volume made ahead by an earlier run and never taken: removed");
                state.pool.forget(&id);
            }
            Err(e) => failed = Some(e),
        }
    }
    failed.map_or(Ok(()), |e| Err(e.into()))
}
