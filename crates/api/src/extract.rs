//! Extractors whose rejections are [`Error`]s, so a malformed, oversized or stalled request is
//! answered with the JSON error body like every other failure.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;

use crate::body_guard;
use crate::error::Error;

/// Largest JSON request body accepted.
pub const JSON_LIMIT: usize = 64 * 1024;

/// A JSON request body (at most [`JSON_LIMIT`] bytes).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

/// The answer to a request body that failed while it was read: 408 when it stalled or
/// trickled, 400 otherwise.
pub fn body_error(e: &(dyn std::error::Error + 'static)) -> Error {
    match body_guard::timed_out(e) {
        Some(why) => Error::RequestTimeout(why),
        None => Error::BadRequest(format!("the request body failed: {e}")),
    }
}

fn json_rejection(rej: JsonRejection) -> Error {
    if let Some(why) = body_guard::timed_out(&rej) {
        return Error::RequestTimeout(why);
    }
    if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return Error::BodyTooLarge(format!(
            "JSON request bodies are limited to {JSON_LIMIT} bytes"
        ));
    }
    Error::BadRequest(rej.body_text())
}

/// Query parameters.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(QueryParams(v)),
            Err(rej) => Err(query_rejection(rej)),
        }
    }
}

fn query_rejection(rej: QueryRejection) -> Error {
    Error::BadRequest(rej.body_text())
}

/// Path parameters.
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(PathParams(v)),
            Err(rej) => Err(Error::BadRequest(rej.body_text())),
        }
    }
}
