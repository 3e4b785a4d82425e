//! Managed containers and volumes no bucket record accounts for: found, reported when the set
//! changes, and removed only by an admin, one at a time, after a fresh check.

use std::collections::HashSet;

use crate::context::Core;
use crate::error::Result;

use super::state::{OrphanContainer, OrphanVolume, Orphans};

/// Lists managed containers and volumes whose bucket has no record. Removes nothing but volume
/// pool helpers an earlier run left (see below).
pub async fn find_orphans(state: &Core) -> Result<Orphans> {
    let containers = state.runtime.list_servers().await?;
    let volumes = state.runtime.list_volumes().await?;
    // Records are read after Docker, so a bucket created meanwhile is not mistaken for missing.
    let known: HashSet<String> = crate::store::all_buckets(&*state.store)
        .await?
        .into_iter()
        .map(|b| b.id)
        .collect();
    // Ids the volume pool holds (made ready, or being made so) are no bucket's yet, and no
    // orphans either.
    let unknown = |id: &Option<String>| {
        id.as_ref()
            .is_none_or(|id| !known.contains(id) && !state.pool.holds(id))
    };
    // A volume pool's helper whose create a killed daemon left in flight lands after the next
    // daemon cleared the pool's leftovers: the daemon's own scaffolding, never user data, so it
    // is removed here rather than reported.
    let mut kept = Vec::new();
    for c in containers {
        if unknown(&c.bucket_id) && c.name.ends_with("-prepare") {
            if let Err(e) = state.runtime.remove_server_named(&c.name).await {
                tracing::warn!(container = %c.name, error = %e, "removing a volume pool helper left by an earlier run failed");
                kept.push(c);
            } else {
                tracing::info!(container = %c.name, "volume pool helper left by an earlier run: removed");
            }
        } else {
            kept.push(c);
        }
    }
    Ok(Orphans {
        containers: kept
            .into_iter()
            .filter(|c| unknown(&c.bucket_id))
            .map(|c| OrphanContainer {
                name: c.name,
                id: c.id,
                bucket_id: c.bucket_id,
                status: c.status,
            })
            .collect(),
        volumes: volumes
            .into_iter()
            .filter(|v| unknown(&v.bucket_id))
            .map(|v| OrphanVolume {
                name: v.name,
                bucket_id: v.bucket_id,
            })
            .collect(),
    })
}

/// Removes the container (or, with `volume`, the volume) `name` if it is still an orphan when
/// checked under the allocation lock (no bucket is being created meanwhile); false when it is
/// not one, so a bucket's own resources can never be removed this way.
pub async fn remove_orphan(state: &Core, volume: bool, name: &str) -> Result<bool> {
    let _alloc = state.locks.allocation.lock().await;
    let found = find_orphans(state).await?;
    let orphan = if volume {
        found.volumes.iter().any(|v| v.name == name)
    } else {
        found.containers.iter().any(|c| c.name == name)
    };
    if orphan {
        if volume {
            state.runtime.remove_volume_named(name).await?;
        } else {
            state.runtime.remove_server_named(name).await?;
        }
    }
    Ok(orphan)
}

/// Logs orphans when the set changed since the last pass, so a standing orphan is not repeated
/// every pass.
pub(super) fn report_orphans(state: &Core, found: &Orphans) {
    let mut last = state
        .reconciler
        .last_orphans
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if last.as_ref() == Some(found) {
        return;
    }
    for c in &found.containers {
        tracing::warn!(container = %c.name, bucket = ?c.bucket_id, status = %c.status,
            "orphan: managed container without a bucket record (left in place; see /api/admin/orphans)");
    }
    for v in &found.volumes {
        tracing::warn!(volume = %v.name, bucket = ?v.bucket_id,
            "orphan: managed volume without a bucket record (left in place; see /api/admin/orphans)");
    }
    *last = Some(found.clone());
}
