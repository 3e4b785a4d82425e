//! `/healthz` (the process answers), `/readyz` (Docker and the store answer) and `/metrics`
//! (Prometheus).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::Json;
use serde::Serialize;

use crate::app::AppState;
use crate::metrics::Scrape;
use kalpana_domain::model::BucketStatus;

/// `/healthz` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: String,
}

/// `/readyz` answer: `ok` or what is wrong, per dependency.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ok` or the Docker error.
    docker: String,
    /// `ok` or the store error.
    store: String,
}

/// The process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses((status = 200, description = "the process answers", body = Health)),
    security(())
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Ready when Docker and the store both answer; 503 with which one is down otherwise.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "Docker and the store answer", body = Readiness),
        (status = 503, description = "Docker or the store does not answer; the body says which", body = Readiness)
    ),
    security(())
)]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let (docker, store) = tokio::join!(
        kalpana_domain::lifecycle::runtime_ready(&state),
        state.store.ping()
    );
    let status = if docker.is_ok() && store.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |r: Result<(), String>| r.map(|()| "ok".to_string()).unwrap_or_else(|e| e);
    let body = Readiness {
        docker: word(docker.map_err(|e| e.to_string())),
        store: word(store.map_err(|e| e.to_string())),
    };
    (status, Json(body))
}

/// Prometheus metrics in the text exposition format: requests by route template and status,
/// request latency, bucket events, container deaths, reconcile passes and failures, orphans,
/// buckets by status, and whether Docker and the store answer. Aggregates only: no bucket id,
/// name or owner appears.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses((status = 200, description = "metrics in the Prometheus text format",
        body = String, content_type = "text/plain; version=0.0.4; charset=utf-8")),
    security(())
)]
pub async fn metrics(
    State(state): State<AppState>,
) -> ([(header::HeaderName, &'static str); 1], String) {
    let (docker, store, records) = tokio::join!(
        kalpana_domain::lifecycle::runtime_ready(&state),
        state.store.ping(),
        kalpana_domain::store::all_buckets(&*state.store)
    );
    let mut buckets: std::collections::BTreeMap<&'static str, u64> = [
        BucketStatus::Creating,
        BucketStatus::Running,
        BucketStatus::Stopped,
        BucketStatus::Error,
    ]
    .into_iter()
    .map(|s| (s.as_str(), 0))
    .collect();
    // A store that does not answer shows as store_up 0 and no bucket counts.
    if let Ok(records) = &records {
        let mut kept_awake = 0u64;
        for b in records {
            *buckets.entry(b.status.as_str()).or_default() += 1;
            if kalpana_domain::sleep::activity(&state, b).is_some_and(|a| a.kept_awake.is_some()) {
                kept_awake += 1;
            }
        }
        state.metrics.set(
            "kalpana_buckets_kept_awake",
            &[("reason", "attachments")],
            kept_awake as f64,
        );
    } else {
        buckets.clear();
    }
    let scrape = Scrape {
        buckets,
        docker_up: docker.is_ok(),
        store_up: store.is_ok() && records.is_ok(),
        events: state.events.counts(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&scrape),
    )
}
