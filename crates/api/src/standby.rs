//! A standby daemon (`KALPANA_STANDBY=true`): started while another daemon holds the store
//! lease, it listens on its address at once, answers `/healthz` (the process lives, as a
//! standby) and everything else 503 with `Retry-After` (who is active is logged, not told), and
//! tries the lease every third of its lifetime. When the lease is its own (renewed from that
//! moment) it stops answering as a standby and the caller goes on to start as the active daemon
//! on the same listening socket: a client is never refused a connection by the handover, only
//! held for the start.
//!
//! Assumptions: the daemons share a MongoDB store and `KALPANA_MASTER_KEY` (checked against the
//! store before this is reached), their holder names differ (instance, host or data dir), and
//! the clocks of their hosts agree within a fraction of the lease.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;

use crate::app::AppState;
use crate::error::Result;
use kalpana_domain::error::Error as DomainError;

/// Answers as a standby on `listener` until this daemon holds the lease (`holder`), then
/// returns the lease's renewal, started the moment it was taken (the standby's last
/// connections may take a while to close). A store that does not answer is waited out; other
/// errors end the wait.
pub async fn wait_for_lease(
    state: &AppState,
    holder: &str,
    listener: &TcpListener,
) -> Result<tokio::task::JoinHandle<()>> {
    let app = Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "standby" })) }),
        )
        .fallback(|| async { refusal() });
    let every = (state.config.lease_ttl / 3).max(Duration::from_millis(200));
    let (won_tx, won_rx) = tokio::sync::oneshot::channel::<Result<tokio::task::JoinHandle<()>>>();
    let core = state.core.clone();
    let fence = state.store_fence.clone();
    let me = holder.to_string();
    let trying = tokio::spawn(async move {
        let mut logged = false;
        loop {
            match kalpana_domain::lease::acquire(&core, &me).await {
                Ok(()) => {
                    let renewal = kalpana_domain::lease::spawn_renewal(
                        core.clone(),
                        me.clone(),
                        fence.clone(),
                    );
                    let _ = won_tx.send(Ok(renewal));
                    return;
                }
                Err(DomainError::Conflict(m)) => {
                    if !logged {
                        tracing::info!(reason = %m, every_ms = every.as_millis() as u64,
                            "standby: another daemon is active; answering 503 and trying the lease");
                        logged = true;
                    }
                }
                Err(e @ (DomainError::Store(_) | DomainError::Unavailable(_))) => {
                    tracing::warn!(error = %e, "standby: the store does not answer; trying again");
                }
                Err(e) => {
                    let _ = won_tx.send(Err(e.into()));
                    return;
                }
            }
            tokio::time::sleep(every).await;
        }
    });
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let outcome = tokio::spawn(async move {
        let r = won_rx.await;
        let _ = done_tx.send(());
        r
    });
    crate::accept::serve(listener, app, state.config.conn_limits, async {
        let _ = done_rx.await;
    })
    .await;
    trying.abort();
    let won = outcome
        .await
        .map_err(|e| crate::error::Error::Internal(format!("standby: {e}")))?
        .map_err(|_| crate::error::Error::Internal("standby: the lease loop ended".into()))?;
    let renewal = won?;
    tracing::info!(holder, "standby: the lease is this daemon's; taking over");
    Ok(renewal)
}

/// The 503 of a standby, in the API's error shape (who is active is logged, not told: the
/// holder names a host and a directory).
fn refusal() -> Response {
    let message = "this daemon is a standby; another daemon is active; try again shortly";
    let mut resp = (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": { "code": "standby", "message": message } })),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    resp
}
