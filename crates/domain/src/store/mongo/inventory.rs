//! Docks and the cloud inventory in MongoDB: `docks`, `blockVolumes` and `cloudBuckets`, the
//! two inventory collections each with the unique index on (dockId, providerResourceId).

use mongodb::bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};

use super::{drain, mongo_err, to_doc, MongoStore};
use crate::error::{Error, Result};
use crate::inventory::model::{
    Dock, InventoryQuery, InventoryRecord, InventoryWrite, ResourceKind,
};

/// Most documents one `insertMany` carries.
const INSERT_BATCH: usize = 1000;

impl MongoStore {
    pub(super) fn docks(&self) -> Collection<Document> {
        self.db.collection("docks")
    }

    fn inventory(&self, kind: ResourceKind) -> Collection<Document> {
        self.db.collection(match kind {
            ResourceKind::Volume => "blockVolumes",
            ResourceKind::Bucket => "cloudBuckets",
        })
    }

    pub(super) async fn create_inventory_indexes(&self) -> Result<()> {
        for kind in [ResourceKind::Volume, ResourceKind::Bucket] {
            let c = self.inventory(kind);
            c.create_index(
                IndexModel::builder()
                    .keys(doc! { "dockId": 1, "providerResourceId": 1 })
                    .options(
                        IndexOptions::builder()
                            .unique(true)
                            .name("dock_resource".to_string())
                            .build(),
                    )
                    .build(),
            )
            .await
            .map_err(mongo_err)?;
            c.create_index(
                IndexModel::builder()
                    .keys(doc! { "dockId": 1, "_id": 1 })
                    .build(),
            )
            .await
            .map_err(mongo_err)?;
        }
        Ok(())
    }

    pub(super) async fn inv_put_dock(&self, dock: &Dock) -> Result<()> {
        self.docks()
            .replace_one(doc! { "_id": &dock.id }, to_doc(&dock.id, dock)?)
            .upsert(true)
            .await
            .map_err(mongo_err)?;
        Ok(())
    }

    pub(super) async fn inv_delete_dock(&self, id: &str) -> Result<()> {
        for kind in [ResourceKind::Volume, ResourceKind::Bucket] {
            self.inventory(kind)
                .delete_many(doc! { "dockId": id })
                .await
                .map_err(mongo_err)?;
        }
        self.docks()
            .delete_one(doc! { "_id": id })
            .await
            .map_err(mongo_err)?;
        Ok(())
    }

    pub(super) async fn inv_dock_inventory(&self, dock_id: &str) -> Result<Vec<InventoryRecord>> {
        let mut out = Vec::new();
        for kind in [ResourceKind::Volume, ResourceKind::Bucket] {
            let cursor = self
                .inventory(kind)
                .find(doc! { "dockId": dock_id })
                .sort(doc! { "_id": 1 })
                .await
                .map_err(mongo_err)?;
            out.extend(drain::<InventoryRecord>(cursor).await?);
        }
        Ok(out)
    }

    pub(super) async fn inv_write(&self, w: &InventoryWrite) -> Result<()> {
        for kind in [ResourceKind::Volume, ResourceKind::Bucket] {
            let c = self.inventory(kind);
            let docs = w
                .insert
                .iter()
                .filter(|r| r.kind == kind)
                .map(|r| to_doc(&r.id, r))
                .collect::<Result<Vec<_>>>()?;
            for batch in docs.chunks(INSERT_BATCH) {
                c.insert_many(batch.to_vec()).await.map_err(|e| {
                    if e.to_string().contains("E11000") || e.to_string().contains("11000") {
                        Error::Conflict("the dock already holds one of these resources".into())
                    } else {
                        mongo_err(e)
                    }
                })?;
            }
            for r in w.update.iter().filter(|r| r.kind == kind) {
                c.replace_one(doc! { "_id": &r.id }, to_doc(&r.id, r)?)
                    .await
                    .map_err(mongo_err)?;
            }
            let gone: Vec<&str> = w
                .remove
                .iter()
                .filter(|r| r.kind == kind)
                .map(|r| r.id.as_str())
                .collect();
            if !gone.is_empty() {
                c.delete_many(doc! { "_id": { "$in": gone } })
                    .await
                    .map_err(mongo_err)?;
            }
        }
        Ok(())
    }

    pub(super) async fn inv_list(&self, q: &InventoryQuery) -> Result<Vec<InventoryRecord>> {
        let mut filter = doc! { "dockId": { "$in": &q.dock_ids } };
        if let Some(p) = q.provider {
            filter.insert("provider", p.as_str());
        }
        if let Some(r) = &q.region {
            filter.insert("region", r);
        }
        if let Some(a) = &q.after {
            filter.insert("_id", doc! { "$gt": a });
        }
        let coll = self.inventory(q.kind);
        let mut find = coll.find(filter).sort(doc! { "_id": 1 });
        if let Ok(limit) = i64::try_from(q.limit) {
            find = find.limit(limit);
        }
        drain(find.await.map_err(mongo_err)?).await
    }
}
