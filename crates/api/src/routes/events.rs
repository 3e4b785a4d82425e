//! `GET /api/events`: server-sent events of the caller's buckets.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use crate::app::AppState;
use crate::auth::Caller;
use crate::openapi::{Failed, Refused};

/// Streams `bucket.status`, `bucket.progress`, `image.pull` and `bucket.deleted` events of the
/// buckets the caller can see. Team membership is checked again per event, so a removed member
/// stops receiving at once.
#[utoipa::path(
    get,
    path = "/api/events",
    tag = "events",
    operation_id = "events",
    responses(
        (status = 200, description = "server-sent events (bucket.status, bucket.progress, image.pull, bucket.credentials, bucket.domain, bucket.deleted), each data line a BucketEvent", content_type = "text/event-stream", body = String),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut rx = state.events.subscribe();
    let mut down = state.shutdown.subscribe();
    let stream = async_stream::stream! {
        loop {
            let received = tokio::select! {
                r = rx.recv() => r,
                // Shutting down: end the stream so the server can finish.
                _ = down.wait_for(|d| *d) => break,
            };
            match received {
                Ok(ev) => {
                    // A team bucket's events go to the team's members only: its creator, once
                    // removed from the team, sees no more of it (as in `Caller::access`).
                    let visible = caller.user.admin
                        || match &ev.team_id {
                            Some(team) => state
                                .store
                                .get_team(team)
                                .await
                                .ok()
                                .flatten()
                                .is_some_and(|t| t.members.contains(&caller.user.id)),
                            None => ev.user_id == caller.user.id,
                        };
                    if !visible {
                        continue;
                    }
                    if let Ok(data) = serde_json::to_string(&ev) {
                        yield Ok(Event::default().event(ev.kind.as_str()).data(data));
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    yield Ok(Event::default().event("lagged").data(format!("{{\"missed\":{n}}}")));
                }
                Err(RecvError::Closed) => break,
            }
        }
    };
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
