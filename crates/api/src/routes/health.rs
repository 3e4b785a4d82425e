//! `/healthz` (the process answers) and `/readyz` (Docker and the store answer).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

use crate::app::AppState;

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
    let (docker, store) = tokio::join!(state.docker.ping(), state.store.ping());
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
