//! `POST /api/buckets/{id}/test`: can the daemon reach the bucket, read it, and (asked) write it?

use std::time::Instant;

use axum::extract::State;
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::{Access, Caller};
use crate::error::Result;
use crate::extract::{PathParams, QueryParams};
use crate::openapi::{Failed, Refused};
use kalpana_domain::lifecycle;

/// Query of the connection test.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ProbeQuery {
    /// Also put and delete a probe object (needs write access).
    #[serde(default)]
    write: bool,
}

/// What the connection test found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeView {
    /// Everything asked for worked.
    ok: bool,
    /// How long the test took.
    latency_ms: u64,
    /// A listing worked.
    can_read: bool,
    /// A probe object was written and deleted (null when not asked).
    can_write: Option<bool>,
    /// What failed, in the provider's words, or what worked.
    message: String,
}

/// `POST /api/buckets/{id}/test[?write=true]`: lists one key (and with `write`, puts and deletes
/// a probe object under `.kalpana-probe/`). Failures are answers (`ok: false`), not errors.
#[utoipa::path(
    post,
    path = "/api/buckets/{id}/test",
    tag = "buckets",
    operation_id = "test_bucket",
    params(("id" = String, Path, description = "bucket id"), ProbeQuery),
    responses(
        (status = 200, description = "what worked and what did not", body = ProbeView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    QueryParams(q): QueryParams<ProbeQuery>,
) -> Result<Json<ProbeView>> {
    let needed = if q.write { Access::Write } else { Access::Read };
    let b = lifecycle::authorized(&state, &caller, &id, needed).await?;
    let started = Instant::now();
    let client = kalpana_domain::clients::s3(&state, &b);
    let (can_read, mut message) = match &client {
        Ok(c) => match c.check_access().await {
            Ok(()) => (true, "listing works".to_string()),
            Err(e) => (
                false,
                format!(
                    "listing failed: {}",
                    kalpana_domain::external::provider_words(&e)
                ),
            ),
        },
        Err(e) => (false, e.to_string()),
    };
    let can_write = match (&client, q.write && can_read) {
        (Ok(c), true) => {
            let key = format!(".kalpana-probe/{}", uuid::Uuid::new_v4().simple());
            let body: kalpana_s3_ops::BodyStream = Box::pin(futures::stream::once(async {
                Ok::<_, kalpana_s3_ops::BoxError>(Bytes::from_static(b"kalpana probe"))
            }));
            let written = c.put_object(&key, Some("text/plain"), Some(13), body).await;
            let deleted = match &written {
                Ok(_) => c.delete_object(&key).await,
                Err(_) => Ok(()),
            };
            match written.map(|_| ()).and(deleted) {
                Ok(()) => {
                    message.push_str("; writing and deleting work");
                    Some(true)
                }
                Err(e) => {
                    message = format!(
                        "listing works; writing failed: {}",
                        kalpana_domain::external::provider_words(&e)
                    );
                    Some(false)
                }
            }
        }
        (_, true) => Some(false),
        (_, false) if q.write => Some(false),
        _ => None,
    };
    let ok = can_read && can_write.unwrap_or(true);
    tracing::info!(bucket = %b.id, ok, can_read, ?can_write, "bucket connection tested");
    Ok(Json(ProbeView {
        ok,
        latency_ms: started.elapsed().as_millis() as u64,
        can_read,
        can_write,
        message,
    }))
}
