//! Object counts, sizes and quotas: kept current after API writes and recounted periodically
//! from the S3 servers themselves (which also sees writes made directly over S3).

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::lifecycle;
use crate::model::{now, BucketRecord, BucketStatus};
use crate::store::all_buckets;

/// How many bytes an upload of the key whose current size is `old_size` may store.
pub fn upload_allowance(b: &BucketRecord, old_size: u64) -> Option<u64> {
    b.quota_bytes()
        .map(|q| q.saturating_sub(b.total_size_bytes.saturating_sub(old_size)))
}

/// The 413 of an upload over quota.
pub fn over_quota(b: &BucketRecord) -> Error {
    let quota = b.max_size_gb.unwrap_or_default();
    Error::PayloadTooLarge(format!(
        "the upload would take bucket {} over its quota of {quota} GB ({} bytes in use); nothing was stored",
        b.name, b.total_size_bytes
    ))
}

/// Adds to a bucket's counters after an API write or delete.
pub async fn adjust(state: &AppState, id: &str, objects: i64, bytes: i64) -> Result<()> {
    if objects == 0 && bytes == 0 {
        return Ok(());
    }
    let _guard = state.locks.lock(id).await;
    let Some(mut b) = state.store.get_bucket(id).await? else {
        return Ok(());
    };
    b.object_count = b.object_count.saturating_add_signed(objects);
    b.total_size_bytes = b.total_size_bytes.saturating_add_signed(bytes);
    state.store.update_bucket(&b, None).await
}

/// Recounts one bucket from its S3 server.
pub async fn sync_one(state: &AppState, id: &str) -> Result<()> {
    let Some(b) = state.store.get_bucket(id).await? else {
        return Ok(());
    };
    if b.status != BucketStatus::Running || b.deleting {
        return Ok(());
    }
    let (count, bytes) = lifecycle::s3_client(state, &b)?.usage().await?;
    let _guard = state.locks.lock(id).await;
    let Some(mut b) = state.store.get_bucket(id).await? else {
        return Ok(());
    };
    let changed = b.object_count != count || b.total_size_bytes != bytes;
    b.object_count = count;
    b.total_size_bytes = bytes;
    b.stats_synced_at = Some(now());
    state.store.update_bucket(&b, None).await?;
    if changed {
        tracing::info!(bucket = %b.id, objects = count, bytes, "bucket usage recounted");
    }
    Ok(())
}

/// Recounts every running bucket every `stats_sync_interval`.
pub fn spawn_periodic_sync(state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.config.stats_sync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let buckets = match all_buckets(state.store.as_ref()).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "usage sync: listing buckets failed");
                    continue;
                }
            };
            for b in buckets
                .iter()
                .filter(|b| b.status == BucketStatus::Running && !b.deleting)
            {
                if let Err(e) = sync_one(&state, &b.id).await {
                    tracing::warn!(bucket = %b.id, error = %e, "usage sync failed");
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowance_counts_the_replaced_object_as_freed() {
        let mut b = crate::store::suite::bucket("u1", "photos", &[40001]);
        assert_eq!(upload_allowance(&b, 0), None);
        b.max_size_gb = Some(0.001);
        b.total_size_bytes = 600_000;
        assert_eq!(upload_allowance(&b, 0), Some(400_000));
        assert_eq!(upload_allowance(&b, 100_000), Some(500_000));
        b.total_size_bytes = 2_000_000;
        assert_eq!(upload_allowance(&b, 0), Some(0));
    }
}
