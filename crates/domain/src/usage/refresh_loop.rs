//! The periodic loop that refreshes every bucket: recounts, key enforcement, external checks.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use crate::context::Core;
use crate::model::BucketStatus;
use crate::store::all_buckets;

/// How long a bucket of `objects` objects waits between recounts: `min`, or longer for a large
/// bucket so that recounting costs it one listing request (1,000 objects) per second on average.
pub fn recount_every(min: std::time::Duration, objects: u64) -> std::time::Duration {
    min.max(std::time::Duration::from_secs(objects.div_ceil(1000)))
}

/// Most buckets recounted at once.
const RECOUNTS_AT_ONCE: usize = 4;

/// Refreshes each bucket when [`recount_every`] says it is due (see `backend::refresh`: a
/// managed bucket is recounted, catching writes made directly over S3, and its settings put
/// back; an external one is checked). A long recount of a large bucket does not hold up the
/// others.
pub fn spawn_periodic_sync(state: Core) {
    let core = state.clone();
    core.tasks.spawn_loop("usage refresh", async move {
        let min = state.config.stats_sync_interval;
        let mut tick = tokio::time::interval(min.min(std::time::Duration::from_secs(2)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let last = std::sync::Arc::new(Mutex::new(HashMap::<String, Instant>::new()));
        let busy = std::sync::Arc::new(Mutex::new(HashSet::<String>::new()));
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(RECOUNTS_AT_ONCE));
        loop {
            tick.tick().await;
            let buckets = match all_buckets(state.store.as_ref()).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "usage sync: listing buckets failed");
                    continue;
                }
            };
            {
                let ids: HashSet<&str> = buckets.iter().map(|b| b.id.as_str()).collect();
                last.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|id, _| ids.contains(id.as_str()));
            }
            // Expired and revoked keys first, on every tick: refused within seconds.
            for b in buckets.iter().filter(|b| crate::keys::due(b)) {
                if let Err(e) = crate::keys::enforce(&state, &b.id).await {
                    tracing::warn!(bucket = %b.id, error = %e, "revoking keys failed; will retry");
                }
            }
            for b in buckets.into_iter().filter(|b| {
                !b.deleting
                    && (b.status == BucketStatus::Running || crate::backend::checked_while_down(b))
            }) {
                let due = last
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&b.id)
                    .is_none_or(|t| t.elapsed() >= recount_every(min, b.object_count));
                if !due
                    || !busy
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(b.id.clone())
                {
                    continue;
                }
                let (state, last, busy, slots) =
                    (state.clone(), last.clone(), busy.clone(), slots.clone());
                let core = state.clone();
                core.tasks.spawn_task("bucket refresh", async move {
                    let _slot = slots.acquire().await;
                    crate::backend::refresh(&state, &b).await;
                    last.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(b.id.clone(), Instant::now());
                    busy.lock().unwrap_or_else(|p| p.into_inner()).remove(&b.id);
                });
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buckets_are_recounted_at_one_listing_request_per_second() {
        let ten = std::time::Duration::from_secs(10);
        assert_eq!(recount_every(ten, 0), ten);
        assert_eq!(recount_every(ten, 10_000), ten);
        assert_eq!(recount_every(ten, 100_000).as_secs(), 100);
        assert_eq!(recount_every(ten, 1_000_001).as_secs(), 1001);
    }
}
