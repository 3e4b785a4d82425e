//! The web console at `/ui/`: plain JavaScript modules and CSS from `crates/api/console/`,
//! embedded in the binary (nothing fetched at run time), served with a strict
//! Content-Security-Policy, `X-Frame-Options: DENY` and ETags. It is a client of the REST API and
//! adds no route of its own beyond its files; `KALPANA_CONSOLE=false` turns it off.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use crate::app::AppState;

/// Every file of the console: path under `/ui/`, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../console/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../console/style.css"),
    ),
    (
        "js/api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/js/api.js"),
    ),
    (
        "js/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/js/app.js"),
    ),
    (
        "js/ui.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/js/ui.js"),
    ),
    (
        "js/buckets.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/js/buckets.js"),
    ),
    (
        "js/bucket.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/js/bucket.js"),
    ),
    (
        "js/files.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/js/files.js"),
    ),
    (
        "js/fleet.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/js/fleet.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../console/favicon.svg"),
    ),
];

/// Bytes the console adds to the binary.
pub fn size() -> usize {
    FILES.iter().map(|(_, _, b)| b.len()).sum()
}

/// The strong ETag of each file, computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        FILES
            .iter()
            .map(|(_, _, b)| format!("\"{}\"", &hex::encode(Sha256::digest(b))[..32]))
            .collect()
    })
}

/// The console's routes (none when it is turned off).
pub fn routes(state: &AppState) -> Router<AppState> {
    if !state.config.console {
        return Router::new();
    }
    let policy = HeaderValue::from_str(&csp(&state.config))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'"));
    let index_policy = policy.clone();
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route(
            "/ui/",
            get(|headers: HeaderMap| async move { file("index.html", &headers, &index_policy) }),
        )
        .route(
            "/ui/{*path}",
            get(|Path(path): Path<String>, headers: HeaderMap| async move {
                file(&path, &headers, &policy)
            }),
        )
}

/// The policy every console answer carries: scripts, styles and everything else from the daemon
/// only (no inline script or style); images, media and frames may also be `blob:` URLs the
/// console made from object bytes it fetched with the token (previews); requests may also go to
/// bucket endpoints (large uploads go straight to the engine with a presigned URL).
fn csp(config: &kalpana_domain::config::Config) -> String {
    let mut connect = vec![
        "'self'".to_string(),
        format!("http://{}:*", config.public_host),
    ];
    if let Some(base) = &config.routing.base_domain {
        let scheme = if config.routing.scheme.is_empty() {
            "http"
        } else {
            &config.routing.scheme
        };
        connect.push(format!("{scheme}://*.{base}:*"));
        connect.push(format!("{scheme}://*.{base}"));
    }
    format!(
        "default-src 'self'; connect-src {}; img-src 'self' blob:; media-src 'self' blob:; frame-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        connect.join(" ")
    )
}

fn file(path: &str, headers: &HeaderMap, policy: &HeaderValue) -> Response {
    let Some(i) = FILES.iter().position(|(p, _, _)| *p == path) else {
        // Paths of the console's own views load the console, which routes them itself.
        return if path.contains('.') {
            crate::error::Error::NotFound("console file").into_response()
        } else {
            file("index.html", headers, policy)
        };
    };
    let (_, content_type, body) = FILES[i];
    let etag = &etags()[i];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, policy.clone());
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    resp
}
