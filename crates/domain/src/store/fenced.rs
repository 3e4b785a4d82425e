//! A store whose writes can be closed for good: closed once the daemon has ended its work and
//! is about to release the store lease, so nothing it still runs (a request handler past the
//! grace period, a task that did not end) writes a store another daemon may already lead.
//!
//! Guarantees: after [`FencedStore::close`], every write (and a lease renewal) is refused with
//! 503 and logged at error level naming the write; reads and the lease release go through.
//! [`FencedStore::suspend`] refuses writes the same way but for a while: while the daemon's
//! lease may have run out (the store did not answer its renewals for a whole lease), until it
//! holds the lease again ([`FencedStore::resume`]); lease renewals still go through.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use super::{BucketQuery, Store};
use crate::error::{Error, Result};
use crate::inventory::model::{Dock, InventoryQuery, InventoryRecord, InventoryWrite};
use crate::model::{BucketRecord, BucketStatus, Domain, NodeRecord, Team, User, Workspace};
use crate::snapshots::model::Snapshot;

/// A [`Store`] with writes that can be closed.
pub struct FencedStore {
    inner: Arc<dyn Store>,
    closed: AtomicBool,
    suspended: AtomicBool,
}

impl FencedStore {
    /// `inner`, open for writes.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        FencedStore {
            inner,
            closed: AtomicBool::new(false),
            suspended: AtomicBool::new(false),
        }
    }

    /// Refuses every write but lease renewals until [`FencedStore::resume`].
    pub fn suspend(&self) {
        self.suspended.store(true, Ordering::SeqCst);
    }

    /// Takes writes again (unless closed).
    pub fn resume(&self) {
        self.suspended.store(false, Ordering::SeqCst);
    }

    /// Whether writes are suspended.
    pub fn is_suspended(&self) -> bool {
        self.suspended.load(Ordering::SeqCst)
    }

    fn lease_open(&self, write: &'static str) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return self.open(write);
        }
        Ok(())
    }

    /// Refuses every write from now on.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    fn open(&self, write: &'static str) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            tracing::error!(
                write,
                "store write after the daemon closed the store for its stop: refused"
            );
            return Err(Error::Unavailable(
                "the daemon is stopping: the store takes no more writes from it".into(),
            ));
        }
        if self.suspended.load(Ordering::SeqCst) {
            return Err(Error::Unavailable(
                "the daemon's store lease may have run out while the store did not answer: it makes no change until it holds the lease again".into(),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Store for FencedStore {
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
    async fn put_user(&self, user: &User) -> Result<()> {
        self.open("put_user")?;
        self.inner.put_user(user).await
    }
    async fn user_by_token_hash(&self, token_hash: &str) -> Result<Option<User>> {
        self.inner.user_by_token_hash(token_hash).await
    }
    async fn get_user(&self, id: &str) -> Result<Option<User>> {
        self.inner.get_user(id).await
    }
    async fn list_users(&self) -> Result<Vec<User>> {
        self.inner.list_users().await
    }
    async fn put_team(&self, team: &Team) -> Result<()> {
        self.open("put_team")?;
        self.inner.put_team(team).await
    }
    async fn get_team(&self, id: &str) -> Result<Option<Team>> {
        self.inner.get_team(id).await
    }
    async fn teams_of(&self, user_id: &str) -> Result<Vec<Team>> {
        self.inner.teams_of(user_id).await
    }
    async fn list_teams(&self) -> Result<Vec<Team>> {
        self.inner.list_teams().await
    }
    async fn put_workspace(&self, workspace: &Workspace) -> Result<()> {
        self.open("put_workspace")?;
        self.inner.put_workspace(workspace).await
    }
    async fn get_workspace(&self, id: &str) -> Result<Option<Workspace>> {
        self.inner.get_workspace(id).await
    }
    async fn list_workspaces(&self) -> Result<Vec<Workspace>> {
        self.inner.list_workspaces().await
    }
    async fn delete_workspace(&self, id: &str) -> Result<()> {
        self.open("delete_workspace")?;
        self.inner.delete_workspace(id).await
    }
    async fn put_dock(&self, dock: &Dock) -> Result<()> {
        self.open("put_dock")?;
        self.inner.put_dock(dock).await
    }
    async fn get_dock(&self, id: &str) -> Result<Option<Dock>> {
        self.inner.get_dock(id).await
    }
    async fn list_docks(&self) -> Result<Vec<Dock>> {
        self.inner.list_docks().await
    }
    async fn delete_dock(&self, id: &str) -> Result<()> {
        self.open("delete_dock")?;
        self.inner.delete_dock(id).await
    }
    async fn dock_inventory(&self, dock_id: &str) -> Result<Vec<InventoryRecord>> {
        self.inner.dock_inventory(dock_id).await
    }
    async fn write_inventory(&self, write: &InventoryWrite) -> Result<()> {
        self.open("write_inventory")?;
        self.inner.write_inventory(write).await
    }
    async fn list_inventory(&self, query: &InventoryQuery) -> Result<Vec<InventoryRecord>> {
        self.inner.list_inventory(query).await
    }
    async fn put_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        self.open("put_snapshot")?;
        self.inner.put_snapshot(snapshot).await
    }
    async fn get_snapshot(&self, id: &str) -> Result<Option<Snapshot>> {
        self.inner.get_snapshot(id).await
    }
    async fn list_snapshots(&self, bucket_id: Option<&str>) -> Result<Vec<Snapshot>> {
        self.inner.list_snapshots(bucket_id).await
    }
    async fn delete_snapshot(&self, id: &str) -> Result<()> {
        self.open("delete_snapshot")?;
        self.inner.delete_snapshot(id).await
    }
    async fn insert_domain(&self, domain: &Domain) -> Result<()> {
        self.open("insert_domain")?;
        self.inner.insert_domain(domain).await
    }
    async fn update_domain(&self, domain: &Domain) -> Result<()> {
        self.open("update_domain")?;
        self.inner.update_domain(domain).await
    }
    async fn get_domain(&self, id: &str) -> Result<Option<Domain>> {
        self.inner.get_domain(id).await
    }
    async fn list_domains(&self) -> Result<Vec<Domain>> {
        self.inner.list_domains().await
    }
    async fn insert_bucket(&self, bucket: &BucketRecord) -> Result<()> {
        self.open("insert_bucket")?;
        self.inner.insert_bucket(bucket).await
    }
    async fn update_bucket(
        &self,
        bucket: &BucketRecord,
        expect: Option<BucketStatus>,
    ) -> Result<()> {
        self.open("update_bucket")?;
        self.inner.update_bucket(bucket, expect).await
    }
    async fn get_bucket(&self, id: &str) -> Result<Option<BucketRecord>> {
        self.inner.get_bucket(id).await
    }
    async fn delete_bucket(&self, id: &str) -> Result<()> {
        self.open("delete_bucket")?;
        self.inner.delete_bucket(id).await
    }
    async fn list_buckets(&self, query: &BucketQuery) -> Result<Vec<BucketRecord>> {
        self.inner.list_buckets(query).await
    }
    async fn reserved_ports(&self) -> Result<HashSet<u16>> {
        self.inner.reserved_ports().await
    }
    async fn subdomain_taken(&self, subdomain: &str) -> Result<bool> {
        self.inner.subdomain_taken(subdomain).await
    }
    async fn acquire_lease(&self, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<()> {
        self.lease_open("acquire_lease")?;
        self.inner.acquire_lease(holder, now_ms, ttl_ms).await
    }
    async fn release_lease(&self, holder: &str) -> Result<()> {
        self.inner.release_lease(holder).await
    }
    async fn claim_master_key(&self, fingerprint: &str) -> Result<String> {
        self.open("claim_master_key")?;
        self.inner.claim_master_key(fingerprint).await
    }
    async fn put_node(&self, node: &NodeRecord) -> Result<()> {
        self.open("put_node")?;
        self.inner.put_node(node).await
    }
    async fn list_nodes(&self) -> Result<Vec<NodeRecord>> {
        self.inner.list_nodes().await
    }
}
