//! The reconcile loop, in the shape of a Kubernetes controller: `reconcile(bucket)`
//! converges Docker (actual state) on the store (desired state) for one bucket,
//! level-triggered (it is not told why it runs); an error policy retries a failing bucket with
//! back-off; a work queue runs at most one reconcile per bucket at a time, folds a burst of
//! triggers for one bucket into one more run, and bounds how many buckets run at once. Triggers:
//! start-up, Docker container events, Docker coming back after an outage, and a periodic pass.
//! The decisions themselves are pure functions in `decide` (unit-tested); this module carries
//! them out.

use std::time::Duration;

use futures::StreamExt;
use kalpana_manager_core::{ContainerEvent, ContainerState};

use crate::context::{Core, Locked};
use crate::error::{Error, Result};
use crate::lifecycle;
use crate::model::{now, BucketStatus, Phase};

pub mod decide;
mod orphans;
pub mod state;

use decide::{Plan, RunningStep, RESTARTING};
pub use orphans::{find_orphans, remove_orphan};
pub use state::{OrphanContainer, OrphanVolume, Orphans, Reconciler};

/// How long an event's reconcile waits, so Docker's restart policy gets its turn first.
const AFTER_EVENT: Duration = Duration::from_secs(1);

/// Queues a reconcile of bucket `id` after `delay`. A bucket already queued is not queued twice;
/// one being reconciled runs once more when it is done.
pub fn enqueue(state: &Core, id: &str, delay: Duration) {
    {
        let mut w = state.reconciler.work();
        if w.queued.contains(id) {
            return;
        }
        if w.running.contains(id) {
            w.again.insert(id.to_string());
            return;
        }
        w.queued.insert(id.to_string());
    }
    let (core, id) = (state.clone(), id.to_string());
    state.tasks.spawn_task("reconcile", async move {
        let state = core;
        if !delay.is_zero() {
            // A stop does not wait out a requeue's delay: the next daemon reconciles anyway.
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = state.tasks.cancelled() => return,
            }
        }
        let Ok(_slot) = state.reconciler.slots.acquire().await else {
            return;
        };
        {
            let mut w = state.reconciler.work();
            w.queued.remove(&id);
            w.running.insert(id.clone());
        }
        let result = reconcile(&state, &id).await;
        let (next, again) = {
            let mut w = state.reconciler.work();
            w.running.remove(&id);
            // A success has converged: the next event or periodic pass runs it again. Only a
            // failure comes back by itself, with back-off.
            let next = match &result {
                Ok(()) => {
                    w.failures.remove(&id);
                    None
                }
                Err(_) => {
                    let n = w.failures.entry(id.clone()).or_default();
                    *n += 1;
                    Some(decide::backoff(*n))
                }
            };
            (next, w.again.remove(&id))
        };
        if let Err(e) = &result {
            state.metrics.inc("kalpana_reconcile_failures_total", &[]);
            tracing::warn!(bucket = %id, error = %e, retry_in_ms = next.map(|d| d.as_millis() as u64), "reconcile failed; will retry");
        }
        match (again, next) {
            (true, _) => enqueue(&state, &id, Duration::ZERO),
            (false, Some(d)) => enqueue(&state, &id, d),
            (false, None) => {}
        }
    });
}

/// Converges one bucket. Level-triggered: it is not told why it runs.
pub async fn reconcile(state: &Core, id: &str) -> Result<()> {
    let Some(b) = state.store.get_bucket(id).await? else {
        return Ok(());
    };
    match decide::plan(&b) {
        Plan::Nothing => {}
        Plan::FinishDelete => {
            if let Some(b) = state.lock_bucket_if(id).await? {
                lifecycle::finish_delete(state, &b).await?;
            }
        }
        // Finish what a killed daemon left half-done.
        Plan::Provision => lifecycle::provision(state, id).await?,
        Plan::ConvergeRunning => converge_running(state, id).await?,
        Plan::ConvergeStopped => converge_stopped(state, id).await?,
        Plan::ConvergeAsleep => converge_asleep(state, id).await?,
    }
    Ok(())
}

/// A sleeping bucket needs its container of the record's generation, stopped; one found
/// running is recorded awake.
async fn converge_asleep(state: &Core, id: &str) -> Result<()> {
    let Some((mut b, actual)) = observe(state, id, Plan::ConvergeAsleep).await? else {
        return Ok(());
    };
    match decide::asleep(&b, actual.as_ref()) {
        decide::AsleepStep::Asleep => Ok(()),
        decide::AsleepStep::Remake => {
            let spec = lifecycle::spec_for(state, &b)?;
            lifecycle::ensure_container(state, &b, &spec).await
        }
        decide::AsleepStep::Woken => crate::sleep::mark_woken(state, &mut b).await,
    }
}

/// A RUNNING bucket needs its container of the record's generation, running.
async fn converge_running(state: &Core, id: &str) -> Result<()> {
    let Some((mut b, actual)) = observe(state, id, Plan::ConvergeRunning).await? else {
        return Ok(());
    };
    let why = match decide::running(&b, actual.as_ref()) {
        RunningStep::Serving => return Ok(()),
        RunningStep::BackUp => {
            // Docker's restart policy was quicker than we were.
            let why = b
                .down_reason
                .as_deref()
                .map_or_else(|| "container restarted; ".to_string(), |w| format!("{w}; "));
            let msg = format!("{why}back up at {}", now());
            return lifecycle::set_status(state, &mut b, BucketStatus::Running, Some(msg), None)
                .await;
        }
        RunningStep::BringBack(why) => why,
    };
    tracing::warn!(bucket = %b.id, reason = %why, "bucket container not serving; bringing it back");
    mark_restarting(state, &mut b, &why).await?;
    match lifecycle::ensure_running(state, &b).await {
        Ok(()) => {
            let msg = format!("{why}; back up at {}", now());
            lifecycle::set_status(state, &mut b, BucketStatus::Running, Some(msg), None).await
        }
        // Docker away: the message stays and the retry brings it back.
        Err(e) if is_docker_down(&e) => Err(e),
        // Its port held by another process: the bucket keeps it and is tried again (with
        // back-off) until it is free, saying so meanwhile.
        Err(e @ Error::Runtime(kalpana_manager_core::Error::PortTaken { .. })) => {
            mark_restarting(state, &mut b, &format!("{why}; {e}, waiting for it")).await?;
            Err(e)
        }
        Err(e) => {
            let msg = format!("{why}; could not bring it back: {e}");
            lifecycle::set_status(state, &mut b, BucketStatus::Error, Some(msg), None).await?;
            Err(e)
        }
    }
}

/// A STOPPED bucket's container must not run (a start the daemon died in the middle of is rolled
/// back: the caller never heard it succeed) and must be of the record's generation.
async fn converge_stopped(state: &Core, id: &str) -> Result<()> {
    let Some((mut b, actual)) = observe(state, id, Plan::ConvergeStopped).await? else {
        return Ok(());
    };
    let steps = decide::stopped(&b, actual.as_ref());
    if steps.replace {
        let spec = lifecycle::spec_for(state, &b)?;
        return lifecycle::ensure_container(state, &b, &spec).await;
    }
    if let (true, Some(c)) = (steps.stop, &actual) {
        tracing::warn!(bucket = %b.id, "container runs though the bucket is STOPPED; stopping it");
        let _ = c;
        lifecycle::stop_server(state, &b.id).await?;
    }
    if steps.finish_stop {
        // A stop the daemon died in the middle of, now finished.
        lifecycle::set_status(state, &mut b, BucketStatus::Stopped, None, None).await?;
    }
    Ok(())
}

/// Records at once that a RUNNING bucket's container died, before anything brings it back.
async fn note_container_down(state: &Core, ev: &ContainerEvent) -> Result<()> {
    let Some(mut b) = state.lock_bucket_if(&ev.bucket_id).await? else {
        return Ok(());
    };
    if decide::plan(&b) != Plan::ConvergeRunning {
        return Ok(());
    }
    let current = state.runtime.inspect_server(&b.id).await?;
    lifecycle::observed(state, &b, current.as_ref());
    if !decide::event_marks_down(&b, &ev.container_id, current.as_ref()) {
        return Ok(());
    }
    let why = decide::down_reason(
        ev.action,
        ev.exit_code,
        current.as_ref().is_some_and(|c| c.oom_killed),
        state.config.limits.memory_bytes,
    );
    tracing::warn!(bucket = %b.id, reason = %why, "bucket container went down");
    mark_restarting(state, &mut b, &why).await
}

/// The record under the bucket's lock, if it still asks for `plan`, and what the runtime shows
/// of its container.
async fn observe(
    state: &Core,
    id: &str,
    plan: Plan,
) -> Result<Option<(Locked, Option<ContainerState>)>> {
    let Some(b) = state.lock_bucket_if(id).await? else {
        return Ok(None);
    };
    if decide::plan(&b) != plan {
        return Ok(None);
    }
    let actual = state.runtime.inspect_server(&b.id).await?;
    // A bucket whose node went quiet is neither restarted nor moved here: its node's lease
    // decides (see `node_loss`).
    if let Some(node) = actual.as_ref().and_then(|c| c.node_id.as_deref()) {
        if state.nodes.away(node) {
            tracing::debug!(bucket = %b.id, node, "bucket's node is away; left to the node lease");
            return Ok(None);
        }
    }
    lifecycle::observed(state, &b, actual.as_ref());
    Ok(Some((b, actual)))
}

/// Records that a RUNNING bucket's container is down and being brought back, and why.
async fn mark_restarting(state: &Core, b: &mut Locked, why: &str) -> Result<()> {
    b.down_reason = Some(why.to_string());
    lifecycle::set_status_in(
        state,
        b,
        BucketStatus::Running,
        Some(Phase::Restarting),
        Some(format!("{why}; {RESTARTING}")),
        None,
    )
    .await
}

fn is_docker_down(e: &Error) -> bool {
    matches!(e, Error::Runtime(m) if m.is_unavailable())
}

/// Queues every bucket and reports managed resources that have no record.
pub async fn reconcile_all(state: &Core) -> Result<()> {
    for b in crate::store::all_buckets(&*state.store).await? {
        enqueue(state, &b.id, Duration::ZERO);
    }
    // Firewall rules go with a host reboot or a firewall reload; made again here.
    state.runtime.prepare().await?;
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
    orphans::report_orphans(state, &orphans);
    Ok(())
}

/// Runs the loop: a full pass now and every `KALPANA_RESYNC_SECS`, a run per Docker event, and a
/// full pass whenever the event stream is reopened after it broke, ended or Docker was away
/// (events may have been missed).
pub fn spawn(state: Core) {
    if let Some(mut requested) = state.reconciler.take_requests() {
        let served = state.clone();
        state.tasks.spawn_loop("reconcile requests", async move {
            while let Some(id) = requested.recv().await {
                enqueue(&served, &id, Duration::ZERO);
            }
        });
    }
    let periodic = state.clone();
    state.tasks.spawn_loop("reconcile pass", async move {
        loop {
            if let Err(e) = reconcile_all(&periodic).await {
                tracing::warn!(error = %e, "reconcile pass failed");
            }
            tokio::time::sleep(periodic.config.resync_interval).await;
        }
    });
    let watcher = state.clone();
    watcher.tasks.spawn_loop("runtime events", async move {
        // Before the first stream the periodic loop's opening pass covers everything; after any
        // stream ends, events may have been missed until the next one is open.
        let (mut docker_down, mut reopened) = (false, false);
        loop {
            if let Err(e) = lifecycle::runtime_ready(&state).await {
                if !docker_down {
                    tracing::warn!(error = %e, "the container runtime is unreachable; waiting for it");
                    docker_down = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            if docker_down {
                tracing::info!("the container runtime is reachable again");
                docker_down = false;
                // Down from the start: the opening pass failed, so a full pass is due as well.
                reopened = true;
            }
            if reopened {
                tracing::info!("watching Docker events again; reconciling every bucket");
                let st = state.clone();
                state.tasks.spawn_task("reconcile pass", async move {
                    if let Err(e) = reconcile_all(&st).await {
                        tracing::warn!(error = %e, "reconcile pass failed");
                    }
                });
            }
            let mut events = state.runtime.events();
            let mut broke = false;
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(ev) if ev.action.is_down() => {
                        tracing::info!(bucket = %ev.bucket_id, action = ev.action.as_str(), exit_code = ?ev.exit_code, "container event");
                        state.metrics.inc(
                            "kalpana_container_events_total",
                            &[("action", ev.action.as_str())],
                        );
                        let st = state.clone();
                        state.tasks.spawn_task("container event", async move {
                            if let Err(e) = note_container_down(&st, &ev).await {
                                tracing::warn!(bucket = %ev.bucket_id, error = %e, "recording a container event failed");
                            }
                            enqueue(&st, &ev.bucket_id, AFTER_EVENT);
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
