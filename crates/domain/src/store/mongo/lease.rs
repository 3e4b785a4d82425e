//! The daemon lease in MongoDB: one document, `_id` `daemon`.

use mongodb::bson::doc;

use super::{from_doc, is_duplicate, mongo_err, MongoStore};
use crate::error::{Error, Result};
use crate::store::{lease_held, Lease, MasterKeyRecord};

impl MongoStore {
    pub(super) async fn acquire_lease_impl(
        &self,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<()> {
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
                    Some(l) => lease_held(&l, now_ms),
                    None => Error::Conflict("the daemon lease changed hands; try again".into()),
                })
            }
            Err(e) => Err(mongo_err(e)),
        }
    }

    pub(super) async fn claim_master_key_impl(&self, fingerprint: &str) -> Result<String> {
        // Inserted only when absent; a racing second insert collides on `_id` and reads the
        // winner's.
        let filter = doc! { "_id": "master-key" };
        let update = doc! { "$setOnInsert": { "fingerprint": fingerprint } };
        match self
            .leases()
            .update_one(filter.clone(), update)
            .upsert(true)
            .await
        {
            Ok(_) => {}
            Err(e) if is_duplicate(&e) => {}
            Err(e) => return Err(mongo_err(e)),
        }
        let recorded = self
            .leases()
            .find_one(filter)
            .await
            .map_err(mongo_err)?
            .map(from_doc::<MasterKeyRecord>)
            .transpose()?;
        recorded
            .map(|r| r.fingerprint)
            .ok_or_else(|| Error::Internal("the master key record vanished".into()))
    }

    pub(super) async fn release_lease_impl(&self, holder: &str) -> Result<()> {
        self.leases()
            .delete_one(doc! { "_id": "daemon", "holder": holder })
            .await
            .map_err(mongo_err)?;
        Ok(())
    }
}
