//! Request body guard: a body that stalls (no bytes for `idle`) or trickles (slower than
//! `min_rate` on average once `grace` has passed) is cut off with [`BodyTimeout`], which the
//! handlers answer with 408. Uploads of any size still pass as long as bytes keep flowing.

use kalpana_domain::config::BodyPace;
pub use kalpana_domain::upload::timed_out;
use kalpana_domain::upload::BodyTimeout;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::Frame;
use tokio::time::{Instant, Sleep};

/// Wraps every request body in the guard.
pub async fn guard(State(pace): State<BodyPace>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let guarded = Body::new(Guarded::new(body, pace));
    next.run(Request::from_parts(parts, guarded)).await
}

struct Guarded {
    inner: Body,
    pace: BodyPace,
    started: Instant,
    received: u64,
    /// Armed when the guard starts waiting for the client, not when a frame was handed on: a
    /// handler that stops reading for a while (back-pressure) must not time the client out.
    idle: Pin<Box<Sleep>>,
    waiting: bool,
}

impl Guarded {
    fn new(inner: Body, pace: BodyPace) -> Self {
        Guarded {
            inner,
            pace,
            started: Instant::now(),
            received: 0,
            idle: Box::pin(tokio::time::sleep(pace.idle)),
            waiting: false,
        }
    }
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                let elapsed = this.started.elapsed();
                if elapsed > this.pace.grace
                    && (this.received as f64) < this.pace.min_rate as f64 * elapsed.as_secs_f64()
                {
                    return Poll::Ready(Some(Err(axum::Error::new(BodyTimeout(format!(
                        "the request body arrives too slowly ({} bytes in {} s; at least {} bytes/s are needed)",
                        this.received,
                        elapsed.as_secs(),
                        this.pace.min_rate
                    ))))));
                }
                this.waiting = false;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    let deadline = Instant::now() + this.pace.idle;
                    this.idle.as_mut().reset(deadline);
                }
                match this.idle.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimeout(
                        format!("no request body bytes for {} s", this.pace.idle.as_secs()),
                    ))))),
                    Poll::Pending => Poll::Pending,
                }
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
