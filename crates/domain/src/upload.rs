//! Streams an upload body into a bucket's S3 server under its quota, holding at most a few
//! chunks of it in memory.

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use kalpana_s3_ops::{BodyStream, BoxError, BucketClient, ObjectInfo};
use tokio_stream::wrappers::ReceiverStream;

use crate::context::Core;
use crate::error::{Error, Result};
use crate::model::BucketRecord;
use crate::usage;

/// How much of a refused body is read and thrown away so the client sees the 413 instead of a
/// reset connection; a larger remainder is cut off.
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;
/// How long draining a refused body may take.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// An upload about to start: the bucket's client, what the key holds now (or the lookup that
/// will say), and its reservation against the bucket's quota.
pub struct Upload {
    client: BucketClient,
    before: Before,
    reservation: usage::Reservation,
}

/// What the key held before the upload: known up front for a bucket with a quota (the upload is
/// priced against it), still being looked up otherwise.
enum Before {
    Known(Option<ObjectInfo>),
    Pending(tokio::task::JoinHandle<kalpana_s3_ops::Result<Option<ObjectInfo>>>),
}

impl Before {
    async fn resolve(self) -> Result<Option<ObjectInfo>> {
        match self {
            Before::Known(old) => Ok(old),
            Before::Pending(task) => Ok(task
                .await
                .map_err(|e| Error::Internal(format!("object lookup task: {e}")))??),
        }
    }
}

/// What an upload stored.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stored {
    /// Key.
    pub key: String,
    /// Bytes stored.
    pub size: u64,
    /// ETag of the new object.
    pub etag: Option<String>,
}

/// Looks up what `key` holds now, to count the upload (and price it against the quota). A
/// bucket found over its quota (written to directly over S3) takes no uploads until it is back
/// under. Without a quota the lookup runs while the body streams (see [`store`]).
pub async fn prepare(state: &Core, b: &BucketRecord, key: &str) -> Result<Upload> {
    if b.over_quota {
        return Err(usage::over_quota(b));
    }
    let client = crate::clients::s3(state, b)?;
    if b.quota_bytes().is_none() {
        let lookup = {
            let (client, key) = (client.clone(), key.to_string());
            tokio::spawn(async move { client.head_object(&key).await })
        };
        return Ok(Upload {
            client,
            before: Before::Pending(lookup),
            reservation: usage::Reservation::begin(state, b, key, 0),
        });
    }
    let old = client.head_object(key).await?;
    let reservation = usage::Reservation::begin(state, b, key, old.as_ref().map_or(0, |o| o.size));
    Ok(Upload {
        client,
        before: Before::Known(old),
        reservation,
    })
}

/// Streams `source` into the object `key`. Over quota the upload is aborted (nothing stored,
/// a multipart upload cleaned up) and the answer is 413.
pub async fn store<S, E>(
    state: &Core,
    b: &BucketRecord,
    key: &str,
    content_type: Option<String>,
    length: Option<u64>,
    up: Upload,
    source: &mut S,
) -> Result<Stored>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: std::error::Error + 'static,
{
    let Upload {
        client,
        before,
        mut reservation,
    } = up;
    let _in_flight = state.pending_usage.upload_started(&b.id);
    // A declared length is reserved whole before anything streams; otherwise each chunk is.
    if let Some(len) = length {
        if !reservation.take(len) {
            drain(source).await;
            return Err(usage::over_quota(b));
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<std::result::Result<Bytes, BoxError>>(4);
    let body: BodyStream = Box::pin(ReceiverStream::new(rx));
    let task = {
        let client = client.clone();
        let key = key.to_string();
        tokio::spawn(async move {
            client
                .put_object(&key, content_type.as_deref(), length, body)
                .await
        })
    };
    let mut seen = 0u64;
    let mut over = false;
    let mut body_failed = None;
    // The last chunk is held back until the lookup of what the key held has answered: the S3
    // server cannot store the new object before it has every byte, so the lookup saw the old one.
    let mut held: Option<Bytes> = None;
    while let Some(chunk) = source.next().await {
        match chunk {
            Ok(chunk) => {
                seen += chunk.len() as u64;
                if length.is_none() && !reservation.take(chunk.len() as u64) {
                    over = true;
                    held = None;
                    let _ = tx.send(Err("the upload exceeds the quota".into())).await;
                    break;
                }
                if let Some(previous) = held.replace(chunk) {
                    if tx.send(Ok(previous)).await.is_err() {
                        // The upload ended early; its result says why.
                        break;
                    }
                }
            }
            Err(e) => {
                // The S3 upload is aborted; the client hears why its body was refused.
                let _ = tx
                    .send(Err(format!("the request body failed: {e}").into()))
                    .await;
                body_failed = Some(body_error(&e));
                held = None;
                break;
            }
        }
    }
    let old = if over || body_failed.is_some() {
        None
    } else {
        match before.resolve().await {
            Ok(old) => {
                if let Some(last) = held.take() {
                    let _ = tx.send(Ok(last)).await;
                }
                old
            }
            Err(e) => {
                // Not knowing what the key held, the upload is not stored: counts stay true.
                let _ = tx
                    .send(Err("looking up the object being replaced failed".into()))
                    .await;
                drop(tx);
                let _ = task.await;
                return Err(e);
            }
        }
    };
    drop(tx);
    let result = task
        .await
        .map_err(|e| Error::Internal(format!("upload task: {e}")))?;
    if over {
        drain(source).await;
        tracing::info!(bucket = %b.id, key, bytes_seen = seen, "upload refused: over quota");
        return Err(usage::over_quota(b));
    }
    if let Some(e) = body_failed {
        tracing::info!(bucket = %b.id, key, bytes_seen = seen, error = %e, "upload refused: the request body failed");
        return Err(e);
    }
    let uploaded = result?;
    let old_size = old.as_ref().map_or(0, |o| o.size);
    usage::adjust(
        state,
        b,
        i64::from(old.is_none()),
        uploaded.size as i64 - old_size as i64,
    )
    .await?;
    // Recorded in the store first, then given back: never counted zero times.
    drop(reservation);
    tracing::info!(bucket = %b.id, key, size = uploaded.size, "object stored");
    Ok(Stored {
        key: key.to_string(),
        size: uploaded.size,
        etag: uploaded.etag,
    })
}

/// Reads and discards what is left of a refused body, within limits.
pub async fn drain<S, E>(source: &mut S)
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
{
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut drained = 0u64;
        while let Some(Ok(chunk)) = source.next().await {
            drained += chunk.len() as u64;
            if drained > DRAIN_LIMIT {
                break;
            }
        }
    })
    .await;
}

/// A request body that stalled or trickled (the api's body guard raises it, pacing every body
/// as `config::BodyPace` says).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BodyTimeout(pub String);

/// Whether a body error (anywhere in its source chain) is the guard's timeout.
pub fn timed_out(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<BodyTimeout>() {
            return Some(t.0.clone());
        }
        cur = err.source();
    }
    None
}

/// The error of an upload whose body failed while it was read: timed out (stalled or
/// trickled), or otherwise broken.
pub fn body_error(e: &(dyn std::error::Error + 'static)) -> Error {
    match timed_out(e) {
        Some(why) => Error::BodyTimedOut(why),
        None => Error::BodyFailed(format!("the request body failed: {e}")),
    }
}
