//! Domains: registered by a user or a team, linked to buckets as `<subdomain>.<domain>`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::extract::{JsonBody, PathParams};
use crate::lifecycle;
use crate::model::{new_id, now, Domain};
use crate::openapi::{Failed, Refused};
use crate::routes::buckets::{view, BucketView};
use crate::validate;

/// Body of `POST /api/domains`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateDomain {
    name: String,
    team_id: Option<String>,
}

/// The JSON view of a domain.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DomainView {
    id: String,
    name: String,
    user_id: String,
    team_id: Option<String>,
    created_at: String,
}

impl From<Domain> for DomainView {
    fn from(d: Domain) -> Self {
        DomainView {
            id: d.id,
            name: d.name,
            user_id: d.user_id,
            team_id: d.team_id,
            created_at: d.created_at,
        }
    }
}

fn can_use(caller: &Caller, d: &Domain) -> bool {
    caller.user.admin
        || d.user_id == caller.user.id
        || d.team_id.as_ref().is_some_and(|t| caller.teams.contains(t))
}

/// `POST /api/domains`: 201; 409 when the name is registered already.
#[utoipa::path(
    post,
    path = "/api/domains",
    tag = "domains",
    operation_id = "create_domain",
    request_body = CreateDomain,
    responses(
        (status = 201, description = "the domain", body = DomainView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<CreateDomain>,
) -> Result<(StatusCode, Json<DomainView>)> {
    let name = req.name.trim_end_matches('.').to_ascii_lowercase();
    validate::domain_name(&name)?;
    if let Some(team) = &req.team_id {
        if !caller.user.admin && !caller.teams.contains(team) {
            return Err(Error::NotFound("team"));
        }
    }
    let d = Domain {
        id: new_id(),
        name,
        user_id: caller.user.id.clone(),
        team_id: req.team_id,
        created_at: now(),
    };
    state.store.insert_domain(&d).await?;
    tracing::info!(domain = %d.id, name = %d.name, owner = %d.user_id, "domain registered");
    Ok((StatusCode::CREATED, Json(d.into())))
}

/// `GET /api/domains`: the domains the caller may use.
#[utoipa::path(
    get,
    path = "/api/domains",
    tag = "domains",
    operation_id = "list_domains",
    responses(
        (status = 200, description = "the domains the caller may use", body = Vec<DomainView>),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<DomainView>>> {
    Ok(Json(
        state
            .store
            .list_domains()
            .await?
            .into_iter()
            .filter(|d| can_use(&caller, d))
            .map(DomainView::from)
            .collect(),
    ))
}

/// Body of `POST /api/buckets/{id}/domain`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinkDomain {
    domain_id: String,
    subdomain: Option<String>,
}

/// `POST /api/buckets/{id}/domain`: routes `<subdomain>.<domain>` to the bucket too (the
/// subdomain defaults to the bucket's). The container is replaced; data, ports and keys stay.
#[utoipa::path(
    post,
    path = "/api/buckets/{id}/domain",
    tag = "domains",
    operation_id = "link_domain",
    params(("id" = String, Path, description = "bucket id")),
    request_body = LinkDomain,
    responses(
        (status = 200, description = "the bucket", body = BucketView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn link(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(req): JsonBody<LinkDomain>,
) -> Result<Json<BucketView>> {
    let b = lifecycle::visible(&state, &caller, &id).await?;
    let domain = state
        .store
        .get_domain(&req.domain_id)
        .await?
        .filter(|d| can_use(&caller, d))
        .ok_or(Error::NotFound("domain"))?;
    if state.config.routing.base_domain.is_none() {
        return Err(Error::Unprocessable(
            "routing through Traefik is off: set KALPANA_BASE_DOMAIN to link domains".into(),
        ));
    }
    let sub = match req.subdomain {
        Some(s) => s,
        None => b
            .subdomain
            .clone()
            .unwrap_or_else(|| validate::subdomain_from_name(&b.name)),
    };
    validate::dns_label(&sub)?;
    let host = format!("{sub}.{}", domain.name);
    let b = lifecycle::set_link(&state, &id, Some(domain.id), Some(host)).await?;
    Ok(Json(view(&state, b, None)))
}

/// `DELETE /api/buckets/{id}/domain`: only the default host routes to the bucket afterwards.
#[utoipa::path(
    delete,
    path = "/api/buckets/{id}/domain",
    tag = "domains",
    operation_id = "unlink_domain",
    params(("id" = String, Path, description = "bucket id")),
    responses(
        (status = 200, description = "the bucket", body = BucketView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn unlink(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<BucketView>> {
    lifecycle::visible(&state, &caller, &id).await?;
    let b = lifecycle::set_link(&state, &id, None, None).await?;
    Ok(Json(view(&state, b, None)))
}
