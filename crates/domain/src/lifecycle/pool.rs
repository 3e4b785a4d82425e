//! Bucket ids whose data volume is made ahead of time, with the engine's internal certificates
//! already in it: writing them into a new container's volume through Docker's archive API takes
//! about 70 ms, which a create would otherwise wait for between the container's creation and
//! its start. A background task keeps `KALPANA_VOLUME_POOL` (2) of them ready; a create takes
//! one when it can, and makes its own otherwise.
//!
//! Guarantees: a prepared volume is given to one bucket only; its certificates are used by that
//! bucket's first container only (later containers get fresh ones as before); a prepared volume
//! no bucket took is removed when the daemon starts again (ids are not reused). Caveat: such a
//! volume carries the bucket id label but not its name and owner (Docker volume labels cannot
//! change).

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use crate::context::Core;
use crate::model::new_id;

/// How long after a volume was taken the pool makes the next one.
const REFILL_AFTER: Duration = Duration::from_secs(3);

/// The ids ready for new buckets, and those taken whose first container is still to come.
#[derive(Default)]
pub struct VolumePool {
    ready: Mutex<VecDeque<String>>,
    preparing: Mutex<Option<String>>,
    fresh: Mutex<HashSet<String>>,
    wanted: tokio::sync::Notify,
}

impl VolumePool {
    /// An id whose volume is made, if one is ready.
    pub fn take(&self) -> Option<String> {
        let id = self
            .ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()?;
        self.fresh
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone());
        self.wanted.notify_one();
        Some(id)
    }

    /// Whether bucket `id`'s volume holds certificates no container has used yet (asked once,
    /// by its first container's creation).
    pub fn holds_fresh_certificates(&self, id: &str) -> bool {
        self.fresh
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
    }

    /// Whether `id` is one of the ids waiting for a bucket, or being made ready (its volume
    /// and its helper are no orphans).
    pub fn holds(&self, id: &str) -> bool {
        self.preparing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_deref()
            == Some(id)
            || self
                .ready
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(|r| r == id)
    }

    fn set_preparing(&self, id: Option<&str>) {
        *self.preparing.lock().unwrap_or_else(|p| p.into_inner()) = id.map(String::from);
    }

    fn ready_count(&self) -> usize {
        self.ready.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Removes the volumes a previous run made ahead and no bucket took, then keeps the pool full.
pub fn spawn_filler(state: Core) {
    let size = state.config.volume_pool;
    if size == 0 {
        return;
    }
    let core = state.clone();
    core.tasks.spawn_loop("volume pool", async move {
        if let Err(e) = drop_leftovers(&state).await {
            tracing::warn!(error = %e, "removing volumes made ahead by an earlier run failed");
        }
        let mut backoff = Duration::from_secs(1);
        loop {
            while state.pool.ready_count() < size {
                let profile = state.config.profile(state.config.engine);
                let id = new_id();
                state.pool.set_preparing(Some(&id));
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
                        let _ = state.runtime.drop_staging(&id).await;
                        let _ = state.runtime.remove_volume(&id).await;
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                    }
                }
                state.pool.set_preparing(None);
            }
            state.pool.wanted.notified().await;
            // Not beside the provisioning that took the volume: Docker does one thing at a
            // time well, and that create is waiting for it.
            tokio::time::sleep(REFILL_AFTER).await;
        }
    });
}

async fn drop_leftovers(state: &Core) -> crate::error::Result<()> {
    let known: HashSet<String> = crate::store::all_buckets(&*state.store)
        .await?
        .into_iter()
        .map(|b| b.id)
        .collect();
    for v in state.runtime.list_volumes().await? {
        if v.made_ahead && v.bucket_id.as_ref().is_none_or(|id| !known.contains(id)) {
            // A daemon stopped while it made the volume ready leaves its helper, which holds it.
            if let Some(id) = &v.bucket_id {
                state.runtime.drop_staging(id).await?;
            }
            state.runtime.remove_volume_named(&v.name).await?;
        }
    }
    Ok(())
}
