//! Fleet monitoring: `/api/fleet` and `/api/fleet/metrics` (admins only).

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::extract::QueryParams;
use crate::openapi::{Failed, Refused};
use kalpana_domain::fleet::{parse_duration, HostSample, Point};

/// A running bucket and its latest sample.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetBucket {
    bucket_id: String,
    name: String,
    user_id: String,
    team_id: Option<String>,
    /// None until its first sample.
    latest: Option<Point>,
}

/// Sums over the running buckets' latest samples.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetTotals {
    /// Running buckets.
    buckets: u64,
    /// Their CPU use, in percent of one CPU.
    cpu_percent: f64,
    /// Their memory in use.
    memory_bytes: u64,
    /// Their memory limits.
    memory_limit_bytes: u64,
    /// Their receive rates.
    rx_bytes_per_sec: f64,
    /// Their send rates.
    tx_bytes_per_sec: f64,
}

/// `GET /api/fleet`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetView {
    /// Seconds between samples.
    sample_every_secs: u64,
    /// The Docker hosts: the one engine, or every node of the cluster.
    nodes: Vec<HostSample>,
    /// Sums.
    totals: FleetTotals,
    /// Every running managed bucket.
    buckets: Vec<FleetBucket>,
}

/// `GET /api/fleet`: the host, totals and every running bucket's latest sample.
#[utoipa::path(
    get,
    path = "/api/fleet",
    tag = "fleet",
    operation_id = "fleet",
    responses(
        (status = 200, description = "the fleet now", body = FleetView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn fleet(State(state): State<AppState>, caller: Caller) -> Result<Json<FleetView>> {
    caller.require_admin()?;
    let mut totals = FleetTotals::default();
    let buckets: Vec<FleetBucket> = kalpana_domain::fleet::sampled_buckets(&state)
        .await?
        .into_iter()
        .map(|b| {
            let latest = state.fleet.latest(&b.id);
            totals.buckets += 1;
            if let Some(p) = &latest {
                totals.cpu_percent += p.cpu_percent.unwrap_or(0.0);
                totals.memory_bytes += p.memory_bytes;
                totals.memory_limit_bytes += p.memory_limit_bytes;
                totals.rx_bytes_per_sec += p.rx_bytes_per_sec.unwrap_or(0.0);
                totals.tx_bytes_per_sec += p.tx_bytes_per_sec.unwrap_or(0.0);
            }
            FleetBucket {
                bucket_id: b.id,
                name: b.name,
                user_id: b.user_id,
                team_id: b.team_id,
                latest,
            }
        })
        .collect();
    Ok(Json(FleetView {
        sample_every_secs: state.config.fleet_sample_interval.as_secs(),
        nodes: state.fleet.hosts(),
        totals,
        buckets,
    }))
}

/// Query of `GET /api/fleet/metrics`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsQuery {
    /// Only this bucket (every sampled bucket otherwise).
    bucket_id: Option<String>,
    /// How far back: `90s`, `30m`, `1h`, `2d` (default 1h).
    since: Option<String>,
    /// At most one point per this long (every sample otherwise).
    step: Option<String>,
}

/// One bucket's series.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Series {
    bucket_id: String,
    points: Vec<Point>,
}

/// `GET /api/fleet/metrics`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MetricsView {
    /// One per bucket.
    series: Vec<Series>,
}

/// A duration parameter, or 400 naming it.
pub fn duration_param(name: &str, value: Option<&str>) -> Result<Option<Duration>> {
    value
        .map(|v| {
            parse_duration(v).ok_or_else(|| {
                Error::BadRequest(format!(
                    "{name} must be a duration such as 90s, 30m, 1h or 2d, not {v:?}"
                ))
            })
        })
        .transpose()
}

/// Unix milliseconds `back` ago.
pub fn since_ms(back: Duration) -> i64 {
    kalpana_domain::fleet::unix_ms(time::OffsetDateTime::now_utc() - back)
}

/// `GET /api/fleet/metrics`: the kept series, per bucket.
#[utoipa::path(
    get,
    path = "/api/fleet/metrics",
    tag = "fleet",
    operation_id = "fleet_metrics",
    params(MetricsQuery),
    responses(
        (status = 200, description = "time series", body = MetricsView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn metrics(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<MetricsQuery>,
) -> Result<Json<MetricsView>> {
    caller.require_admin()?;
    let since = duration_param("since", q.since.as_deref())?.unwrap_or(Duration::from_secs(3600));
    let step = duration_param("step", q.step.as_deref())?;
    let ids: Vec<String> = match q.bucket_id {
        Some(id) => {
            if state.store.get_bucket(&id).await?.is_none() {
                return Err(Error::NotFound("bucket"));
            }
            vec![id]
        }
        None => kalpana_domain::store::all_buckets(&*state.store)
            .await?
            .into_iter()
            .map(|b| b.id)
            .collect(),
    };
    let from = since_ms(since);
    Ok(Json(MetricsView {
        series: ids
            .into_iter()
            .map(|id| Series {
                points: state.fleet.history(&id, from, step),
                bucket_id: id,
            })
            .filter(|s| !s.points.is_empty())
            .collect(),
    }))
}
