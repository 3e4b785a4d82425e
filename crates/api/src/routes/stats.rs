//! Usage stats routes: a bucket's object count, bytes and quota, with its container's resource
//! use, as recorded or recounted now.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::{Access, Caller};
use crate::error::Result;
use crate::extract::{PathParams, QueryParams};
use crate::openapi::{Failed, Refused};
use kalpana_domain::{lifecycle, usage};

/// Usage of a bucket and its container's resource use.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatsView {
    object_count: u64,
    total_size_bytes: u64,
    #[serde(rename = "maxSizeGB")]
    max_size_gb: Option<f64>,
    last_synced_at: Option<String>,
    container: Option<ContainerStatsView>,
    /// The container's samples over the asked period (`?history=1h`), oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<Vec<kalpana_domain::fleet::Point>>,
}

/// Query of `GET /api/buckets/{id}/stats`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatsQuery {
    /// Also the container's resource samples of this last period: `90s`, `30m`, `1h`, `2d`.
    history: Option<String>,
}

/// One sample of the container's resource use.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatsView {
    memory_bytes: Option<u64>,
    memory_limit_bytes: Option<u64>,
    cpu_seconds: Option<f64>,
    pids: Option<u64>,
}

/// `POST /api/buckets/{id}/stats/sync`: recounts the bucket from its S3 server now (one
/// listing request per 1,000 objects) and answers the fresh stats.
#[utoipa::path(
    post,
    path = "/api/buckets/{id}/stats/sync",
    tag = "objects",
    operation_id = "sync_bucket_stats",
    params(("id" = String, Path, description = "bucket id")),
    responses(
        (status = 200, description = "usage just recounted, and container resources", body = StatsView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn sync_stats(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<StatsView>> {
    // A recount asked for reads the engine: a sleeping bucket wakes for it.
    let (_b, _awake) = kalpana_domain::sleep::serving(&state, &caller, &id, Access::Read).await?;
    usage::sync_one(&state, &id).await?;
    let b = lifecycle::visible(&state, &caller, &id).await?;
    Ok(Json(stats_of(&state, b).await))
}

/// `GET /api/buckets/{id}/stats`.
#[utoipa::path(
    get,
    path = "/api/buckets/{id}/stats",
    tag = "objects",
    operation_id = "bucket_stats",
    params(("id" = String, Path, description = "bucket id"), StatsQuery),
    responses(
        (status = 200, description = "usage and container resources", body = StatsView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn stats(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    QueryParams(q): QueryParams<StatsQuery>,
) -> Result<Json<StatsView>> {
    let b = lifecycle::visible(&state, &caller, &id).await?;
    let history = crate::routes::fleet::duration_param("history", q.history.as_deref())?;
    let mut view = stats_of(&state, b).await;
    if let Some(back) = history {
        view.history = Some(
            state
                .fleet
                .history(&id, crate::routes::fleet::since_ms(back), None),
        );
    }
    Ok(Json(view))
}

/// A bucket's stats from its record, with a sample of its container's resources.
async fn stats_of(state: &AppState, mut b: kalpana_domain::model::BucketRecord) -> StatsView {
    state.pending_usage.overlay(&mut b);
    let container = kalpana_domain::backend::resources(state, &b)
        .await
        .map(|s| ContainerStatsView {
            memory_bytes: s.memory_bytes,
            memory_limit_bytes: s.memory_limit_bytes,
            cpu_seconds: s.cpu_seconds,
            pids: s.pids,
        });
    StatsView {
        object_count: b.object_count,
        total_size_bytes: b.total_size_bytes,
        max_size_gb: b.max_size_gb,
        last_synced_at: b.stats_synced_at,
        container,
        history: None,
    }
}
