//! Changing a bucket's description, quota, S3 settings, snapshot policy, workspace, or an
//! external bucket's credentials (`PATCH /api/buckets/{id}`).

use serde::Deserialize;

use super::{authorized, permit};
use crate::access::{Access, Caller};
use crate::context::Core;
use crate::error::{Error, Result};
use crate::model::{BucketRecord, BucketStatus};
use crate::validate;

/// Body of `PATCH /api/buckets/{id}`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateBucket {
    pub description: Option<String>,
    #[serde(rename = "maxSizeGB")]
    pub max_size_gb: Option<f64>,
    pub versioning: Option<bool>,
    pub encryption: Option<bool>,
    pub public_access: Option<bool>,
    /// New credentials (and optionally location) of an external bucket, checked before stored.
    pub external: Option<crate::requests::ExternalRequest>,
    /// Snapshots on a schedule; `null` stops them.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<crate::model::SnapshotPolicy>)]
    pub snapshot_policy: Option<Option<crate::model::SnapshotPolicy>>,
    /// The workspace it belongs to (one the caller may put things in); `null` unlinks it.
    /// Refused (409) while containers are attached to it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub workspace_id: Option<Option<String>>,
    /// Seconds with no request after which it sleeps (0: never).
    pub sleep_after_secs: Option<u64>,
}

/// A field that may be absent (outer `None`), `null` (`Some(None)`) or a value.
fn present<'de, D, T>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Applies `req` to bucket `id`. Settings are written to a running bucket's S3 server before
/// the record, so a failure changes nothing; a stopped bucket gets them when it starts.
pub async fn update(
    state: &Core,
    caller: &Caller,
    id: &str,
    req: UpdateBucket,
) -> Result<BucketRecord> {
    // Someone outside the bucket is refused before its lock, so they never wait on it; the
    // rights are checked again under the lock, so one lost while waiting is lost.
    let seen = authorized(state, caller, id, Access::Manage).await?;
    // S3 settings that change are written to the engine: a sleeping bucket wakes for them.
    let changes = |want: Option<bool>, now: bool| want.is_some_and(|w| w != now);
    let _awake = if changes(req.versioning, seen.versioning)
        || changes(req.encryption, seen.encryption)
        || changes(req.public_access, seen.public_access)
    {
        crate::sleep::awake_for_operation(state, &seen).await?
    } else {
        None
    };
    let mut b = state.lock_bucket(id).await?;
    permit(caller, &b, Access::Manage)?;
    if req.versioning.is_some()
        || req.encryption.is_some()
        || req.public_access.is_some()
        || req.max_size_gb.is_some()
    {
        crate::kinds::require_managed(&b, "changing S3 settings or the quota")?;
    }
    if let Some(policy) = &req.snapshot_policy {
        crate::kinds::require_managed(&b, "snapshot policies")?;
        if let Some(p) = policy {
            crate::snapshots::schedule::check(state, caller, Some(&b.id), p).await?;
        }
    }
    if let Some(ws) = &req.workspace_id {
        crate::workspaces::check_link(state, caller, ws.as_deref()).await?;
        if *ws != b.workspace_id && !b.attachments.is_empty() {
            return Err(Error::Conflict(format!(
                "bucket {} has containers of its workspace attached: detach them first",
                b.name
            )));
        }
    }
    if let Some(ext) = &req.external {
        crate::external::replace_credentials(state, &mut b, ext).await?;
    }
    super::check_features(b.engine, req.versioning, req.encryption, req.public_access)?;
    validate::quota(req.max_size_gb)?;
    let changed = super::Settings {
        versioning: req.versioning.filter(|v| *v != b.versioning),
        public_access: req.public_access.filter(|v| *v != b.public_access),
        encryption: req.encryption.filter(|v| *v != b.encryption),
    };
    let any_change = changed.versioning.is_some()
        || changed.public_access.is_some()
        || changed.encryption.is_some();
    if b.status == BucketStatus::Running && any_change {
        let client = crate::clients::s3(state, &b)?;
        super::apply_settings(&client, changed).await?;
    }
    if let Some(d) = req.description {
        b.description = Some(d);
    }
    if let Some(q) = req.max_size_gb {
        b.max_size_gb = Some(q);
    }
    if let Some(policy) = req.snapshot_policy {
        b.snapshot_policy = policy;
    }
    if let Some(ws) = req.workspace_id {
        b.workspace_id = ws;
    }
    if let Some(secs) = req.sleep_after_secs {
        crate::kinds::require_managed(&b, "sleeping")?;
        b.sleep_after_secs = Some(validate::sleep_after(secs)?);
    }
    b.versioning = req.versioning.unwrap_or(b.versioning);
    b.public_access = req.public_access.unwrap_or(b.public_access);
    b.encryption = req.encryption.unwrap_or(b.encryption);
    // Counted in the record now: a bucket given a quota is counted exactly from here on.
    let (objects, bytes) = state.pending_usage.take(&b.id);
    crate::pending_usage::apply(&mut b, objects, bytes);
    // A changed quota may put the bucket over it, or back under it.
    let over_changed = crate::usage::mark_over_quota(&mut b);
    if let Err(e) = b.save().await {
        state.pending_usage.add(&b.id, objects, bytes);
        return Err(e);
    }
    if b.kind() == crate::model::BucketKind::Managed {
        state.sleep.of(&b);
    }
    if over_changed {
        crate::usage::announce_quota(state, &b);
    }
    tracing::info!(bucket = %b.id, versioning = b.versioning, public_access = b.public_access,
        encryption = b.encryption, max_size_gb = ?b.max_size_gb, "bucket settings updated");
    Ok(b.record)
}
