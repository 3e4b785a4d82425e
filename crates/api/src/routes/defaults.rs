//! Default buckets per purpose (`general`, `chat`, `forms`, `backups`…): one bucket per purpose in
//! a scope, the caller's own buckets or a team's. Kept on the bucket records themselves, so a
//! deleted bucket takes its defaults with it.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::{Access, Caller};
use crate::error::{Error, Result};
use crate::extract::{JsonBody, PathParams, QueryParams};
use crate::openapi::{Failed, Refused};
use kalpana_domain::lifecycle;
use kalpana_domain::model::BucketRecord;
use kalpana_domain::store::BucketQuery;

/// The scope of a default: the caller's personal buckets, or one team's.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScopeQuery {
    /// A team the caller belongs to (default: the caller's personal buckets).
    team_id: Option<String>,
}

/// Defaults in one scope.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DefaultsView {
    /// Purpose → bucket id.
    defaults: BTreeMap<String, String>,
}

/// Body of `PUT /api/defaults/{purpose}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetDefault {
    /// The bucket to use for the purpose; its scope is the scope of the default.
    bucket_id: String,
}

fn purpose_ok(purpose: &str) -> Result<()> {
    if (1..=32).contains(&purpose.len())
        && purpose
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "purpose {purpose:?} must be 1-32 characters of a-z, 0-9 and -"
        )))
    }
}

/// The buckets of a scope the caller can see.
async fn scope(state: &AppState, caller: &Caller, team: Option<&str>) -> Result<Vec<BucketRecord>> {
    if let Some(t) = team {
        if caller.role_in(t).is_none() {
            return Err(Error::NotFound("team"));
        }
    }
    let query = BucketQuery {
        owner: Some(caller.user.id.clone()),
        teams: caller.teams.clone(),
        team_id: team.map(str::to_string),
        limit: usize::MAX,
        ..Default::default()
    };
    Ok(state
        .store
        .list_buckets(&query)
        .await?
        .into_iter()
        .filter(|b| !b.deleting && caller.can_see(b) && b.team_id.as_deref() == team)
        .collect())
}

/// `GET /api/defaults[?teamId=]`.
#[utoipa::path(
    get,
    path = "/api/defaults",
    tag = "defaults",
    operation_id = "list_defaults",
    params(ScopeQuery),
    responses(
        (status = 200, description = "purpose → bucket id", body = DefaultsView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<ScopeQuery>,
) -> Result<Json<DefaultsView>> {
    let defaults = scope(&state, &caller, q.team_id.as_deref())
        .await?
        .into_iter()
        .flat_map(|b| b.default_for.into_iter().map(move |p| (p, b.id.clone())))
        .collect();
    Ok(Json(DefaultsView { defaults }))
}

/// `PUT /api/defaults/{purpose}`: makes a bucket the default for a purpose in its scope (the
/// bucket that held it before no longer does). Needs the right to manage the bucket.
#[utoipa::path(
    put,
    path = "/api/defaults/{purpose}",
    tag = "defaults",
    operation_id = "set_default",
    params(("purpose" = String, Path, description = "[a-z0-9-]{1,32}")),
    request_body = SetDefault,
    responses(
        (status = 200, description = "the scope's defaults", body = DefaultsView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn set(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(purpose): PathParams<String>,
    JsonBody(req): JsonBody<SetDefault>,
) -> Result<Json<DefaultsView>> {
    purpose_ok(&purpose)?;
    let target = lifecycle::authorized(&state, &caller, &req.bucket_id, Access::Manage).await?;
    let _one_at_a_time = state.locks.defaults.lock().await;
    for b in scope(&state, &caller, target.team_id.as_deref()).await? {
        let holds = b.default_for.contains(&purpose);
        let wanted = b.id == target.id;
        if holds != wanted {
            update(&state, &b.id, |b| {
                if wanted {
                    b.default_for.push(purpose.clone());
                } else {
                    b.default_for.retain(|p| *p != purpose);
                }
            })
            .await?;
        }
    }
    tracing::info!(bucket = %target.id, purpose, team = ?target.team_id, "default bucket set");
    list(
        State(state.clone()),
        caller,
        QueryParams(ScopeQuery {
            team_id: target.team_id,
        }),
    )
    .await
}

/// `DELETE /api/defaults/{purpose}[?teamId=]`: 204; the scope has no default for it then.
#[utoipa::path(
    delete,
    path = "/api/defaults/{purpose}",
    tag = "defaults",
    operation_id = "drop_default",
    params(("purpose" = String, Path, description = "[a-z0-9-]{1,32}"), ScopeQuery),
    responses(
        (status = 204, description = "dropped (or there was none)"),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn drop(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(purpose): PathParams<String>,
    QueryParams(q): QueryParams<ScopeQuery>,
) -> Result<StatusCode> {
    purpose_ok(&purpose)?;
    let _one_at_a_time = state.locks.defaults.lock().await;
    for b in scope(&state, &caller, q.team_id.as_deref()).await? {
        if b.default_for.contains(&purpose) {
            caller.require(&b, Access::Manage)?;
            update(&state, &b.id, |b| b.default_for.retain(|p| *p != purpose)).await?;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Changes one bucket's defaults under its lock.
async fn update(state: &AppState, id: &str, change: impl FnOnce(&mut BucketRecord)) -> Result<()> {
    let Some(mut b) = state.lock_bucket_if(id).await? else {
        return Ok(());
    };
    change(&mut b);
    Ok(b.save().await?)
}
