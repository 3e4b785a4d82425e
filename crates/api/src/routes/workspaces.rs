//! Workspaces: `/api/workspaces`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::Result;
use crate::extract::{JsonBody, PathParams};
use crate::openapi::{Failed, Refused};
use crate::routes::buckets::{view, BucketView};
use kalpana_domain::model::Workspace;
use kalpana_domain::workspaces;

/// Body of `POST /api/workspaces`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateWorkspace {
    /// Free text.
    name: String,
    /// Team whose members see it (the caller must be a member, not a viewer).
    team_id: Option<String>,
}

/// Workspaces the caller sees.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkspaceList {
    /// Oldest first.
    workspaces: Vec<Workspace>,
}

/// Buckets linked to a workspace.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkspaceBuckets {
    /// As the caller sees them.
    buckets: Vec<BucketView>,
}

/// `POST /api/workspaces`: 201 with the workspace.
#[utoipa::path(
    post,
    path = "/api/workspaces",
    tag = "workspaces",
    operation_id = "create_workspace",
    request_body = CreateWorkspace,
    responses(
        (status = 201, description = "the workspace", body = Workspace),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<CreateWorkspace>,
) -> Result<(StatusCode, Json<Workspace>)> {
    let w = workspaces::create(&state, &caller, req.name, req.team_id).await?;
    Ok((StatusCode::CREATED, Json(w)))
}

/// `GET /api/workspaces`.
#[utoipa::path(
    get,
    path = "/api/workspaces",
    tag = "workspaces",
    operation_id = "list_workspaces",
    responses(
        (status = 200, description = "workspaces the caller sees", body = WorkspaceList),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<WorkspaceList>> {
    Ok(Json(WorkspaceList {
        workspaces: workspaces::list(&state, &caller).await?,
    }))
}

/// `DELETE /api/workspaces/{id}`: 204; 409 naming the buckets still linked to it.
#[utoipa::path(
    delete,
    path = "/api/workspaces/{id}",
    tag = "workspaces",
    operation_id = "delete_workspace",
    params(("id" = String, Path, description = "workspace id")),
    responses(
        (status = 204, description = "deleted"),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode> {
    workspaces::delete(&state, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/workspaces/{id}/buckets`: the buckets linked to it that the caller sees.
#[utoipa::path(
    get,
    path = "/api/workspaces/{id}/buckets",
    tag = "workspaces",
    operation_id = "workspace_buckets",
    params(("id" = String, Path, description = "workspace id")),
    responses(
        (status = 200, description = "linked buckets", body = WorkspaceBuckets),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn buckets(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<WorkspaceBuckets>> {
    let rows = workspaces::buckets(&state, &caller, &id).await?;
    Ok(Json(WorkspaceBuckets {
        buckets: rows.into_iter().map(|b| view(&state, b, None)).collect(),
    }))
}
