//! Snapshots of a managed bucket's data: the volume read while the engine is paused (so nothing
//! writes while the archive is read), as a zstd-compressed tar streamed in constant memory from
//! Docker through the daemon into a target bucket (multipart for large volumes), with its size
//! and SHA-256 recorded (`take`); restores and new buckets from them (`restore`); snapshots on
//! a schedule, pruned to a count (`schedule`). A daemon that dies in the middle of any of them
//! sets things right at its next start (`recover`).

use crate::access::{Access, Caller};
use crate::context::Core;
use crate::error::{Error, Result};
use crate::events::{BucketEvent, EventKind};
use crate::lifecycle;
use crate::model::{new_id, now, BucketRecord, BucketStatus};

mod archive;
pub mod evacuate;
pub mod from_snapshot;
pub mod model;
mod progress;
pub mod restore;
pub mod schedule;
pub mod sealed;
mod take;

use model::{RestoreStatus, Snapshot, SnapshotStatus, SnapshotTarget};

/// Most snapshots kept per bucket.
pub const MAX_PER_BUCKET: usize = 100;

/// The object key of a snapshot's archive: a zstd-compressed tar, sealed (see `sealed`).
/// Archives of format 1 were stored plain as `<snapshotId>.tar.zst`.
pub fn archive_key(bucket_id: &str, snapshot_id: &str) -> String {
    format!("snapshots/{bucket_id}/{snapshot_id}.tar.zst.sealed")
}

pub(super) fn event(state: &Core, b: &BucketRecord, s: &Snapshot, message: String) {
    state
        .events
        .publish(BucketEvent::of(EventKind::Snapshot, b, Some(message)));
    tracing::info!(bucket = %b.id, snapshot = %s.id, status = ?s.status, bytes = s.bytes_done, "snapshot");
}

/// The bucket a snapshot goes to: the one asked for (the caller must be able to write to it) or
/// `KALPANA_SNAPSHOT_BUCKET`; never the bucket itself.
async fn target(
    state: &Core,
    caller: &Caller,
    of: &BucketRecord,
    asked: Option<&str>,
) -> Result<BucketRecord> {
    let t = match (asked, state.config.snapshot_bucket.as_deref()) {
        (Some(id), _) => lifecycle::running(state, caller, id, Access::Write).await?,
        (None, Some(id)) => match state.store.get_bucket(id).await? {
            Some(b) if b.status == BucketStatus::Running => b,
            Some(b) => {
                return Err(Error::Conflict(format!(
                    "the snapshot bucket {} is not running",
                    b.name
                )))
            }
            None => {
                return Err(Error::Unprocessable(
                    "KALPANA_SNAPSHOT_BUCKET names no bucket".into(),
                ))
            }
        },
        (None, None) => {
            return Err(Error::Invalid(
                "targetBucketId is required (no KALPANA_SNAPSHOT_BUCKET is configured)".into(),
            ))
        }
    };
    if t.id == of.id {
        return Err(Error::Invalid(
            "a bucket cannot hold its own snapshots: give another targetBucketId".into(),
        ));
    }
    same_node(state, of, &t, asked.is_some()).await?;
    // The archive's size is known only once written: a target already over its quota is
    // refused, and the archive is counted in its usage when it lands.
    if t.over_quota {
        return Err(crate::usage::over_quota(&t));
    }
    Ok(t)
}

/// Refuses a target on the same cluster node as the bucket (`asked`: the caller named the
/// target): losing that node would lose both, so such a snapshot could not bring the bucket
/// back (evacuation passes it over).
async fn same_node(state: &Core, of: &BucketRecord, t: &BucketRecord, asked: bool) -> Result<()> {
    if t.kind() != crate::model::BucketKind::Managed {
        return Ok(());
    }
    // Compared by node id (host names need not be unique), named by host name.
    let node_of = |id: String| async move {
        Ok::<_, Error>(
            state
                .runtime
                .inspect_server(&id)
                .await?
                .and_then(|c| Some((c.node_id?, c.node.unwrap_or_default()))),
        )
    };
    let (ours, theirs) = (node_of(of.id.clone()).await?, node_of(t.id.clone()).await?);
    match (ours, theirs) {
        (Some((a, name)), Some((b, _))) if a == b => {
            // The daemon's own snapshot bucket is not the tenant's to know by name.
            let target = if asked {
                format!("the target bucket {}", t.name)
            } else {
                "the daemon's snapshot bucket".to_string()
            };
            Err(Error::Unprocessable(format!(
                "bucket {} is on node {name} like {target}: a snapshot there gives no protection against losing that node; give a targetBucketId on another node",
                of.name
            )))
        }
        _ => Ok(()),
    }
}

/// Accepts a snapshot of a running managed bucket and starts it in the background.
pub async fn create(
    state: &Core,
    caller: &Caller,
    bucket_id: &str,
    target_bucket_id: Option<&str>,
    note: Option<String>,
) -> Result<Snapshot> {
    if note
        .as_ref()
        .is_some_and(|n| n.len() > 256 || n.chars().any(char::is_control))
    {
        return Err(Error::Invalid(
            "note must be at most 256 characters without control characters".into(),
        ));
    }
    let b = lifecycle::running(state, caller, bucket_id, Access::Manage).await?;
    crate::kinds::require_managed(&b, "snapshots")?;
    let t = target(state, caller, &b, target_bucket_id).await?;
    accept(state, &b, &t, &caller.user.id, note, false).await
}

/// Whether a snapshot of the bucket or a restore of it is under way among `existing`.
fn busy(existing: &[Snapshot]) -> bool {
    existing.iter().any(|s| {
        matches!(s.status, SnapshotStatus::Pending | SnapshotStatus::Running)
            || s.restore.as_ref().is_some_and(|r| {
                matches!(r.status, RestoreStatus::Staging | RestoreStatus::Replacing)
            })
    })
}

/// Records a PENDING snapshot of `b` into `t` and starts it in the background.
async fn accept(
    state: &Core,
    b: &BucketRecord,
    t: &BucketRecord,
    user_id: &str,
    note: Option<String>,
    scheduled: bool,
) -> Result<Snapshot> {
    let existing = state.store.list_snapshots(Some(&b.id)).await?;
    if existing.len() >= MAX_PER_BUCKET {
        return Err(Error::LimitReached(format!(
            "bucket {} already has {MAX_PER_BUCKET} snapshots: delete one first",
            b.name
        )));
    }
    if busy(&existing) {
        return Err(Error::Conflict(format!(
            "a snapshot or a restore of bucket {} is already running",
            b.name
        )));
    }
    let id = new_id();
    let s = Snapshot {
        target: SnapshotTarget {
            bucket_id: t.id.clone(),
            key: archive_key(&b.id, &id),
        },
        id,
        bucket_id: b.id.clone(),
        user_id: user_id.to_string(),
        status: SnapshotStatus::Pending,
        bytes_done: 0,
        size_bytes: None,
        sha256: None,
        note,
        created_at: now(),
        finished_at: None,
        message: None,
        paused_millis: None,
        keys: Vec::new(),
        scheduled,
        restore: None,
        format: sealed::FORMAT,
    };
    state.store.put_snapshot(&s).await?;
    event(state, b, &s, format!("snapshot {} accepted", s.id));
    let (state2, s2) = (state.clone(), s.clone());
    state.tasks.spawn_task("snapshot", async move {
        let id = s2.id.clone();
        if let Err(e) = take::run(&state2, s2).await {
            tracing::error!(snapshot = %id, error = %e, "snapshot could not be recorded");
        }
    });
    Ok(s)
}

/// Marks `s` FAILED with `message`.
pub(super) async fn fail(
    state: &Core,
    b: Option<&BucketRecord>,
    mut s: Snapshot,
    message: String,
) -> Result<()> {
    s.status = SnapshotStatus::Failed;
    s.finished_at = Some(now());
    s.message = Some(message.clone());
    state.store.put_snapshot(&s).await?;
    if let Some(b) = b {
        event(state, b, &s, message);
    }
    Ok(())
}

/// A bucket's snapshots the caller may see (anyone who sees the bucket), newest last.
pub async fn list(state: &Core, caller: &Caller, bucket_id: &str) -> Result<Vec<Snapshot>> {
    lifecycle::visible(state, caller, bucket_id).await?;
    state.store.list_snapshots(Some(bucket_id)).await
}

/// One snapshot of a bucket the caller sees; 404 otherwise.
pub async fn get(state: &Core, caller: &Caller, bucket_id: &str, id: &str) -> Result<Snapshot> {
    lifecycle::visible(state, caller, bucket_id).await?;
    match state.store.get_snapshot(id).await? {
        Some(s) if s.bucket_id == bucket_id => Ok(s),
        _ => Err(Error::NotFound("snapshot")),
    }
}

/// Deletes a finished snapshot and its archive (an archive already gone is fine).
pub async fn delete(state: &Core, caller: &Caller, bucket_id: &str, id: &str) -> Result<()> {
    let b = lifecycle::visible(state, caller, bucket_id).await?;
    caller.require(&b, Access::Manage)?;
    let s = get(state, caller, bucket_id, id).await?;
    if busy(std::slice::from_ref(&s)) {
        return Err(Error::Conflict(
            "the snapshot is still being taken or restored".into(),
        ));
    }
    remove(state, &s).await?;
    tracing::info!(bucket = %b.id, snapshot = %id, "snapshot deleted with its archive");
    Ok(())
}

/// Deletes snapshot `s`'s archive (counted out of its bucket's usage; one already gone is fine),
/// then its record.
async fn remove(state: &Core, s: &Snapshot) -> Result<()> {
    if let Some(t) = state.store.get_bucket(&s.target.bucket_id).await? {
        if t.status == BucketStatus::Running {
            let _awake = crate::sleep::awake_for_operation(state, &t).await?;
            let client = crate::clients::s3(state, &t)?;
            if let Some(o) = client.head_object(&s.target.key).await? {
                client.delete_object(&s.target.key).await?;
                crate::usage::adjust(state, &t, -1, -(o.size as i64)).await?;
            }
        } else {
            return Err(Error::Conflict(format!(
                "the bucket holding the archive ({}) is not running: start it to delete the snapshot",
                t.name
            )));
        }
    }
    state.store.delete_snapshot(&s.id).await?;
    // In the background: the bucket's lock may be held by a snapshot being taken for minutes,
    // and the deletion is done.
    let (core, id) = (state.clone(), s.bucket_id.clone());
    state.tasks.spawn_task("latest snapshot", async move {
        if let Err(e) = refresh_latest(&core, &id).await {
            tracing::warn!(bucket = %id, error = %e, "recording the latest snapshot failed; the next start does it");
        }
    });
    Ok(())
}

/// Records on bucket `id` when its latest successful snapshot that still exists finished
/// (after one is deleted or pruned, and at start). Read under the bucket's lock, so a snapshot
/// finishing meanwhile is seen.
pub(crate) async fn refresh_latest(state: &Core, id: &str) -> Result<()> {
    let Some(mut b) = state.lock_bucket_if(id).await? else {
        return Ok(());
    };
    let latest = state
        .store
        .list_snapshots(Some(id))
        .await?
        .into_iter()
        .filter(|s| s.status == SnapshotStatus::Done)
        .filter_map(|s| s.finished_at)
        .max();
    if b.latest_snapshot_at != latest {
        b.latest_snapshot_at = latest;
        b.write().await?;
    }
    Ok(())
}

/// At start: snapshots a dead daemon left PENDING or RUNNING are FAILED, and the containers it
/// left paused run again; restores it left are finished or called off (see `restore`).
pub async fn recover(state: &Core) -> Result<()> {
    let all = state.store.list_snapshots(None).await?;
    restore::recover(state, &all).await?;
    // What each bucket's latest snapshot is, for records written before it was kept (or by a
    // daemon that died between a snapshot's end and its bucket's record).
    let mut latest: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for s in all.iter().filter(|s| s.status == SnapshotStatus::Done) {
        if let Some(t) = s.finished_at.as_deref() {
            let e = latest.entry(s.bucket_id.as_str()).or_insert(t);
            if t > *e {
                *e = t;
            }
        }
    }
    for b in crate::store::all_buckets(state.store.as_ref()).await? {
        if b.latest_snapshot_at.as_deref() != latest.get(b.id.as_str()).copied() {
            refresh_latest(state, &b.id).await?;
        }
    }
    for mut s in all {
        if matches!(s.status, SnapshotStatus::Pending | SnapshotStatus::Running) {
            if let Some(b) = state.store.get_bucket(&s.bucket_id).await? {
                let thawed = if state.runtime.capabilities().freeze {
                    state.runtime.thaw(&b.id).await
                } else {
                    Ok(())
                };
                if let Err(e) = thawed {
                    tracing::warn!(bucket = %b.id, error = %e, "unpausing after an interrupted snapshot failed");
                }
            }
            s.status = SnapshotStatus::Failed;
            s.finished_at = Some(now());
            s.message = Some("the daemon stopped during the snapshot".into());
            state.store.put_snapshot(&s).await?;
            tracing::warn!(snapshot = %s.id, bucket = %s.bucket_id, "interrupted snapshot marked FAILED; its container runs again");
        }
    }
    Ok(())
}

/// At start: every bucket with an archive of format 1 (plain: the engine's secrets in clear)
/// taken since its secrets were last replaced is marked for replacement, which the key refresh
/// does as soon as the bucket runs (`keys::rotate_leaked`). Idempotent: a bucket is marked
/// again only for an archive newer than its last replacement.
pub async fn mark_leaked(state: &Core) -> Result<()> {
    let mut marked = std::collections::BTreeSet::new();
    for s in state.store.list_snapshots(None).await? {
        if s.format != 1 || marked.contains(&s.bucket_id) {
            continue;
        }
        let Some(mut b) = state.lock_bucket_if(&s.bucket_id).await? else {
            continue;
        };
        let done_after = b
            .leaked_rotated_at
            .as_deref()
            .is_some_and(|at| at >= s.created_at.as_str());
        if b.deleting
            || b.rotate_leaked
            || done_after
            || b.kind() != crate::model::BucketKind::Managed
        {
            continue;
        }
        b.rotate_leaked = true;
        b.save().await?;
        tracing::warn!(bucket = %b.id, snapshot = %s.id, "a plain (format 1) snapshot archive holds this bucket's engine secrets; they are replaced as soon as it runs");
        marked.insert(s.bucket_id.clone());
    }
    Ok(())
}
