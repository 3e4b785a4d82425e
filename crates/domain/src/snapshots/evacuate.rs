//! One bucket of a lost node brought back on another node from its latest snapshot.
//!
//! Guarantees: the bucket's record says an evacuation runs (`evacuation` without `finishedAt`)
//! before anything moves, so a daemon that takes over finishes it; the data is the archive's
//! only if its size and SHA-256 match the snapshot's record; whatever was written after the
//! snapshot is lost, and the `bucket.evacuated` event says so with the snapshot's time. A bucket
//! with no usable snapshot goes ERROR naming the node, and takes its status back when the node
//! does. Caveat: a snapshot whose archive is on a bucket of the lost node cannot be read, so
//! it is passed over.

use crate::context::{Core, Locked};
use crate::error::{Error, Result};
use crate::events::{BucketEvent, EventKind};
use crate::lifecycle;
use crate::model::{now, BucketKind, BucketStatus, Evacuation, LostWithNode};

use super::archive::{fill_job, matches_record, outcome_of, recount_later, tampered};
use super::model::{Snapshot, SnapshotStatus};
use super::progress::Meter;

/// What became of a bucket of a lost node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evacuated {
    /// Nothing to do (gone, being deleted, not a managed bucket, or already done).
    Nothing,
    /// It serves (or is stopped or asleep, as it was) on `node`.
    Moved {
        /// The node it is on now.
        node: String,
    },
    /// In ERROR until the node comes back: it had no usable snapshot.
    Stranded,
}

/// A lost node: its id, and its host name (as the runtime names a server's node).
#[derive(Debug, Clone)]
pub struct LostNode {
    /// Swarm node id.
    pub id: String,
    /// Host name, once its agent said it.
    pub hostname: Option<String>,
}

impl LostNode {
    /// How messages name it.
    fn shown(&self) -> String {
        match &self.hostname {
            Some(h) => format!("{h} ({})", self.id),
            None => self.id.clone(),
        }
    }
}

/// Brings bucket `id`, whose server is on node `node`, back on another node.
pub async fn evacuate(state: &Core, id: &str, node: &LostNode) -> Result<Evacuated> {
    let lost = node.id.as_str();
    let Some(mut b) = state.lock_bucket_if(id).await? else {
        return Ok(Evacuated::Nothing);
    };
    if b.deleting || !b.provisioned || b.kind() != BucketKind::Managed {
        return Ok(Evacuated::Nothing);
    }
    if b.lost_with_node.is_some() {
        return Ok(Evacuated::Stranded);
    }
    let resumed = b
        .evacuation
        .as_ref()
        .filter(|e| e.from_node == lost && e.finished_at.is_none())
        .cloned();
    // Done already: its server is elsewhere (a stale listing of the lost node must not bring
    // it back from the snapshot a second time, losing what it took since).
    if resumed.is_none() {
        let on = state
            .runtime
            .inspect_server(&b.id)
            .await?
            .and_then(|c| c.node_id);
        if on.as_deref() != Some(lost) {
            return Ok(Evacuated::Nothing);
        }
    }
    let snapshot = match &resumed {
        Some(e) => state
            .store
            .get_snapshot(&e.snapshot_id)
            .await?
            .filter(|s| s.status == SnapshotStatus::Done),
        None => usable_snapshot(state, &b, node).await?,
    };
    let Some(s) = snapshot else {
        return strand(state, &mut b, node).await;
    };
    let shown = node.shown();
    let snapshot_at = s
        .finished_at
        .clone()
        .unwrap_or_else(|| s.created_at.clone());
    let keys_after: Vec<String> = b
        .keys
        .iter()
        .filter(|k| k.created_at > s.created_at)
        .map(|k| k.name.clone())
        .collect();
    if resumed.is_none() {
        b.evacuation = Some(Evacuation {
            from_node: lost.to_string(),
            to_node: None,
            snapshot_id: s.id.clone(),
            snapshot_at: snapshot_at.clone(),
            started_at: now(),
            finished_at: None,
            keys_after_snapshot: keys_after.clone(),
            set_aside: false,
        });
        b.save().await?;
    }
    tracing::warn!(bucket = %b.id, name = %b.name, node = %lost, snapshot = %s.id, "evacuating the bucket of a lost node from its latest snapshot");
    publish(
        state,
        &b,
        EventKind::Progress,
        format!(
            "node {shown} is lost: bringing the bucket back on another node from snapshot {} ({snapshot_at})",
            s.id
        ),
    );
    match move_data(state, &mut b, &s, lost, resumed.is_some()).await {
        Ok(node) => {
            if let Some(e) = b.evacuation.as_mut() {
                e.to_node = Some(node.clone());
                e.finished_at = Some(now());
            }
            b.save().await?;
            let keys = if keys_after.is_empty() {
                String::new()
            } else {
                format!(
                    "; keys made after it were put back from the bucket's record: {}",
                    keys_after.join(", ")
                )
            };
            let message = format!(
                "evacuated from lost node {shown} to node {node} from snapshot {} taken at {snapshot_at}: whatever was written after that is lost{keys}",
                s.id
            );
            tracing::warn!(bucket = %b.id, name = %b.name, from = %lost, to = %node, snapshot_at = %snapshot_at, "bucket evacuated");
            publish(state, &b, EventKind::Evacuated, message);
            recount_later(state, &b.id);
            Ok(Evacuated::Moved { node })
        }
        Err(e) => {
            tracing::warn!(bucket = %b.id, error = %e, "evacuation failed; tried again on the next pass");
            Err(e)
        }
    }
}

/// The archive onto another node, checked; the bucket brought back there as its record says.
async fn move_data(
    state: &Core,
    b: &mut Locked,
    s: &Snapshot,
    lost: &str,
    resumed: bool,
) -> Result<String> {
    let started = std::time::Instant::now();
    let meter = Meter::new(state, b, format!("evacuation from node {lost}"));
    let job = fill_job(state, s, &meter).await?;
    let spec = lifecycle::spec_for(state, b)?;
    let moved = state.runtime.evacuate(&spec, lost, job, resumed).await;
    let read = moved.as_ref().map(|(o, _)| o.clone()).map_err(clone_err);
    if !matches_record(s, outcome_of(&read)) {
        if let Err(e) = &moved {
            tracing::warn!(bucket = %b.id, error = %e, "filling from the snapshot failed");
        }
        return match moved {
            Err(e) if outcome_of(&read).is_none() => Err(e.into()),
            _ => Err(Error::Unprocessable(tampered(s))),
        };
    }
    let (_, node) = moved?;
    let filled_ms = started.elapsed().as_millis() as u64;
    state.s3_clients.forget(&b.id);
    state.addresses.set(&b.id, None);
    if b.status == BucketStatus::Running && !b.asleep() {
        lifecycle::ensure_running(state, b).await?;
    }
    let serving_ms = started.elapsed().as_millis() as u64;
    // The engine's identities are the snapshot's: keys made or rotated since are put back,
    // revoked ones removed (now, or when it next runs).
    crate::keys::sweep_locked(state, b).await?;
    tracing::info!(bucket = %b.id, node = %node, filled_ms, serving_ms,
        keys_ms = started.elapsed().as_millis() as u64, bytes = meter.bytes(), "evacuation steps");
    Ok(node)
}

/// An error as the domain's, keeping a job's outcome so a damaged archive is told apart.
fn clone_err(e: &kalpana_manager_core::Error) -> Error {
    match e {
        kalpana_manager_core::Error::Job {
            what,
            message,
            outcome,
        } => Error::Runtime(kalpana_manager_core::Error::Job {
            what,
            message: message.clone(),
            outcome: outcome.clone(),
        }),
        other => Error::Internal(other.to_string()),
    }
}

/// The bucket's latest DONE snapshot whose archive can be read without node `lost`.
async fn usable_snapshot(
    state: &Core,
    b: &crate::model::BucketRecord,
    lost: &LostNode,
) -> Result<Option<Snapshot>> {
    let mut done: Vec<Snapshot> = state
        .store
        .list_snapshots(Some(&b.id))
        .await?
        .into_iter()
        .filter(|s| s.status == SnapshotStatus::Done)
        .collect();
    done.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    for s in done {
        let Some(t) = state.store.get_bucket(&s.target.bucket_id).await? else {
            continue;
        };
        if t.kind() == BucketKind::Managed {
            let on = state.runtime.inspect_server(&t.id).await?;
            if on.and_then(|c| c.node_id).as_deref() == Some(lost.id.as_str()) {
                continue;
            }
        }
        return Ok(Some(s));
    }
    Ok(None)
}

/// ERROR naming the node, until it comes back.
async fn strand(state: &Core, b: &mut Locked, lost: &LostNode) -> Result<Evacuated> {
    b.lost_with_node = Some(LostWithNode {
        node: lost.id.clone(),
        status_before: b.status,
    });
    let message = format!(
        "node {} is lost and the bucket has no snapshot readable without it: it comes back when the node does",
        lost.shown()
    );
    lifecycle::set_status(state, b, BucketStatus::Error, Some(message), None).await?;
    Ok(Evacuated::Stranded)
}

/// Takes its status back once its node is back (it was in ERROR only because of the loss).
pub async fn node_back(state: &Core, id: &str, node: &str) -> Result<()> {
    let Some(mut b) = state.lock_bucket_if(id).await? else {
        return Ok(());
    };
    let Some(lost) = b.lost_with_node.clone().filter(|l| l.node == node) else {
        return Ok(());
    };
    b.lost_with_node = None;
    if b.status == BucketStatus::Error {
        let message = format!("node {node} is back");
        lifecycle::set_status(state, &mut b, lost.status_before, Some(message), None).await?;
    } else {
        b.save().await?;
    }
    crate::reconcile::enqueue(state, id, std::time::Duration::ZERO);
    Ok(())
}

fn publish(state: &Core, b: &crate::model::BucketRecord, kind: EventKind, message: String) {
    state
        .events
        .publish(BucketEvent::of(kind, b, Some(message)));
}
