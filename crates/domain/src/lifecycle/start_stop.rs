//! Starting and stopping a bucket, and making its container exist with the record's
//! generation (recreated on the kept volume, or replaced).

use kalpana_manager_core::spec::BucketSpec;

use crate::context::Core;
use crate::error::{Error, Result};
use crate::fault;
use crate::model::{BucketRecord, BucketStatus};

use super::*;

/// Starts a bucket: STOPPED or ERROR → RUNNING. A never-provisioned ERROR bucket is provisioned
/// again from scratch; a container removed by hand is recreated on the kept volume.
pub async fn start(state: &Core, id: &str) -> Result<BucketRecord> {
    only_managed(state, id, "starting").await?;
    require_runtime(state).await?;
    let mut b = state.lock_bucket(id).await?;
    match b.status {
        BucketStatus::Creating => {
            return Err(Error::Conflict("the bucket is still being created".into()))
        }
        BucketStatus::Error if !b.provisioned => {
            set_status(
                state,
                &mut b,
                BucketStatus::Creating,
                Some("retrying provisioning".into()),
                Some(BucketStatus::Error),
            )
            .await?;
            drop(b);
            let _ = provision(state, id).await;
            return state
                .store
                .get_bucket(id)
                .await?
                .ok_or(Error::NotFound("bucket"));
        }
        _ => {}
    }
    let from = b.status;
    let result = ensure_running(state, &b).await;
    match result {
        Ok(()) => {
            fault::point("start.running");
            if b.status != BucketStatus::Running || b.status_message.is_some() {
                set_status(state, &mut b, BucketStatus::Running, None, Some(from)).await?;
            }
            Ok(b.record)
        }
        Err(e) if matches!(&e, Error::Runtime(m) if m.is_unavailable()) => Err(e),
        Err(e) => {
            set_status(
                state,
                &mut b,
                BucketStatus::Error,
                Some(format!("start failed: {e}")),
                None,
            )
            .await?;
            Err(e)
        }
    }
}

/// Makes the container of a provisioned bucket exist with the record's configuration and serve S3.
pub async fn ensure_running(state: &Core, b: &BucketRecord) -> Result<()> {
    let spec = spec_for(state, b)?;
    ensure_container(state, b, &spec).await?;
    // Settings changed while the bucket was stopped, or lost with a recreated container.
    bring_up(state, b, Settings::all_of(b)).await
}

/// Makes the bucket's container exist with the record's generation: recreated on the kept
/// volume when it is missing, replaced when it is older (a rotation or link the daemon did not
/// finish). Does not start it.
pub async fn ensure_container(state: &Core, b: &BucketRecord, spec: &BucketSpec) -> Result<()> {
    match state.runtime.inspect_server(&b.id).await? {
        Some(c) if c.is_current(b.generation) => Ok(()),
        Some(c) => {
            tracing::warn!(bucket = %b.id, container_generation = ?c.generation,
                generation = b.generation, "container is of an older configuration; replacing it");
            swap_container(state, b, spec).await
        }
        None => {
            tracing::warn!(bucket = %b.id, "container missing; recreating it on the kept volume");
            state.runtime.create_server(spec, false).await?;
            Ok(())
        }
    }
}

/// Stops and removes the container and creates it anew from `spec`, on the same volume.
pub(super) async fn swap_container(
    state: &Core,
    b: &BucketRecord,
    spec: &BucketSpec,
) -> Result<()> {
    state.runtime.stop_server(&b.id, STOP_GRACE).await?;
    fault::point("replace.stopped");
    state.runtime.remove_server(&b.id).await?;
    fault::point("replace.removed");
    state.runtime.create_server(spec, false).await?;
    // The old server's pooled connections, credentials and address are gone with it.
    state.s3_clients.forget(&b.id);
    state.addresses.set(&b.id, None);
    fault::point("replace.created");
    Ok(())
}

/// Stops a bucket: RUNNING (or a provisioned ERROR) → STOPPED. Stopping a stopped bucket is fine.
pub async fn stop(state: &Core, id: &str) -> Result<BucketRecord> {
    only_managed(state, id, "stopping").await?;
    require_runtime(state).await?;
    let mut b = state.lock_bucket(id).await?;
    if b.status == BucketStatus::Stopped {
        return Ok(b.record);
    }
    require_provisioned(&b)?;
    // The intent first: object calls answer 409 "stopped" from now on rather than meet a server
    // going away, and a daemon that dies mid-way finishes the stop when it comes back.
    let from = b.status;
    set_status_in(
        state,
        &mut b,
        BucketStatus::Stopped,
        Some(crate::model::Phase::Stopping),
        Some(STOPPING.into()),
        Some(from),
    )
    .await?;
    if let Err(e) = state.runtime.stop_server(&b.id, STOP_GRACE).await {
        let message = format!("stop failed: {e}");
        set_status(
            state,
            &mut b,
            from,
            Some(message),
            Some(BucketStatus::Stopped),
        )
        .await?;
        return Err(e.into());
    }
    fault::point("stop.stopped");
    crate::sleep::forget_sleep(state, &mut b);
    set_status(
        state,
        &mut b,
        BucketStatus::Stopped,
        None,
        Some(BucketStatus::Stopped),
    )
    .await?;
    Ok(b.record)
}
