//! Presigned URLs: requests anyone can make without credentials until they expire, signed for
//! the bucket's public origin. Upload URLs of a bucket with a quota are bounded by a signed
//! length and counted against the quota; every upload URL is followed until it lands.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderValue;
use axum::Json;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::app::AppState;
use crate::auth::{Access, Caller};
use crate::error::{Error, Result};
use crate::extract::{JsonBody, PathParams};
use crate::openapi::{Failed, Refused};
use crate::routes::objects::key_segment_max;
use kalpana_domain::model::now;
use kalpana_domain::validate::KeyUse;
use kalpana_domain::{lifecycle, usage, validate};

/// Longest and default lifetime of a presigned URL.
const MAX_EXPIRY: u64 = 7 * 24 * 3600;
const DEFAULT_EXPIRY: u64 = 3600;

/// Body of the presign routes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PresignRequest {
    key: String,
    /// Lifetime in seconds (default 3600; at most 7 days, or `KALPANA_TEAM_PRESIGN_MAX_SECS`
    /// for a team bucket).
    expires_in: Option<u64>,
    content_type: Option<String>,
    /// Upload only: the exact size the upload will have; signed, so the URL stores no more.
    /// Required for a bucket with a quota, whose remaining room it is counted against until
    /// the URL expires.
    content_length: Option<u64>,
}

/// A presigned URL.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresignView {
    url: String,
    method: String,
    expires_at: String,
    /// Headers the request must carry as given (they are signed).
    headers: HashMap<String, String>,
}

async fn presign(
    state: &AppState,
    caller: &Caller,
    id: &str,
    req: PresignRequest,
    upload: bool,
) -> Result<PresignView> {
    let b = lifecycle::running(
        state,
        caller,
        id,
        if upload { Access::Write } else { Access::Read },
    )
    .await?;
    let usage = if upload { KeyUse::Write } else { KeyUse::Read };
    validate::object_key(&req.key, key_segment_max(&b), usage)?;
    // A team bucket's URLs must not outlive a member's removal by long.
    let max = match b.team_id {
        Some(_) => state.config.team_presign_max.as_secs().min(MAX_EXPIRY),
        None => MAX_EXPIRY,
    };
    let secs = req.expires_in.unwrap_or(DEFAULT_EXPIRY.min(max));
    if !(1..=max).contains(&secs) {
        return Err(Error::BadRequest(format!(
            "expiresIn must be between 1 and {max} seconds{}",
            if b.team_id.is_some() {
                " for a team bucket"
            } else {
                ""
            }
        )));
    }
    if !upload && req.content_length.is_some() {
        return Err(Error::BadRequest(
            "contentLength applies to presigned uploads only".into(),
        ));
    }
    if upload && b.over_quota {
        return Err(usage::over_quota(&b).into());
    }
    let expires = Duration::from_secs(secs);
    if upload && b.quota_bytes().is_some() {
        let Some(len) = req.content_length else {
            return Err(Error::BadRequest(format!(
                "bucket {} has a quota: give contentLength, the exact size of the upload, so the URL can be bounded by it",
                b.name
            )));
        };
        if !state
            .quotas
            .promise(&b, len, std::time::Instant::now() + expires)
        {
            return Err(crate::error::Domain::QuotaExceeded(format!(
                "an upload of {len} bytes would take bucket {} over its quota ({} bytes left, counting uploads in progress and unexpired presigned uploads)",
                b.name,
                state.quotas.remaining(&b).unwrap_or_default()
            )).into());
        }
    }
    if let Some(ct) = &req.content_type {
        HeaderValue::from_str(ct)
            .map_err(|_| Error::BadRequest("contentType is not a valid header value".into()))?;
    }
    let presigner = kalpana_domain::clients::presigner(state, &b)?;
    let signed = if upload {
        // What the key holds now, so the upload can be told apart when it lands.
        let before = kalpana_domain::clients::s3(state, &b)?
            .head_object(&req.key)
            .await?;
        let signed = presigner.presign_put(
            &req.key,
            expires,
            req.content_type.as_deref(),
            req.content_length,
        )?;
        usage::follow_presigned(state, &b, &req.key, before, expires);
        signed
    } else {
        presigner.presign_get(&req.key, expires)?
    };
    let expires_at = (OffsetDateTime::now_utc() + expires)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now());
    Ok(PresignView {
        url: signed.url,
        method: signed.method,
        expires_at,
        headers: signed.headers.into_iter().collect(),
    })
}

/// `POST /api/buckets/{id}/presigned-upload`.
#[utoipa::path(
    post,
    path = "/api/buckets/{id}/presigned-upload",
    tag = "objects",
    params(("id" = String, Path, description = "bucket id")),
    request_body = PresignRequest,
    responses(
        (status = 200, description = "a presigned PUT URL", body = PresignView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn presigned_upload(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(req): JsonBody<PresignRequest>,
) -> Result<Json<PresignView>> {
    Ok(Json(presign(&state, &caller, &id, req, true).await?))
}

/// `POST /api/buckets/{id}/presigned-download`.
#[utoipa::path(
    post,
    path = "/api/buckets/{id}/presigned-download",
    tag = "objects",
    params(("id" = String, Path, description = "bucket id")),
    request_body = PresignRequest,
    responses(
        (status = 200, description = "a presigned GET URL", body = PresignView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn presigned_download(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(req): JsonBody<PresignRequest>,
) -> Result<Json<PresignView>> {
    Ok(Json(presign(&state, &caller, &id, req, false).await?))
}
