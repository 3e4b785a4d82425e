//! What the reconcile loop keeps between runs: its work queue, the requests other parts of the
//! domain make of it, and the orphans it last reported. Plain state, below the context that
//! holds it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use serde::Serialize;

/// Most buckets reconciled at once.
const CONCURRENCY: usize = 8;

/// The work queue and what the loop remembers between runs. Owned by the application state:
/// nothing here is process-global.
pub struct Reconciler {
    work: Mutex<Work>,
    pub(super) slots: tokio::sync::Semaphore,
    /// The orphans last reported, so a standing orphan is not logged every pass.
    pub(super) last_orphans: Mutex<Option<Orphans>>,
    /// Buckets other parts of the domain asked to have reconciled (see [`Reconciler::request`]).
    requests: tokio::sync::mpsc::UnboundedSender<String>,
    requested: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<String>>>,
}

impl Default for Reconciler {
    fn default() -> Self {
        let (requests, requested) = tokio::sync::mpsc::unbounded_channel();
        Reconciler {
            work: Mutex::default(),
            slots: tokio::sync::Semaphore::new(CONCURRENCY),
            last_orphans: Mutex::default(),
            requests,
            requested: Mutex::new(Some(requested)),
        }
    }
}

#[derive(Default)]
pub(super) struct Work {
    /// Buckets waiting for their run.
    pub(super) queued: HashSet<String>,
    /// Buckets being reconciled now.
    pub(super) running: HashSet<String>,
    /// Buckets triggered while running: one more run once this one ends.
    pub(super) again: HashSet<String>,
    /// Consecutive failures per bucket, for the back-off.
    pub(super) failures: HashMap<String, u32>,
}

impl Reconciler {
    pub(super) fn work(&self) -> std::sync::MutexGuard<'_, Work> {
        self.work.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Buckets queued or running now (for tests and metrics).
    pub fn pending(&self) -> usize {
        let w = self.work();
        w.queued.len() + w.running.len()
    }

    /// Asks for bucket `id` to be reconciled soon, from code that must not depend on the
    /// reconcile loop (which depends on it): the loop takes the request.
    pub fn request(&self, id: &str) {
        let _ = self.requests.send(id.to_string());
    }

    /// The requests, for the one loop that serves them (none the second time).
    pub(super) fn take_requests(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        self.requested
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
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
