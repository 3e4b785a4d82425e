//! A snapshot's archive read back: checked to be in place, streamed from its bucket, counted and
//! hashed as it arrives, decompressed; and the events of restores.

use std::sync::Arc;

use futures::StreamExt;
use kalpana_manager_core::runtime::{ArchiveTarget, FillJob, JobOutcome};

use crate::context::Core;
use crate::error::{Error, Result};
use crate::events::{BucketEvent, EventKind};
use crate::model::{BucketRecord, BucketStatus};

use super::model::{Snapshot, SnapshotStatus};
use super::progress::Meter;

/// A `bucket.restore` event and its log line.
pub(super) fn event(state: &Core, b: &BucketRecord, message: String) {
    tracing::info!(bucket = %b.id, "{message}");
    state
        .events
        .publish(BucketEvent::of(EventKind::Restore, b, Some(message)));
}

/// The archive of a DONE snapshot, checked to be where it was put with the size recorded (a
/// cheap HEAD; the SHA-256 is checked as it is read).
pub(super) async fn archive_present(state: &Core, s: &Snapshot) -> Result<()> {
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
    let _awake = crate::sleep::awake_for_operation(state, &t).await?;
    match crate::clients::s3(state, &t)?
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

/// A job that reads the snapshot's archive from its bucket, every stored byte counted by
/// `meter`: its key unsealed from the archive's header by the master key, so the
/// job is handed that archive's key only.
pub(super) async fn fill_job(state: &Core, s: &Snapshot, meter: &Meter) -> Result<FillJob> {
    let t = state
        .store
        .get_bucket(&s.target.bucket_id)
        .await?
        .ok_or_else(|| Error::Unprocessable("the bucket holding the archive is gone".into()))?;
    // The bucket holding the archive stays awake while the job reads it (the use goes with the
    // job's progress callback, and every chunk read is activity).
    let awake = crate::sleep::awake_for_operation(state, &t).await?;
    let client = crate::clients::s3(state, &t)?;
    let range = format!("bytes=0-{}", super::sealed::HEADER_SPAN - 1);
    let mut head = client.get_object(&s.target.key, Some(&range)).await?;
    let mut first = Vec::new();
    while let Some(chunk) = head.body.next().await {
        let chunk = chunk.map_err(|e| {
            Error::Unprocessable(format!("reading the archive's header failed: {e}"))
        })?;
        first.extend_from_slice(&chunk);
    }
    let open = super::sealed::open_key(&state.master_key, &first)?;
    let m = meter.clone();
    Ok(FillJob {
        source: ArchiveTarget {
            client,
            presigner: crate::clients::internal_presigner(state, &t)?,
            key: s.target.key.clone(),
        },
        open,
        progress: Arc::new(move |n| {
            if let Some(a) = &awake {
                a.touch();
            }
            m.observe(n)
        }),
    })
}

/// What a data job read, whether it went through or failed part-way (a damaged archive).
pub(super) fn outcome_of(r: &Result<JobOutcome>) -> Option<&JobOutcome> {
    match r {
        Ok(o) => Some(o),
        Err(Error::Runtime(kalpana_manager_core::Error::Job { outcome, .. })) => outcome.as_ref(),
        Err(_) => None,
    }
}

/// Whether what a fill read is the archive the snapshot recorded.
pub(super) fn matches_record(s: &Snapshot, read: Option<&JobOutcome>) -> bool {
    read.is_some_and(|o| {
        Some(o.bytes) == s.size_bytes && s.sha256.as_deref() == Some(o.sha256.as_str())
    })
}

/// The message for an archive that is not the one recorded (changed, cut or damaged).
pub(super) fn tampered(s: &Snapshot) -> String {
    format!(
        "the archive of snapshot {} does not match the size and SHA-256 recorded when it was taken: it was changed or damaged",
        s.id
    )
}

/// Recounts the bucket's usage (its objects changed wholesale) once the lock is free.
pub(super) fn recount_later(state: &Core, id: &str) {
    let (core, id) = (state.clone(), id.to_string());
    state.tasks.spawn_task("recount after restore", async move {
        let state = core;
        if let Err(e) = crate::usage::sync_one(&state, &id).await {
            tracing::warn!(bucket = %id, error = %e, "recount after a restore failed");
        }
    });
}
