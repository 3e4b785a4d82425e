//! Operations whose work depends on a bucket's kind: create, delete, refresh, resources. The
//! managed backend is `lifecycle` (a container per bucket), the external one `external`; a
//! bucket's S3 client and endpoint come from `clients`.

use crate::context::Core;
use crate::error::{Error, Result};
use crate::model::{BucketKind, BucketRecord};
use crate::{external, lifecycle};

/// Deletes a bucket: a managed one with its container (and volume if asked), an external one
/// by forgetting its registration (its remote objects stay).
pub async fn delete(state: &Core, b: &BucketRecord, delete_volume: bool) -> Result<()> {
    match b.kind() {
        BucketKind::Managed => lifecycle::delete(state, &b.id, delete_volume).await,
        BucketKind::External => external::forget(state, &b.id).await,
    }
}

/// A bucket just registered: its record, the secret to show once (managed buckets make one;
/// an external bucket's is the user's own and is never shown), and the provisioning task.
pub struct Created {
    pub record: BucketRecord,
    /// The secret key, shown once.
    pub secret: Option<String>,
    /// Provisioning still under way (managed buckets).
    pub provisioning: Option<crate::supervisor::Finished>,
}

/// Creates a bucket of the kind the request asks for.
pub async fn create(
    state: &Core,
    caller: &crate::access::Caller,
    req: crate::requests::CreateBucket,
) -> Result<Created> {
    crate::workspaces::check_link(state, caller, req.workspace_id.as_deref()).await?;
    match req.kind.unwrap_or_default() {
        BucketKind::Managed => {
            if req.external.is_some() {
                return Err(Error::Invalid(
                    "`external` needs \"kind\": \"external\"".into(),
                ));
            }
            let (record, secret, handle) = lifecycle::create(state, caller, req).await?;
            Ok(Created {
                record,
                secret: Some(secret),
                provisioning: Some(handle),
            })
        }
        BucketKind::External if req.from_snapshot.is_some() || req.snapshot_policy.is_some() => {
            Err(Error::Invalid(
                "fromSnapshot and snapshotPolicy are for managed buckets (a snapshot is of a container's volume)"
                    .into(),
            ))
        }
        BucketKind::External => Ok(Created {
            record: external::create(state, caller, req).await?,
            secret: None,
            provisioning: None,
        }),
    }
}

/// A sample of the resources the bucket's server uses: its container's for a managed bucket,
/// none for an external one (or while Docker is away: usage from the store is still worth
/// answering with).
pub async fn resources(
    state: &Core,
    b: &BucketRecord,
) -> Option<kalpana_manager_core::docker::ContainerStats> {
    if b.kind() != BucketKind::Managed {
        return None;
    }
    lifecycle::container_resources(state, b).await
}

/// Whether the periodic refresh looks at this bucket while it is not RUNNING (an external
/// bucket in ERROR is checked until it answers again; a managed one is reconcile's).
pub fn checked_while_down(b: &BucketRecord) -> bool {
    b.kind() == BucketKind::External
}

/// The periodic refresh of one bucket: a managed bucket is recounted from its S3 server and
/// settings changed directly over S3 are put back; an external bucket is checked (RUNNING or
/// ERROR), not recounted, since listing a provider's bucket costs its owner money.
pub async fn refresh(state: &Core, b: &BucketRecord) {
    match b.kind() {
        BucketKind::Managed => {
            // A bucket on a node gone quiet cannot answer; its node's lease decides its fate,
            // and holding its lock through connection timeouts would only delay an evacuation.
            if state
                .addresses
                .node_id(&b.id)
                .is_some_and(|n| state.nodes.away(&n))
            {
                return;
            }
            if let Err(e) = crate::usage::sync_one(state, &b.id).await {
                tracing::warn!(bucket = %b.id, error = %e, "usage sync failed");
            }
            if let Err(e) = crate::drift::enforce(state, &b.id).await {
                tracing::warn!(bucket = %b.id, error = %e, "settings check failed");
            }
        }
        BucketKind::External => {
            if let Err(e) = external::check(state, &b.id).await {
                tracing::warn!(bucket = %b.id, error = %e, "external bucket check failed");
            }
        }
    }
}
