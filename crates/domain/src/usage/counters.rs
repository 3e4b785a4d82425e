//! A bucket's object and byte counters: added to after API writes, recounted from its S3
//! server, and the over-quota mark that follows from them.

use crate::context::Core;
use crate::error::Result;
use crate::events::{BucketEvent, EventKind};
use crate::model::{now, BucketRecord, BucketStatus};

/// Adds to a bucket's counters after an API write or delete: at once for a bucket with a quota
/// (its ledger needs exact figures), within about a second otherwise (see `pending_usage`).
pub async fn adjust(state: &Core, b: &BucketRecord, objects: i64, bytes: i64) -> Result<()> {
    if objects == 0 && bytes == 0 {
        return Ok(());
    }
    if b.quota_bytes().is_none() {
        state.pending_usage.add(&b.id, objects, bytes);
        return Ok(());
    }
    let id = &b.id;
    let Some(mut b) = state.lock_bucket_if(id).await? else {
        return Ok(());
    };
    b.object_count = b.object_count.saturating_add_signed(objects);
    b.total_size_bytes = b.total_size_bytes.saturating_add_signed(bytes);
    let over_changed = mark_over_quota(&mut b);
    b.write().await?;
    state.quotas.set_used(&b.id, b.total_size_bytes);
    if over_changed {
        announce_quota(state, &b);
    }
    Ok(())
}

/// Sets `overQuota` from the bucket's counted bytes; whether it changed.
pub fn mark_over_quota(b: &mut BucketRecord) -> bool {
    let over = b.quota_bytes().is_some_and(|q| b.total_size_bytes > q);
    let changed = b.over_quota != over;
    b.over_quota = over;
    changed
}

/// The event and log line of a bucket going over its quota or back under it.
pub fn announce_quota(state: &Core, b: &BucketRecord) {
    let message = if b.over_quota {
        format!(
            "bucket holds {} bytes, over its quota of {} bytes: uploads through the API are refused until it is back under",
            b.total_size_bytes,
            b.quota_bytes().unwrap_or_default()
        )
    } else {
        "bucket is back under its quota".to_string()
    };
    tracing::warn!(bucket = %b.id, bytes = b.total_size_bytes, over = b.over_quota, "{message}");
    state
        .events
        .publish(BucketEvent::of(EventKind::Quota, b, Some(message)));
}

/// Recounts one bucket from its S3 server.
pub async fn sync_one(state: &Core, id: &str) -> Result<()> {
    let Some(b) = state.store.get_bucket(id).await? else {
        return Ok(());
    };
    // A sleeping bucket's count is as it fell asleep: only clients change it, and they wake it.
    if b.status != BucketStatus::Running || b.deleting || state.sleep.sleeping(id) {
        return Ok(());
    }
    let before = state.pending_usage.quiet_mark(id);
    let (count, bytes) = crate::clients::s3(state, &b)?.usage().await?;
    if before.is_none() || state.pending_usage.quiet_mark(id) != before {
        // An API upload overlapped the listing: its parts may be in the count and its object
        // about to be added to it. The next recount, in a quiet moment, is trusted instead.
        tracing::debug!(bucket = %id, "recount overlapped an API upload; not recorded");
        return Ok(());
    }
    let Some(mut b) = state.lock_bucket_if(id).await? else {
        return Ok(());
    };
    // The listing counted what API writes had not yet recorded.
    state.pending_usage.take(id);
    let changed = b.object_count != count || b.total_size_bytes != bytes;
    b.object_count = count;
    b.total_size_bytes = bytes;
    b.stats_synced_at = Some(now());
    let over_changed = mark_over_quota(&mut b);
    b.write().await?;
    state.pending_usage.recounted(id);
    state.quotas.set_used(&b.id, bytes);
    if changed {
        tracing::info!(bucket = %b.id, objects = count, bytes, "bucket usage recounted");
    }
    if over_changed {
        announce_quota(state, &b);
    }
    Ok(())
}
