//! Attaching workspace containers to a managed bucket. The bucket network forbids traffic
//! between containers, so each bucket with attachments gets a second network of its own
//! (`kalpana-att-<bucket id>`, internal: no route out) holding only the bucket's container and
//! the containers attached to it. A container may be attached only if it carries the label
//! `kalpana.workspace.id=<id>` of a workspace the caller sees and the bucket is linked to; it is
//! given a scoped key of its own, revoked when it is detached. Any other container is a 404. When the bucket's container is
//! replaced, the new one joins the attachment network again.

use std::collections::BTreeMap;

pub use kalpana_manager_core::docker_runtime::attach_network;
use kalpana_manager_core::spec::{container_name, LABEL_MANAGED};

use crate::access::Caller;
use crate::context::Core;
use crate::error::{Error, Result};
use crate::events::{BucketEvent, EventKind};
use crate::keys::{self, NewKey};
use crate::model::{new_id, now, Attachment, BucketRecord, BucketStatus, KeyAccess};

/// The label a workspace container carries.
pub const LABEL_WORKSPACE: &str = "kalpana.workspace.id";

/// What an attachment answers: the container's connection, the secret shown once.
#[derive(Debug)]
pub struct Attached {
    pub attachment: Attachment,
    /// Environment for the container: endpoint, key, secret, region, bucket.
    pub env: BTreeMap<String, String>,
}

/// Attaches container `container` (name or id) to bucket `id`, with a key of `access` under
/// `prefix`. Nothing is connected, and no key is left, when any step fails.
pub async fn attach(
    state: &Core,
    caller: &Caller,
    b: &BucketRecord,
    container: &str,
    access: KeyAccess,
    prefix: Option<String>,
) -> Result<Attached> {
    crate::kinds::require_managed(b, "attaching containers")?;
    if b.status != BucketStatus::Running {
        return Err(Error::Conflict(format!(
            "bucket {} is not running: start it to attach containers",
            b.name
        )));
    }
    // An attached bucket never sleeps, and its workload reaches it where the daemon sees
    // nothing: it is attached awake.
    let _awake = crate::sleep::awake_for_operation(state, b).await?;
    let Some(workspace_id) = b.workspace_id.clone() else {
        return Err(Error::Conflict(format!(
            "bucket {} is linked to no workspace: set its workspaceId first",
            b.name
        )));
    };
    crate::workspaces::usable(state, caller, &workspace_id).await?;
    // Whether a container exists that is not the caller's to attach is nobody's business: every
    // refusal is the same 404, and nothing is connected.
    let refused = Error::NotFound("container labelled for the bucket's workspace");
    let Some(kalpana_manager_core::Workload {
        id: container_id,
        name,
        labels,
    }) = state.runtime.find_workload(container).await?
    else {
        return Err(refused);
    };
    if labels.contains_key(LABEL_MANAGED) || labels.get(LABEL_WORKSPACE) != Some(&workspace_id) {
        tracing::info!(bucket = %b.id, container = %name, "attachment refused: not labelled for the bucket's workspace");
        return Err(refused);
    }
    if b.attachments.iter().any(|a| a.container_id == container_id) {
        return Err(Error::Conflict(format!(
            "container {name} is attached to bucket {} already",
            b.name
        )));
    }
    let (key, secret) = keys::create(
        state,
        &b.id,
        NewKey {
            created_by: caller.user.id.clone(),
            name: format!("attachment {name}"),
            access,
            prefix,
            expires_in: None,
        },
    )
    .await?;
    let connected = state
        .runtime
        .attach(&b.id, std::slice::from_ref(&container_id))
        .await;
    if let Err(e) = connected {
        let _ = state.runtime.detach(&b.id, &container_id).await;
        let _ = keys::revoke(state, &b.id, &key.id).await;
        return Err(e.into());
    }
    let attachment = Attachment {
        id: new_id(),
        container_id: container_id.clone(),
        container_name: name.clone(),
        workspace_id,
        key_id: key.id.clone(),
        created_at: now(),
        created_by: Some(caller.user.id.clone()),
    };
    let recorded = async {
        let mut latest = state.lock_bucket(&b.id).await?;
        latest.attachments.push(attachment.clone());
        latest.save().await?;
        state.events.publish(BucketEvent::of(
            EventKind::Attachment,
            &latest,
            Some(format!("container {name} attached")),
        ));
        Ok::<(), Error>(())
    }
    .await;
    if let Err(e) = recorded {
        let _ = state.runtime.detach(&b.id, &container_id).await;
        let _ = keys::revoke(state, &b.id, &key.id).await;
        return Err(e);
    }
    tracing::info!(bucket = %b.id, container = %name, key = %key.access_key, "container attached");
    let endpoint = format!(
        "http://{}:{}",
        container_name(&b.id),
        state.config.profile(b.engine).s3_port
    );
    let env = BTreeMap::from([
        ("AWS_ENDPOINT_URL".to_string(), endpoint),
        ("AWS_ACCESS_KEY_ID".to_string(), key.access_key),
        ("AWS_SECRET_ACCESS_KEY".to_string(), secret),
        ("AWS_REGION".to_string(), b.region.clone()),
        ("S3_BUCKET".to_string(), b.name.clone()),
    ]);
    Ok(Attached { attachment, env })
}

/// Detaches: the key is revoked, the container disconnected; the last detach removes the
/// attachment network.
pub async fn detach(state: &Core, bucket_id: &str, attachment_id: &str) -> Result<()> {
    let (a, left) = {
        let mut b = state.lock_bucket(bucket_id).await?;
        let pos = b
            .attachments
            .iter()
            .position(|a| a.id == attachment_id)
            .ok_or(Error::NotFound("attachment"))?;
        let a = b.attachments.remove(pos);
        b.save().await?;
        state.events.publish(BucketEvent::of(
            EventKind::Attachment,
            &b,
            Some(format!("container {} detached", a.container_name)),
        ));
        (a, b.attachments.len())
    };
    match keys::revoke(state, bucket_id, &a.key_id).await {
        Ok(()) | Err(Error::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    state.runtime.detach(bucket_id, &a.container_id).await?;
    if left == 0 {
        drop_network(state, bucket_id).await?;
    }
    tracing::info!(bucket = %bucket_id, container = %a.container_name, "container detached");
    Ok(())
}

/// Puts a bucket's (new) container back on its attachment network, with the attached
/// containers still there; a container that is gone is logged and left for its detach.
pub async fn reconnect(state: &Core, b: &BucketRecord) -> Result<()> {
    if b.attachments.is_empty() {
        return Ok(());
    }
    state.runtime.attach(&b.id, &[]).await?;
    for a in &b.attachments {
        if let Err(e) = state
            .runtime
            .attach(&b.id, std::slice::from_ref(&a.container_id))
            .await
        {
            tracing::warn!(bucket = %b.id, container = %a.container_name, error = %e,
                "attached container could not be reconnected");
        }
    }
    Ok(())
}

/// Removes a bucket's attachment network (its containers are disconnected first) and the
/// firewall rules of its bridge.
pub async fn drop_network(state: &Core, bucket_id: &str) -> Result<()> {
    Ok(state.runtime.drop_attachments(bucket_id).await?)
}
