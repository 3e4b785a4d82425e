//! Buckets in the embedded store, with the index tables of their names, ports, subdomains, hosts.

use std::collections::HashSet;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{db_err, decode, encode, EmbeddedStore};
use crate::error::{Error, Result};
use crate::model::{BucketRecord, BucketStatus};
use crate::store::{BucketQuery, OWNER_AND_NAME};

pub(super) const BUCKETS: TableDefinition<&str, &[u8]> = TableDefinition::new("buckets");
pub(super) const BUCKET_NAMES: TableDefinition<&str, &str> = TableDefinition::new("bucket_names");
pub(super) const PORTS: TableDefinition<u16, &str> = TableDefinition::new("ports");
pub(super) const SUBDOMAINS: TableDefinition<&str, &str> = TableDefinition::new("subdomains");
/// Hosts linked to buckets (`files.example.com` → bucket id): one bucket per host.
pub(super) const LINKED_HOSTS: TableDefinition<&str, &str> = TableDefinition::new("linked_hosts");

fn name_key(b: &BucketRecord) -> String {
    format!("{}\u{0}{}", b.user_id, b.name)
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

impl EmbeddedStore {
    pub(super) async fn insert_bucket_impl(&self, bucket: &BucketRecord) -> Result<()> {
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

    pub(super) async fn update_bucket_impl(
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

    pub(super) async fn get_bucket_impl(&self, id: &str) -> Result<Option<BucketRecord>> {
        let id = id.to_string();
        self.blocking(move |db| Self::get(db, BUCKETS, &id)).await
    }

    pub(super) async fn delete_bucket_impl(&self, id: &str) -> Result<()> {
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

    pub(super) async fn list_buckets_impl(&self, query: &BucketQuery) -> Result<Vec<BucketRecord>> {
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

    pub(super) async fn reserved_ports_impl(&self) -> Result<HashSet<u16>> {
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

    pub(super) async fn subdomain_taken_impl(&self, subdomain: &str) -> Result<bool> {
        let s = subdomain.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(SUBDOMAINS).map_err(db_err)?;
            let taken = t.get(s.as_str()).map_err(db_err)?.is_some();
            Ok(taken)
        })
        .await
    }
}
