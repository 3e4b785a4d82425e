//! Following presigned uploads, which the daemon does not see land, to count them.

use std::time::Instant;

use crate::context::Core;
use crate::model::{BucketRecord, BucketStatus};

use super::counters::{adjust, sync_one};

/// Most presigned uploads followed at once (`App::followed_uploads`); past it new ones are left
/// to the periodic recount.
const MAX_FOLLOWED: usize = 4096;

/// Follows a presigned upload of `key` until it lands or its URL expires, and counts it in the
/// bucket's stats when it lands: one HEAD of the key every 2 s for the first minute, every 5 s
/// after that (so a landed upload shows within 5 s, at a cost of 12 requests a minute per URL
/// still open, however large the bucket). `before` is what the key held when the URL was made.
pub fn follow_presigned(
    state: &Core,
    b: &BucketRecord,
    key: &str,
    before: Option<kalpana_s3_ops::ObjectInfo>,
    expires: std::time::Duration,
) {
    use std::sync::atomic::Ordering;
    if state.followed_uploads.fetch_add(1, Ordering::SeqCst) >= MAX_FOLLOWED {
        state.followed_uploads.fetch_sub(1, Ordering::SeqCst);
        tracing::debug!(bucket = %b.id, "too many presigned uploads followed; the periodic recount will count this one");
        return;
    }
    let (state, id, key) = (state.clone(), b.id.clone(), key.to_string());
    let until = Instant::now() + expires;
    let core = state.clone();
    core.tasks.spawn_loop("presigned upload follower", async move {
        let started = Instant::now();
        // Before the last look that did not see the upload: it landed after this.
        let mut unseen_at = started;
        while Instant::now() < until {
            let pause = if started.elapsed() < std::time::Duration::from_secs(60) {
                std::time::Duration::from_secs(2)
            } else {
                std::time::Duration::from_secs(5)
            };
            tokio::time::sleep(pause).await;
            let Ok(Some(b)) = state.store.get_bucket(&id).await else {
                break; // deleted
            };
            if b.status != BucketStatus::Running {
                continue;
            }
            let Ok(client) = crate::clients::s3(&state, &b) else {
                continue;
            };
            let looked_at = Instant::now();
            let Ok(Some(now)) = client.head_object(&key).await else {
                unseen_at = looked_at;
                continue;
            };
            let landed = before
                .as_ref()
                .is_none_or(|old| old.etag != now.etag || old.last_modified != now.last_modified);
            if !landed {
                unseen_at = looked_at;
            }
            if landed && state.pending_usage.recounted_since(&id, unseen_at) {
                // A recount written since it may or may not have counted it: only another
                // recount knows (adding it would count it twice).
                if let Err(e) = sync_one(&state, &id).await {
                    tracing::warn!(bucket = %id, error = %e, "recounting after a presigned upload failed");
                }
                tracing::info!(bucket = %id, key, size = now.size, "presigned upload landed beside a recount; recounted");
                break;
            }
            if landed {
                let old_size = before.as_ref().map_or(0, |o| o.size);
                if let Err(e) = adjust(
                    &state,
                    &b,
                    i64::from(before.is_none()),
                    now.size as i64 - old_size as i64,
                )
                .await
                {
                    tracing::warn!(bucket = %id, error = %e, "counting a presigned upload failed");
                }
                tracing::info!(bucket = %id, key, size = now.size, "presigned upload landed");
                break;
            }
        }
        state.followed_uploads.fetch_sub(1, Ordering::SeqCst);
    });
}
