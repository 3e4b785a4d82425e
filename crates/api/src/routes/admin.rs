//! Admin routes: orphaned Docker resources, reported and removed only on an explicit call.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::extract::PathParams;
use crate::openapi::{Failed, Refused};
use kalpana_domain::reconcile::{find_orphans, Orphans};

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
    remove_orphan(&state, &caller, Kind::Container, &name).await
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
    remove_orphan(&state, &caller, Kind::Volume, &name).await
}

#[derive(Clone, Copy)]
enum Kind {
    Container,
    Volume,
}

/// Removes the container or volume `name` if it is (still) an orphan; 404 otherwise, so a
/// bucket's own resources can never be removed this way.
async fn remove_orphan(
    state: &AppState,
    caller: &Caller,
    kind: Kind,
    name: &str,
) -> Result<StatusCode> {
    caller.require_admin()?;
    let volume = matches!(kind, Kind::Volume);
    if !kalpana_domain::reconcile::remove_orphan(state, volume, name).await? {
        return Err(Error::NotFound(if volume {
            "orphan volume"
        } else {
            "orphan container"
        }));
    }
    tracing::warn!(name, admin = %caller.user.id, volume = matches!(kind, Kind::Volume), "orphan removed by an admin");
    Ok(StatusCode::NO_CONTENT)
}

/// An old volume set aside on a node that came back after its buckets were evacuated.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetAsideView {
    /// The node (Swarm node id) it is on.
    pub node: String,
    /// The volume's name there.
    pub volume: String,
    /// The bucket whose data it held until the evacuation (the bucket serves elsewhere since).
    pub bucket_id: String,
    /// That bucket's name then.
    pub bucket_name: String,
    /// When the bucket was evacuated (RFC 3339): what it holds was written up to about then.
    pub evacuated_at: String,
    /// When it was set aside (RFC 3339).
    pub set_aside_at: String,
}

/// `GET /api/admin/set-aside`: old volumes of evacuated buckets on nodes that came back (never
/// served; deleted only by an admin).
#[utoipa::path(
    get,
    path = "/api/admin/set-aside",
    tag = "admin",
    responses(
        (status = 200, description = "volumes set aside, oldest first", body = [SetAsideView]),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn set_aside(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<SetAsideView>>> {
    caller.require_admin()?;
    let list = kalpana_domain::node_loss::set_aside(&state).await?;
    Ok(Json(
        list.into_iter()
            .map(|(node, v)| SetAsideView {
                node,
                volume: v.volume,
                bucket_id: v.bucket_id,
                bucket_name: v.bucket_name,
                evacuated_at: v.evacuated_at,
                set_aside_at: v.set_aside_at,
            })
            .collect(),
    ))
}

/// `DELETE /api/admin/set-aside/{node}/{volume}`: deletes that set-aside volume and its data;
/// 404 for any volume not listed as set aside.
#[utoipa::path(
    delete,
    path = "/api/admin/set-aside/{node}/{volume}",
    tag = "admin",
    params(
        ("node" = String, Path, description = "node id"),
        ("volume" = String, Path, description = "volume name")
    ),
    responses(
        (status = 204, description = "deleted, with its data"),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn delete_set_aside(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((node, volume)): PathParams<(String, String)>,
) -> Result<StatusCode> {
    caller.require_admin()?;
    kalpana_domain::node_loss::delete_set_aside(&state, &node, &volume).await?;
    tracing::warn!(node = %node, volume = %volume, admin = %caller.user.id, "set-aside volume deleted by an admin");
    Ok(StatusCode::NO_CONTENT)
}
