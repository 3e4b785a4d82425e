//! The whole router in one place.

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::error::Error;
use crate::routes::{admin, buckets, domains, events, health, identities, objects};

/// Every route of the REST API.
pub fn router(state: AppState) -> Router {
    Router::new()
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
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
