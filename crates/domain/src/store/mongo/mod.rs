//! The MongoDB store (production). Uniqueness is kept by unique indexes, not by checks in code:
//! (userId, name), every reserved port (a multikey index on `ports`), subdomain and token hash.
//! Status transitions are conditional replaces on the expected status. Writes go with the
//! driver's retryable writes and, unless the URI says otherwise, majority write concern.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{self, doc, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions, WriteConcern};
use mongodb::{Client, Collection, Database, IndexModel};
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

/// The MongoDB store.
#[derive(Clone)]
pub struct MongoStore {
    db: Database,
}

fn mongo_err(e: mongodb::error::Error) -> Error {
    match e.kind.as_ref() {
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. } => {
            Error::Unavailable(format!("MongoDB is unreachable: {e}"))
        }
        _ if is_duplicate(&e) => Error::Conflict(duplicate_message(&e)),
        _ => Error::Store(format!("MongoDB: {e}")),
    }
}

fn is_duplicate(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        _ => false,
    }
}

fn duplicate_message(e: &mongodb::error::Error) -> String {
    let text = e.to_string();
    if text.contains("owner_name") {
        "you already have a bucket with that name".into()
    } else if text.contains("ports") {
        "a host port of this bucket is already reserved".into()
    } else if text.contains("subdomain") {
        "that subdomain is already taken".into()
    } else if text.contains("linked_host") {
        "that host is linked to another bucket".into()
    } else if text.contains("token_hash") {
        "token already in use".into()
    } else {
        "conflicts with an existing record".into()
    }
}

fn to_doc<T: Serialize>(id: &str, v: &T) -> Result<Document> {
    let mut d = bson::to_document(v).map_err(|e| Error::Store(format!("encoding: {e}")))?;
    d.insert("_id", id);
    Ok(d)
}

fn from_doc<T: DeserializeOwned>(mut d: Document) -> Result<T> {
    d.remove("_id");
    d.remove("ports");
    bson::from_document(d).map_err(|e| Error::Store(format!("decoding: {e}")))
}

/// Decodes every document a cursor yields.
async fn drain<T: DeserializeOwned>(mut cursor: mongodb::Cursor<Document>) -> Result<Vec<T>> {
    let mut out = Vec::new();
    while let Some(d) = cursor.try_next().await.map_err(mongo_err)? {
        out.push(from_doc(d)?);
    }
    Ok(out)
}

fn unique(name: &str) -> IndexOptions {
    IndexOptions::builder()
        .unique(true)
        .name(name.to_string())
        .build()
}

impl MongoStore {
    /// Connects to the URI's database (`kalpana` when it names none), checks the server
    /// answers, and creates the indexes (idempotently).
    pub async fn connect(uri: &str) -> Result<Self> {
        Self::connect_to(uri, None).await
    }

    /// Like [`MongoStore::connect`], into the named database (tests use a fresh one each).
    pub async fn connect_to(uri: &str, database: Option<&str>) -> Result<Self> {
        let mut opts = ClientOptions::parse(uri).await.map_err(|e| {
            Error::Invalid(format!("KALPANA_STORE is not a valid MongoDB URI: {e}"))
        })?;
        if opts.write_concern.is_none() {
            // Acknowledged means journaled: a write the API confirmed survives the server
            // being killed the next moment (SecantusDB, like mongod with `j: false`, may
            // otherwise lose the last writes to a SIGKILL).
            opts.write_concern = Some(
                WriteConcern::builder()
                    .w(mongodb::options::Acknowledgment::Majority)
                    .journal(true)
                    .build(),
            );
        }
        // Fail a request fast while the server is away (503), and notice it is back within a
        // second or two (the driver's default heartbeat is 10 s).
        opts.server_selection_timeout
            .get_or_insert(Duration::from_secs(3));
        opts.heartbeat_freq.get_or_insert(Duration::from_secs(1));
        opts.app_name
            .get_or_insert_with(|| "kalpana-buckets".to_string());
        let client = Client::with_options(opts).map_err(mongo_err)?;
        let db = match database {
            Some(name) => client.database(name),
            None => client
                .default_database()
                .unwrap_or_else(|| client.database("kalpana")),
        };
        let store = MongoStore { db };
        store.ping().await?;
        store.create_indexes().await?;
        Ok(store)
    }

    /// Drops the whole database (test clean-up).
    pub async fn drop_database(&self) -> Result<()> {
        self.db.drop().await.map_err(mongo_err)
    }

    fn users(&self) -> Collection<Document> {
        self.db.collection("users")
    }
    fn teams(&self) -> Collection<Document> {
        self.db.collection("teams")
    }
    fn leases(&self) -> Collection<Document> {
        self.db.collection("leases")
    }
    fn nodes(&self) -> Collection<Document> {
        self.db.collection("nodes")
    }
    fn domains(&self) -> Collection<Document> {
        self.db.collection("domains")
    }
    fn workspaces(&self) -> Collection<Document> {
        self.db.collection("workspaces")
    }
    fn snapshots(&self) -> Collection<Document> {
        self.db.collection("snapshots")
    }
    fn buckets(&self) -> Collection<Document> {
        self.db.collection("buckets")
    }

    async fn create_indexes(&self) -> Result<()> {
        self.users()
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "tokenHash": 1 })
                    .options(unique("token_hash"))
                    .build(),
            )
            .await
            .map_err(mongo_err)?;
        self.domains()
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "name": 1 })
                    .options(unique("domain_name"))
                    .build(),
            )
            .await
            .map_err(mongo_err)?;
        self.teams()
            .create_index(IndexModel::builder().keys(doc! { "members": 1 }).build())
            .await
            .map_err(mongo_err)?;
        self.create_bucket_indexes().await?;
        self.snapshots()
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "bucketId": 1, "_id": 1 })
                    .build(),
            )
            .await
            .map_err(mongo_err)?;
        self.create_inventory_indexes().await
    }

    async fn find_all<T: DeserializeOwned>(
        &self,
        coll: Collection<Document>,
        filter: Document,
    ) -> Result<Vec<T>> {
        let mut cursor = coll
            .find(filter)
            .sort(doc! { "_id": 1 })
            .await
            .map_err(mongo_err)?;
        let mut out = Vec::new();
        while let Some(d) = cursor.try_next().await.map_err(mongo_err)? {
            out.push(from_doc(d)?);
        }
        Ok(out)
    }
}

#[async_trait]
impl Store for MongoStore {
    async fn ping(&self) -> Result<()> {
        self.db
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(mongo_err)?;
        Ok(())
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

    async fn put_snapshot(&self, snapshot: &crate::snapshots::model::Snapshot) -> Result<()> {
        self.put_snapshot_impl(snapshot).await
    }

    async fn get_snapshot(&self, id: &str) -> Result<Option<crate::snapshots::model::Snapshot>> {
        self.get_snapshot_impl(id).await
    }

    async fn list_snapshots(
        &self,
        bucket_id: Option<&str>,
    ) -> Result<Vec<crate::snapshots::model::Snapshot>> {
        self.list_snapshots_impl(bucket_id).await
    }

    async fn delete_snapshot(&self, id: &str) -> Result<()> {
        self.delete_snapshot_impl(id).await
    }

    async fn put_dock(&self, dock: &Dock) -> Result<()> {
        self.inv_put_dock(dock).await
    }

    async fn get_dock(&self, id: &str) -> Result<Option<Dock>> {
        self.docks()
            .find_one(doc! { "_id": id })
            .await
            .map_err(mongo_err)?
            .map(from_doc)
            .transpose()
    }

    async fn list_docks(&self) -> Result<Vec<Dock>> {
        self.find_all(self.docks(), doc! {}).await
    }

    async fn delete_dock(&self, id: &str) -> Result<()> {
        self.inv_delete_dock(id).await
    }

    async fn dock_inventory(&self, dock_id: &str) -> Result<Vec<InventoryRecord>> {
        self.inv_dock_inventory(dock_id).await
    }

    async fn write_inventory(&self, write: &InventoryWrite) -> Result<()> {
        self.inv_write(write).await
    }

    async fn list_inventory(&self, query: &InventoryQuery) -> Result<Vec<InventoryRecord>> {
        self.inv_list(query).await
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

    async fn get_domain(&self, id: &str) -> Result<Option<Domain>> {
        self.get_domain_impl(id).await
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

    async fn list_buckets(&self, q: &BucketQuery) -> Result<Vec<BucketRecord>> {
        self.list_buckets_impl(q).await
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
        self.nodes()
            .replace_one(doc! { "_id": &node.id }, to_doc(&node.id, node)?)
            .upsert(true)
            .await
            .map_err(mongo_err)?;
        Ok(())
    }

    async fn list_nodes(&self) -> Result<Vec<NodeRecord>> {
        self.find_all(self.nodes(), doc! {}).await
    }
}
