//! Restores: a bucket's data made exactly a snapshot's.
//!
//! A restore reads the archive from its bucket, hashes it as it goes and extracts it into a
//! staging volume, so the bucket keeps serving its current data meanwhile (and can be stopped,
//! started or given keys: the bucket's lock is taken only to check and replace). Only an archive
//! whose size and SHA-256 match the record goes further: the swap is recorded (REPLACING), then
//! the bucket's volume is made anew from the staging volume and its container brought back as it
//! was. A daemon that dies while staging calls the restore off (the bucket was not touched); one
//! that dies while replacing finishes it at its next start.
//!
//! Keys: the engine keeps its users in its data, so a restored engine knows the keys it knew at
//! the snapshot. Afterwards its identities are brought in line with the bucket's record
//! (`keys::sweep_foreign`): keys revoked since are removed again, keys made or rotated since are
//! put back with the access key and secret the record keeps, and anything else is removed.

use std::time::Instant;

use crate::access::{Access, Caller};
use crate::context::{Core, Locked};
use crate::error::{Error, Result};
use crate::lifecycle::{self, volume_data};
use crate::model::{now, BucketRecord, BucketStatus};

use super::archive::{
    archive_present, event, fill_job, matches_record, outcome_of, recount_later, tampered,
};
use super::model::{Restore, RestoreStatus, Snapshot};
use super::progress::Meter;

/// How many times the replacement is tried before the bucket goes to ERROR.
const REPLACE_ATTEMPTS: u32 = 3;

/// Accepts a restore of bucket `bucket_id` from its snapshot `id` and starts it in the
/// background.
pub async fn restore(state: &Core, caller: &Caller, bucket_id: &str, id: &str) -> Result<Snapshot> {
    let b = lifecycle::authorized(state, caller, bucket_id, Access::Manage).await?;
    crate::kinds::require_managed(&b, "restores")?;
    lifecycle::require_runtime(state).await?;
    // The restore replaces the container, which then runs: the bucket wakes first.
    drop(crate::sleep::awake_for_operation(state, &b).await?);
    let mut s = super::get(state, caller, bucket_id, id).await?;
    // The checks and the STAGING record as one step: two restores never share a staging volume.
    let b = state.lock_bucket(&b.id).await?;
    restorable(&b)?;
    if super::busy(&state.store.list_snapshots(Some(&b.id)).await?) {
        return Err(Error::Conflict(format!(
            "a snapshot or a restore of bucket {} is already running",
            b.name
        )));
    }
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
    state.tasks.spawn_task("restore", async move {
        if let Err(e) = run(&state2, &id2).await {
            tracing::error!(snapshot = %id2, error = %e, "restore could not be recorded");
        }
    });
    Ok(s)
}

/// Refuses a bucket that is not RUNNING or STOPPED (being made, deleted, or in ERROR).
fn restorable(b: &BucketRecord) -> Result<()> {
    if !b.provisioned
        || b.deleting
        || !matches!(b.status, BucketStatus::Running | BucketStatus::Stopped)
    {
        return Err(Error::Conflict(format!(
            "bucket {} is {}: only a running or stopped bucket can be restored",
            b.name,
            b.status.as_str()
        )));
    }
    Ok(())
}

/// Sets the restore's outcome on the snapshot's record.
async fn record(
    state: &Core,
    id: &str,
    status: RestoreStatus,
    message: Option<String>,
    downtime_millis: Option<u64>,
) -> Result<()> {
    record_bytes(state, id, status, message, downtime_millis, None).await
}

/// [`record`], with the archive bytes read when they are known.
async fn record_bytes(
    state: &Core,
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

/// The restore itself: stage and check without the bucket's lock (the bucket serves and can be
/// managed meanwhile), then, under the lock, check again what may have changed and replace.
async fn run(state: &Core, id: &str) -> Result<()> {
    let Some(s) = state.store.get_snapshot(id).await? else {
        return Ok(());
    };
    let called_off = |b: &BucketRecord, why: String| {
        let b = b.clone();
        async move {
            if let Err(e) = volume_data::drop_staging(state, &b.id).await {
                tracing::warn!(bucket = %b.id, error = %e, "removing the staging volume failed");
            }
            let message = format!("{why}; the bucket's data was not touched");
            event(
                state,
                &b,
                format!("restore from snapshot {id} failed: {message}"),
            );
            record(state, id, RestoreStatus::Failed, Some(message), None).await
        }
    };
    let Some(b) = state.store.get_bucket(&s.bucket_id).await? else {
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
        Err(why) => return called_off(&b, why).await,
    };
    let Some(mut b) = state.lock_bucket_if(&s.bucket_id).await? else {
        return called_off(&b, "the bucket was deleted meanwhile".into()).await;
    };
    if let Err(e) = restorable(&b) {
        return called_off(&b, e.to_string()).await;
    }
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
async fn stage(state: &Core, b: &BucketRecord, s: &Snapshot) -> std::result::Result<u64, String> {
    let meter = Meter::new(state, b, format!("restore from snapshot {}", s.id));
    let recorder = meter.record_while_running(&s.id, true);
    let outcome = async {
        let job = fill_job(state, s, &meter)
            .await
            .map_err(|e| format!("reading the archive failed: {e}"))?;
        let staged = volume_data::stage(state, b, job).await;
        if !matches_record(s, outcome_of(&staged)) {
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
async fn replace(state: &Core, b: &mut Locked, s: &Snapshot) -> Result<()> {
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
        return fail_with_bucket(state, b, &s.id, message, Some(downtime)).await;
    }
    // The engine's identities are the snapshot's: keys revoked since, and anything the daemon
    // did not make, are removed; keys made or rotated since are put back. Now, or when the
    // bucket next runs.
    crate::keys::sweep_locked(state, b).await?;
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

/// At start: a restore the dead daemon was staging is called off (the bucket was not touched);
/// one it was replacing is finished from the staging volume.
pub async fn recover(state: &Core, snapshots: &[Snapshot]) -> Result<()> {
    for s in snapshots {
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
                if let Err(e) = finish_interrupted(state, s).await {
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
async fn finish_interrupted(state: &Core, s: &Snapshot) -> Result<()> {
    let Some(mut b) = state.lock_bucket_if(&s.bucket_id).await? else {
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
    fail_with_bucket(state, &mut b, &s.id, message, None).await
}

/// A restore that failed after the bucket's data was touched: the bucket goes to ERROR and the
/// restore to FAILED, both saying `message`.
async fn fail_with_bucket(
    state: &Core,
    b: &mut Locked,
    id: &str,
    message: String,
    downtime_millis: Option<u64>,
) -> Result<()> {
    let from = b.status;
    lifecycle::set_status(
        state,
        b,
        BucketStatus::Error,
        Some(message.clone()),
        Some(from),
    )
    .await?;
    record(
        state,
        id,
        RestoreStatus::Failed,
        Some(message),
        downtime_millis,
    )
    .await
}
