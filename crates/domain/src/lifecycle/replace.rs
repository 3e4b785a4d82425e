//! Changes that replace a bucket's container on the same volume: a domain link (new router
//! labels) and credential rotation (new keys).

use crate::context::{Core, Locked};
use crate::error::{Error, Result};
use crate::events::{BucketEvent, EventKind};
use crate::fault;
use crate::model::{BucketRecord, BucketStatus};
use crate::secrets::new_secret_key;

use super::*;

/// Links the bucket to `host` (or unlinks it with `None`). Labels cannot change on a live
/// container, so a provisioned bucket's container is replaced: same volume, ports and
/// credentials; a running bucket is brought up again and is unavailable only meanwhile.
pub async fn set_link(
    state: &Core,
    id: &str,
    domain_id: Option<String>,
    host: Option<String>,
) -> Result<BucketRecord> {
    only_managed(state, id, "a domain link").await?;
    require_runtime(state).await?;
    let (mut b, _awake) = crate::sleep::lock_awake(state, id).await?;
    if b.status == BucketStatus::Creating {
        return Err(Error::Conflict("the bucket is still being created".into()));
    }
    if b.linked_host == host {
        return Ok(b.record);
    }
    {
        // Same lock order as provisioning: the bucket's, then allocation's.
        // The store refuses a host linked to another bucket (409).
        let _alloc = state.locks.allocation.lock().await;
        b.domain_id = domain_id;
        b.linked_host = host;
        b.generation += 1;
        // The record first: a daemon that dies mid-way replaces the container from it.
        b.save().await?;
    }
    tracing::info!(bucket = %b.id, host = ?b.linked_host, generation = b.generation,
        "domain link changed; replacing the container");
    state.events.publish(BucketEvent::of(
        EventKind::Domain,
        &b,
        b.linked_host.clone(),
    ));
    fault::point("link.recorded");
    replace_container(state, &mut b, "the domain link").await?;
    Ok(b.record)
}

/// Rotates the bucket's secret key: the new secret is recorded (encrypted) first, then the
/// container is replaced to serve it. Returns the record and the new secret (shown once).
pub async fn rotate_credentials(state: &Core, id: &str) -> Result<(BucketRecord, String)> {
    only_managed(state, id, "rotating credentials").await?;
    require_runtime(state).await?;
    let (mut b, _awake) = crate::sleep::lock_awake(state, id).await?;
    require_provisioned(&b)?;
    let secret = new_secret_key();
    b.secret_key_enc = state.master_key.encrypt(&secret)?;
    b.generation += 1;
    b.save().await?;
    tracing::info!(bucket = %b.id, generation = b.generation, "credentials rotated; replacing the container");
    state.events.publish(BucketEvent::of(
        EventKind::Credentials,
        &b,
        Some("secret key rotated".into()),
    ));
    fault::point("rotate.recorded");
    replace_container(state, &mut b, "new credentials").await?;
    Ok((b.record, secret))
}

/// Replaces a provisioned bucket's container with one of the record's configuration and brings
/// it up if the bucket is RUNNING; on failure the bucket goes to ERROR saying `why` it was
/// replaced.
async fn replace_container(state: &Core, b: &mut Locked, why: &str) -> Result<()> {
    if !b.provisioned {
        return Ok(());
    }
    let result = async {
        let spec = spec_for(state, b)?;
        swap_container(state, b, &spec).await?;
        if b.status == BucketStatus::Running {
            bring_up(state, b, Settings::all_of(b)).await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        let from = b.status;
        let message = format!("replacing the container for {why} failed: {e}");
        set_status(state, b, BucketStatus::Error, Some(message), Some(from)).await?;
        return Err(e);
    }
    Ok(())
}
