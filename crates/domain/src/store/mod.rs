//! The store of desired state: one trait, an embedded implementation (the default) and one test
//! suite that every implementation must pass.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::inventory::model::{Dock, InventoryQuery, InventoryRecord, InventoryWrite};
use crate::model::{BucketRecord, BucketStatus, Domain, NodeRecord, Team, User, Workspace};
use crate::snapshots::model::Snapshot;

/// The refusal of a write that changes a bucket's owner or name (the same on every store).
pub const OWNER_AND_NAME: &str = "a bucket's owner and name never change";

pub mod embedded;
pub mod fenced;
pub mod mongo;
#[cfg(test)]
pub mod suite;
#[cfg(test)]
mod suite_inventory;
#[cfg(test)]
mod suite_runs;

/// Which buckets a listing returns.
#[derive(Debug, Clone, Default)]
pub struct BucketQuery {
    /// Buckets owned by this user…
    pub owner: Option<String>,
    /// …or belonging to one of these teams.
    pub teams: Vec<String>,
    /// Every bucket, regardless of owner (admin tools, reconcile).
    pub all: bool,
    /// Only this workspace.
    pub workspace_id: Option<String>,
    /// Only this team.
    pub team_id: Option<String>,
    /// Only this status.
    pub status: Option<BucketStatus>,
    /// Only ids greater than this one (the page cursor).
    pub after: Option<String>,
    /// At most this many.
    pub limit: usize,
}

impl BucketQuery {
    /// Whether `b` matches the query (for stores that filter in code).
    pub fn matches(&self, b: &BucketRecord) -> bool {
        let visible = self.all
            || self.owner.as_deref() == Some(b.user_id.as_str())
            || b.team_id.as_ref().is_some_and(|t| self.teams.contains(t));
        visible
            && self
                .workspace_id
                .as_ref()
                .is_none_or(|w| b.workspace_id.as_ref() == Some(w))
            && self
                .team_id
                .as_ref()
                .is_none_or(|t| b.team_id.as_ref() == Some(t))
            && self.status.is_none_or(|s| b.status == s)
            && self
                .after
                .as_ref()
                .is_none_or(|a| b.id.as_str() > a.as_str())
    }
}

/// Persistent state of the daemon. Every method is atomic.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Whether the store answers.
    async fn ping(&self) -> Result<()>;

    /// Inserts or replaces a user (by id). Token hashes are unique: 409 otherwise.
    async fn put_user(&self, user: &User) -> Result<()>;
    /// The user with this token hash.
    async fn user_by_token_hash(&self, token_hash: &str) -> Result<Option<User>>;
    /// The user with this id.
    async fn get_user(&self, id: &str) -> Result<Option<User>>;
    /// Every user.
    async fn list_users(&self) -> Result<Vec<User>>;

    /// Inserts or replaces a team (by id).
    async fn put_team(&self, team: &Team) -> Result<()>;
    /// The team with this id.
    async fn get_team(&self, id: &str) -> Result<Option<Team>>;
    /// Teams `user_id` is a member of.
    async fn teams_of(&self, user_id: &str) -> Result<Vec<Team>>;
    /// Every team.
    async fn list_teams(&self) -> Result<Vec<Team>>;

    /// Inserts or replaces a workspace (by id).
    async fn put_workspace(&self, workspace: &Workspace) -> Result<()>;
    /// The workspace with this id.
    async fn get_workspace(&self, id: &str) -> Result<Option<Workspace>>;
    /// Every workspace.
    async fn list_workspaces(&self) -> Result<Vec<Workspace>>;
    /// Deletes a workspace; a missing one is fine.
    async fn delete_workspace(&self, id: &str) -> Result<()>;

    /// Inserts or replaces a provider account (by id).
    async fn put_dock(&self, dock: &Dock) -> Result<()>;
    /// The dock with this id.
    async fn get_dock(&self, id: &str) -> Result<Option<Dock>>;
    /// Every dock.
    async fn list_docks(&self) -> Result<Vec<Dock>>;
    /// Deletes a dock and every inventory record synced from it; a missing one is fine.
    async fn delete_dock(&self, id: &str) -> Result<()>;
    /// Every inventory record of a dock, volumes and buckets.
    async fn dock_inventory(&self, dock_id: &str) -> Result<Vec<InventoryRecord>>;
    /// Writes one sync's changes to the inventory. An insert whose (dockId, kind,
    /// providerResourceId) is taken is a 409 (a unique index in both stores).
    async fn write_inventory(&self, write: &InventoryWrite) -> Result<()>;
    /// Inventory records matching the query, in id order.
    async fn list_inventory(&self, query: &InventoryQuery) -> Result<Vec<InventoryRecord>>;

    /// Inserts or replaces a snapshot record (by id).
    async fn put_snapshot(&self, snapshot: &Snapshot) -> Result<()>;
    /// The snapshot with this id.
    async fn get_snapshot(&self, id: &str) -> Result<Option<Snapshot>>;
    /// Snapshots of one bucket, or of every bucket, in id order.
    async fn list_snapshots(&self, bucket_id: Option<&str>) -> Result<Vec<Snapshot>>;
    /// Deletes a snapshot record; a missing one is fine.
    async fn delete_snapshot(&self, id: &str) -> Result<()>;

    /// Inserts a new domain; 409 when its name is registered already.
    async fn insert_domain(&self, domain: &Domain) -> Result<()>;
    /// Replaces a domain (by id; its name cannot change).
    async fn update_domain(&self, domain: &Domain) -> Result<()>;
    /// The domain with this id.
    async fn get_domain(&self, id: &str) -> Result<Option<Domain>>;
    /// Every domain.
    async fn list_domains(&self) -> Result<Vec<Domain>>;

    /// Inserts a new bucket. 409 when the owner has a bucket of that name, when one of its
    /// ports is reserved, or when its subdomain or linked host is taken.
    async fn insert_bucket(&self, bucket: &BucketRecord) -> Result<()>;
    /// Replaces a bucket record, keeping the port and subdomain reservations in step. With
    /// `expect`, only when the stored status is that one (409 otherwise).
    async fn update_bucket(
        &self,
        bucket: &BucketRecord,
        expect: Option<BucketStatus>,
    ) -> Result<()>;
    /// The bucket with this id.
    async fn get_bucket(&self, id: &str) -> Result<Option<BucketRecord>>;
    /// Deletes a bucket and frees its ports and subdomain. A missing one is fine.
    async fn delete_bucket(&self, id: &str) -> Result<()>;
    /// Buckets matching the query, in id order.
    async fn list_buckets(&self, query: &BucketQuery) -> Result<Vec<BucketRecord>>;
    /// Every reserved host port.
    async fn reserved_ports(&self) -> Result<HashSet<u16>>;
    /// Whether a subdomain is taken.
    async fn subdomain_taken(&self, subdomain: &str) -> Result<bool>;

    /// Takes or renews the lease that lets one daemon act on this store's buckets: `holder`
    /// holds it until `now_ms + ttl_ms` (Unix milliseconds). 409 naming the holder and its expiry
    /// when another holder's lease has not expired yet. Atomic: two callers never both hold it.
    async fn acquire_lease(&self, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<()>;
    /// Ends `holder`'s lease, if it holds it (a clean shutdown lets the next daemon in at once).
    async fn release_lease(&self, holder: &str) -> Result<()>;

    /// Records `fingerprint` as the master key that seals this store's secrets, unless one is
    /// recorded already; returns the recorded one (atomic: the first daemon's key wins).
    async fn claim_master_key(&self, fingerprint: &str) -> Result<String>;

    /// Writes a cluster node's record (its lease and what is set aside on it).
    async fn put_node(&self, node: &NodeRecord) -> Result<()>;
    /// Every cluster node's record.
    async fn list_nodes(&self) -> Result<Vec<NodeRecord>>;
}

/// The daemon lease as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// Who holds it.
    pub holder: String,
    /// Until when (Unix milliseconds).
    pub expires_at_ms: i64,
}

/// Which master key seals the store's secrets, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MasterKeyRecord {
    /// Its fingerprint ([`crate::secrets::MasterKey::fingerprint`]).
    pub fingerprint: String,
}

/// The 409 of a lease another daemon holds.
pub fn lease_held(lease: &Lease, now_ms: i64) -> Error {
    Error::Conflict(format!(
        "another daemon ({}) acts on this store; its lease runs {} ms more",
        lease.holder,
        (lease.expires_at_ms - now_ms).max(0)
    ))
}

/// Opens the store named by `KALPANA_STORE`: empty for the embedded store in `data_dir`,
/// `redb:<path>` for an embedded store at a path, `mongodb://…` for MongoDB.
pub async fn open(uri: Option<&str>, data_dir: &Path) -> Result<Arc<dyn Store>> {
    match uri.map(str::trim).filter(|u| !u.is_empty()) {
        None => Ok(Arc::new(embedded::EmbeddedStore::open(
            &data_dir.join("kalpana.redb"),
        )?)),
        Some(u) if u.starts_with("redb:") => Ok(Arc::new(embedded::EmbeddedStore::open(
            Path::new(&u["redb:".len()..]),
        )?)),
        Some(u) if u.starts_with("mongodb://") || u.starts_with("mongodb+srv://") => {
            Ok(Arc::new(mongo::MongoStore::connect(u).await?))
        }
        Some(u) => Err(Error::Invalid(format!(
            "KALPANA_STORE {u:?}: expected empty, redb:<path> or mongodb://…"
        ))),
    }
}

/// How many records of each kind a store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub users: usize,
    pub teams: usize,
    pub buckets: usize,
    /// Reserved host ports.
    pub ports: usize,
    /// Docks of the cloud inventory.
    pub docks: usize,
    /// Volumes and buckets synced from them.
    pub inventory: usize,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "users={} teams={} buckets={} ports={} docks={} inventory={}",
            self.users, self.teams, self.buckets, self.ports, self.docks, self.inventory
        )
    }
}

/// Counts every kind of record in `store`.
pub async fn count(store: &dyn Store) -> Result<Counts> {
    let docks = store.list_docks().await?;
    let mut inventory = 0;
    for d in &docks {
        inventory += store.dock_inventory(&d.id).await?.len();
    }
    Ok(Counts {
        docks: docks.len(),
        inventory,
        users: store.list_users().await?.len(),
        teams: store.list_teams().await?.len(),
        buckets: all_buckets(store).await?.len(),
        ports: store.reserved_ports().await?.len(),
    })
}

/// Every bucket record, in id order.
pub async fn all_buckets(store: &dyn Store) -> Result<Vec<BucketRecord>> {
    store
        .list_buckets(&BucketQuery {
            all: true,
            limit: usize::MAX,
            ..Default::default()
        })
        .await
}

/// Copies every record from `from` into `to`, which must hold none of them yet (a bucket already
/// there is a 409 and stops the copy). Returns the counts of the target afterwards.
pub async fn migrate(from: &dyn Store, to: &dyn Store) -> Result<Counts> {
    for user in from.list_users().await? {
        to.put_user(&user).await?;
    }
    for team in from.list_teams().await? {
        to.put_team(&team).await?;
    }
    for domain in from.list_domains().await? {
        to.insert_domain(&domain).await?;
    }
    for workspace in from.list_workspaces().await? {
        to.put_workspace(&workspace).await?;
    }
    for bucket in all_buckets(from).await? {
        to.insert_bucket(&bucket).await?;
    }
    for snapshot in from.list_snapshots(None).await? {
        to.put_snapshot(&snapshot).await?;
    }
    for dock in from.list_docks().await? {
        to.put_dock(&dock).await?;
        let records = from.dock_inventory(&dock.id).await?;
        to.write_inventory(&InventoryWrite {
            insert: records,
            ..Default::default()
        })
        .await?;
    }
    count(to).await
}
