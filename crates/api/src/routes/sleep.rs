//! Putting a bucket to sleep and waking it by hand (`POST /api/buckets/{id}/sleep`, `…/wake`);
//! a bucket also sleeps by itself after `sleepAfterSecs` and wakes on any request.

use axum::extract::State;
use axum::Json;

use super::buckets::{view, BucketView};
use crate::app::AppState;
use crate::auth::{Access, Caller};
use crate::error::Result;
use crate::extract::PathParams;
use crate::openapi::{Failed, Refused};
use kalpana_domain::{lifecycle, sleep};

/// `POST /api/buckets/{id}/sleep`: stops its container now (open requests finish first, at
/// most 10 s); the next request by any path wakes it. 409 when it cannot sleep (not RUNNING,
/// attached containers, still in use).
#[utoipa::path(
    post,
    path = "/api/buckets/{id}/sleep",
    tag = "buckets",
    operation_id = "sleep_bucket",
    params(("id" = String, Path, description = "bucket id")),
    responses(
        (status = 200, description = "the bucket, asleep", body = BucketView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn put_to_sleep(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<BucketView>> {
    lifecycle::authorized(&state, &caller, &id, Access::Manage).await?;
    sleep::put_to_sleep(&state, &id, "asked for").await?;
    let b = lifecycle::visible(&state, &caller, &id).await?;
    Ok(Json(view(&state, b, None)))
}

/// `POST /api/buckets/{id}/wake`: starts a sleeping bucket's container and answers once its
/// engine answers; an awake bucket is answered at once.
#[utoipa::path(
    post,
    path = "/api/buckets/{id}/wake",
    tag = "buckets",
    operation_id = "wake_bucket",
    params(("id" = String, Path, description = "bucket id")),
    responses(
        (status = 200, description = "the bucket, awake", body = BucketView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn wake(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<BucketView>> {
    let b = lifecycle::running(&state, &caller, &id, Access::Manage).await?;
    kalpana_domain::kinds::require_managed(&b, "waking")?;
    drop(sleep::awake_for_operation(&state, &b).await?);
    let b = lifecycle::visible(&state, &caller, &id).await?;
    Ok(Json(view(&state, b, None)))
}
