//! The OpenAPI 3 description of the REST API, generated from the handlers' annotations and the
//! request and response types, and served at `GET /api/openapi.json`.

use axum::Json;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};

/// Every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `not_found`, `quota_exceeded`, `docker_unavailable`.
    pub code: String,
    /// What happened, for people.
    pub message: String,
}

/// Refused (4xx): `error.code` says why: bad_request, unauthorized, forbidden, not_found,
/// conflict, body_too_large, quota_exceeded, request_timeout, range_not_satisfiable,
/// unprocessable.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct Refused(ErrorBody);

/// Failed (5xx): 503 when Docker, the store or the bucket's server is unavailable
/// (docker_unavailable, bucket_unreachable, ports_exhausted, image_unavailable); 500/502 for
/// internal and S3 failures.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct Failed(ErrorBody);

/// The document's fixed parts; the router adds every route.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kalpana Buckets",
        description = "Every bucket its own S3 server in its own container.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(ErrorBody, ErrorDetail), responses(Refused, Failed)),
    tags(
        (name = "buckets", description = "bucket lifecycle"),
        (name = "objects", description = "objects and presigned URLs"),
        (name = "identities", description = "users and teams"),
        (name = "domains", description = "domains and links"),
        (name = "defaults", description = "default buckets per purpose"),
        (name = "workspaces", description = "workspaces buckets are linked to"),
        (name = "events", description = "status events"),
        (name = "admin", description = "administration"),
        (name = "health", description = "liveness and readiness")
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /api/openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "health",
    responses((status = 200, description = "the OpenAPI document", content_type = "application/json", body = Object)),
    security(())
)]
pub async fn document() -> Json<Option<&'static Document>> {
    Json(DOCUMENT.get())
}

static DOCUMENT: std::sync::OnceLock<Document> = std::sync::OnceLock::new();

/// Makes `doc` the document `GET /api/openapi.json` serves (the first one given wins: every
/// router built in one process has the same routes).
pub fn publish(doc: Document) {
    let _ = DOCUMENT.set(doc);
}
