//! Deleting a bucket: the intent recorded first (a finalizer), then the container, the volume
//! if asked, and the record.

use crate::context::Core;
use crate::error::Result;
use crate::events::{BucketEvent, EventKind};
use crate::fault;
use crate::model::BucketRecord;

use super::*;

/// Deletes a bucket as a finalizer: mark it deleting, remove the container (and the volume when
/// asked), then drop the record, which frees its ports. A failure leaves the mark for reconcile.
pub async fn delete(state: &Core, id: &str, delete_volume: bool) -> Result<()> {
    require_runtime(state).await?;
    let Some(mut b) = state.lock_bucket_if(id).await? else {
        return Ok(());
    };
    if !b.deleting || (delete_volume && !b.delete_volume) {
        b.deleting = true;
        b.delete_volume |= delete_volume;
        b.save().await?;
    }
    fault::point("delete.marked");
    finish_delete(state, &b).await
}

/// The Docker half of a delete, then the record. Idempotent.
pub async fn finish_delete(state: &Core, b: &BucketRecord) -> Result<()> {
    if !b.attachments.is_empty() {
        for a in &b.attachments {
            state.runtime.detach(&b.id, &a.container_id).await?;
        }
        super::attachments::drop_network(state, &b.id).await?;
    }
    state.runtime.remove_server(&b.id).await?;
    fault::point("delete.container");
    // Its ports stay the daemon's until the record goes (which frees them).
    state.proxies.close(&b.id);
    state.sleep.forget(&b.id);
    // What an interrupted restore left.
    super::volume_data::drop_staging(state, &b.id).await?;
    // A bucket that never held data has nothing worth keeping.
    if b.delete_volume || !b.provisioned {
        state.runtime.remove_volume(&b.id).await?;
    }
    // Its volume is this bucket's (kept data, if kept), never a volume made ahead: a ledger line
    // left by a crash must not outlive the record.
    state.pool.forget(&b.id);
    state.store.delete_bucket(&b.id).await?;
    state.s3_clients.forget(&b.id);
    state.quotas.forget(&b.id);
    state.pending_usage.take(&b.id);
    tracing::info!(bucket = %b.id, name = %b.name, volume_deleted = b.delete_volume || !b.provisioned, "bucket deleted");
    state
        .events
        .publish(BucketEvent::of(EventKind::Deleted, b, None));
    Ok(())
}
