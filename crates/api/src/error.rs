//! The one error type of the api crate, and the one place it becomes an HTTP answer.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// What a request can fail with: the domain's errors, and the few that only HTTP knows (a
/// missing token, a body that stalls or is too large, a malformed request). Each is given its
/// status in [`Error::status_and_code`], the one place that decides.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400: the request is malformed (a query, a header, a path).
    #[error("{0}")]
    BadRequest(String),
    /// 401: no or unknown bearer token.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// 403: authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such resource, or one the caller may not see.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 409: conflicts with existing state.
    #[error("{0}")]
    Conflict(String),
    /// 408: the request body stalled or arrived too slowly.
    #[error("{0}")]
    RequestTimeout(String),
    /// 413: a JSON request body over the limit.
    #[error("{0}")]
    BodyTooLarge(String),
    /// 422: understood but not possible.
    #[error("{0}")]
    Unprocessable(String),
    /// 500: anything else.
    #[error("internal: {0}")]
    Internal(String),
    /// What the domain said.
    #[error(transparent)]
    Domain(#[from] Domain),
}

/// The domain's error, as the api sees it.
pub use kalpana_domain::Error as Domain;

impl From<kalpana_manager_core::Error> for Error {
    fn from(e: kalpana_manager_core::Error) -> Self {
        Error::Domain(e.into())
    }
}

impl From<kalpana_s3_ops::Error> for Error {
    fn from(e: kalpana_s3_ops::Error) -> Self {
        Error::Domain(e.into())
    }
}

/// Result with [`Error`] as default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// HTTP status and stable error code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use kalpana_manager_core::Error as M;
        use Domain as D;
        match self {
            Error::BadRequest(_) | Error::Domain(D::Invalid(_)) => {
                (StatusCode::BAD_REQUEST, "bad_request")
            }
            Error::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Error::Forbidden(_) | Error::Domain(D::Forbidden(_)) => {
                (StatusCode::FORBIDDEN, "forbidden")
            }
            Error::NotFound(_) | Error::Domain(D::NotFound(_)) => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            Error::Conflict(_) | Error::Domain(D::Conflict(_)) => {
                (StatusCode::CONFLICT, "conflict")
            }
            Error::RequestTimeout(_) | Error::Domain(D::BodyTimedOut(_)) => {
                (StatusCode::REQUEST_TIMEOUT, "request_timeout")
            }
            Error::Domain(D::BodyFailed(_)) => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::BodyTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            Error::Unprocessable(_) | Error::Domain(D::Unprocessable(_)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable")
            }
            Error::Internal(_) | Error::Domain(D::Internal(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
            Error::Domain(D::QuotaExceeded(_)) => (StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded"),
            Error::Domain(D::RangeNotSatisfiable) => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable")
            }
            Error::Domain(D::VerificationFailed(_)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "verification_failed")
            }
            Error::Domain(D::LimitReached(_)) => (StatusCode::TOO_MANY_REQUESTS, "owner_limit"),
            Error::Domain(D::NotSupported { .. }) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "not_supported")
            }
            Error::Domain(D::ExternalUnreachable(_)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "external_unreachable")
            }
            Error::Domain(D::EndpointNotAllowed(_)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "endpoint_not_allowed")
            }
            Error::Domain(D::Unavailable(_)) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Error::Domain(D::WakeQueueFull(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "wake_queue_full")
            }
            Error::Domain(D::ProviderRefused(_)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "provider_refused")
            }
            Error::Domain(D::ProviderFailed(_)) => (StatusCode::BAD_GATEWAY, "provider_failed"),
            Error::Domain(D::Runtime(m)) => match m {
                M::DockerUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "docker_unavailable"),
                M::NetworkNotIsolated(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "network_not_isolated")
                }
                M::PortTaken { .. } => (StatusCode::SERVICE_UNAVAILABLE, "port_taken"),
                M::PortsExhausted(_) => (StatusCode::SERVICE_UNAVAILABLE, "ports_exhausted"),
                M::UnknownEngine(_) | M::InvalidName { .. } => {
                    (StatusCode::BAD_REQUEST, "bad_request")
                }
                M::ImageUnavailable { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, "image_unavailable")
                }
                M::Storage(s) => s3_status(s),
                M::Unsupported { .. } => (StatusCode::NOT_IMPLEMENTED, "not_supported"),
                M::NodeUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "node_unavailable"),
                M::UnknownJob(_) => (StatusCode::NOT_FOUND, "not_found"),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "docker_error"),
            },
            Error::Domain(D::S3(s)) => s3_status(s),
            Error::Domain(D::Store(_)) => (StatusCode::INTERNAL_SERVER_ERROR, "store_error"),
        }
    }

    /// Whether this is a bucket's S3 server that could not be reached.
    fn is_unreachable(&self) -> bool {
        use kalpana_s3_ops::Error as S;
        matches!(
            self,
            Error::Domain(Domain::S3(S::Unreachable { .. }))
                | Error::Domain(Domain::Runtime(kalpana_manager_core::Error::Storage(
                    S::Unreachable { .. }
                )))
        )
    }
}

fn s3_status(e: &kalpana_s3_ops::Error) -> (StatusCode, &'static str) {
    use kalpana_s3_ops::Error as S;
    match e {
        S::Unreachable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "bucket_unreachable"),
        S::Body(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        S::NotAllowed(_) => (StatusCode::UNPROCESSABLE_ENTITY, "endpoint_not_allowed"),
        _ => (StatusCode::BAD_GATEWAY, "s3_error"),
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = if self.is_unreachable() {
            // The endpoint and the SDK's words are the daemon's business, not the client's.
            tracing::warn!(error = %self, code, "bucket S3 server unreachable");
            "the bucket's S3 server is unreachable; try again shortly".to_string()
        } else if status.is_server_error()
            && status != StatusCode::SERVICE_UNAVAILABLE
            && !matches!(self, Error::Domain(Domain::ProviderFailed(_)))
        {
            // Details of internal failures go to the log, not to the client.
            tracing::error!(error = %self, code, "request failed");
            "internal error; see the daemon log".to_string()
        } else {
            self.to_string()
        };
        let mut resp = (
            status,
            Json(json!({ "error": { "code": code, "message": message } })),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Everything answered 503 is expected to pass: a client may try again.
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("2"),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_bucket_says_so_without_engine_or_sdk_details() {
        let e = Error::from(kalpana_s3_ops::Error::Unreachable {
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
