//! Cloud provider accounts of the inventory: `/api/docks`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::Result;
use crate::extract::{JsonBody, PathParams};
use crate::openapi::{Failed, Refused};
use kalpana_domain::inventory::{
    self, model::CloudProvider, model::Dock, model::SyncStats, NewDock,
};

/// Body of `POST /api/docks`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateDock {
    /// `vultr`, `digitalocean` or `linode`.
    provider: CloudProvider,
    /// Free text.
    name: String,
    /// The provider's API token (checked with one read, encrypted at rest, never answered).
    api_token: String,
    /// Team whose members see it.
    team_id: Option<String>,
}

impl std::fmt::Debug for CreateDock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateDock")
            .field("provider", &self.provider)
            .field("name", &self.name)
            .field("api_token", &"<redacted>")
            .finish()
    }
}

/// A dock as the API shows it: never its token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DockView {
    id: String,
    name: String,
    provider: CloudProvider,
    user_id: String,
    team_id: Option<String>,
    created_at: String,
    /// When the last sync ended, well or not.
    last_synced_at: Option<String>,
    /// Why the last sync failed (none when it succeeded).
    last_sync_error: Option<String>,
    /// When the inventory was last replaced by a complete answer.
    last_good_sync_at: Option<String>,
    /// What the last good sync did.
    last_sync: Option<SyncStats>,
}

impl From<Dock> for DockView {
    fn from(d: Dock) -> Self {
        DockView {
            id: d.id,
            name: d.name,
            provider: d.provider,
            user_id: d.user_id,
            team_id: d.team_id,
            created_at: d.created_at,
            last_synced_at: d.last_synced_at,
            last_sync_error: d.last_sync_error,
            last_good_sync_at: d.last_good_sync_at,
            last_sync: d.last_sync,
        }
    }
}

/// Docks the caller sees.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DockList {
    /// Oldest first.
    docks: Vec<DockView>,
}

/// `POST /api/docks`: 201 once the provider accepted the token; the first sync runs in the
/// background.
#[utoipa::path(
    post,
    path = "/api/docks",
    tag = "inventory",
    operation_id = "create_dock",
    request_body = CreateDock,
    responses(
        (status = 201, description = "the dock", body = DockView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<CreateDock>,
) -> Result<(StatusCode, Json<DockView>)> {
    let d = inventory::create(
        &state,
        &caller,
        NewDock {
            provider: req.provider,
            name: req.name,
            api_token: req.api_token,
            team_id: req.team_id,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(d.into())))
}

/// `GET /api/docks`.
#[utoipa::path(
    get,
    path = "/api/docks",
    tag = "inventory",
    operation_id = "list_docks",
    responses(
        (status = 200, description = "docks the caller sees", body = DockList),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<DockList>> {
    Ok(Json(DockList {
        docks: inventory::list(&state, &caller)
            .await?
            .into_iter()
            .map(DockView::from)
            .collect(),
    }))
}

/// `GET /api/docks/{id}`.
#[utoipa::path(
    get,
    path = "/api/docks/{id}",
    tag = "inventory",
    operation_id = "get_dock",
    params(("id" = String, Path, description = "dock id")),
    responses(
        (status = 200, description = "the dock", body = DockView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<DockView>> {
    Ok(Json(inventory::visible(&state, &caller, &id).await?.into()))
}

/// `DELETE /api/docks/{id}`: 204; its synced volumes and buckets go with it.
#[utoipa::path(
    delete,
    path = "/api/docks/{id}",
    tag = "inventory",
    operation_id = "delete_dock",
    params(("id" = String, Path, description = "dock id")),
    responses(
        (status = 204, description = "deleted with its inventory"),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode> {
    inventory::delete(&state, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/docks/{id}/sync`: syncs now (after a sync of it that is running) and answers the
/// dock; 502 `provider_failed` with the provider's words when it failed (the last good
/// inventory is kept).
#[utoipa::path(
    post,
    path = "/api/docks/{id}/sync",
    tag = "inventory",
    operation_id = "sync_dock",
    params(("id" = String, Path, description = "dock id")),
    responses(
        (status = 200, description = "the dock after the sync", body = DockView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn sync(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<DockView>> {
    Ok(Json(
        inventory::sync_for(&state, &caller, &id).await?.into(),
    ))
}
