//! What the domain's operations work with: the narrow context every bucket operation needs
//! ([`Core`]), and the one way to change a bucket's record ([`Locked`]: lock, load, change,
//! write).

use std::collections::HashMap;
use std::sync::Arc;

use kalpana_manager_core::{PortAllocator, Runtime};
use tokio::sync::OwnedMutexGuard;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::events::EventBus;
use crate::metrics::Metrics;
use crate::model::{now, BucketRecord, BucketStatus};
use crate::reach::{Addresses, S3Clients};
use crate::secrets::MasterKey;
use crate::store::Store;
use crate::supervisor::Supervisor;

/// What every bucket operation works with; cheap to clone (shared). It holds no HTTP state
/// (the api's caller cache and shutdown signal) and no fleet samples.
#[derive(Clone)]
pub struct Core(pub Arc<CoreParts>);

impl std::ops::Deref for Core {
    type Target = CoreParts;
    fn deref(&self) -> &CoreParts {
        &self.0
    }
}

/// The parts of [`Core`].
pub struct CoreParts {
    pub config: Config,
    /// Desired state.
    pub store: Arc<dyn Store>,
    /// Where bucket servers run.
    pub runtime: Arc<dyn Runtime>,
    /// Status changes and progress, for subscribers.
    pub events: EventBus,
    /// One operation per bucket at a time, and the few daemon-wide critical sections.
    pub locks: Locks,
    /// Encrypts secrets at rest.
    pub master_key: MasterKey,
    /// One S3 client per bucket, reused so requests share its connection pool.
    pub s3_clients: S3Clients,
    /// The origin by which the daemon reaches each running bucket server.
    pub addresses: Addresses,
    /// Host port allocator.
    pub ports: PortAllocator,
    /// Ids of new buckets whose volumes are made ahead.
    pub pool: crate::lifecycle::pool::VolumePool,
    /// The reconcile loop's work queue.
    pub reconciler: crate::reconcile::state::Reconciler,
    /// Bytes in flight and promised per bucket, checked against quotas.
    pub quotas: crate::usage::Ledger,
    /// Usage changes of buckets without a quota, not yet written to the store.
    pub pending_usage: crate::pending_usage::PendingUsage,
    /// Presigned uploads being followed now, across buckets.
    pub followed_uploads: std::sync::atomic::AtomicUsize,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Every managed bucket's sleep gate.
    pub sleep: crate::sleep::gate::Gates,
    /// The daemon's listeners on every managed bucket's host ports.
    pub proxies: crate::sleep::listeners::Proxies,
    /// Owner of background loops and detached tasks.
    pub tasks: Supervisor,
    /// Cluster nodes' leases, and what is set aside on them.
    pub nodes: crate::node_leases::Nodes,
}

/// The locks of the domain.
#[derive(Default)]
pub struct Locks {
    buckets: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Port allocation together with the record insert that reserves the ports.
    pub allocation: tokio::sync::Mutex<()>,
    /// One change of default buckets at a time (a purpose moves between buckets).
    pub defaults: tokio::sync::Mutex<()>,
    /// The per-user count and insert of capped records.
    pub caps: tokio::sync::Mutex<()>,
}

impl Locks {
    /// Waits for and takes the lock of bucket `id` without loading it: for changing its record,
    /// [`Core::lock_bucket`] is the way.
    pub(crate) async fn bucket(&self, id: &str) -> OwnedMutexGuard<()> {
        self.named(id.to_string()).await
    }

    /// Waits for and takes the lock of dock `id` (one sync or change of a dock at a time).
    pub async fn dock(&self, id: &str) -> OwnedMutexGuard<()> {
        self.named(format!("dock:{id}")).await
    }

    async fn named(&self, id: String) -> OwnedMutexGuard<()> {
        let m = {
            let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            // Drop locks nobody holds or waits for, so the map stays small.
            map.retain(|_, m| Arc::strong_count(m) > 1);
            map.entry(id).or_default().clone()
        };
        m.lock_owned().await
    }
}

/// A bucket's record loaded under its lock: change it (it derefs to the record) and
/// [`Locked::save`] it; the lock goes when this is dropped.
pub struct Locked {
    _guard: OwnedMutexGuard<()>,
    store: Arc<dyn Store>,
    /// The record as loaded and changed so far.
    pub record: BucketRecord,
}

impl std::ops::Deref for Locked {
    type Target = BucketRecord;
    fn deref(&self) -> &BucketRecord {
        &self.record
    }
}

impl std::ops::DerefMut for Locked {
    fn deref_mut(&mut self) -> &mut BucketRecord {
        &mut self.record
    }
}

impl Locked {
    /// Writes the record (its `updatedAt` set to now).
    pub async fn save(&mut self) -> Result<()> {
        self.record.updated_at = now();
        self.store.update_bucket(&self.record, None).await
    }

    /// Writes the record with its `updatedAt` as it is (a recount or a migration is no change
    /// anyone made to the bucket).
    pub async fn write(&mut self) -> Result<()> {
        self.store.update_bucket(&self.record, None).await
    }

    /// The record as it is now; the lock goes.
    pub fn unlock(self) -> BucketRecord {
        self.record
    }

    /// Writes the record only if the stored one still has status `expect` (409 otherwise).
    pub async fn save_if(&mut self, expect: BucketStatus) -> Result<()> {
        self.record.updated_at = now();
        self.store.update_bucket(&self.record, Some(expect)).await
    }
}

impl Core {
    /// Takes bucket `id`'s lock and loads its record; none (and no lock kept) when there is no
    /// such bucket.
    pub async fn lock_bucket_if(&self, id: &str) -> Result<Option<Locked>> {
        let guard = self.locks.bucket(id).await;
        Ok(self.store.get_bucket(id).await?.map(|record| Locked {
            _guard: guard,
            store: self.store.clone(),
            record,
        }))
    }

    /// Takes bucket `id`'s lock and loads its record; not found when there is no such bucket.
    pub async fn lock_bucket(&self, id: &str) -> Result<Locked> {
        self.lock_bucket_if(id)
            .await?
            .ok_or(Error::NotFound("bucket"))
    }
}
