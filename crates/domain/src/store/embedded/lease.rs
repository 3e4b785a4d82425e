//! The daemon lease in the embedded store.

use redb::{ReadableTable, TableDefinition};

use super::{db_err, decode, encode, EmbeddedStore};
use crate::error::Result;
use crate::store::{lease_held, Lease, MasterKeyRecord};

/// The daemon lease (one row, key `daemon`).
pub(super) const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("leases");
/// Cluster nodes' records (their leases), by node id.
pub(super) const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");

impl EmbeddedStore {
    // redb already keeps a second process from opening the file; the lease row makes the
    // semantics the same as MongoDB's for the store suite and for in-process callers.
    pub(super) async fn acquire_lease_impl(
        &self,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<()> {
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
                        return Err(lease_held(&l, now_ms));
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

    pub(super) async fn claim_master_key_impl(&self, fingerprint: &str) -> Result<String> {
        let fingerprint = fingerprint.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            let recorded = {
                let mut t = txn.open_table(LEASES).map_err(db_err)?;
                let current: Option<MasterKeyRecord> = {
                    let v = t.get("master-key").map_err(db_err)?;
                    v.map(|v| decode(v.value())).transpose()?
                };
                match current {
                    Some(r) => r.fingerprint,
                    None => {
                        let r = MasterKeyRecord {
                            fingerprint: fingerprint.clone(),
                        };
                        t.insert("master-key", encode(&r)?.as_slice())
                            .map_err(db_err)?;
                        fingerprint
                    }
                }
            };
            txn.commit().map_err(db_err)?;
            Ok(recorded)
        })
        .await
    }

    pub(super) async fn release_lease_impl(&self, holder: &str) -> Result<()> {
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
