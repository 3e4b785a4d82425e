//! `GET /api/traefik/config`: the dynamic configuration Traefik's HTTP provider polls
//! (`KALPANA_TRAEFIK_PROVIDER=http`, static file `traefik/traefik-http.yml`). Only Traefik's own
//! token (`KALPANA_TRAEFIK_TOKEN`) opens it: not the admin's nor a user's, since it names every
//! user's hosts. What it holds is built by `kalpana_domain::routing_config`.

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::Json;

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::openapi::{Failed, Refused};
use kalpana_domain::routing_config::{self, DynamicConfig};

/// `GET /api/traefik/config`: every routed bucket's router and service, and the catch-all to the
/// daemon, in Traefik's dynamic configuration format. 404 unless the daemon runs with
/// `KALPANA_TRAEFIK_PROVIDER=http`; 401 without `Authorization: Bearer <KALPANA_TRAEFIK_TOKEN>`.
#[utoipa::path(
    get,
    path = "/api/traefik/config",
    tag = "admin",
    operation_id = "traefik_config",
    responses(
        (status = 200, description = "Traefik dynamic configuration (HTTP provider)", body = DynamicConfig),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn config(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<DynamicConfig>> {
    let Some(expected) = state.config.traefik_provider.http_token() else {
        return Err(Error::NotFound("route"));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(Error::Unauthorized)?;
    if !routing_config::token_matches(given.trim(), expected) {
        return Err(Error::Unauthorized);
    }
    let daemon = daemon_url(&state, &headers);
    Ok(Json(routing_config::dynamic_config(&state, &daemon).await?))
}

/// The daemon's API as Traefik reaches it, for the catch-all: the host Traefik polled (its
/// `Host` header, which only the token's holder sets here), else the listen address.
fn daemon_url(state: &AppState, headers: &HeaderMap) -> String {
    let polled = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        });
    match polled {
        Some(host) => format!("http://{host}"),
        None => {
            let listen = &state.config.listen;
            let port = listen.rsplit_once(':').map_or("8080", |(_, p)| p);
            format!("http://{}:{port}", state.config.routing.upstream_host)
        }
    }
}
