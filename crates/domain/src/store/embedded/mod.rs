//! The embedded store: one redb file (ACID, crash-safe, copy-on-write B-trees). Records are JSON
//! values; uniqueness (owner + name, ports, subdomains, token hashes) is kept by index tables
//! written in the same transaction as the record.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

mod buckets;
mod identities;
mod inventory;
mod lease;
mod snapshots;

use super::{BucketQuery, Store};
use crate::error::{Error, Result};
use crate::inventory::model::{Dock, InventoryQuery, InventoryRecord, InventoryWrite};
use crate::model::{BucketRecord, BucketStatus, Domain, NodeRecord, Team, User, Workspace};

/// The embedded store.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

fn db_err(e: impl std::fmt::Display) -> Error {
    Error::Store(e.to_string())
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(db_err)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(db_err)
}

impl EmbeddedStore {
    /// Opens or creates the database file and its tables.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(db_err)?;
        }
        private_file(path)?;
        let db = Database::create(path)
            .map_err(|e| Error::Store(format!("opening {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(db_err)?;
        {
            txn.open_table(identities::USERS).map_err(db_err)?;
            txn.open_table(identities::TOKENS).map_err(db_err)?;
            txn.open_table(identities::TEAMS).map_err(db_err)?;
            txn.open_table(buckets::BUCKETS).map_err(db_err)?;
            txn.open_table(buckets::BUCKET_NAMES).map_err(db_err)?;
            txn.open_table(buckets::PORTS).map_err(db_err)?;
            txn.open_table(buckets::SUBDOMAINS).map_err(db_err)?;
            txn.open_table(identities::DOMAINS).map_err(db_err)?;
            txn.open_table(identities::DOMAIN_NAMES).map_err(db_err)?;
            txn.open_table(identities::WORKSPACES).map_err(db_err)?;
            txn.open_table(buckets::LINKED_HOSTS).map_err(db_err)?;
            txn.open_table(lease::LEASES).map_err(db_err)?;
            txn.open_table(lease::NODES).map_err(db_err)?;
            txn.open_table(inventory::DOCKS).map_err(db_err)?;
            txn.open_table(snapshots::SNAPSHOTS).map_err(db_err)?;
            txn.open_table(inventory::VOLUMES).map_err(db_err)?;
            txn.open_table(inventory::CLOUD_BUCKETS).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(EmbeddedStore { db: Arc::new(db) })
    }

    /// Runs blocking database work off the async runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| Error::Internal(format!("store task: {e}")))?
    }

    fn all<T: DeserializeOwned>(
        db: &Database,
        table: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<T>> {
        let txn = db.begin_read().map_err(db_err)?;
        let t = txn.open_table(table).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)? {
            let (_, v) = row.map_err(db_err)?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    fn get<T: DeserializeOwned>(
        db: &Database,
        table: TableDefinition<&str, &[u8]>,
        id: &str,
    ) -> Result<Option<T>> {
        let txn = db.begin_read().map_err(db_err)?;
        let t = txn.open_table(table).map_err(db_err)?;
        let v = t.get(id).map_err(db_err)?;
        v.map(|v| decode(v.value())).transpose()
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn ping(&self) -> Result<()> {
        self.blocking(|db| db.begin_read().map(|_| ()).map_err(db_err))
            .await
    }

    async fn put_user(&self, user: &User) -> Result<()> {
        self.put_user_impl(user).await
    }

    async fn user_by_token_hash(&self, token_hash: &str) -> Result<Option<User>> {
        self.user_by_token_hash_impl(token_hash).await
    }

    async fn get_user(&self, id: &str) -> Result<Option<User>> {
        self.get_user_impl(id).await
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        self.list_users_impl().await
    }

    async fn put_team(&self, team: &Team) -> Result<()> {
        self.put_team_impl(team).await
    }

    async fn get_team(&self, id: &str) -> Result<Option<Team>> {
        self.get_team_impl(id).await
    }

    async fn teams_of(&self, user_id: &str) -> Result<Vec<Team>> {
        self.teams_of_impl(user_id).await
    }

    async fn list_teams(&self) -> Result<Vec<Team>> {
        self.list_teams_impl().await
    }

    async fn insert_domain(&self, domain: &Domain) -> Result<()> {
        self.insert_domain_impl(domain).await
    }

    async fn update_domain(&self, domain: &Domain) -> Result<()> {
        self.update_domain_impl(domain).await
    }

    async fn get_domain(&self, id: &str) -> Result<Option<Domain>> {
        self.get_domain_impl(id).await
    }

    async fn put_workspace(&self, workspace: &Workspace) -> Result<()> {
        self.put_workspace_impl(workspace).await
    }

    async fn get_workspace(&self, id: &str) -> Result<Option<Workspace>> {
        self.get_workspace_impl(id).await
    }

    async fn list_workspaces(&self) -> Result<Vec<Workspace>> {
        self.list_workspaces_impl().await
    }

    async fn delete_workspace(&self, id: &str) -> Result<()> {
        self.delete_workspace_impl(id).await
    }

    async fn put_snapshot(&self, snapshot: &crate::snapshots::model::Snapshot) -> Result<()> {
        let s = snapshot.clone();
        self.blocking(move |db| snapshots::put(db, &s)).await
    }

    async fn get_snapshot(&self, id: &str) -> Result<Option<crate::snapshots::model::Snapshot>> {
        let id = id.to_string();
        self.blocking(move |db| Self::get(db, snapshots::SNAPSHOTS, &id))
            .await
    }

    async fn list_snapshots(
        &self,
        bucket_id: Option<&str>,
    ) -> Result<Vec<crate::snapshots::model::Snapshot>> {
        let b = bucket_id.map(str::to_string);
        self.blocking(move |db| snapshots::list(db, b.as_deref()))
            .await
    }

    async fn delete_snapshot(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.blocking(move |db| snapshots::delete(db, &id)).await
    }

    async fn put_dock(&self, dock: &Dock) -> Result<()> {
        let d = dock.clone();
        self.blocking(move |db| inventory::put_dock(db, &d)).await
    }

    async fn get_dock(&self, id: &str) -> Result<Option<Dock>> {
        let id = id.to_string();
        self.blocking(move |db| Self::get(db, inventory::DOCKS, &id))
            .await
    }

    async fn list_docks(&self) -> Result<Vec<Dock>> {
        self.blocking(|db| Self::all(db, inventory::DOCKS)).await
    }

    async fn delete_dock(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.blocking(move |db| inventory::delete_dock(db, &id))
            .await
    }

    async fn dock_inventory(&self, dock_id: &str) -> Result<Vec<InventoryRecord>> {
        let id = dock_id.to_string();
        self.blocking(move |db| inventory::dock_inventory(db, &id))
            .await
    }

    async fn write_inventory(&self, write: &InventoryWrite) -> Result<()> {
        let w = write.clone();
        self.blocking(move |db| inventory::write_inventory(db, &w))
            .await
    }

    async fn list_inventory(&self, query: &InventoryQuery) -> Result<Vec<InventoryRecord>> {
        let q = query.clone();
        self.blocking(move |db| inventory::list_inventory(db, &q))
            .await
    }

    async fn list_domains(&self) -> Result<Vec<Domain>> {
        self.list_domains_impl().await
    }

    async fn insert_bucket(&self, bucket: &BucketRecord) -> Result<()> {
        self.insert_bucket_impl(bucket).await
    }

    async fn update_bucket(
        &self,
        bucket: &BucketRecord,
        expect: Option<BucketStatus>,
    ) -> Result<()> {
        self.update_bucket_impl(bucket, expect).await
    }

    async fn get_bucket(&self, id: &str) -> Result<Option<BucketRecord>> {
        self.get_bucket_impl(id).await
    }

    async fn delete_bucket(&self, id: &str) -> Result<()> {
        self.delete_bucket_impl(id).await
    }

    async fn list_buckets(&self, query: &BucketQuery) -> Result<Vec<BucketRecord>> {
        self.list_buckets_impl(query).await
    }

    async fn reserved_ports(&self) -> Result<HashSet<u16>> {
        self.reserved_ports_impl().await
    }

    async fn subdomain_taken(&self, subdomain: &str) -> Result<bool> {
        self.subdomain_taken_impl(subdomain).await
    }

    async fn acquire_lease(&self, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<()> {
        self.acquire_lease_impl(holder, now_ms, ttl_ms).await
    }

    async fn release_lease(&self, holder: &str) -> Result<()> {
        self.release_lease_impl(holder).await
    }

    async fn claim_master_key(&self, fingerprint: &str) -> Result<String> {
        self.claim_master_key_impl(fingerprint).await
    }

    async fn put_node(&self, node: &NodeRecord) -> Result<()> {
        let n = node.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            txn.open_table(lease::NODES)
                .map_err(db_err)?
                .insert(n.id.as_str(), encode(&n)?.as_slice())
                .map_err(db_err)?;
            txn.commit().map_err(db_err)
        })
        .await
    }

    async fn list_nodes(&self) -> Result<Vec<NodeRecord>> {
        self.blocking(|db| Self::all(db, lease::NODES)).await
    }
}

/// Makes sure the database file exists readable by its owner only (0600), before redb opens it:
/// it holds token hashes and encrypted secrets. A file made by an older version is tightened.
fn private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::Store(format!("creating {}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::Store(format!("chmod 600 {}: {e}", path.display())))
}
