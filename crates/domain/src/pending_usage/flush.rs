//! Writing pending usage changes to bucket records: on demand, periodically, and at a stop.

use std::time::Duration;

use super::apply;
use crate::context::Core;

/// How often pending changes are written.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Writes one bucket's pending changes to its record (taking the bucket's lock). A change that
/// could not be written stays pending.
pub async fn flush_one(state: &Core, id: &str) -> crate::Result<()> {
    let Some(mut b) = state.lock_bucket_if(id).await? else {
        state.pending_usage.take(id); // deleted meanwhile: nothing to count
        return Ok(());
    };
    let (objects, bytes) = state.pending_usage.take(id);
    if objects == 0 && bytes == 0 {
        return Ok(());
    }
    apply(&mut b, objects, bytes);
    if let Err(e) = b.write().await {
        state.pending_usage.add(id, objects, bytes);
        return Err(e);
    }
    // A bucket given a quota since these changes were made counts them in its ledger too.
    state.quotas.set_used(id, b.total_size_bytes);
    Ok(())
}

/// Writes every bucket's pending changes.
pub async fn flush_all(state: &Core) {
    for id in state.pending_usage.ids() {
        if let Err(e) = flush_one(state, &id).await {
            tracing::warn!(bucket = %id, error = %e, "writing usage counters failed; kept for the next try");
        }
    }
}

/// Writes pending changes every second until the daemon stops.
pub fn spawn_flusher(state: Core) {
    let core = state.clone();
    core.tasks.spawn_loop("usage flusher", async move {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            flush_all(&state).await;
        }
    });
}
