//! Restores: a bucket's data made exactly a snapshot's, and new buckets made from one.
//!
//! A restore reads the archive from its bucket, hashes it as it goes and extracts it into a
//! staging volume, so the bucket keeps serving its current data meanwhile. Only an archive
//! whose size and SHA-256 match the record goes further: the swap is recorded (REPLACING), then
//! the bucket's volume is made anew from the staging volume and its container brought back as it
//! was. A daemon that dies while staging calls the restore off (the bucket was not touched); one
//! that dies while replacing finishes it at its next start.
//!
//! Keys: the engine keeps its users in its data, so a restored engine knows the keys it knew at
//! the snapshot. Keys revoked since are removed again; a restore is refused while the bucket has
//! keys made after the snapshot, which the engine would forget (SeaweedFS makes its own key
//! secrets, so they cannot be made again as they were).

use std::time::Instant;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::{Access, Caller};
use crate::error::{Error, Result};
use crate::events::BucketEvent;
use crate::lifecycle::{self, volume_data};
use crate::model::{now, BucketRecord, BucketStatus, PendingRevoke};

use super::model::{Restore, RestoreStatus, Snapshot, SnapshotKey, SnapshotStatus};
use super::progress::Meter;

/// How many times the replacement is tried before the bucket goes to ERROR.
const REPLACE_ATTEMPTS: u32 = 3;

/// What the bucket was made from, on a bucket created with `fromSnapshot`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FromSnapshot {
    /// The bucket the snapshot is of.
    pub bucket_id: String,
    /// The snapshot.
    pub snapshot_id: String,
    /// The S3 bucket name inside the archive (the source bucket's name).
    pub source_name: String,
    /// The archive is in the new bucket's volume.
    pub imported: bool,
    /// The data moved to the new bucket's name and the source's keys removed.
    pub settled: bool,
}

/// `fromSnapshot` of a create request.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FromSnapshotRequest {
    /// The bucket the snapshot is of (the caller must see it).
    pub bucket_id: String,
    /// The snapshot (DONE).
    pub snapshot_id: String,
}

fn event(state: &AppState, b: &BucketRecord, message: String) {
    tracing::info!(bucket = %b.id, "{message}");
    state
        .events
        .publish(BucketEvent::of("bucket.restore", b, Some(message)));
}

/// The archive of a DONE snapshot, checked to be where it was put with the size recorded (a
/// cheap HEAD; the SHA-256 is checked as it is read).
async fn archive_present(state: &AppState, s: &Snapshot) -> Result<()> {
    if s.status != SnapshotStatus::Done {
        return Err(Error::Conflict(format!(
            "snapshot {} is {:?}, not DONE",
            s.id, s.status
        )));
    }
    let gone = || {
        Error::Unprocessable(format!(
            "the archive of snapshot {} ({}) is gone from its bucket",
            s.id, s.target.key
        ))
    };
    let t = match state.store.get_bucket(&s.target.bucket_id).await? {
        None => return Err(gone()),
        Some(t) if t.status != BucketStatus::Running => {
            return Err(Error::Conflict(format!(
                "the bucket holding the archive ({}) is not running: start it first",
                t.name
            )))
        }
        Some(t) => t,
    };
    match crate::backend::s3(state, &t)?
        .head_object(&s.target.key)
        .await?
    {
        None => Err(gone()),
        Some(o) if Some(o.size) != s.size_bytes => Err(Error::Unprocessable(format!(
            "the archive of snapshot {} is {} bytes, not the {} recorded: it was changed",
            s.id,
            o.size,
            s.size_bytes.unwrap_or(0)
        ))),
        Some(_) => Ok(()),
    }
}

/// The archive as a tar stream: read from its bucket, counted and hashed by `meter` as it
/// arrives, decompressed. Nothing is buffered beyond the codec's window.
async fn open_archive(
    state: &AppState,
    s: &Snapshot,
    meter: &Meter,
) -> Result<volume_data::TarStream> {
    let t = state
        .store
        .get_bucket(&s.target.bucket_id)
        .await?
        .ok_or_else(|| Error::Unprocessable("the bucket holding the archive is gone".into()))?;
    let download = crate::backend::s3(state, &t)?
        .get_object(&s.target.key, None)
        .await?;
    let m = meter.clone();
    let compressed = download.body.map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        m.observe(&chunk);
        Ok::<_, std::io::Error>(chunk)
    });
    let reader = tokio_util::io::StreamReader::new(compressed);
    let tar = async_compression::tokio::bufread::ZstdDecoder::new(reader);
    Ok(Box::pin(tokio_util::io::ReaderStream::new(tar)))
}

/// Whether what `meter` saw is the archive the snapshot recorded.
fn matches_record(s: &Snapshot, meter: &Meter) -> bool {
    Some(meter.bytes()) == s.size_bytes && s.sha256.as_deref() == Some(meter.sha256().as_str())
}

/// The message for an archive that is not the one recorded (changed, cut or damaged).
fn tampered(s: &Snapshot) -> String {
    format!(
        "the archive of snapshot {} does not match the size and SHA-256 recorded when it was taken: it was changed or damaged",
        s.id
    )
}

/// Accepts a restore of bucket `bucket_id` from its snapshot `id` and starts it in the
/// background.
pub async fn restore(
    state: &AppState,
    caller: &Caller,
    bucket_id: &str,
    id: &str,
) -> Result<Snapshot> {
    let b = lifecycle::authorized(state, caller, bucket_id, Access::Manage).await?;
    crate::backend::require_managed(&b, "restores")?;
    lifecycle::require_docker(state).await?;
    let mut s = super::get(state, caller, bucket_id, id).await?;
    if !b.provisioned || !matches!(b.status, BucketStatus::Running | BucketStatus::Stopped) {
        return Err(Error::Conflict(format!(
            "bucket {} is {}: only a running or stopped bucket can be restored",
            b.name,
            b.status.as_str()
        )));
    }
    if super::busy(&state.store.list_snapshots(Some(&b.id)).await?) {
        return Err(Error::Conflict(format!(
            "a snapshot or a restore of bucket {} is already running",
            b.name
        )));
    }
    refuse_newer_keys(&b, &s)?;
    archive_present(state, &s).await?;
    s.restore = Some(Restore {
        status: RestoreStatus::Staging,
        bytes_done: 0,
        user_id: caller.user.id.clone(),
        started_at: now(),
        finished_at: None,
        message: None,
        downtime_millis: None,
    });
    state.store.put_snapshot(&s).await?;
    event(
        state,
        &b,
        format!("restore from snapshot {} accepted", s.id),
    );
    let (state2, id2) = (state.clone(), s.id.clone());
    tokio::spawn(async move {
        if let Err(e) = run(&state2, &id2).await {
            tracing::error!(snapshot = %id2, error = %e, "restore could not be recorded");
        }
    });
    Ok(s)
}

/// Refuses a restore that would make the engine forget keys made after the snapshot.
fn refuse_newer_keys(b: &BucketRecord, s: &Snapshot) -> Result<()> {
    let newer: Vec<&str> = b
        .keys
        .iter()
        .filter(|k| !s.keys.iter().any(|o| o.access_key == k.access_key))
        .map(|k| k.name.as_str())
        .collect();
    if newer.is_empty() {
        return Ok(());
    }
    Err(Error::Conflict(format!(
        "keys made after the snapshot would stop working ({}): revoke them first, and make them again after the restore",
        newer.join(", ")
    )))
}

/// Sets the restore's outcome on the snapshot's record.
async fn record(
    state: &AppState,
    id: &str,
    status: RestoreStatus,
    message: Option<String>,
    downtime_millis: Option<u64>,
) -> Result<()> {
    record_bytes(state, id, status, message, downtime_millis, None).await
}

/// [`record`], with the archive bytes read when they are known.
async fn record_bytes(
    state: &AppState,
    id: &str,
    status: RestoreStatus,
    message: Option<String>,
    downtime_millis: Option<u64>,
    bytes_done: Option<u64>,
) -> Result<()> {
    let Some(mut s) = state.store.get_snapshot(id).await? else {
        return Ok(());
    };
    if let Some(r) = s.restore.as_mut() {
        r.status = status;
        if let Some(b) = bytes_done {
            r.bytes_done = b;
        }
        r.message = message;
        if downtime_millis.is_some() {
            r.downtime_millis = downtime_millis;
        }
        if matches!(status, RestoreStatus::Done | RestoreStatus::Failed) {
            r.finished_at = Some(now());
        }
    }
    state.store.put_snapshot(&s).await
}

/// The restore itself, under the bucket's lock: stage and check, then replace.
async fn run(state: &AppState, id: &str) -> Result<()> {
    let Some(s) = state.store.get_snapshot(id).await? else {
        return Ok(());
    };
    let _guard = state.locks.lock(&s.bucket_id).await;
    let Some(mut b) = state.store.get_bucket(&s.bucket_id).await? else {
        return record(
            state,
            id,
            RestoreStatus::Failed,
            Some("the bucket is gone".into()),
            None,
        )
        .await;
    };
    let bytes = match stage(state, &b, &s).await {
        Ok(bytes) => bytes,
        Err(why) => {
            if let Err(e) = volume_data::drop_staging(state, &b.id).await {
                tracing::warn!(bucket = %b.id, error = %e, "removing the staging volume failed");
            }
            let message = format!("{why}; the bucket's data was not touched");
            event(
                state,
                &b,
                format!("restore from snapshot {id} failed: {message}"),
            );
            return record(state, id, RestoreStatus::Failed, Some(message), None).await;
        }
    };
    record_bytes(state, id, RestoreStatus::Replacing, None, None, Some(bytes)).await?;
    event(
        state,
        &b,
        format!("restore from snapshot {id}: archive checked, replacing the data"),
    );
    crate::fault::point("restore.staged");
    replace(state, &mut b, &s).await
}

/// Reads the archive into the staging volume and checks it: its size, or the reason it is
/// refused.
async fn stage(
    state: &AppState,
    b: &BucketRecord,
    s: &Snapshot,
) -> std::result::Result<u64, String> {
    let meter = Meter::new(state, b, format!("restore from snapshot {}", s.id));
    let recorder = meter.record_while_running(&s.id, true);
    let outcome = async {
        let tar = open_archive(state, s, &meter)
            .await
            .map_err(|e| format!("reading the archive failed: {e}"))?;
        let staged = volume_data::stage(state, b, tar).await;
        if !matches_record(s, &meter) {
            // A cut or altered archive usually fails to decompress or extract, too: either way
            // it is the archive's fault, and the engine's words about it are of no use.
            if let Err(e) = &staged {
                tracing::warn!(bucket = %b.id, snapshot = %s.id, error = %e, "staging a bad archive failed");
            }
            return Err(tampered(s));
        }
        staged.map_err(|e| format!("staging the archive failed: {e}"))?;
        Ok(meter.bytes())
    }
    .await;
    recorder.stop().await;
    outcome
}

/// Replaces the bucket's data from its staging volume and brings the bucket back as its record
/// says, trying [`REPLACE_ATTEMPTS`] times; then removes keys the snapshot's engine knows but
/// the bucket no longer has, records the outcome and drops the staging volume. Caller holds
/// the lock.
async fn replace(state: &AppState, b: &mut BucketRecord, s: &Snapshot) -> Result<()> {
    let started = Instant::now();
    let mut attempt = 0;
    let outcome = loop {
        attempt += 1;
        let result = async {
            volume_data::replace_from_staging(state, b).await?;
            if b.status == BucketStatus::Running {
                lifecycle::ensure_running(state, b).await?;
            }
            Ok::<_, Error>(())
        }
        .await;
        match result {
            Err(e) if attempt < REPLACE_ATTEMPTS => {
                tracing::warn!(bucket = %b.id, attempt, error = %e, "replacing the data failed; trying again");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            other => break other,
        }
    };
    let downtime = started.elapsed().as_millis() as u64;
    if let Err(e) = outcome {
        let message = format!(
            "restoring snapshot {} failed while replacing the data: {e}",
            s.id
        );
        let from = b.status;
        lifecycle::set_status(
            state,
            b,
            BucketStatus::Error,
            Some(message.clone()),
            Some(from),
        )
        .await?;
        return record(
            state,
            &s.id,
            RestoreStatus::Failed,
            Some(message),
            Some(downtime),
        )
        .await;
    }
    let forgotten: Vec<SnapshotKey> = s
        .keys
        .iter()
        .filter(|o| !b.keys.iter().any(|k| k.access_key == o.access_key))
        .cloned()
        .collect();
    revoke_engine_users(state, b, forgotten).await?;
    record(state, &s.id, RestoreStatus::Done, None, Some(downtime)).await?;
    if let Err(e) = volume_data::drop_staging(state, &b.id).await {
        tracing::warn!(bucket = %b.id, error = %e, "removing the staging volume failed");
    }
    event(
        state,
        b,
        format!(
            "restored from snapshot {}: the bucket was out of service {downtime} ms",
            s.id
        ),
    );
    recount_later(state, &b.id);
    Ok(())
}

/// Removes engine users the bucket does not have (they came back with a snapshot's data): at
/// once when the bucket runs, otherwise when it runs again. Caller holds the lock.
async fn revoke_engine_users(
    state: &AppState,
    b: &mut BucketRecord,
    users: Vec<SnapshotKey>,
) -> Result<()> {
    if users.is_empty() {
        return Ok(());
    }
    b.revoke_pending
        .extend(users.into_iter().map(|k| PendingRevoke {
            user: k.user,
            access_key: k.access_key,
        }));
    b.updated_at = now();
    state.store.update_bucket(b, None).await?;
    if b.status == BucketStatus::Running {
        crate::keys::remove_pending(state, b).await?;
    }
    Ok(())
}

/// Recounts the bucket's usage (its objects changed wholesale) once the lock is free.
fn recount_later(state: &AppState, id: &str) {
    let (state, id) = (state.clone(), id.to_string());
    tokio::spawn(async move {
        if let Err(e) = crate::usage::sync_one(&state, &id).await {
            tracing::warn!(bucket = %id, error = %e, "recount after a restore failed");
        }
    });
}

/// At start: a restore the dead daemon was staging is called off (the bucket was not touched);
/// one it was replacing is finished from the staging volume.
pub async fn recover(state: &AppState) -> Result<()> {
    for s in state.store.list_snapshots(None).await? {
        let Some(status) = s.restore.as_ref().map(|r| r.status) else {
            continue;
        };
        match status {
            RestoreStatus::Staging => {
                if let Err(e) = volume_data::drop_staging(state, &s.bucket_id).await {
                    tracing::warn!(bucket = %s.bucket_id, error = %e, "removing the staging volume failed");
                }
                record(
                    state,
                    &s.id,
                    RestoreStatus::Failed,
                    Some("the daemon stopped while the archive was being read; the bucket's data was not touched".into()),
                    None,
                )
                .await?;
                tracing::warn!(snapshot = %s.id, bucket = %s.bucket_id, "interrupted restore called off before it touched the bucket");
            }
            RestoreStatus::Replacing => {
                // Docker away at start must not keep the daemon from starting: the restore
                // stays REPLACING and is finished at the next start.
                if let Err(e) = finish_interrupted(state, &s).await {
                    tracing::warn!(snapshot = %s.id, bucket = %s.bucket_id, error = %e,
                        "finishing an interrupted restore failed; it is tried again at the next start");
                }
            }
            RestoreStatus::Done | RestoreStatus::Failed => {}
        }
    }
    Ok(())
}

/// Finishes a restore the dead daemon was replacing the data for, from its staging volume.
async fn finish_interrupted(state: &AppState, s: &Snapshot) -> Result<()> {
    let _guard = state.locks.lock(&s.bucket_id).await;
    let Some(mut b) = state.store.get_bucket(&s.bucket_id).await? else {
        return record(
            state,
            &s.id,
            RestoreStatus::Failed,
            Some("the bucket is gone".into()),
            None,
        )
        .await;
    };
    tracing::warn!(snapshot = %s.id, bucket = %b.id, "finishing a restore the daemon was replacing the data for");
    if volume_data::staged(state, &b).await? {
        return replace(state, &mut b, s).await;
    }
    let message = format!(
        "the restore from snapshot {} was interrupted and its staged data is gone: restore again",
        s.id
    );
    let from = b.status;
    lifecycle::set_status(
        state,
        &mut b,
        BucketStatus::Error,
        Some(message.clone()),
        Some(from),
    )
    .await?;
    record(state, &s.id, RestoreStatus::Failed, Some(message), None).await
}

/// Checks a `fromSnapshot` request: a DONE snapshot of a managed bucket the caller sees, whose
/// archive is in place, of the engine asked for (if one is). Returns what the new bucket
/// records and the engine it must run.
pub async fn check_source(
    state: &AppState,
    caller: &Caller,
    req: &FromSnapshotRequest,
    engine: Option<kalpana_manager_core::EngineKind>,
) -> Result<(FromSnapshot, kalpana_manager_core::EngineKind)> {
    let source = lifecycle::visible(state, caller, &req.bucket_id).await?;
    let s = super::get(state, caller, &req.bucket_id, &req.snapshot_id).await?;
    if engine.is_some_and(|e| e != source.engine) {
        return Err(Error::Unprocessable(format!(
            "the snapshot holds {} data: the new bucket must use engine {}",
            source.engine.as_str(),
            source.engine.as_str()
        )));
    }
    archive_present(state, &s).await?;
    Ok((
        FromSnapshot {
            bucket_id: s.bucket_id,
            snapshot_id: s.id,
            source_name: source.name,
            imported: false,
            settled: false,
        },
        source.engine,
    ))
}

/// Provisioning of a `fromSnapshot` bucket, before its container is made: the archive read into
/// its volume, checked against the record (a mismatch fails the provisioning, which removes the
/// volume).
pub async fn import_for_new(state: &AppState, b: &mut BucketRecord) -> Result<()> {
    let Some(mut from) = b.from_snapshot.clone().filter(|f| !f.imported) else {
        return Ok(());
    };
    let s = state
        .store
        .get_snapshot(&from.snapshot_id)
        .await?
        .ok_or_else(|| Error::Unprocessable("the snapshot is gone".into()))?;
    let meter = Meter::new(state, b, format!("filling from snapshot {}", s.id));
    let tar = open_archive(state, &s, &meter).await?;
    let imported = volume_data::import(state, b, tar).await;
    if !matches_record(&s, &meter) {
        return Err(Error::Unprocessable(tampered(&s)));
    }
    imported?;
    from.imported = true;
    b.from_snapshot = Some(from);
    b.updated_at = now();
    state
        .store
        .update_bucket(b, Some(BucketStatus::Creating))
        .await?;
    event(
        state,
        b,
        format!(
            "filled from snapshot {}: {} archive bytes",
            s.id,
            meter.bytes()
        ),
    );
    Ok(())
}

/// Provisioning of a `fromSnapshot` bucket, once its engine serves: the objects moved from the
/// source's S3 bucket name to the new one (copies on the server), and the source's keys removed
/// from the engine, before anyone is given the bucket.
pub async fn settle_new(state: &AppState, b: &mut BucketRecord) -> Result<()> {
    let Some(mut from) = b.from_snapshot.clone().filter(|f| !f.settled) else {
        return Ok(());
    };
    if from.source_name != b.name {
        move_objects(state, b, &from.source_name).await?;
    }
    let keys = match state.store.get_snapshot(&from.snapshot_id).await? {
        Some(s) => s.keys,
        None => Vec::new(),
    };
    for k in keys {
        crate::keys::revoke_engine_user(state, b, &k.user, &k.access_key).await?;
    }
    from.settled = true;
    b.from_snapshot = Some(from);
    b.updated_at = now();
    state
        .store
        .update_bucket(b, Some(BucketStatus::Creating))
        .await?;
    recount_later(state, &b.id);
    Ok(())
}

/// Moves every object of S3 bucket `source` to the bucket's own name inside its engine, then
/// removes `source`. Repeatable: what was moved is no longer listed.
async fn move_objects(state: &AppState, b: &BucketRecord, source: &str) -> Result<()> {
    let to = lifecycle::s3_client(state, b)?;
    let from = lifecycle::s3_client_named(state, b, source)?;
    if !from.bucket_exists().await? {
        return Ok(());
    }
    let mut moved = 0u64;
    loop {
        let page = from.list_objects(None, None, 1000, None).await?;
        if page.objects.is_empty() {
            break;
        }
        for o in page.objects {
            if o.size > MAX_COPY {
                let d = from.get_object(&o.key, None).await?;
                to.put_object(
                    &o.key,
                    o.content_type.as_deref(),
                    Some(d.content_length),
                    d.body,
                )
                .await?;
            } else {
                to.copy_from(source, &o.key).await?;
            }
            from.delete_object(&o.key).await?;
            moved += 1;
        }
    }
    if let Err(e) = from.delete_bucket().await {
        tracing::warn!(bucket = %b.id, source, error = %e, "removing the source's S3 bucket from the copy failed");
    }
    tracing::info!(bucket = %b.id, source, objects = moved, "objects moved to the new bucket's name");
    Ok(())
}

/// The largest object an S3 server copies in one request.
const MAX_COPY: u64 = 5 * 1024 * 1024 * 1024;
