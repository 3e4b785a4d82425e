//! Snapshots of a bucket's data: `/api/buckets/{id}/snapshots`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::Result;
use crate::extract::{JsonBody, PathParams};
use crate::openapi::{Failed, Refused};
use kalpana_domain::snapshots::{self, model::Snapshot};

/// Body of `POST /api/buckets/{id}/snapshots`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSnapshot {
    /// The bucket to write the archive to (the caller must be able to write to it); default
    /// `KALPANA_SNAPSHOT_BUCKET`.
    target_bucket_id: Option<String>,
    /// Free text.
    note: Option<String>,
}

/// A bucket's snapshots.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SnapshotList {
    /// Oldest first.
    snapshots: Vec<Snapshot>,
}

/// `POST /api/buckets/{id}/snapshots`: 202; the snapshot runs in the background (events on
/// `/api/events`, `bytesDone` on the record).
#[utoipa::path(
    post,
    path = "/api/buckets/{id}/snapshots",
    tag = "snapshots",
    operation_id = "create_snapshot",
    params(("id" = String, Path, description = "bucket id")),
    request_body = CreateSnapshot,
    responses(
        (status = 202, description = "accepted", body = Snapshot),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(req): JsonBody<CreateSnapshot>,
) -> Result<(StatusCode, Json<Snapshot>)> {
    let s = snapshots::create(
        &state,
        &caller,
        &id,
        req.target_bucket_id.as_deref(),
        req.note,
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(s)))
}

/// `GET /api/buckets/{id}/snapshots`.
#[utoipa::path(
    get,
    path = "/api/buckets/{id}/snapshots",
    tag = "snapshots",
    operation_id = "list_snapshots",
    params(("id" = String, Path, description = "bucket id")),
    responses(
        (status = 200, description = "the bucket's snapshots", body = SnapshotList),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<SnapshotList>> {
    Ok(Json(SnapshotList {
        snapshots: snapshots::list(&state, &caller, &id).await?,
    }))
}

/// `GET /api/buckets/{id}/snapshots/{sid}`.
#[utoipa::path(
    get,
    path = "/api/buckets/{id}/snapshots/{sid}",
    tag = "snapshots",
    operation_id = "get_snapshot",
    params(
        ("id" = String, Path, description = "bucket id"),
        ("sid" = String, Path, description = "snapshot id")
    ),
    responses(
        (status = 200, description = "the snapshot", body = Snapshot),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((id, sid)): PathParams<(String, String)>,
) -> Result<Json<Snapshot>> {
    Ok(Json(snapshots::get(&state, &caller, &id, &sid).await?))
}

/// `DELETE /api/buckets/{id}/snapshots/{sid}`: 204; the archive object goes too.
#[utoipa::path(
    delete,
    path = "/api/buckets/{id}/snapshots/{sid}",
    tag = "snapshots",
    operation_id = "delete_snapshot",
    params(
        ("id" = String, Path, description = "bucket id"),
        ("sid" = String, Path, description = "snapshot id")
    ),
    responses(
        (status = 204, description = "deleted with its archive"),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((id, sid)): PathParams<(String, String)>,
) -> Result<StatusCode> {
    snapshots::delete(&state, &caller, &id, &sid).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/buckets/{id}/snapshots/{sid}/restore`: 202; the bucket's data becomes exactly the
/// snapshot's. The archive is read and checked against its SHA-256 before anything is
/// replaced; progress is `restore` on the snapshot and events on `/api/events`.
#[utoipa::path(
    post,
    path = "/api/buckets/{id}/snapshots/{sid}/restore",
    tag = "snapshots",
    operation_id = "restore_snapshot",
    params(
        ("id" = String, Path, description = "bucket id"),
        ("sid" = String, Path, description = "snapshot id")
    ),
    responses(
        (status = 202, description = "accepted: the snapshot with its restore", body = Snapshot),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn restore(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((id, sid)): PathParams<(String, String)>,
) -> Result<(StatusCode, Json<Snapshot>)> {
    let s = snapshots::restore::restore(&state, &caller, &id, &sid).await?;
    Ok((StatusCode::ACCEPTED, Json(s)))
}
