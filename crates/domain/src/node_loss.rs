//! Lost nodes of a cluster: one rule decides that a node is gone, its lease in the store.
//!
//! Every report of a node's agent (its heartbeat) that reaches the acting daemon renews that
//! node's lease in the store before it is acknowledged; an agent whose heartbeats go
//! unacknowledged for `KALPANA_FENCE_SECS` stops its node's bucket containers itself. A node
//! whose lease has not been renewed for `KALPANA_NODE_LOST_SECS` is lost: each bucket pinned
//! there is evacuated from its latest snapshot ([`crate::snapshots::evacuate`]) or goes ERROR
//! until the node is back. When a lost node's agent reports again, the old volumes of the
//! buckets that left it are set aside (never served, listed for an admin) and stranded buckets
//! take their status back.
//!
//! Assumptions: daemons sharing a store have clocks within a fraction of the lease of each
//! other. A daemon counts a node's silence from when it began to act at the earliest, so a
//! daemon that was down (or a standby that took over) gives every agent a whole
//! `KALPANA_NODE_LOST_SECS` to reach it before judging. Swarm's own node state is not used.

use std::collections::HashMap;
use std::time::Duration;

use crate::context::Core;
use crate::error::Result;
use crate::model::{now, NodeRecord, SetAsideVolume};
use crate::node_leases::now_ms;
use crate::snapshots::evacuate::{self, Evacuated};

/// Renews node `id`'s lease for a heartbeat of its agent; the heartbeat may be acknowledged
/// only once this returns Ok. A lost node's return is acted on in the background.
pub async fn heartbeat(
    state: &Core,
    id: &str,
    hostname: Option<String>,
    engine_ok: bool,
) -> Result<()> {
    // An agent that reports faster than it should (or a flood under its token) renews once a
    // second at most: the store and the other nodes' heartbeats are not held up by it.
    let fresh = records(state).await?.get(id).is_some_and(|r| {
        r.lost_at_ms.is_none()
            && r.engine_ok == engine_ok
            && (hostname.is_none() || r.hostname == hostname)
            && now_ms() - r.renewed_at_ms < RENEW_AT_MOST_EVERY_MS
    });
    if fresh {
        return Ok(());
    }
    let mut was_lost = None;
    modify(state, id, |r| {
        r.renewed_at_ms = now_ms();
        r.engine_ok = engine_ok;
        if hostname.is_some() {
            r.hostname = hostname;
        }
        was_lost = r.lost_at_ms.take();
    })
    .await?;
    if let Some(at) = was_lost {
        tracing::warn!(node = %id, lost_for_ms = now_ms() - at, "a lost node reports again");
        spawn_node_back(state, id);
    }
    Ok(())
}

/// Least time between two writes of one node's lease.
const RENEW_AT_MOST_EVERY_MS: i64 = 1_000;

/// How often lost nodes are looked for.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// How often buckets are scanned for what evacuations left on nodes that came back (a node's
/// return also starts that at once), in milliseconds.
const SWEEP_EVERY: i64 = 30_000;

/// Every node's record (loaded from the store once).
pub async fn records(state: &Core) -> Result<HashMap<String, NodeRecord>> {
    state.nodes.records(&*state.store).await
}

/// Changes node `id`'s record (made when missing) and writes it to the store.
async fn modify(
    state: &Core,
    id: &str,
    change: impl FnOnce(&mut NodeRecord),
) -> Result<NodeRecord> {
    state.nodes.modify(&*state.store, id, change).await
}

/// Watches the nodes' leases while this daemon acts (a cluster runtime only).
pub fn spawn(state: Core) {
    let watcher = state.clone();
    state.tasks.spawn_loop("lost nodes", async move {
        let mut watch = Watch {
            acting_since: now_ms(),
            last_sweep: 0,
            last_scan: 0,
        };
        loop {
            if let Err(e) = pass(&watcher, &mut watch).await {
                tracing::warn!(error = %e, "looking for lost nodes failed");
            }
            tokio::time::sleep(WATCH_EVERY).await;
        }
    });
}

/// The watcher's clock (Unix milliseconds).
struct Watch {
    /// When this daemon began to act.
    acting_since: i64,
    /// The last scan of every bucket for what evacuations left behind.
    last_sweep: i64,
    /// The last scan of the lost nodes' servers.
    last_scan: i64,
}

/// Lost nodes' servers are scanned every second in the first minute of a loss, then every
/// [`SCAN_LATER`] ms (what is left there is stranded, or a failure being retried).
const SCAN_EARLY_FOR: i64 = 60_000;
const SCAN_LATER: i64 = 5_000;

/// One look: nodes whose lease expired are marked lost; lost nodes' buckets are evacuated
/// (again, for those a failure or a killed daemon left); returned nodes' old volumes are set
/// aside.
async fn pass(state: &Core, watch: &mut Watch) -> Result<()> {
    let lost_after = state.config.node_lost_after.as_millis() as i64;
    let now = now_ms();
    for rec in records(state).await?.into_values() {
        let silent_since = rec.renewed_at_ms.max(watch.acting_since);
        if rec.lost_at_ms.is_none() && now - silent_since >= lost_after {
            let renewed = rec.renewed_at_ms;
            let marked = modify(state, &rec.id, |r| {
                // A heartbeat may have come in meanwhile.
                if r.renewed_at_ms == renewed {
                    r.lost_at_ms = Some(now);
                }
            })
            .await?;
            if marked.lost_at_ms.is_some() {
                tracing::warn!(node = %rec.id, silent_ms = now - rec.renewed_at_ms, "node lost: its lease expired");
            }
        }
    }
    let records = records(state).await?;
    let lost: Vec<&NodeRecord> = records
        .values()
        .filter(|r| r.lost_at_ms.is_some())
        .collect();
    let sweep = watch.last_sweep + SWEEP_EVERY <= now;
    let early = lost
        .iter()
        .any(|r| r.lost_at_ms.is_some_and(|at| now - at < SCAN_EARLY_FOR));
    let scan = !lost.is_empty() && (early || watch.last_scan + SCAN_LATER <= now);
    if !scan && !sweep {
        return Ok(());
    }
    let buckets = crate::store::all_buckets(&*state.store).await?;
    if scan {
        watch.last_scan = now;
        let servers = state.runtime.list_servers().await?;
        // Messages name a node by host name too: learn the names this daemon never heard.
        let named: HashMap<String, String> = if lost.iter().any(|r| r.hostname.is_none()) {
            state
                .runtime
                .hosts()
                .await?
                .into_iter()
                .map(|h| (h.id, h.name))
                .collect()
        } else {
            HashMap::new()
        };
        for rec in lost {
            let mut rec = rec.clone();
            if rec.hostname.is_none() {
                rec.hostname = named.get(&rec.id).cloned();
            }
            let rec = &rec;
            let node = rec.id.as_str();
            let mut ids: Vec<String> = servers
                .iter()
                .filter(|c| c.node_id.as_deref() == Some(node))
                .filter_map(|c| c.bucket_id.clone())
                .collect();
            // Evacuations a failure or a killed daemon left unfinished (their service may be
            // pinned elsewhere already).
            ids.extend(
                buckets
                    .iter()
                    .filter(|b| {
                        b.evacuation
                            .as_ref()
                            .is_some_and(|e| e.from_node == node && e.finished_at.is_none())
                    })
                    .map(|b| b.id.clone()),
            );
            ids.sort();
            ids.dedup();
            for id in ids {
                spawn_evacuation(state, id, rec.clone());
            }
        }
    }
    if sweep {
        watch.last_sweep = now;
        for rec in records.values().filter(|r| r.lost_at_ms.is_none()) {
            if buckets.iter().any(|b| left_behind(b, &rec.id)) {
                spawn_node_back(state, &rec.id);
            }
        }
    }
    Ok(())
}

/// Whether bucket `b` left something on node `node` to clean up once it is back.
fn left_behind(b: &crate::model::BucketRecord, node: &str) -> bool {
    b.evacuation
        .as_ref()
        .is_some_and(|e| e.from_node == node && e.finished_at.is_some() && !e.set_aside)
        || b.lost_with_node.as_ref().is_some_and(|l| l.node == node)
}

/// Evacuates bucket `id` from `node` in the background, once at a time.
fn spawn_evacuation(state: &Core, id: String, node: NodeRecord) {
    if !state.nodes.claim(&id) {
        return;
    }
    let core = state.clone();
    state.tasks.spawn_task("evacuation", async move {
        let lost = evacuate::LostNode {
            id: node.id.clone(),
            hostname: node.hostname.clone(),
        };
        let slot = core.nodes.evacuation_slot().await;
        let outcome = evacuate::evacuate(&core, &id, &lost).await;
        drop(slot);
        match outcome {
            Ok(Evacuated::Moved { node: to }) => {
                tracing::info!(bucket = %id, from = %node.id, to = %to, "bucket serves on another node")
            }
            Ok(Evacuated::Stranded) | Ok(Evacuated::Nothing) => {}
            Err(e) => tracing::warn!(bucket = %id, node = %node.id, error = %e, "evacuation failed"),
        }
        core.nodes.release(&id);
    });
}

fn spawn_node_back(state: &Core, node: &str) {
    let key = format!("back:{node}");
    if !state.nodes.claim(&key) {
        return;
    }
    let (core, node) = (state.clone(), node.to_string());
    state.tasks.spawn_task("lost node back", async move {
        if let Err(e) = node_back(&core, &node).await {
            tracing::warn!(node = %node, error = %e, "cleaning up after a returned node failed; tried again on the next pass");
        }
        core.nodes.release(&key);
    });
}

/// Node `node` is back: old volumes of buckets evacuated from it are set aside, stranded
/// buckets take their status back.
async fn node_back(state: &Core, node: &str) -> Result<()> {
    for b in crate::store::all_buckets(&*state.store).await? {
        if b.lost_with_node.as_ref().is_some_and(|l| l.node == node) {
            evacuate::node_back(state, &b.id, node).await?;
            continue;
        }
        let Some(e) = b.evacuation.clone() else {
            continue;
        };
        if e.from_node != node || e.finished_at.is_none() || e.set_aside {
            continue;
        }
        let spec = crate::lifecycle::spec_for(state, &b)?;
        let name = kalpana_manager_core::spec::set_aside_volume_name(&b.id, now_ms());
        let moved = state
            .runtime
            .set_aside(node, &spec, &name, e.finished_at.as_deref().unwrap_or(""))
            .await?;
        if moved {
            let aside = SetAsideVolume {
                volume: name.clone(),
                bucket_id: b.id.clone(),
                bucket_name: b.name.clone(),
                evacuated_at: e.finished_at.clone().unwrap_or_default(),
                set_aside_at: now(),
            };
            modify(state, node, |r| r.set_aside.push(aside)).await?;
            tracing::warn!(bucket = %b.id, node = %node, volume = %name, "the old volume of an evacuated bucket was set aside on its returned node");
        }
        if let Some(mut locked) = state.lock_bucket_if(&b.id).await? {
            if let Some(ev) = locked.evacuation.as_mut() {
                if ev.from_node == node {
                    ev.set_aside = true;
                }
            }
            locked.save().await?;
        }
    }
    Ok(())
}

/// Every volume set aside, with its node.
pub async fn set_aside(state: &Core) -> Result<Vec<(String, SetAsideVolume)>> {
    let mut out: Vec<(String, SetAsideVolume)> = records(state)
        .await?
        .into_values()
        .flat_map(|n| {
            let id = n.id.clone();
            n.set_aside.into_iter().map(move |v| (id.clone(), v))
        })
        .collect();
    out.sort_by(|a, b| a.1.set_aside_at.cmp(&b.1.set_aside_at));
    Ok(out)
}

/// Deletes set-aside volume `volume` of node `node`; 404 when there is no such volume.
pub async fn delete_set_aside(state: &Core, node: &str, volume: &str) -> Result<()> {
    let known = records(state)
        .await?
        .get(node)
        .is_some_and(|n| n.set_aside.iter().any(|v| v.volume == volume));
    if !known {
        return Err(crate::error::Error::NotFound("set-aside volume"));
    }
    state.runtime.remove_volume_named(volume).await?;
    modify(state, node, |r| r.set_aside.retain(|v| v.volume != volume)).await?;
    Ok(())
}
