//! Admin routes: orphaned Docker resources, reported and removed only on an explicit call.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::extract::PathParams;
use crate::openapi::{Failed, Refused};
use crate::reconcile::{find_orphans, Orphans};

/// `GET /api/admin/orphans`: managed containers and volumes without a bucket record.
#[utoipa::path(
    get,
    path = "/api/admin/orphans",
    tag = "admin",
    responses(
        (status = 200, description = "managed containers and volumes without a bucket record", body = Orphans),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn orphans(State(state): State<AppState>, caller: Caller) -> Result<Json<Orphans>> {
    caller.require_admin()?;
    Ok(Json(find_orphans(&state).await?))
}

/// `DELETE /api/admin/orphans/containers/{name}`: removes that container if it is (still) an
/// orphan; 404 otherwise, so a bucket's own container can never be removed this way.
#[utoipa::path(
    delete,
    path = "/api/admin/orphans/containers/{name}",
    tag = "admin",
    params(("name" = String, Path, description = "container name")),
    responses(
        (status = 204, description = "removed"),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn remove_container(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(name): PathParams<String>,
) -> Result<StatusCode> {
    caller.require_admin()?;
    let _alloc = state.allocation.lock().await;
    if !find_orphans(&state)
        .await?
        .containers
        .iter()
        .any(|c| c.name == name)
    {
        return Err(Error::NotFound("orphan container"));
    }
    state.docker.remove_container(&name).await?;
    tracing::warn!(container = %name, admin = %caller.user.id, "orphan container removed by an admin");
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/admin/orphans/volumes/{name}`: removes that volume (and the data in it) if it
/// is (still) an orphan; 404 otherwise.
#[utoipa::path(
    delete,
    path = "/api/admin/orphans/volumes/{name}",
    tag = "admin",
    params(("name" = String, Path, description = "volume name")),
    responses(
        (status = 204, description = "removed, with its data"),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn remove_volume(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(name): PathParams<String>,
) -> Result<StatusCode> {
    caller.require_admin()?;
    let _alloc = state.allocation.lock().await;
    if !find_orphans(&state)
        .await?
        .volumes
        .iter()
        .any(|v| v.name == name)
    {
        return Err(Error::NotFound("orphan volume"));
    }
    state.docker.remove_volume(&name).await?;
    tracing::warn!(volume = %name, admin = %caller.user.id, "orphan volume removed by an admin");
    Ok(StatusCode::NO_CONTENT)
}
