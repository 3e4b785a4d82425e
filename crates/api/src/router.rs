//! The whole router in one place.

use axum::extract::DefaultBodyLimit;
use axum::http::header::{
    ACCEPT_RANGES, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, LAST_MODIFIED,
    RANGE,
};
use axum::http::{HeaderValue, Method};
use axum::middleware;
use axum::routing::{any, get, post};
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::body_guard;
use crate::error::Error;
use crate::extract::JSON_LIMIT;
use crate::metrics;
use crate::openapi::{self, ApiDoc};
use crate::routes::{
    admin, attachments, buckets, connection, copy, defaults, docks, domains, events, fallback,
    fleet, health, identities, inventory, keys, nodes, objects, presign, probe, sleep, snapshots,
    stats, traefik, workspaces,
};

/// Every route of the REST API, described in the OpenAPI document as it is routed.
fn api_routes() -> OpenApiRouter<AppState> {
    // Uploads stream bodies of any size; every other body is small JSON.
    let uploads = OpenApiRouter::new()
        .routes(routes!(objects::upload_form, objects::list))
        .routes(routes!(
            objects::get,
            objects::head,
            objects::put,
            objects::delete
        ))
        .layer(DefaultBodyLimit::disable());
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(openapi::document))
        .routes(routes!(identities::me))
        .routes(routes!(identities::create_user))
        .routes(routes!(identities::create_team, identities::list_teams))
        .routes(routes!(identities::add_member))
        .routes(routes!(identities::remove_member))
        .routes(routes!(buckets::create, buckets::list))
        .routes(routes!(buckets::get, buckets::update, buckets::delete))
        .routes(routes!(buckets::start))
        .routes(routes!(buckets::stop))
        .routes(routes!(sleep::put_to_sleep))
        .routes(routes!(sleep::wake))
        .routes(routes!(buckets::rotate_credentials))
        .merge(uploads)
        .routes(routes!(objects::metadata))
        .routes(routes!(copy::copy))
        .routes(routes!(probe::test))
        .routes(routes!(connection::connection))
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::revoke))
        .routes(routes!(keys::rotate))
        .routes(routes!(workspaces::create, workspaces::list))
        .routes(routes!(workspaces::delete))
        .routes(routes!(workspaces::buckets))
        .routes(routes!(attachments::attach, attachments::list))
        .routes(routes!(attachments::detach))
        .routes(routes!(defaults::list))
        .routes(routes!(defaults::set, defaults::drop))
        .routes(routes!(presign::presigned_upload))
        .routes(routes!(presign::presigned_download))
        .routes(routes!(stats::stats))
        .routes(routes!(stats::sync_stats))
        .routes(routes!(domains::create, domains::list))
        .routes(routes!(domains::verify))
        .routes(routes!(domains::approve))
        .routes(routes!(domains::link, domains::unlink))
        .routes(routes!(docks::create, docks::list))
        .routes(routes!(docks::get, docks::delete))
        .routes(routes!(docks::sync))
        .routes(routes!(inventory::volumes))
        .routes(routes!(inventory::buckets))
        .routes(routes!(inventory::summary))
        .routes(routes!(snapshots::create, snapshots::list))
        .routes(routes!(snapshots::get, snapshots::delete))
        .routes(routes!(snapshots::restore))
        .routes(routes!(fleet::fleet))
        .routes(routes!(fleet::metrics))
        .routes(routes!(nodes::token))
        .routes(routes!(events::stream))
        .routes(routes!(admin::orphans))
        .routes(routes!(admin::remove_container))
        .routes(routes!(admin::remove_volume))
        .routes(routes!(admin::set_aside))
        .routes(routes!(admin::delete_set_aside))
        .routes(routes!(traefik::config))
        .layer(DefaultBodyLimit::max(JSON_LIMIT))
}

/// The OpenAPI document of every route.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

/// The whole router: the API routes, a JSON 404 for anything else, the body guard, CORS when
/// configured, and request tracing.
pub fn router(state: AppState) -> Router {
    let (routes, doc) = api_routes().split_for_parts();
    openapi::publish(doc);
    let router = routes
        // Traefik's catch-all for routed hosts whose bucket router is gone for a moment; not
        // part of the API (nor of its document).
        .route("/_kalpana/fallback", any(fallback::answer))
        .route("/_kalpana/fallback/{*rest}", any(fallback::answer))
        // The node agents' protocol (kalpana_manager_core::node_protocol): their own token,
        // their own body limits; not part of the API's document.
        .merge(
            Router::new()
                .route("/api/fleet/stats", post(nodes::report))
                .route("/api/node/jobs", get(nodes::next_job))
                .route("/api/node/jobs/{job}/parts", post(nodes::part))
                .route("/api/node/jobs/{job}/progress", post(nodes::progress))
                .route("/api/node/jobs/{job}/done", post(nodes::done))
                .layer(DefaultBodyLimit::max(
                    kalpana_manager_core::node_protocol::MAX_REPORT_BYTES,
                )),
        )
        .merge(crate::console::routes(&state))
        .fallback(|| async { Error::NotFound("route") })
        .layer(middleware::from_fn_with_state(
            state.config.body_pace,
            body_guard::guard,
        ))
        // Outside the body guard, so the requests it refuses are counted too.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::record,
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
