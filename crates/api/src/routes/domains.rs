//! Domains: registered by a user or a team, linked to buckets as `<subdomain>.<domain>`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::{Access, Caller};
use crate::error::{Error, Result};
use crate::extract::{JsonBody, PathParams};
use crate::openapi::{Failed, Refused};
use crate::routes::buckets::{view, BucketView};
use kalpana_domain::lifecycle;
use kalpana_domain::model::{new_id, now, Domain};
use kalpana_domain::secrets::new_token;
use kalpana_domain::{dns, validate};

/// Body of `POST /api/domains`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateDomain {
    name: String,
    team_id: Option<String>,
}

/// The DNS record that proves control of a domain.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationView {
    /// Name of the TXT record to create.
    record_name: String,
    /// Always `TXT`.
    record_type: &'static str,
    /// The value it must hold.
    value: String,
}

/// The JSON view of a domain.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DomainView {
    id: String,
    name: String,
    user_id: String,
    team_id: Option<String>,
    /// `pending` until control is proven, then `verified`; a pending domain routes nothing.
    status: &'static str,
    /// What to publish in DNS before `POST /api/domains/{id}/verify`.
    verification: VerificationView,
    verified_at: Option<String>,
    created_at: String,
}

impl From<Domain> for DomainView {
    fn from(d: Domain) -> Self {
        DomainView {
            verification: VerificationView {
                record_name: d.challenge_name(),
                record_type: "TXT",
                value: d.verification_token.clone(),
            },
            status: if d.verified_at.is_some() {
                "verified"
            } else {
                "pending"
            },
            id: d.id,
            name: d.name,
            user_id: d.user_id,
            team_id: d.team_id,
            verified_at: d.verified_at,
            created_at: d.created_at,
        }
    }
}

fn can_use(caller: &Caller, d: &Domain) -> bool {
    caller.user.admin
        || d.user_id == caller.user.id
        || d.team_id.as_ref().is_some_and(|t| caller.teams.contains(t))
}

/// Whether `name` is the daemon's base domain or under it: those hosts are the daemon's own.
fn reserved(state: &AppState, name: &str) -> bool {
    state
        .config
        .routing
        .base_domain
        .as_deref()
        .is_some_and(|base| name == base || name.ends_with(&format!(".{base}")))
}

/// `POST /api/domains`: 201 with the domain, `pending` until control of it is proven with the
/// TXT record it names (or an admin approves it); 409 when the name is registered already or is
/// the daemon's base domain or under it.
#[utoipa::path(
    post,
    path = "/api/domains",
    tag = "domains",
    operation_id = "create_domain",
    request_body = CreateDomain,
    responses(
        (status = 201, description = "the domain, pending verification", body = DomainView),
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
    if reserved(&state, &name) {
        return Err(Error::Conflict(format!(
            "{name} is the daemon's base domain or under it: its hosts belong to buckets"
        )));
    }
    // A team's domains are registered by its members, not its viewers.
    kalpana_domain::requests::may_create_in(&caller, req.team_id.as_deref())?;
    let _cap =
        kalpana_domain::caps::reserve(&state, &caller, kalpana_domain::caps::Kind::Domains).await?;
    let d = Domain {
        id: new_id(),
        name,
        user_id: caller.user.id.clone(),
        team_id: req.team_id,
        verification_token: format!("kalpana-verify={}", new_token()),
        verified_at: None,
        verified_by: None,
        created_at: now(),
    };
    state.store.insert_domain(&d).await?;
    tracing::info!(domain = %d.id, name = %d.name, owner = %d.user_id, "domain registered, pending verification");
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

async fn usable_domain(state: &AppState, caller: &Caller, id: &str) -> Result<Domain> {
    state
        .store
        .get_domain(id)
        .await?
        .filter(|d| can_use(caller, d))
        .ok_or(Error::NotFound("domain"))
}

/// How long the DNS server may take to answer a verification query.
const DNS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `POST /api/domains/{id}/verify`: looks up the TXT record `_kalpana-challenge.<name>` on the
/// configured DNS server; 200 `verified` when it holds the token, 422 `verification_failed`
/// saying what was found otherwise (the domain stays pending).
#[utoipa::path(
    post,
    path = "/api/domains/{id}/verify",
    tag = "domains",
    operation_id = "verify_domain",
    params(("id" = String, Path, description = "domain id")),
    responses(
        (status = 200, description = "the domain, verified", body = DomainView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<DomainView>> {
    let mut d = usable_domain(&state, &caller, &id).await?;
    if d.verified_at.is_some() {
        return Ok(Json(d.into()));
    }
    let server = state.config.dns_resolver.ok_or_else(|| {
        Error::Unprocessable(
            "no DNS server to ask: set KALPANA_DNS_RESOLVER, or have an admin approve the domain"
                .into(),
        )
    })?;
    let record = d.challenge_name();
    if d.verification_token.is_empty() {
        // Registered before verification existed: it gets its value now.
        d.verification_token = format!("kalpana-verify={}", new_token());
        state.store.update_domain(&d).await?;
        return Err(crate::error::Domain::VerificationFailed(format!(
            "publish a TXT record {record} holding {} and try again",
            d.verification_token
        ))
        .into());
    }
    let found = dns::txt_records(server, &record, DNS_TIMEOUT).await?;
    if !found.iter().any(|t| t.trim() == d.verification_token) {
        tracing::info!(domain = %d.id, name = %d.name, records = found.len(), "domain verification failed");
        return Err(crate::error::Domain::VerificationFailed(if found.is_empty() {
            format!("no TXT record {record} was found; publish one holding the verification value and try again")
        } else {
            format!(
                "the TXT record {record} does not hold the verification value (found {} other value(s))",
                found.len()
            )
        }).into());
    }
    d.verified_at = Some(now());
    d.verified_by = Some("dns".into());
    state.store.update_domain(&d).await?;
    tracing::info!(domain = %d.id, name = %d.name, "domain verified by DNS");
    Ok(Json(d.into()))
}

/// `POST /api/domains/{id}/approve` (admin): marks the domain verified without DNS.
#[utoipa::path(
    post,
    path = "/api/domains/{id}/approve",
    tag = "domains",
    operation_id = "approve_domain",
    params(("id" = String, Path, description = "domain id")),
    responses(
        (status = 200, description = "the domain, verified", body = DomainView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<DomainView>> {
    let mut d = usable_domain(&state, &caller, &id).await?;
    caller.require_admin()?;
    if d.verified_at.is_none() {
        d.verified_at = Some(now());
        d.verified_by = Some(format!("admin:{}", caller.user.id));
        state.store.update_domain(&d).await?;
        tracing::info!(domain = %d.id, name = %d.name, admin = %caller.user.id, "domain approved by an admin");
    }
    Ok(Json(d.into()))
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
    let b = lifecycle::authorized(&state, &caller, &id, Access::Manage).await?;
    let domain = usable_domain(&state, &caller, &req.domain_id).await?;
    if domain.verified_at.is_none() {
        return Err(Error::Conflict(format!(
            "domain {} is not verified: publish the TXT record {} and call POST /api/domains/{}/verify",
            domain.name,
            domain.challenge_name(),
            domain.id
        )));
    }
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
    if reserved(&state, &host) {
        return Err(Error::Conflict(format!(
            "{host} is under the daemon's base domain"
        )));
    }
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
    lifecycle::authorized(&state, &caller, &id, Access::Manage).await?;
    let b = lifecycle::set_link(&state, &id, None, None).await?;
    Ok(Json(view(&state, b, None)))
}
