//! Workspace containers attached to a bucket: `/api/buckets/{id}/attachments`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::{Access, Caller};
use crate::error::Result;
use crate::extract::{JsonBody, PathParams};
use crate::openapi::{Failed, Refused};
use kalpana_domain::lifecycle::{self, attachments};
use kalpana_domain::model::KeyAccess;

/// Body of `POST /api/buckets/{id}/attachments`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Attach {
    /// Name or id of a container labelled `kalpana.workspace.id=<the bucket's workspace>`.
    container: String,
    /// What its key may do (default `read-write`).
    access: Option<KeyAccess>,
    /// Only keys under this prefix.
    prefix: Option<String>,
}

/// An attachment, with the environment the container needs (its secret shown only here).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentView {
    id: String,
    container: String,
    container_id: String,
    workspace_id: String,
    key_id: String,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    env: Option<BTreeMap<String, String>>,
}

/// Attachments of a bucket.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttachmentList {
    /// Without secrets.
    attachments: Vec<AttachmentView>,
}

fn view(
    a: kalpana_domain::model::Attachment,
    env: Option<BTreeMap<String, String>>,
) -> AttachmentView {
    AttachmentView {
        id: a.id,
        container: a.container_name,
        container_id: a.container_id,
        workspace_id: a.workspace_id,
        key_id: a.key_id,
        created_at: a.created_at,
        env,
    }
}

/// `POST /api/buckets/{id}/attachments`: 201; the container is on the bucket's attachment
/// network with a key of its own, and `env` tells it how to connect (secret shown only here).
#[utoipa::path(
    post,
    path = "/api/buckets/{id}/attachments",
    tag = "workspaces",
    operation_id = "attach_container",
    params(("id" = String, Path, description = "bucket id")),
    request_body = Attach,
    responses(
        (status = 201, description = "attached", body = AttachmentView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn attach(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(req): JsonBody<Attach>,
) -> Result<(StatusCode, Json<AttachmentView>)> {
    let b = lifecycle::authorized(&state, &caller, &id, Access::Manage).await?;
    let done = attachments::attach(
        &state,
        &caller,
        &b,
        &req.container,
        req.access.unwrap_or(KeyAccess::ReadWrite),
        req.prefix,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(view(done.attachment, Some(done.env))),
    ))
}

/// `GET /api/buckets/{id}/attachments`.
#[utoipa::path(
    get,
    path = "/api/buckets/{id}/attachments",
    tag = "workspaces",
    operation_id = "list_attachments",
    params(("id" = String, Path, description = "bucket id")),
    responses(
        (status = 200, description = "attached containers", body = AttachmentList),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<AttachmentList>> {
    let b = lifecycle::authorized(&state, &caller, &id, Access::Manage).await?;
    Ok(Json(AttachmentList {
        attachments: b.attachments.into_iter().map(|a| view(a, None)).collect(),
    }))
}

/// `DELETE /api/buckets/{id}/attachments/{attachmentId}`: 204; its key is revoked and the
/// container disconnected.
#[utoipa::path(
    delete,
    path = "/api/buckets/{id}/attachments/{attachmentId}",
    tag = "workspaces",
    operation_id = "detach_container",
    params(("id" = String, Path, description = "bucket id"), ("attachmentId" = String, Path, description = "attachment id")),
    responses(
        (status = 204, description = "detached"),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn detach(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((id, attachment_id)): PathParams<(String, String)>,
) -> Result<StatusCode> {
    lifecycle::authorized(&state, &caller, &id, Access::Manage).await?;
    attachments::detach(&state, &id, &attachment_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
