//! The one error type of the api crate, and the one place it becomes an HTTP answer.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Everything that can go wrong in the daemon. Each variant documents its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400: the request is malformed or breaks a rule.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no or unknown bearer token.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// 403: authenticated but not allowed (only for resources the caller can see).
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such resource, or one the caller may not see.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 409: conflicts with existing state.
    #[error("{0}")]
    Conflict(String),
    /// 413: the upload would take the bucket over its quota, or the body is too large.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 422: the operation is not one this kind of bucket can do.
    #[error("{0}")]
    NotSupported(String),
    /// 422: an external bucket did not answer its credentials.
    #[error("{0}")]
    ExternalUnreachable(String),
    /// 422: an endpoint the endpoint policy refuses.
    #[error("{0}")]
    EndpointNotAllowed(String),
    /// 408: the request body stalled or arrived too slowly.
    #[error("{0}")]
    RequestTimeout(String),
    /// 413: a JSON request body over the limit.
    #[error("{0}")]
    BodyTooLarge(String),
    /// 416: the requested range is outside the object.
    #[error("the requested range is not satisfiable for an object of this size")]
    RangeNotSatisfiable,
    /// 422: a domain's DNS record does not prove control of it.
    #[error("{0}")]
    VerificationFailed(String),
    /// 429: the caller holds as many buckets or ports as one owner may.
    #[error("{0}")]
    OwnerLimit(String),
    /// 422: understood but not possible (e.g. a feature the engine lacks).
    #[error("{0}")]
    Unprocessable(String),
    /// 503: a dependency (Docker, the store) is down or a resource is exhausted.
    #[error("{0}")]
    Unavailable(String),
    /// A cloud provider refused a dock's token (422).
    #[error("{0}")]
    ProviderRefused(String),
    /// A cloud provider failed or answered garbage (502, its words shown).
    #[error("{0}")]
    ProviderFailed(String),
    /// Docker-side failure; status depends on its kind.
    #[error(transparent)]
    Manager(#[from] kalpana_manager_core::Error),
    /// S3-side failure: 502.
    #[error(transparent)]
    S3(#[from] kalpana_s3_ops::Error),
    /// 500: the store failed in a way that is not the caller's fault.
    #[error("store: {0}")]
    Store(String),
    /// 500: anything else.
    #[error("internal: {0}")]
    Internal(String),
}

/// Result with [`Error`] as default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// HTTP status and stable error code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use kalpana_manager_core::Error as M;
        use kalpana_s3_ops::Error as S;
        match self {
            Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Error::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded"),
            Error::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Error::BodyTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            Error::RangeNotSatisfiable => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable")
            }
            Error::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            Error::VerificationFailed(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "verification_failed")
            }
            Error::OwnerLimit(_) => (StatusCode::TOO_MANY_REQUESTS, "owner_limit"),
            Error::NotSupported(_) => (StatusCode::UNPROCESSABLE_ENTITY, "not_supported"),
            Error::ExternalUnreachable(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "external_unreachable")
            }
            Error::EndpointNotAllowed(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "endpoint_not_allowed")
            }
            Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Error::ProviderRefused(_) => (StatusCode::UNPROCESSABLE_ENTITY, "provider_refused"),
            Error::ProviderFailed(_) => (StatusCode::BAD_GATEWAY, "provider_failed"),
            Error::Manager(M::DockerUnavailable(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "docker_unavailable")
            }
            Error::Manager(M::NetworkNotIsolated(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "network_not_isolated")
            }
            Error::Manager(M::PortTaken { .. }) => (StatusCode::SERVICE_UNAVAILABLE, "port_taken"),
            Error::Manager(M::PortsExhausted(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "ports_exhausted")
            }
            Error::Manager(M::UnknownEngine(_) | M::InvalidName { .. }) => {
                (StatusCode::BAD_REQUEST, "bad_request")
            }
            Error::Manager(M::ImageUnavailable { .. }) => {
                (StatusCode::SERVICE_UNAVAILABLE, "image_unavailable")
            }
            Error::Manager(_) => (StatusCode::INTERNAL_SERVER_ERROR, "docker_error"),
            Error::S3(S::Unreachable { .. }) => {
                (StatusCode::SERVICE_UNAVAILABLE, "bucket_unreachable")
            }
            Error::S3(S::Body(_)) => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::S3(S::NotAllowed(_)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "endpoint_not_allowed")
            }
            Error::S3(_) => (StatusCode::BAD_GATEWAY, "s3_error"),
            Error::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store_error"),
            Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = if let Error::S3(kalpana_s3_ops::Error::Unreachable { .. }) = &self {
            // The endpoint and the SDK's words are the daemon's business, not the client's.
            tracing::warn!(error = %self, code, "bucket S3 server unreachable");
            "the bucket's S3 server is unreachable; try again shortly".to_string()
        } else if status.is_server_error()
            && status != StatusCode::SERVICE_UNAVAILABLE
            && !matches!(self, Error::ProviderFailed(_))
        {
            // Details of internal failures go to the log, not to the client.
            tracing::error!(error = %self, code, "request failed");
            "internal error; see the daemon log".to_string()
        } else {
            self.to_string()
        };
        (
            status,
            Json(json!({ "error": { "code": code, "message": message } })),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_bucket_says_so_without_engine_or_sdk_details() {
        let e = Error::S3(kalpana_s3_ops::Error::Unreachable {
            endpoint: "http://127.0.0.1:40123".into(),
            message: "dispatch failure: io error: connection refused (os error 111)".into(),
        });
        let resp = e.into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(resp.into_body(), 4096)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("\"bucket_unreachable\""), "{text}");
        for leak in ["127.0.0.1", "40123", "dispatch", "os error"] {
            assert!(!text.contains(leak), "{leak} reached the client: {text}");
        }
    }
}
