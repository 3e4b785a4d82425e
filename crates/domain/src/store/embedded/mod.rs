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

mod inventory;
mod snapshots;

use super::{BucketQuery, Lease, Store, OWNER_AND_NAME};
use crate::error::{Error, Result};
use crate::inventory::model::{Dock, InventoryQuery, InventoryRecord, InventoryWrite};
use crate::model::{BucketRecord, BucketStatus, Domain, Team, User, Workspace};

const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const TOKENS: TableDefinition<&str, &str> = TableDefinition::new("token_hashes");
const TEAMS: TableDefinition<&str, &[u8]> = TableDefinition::new("teams");
const BUCKETS: TableDefinition<&str, &[u8]> = TableDefinition::new("buckets");
const BUCKET_NAMES: TableDefinition<&str, &str> = TableDefinition::new("bucket_names");
const PORTS: TableDefinition<u16, &str> = TableDefinition::new("ports");
const SUBDOMAINS: TableDefinition<&str, &str> = TableDefinition::new("subdomains");
const DOMAINS: TableDefinition<&str, &[u8]> = TableDefinition::new("domains");
const WORKSPACES: TableDefinition<&str, &[u8]> = TableDefinition::new("workspaces");
const DOMAIN_NAMES: TableDefinition<&str, &str> = TableDefinition::new("domain_names");
/// The daemon lease (one row, key `daemon`).
const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("leases");
/// Hosts linked to buckets (`files.example.com` → bucket id): one bucket per host.
const LINKED_HOSTS: TableDefinition<&str, &str> = TableDefinition::new("linked_hosts");

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

fn name_key(b: &BucketRecord) -> String {
    format!("{}\u{0}{}", b.user_id, b.name)
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
            txn.open_table(USERS).map_err(db_err)?;
            txn.open_table(TOKENS).map_err(db_err)?;
            txn.open_table(TEAMS).map_err(db_err)?;
            txn.open_table(BUCKETS).map_err(db_err)?;
            txn.open_table(BUCKET_NAMES).map_err(db_err)?;
            txn.open_table(PORTS).map_err(db_err)?;
            txn.open_table(SUBDOMAINS).map_err(db_err)?;
            txn.open_table(DOMAINS).map_err(db_err)?;
            txn.open_table(DOMAIN_NAMES).map_err(db_err)?;
            txn.open_table(WORKSPACES).map_err(db_err)?;
            txn.open_table(LINKED_HOSTS).map_err(db_err)?;
            txn.open_table(LEASES).map_err(db_err)?;
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

/// Reserves `new`'s ports and subdomain, releasing those of `old` it no longer holds.
fn reindex(
    txn: &redb::WriteTransaction,
    old: Option<&BucketRecord>,
    new: &BucketRecord,
) -> Result<()> {
    let mut ports = txn.open_table(PORTS).map_err(db_err)?;
    let mut subs = txn.open_table(SUBDOMAINS).map_err(db_err)?;
    let mut hosts = txn.open_table(LINKED_HOSTS).map_err(db_err)?;
    if let Some(old) = old {
        for p in old.ports() {
            ports.remove(p).map_err(db_err)?;
        }
        if let Some(s) = &old.subdomain {
            subs.remove(s.as_str()).map_err(db_err)?;
        }
        if let Some(h) = &old.linked_host {
            hosts.remove(h.as_str()).map_err(db_err)?;
        }
    }
    if let Some(h) = &new.linked_host {
        if let Some(holder) = hosts.get(h.as_str()).map_err(db_err)? {
            if holder.value() != new.id {
                return Err(Error::Conflict(format!("{h} is linked to another bucket")));
            }
        }
        hosts.insert(h.as_str(), new.id.as_str()).map_err(db_err)?;
    }
    for p in new.ports() {
        if let Some(holder) = ports.get(p).map_err(db_err)? {
            if holder.value() != new.id {
                return Err(Error::Conflict(format!(
                    "host port {p} is already reserved"
                )));
            }
        }
        ports.insert(p, new.id.as_str()).map_err(db_err)?;
    }
    if let Some(s) = &new.subdomain {
        if let Some(holder) = subs.get(s.as_str()).map_err(db_err)? {
            if holder.value() != new.id {
                return Err(Error::Conflict(format!("subdomain {s:?} is already taken")));
            }
        }
        subs.insert(s.as_str(), new.id.as_str()).map_err(db_err)?;
    }
    Ok(())
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn ping(&self) -> Result<()> {
        self.blocking(|db| db.begin_read().map(|_| ()).map_err(db_err))
            .await
    }

    async fn put_user(&self, user: &User) -> Result<()> {
        let user = user.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            {
                let mut users = txn.open_table(USERS).map_err(db_err)?;
                let mut tokens = txn.open_table(TOKENS).map_err(db_err)?;
                if let Some(holder) = tokens.get(user.token_hash.as_str()).map_err(db_err)? {
                    if holder.value() != user.id {
                        return Err(Error::Conflict("token already in use".into()));
                    }
                }
                let old: Option<User> = users
                    .get(user.id.as_str())
                    .map_err(db_err)?
                    .map(|v| decode(v.value()))
                    .transpose()?;
                if let Some(old) = old {
                    tokens.remove(old.token_hash.as_str()).map_err(db_err)?;
                }
                tokens
                    .insert(user.token_hash.as_str(), user.id.as_str())
                    .map_err(db_err)?;
                users
                    .insert(user.id.as_str(), encode(&user)?.as_slice())
                    .map_err(db_err)?;
            }
            txn.commit().map_err(db_err)
        })
        .await
    }

    async fn user_by_token_hash(&self, token_hash: &str) -> Result<Option<User>> {
        let hash = token_hash.to_string();
        self.blocking(move |db| {
            let id = {
                let txn = db.begin_read().map_err(db_err)?;
                let tokens = txn.open_table(TOKENS).map_err(db_err)?;
                let id = tokens.get(hash.as_str()).map_err(db_err)?;
                id.map(|v| v.value().to_string())
            };
            match id {
                Some(id) => Self::get(db, USERS, &id),
                None => Ok(None),
            }
        })
        .await
    }

    async fn get_user(&self, id: &str) -> Result<Option<User>> {
        let id = id.to_string();
        self.blocking(move |db| Self::get(db, USERS, &id)).await
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        self.blocking(|db| Self::all(db, USERS)).await
    }

    async fn put_team(&self, team: &Team) -> Result<()> {
        let team = team.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            {
                let mut teams = txn.open_table(TEAMS).map_err(db_err)?;
                teams
                    .insert(team.id.as_str(), encode(&team)?.as_slice())
                    .map_err(db_err)?;
            }
            txn.commit().map_err(db_err)
        })
        .await
    }

    async fn get_team(&self, id: &str) -> Result<Option<Team>> {
        let id = id.to_string();
        self.blocking(move |db| Self::get(db, TEAMS, &id)).await
    }

    async fn teams_of(&self, user_id: &str) -> Result<Vec<Team>> {
        let user_id = user_id.to_string();
        self.blocking(move |db| {
            let all: Vec<Team> = Self::all(db, TEAMS)?;
            Ok(all
                .into_iter()
                .filter(|t| t.members.contains(&user_id))
                .collect())
        })
        .await
    }

    async fn list_teams(&self) -> Result<Vec<Team>> {
        self.blocking(|db| Self::all(db, TEAMS)).await
    }

    async fn insert_domain(&self, domain: &Domain) -> Result<()> {
        let d = domain.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            {
                let mut names = txn.open_table(DOMAIN_NAMES).map_err(db_err)?;
                if names.get(d.name.as_str()).map_err(db_err)?.is_some() {
                    return Err(Error::Conflict(format!(
                        "domain {} is registered already",
                        d.name
                    )));
                }
                names
                    .insert(d.name.as_str(), d.id.as_str())
                    .map_err(db_err)?;
                let mut domains = txn.open_table(DOMAINS).map_err(db_err)?;
                domains
                    .insert(d.id.as_str(), encode(&d)?.as_slice())
                    .map_err(db_err)?;
            }
            txn.commit().map_err(db_err)
        })
        .await
    }

    async fn update_domain(&self, domain: &Domain) -> Result<()> {
        let d = domain.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            {
                let mut domains = txn.open_table(DOMAINS).map_err(db_err)?;
                let old: Option<Domain> = {
                    let v = domains.get(d.id.as_str()).map_err(db_err)?;
                    v.map(|v| decode(v.value())).transpose()?
                };
                match old {
                    Some(old) if old.name == d.name => {}
                    Some(_) => return Err(Error::Conflict("a domain's name cannot change".into())),
                    None => return Err(Error::NotFound("domain")),
                }
                domains
                    .insert(d.id.as_str(), encode(&d)?.as_slice())
                    .map_err(db_err)?;
            }
            txn.commit().map_err(db_err)
        })
        .await
    }

    async fn get_domain(&self, id: &str) -> Result<Option<Domain>> {
        let id = id.to_string();
        self.blocking(move |db| Self::get(db, DOMAINS, &id)).await
    }

    async fn put_workspace(&self, workspace: &Workspace) -> Result<()> {
        let w = workspace.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            {
                let mut t = txn.open_table(WORKSPACES).map_err(db_err)?;
                t.insert(w.id.as_str(), encode(&w)?.as_slice())
                    .map_err(db_err)?;
            }
            txn.commit().map_err(db_err)
        })
        .await
    }

    async fn get_workspace(&self, id: &str) -> Result<Option<Workspace>> {
        let id = id.to_string();
        self.blocking(move |db| Self::get(db, WORKSPACES, &id))
            .await
    }

    async fn list_workspaces(&self) -> Result<Vec<Workspace>> {
        self.blocking(|db| Self::all(db, WORKSPACES)).await
    }

    async fn delete_workspace(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            {
                let mut t = txn.open_table(WORKSPACES).map_err(db_err)?;
                t.remove(id.as_str()).map_err(db_err)?;
            }
            txn.commit().map_err(db_err)
        })
        .await
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
        self.blocking(|db| Self::all(db, DOMAINS)).await
    }

    async fn insert_bucket(&self, bucket: &BucketRecord) -> Result<()> {
        let b = bucket.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            {
                let mut buckets = txn.open_table(BUCKETS).map_err(db_err)?;
                let mut names = txn.open_table(BUCKET_NAMES).map_err(db_err)?;
                if buckets.get(b.id.as_str()).map_err(db_err)?.is_some() {
                    return Err(Error::Conflict(format!("bucket id {} exists", b.id)));
                }
                let key = name_key(&b);
                if names.get(key.as_str()).map_err(db_err)?.is_some() {
                    return Err(Error::Conflict(format!(
                        "you already have a bucket named {:?}",
                        b.name
                    )));
                }
                names.insert(key.as_str(), b.id.as_str()).map_err(db_err)?;
                buckets
                    .insert(b.id.as_str(), encode(&b)?.as_slice())
                    .map_err(db_err)?;
            }
            reindex(&txn, None, &b)?;
            txn.commit().map_err(db_err)
        })
        .await
    }

    async fn update_bucket(
        &self,
        bucket: &BucketRecord,
        expect: Option<BucketStatus>,
    ) -> Result<()> {
        let b = bucket.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            let old: BucketRecord = {
                let buckets = txn.open_table(BUCKETS).map_err(db_err)?;
                let v = buckets.get(b.id.as_str()).map_err(db_err)?;
                match v {
                    Some(v) => decode(v.value())?,
                    None => return Err(Error::NotFound("bucket")),
                }
            };
            if let Some(expected) = expect {
                if old.status != expected {
                    return Err(Error::Conflict(format!(
                        "bucket is {}, not {}",
                        old.status.as_str(),
                        expected.as_str()
                    )));
                }
            }
            if old.name != b.name || old.user_id != b.user_id {
                return Err(Error::Conflict(OWNER_AND_NAME.into()));
            }
            reindex(&txn, Some(&old), &b)?;
            {
                let mut buckets = txn.open_table(BUCKETS).map_err(db_err)?;
                buckets
                    .insert(b.id.as_str(), encode(&b)?.as_slice())
                    .map_err(db_err)?;
            }
            txn.commit().map_err(db_err)
        })
        .await
    }

    async fn get_bucket(&self, id: &str) -> Result<Option<BucketRecord>> {
        let id = id.to_string();
        self.blocking(move |db| Self::get(db, BUCKETS, &id)).await
    }

    async fn delete_bucket(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            let old: Option<BucketRecord> = {
                let buckets = txn.open_table(BUCKETS).map_err(db_err)?;
                let v = buckets.get(id.as_str()).map_err(db_err)?;
                v.map(|v| decode(v.value())).transpose()?
            };
            if let Some(old) = old {
                let mut buckets = txn.open_table(BUCKETS).map_err(db_err)?;
                let mut names = txn.open_table(BUCKET_NAMES).map_err(db_err)?;
                let mut ports = txn.open_table(PORTS).map_err(db_err)?;
                let mut subs = txn.open_table(SUBDOMAINS).map_err(db_err)?;
                let mut hosts = txn.open_table(LINKED_HOSTS).map_err(db_err)?;
                buckets.remove(id.as_str()).map_err(db_err)?;
                if let Some(h) = &old.linked_host {
                    hosts.remove(h.as_str()).map_err(db_err)?;
                }
                names.remove(name_key(&old).as_str()).map_err(db_err)?;
                for p in old.ports() {
                    ports.remove(p).map_err(db_err)?;
                }
                if let Some(s) = &old.subdomain {
                    subs.remove(s.as_str()).map_err(db_err)?;
                }
            }
            txn.commit().map_err(db_err)
        })
        .await
    }

    async fn list_buckets(&self, query: &BucketQuery) -> Result<Vec<BucketRecord>> {
        let q = query.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(BUCKETS).map_err(db_err)?;
            let mut out = Vec::new();
            let rows = match &q.after {
                Some(after) => t.range::<&str>((
                    std::ops::Bound::Excluded(after.as_str()),
                    std::ops::Bound::Unbounded,
                )),
                None => t.range::<&str>(..),
            }
            .map_err(db_err)?;
            for row in rows {
                let (_, v) = row.map_err(db_err)?;
                let b: BucketRecord = decode(v.value())?;
                if q.matches(&b) {
                    out.push(b);
                    if out.len() >= q.limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn reserved_ports(&self) -> Result<HashSet<u16>> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(PORTS).map_err(db_err)?;
            let mut out = HashSet::new();
            for row in t.iter().map_err(db_err)? {
                let (k, _) = row.map_err(db_err)?;
                out.insert(k.value());
            }
            Ok(out)
        })
        .await
    }

    async fn subdomain_taken(&self, subdomain: &str) -> Result<bool> {
        let s = subdomain.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(SUBDOMAINS).map_err(db_err)?;
            let taken = t.get(s.as_str()).map_err(db_err)?.is_some();
            Ok(taken)
        })
        .await
    }

    // redb already keeps a second process from opening the file; the lease row makes the
    // semantics the same as MongoDB's for the store suite and for in-process callers.
    async fn acquire_lease(&self, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<()> {
        let holder = holder.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            {
                let mut t = txn.open_table(LEASES).map_err(db_err)?;
                let current: Option<Lease> = {
                    let v = t.get("daemon").map_err(db_err)?;
                    v.map(|v| decode(v.value())).transpose()?
                };
                if let Some(l) = current {
                    if l.holder != holder && l.expires_at_ms >= now_ms {
                        return Err(super::lease_held(&l, now_ms));
                    }
                }
                let lease = Lease {
                    holder,
                    expires_at_ms: now_ms + ttl_ms,
                };
                t.insert("daemon", encode(&lease)?.as_slice())
                    .map_err(db_err)?;
            }
            txn.commit().map_err(db_err)
        })
        .await
    }

    async fn release_lease(&self, holder: &str) -> Result<()> {
        let holder = holder.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            {
                let mut t = txn.open_table(LEASES).map_err(db_err)?;
                let mine = {
                    let v = t.get("daemon").map_err(db_err)?;
                    v.map(|v| decode::<Lease>(v.value()))
                        .transpose()?
                        .is_some_and(|l| l.holder == holder)
                };
                if mine {
                    t.remove("daemon").map_err(db_err)?;
                }
            }
            txn.commit().map_err(db_err)
        })
        .await
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
