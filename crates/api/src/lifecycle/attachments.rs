//! Attaching workspace containers to a managed bucket. The bucket network forbids traffic
//! between containers, so each bucket with attachments gets a second network of its own
//! (`kalpana-att-<bucket id>`, internal: no route out) holding only the bucket's container and
//! the containers attached to it. A container may be attached only if it carries the label
//! `kalpana.workspace.id=<id>` of a workspace the caller sees and the bucket is linked to; it is
//! given a scoped key of its own, revoked when it is detached. Any other container is a 404. When the bucket's container is
//! replaced, the new one joins the attachment network again.

use std::collections::BTreeMap;

use kalpana_manager_core::spec::{container_name, LABEL_MANAGED};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::events::BucketEvent;
use crate::keys::{self, NewKey};
use crate::model::{new_id, now, Attachment, BucketRecord, BucketStatus, KeyAccess};

/// The label a workspace container carries.
pub const LABEL_WORKSPACE: &str = "kalpana.workspace.id";

/// The attachment network of a bucket.
pub fn attach_network(bucket_id: &str) -> String {
    format!("kalpana-att-{bucket_id}")
}

/// The host interface of a bucket's attachment network (15 characters: the random end of the
/// bucket id, since its start is a time).
fn attach_bridge(bucket_id: &str) -> String {
    format!("kba{}", &bucket_id[bucket_id.len().saturating_sub(12)..])
}

/// Makes the attachment network of bucket `id` and the firewall rules of its bridge (only the
/// engine's S3 port answers the containers on it).
async fn ensure_network(state: &AppState, bucket_id: &str) -> Result<()> {
    let network = attach_network(bucket_id);
    state
        .docker
        .ensure_attach_network(&network, bucket_id, &attach_bridge(bucket_id))
        .await?;
    super::isolate_bridge(state, &network).await
}

/// What an attachment answers: the container's connection, the secret shown once.
#[derive(Debug)]
pub struct Attached {
    /// The attachment.
    pub attachment: Attachment,
    /// Environment for the container: endpoint, key, secret, region, bucket.
    pub env: BTreeMap<String, String>,
}

/// Attaches container `container` (name or id) to bucket `id`, with a key of `access` under
/// `prefix`. Nothing is connected, and no key is left, when any step fails.
pub async fn attach(
    state: &AppState,
    caller: &Caller,
    b: &BucketRecord,
    container: &str,
    access: KeyAccess,
    prefix: Option<String>,
) -> Result<Attached> {
    crate::backend::require_managed(b, "attaching containers")?;
    if b.status != BucketStatus::Running {
        return Err(Error::Conflict(format!(
            "bucket {} is not running: start it to attach containers",
            b.name
        )));
    }
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
    let Some((container_id, name, labels)) = state.docker.container_labels(container).await? else {
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
    let network = attach_network(&b.id);
    let connected = async {
        ensure_network(state, &b.id).await?;
        state
            .docker
            .connect_to(&network, &container_name(&b.id), &[container_name(&b.id)])
            .await?;
        state
            .docker
            .connect_to(&network, &container_id, &[])
            .await?;
        Ok::<(), Error>(())
    }
    .await;
    if let Err(e) = connected {
        let _ = state.docker.disconnect(&network, &container_id).await;
        let _ = keys::revoke(state, &b.id, &key.id).await;
        return Err(e);
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
        let _guard = state.locks.lock(&b.id).await;
        let mut latest = super::load(state, &b.id).await?;
        latest.attachments.push(attachment.clone());
        latest.updated_at = now();
        state.store.update_bucket(&latest, None).await?;
        state.events.publish(BucketEvent::of(
            "bucket.attachment",
            &latest,
            Some(format!("container {name} attached")),
        ));
        Ok::<(), Error>(())
    }
    .await;
    if let Err(e) = recorded {
        let _ = state.docker.disconnect(&network, &container_id).await;
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
pub async fn detach(state: &AppState, bucket_id: &str, attachment_id: &str) -> Result<()> {
    let (a, left) = {
        let _guard = state.locks.lock(bucket_id).await;
        let mut b = super::load(state, bucket_id).await?;
        let pos = b
            .attachments
            .iter()
            .position(|a| a.id == attachment_id)
            .ok_or(Error::NotFound("attachment"))?;
        let a = b.attachments.remove(pos);
        b.updated_at = now();
        state.store.update_bucket(&b, None).await?;
        state.events.publish(BucketEvent::of(
            "bucket.attachment",
            &b,
            Some(format!("container {} detached", a.container_name)),
        ));
        (a, b.attachments.len())
    };
    match keys::revoke(state, bucket_id, &a.key_id).await {
        Ok(()) | Err(Error::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    let network = attach_network(bucket_id);
    state.docker.disconnect(&network, &a.container_id).await?;
    if left == 0 {
        drop_network(state, bucket_id).await?;
    }
    tracing::info!(bucket = %bucket_id, container = %a.container_name, "container detached");
    Ok(())
}

/// Puts a bucket's (new) container back on its attachment network, with the attached
/// containers still there; a container that is gone is logged and left for its detach.
pub async fn reconnect(state: &AppState, b: &BucketRecord) -> Result<()> {
    if b.attachments.is_empty() {
        return Ok(());
    }
    let network = attach_network(&b.id);
    ensure_network(state, &b.id).await?;
    state
        .docker
        .connect_to(&network, &container_name(&b.id), &[container_name(&b.id)])
        .await?;
    for a in &b.attachments {
        if let Err(e) = state
            .docker
            .connect_to(&network, &a.container_id, &[])
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
pub async fn drop_network(state: &AppState, bucket_id: &str) -> Result<()> {
    let network = attach_network(bucket_id);
    let bridge = match state.docker.bridge_of(&network).await {
        Ok(b) => Some(b),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    state
        .docker
        .disconnect(&network, &container_name(bucket_id))
        .await?;
    state.docker.remove_network(&network).await?;
    if let (Some(bridge), Some(fw)) = (bridge, &state.firewall) {
        if let Err(e) = fw.forget_bridge(&bridge).await {
            tracing::warn!(bucket = %bucket_id, %bridge, error = %e, "removing the firewall rules of a removed attachment network failed");
        }
    }
    Ok(())
}
