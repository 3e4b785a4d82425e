//! The HTTP side of `/metrics`: a middleware that counts every answered request under its route
//! template and a method from a fixed set (the registry itself is `kalpana_domain::metrics`).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::app::AppState;

pub use kalpana_domain::metrics::{Metrics, Scrape};

/// The method as a label value: one of the methods HTTP defines, or `OTHER`. A client may send
/// any token as a method, and every distinct label value is a series kept for the daemon's life.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// Middleware: counts every answered request under its route template (never the raw path, so
/// ids and keys do not become labels) and a method from a fixed set: every label has a bounded
/// number of values, whatever clients send.
pub async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let response = next.run(req).await;
    state.metrics.observe_request(
        method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_http_are_one_label() {
        let odd = axum::http::Method::from_bytes(&[b'X'; 3000]).expect("a token");
        assert_eq!(method_label(&odd), "OTHER");
        assert_eq!(method_label(&axum::http::Method::PATCH), "PATCH");
    }
}
