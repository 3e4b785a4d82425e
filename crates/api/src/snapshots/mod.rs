//! Snapshots of a managed bucket's data: the volume read while the engine is paused (so nothing
//! writes while the archive is read), as a zstd-compressed tar streamed in constant memory from
//! Docker through the daemon into a target bucket (multipart for large volumes), with its size
//! and SHA-256 recorded. The container is unpaused whatever happens; a daemon that dies with a
//! container paused unpauses it at its next start and marks the snapshot FAILED.
//!
//! Restore, `fromSnapshot` and scheduled snapshots are not built yet (issue 20 is open).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::auth::{Access, Caller};
use crate::error::{Error, Result};
use crate::events::BucketEvent;
use crate::lifecycle;
use crate::model::{new_id, now, BucketKind, BucketRecord, BucketStatus};

pub mod model;

use model::{Snapshot, SnapshotStatus, SnapshotTarget};

/// Most snapshots kept per bucket.
pub const MAX_PER_BUCKET: usize = 100;
/// A progress event every this many compressed bytes.
const PROGRESS_EVERY: u64 = 64 * 1024 * 1024;

/// The object key of a snapshot's archive.
pub fn archive_key(bucket_id: &str, snapshot_id: &str) -> String {
    format!("snapshots/{bucket_id}/{snapshot_id}.tar.zst")
}

fn event(state: &AppState, b: &BucketRecord, s: &Snapshot, message: String) {
    state
        .events
        .publish(BucketEvent::of("bucket.snapshot", b, Some(message)));
    tracing::info!(bucket = %b.id, snapshot = %s.id, status = ?s.status, bytes = s.bytes_done, "snapshot");
}

/// The bucket a snapshot goes to: the one asked for (the caller must be able to write to it) or
/// `KALPANA_SNAPSHOT_BUCKET`; never the bucket itself.
async fn target(
    state: &AppState,
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
            return Err(Error::BadRequest(
                "targetBucketId is required (no KALPANA_SNAPSHOT_BUCKET is configured)".into(),
            ))
        }
    };
    if t.id == of.id {
        return Err(Error::BadRequest(
            "a bucket cannot hold its own snapshots: give another targetBucketId".into(),
        ));
    }
    // The archive's size is known only once written: a target already over its quota is
    // refused, and the archive is counted in its usage when it lands.
    if t.over_quota {
        return Err(crate::usage::over_quota(&t));
    }
    Ok(t)
}

/// Accepts a snapshot of a running managed bucket and starts it in the background.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    bucket_id: &str,
    target_bucket_id: Option<&str>,
    note: Option<String>,
) -> Result<Snapshot> {
    if note
        .as_ref()
        .is_some_and(|n| n.len() > 256 || n.chars().any(char::is_control))
    {
        return Err(Error::BadRequest(
            "note must be at most 256 characters without control characters".into(),
        ));
    }
    let b = lifecycle::running(state, caller, bucket_id, Access::Manage).await?;
    crate::backend::require_managed(&b, "snapshots")?;
    let t = target(state, caller, &b, target_bucket_id).await?;
    let existing = state.store.list_snapshots(Some(&b.id)).await?;
    if existing.len() >= MAX_PER_BUCKET {
        return Err(Error::OwnerLimit(format!(
            "bucket {} already has {MAX_PER_BUCKET} snapshots: delete one first",
            b.name
        )));
    }
    if existing
        .iter()
        .any(|s| matches!(s.status, SnapshotStatus::Pending | SnapshotStatus::Running))
    {
        return Err(Error::Conflict(format!(
            "a snapshot of bucket {} is already running",
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
        user_id: caller.user.id.clone(),
        status: SnapshotStatus::Pending,
        bytes_done: 0,
        size_bytes: None,
        sha256: None,
        note,
        created_at: now(),
        finished_at: None,
        message: None,
        paused_millis: None,
    };
    state.store.put_snapshot(&s).await?;
    event(state, &b, &s, format!("snapshot {} accepted", s.id));
    let (state2, s2) = (state.clone(), s.clone());
    tokio::spawn(async move {
        let id = s2.id.clone();
        if let Err(e) = run(&state2, s2).await {
            tracing::error!(snapshot = %id, error = %e, "snapshot could not be recorded");
        }
    });
    Ok(s)
}

/// Takes the snapshot: holds the bucket's lock (no stop, start or replacement meanwhile),
/// pauses its container, streams the archive to the target, unpauses, records the outcome.
async fn run(state: &AppState, mut s: Snapshot) -> Result<()> {
    let _guard = state.locks.lock(&s.bucket_id).await;
    let b = match state.store.get_bucket(&s.bucket_id).await? {
        Some(b) if b.status == BucketStatus::Running && b.kind == BucketKind::Managed => b,
        _ => return fail(state, None, s, "the bucket is no longer running".into()).await,
    };
    let Some(t) = state.store.get_bucket(&s.target.bucket_id).await? else {
        return fail(state, Some(&b), s, "the target bucket is gone".into()).await;
    };
    s.status = SnapshotStatus::Running;
    state.store.put_snapshot(&s).await?;
    event(state, &b, &s, format!("snapshot {} running", s.id));
    let started = Instant::now();
    let outcome = archive(state, &b, &t, &s).await;
    s.paused_millis = Some(started.elapsed().as_millis() as u64);
    match outcome {
        Ok((size, sha)) => {
            crate::usage::adjust(state, &t, 1, size as i64).await?;
            s.status = SnapshotStatus::Done;
            s.bytes_done = size;
            s.size_bytes = Some(size);
            s.sha256 = Some(sha);
            s.finished_at = Some(now());
            state.store.put_snapshot(&s).await?;
            event(
                state,
                &b,
                &s,
                format!(
                    "snapshot {} done: {size} bytes in {} ms",
                    s.id,
                    s.paused_millis.unwrap_or(0)
                ),
            );
            Ok(())
        }
        Err(e) => {
            tracing::warn!(bucket = %b.id, snapshot = %s.id, error = %e, "snapshot failed");
            fail(state, Some(&b), s, format!("the snapshot failed: {e}")).await
        }
    }
}

async fn fail(
    state: &AppState,
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

/// Pauses, streams, unpauses (always). Returns the archive's size and SHA-256.
async fn archive(
    state: &AppState,
    b: &BucketRecord,
    t: &BucketRecord,
    s: &Snapshot,
) -> Result<(u64, String)> {
    let target = crate::backend::s3(state, t)?;
    lifecycle::pause(state, b).await?;
    let result = async {
        let tar = lifecycle::volume_archive(state, b).map_err(std::io::Error::other);
        let reader = tokio_util::io::StreamReader::new(tar);
        let zstd = async_compression::tokio::bufread::ZstdEncoder::new(reader);
        let hasher = Arc::new(std::sync::Mutex::new(Sha256::new()));
        let written = Arc::new(AtomicU64::new(0));
        let (h, w) = (hasher.clone(), written.clone());
        let (progress_state, progress_bucket, snapshot_id) =
            (state.clone(), b.clone(), s.id.clone());
        let body = tokio_util::io::ReaderStream::new(zstd).map(move |chunk| {
            let chunk = chunk?;
            h.lock().unwrap_or_else(|p| p.into_inner()).update(&chunk);
            let before = w.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            let after = before + chunk.len() as u64;
            if before / PROGRESS_EVERY != after / PROGRESS_EVERY {
                progress_state.events.publish(BucketEvent::of(
                    "bucket.snapshot",
                    &progress_bucket,
                    Some(format!("snapshot {snapshot_id}: {after} bytes written")),
                ));
            }
            Ok::<_, std::io::Error>(chunk)
        });
        let body: kalpana_s3_ops::BodyStream =
            Box::pin(body.map_err(|e| Box::new(e) as kalpana_s3_ops::BoxError));
        target
            .put_object(&s.target.key, Some("application/zstd"), None, body)
            .await?;
        let sha = hex::encode(
            std::mem::take(&mut *hasher.lock().unwrap_or_else(|p| p.into_inner())).finalize(),
        );
        Ok::<_, Error>((written.load(Ordering::SeqCst), sha))
    }
    .await;
    let unpaused = lifecycle::unpause(state, b).await;
    let done = result?;
    unpaused?;
    Ok(done)
}

/// A bucket's snapshots the caller may see (anyone who sees the bucket), newest last.
pub async fn list(state: &AppState, caller: &Caller, bucket_id: &str) -> Result<Vec<Snapshot>> {
    lifecycle::visible(state, caller, bucket_id).await?;
    state.store.list_snapshots(Some(bucket_id)).await
}

/// One snapshot of a bucket the caller sees; 404 otherwise.
pub async fn get(state: &AppState, caller: &Caller, bucket_id: &str, id: &str) -> Result<Snapshot> {
    lifecycle::visible(state, caller, bucket_id).await?;
    match state.store.get_snapshot(id).await? {
        Some(s) if s.bucket_id == bucket_id => Ok(s),
        _ => Err(Error::NotFound("snapshot")),
    }
}

/// Deletes a finished snapshot and its archive (an archive already gone is fine).
pub async fn delete(state: &AppState, caller: &Caller, bucket_id: &str, id: &str) -> Result<()> {
    let b = lifecycle::visible(state, caller, bucket_id).await?;
    caller.require(&b, Access::Manage)?;
    let s = get(state, caller, bucket_id, id).await?;
    if matches!(s.status, SnapshotStatus::Pending | SnapshotStatus::Running) {
        return Err(Error::Conflict("the snapshot is still running".into()));
    }
    if let Some(t) = state.store.get_bucket(&s.target.bucket_id).await? {
        if t.status == BucketStatus::Running {
            let client = crate::backend::s3(state, &t)?;
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
    state.store.delete_snapshot(id).await?;
    tracing::info!(bucket = %b.id, snapshot = %id, "snapshot deleted with its archive");
    Ok(())
}

/// At start: snapshots a dead daemon left PENDING or RUNNING are FAILED, and the containers it
/// left paused run again.
pub async fn recover(state: &AppState) -> Result<()> {
    for mut s in state.store.list_snapshots(None).await? {
        if matches!(s.status, SnapshotStatus::Pending | SnapshotStatus::Running) {
            if let Some(b) = state.store.get_bucket(&s.bucket_id).await? {
                if let Err(e) = lifecycle::unpause(state, &b).await {
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
