//! `/healthz` (the process answers) and `/readyz` (Docker and the store answer).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::app::AppState;

/// The process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when Docker and the store both answer; 503 with which one is down otherwise.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (docker, store) = tokio::join!(state.docker.ping(), state.store.ping());
    let body = json!({
        "docker": docker.as_ref().map(|_| "ok".to_string()).unwrap_or_else(|e| e.to_string()),
        "store": store.as_ref().map(|_| "ok".to_string()).unwrap_or_else(|e| e.to_string()),
    });
    let status = if docker.is_ok() && store.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
