//! `POST /api/buckets/{id}/objects/{key}/copy`: copy or move an object, on the S3 server inside
//! one bucket, streamed through the daemon (constant memory) between two buckets.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use futures::TryStreamExt;
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::{Access, Caller};
use crate::error::{Error, Result};
use crate::extract::{JsonBody, PathParams};
use crate::openapi::{Failed, Refused};
use crate::routes::objects::key_segment_max;
use kalpana_domain::upload::{self, Stored};
use kalpana_domain::validate::KeyUse;
use kalpana_domain::{usage, validate};

/// S3 copies at most this much in one server-side request; larger objects are streamed.
const MAX_SERVER_COPY: u64 = 5 * 1024 * 1024 * 1024;

/// Body of the copy route.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CopyObject {
    /// Key of the copy.
    destination_key: String,
    /// Bucket of the copy (default: the same bucket).
    destination_bucket_id: Option<String>,
    /// Delete the source once the copy is complete.
    #[serde(default, rename = "move")]
    move_: bool,
}

/// `POST /api/buckets/{id}/objects/{key}/copy`: 201 with what was stored. With `move`, the
/// source is deleted only after the copy is complete; a failed copy leaves both as they were.
#[utoipa::path(
    post,
    path = "/api/buckets/{id}/objects/{key}/copy",
    tag = "objects",
    operation_id = "copy_object",
    params(("id" = String, Path, description = "bucket id"), ("key" = String, Path, description = "object key: one percent-encoded path segment")),
    request_body = CopyObject,
    responses(
        (status = 201, description = "the copy", body = Stored),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn copy(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((id, key)): PathParams<(String, String)>,
    JsonBody(req): JsonBody<CopyObject>,
) -> Result<(StatusCode, Json<Stored>)> {
    let source_access = if req.move_ {
        Access::Write
    } else {
        Access::Read
    };
    let (src, _src_awake) =
        kalpana_domain::sleep::serving(&state, &caller, &id, source_access).await?;
    validate::object_key(&key, key_segment_max(&src), KeyUse::Read)?;
    let mut _dst_awake = None;
    let dst = match &req.destination_bucket_id {
        Some(d) if *d != id => {
            let (dst, awake) =
                kalpana_domain::sleep::serving(&state, &caller, d, Access::Write).await?;
            _dst_awake = awake;
            dst
        }
        _ => {
            caller.require(&src, Access::Write)?;
            src.clone()
        }
    };
    validate::object_key(&req.destination_key, key_segment_max(&dst), KeyUse::Write)?;
    if dst.id == src.id && req.destination_key == key {
        return Err(Error::BadRequest(
            "the destination is the source: give another destinationKey or bucket".into(),
        ));
    }
    let source = kalpana_domain::clients::s3(&state, &src)?;
    let info = source
        .head_object(&key)
        .await?
        .ok_or(Error::NotFound("object"))?;
    let stored = if dst.id == src.id && info.size <= MAX_SERVER_COPY {
        copy_on_server(&state, &dst, &key, &req.destination_key, info.size).await?
    } else {
        let download = source.get_object(&key, None).await?;
        // A failure of this stream is the source bucket's, not a client's body: remembered so
        // the answer blames the right side.
        let source_failed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = source_failed.clone();
        let mut body = download.body.map_err(move |e| {
            seen.store(true, std::sync::atomic::Ordering::SeqCst);
            std::io::Error::other(e)
        });
        let up = upload::prepare(&state, &dst, &req.destination_key).await?;
        let stored = upload::store(
            &state,
            &dst,
            &req.destination_key,
            info.content_type.clone(),
            Some(download.content_length),
            up,
            &mut body,
        )
        .await;
        match stored {
            Err(e) if source_failed.load(std::sync::atomic::Ordering::SeqCst) => {
                tracing::warn!(from = %src.id, key, error = %e, "copy source failed mid-stream");
                return Err(crate::error::Domain::Unavailable(
                    "the source bucket's S3 server failed during the copy; nothing was stored"
                        .into(),
                )
                .into());
            }
            other => other?,
        }
    };
    if req.move_ {
        source.delete_object(&key).await?;
        usage::adjust(&state, &src, -1, -(info.size as i64)).await?;
    }
    tracing::info!(from = %src.id, key, to = %dst.id, destination_key = %req.destination_key,
        size = stored.size, moved = req.move_, "object copied");
    Ok((StatusCode::CREATED, Json(stored)))
}

/// A copy inside one bucket by the S3 server, priced against the bucket's quota like an upload.
async fn copy_on_server(
    state: &AppState,
    b: &kalpana_domain::model::BucketRecord,
    key: &str,
    destination: &str,
    size: u64,
) -> Result<Stored> {
    if b.over_quota {
        return Err(usage::over_quota(b).into());
    }
    let client = kalpana_domain::clients::s3(state, b)?;
    let old = client.head_object(destination).await?;
    let old_size = old.as_ref().map_or(0, |o| o.size);
    let mut reservation = usage::Reservation::begin(state, b, destination, old_size);
    if !reservation.take(size) {
        return Err(usage::over_quota(b).into());
    }
    let copied = client.copy_object(key, destination).await?;
    usage::adjust(
        state,
        b,
        i64::from(old.is_none()),
        copied.size as i64 - old_size as i64,
    )
    .await?;
    drop(reservation);
    Ok(Stored {
        key: destination.to_string(),
        size: copied.size,
        etag: copied.etag,
    })
}
