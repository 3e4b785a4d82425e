//! What Traefik's lowest-priority router sends when no bucket router claims a routed host: the
//! bucket's container is stopped (asleep, or stopping to sleep), restarting or being replaced,
//! so its labels (and its router) are gone for a moment. A bucket's request is passed to the
//! daemon's own listener on the bucket's port, which holds it while the bucket wakes (or its
//! container comes back) and then serves it; a host of no bucket is 404 `NoSuchBucket`.
//!
//! Traefik adds the `/_kalpana/fallback` prefix (see `traefik/dynamic.yml`), so these requests
//! never reach an API route, whatever the S3 path is. No token: the answer reveals only whether
//! a public host belongs to a bucket, and what the bucket's engine answers.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt as _;

use crate::app::AppState;
use kalpana_domain::model::{BucketKind, BucketRecord};
use kalpana_domain::store::all_buckets;

/// The prefix Traefik's catch-all adds.
const PREFIX: &str = "/_kalpana/fallback";

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

/// The bucket `host` routes to: a default host by its subdomain, a linked host by its link.
async fn bucket_of_host(
    state: &AppState,
    host: &str,
) -> crate::error::Result<Option<BucketRecord>> {
    let sub = state
        .config
        .routing
        .base_domain
        .as_deref()
        .and_then(|base| {
            host.strip_suffix(&format!(".{base}"))
                .filter(|sub| !sub.contains('.'))
        });
    if let Some(sub) = sub {
        if !state.store.subdomain_taken(sub).await? {
            return Ok(None);
        }
    }
    Ok(all_buckets(state.store.as_ref())
        .await?
        .into_iter()
        .find(|b| {
            !b.deleting
                && b.kind() == BucketKind::Managed
                && match sub {
                    Some(sub) => b.subdomain.as_deref() == Some(sub),
                    None => b.linked_host.as_deref() == Some(host),
                }
        }))
}

/// Headers that belong to one hop, never passed on.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// One client for every request passed on: no redirects followed, no overall timeout (bodies
/// of any size stream through).
fn client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .unwrap_or_default()
    })
}

/// Any method, any path under `/_kalpana/fallback`: a bucket's request is passed to the
/// daemon's listener on the bucket's port (held there while it wakes) and answered by its
/// engine, streamed both ways; any other host is 404 `NoSuchBucket`.
pub async fn answer(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
) -> Response {
    let Some(host) = request_host(req.headers()) else {
        return s3_error(
            StatusCode::NOT_FOUND,
            "NoSuchBucket",
            "no such bucket",
            false,
        );
    };
    let b = match bucket_of_host(&state, &host).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            return s3_error(
                StatusCode::NOT_FOUND,
                "NoSuchBucket",
                "no such bucket",
                false,
            )
        }
        // The store is away: the bucket may well exist; let the client retry.
        Err(_) => {
            return s3_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "the bucket cannot be looked up right now; retry shortly",
                true,
            )
        }
    };
    let Some(port) = b.port else {
        return s3_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the bucket is still being created; retry shortly",
            true,
        );
    };
    pass_on(&state, req, port).await.unwrap_or_else(|why| {
        tracing::warn!(bucket = %b.id, error = %why, "passing a routed request to the bucket failed");
        s3_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the bucket's server is not reachable; retry shortly",
            true,
        )
    })
}

/// Passes `req` (its prefix taken off) to the daemon's listener on `port` and streams the
/// answer back.
async fn pass_on(state: &AppState, req: Request, port: u16) -> Result<Response, String> {
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .strip_prefix(PREFIX)
        .unwrap_or("/");
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let url = format!("http://{}:{port}{path}", state.config.internal_host());
    let mut headers = HeaderMap::new();
    for (k, v) in &parts.headers {
        if !hop_by_hop(k) {
            headers.append(k.clone(), v.clone());
        }
    }
    let resp = client()
        .request(parts.method, &url)
        .headers(headers)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Response::builder().status(resp.status().as_u16());
    for (k, v) in resp.headers() {
        if !hop_by_hop(k) {
            out = out.header(k.as_str(), v.as_bytes());
        }
    }
    out.body(Body::from_stream(
        resp.bytes_stream().map_err(std::io::Error::other),
    ))
    .map_err(|e| e.to_string())
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
