//! Scoped access keys of a bucket: `/api/buckets/{id}/keys`.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::{Access, Caller};
use crate::error::Result;
use crate::extract::{JsonBody, PathParams};
use crate::openapi::{Failed, Refused};
use kalpana_domain::keys::{self, NewKey};
use kalpana_domain::lifecycle;
use kalpana_domain::model::{KeyAccess, KeyRotation, ScopedKey};

/// Body of `POST /api/buckets/{id}/keys`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateKey {
    /// Free text, e.g. the workspace or agent that holds it.
    name: String,
    /// `read`, `write` or `read-write`.
    access: KeyAccess,
    /// Only keys under this prefix (e.g. `agents/summary/`).
    prefix: Option<String>,
    /// Lifetime in seconds (at most a year); none: until revoked.
    expires_in: Option<u64>,
}

/// A scoped key; `secretKey` only in the answer that made it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    id: String,
    name: String,
    access_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_key: Option<String>,
    access: KeyAccess,
    prefix: Option<String>,
    expires_at: Option<String>,
    created_at: String,
    /// Who made it (none for keys made before this was kept).
    created_by: Option<String>,
    /// When and why its secret was last replaced.
    rotated: Option<KeyRotation>,
}

fn view(k: ScopedKey, secret_key: Option<String>) -> KeyView {
    KeyView {
        id: k.id,
        name: k.name,
        access_key: k.access_key,
        secret_key,
        access: k.access,
        prefix: k.prefix,
        expires_at: k.expires_at,
        created_at: k.created_at,
        created_by: k.created_by,
        rotated: k.rotated,
    }
}

/// Keys of a bucket.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyList {
    /// No secrets.
    keys: Vec<KeyView>,
}

/// `POST /api/buckets/{id}/keys`: 201 with the key and its secret (shown only here). The engine
/// enforces its scope.
#[utoipa::path(
    post,
    path = "/api/buckets/{id}/keys",
    tag = "buckets",
    operation_id = "create_key",
    params(("id" = String, Path, description = "bucket id")),
    request_body = CreateKey,
    responses(
        (status = 201, description = "the key, with its secretKey (shown only here)", body = KeyView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(req): JsonBody<CreateKey>,
) -> Result<(StatusCode, Json<KeyView>)> {
    lifecycle::authorized(&state, &caller, &id, Access::Manage).await?;
    let (key, secret) = keys::create(
        &state,
        &id,
        NewKey {
            created_by: caller.user.id.clone(),
            name: req.name,
            access: req.access,
            prefix: req.prefix,
            expires_in: req.expires_in.map(Duration::from_secs),
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view(key, Some(secret)))))
}

/// `GET /api/buckets/{id}/keys`: the keys, without secrets.
#[utoipa::path(
    get,
    path = "/api/buckets/{id}/keys",
    tag = "buckets",
    operation_id = "list_keys",
    params(("id" = String, Path, description = "bucket id")),
    responses(
        (status = 200, description = "the bucket's keys", body = KeyList),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<KeyList>> {
    let b = lifecycle::authorized(&state, &caller, &id, Access::Manage).await?;
    Ok(Json(KeyList {
        keys: b.keys.into_iter().map(|k| view(k, None)).collect(),
    }))
}

/// `DELETE /api/buckets/{id}/keys/{keyId}`: 204; the engine refuses the key within seconds (at
/// once when the bucket runs, when it next runs otherwise).
#[utoipa::path(
    delete,
    path = "/api/buckets/{id}/keys/{keyId}",
    tag = "buckets",
    operation_id = "revoke_key",
    params(("id" = String, Path, description = "bucket id"), ("keyId" = String, Path, description = "key id")),
    responses(
        (status = 204, description = "revoked"),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((id, key_id)): PathParams<(String, String)>,
) -> Result<StatusCode> {
    lifecycle::authorized(&state, &caller, &id, Access::Manage).await?;
    keys::revoke(&state, &id, &key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/buckets/{id}/keys/{keyId}/rotate`: a new access key and secret for the key (the
/// secret shown only here); the old ones are refused at once. Same scope, name and expiry.
#[utoipa::path(
    post,
    path = "/api/buckets/{id}/keys/{keyId}/rotate",
    tag = "buckets",
    operation_id = "rotate_key",
    params(("id" = String, Path, description = "bucket id"), ("keyId" = String, Path, description = "key id")),
    responses(
        (status = 200, description = "the key, with its new secretKey (shown only here)", body = KeyView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((id, key_id)): PathParams<(String, String)>,
) -> Result<Json<KeyView>> {
    lifecycle::authorized(&state, &caller, &id, Access::Manage).await?;
    let (key, secret) = keys::rotate(&state, &id, &key_id, "rotated on request").await?;
    Ok(Json(view(key, Some(secret))))
}
