//! What Traefik's lowest-priority router sends when no bucket router claims a routed host: the
//! bucket's container is stopped, restarting or being replaced, so its labels (and its router)
//! are gone for a moment. S3 clients retry a 503 with `Retry-After`; a 404 from Traefik would
//! tell them the object or bucket does not exist.
//!
//! Traefik adds the `/_kalpana/fallback` prefix (see `traefik/dynamic.yml`), so these requests
//! never reach an API route, whatever the S3 path is. No token: the answer reveals only whether
//! a public host belongs to a bucket.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use kalpana_domain::store::all_buckets;

/// Seconds a client should wait before retrying a bucket that is coming back.
const RETRY_AFTER_SECS: u32 = 2;

fn s3_error(status: StatusCode, code: &str, message: &str, retry: bool) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    if retry {
        h.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    resp
}

/// The routed host a request was sent to, without a port.
fn request_host(headers: &HeaderMap) -> Option<String> {
    // Traefik passes the client's Host on; X-Forwarded-Host says it too.
    let raw = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))?
        .to_str()
        .ok()?;
    let host = raw.split(',').next()?.trim();
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    Some(host.to_ascii_lowercase())
}

/// Whether `host` routes to a bucket: a default host by its (indexed) subdomain, a linked host
/// by a walk of the records.
async fn bucket_host(state: &AppState, host: &str) -> crate::error::Result<bool> {
    if let Some(base) = state.config.routing.base_domain.as_deref() {
        if let Some(sub) = host.strip_suffix(&format!(".{base}")) {
            if !sub.contains('.') {
                return Ok(state.store.subdomain_taken(sub).await?);
            }
        }
    }
    Ok(all_buckets(state.store.as_ref())
        .await?
        .iter()
        .any(|b| !b.deleting && b.linked_host.as_deref() == Some(host)))
}

/// Any method, any path under `/_kalpana/fallback`: 503 with `Retry-After` for a host of a bucket
/// that exists (it is on its way back), 404 `NoSuchBucket` for any other host.
pub async fn answer(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: HeaderMap,
) -> Response {
    let Some(host) = request_host(&headers) else {
        return s3_error(
            StatusCode::NOT_FOUND,
            "NoSuchBucket",
            "no such bucket",
            false,
        );
    };
    // The store is away: the bucket may well exist; let the client retry.
    let known = bucket_host(&state, &host).await.unwrap_or(true);
    if known {
        s3_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the bucket is starting or being replaced; retry shortly",
            true,
        )
    } else {
        s3_error(
            StatusCode::NOT_FOUND,
            "NoSuchBucket",
            "no such bucket",
            false,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_comes_without_port_and_in_lowercase() {
        let mut h = HeaderMap::new();
        h.insert(
            header::HOST,
            HeaderValue::from_static("Photos.Buckets.test:8081"),
        );
        assert_eq!(request_host(&h).as_deref(), Some("photos.buckets.test"));
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("files.example.com"),
        );
        assert_eq!(request_host(&h).as_deref(), Some("files.example.com"));
        assert_eq!(request_host(&HeaderMap::new()), None);
    }
}
