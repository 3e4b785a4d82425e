//! A snapshot's archive read back: checked to be in place, streamed from its bucket, counted and
//! hashed as it arrives, decompressed; and the events of restores.

use futures::StreamExt;

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::events::BucketEvent;
use crate::lifecycle::volume_data;
use crate::model::{BucketRecord, BucketStatus};

use super::model::{Snapshot, SnapshotStatus};
use super::progress::Meter;

/// A `bucket.restore` event and its log line.
pub(super) fn event(state: &AppState, b: &BucketRecord, message: String) {
    tracing::info!(bucket = %b.id, "{message}");
    state
        .events
        .publish(BucketEvent::of("bucket.restore", b, Some(message)));
}

/// The archive of a DONE snapshot, checked to be where it was put with the size recorded (a
/// cheap HEAD; the SHA-256 is checked as it is read).
pub(super) async fn archive_present(state: &AppState, s: &Snapshot) -> Result<()> {
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
pub(super) async fn open_archive(
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
    let stored: super::sealed::ByteStream = Box::pin(download.body.map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        m.observe(&chunk);
        Ok::<_, std::io::Error>(chunk)
    }));
    // Either format: sealed archives are opened, plain ones (format 1) pass through.
    let compressed = super::sealed::open(state.master_key.clone(), stored);
    let reader = tokio_util::io::StreamReader::new(compressed);
    let tar = async_compression::tokio::bufread::ZstdDecoder::new(reader);
    Ok(Box::pin(tokio_util::io::ReaderStream::new(tar)))
}

/// Whether what `meter` saw is the archive the snapshot recorded.
pub(super) fn matches_record(s: &Snapshot, meter: &Meter) -> bool {
    Some(meter.bytes()) == s.size_bytes && s.sha256.as_deref() == Some(meter.sha256().as_str())
}

/// The message for an archive that is not the one recorded (changed, cut or damaged).
pub(super) fn tampered(s: &Snapshot) -> String {
    format!(
        "the archive of snapshot {} does not match the size and SHA-256 recorded when it was taken: it was changed or damaged",
        s.id
    )
}

/// Recounts the bucket's usage (its objects changed wholesale) once the lock is free.
pub(super) fn recount_later(state: &AppState, id: &str) {
    let (state, id) = (state.clone(), id.to_string());
    tokio::spawn(async move {
        if let Err(e) = crate::usage::sync_one(&state, &id).await {
            tracing::warn!(bucket = %id, error = %e, "recount after a restore failed");
        }
    });
}
