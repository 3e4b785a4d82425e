//! The MongoDB store (production). Uniqueness is kept by unique indexes, not by checks in code:
//! (userId, name), every reserved port (a multikey index on `ports`), subdomain and token hash.
//! Status transitions are conditional replaces on the expected status. Writes go with the
//! driver's retryable writes and, unless the URI says otherwise, majority write concern.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{self, doc, Bson, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions, WriteConcern};
use mongodb::{Client, Collection, Database, IndexModel};
use serde::de::DeserializeOwned;
use serde::Serialize;

mod inventory;

use super::{BucketQuery, Lease, Store};
use crate::error::{Error, Result};
use crate::inventory::model::{Dock, InventoryQuery, InventoryRecord, InventoryWrite};
use crate::model::{BucketRecord, BucketStatus, Domain, Team, User, Workspace};

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

fn bucket_doc(b: &BucketRecord) -> Result<Document> {
    let mut d = to_doc(&b.id, b)?;
    let ports: Vec<Bson> = b
        .ports()
        .into_iter()
        .map(|p| Bson::Int32(i32::from(p)))
        .collect();
    d.insert("ports", ports);
    Ok(d)
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
        let unique = |name: &str| {
            IndexOptions::builder()
                .unique(true)
                .name(name.to_string())
                .build()
        };
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
        let b = self.buckets();
        b.create_index(
            IndexModel::builder()
                .keys(doc! { "userId": 1, "name": 1 })
                .options(unique("owner_name"))
                .build(),
        )
        .await
        .map_err(mongo_err)?;
        // Partial: buckets without ports (released after a failed create) hold no reservation.
        let ports_opts = IndexOptions::builder()
            .unique(true)
            .name("ports".to_string())
            .partial_filter_expression(doc! { "ports": { "$type": "number" } })
            .build();
        b.create_index(
            IndexModel::builder()
                .keys(doc! { "ports": 1 })
                .options(ports_opts)
                .build(),
        )
        .await
        .map_err(mongo_err)?;
        let sub_opts = IndexOptions::builder()
            .unique(true)
            .name("subdomain".to_string())
            .partial_filter_expression(doc! { "subdomain": { "$type": "string" } })
            .build();
        b.create_index(
            IndexModel::builder()
                .keys(doc! { "subdomain": 1 })
                .options(sub_opts)
                .build(),
        )
        .await
        .map_err(mongo_err)?;
        // One bucket per linked host (default hosts are unique through `subdomain`).
        let host_opts = IndexOptions::builder()
            .unique(true)
            .name("linked_host".to_string())
            .partial_filter_expression(doc! { "linkedHost": { "$type": "string" } })
            .build();
        b.create_index(
            IndexModel::builder()
                .keys(doc! { "linkedHost": 1 })
                .options(host_opts)
                .build(),
        )
        .await
        .map_err(mongo_err)?;
        // A page of the caller's buckets is `userId` (or `teamId`) in `_id` order from a
        // cursor: these let MongoDB read exactly the page, in order, without sorting.
        for keys in [
            doc! { "userId": 1, "_id": 1 },
            doc! { "teamId": 1, "_id": 1 },
            doc! { "workspaceId": 1 },
            doc! { "status": 1 },
        ] {
            b.create_index(IndexModel::builder().keys(keys).build())
                .await
                .map_err(mongo_err)?;
        }
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
        self.users()
            .replace_one(doc! { "_id": &user.id }, to_doc(&user.id, user)?)
            .upsert(true)
            .await
            .map_err(mongo_err)?;
        Ok(())
    }

    async fn user_by_token_hash(&self, token_hash: &str) -> Result<Option<User>> {
        let d = self
            .users()
            .find_one(doc! { "tokenHash": token_hash })
            .await
            .map_err(mongo_err)?;
        d.map(from_doc).transpose()
    }

    async fn get_user(&self, id: &str) -> Result<Option<User>> {
        let d = self
            .users()
            .find_one(doc! { "_id": id })
            .await
            .map_err(mongo_err)?;
        d.map(from_doc).transpose()
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        self.find_all(self.users(), doc! {}).await
    }

    async fn put_team(&self, team: &Team) -> Result<()> {
        self.teams()
            .replace_one(doc! { "_id": &team.id }, to_doc(&team.id, team)?)
            .upsert(true)
            .await
            .map_err(mongo_err)?;
        Ok(())
    }

    async fn get_team(&self, id: &str) -> Result<Option<Team>> {
        let d = self
            .teams()
            .find_one(doc! { "_id": id })
            .await
            .map_err(mongo_err)?;
        d.map(from_doc).transpose()
    }

    async fn teams_of(&self, user_id: &str) -> Result<Vec<Team>> {
        self.find_all(self.teams(), doc! { "members": user_id })
            .await
    }

    async fn list_teams(&self) -> Result<Vec<Team>> {
        self.find_all(self.teams(), doc! {}).await
    }

    async fn insert_domain(&self, domain: &Domain) -> Result<()> {
        self.domains()
            .insert_one(to_doc(&domain.id, domain)?)
            .await
            .map_err(mongo_err)?;
        Ok(())
    }

    async fn update_domain(&self, domain: &Domain) -> Result<()> {
        let r = self
            .domains()
            .replace_one(
                doc! { "_id": &domain.id, "name": &domain.name },
                to_doc(&domain.id, domain)?,
            )
            .await
            .map_err(mongo_err)?;
        if r.matched_count == 0 {
            return Err(Error::NotFound("domain"));
        }
        Ok(())
    }

    async fn put_snapshot(&self, snapshot: &crate::snapshots::model::Snapshot) -> Result<()> {
        self.snapshots()
            .replace_one(
                doc! { "_id": &snapshot.id },
                to_doc(&snapshot.id, snapshot)?,
            )
            .upsert(true)
            .await
            .map_err(mongo_err)?;
        Ok(())
    }

    async fn get_snapshot(&self, id: &str) -> Result<Option<crate::snapshots::model::Snapshot>> {
        self.snapshots()
            .find_one(doc! { "_id": id })
            .await
            .map_err(mongo_err)?
            .map(from_doc)
            .transpose()
    }

    async fn list_snapshots(
        &self,
        bucket_id: Option<&str>,
    ) -> Result<Vec<crate::snapshots::model::Snapshot>> {
        let filter = match bucket_id {
            Some(b) => doc! { "bucketId": b },
            None => doc! {},
        };
        self.find_all(self.snapshots(), filter).await
    }

    async fn delete_snapshot(&self, id: &str) -> Result<()> {
        self.snapshots()
            .delete_one(doc! { "_id": id })
            .await
            .map_err(mongo_err)?;
        Ok(())
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
        self.workspaces()
            .replace_one(
                doc! { "_id": &workspace.id },
                to_doc(&workspace.id, workspace)?,
            )
            .upsert(true)
            .await
            .map_err(mongo_err)?;
        Ok(())
    }

    async fn get_workspace(&self, id: &str) -> Result<Option<Workspace>> {
        let d = self
            .workspaces()
            .find_one(doc! { "_id": id })
            .await
            .map_err(mongo_err)?;
        d.map(from_doc).transpose()
    }

    async fn list_workspaces(&self) -> Result<Vec<Workspace>> {
        self.find_all(self.workspaces(), doc! {}).await
    }

    async fn delete_workspace(&self, id: &str) -> Result<()> {
        self.workspaces()
            .delete_one(doc! { "_id": id })
            .await
            .map_err(mongo_err)?;
        Ok(())
    }

    async fn get_domain(&self, id: &str) -> Result<Option<Domain>> {
        let d = self
            .domains()
            .find_one(doc! { "_id": id })
            .await
            .map_err(mongo_err)?;
        d.map(from_doc).transpose()
    }

    async fn list_domains(&self) -> Result<Vec<Domain>> {
        self.find_all(self.domains(), doc! {}).await
    }

    async fn insert_bucket(&self, bucket: &BucketRecord) -> Result<()> {
        self.buckets()
            .insert_one(bucket_doc(bucket)?)
            .await
            .map_err(mongo_err)?;
        Ok(())
    }

    async fn update_bucket(
        &self,
        bucket: &BucketRecord,
        expect: Option<BucketStatus>,
    ) -> Result<()> {
        let mut filter =
            doc! { "_id": &bucket.id, "userId": &bucket.user_id, "name": &bucket.name };
        if let Some(s) = expect {
            filter.insert("status", s.as_str());
        }
        let r = self
            .buckets()
            .replace_one(filter, bucket_doc(bucket)?)
            .await
            .map_err(mongo_err)?;
        if r.matched_count == 1 {
            return Ok(());
        }
        match self.get_bucket(&bucket.id).await? {
            None => Err(Error::NotFound("bucket")),
            Some(current) if current.user_id != bucket.user_id || current.name != bucket.name => {
                Err(Error::Conflict(super::OWNER_AND_NAME.into()))
            }
            Some(current) => Err(Error::Conflict(format!(
                "bucket is {}, not {}",
                current.status.as_str(),
                expect.map(|s| s.as_str()).unwrap_or("as expected")
            ))),
        }
    }

    async fn get_bucket(&self, id: &str) -> Result<Option<BucketRecord>> {
        let d = self
            .buckets()
            .find_one(doc! { "_id": id })
            .await
            .map_err(mongo_err)?;
        d.map(from_doc).transpose()
    }

    async fn delete_bucket(&self, id: &str) -> Result<()> {
        self.buckets()
            .delete_one(doc! { "_id": id })
            .await
            .map_err(mongo_err)?;
        Ok(())
    }

    async fn list_buckets(&self, q: &BucketQuery) -> Result<Vec<BucketRecord>> {
        let mut filter = Document::new();
        if !q.all {
            let mut or = Vec::new();
            if let Some(owner) = &q.owner {
                or.push(doc! { "userId": owner });
            }
            if !q.teams.is_empty() {
                or.push(doc! { "teamId": { "$in": &q.teams } });
            }
            if or.is_empty() {
                return Ok(Vec::new());
            }
            filter.insert("$or", or);
        }
        if let Some(w) = &q.workspace_id {
            filter.insert("workspaceId", w);
        }
        if let Some(t) = &q.team_id {
            filter.insert("teamId", t);
        }
        if let Some(s) = q.status {
            filter.insert("status", s.as_str());
        }
        if let Some(after) = &q.after {
            filter.insert("_id", doc! { "$gt": after });
        }
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        let cursor = self
            .buckets()
            .find(filter)
            .sort(doc! { "_id": 1 })
            .limit(limit)
            .await
            .map_err(mongo_err)?;
        drain(cursor).await
    }

    async fn reserved_ports(&self) -> Result<HashSet<u16>> {
        let mut cursor = self
            .buckets()
            .find(doc! { "ports": { "$type": "number" } })
            .projection(doc! { "ports": 1 })
            .await
            .map_err(mongo_err)?;
        let mut out = HashSet::new();
        while let Some(d) = cursor.try_next().await.map_err(mongo_err)? {
            if let Ok(ports) = d.get_array("ports") {
                out.extend(
                    ports
                        .iter()
                        .filter_map(|p| p.as_i32())
                        .filter_map(|p| u16::try_from(p).ok()),
                );
            }
        }
        Ok(out)
    }

    async fn subdomain_taken(&self, subdomain: &str) -> Result<bool> {
        let n = self
            .buckets()
            .count_documents(doc! { "subdomain": subdomain })
            .await
            .map_err(mongo_err)?;
        Ok(n > 0)
    }

    async fn acquire_lease(&self, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<()> {
        // Matches only a lease this holder has or one that expired; when another holder's is
        // live the upsert collides with its `_id` (11000) and nothing changes.
        let filter = doc! {
            "_id": "daemon",
            "$or": [ { "holder": holder }, { "expiresAtMs": { "$lt": now_ms } } ],
        };
        let update = doc! { "$set": { "holder": holder, "expiresAtMs": now_ms + ttl_ms } };
        match self.leases().update_one(filter, update).upsert(true).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate(&e) => {
                let current = self
                    .leases()
                    .find_one(doc! { "_id": "daemon" })
                    .await
                    .map_err(mongo_err)?
                    .map(from_doc::<Lease>)
                    .transpose()?;
                Err(match current {
                    Some(l) => super::lease_held(&l, now_ms),
                    None => Error::Conflict("the daemon lease changed hands; try again".into()),
                })
            }
            Err(e) => Err(mongo_err(e)),
        }
    }

    async fn release_lease(&self, holder: &str) -> Result<()> {
        self.leases()
            .delete_one(doc! { "_id": "daemon", "holder": holder })
            .await
            .map_err(mongo_err)?;
        Ok(())
    }
}
