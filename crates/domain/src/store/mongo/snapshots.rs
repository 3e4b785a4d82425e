//! Snapshot records in MongoDB, indexed by (bucketId, _id).

use mongodb::bson::doc;

use super::{from_doc, mongo_err, to_doc, MongoStore};
use crate::error::Result;
use crate::snapshots::model::Snapshot;

impl MongoStore {
    pub(super) async fn put_snapshot_impl(&self, snapshot: &Snapshot) -> Result<()> {
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

    pub(super) async fn get_snapshot_impl(&self, id: &str) -> Result<Option<Snapshot>> {
        self.snapshots()
            .find_one(doc! { "_id": id })
            .await
            .map_err(mongo_err)?
            .map(from_doc)
            .transpose()
    }

    pub(super) async fn list_snapshots_impl(
        &self,
        bucket_id: Option<&str>,
    ) -> Result<Vec<Snapshot>> {
        let filter = match bucket_id {
            Some(b) => doc! { "bucketId": b },
            None => doc! {},
        };
        self.find_all(self.snapshots(), filter).await
    }

    pub(super) async fn delete_snapshot_impl(&self, id: &str) -> Result<()> {
        self.snapshots()
            .delete_one(doc! { "_id": id })
            .await
            .map_err(mongo_err)?;
        Ok(())
    }
}
