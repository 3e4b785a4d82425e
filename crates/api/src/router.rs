//! The whole router in one place.

use axum::extract::DefaultBodyLimit;
use axum::http::header::{
    ACCEPT_RANGES, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, LAST_MODIFIED,
    RANGE,
};
use axum::http::{HeaderValue, Method};
use axum::middleware;
use axum::routing::{delete, get, post};
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::body_guard;
use crate::error::Error;
use crate::extract::JSON_LIMIT;
use crate::routes::{admin, buckets, domains, events, health, identities, objects};

/// Every route of the REST API.
pub fn router(state: AppState) -> Router {
    let router = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/api/me", get(identities::me))
        .route("/api/users", post(identities::create_user))
        .route("/api/teams", post(identities::create_team))
        .route("/api/teams/{id}/members", post(identities::add_member))
        .route(
            "/api/teams/{id}/members/{user_id}",
            delete(identities::remove_member),
        )
        .route("/api/buckets", post(buckets::create).get(buckets::list))
        .route(
            "/api/buckets/{id}",
            get(buckets::get)
                .patch(buckets::update)
                .delete(buckets::delete),
        )
        .route("/api/buckets/{id}/start", post(buckets::start))
        .route("/api/buckets/{id}/stop", post(buckets::stop))
        .route(
            "/api/buckets/{id}/credentials/rotate",
            post(buckets::rotate_credentials),
        )
        .route(
            "/api/buckets/{id}/objects",
            post(objects::upload_form)
                .get(objects::list)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/api/buckets/{id}/objects/{key}",
            get(objects::get)
                .head(objects::head)
                .put(objects::put)
                .delete(objects::delete)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/api/buckets/{id}/objects/{key}/metadata",
            get(objects::metadata),
        )
        .route(
            "/api/buckets/{id}/presigned-upload",
            post(objects::presigned_upload),
        )
        .route(
            "/api/buckets/{id}/presigned-download",
            post(objects::presigned_download),
        )
        .route("/api/buckets/{id}/stats", get(objects::stats))
        .route("/api/domains", post(domains::create).get(domains::list))
        .route(
            "/api/buckets/{id}/domain",
            post(domains::link).delete(domains::unlink),
        )
        .route("/api/events", get(events::stream))
        .route("/api/admin/orphans", get(admin::orphans))
        .route(
            "/api/admin/orphans/containers/{name}",
            delete(admin::remove_container),
        )
        .route(
            "/api/admin/orphans/volumes/{name}",
            delete(admin::remove_volume),
        )
        .fallback(|| async { Error::NotFound("route") })
        // Upload routes lift this limit for themselves; every JSON body stays small.
        .layer(DefaultBodyLimit::max(JSON_LIMIT))
        .layer(middleware::from_fn_with_state(
            state.config.body_pace,
            body_guard::guard,
        ));
    let router = match cors(&state.config.cors_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router.layer(TraceLayer::new_for_http()).with_state(state)
}

/// The CORS layer for browser uploads, when origins are configured.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::PUT,
                Method::POST,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([AUTHORIZATION, CONTENT_TYPE, RANGE])
            .expose_headers([
                ETAG,
                CONTENT_RANGE,
                CONTENT_LENGTH,
                ACCEPT_RANGES,
                LAST_MODIFIED,
            ])
            .max_age(std::time::Duration::from_secs(3600)),
    )
}
