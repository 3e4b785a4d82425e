//! Deleting a bucket: the intent recorded first (a finalizer), then the container, the volume
//! if asked, and the record.

use kalpana_manager_core::spec::{container_name, volume_name};

use crate::app::AppState;
use crate::error::Result;
use crate::events::BucketEvent;
use crate::fault;
use crate::model::{now, BucketRecord};

use super::*;

/// Deletes a bucket as a finalizer: mark it deleting, remove the container (and the volume when
/// asked), then drop the record, which frees its ports. A failure leaves the mark for reconcile.
pub async fn delete(state: &AppState, id: &str, delete_volume: bool) -> Result<()> {
    require_docker(state).await?;
    let _guard = state.locks.lock(id).await;
    let Some(mut b) = state.store.get_bucket(id).await? else {
        return Ok(());
    };
    if !b.deleting || (delete_volume && !b.delete_volume) {
        b.deleting = true;
        b.delete_volume |= delete_volume;
        b.updated_at = now();
        state.store.update_bucket(&b, None).await?;
    }
    fault::point("delete.marked");
    finish_delete(state, &b).await
}

/// The Docker half of a delete, then the record. Idempotent.
pub async fn finish_delete(state: &AppState, b: &BucketRecord) -> Result<()> {
    if !b.attachments.is_empty() {
        let network = super::attachments::attach_network(&b.id);
        for a in &b.attachments {
            state.docker.disconnect(&network, &a.container_id).await?;
        }
        super::attachments::drop_network(state, &b.id).await?;
    }
    state
        .docker
        .remove_container(&container_name(&b.id))
        .await?;
    fault::point("delete.container");
    // What an interrupted restore left.
    super::volume_data::drop_staging(state, &b.id).await?;
    // A bucket that never held data has nothing worth keeping.
    if b.delete_volume || !b.provisioned {
        state.docker.remove_volume(&volume_name(&b.id)).await?;
    }
    state.store.delete_bucket(&b.id).await?;
    state.s3_clients.forget(&b.id);
    state.quotas.forget(&b.id);
    state.pending_usage.take(&b.id);
    tracing::info!(bucket = %b.id, name = %b.name, volume_deleted = b.delete_volume || !b.provisioned, "bucket deleted");
    state
        .events
        .publish(BucketEvent::of("bucket.deleted", b, None));
    Ok(())
}
