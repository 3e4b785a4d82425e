//! The reconcile loop: one idempotent step per bucket that converges Docker (actual state) on
//! the store (desired state). It runs at start-up, on Docker container events, whenever Docker
//! comes back after an outage, and periodically.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use kalpana_manager_core::spec::container_name;
use kalpana_manager_core::ContainerEvent;
use serde::Serialize;

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::lifecycle;
use crate::model::{now, BucketStatus};

/// How a status message says the daemon is bringing a dead container back.
const RESTARTING: &str = "restarting it";

/// Converges one bucket. Level-triggered: it is not told why it runs.
pub async fn reconcile_one(state: &AppState, id: &str) -> Result<()> {
    let Some(b) = state.store.get_bucket(id).await? else {
        return Ok(());
    };
    // An external bucket has no container: its health is the periodic check's (`external`).
    if b.kind != crate::model::BucketKind::Managed {
        return Ok(());
    }
    if b.deleting {
        let _guard = state.locks.lock(id).await;
        return match state.store.get_bucket(id).await? {
            Some(b) => lifecycle::finish_delete(state, &b).await,
            None => Ok(()),
        };
    }
    match b.status {
        // Finish what a killed daemon left half-done.
        BucketStatus::Creating => lifecycle::provision(state, id).await,
        BucketStatus::Running => converge_running(state, id).await,
        BucketStatus::Stopped => converge_stopped(state, id).await,
        BucketStatus::Error => Ok(()),
    }
}

/// A RUNNING bucket needs its container of the record's generation, running.
async fn converge_running(state: &AppState, id: &str) -> Result<()> {
    let _guard = state.locks.lock(id).await;
    let Some(mut b) = state.store.get_bucket(id).await? else {
        return Ok(());
    };
    if b.status != BucketStatus::Running || b.deleting {
        return Ok(());
    }
    let actual = state
        .docker
        .inspect_container(&container_name(&b.id))
        .await?;
    let current = actual.as_ref().is_some_and(|c| c.is_current(b.generation));
    if current && actual.as_ref().is_some_and(|c| c.running) {
        if let Some(m) = b.status_message.as_deref() {
            if let Some(why) = m.strip_suffix(RESTARTING) {
                // Docker's restart policy was quicker than we were.
                let msg = format!("{why}back up at {}", now());
                lifecycle::set_status(state, &mut b, BucketStatus::Running, Some(msg), None)
                    .await?;
            }
        }
        return Ok(());
    }
    let why = match &actual {
        None => "container was removed".to_string(),
        Some(_) if !current => "container was of an older configuration".to_string(),
        Some(c) if c.oom_killed => "container was OOM-killed".to_string(),
        Some(c) => format!("container exited (code {})", c.exit_code.unwrap_or(-1)),
    };
    tracing::warn!(bucket = %b.id, reason = %why, "bucket container not serving; bringing it back");
    let msg = format!("{why}; {RESTARTING}");
    lifecycle::set_status(state, &mut b, BucketStatus::Running, Some(msg), None).await?;
    match lifecycle::ensure_running(state, &b).await {
        Ok(()) => {
            let msg = format!("{why}; back up at {}", now());
            lifecycle::set_status(state, &mut b, BucketStatus::Running, Some(msg), None).await
        }
        // Docker away: the message stays and the next pass retries.
        Err(e) if is_docker_down(&e) => Err(e),
        Err(e) => {
            let msg = format!("{why}; could not bring it back: {e}");
            lifecycle::set_status(state, &mut b, BucketStatus::Error, Some(msg), None).await?;
            Err(e)
        }
    }
}

/// A STOPPED bucket's container must not run (a start the daemon died in the middle of is rolled
/// back: the caller never heard it succeed) and must be of the record's generation.
async fn converge_stopped(state: &AppState, id: &str) -> Result<()> {
    let _guard = state.locks.lock(id).await;
    let Some(b) = state.store.get_bucket(id).await? else {
        return Ok(());
    };
    if b.status != BucketStatus::Stopped || b.deleting {
        return Ok(());
    }
    let Some(actual) = state
        .docker
        .inspect_container(&container_name(&b.id))
        .await?
    else {
        // Start recreates it on the kept volume.
        return Ok(());
    };
    if !actual.is_current(b.generation) {
        let spec = lifecycle::spec_for(state, &b)?;
        return lifecycle::ensure_container(state, &b, &spec).await;
    }
    if actual.running {
        tracing::warn!(bucket = %b.id, "container runs though the bucket is STOPPED; stopping it");
        state
            .docker
            .stop_container(&actual.name, lifecycle::STOP_GRACE)
            .await?;
    }
    if b.status_message.as_deref() == Some(lifecycle::STOPPING) {
        // A stop the daemon died in the middle of, now finished.
        let mut b = b;
        lifecycle::set_status(state, &mut b, BucketStatus::Stopped, None, None).await?;
    }
    Ok(())
}

/// Records at once that a RUNNING bucket's container died, before anything brings it back.
async fn note_container_down(state: &AppState, ev: &ContainerEvent) -> Result<()> {
    let _guard = state.locks.lock(&ev.bucket_id).await;
    let Some(mut b) = state.store.get_bucket(&ev.bucket_id).await? else {
        return Ok(());
    };
    if b.status != BucketStatus::Running || b.deleting {
        return Ok(());
    }
    // A container the daemon replaced itself dies too; only the current one matters.
    let current = state
        .docker
        .inspect_container(&container_name(&b.id))
        .await?;
    if current.as_ref().is_some_and(|c| c.id != ev.container_id) {
        return Ok(());
    }
    let why = down_reason(
        &ev.action,
        ev.exit_code,
        current.as_ref().is_some_and(|c| c.oom_killed),
        state.config.limits.memory_bytes,
    );
    tracing::warn!(bucket = %b.id, reason = %why, "bucket container went down");
    let msg = format!("{why}; {RESTARTING}");
    lifecycle::set_status(state, &mut b, BucketStatus::Running, Some(msg), None).await
}

/// Why a bucket container went down, in words: an OOM kill names the memory limit (Docker sends
/// `oom` and then `die`, and the `die` must not hide the reason).
fn down_reason(action: &str, exit_code: Option<i64>, oom_killed: bool, limit_bytes: i64) -> String {
    if action == "oom" || (action == "die" && oom_killed) {
        return format!("out of memory (limit {} MiB)", limit_bytes / (1024 * 1024));
    }
    match action {
        "destroy" => "container was removed".to_string(),
        _ => format!("container exited (code {})", exit_code.unwrap_or(-1)),
    }
}

fn is_docker_down(e: &Error) -> bool {
    matches!(e, Error::Manager(m) if m.is_unavailable())
}

/// Managed resources of this daemon instance that no bucket record accounts for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Orphans {
    /// Containers labelled for this instance without a bucket record.
    pub containers: Vec<OrphanContainer>,
    /// Volumes labelled for this instance without a bucket record (including the data kept by
    /// a delete without `deleteVolume=true`).
    pub volumes: Vec<OrphanVolume>,
}

/// A container without a bucket record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrphanContainer {
    /// Container name.
    pub name: String,
    /// Container id.
    pub id: String,
    /// The bucket id on its label, if any.
    pub bucket_id: Option<String>,
    /// Docker's status word.
    pub status: String,
}

/// A volume without a bucket record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrphanVolume {
    /// Volume name.
    pub name: String,
    /// The bucket id on its label, if any.
    pub bucket_id: Option<String>,
}

/// Lists managed containers and volumes whose bucket has no record. Never removes anything.
pub async fn find_orphans(state: &AppState) -> Result<Orphans> {
    let containers = state.docker.list_managed_containers().await?;
    let volumes = state.docker.list_managed_volumes().await?;
    // Records are read after Docker, so a bucket created meanwhile is not mistaken for missing.
    let known: HashSet<String> = crate::store::all_buckets(&*state.store)
        .await?
        .into_iter()
        .map(|b| b.id)
        .collect();
    let unknown = |id: &Option<String>| id.as_ref().is_none_or(|id| !known.contains(id));
    Ok(Orphans {
        containers: containers
            .into_iter()
            .filter(|c| unknown(&c.bucket_id))
            .map(|c| OrphanContainer {
                name: c.name,
                id: c.id,
                bucket_id: c.bucket_id,
                status: c.status,
            })
            .collect(),
        volumes: volumes
            .into_iter()
            .filter(|(_, id)| unknown(id))
            .map(|(name, bucket_id)| OrphanVolume { name, bucket_id })
            .collect(),
    })
}

/// Reconciles every bucket and reports managed resources that have no record.
pub async fn reconcile_all(state: &AppState) -> Result<()> {
    for b in crate::store::all_buckets(&*state.store).await? {
        if let Err(e) = reconcile_one(state, &b.id).await {
            state.metrics.inc("kalpana_reconcile_failures_total", &[]);
            tracing::warn!(bucket = %b.id, error = %e, "reconcile failed; will retry");
        }
    }
    let orphans = find_orphans(state).await?;
    state.metrics.inc("kalpana_reconcile_passes_total", &[]);
    for (kind, n) in [
        ("container", orphans.containers.len()),
        ("volume", orphans.volumes.len()),
    ] {
        state
            .metrics
            .set("kalpana_orphans", &[("kind", kind)], n as f64);
    }
    report_orphans(&orphans);
    Ok(())
}

/// Logs orphans when the set changed since the last pass, so a standing orphan is not repeated
/// every pass.
fn report_orphans(found: &Orphans) {
    static LAST: Mutex<Option<Orphans>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    if last.as_ref() == Some(found) {
        return;
    }
    for c in &found.containers {
        tracing::warn!(container = %c.name, bucket = ?c.bucket_id, status = %c.status,
            "orphan: managed container without a bucket record (left in place; see /api/admin/orphans)");
    }
    for v in &found.volumes {
        tracing::warn!(volume = %v.name, bucket = ?v.bucket_id,
            "orphan: managed volume without a bucket record (left in place; see /api/admin/orphans)");
    }
    *last = Some(found.clone());
}

/// Runs the loop: a full pass now and every `KALPANA_RESYNC_SECS`, a step per Docker event, and a full pass
/// whenever the event stream is reopened after it broke, ended or Docker was away (events may have
/// been missed).
pub fn spawn(state: AppState) {
    let periodic = state.clone();
    tokio::spawn(async move {
        loop {
            if let Err(e) = reconcile_all(&periodic).await {
                tracing::warn!(error = %e, "reconcile pass failed");
            }
            tokio::time::sleep(periodic.config.resync_interval).await;
        }
    });
    tokio::spawn(async move {
        // Before the first stream the periodic loop's opening pass covers everything; after any
        // stream ends, events may have been missed until the next one is open.
        let (mut docker_down, mut reopened) = (false, false);
        loop {
            if let Err(e) = state.docker.ping().await {
                if !docker_down {
                    tracing::warn!(error = %e, "Docker is unreachable; waiting for it");
                    docker_down = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            if docker_down {
                tracing::info!("Docker is reachable again");
                docker_down = false;
                // Down from the start: the opening pass failed, so a full pass is due as well.
                reopened = true;
            }
            if reopened {
                tracing::info!("watching Docker events again; reconciling every bucket");
                let st = state.clone();
                tokio::spawn(async move {
                    if let Err(e) = reconcile_all(&st).await {
                        tracing::warn!(error = %e, "reconcile pass failed");
                    }
                });
            }
            let mut events = Box::pin(state.docker.container_events());
            let mut broke = false;
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(ev) if matches!(ev.action.as_str(), "die" | "destroy" | "oom") => {
                        tracing::info!(bucket = %ev.bucket_id, action = %ev.action, exit_code = ?ev.exit_code, "container event");
                        state
                            .metrics
                            .inc("kalpana_container_events_total", &[("action", &ev.action)]);
                        let st = state.clone();
                        tokio::spawn(async move {
                            if let Err(e) = note_container_down(&st, &ev).await {
                                tracing::warn!(bucket = %ev.bucket_id, error = %e, "recording a container event failed");
                            }
                            // Give Docker's restart policy its turn first.
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            if let Err(e) = reconcile_one(&st, &ev.bucket_id).await {
                                st.metrics.inc("kalpana_reconcile_failures_total", &[]);
                                tracing::warn!(bucket = %ev.bucket_id, error = %e, "reconcile after event failed");
                            }
                        });
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "Docker event stream broke; reconnecting");
                        broke = true;
                        break;
                    }
                }
            }
            if !broke {
                tracing::warn!("Docker event stream ended; reconnecting");
            }
            reopened = true;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oom_kill_names_the_limit_even_in_the_die_event_after_it() {
        let limit = 512 * 1024 * 1024;
        assert_eq!(
            down_reason("oom", None, false, limit),
            "out of memory (limit 512 MiB)"
        );
        assert_eq!(
            down_reason("die", Some(137), true, limit),
            "out of memory (limit 512 MiB)"
        );
        assert_eq!(
            down_reason("die", Some(137), false, limit),
            "container exited (code 137)"
        );
        assert_eq!(
            down_reason("destroy", None, false, limit),
            "container was removed"
        );
    }
}
