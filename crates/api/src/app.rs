//! The application state every handler shares.

use std::collections::HashMap;
use std::sync::Arc;

use kalpana_manager_core::{DockerClient, PortAllocator};
use kalpana_s3_ops::BucketClient;

use crate::config::Config;
use crate::events::EventBus;
use crate::lifecycle::Locks;
use crate::secrets::MasterKey;
use crate::store::Store;

/// Shared state, cheap to clone.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

/// What the daemon holds while it runs.
pub struct App {
    /// Configuration.
    pub config: Config,
    /// The store of desired state.
    pub store: Arc<dyn Store>,
    /// Docker.
    pub docker: DockerClient,
    /// Host firewall rules for bucket bridges (`None` with `KALPANA_FIREWALL=false`).
    pub firewall: Option<kalpana_manager_core::firewall::Firewall>,
    /// Host port allocator.
    pub ports: PortAllocator,
    /// Serialises port allocation with the record insert that reserves the ports.
    pub allocation: tokio::sync::Mutex<()>,
    /// Serialises the per-user count and the insert of capped records (`caps`).
    pub caps_lock: tokio::sync::Mutex<()>,
    /// One change of default buckets at a time (a purpose moves between buckets).
    pub defaults_lock: tokio::sync::Mutex<()>,
    /// The reconcile loop's work queue.
    pub reconciler: crate::reconcile::Reconciler,
    /// Ids of new buckets whose volumes are made ahead.
    pub pool: crate::lifecycle::pool::VolumePool,
    /// The address of each running bucket container on the bucket network.
    pub addresses: crate::lifecycle::Addresses,
    /// One lifecycle operation per bucket at a time.
    pub locks: Locks,
    /// Encrypts secrets at rest.
    pub master_key: MasterKey,
    /// Status events.
    pub events: EventBus,
    /// One S3 client per bucket, reused so requests share its connection pool.
    pub s3_clients: S3Clients,
    /// Authenticated callers by token hash.
    pub callers: crate::auth::CallerCache,
    /// Bytes in flight and promised per bucket, checked against quotas.
    pub quotas: crate::usage::Ledger,
    /// Presigned uploads being followed now, across buckets.
    pub followed_uploads: std::sync::atomic::AtomicUsize,
    /// Usage changes of buckets without a quota, not yet written to the store.
    pub pending_usage: crate::pending_usage::PendingUsage,
    /// Resource samples of bucket containers and the Docker host.
    pub fleet: crate::fleet::Fleet,
    /// Counters for `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// Turns `true` once shutdown begins, so endless responses (event streams) end.
    pub shutdown: tokio::sync::watch::Sender<bool>,
}

/// S3 clients by bucket id, each with the origin and access key it was made for.
#[derive(Default)]
pub struct S3Clients(std::sync::Mutex<HashMap<String, (String, String, BucketClient)>>);

impl S3Clients {
    /// The cached client of `bucket` for `origin` and `access_key`, made by `make` when missing
    /// or made for something else.
    pub fn get_or_make(
        &self,
        bucket: &str,
        origin: &str,
        access_key: &str,
        make: impl FnOnce() -> crate::error::Result<BucketClient>,
    ) -> crate::error::Result<BucketClient> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((o, k, c)) = map.get(bucket) {
            if o == origin && k == access_key {
                return Ok(c.clone());
            }
        }
        let client = make()?;
        map.insert(
            bucket.to_string(),
            (origin.to_string(), access_key.to_string(), client.clone()),
        );
        Ok(client)
    }

    /// Forgets the client of a deleted bucket.
    pub fn forget(&self, bucket: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(bucket);
    }
}
