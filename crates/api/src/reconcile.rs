//! The reconcile loop: one idempotent step per bucket that converges Docker (actual state) on
//! the store (desired state). It runs at start-up, on Docker container events and periodically.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use kalpana_manager_core::spec::container_name;

use crate::app::AppState;
use crate::error::Result;
use crate::lifecycle;
use crate::model::BucketStatus;

/// How often every bucket is reconciled even without events.
const RESYNC: Duration = Duration::from_secs(30);

/// Converges one bucket. Level-triggered: it is not told why it runs.
pub async fn reconcile_one(state: &AppState, id: &str) -> Result<()> {
    let Some(b) = state.store.get_bucket(id).await? else {
        return Ok(());
    };
    if b.deleting {
        let _guard = state.locks.lock(id).await;
        return lifecycle::finish_delete(state, &b).await;
    }
    match b.status {
        // Finish what a killed daemon left half-done.
        BucketStatus::Creating => lifecycle::provision(state, id).await,
        BucketStatus::Running => {
            let _guard = state.locks.lock(id).await;
            let Some(b) = state.store.get_bucket(id).await? else {
                return Ok(());
            };
            if b.status != BucketStatus::Running {
                return Ok(());
            }
            let actual = state
                .docker
                .inspect_container(&container_name(&b.id))
                .await?;
            if actual.as_ref().is_some_and(|c| c.running) {
                return Ok(());
            }
            let why = match &actual {
                None => "container was removed; recreating it".to_string(),
                Some(c) if c.oom_killed => "container was OOM-killed; restarting it".to_string(),
                Some(c) => format!(
                    "container exited (code {}); restarting it",
                    c.exit_code.unwrap_or(-1)
                ),
            };
            tracing::warn!(bucket = %b.id, reason = %why, "bucket container not running");
            let mut noted = b.clone();
            lifecycle::set_status(state, &mut noted, BucketStatus::Running, Some(why), None)
                .await?;
            match lifecycle::ensure_running(state, &noted).await {
                Ok(()) => {
                    lifecycle::set_status(state, &mut noted, BucketStatus::Running, None, None)
                        .await
                }
                Err(e) => {
                    let msg = format!("could not bring the container back: {e}");
                    lifecycle::set_status(state, &mut noted, BucketStatus::Error, Some(msg), None)
                        .await?;
                    Err(e)
                }
            }
        }
        BucketStatus::Stopped | BucketStatus::Error => Ok(()),
    }
}

/// Reconciles every bucket and reports managed containers that have no record.
pub async fn reconcile_all(state: &AppState) -> Result<()> {
    let all = crate::store::all_buckets(&*state.store).await?;
    let known: HashSet<String> = all.iter().map(|b| b.id.clone()).collect();
    for b in &all {
        if let Err(e) = reconcile_one(state, &b.id).await {
            tracing::warn!(bucket = %b.id, error = %e, "reconcile failed; will retry");
        }
    }
    for c in state.docker.list_managed_containers().await? {
        if c.bucket_id.as_ref().is_none_or(|id| !known.contains(id)) {
            tracing::warn!(container = %c.name, "orphan: managed container without a bucket record (left in place)");
        }
    }
    Ok(())
}

/// Runs the loop forever: a full pass now and every [`RESYNC`], and a step per Docker event.
pub fn spawn(state: AppState) {
    let periodic = state.clone();
    tokio::spawn(async move {
        loop {
            if let Err(e) = reconcile_all(&periodic).await {
                tracing::warn!(error = %e, "reconcile pass failed");
            }
            tokio::time::sleep(RESYNC).await;
        }
    });
    tokio::spawn(async move {
        loop {
            let mut events = Box::pin(state.docker.container_events());
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(ev) if matches!(ev.action.as_str(), "die" | "destroy" | "oom") => {
                        tracing::info!(bucket = %ev.bucket_id, action = %ev.action, exit_code = ?ev.exit_code, "container event");
                        let st = state.clone();
                        tokio::spawn(async move {
                            // Give Docker's restart policy its half second first.
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            if let Err(e) = reconcile_one(&st, &ev.bucket_id).await {
                                tracing::warn!(bucket = %ev.bucket_id, error = %e, "reconcile after event failed");
                            }
                        });
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "Docker event stream broke; reconnecting");
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
}
