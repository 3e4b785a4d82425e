//! Bucket records in MongoDB and their indexes (owner + name, ports, subdomain, linked host).

use std::collections::HashSet;

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::IndexOptions;
use mongodb::IndexModel;

use super::{drain, from_doc, mongo_err, to_doc, unique, MongoStore};
use crate::error::{Error, Result};
use crate::model::{BucketRecord, BucketStatus};
use crate::store::{BucketQuery, OWNER_AND_NAME};

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
    pub(super) async fn create_bucket_indexes(&self) -> Result<()> {
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
        Ok(())
    }

    pub(super) async fn insert_bucket_impl(&self, bucket: &BucketRecord) -> Result<()> {
        self.buckets()
            .insert_one(bucket_doc(bucket)?)
            .await
            .map_err(mongo_err)?;
        Ok(())
    }

    pub(super) async fn update_bucket_impl(
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
        match self.get_bucket_impl(&bucket.id).await? {
            None => Err(Error::NotFound("bucket")),
            Some(current) if current.user_id != bucket.user_id || current.name != bucket.name => {
                Err(Error::Conflict(OWNER_AND_NAME.into()))
            }
            Some(current) => Err(Error::Conflict(format!(
                "bucket is {}, not {}",
                current.status.as_str(),
                expect.map(|s| s.as_str()).unwrap_or("as expected")
            ))),
        }
    }

    pub(super) async fn get_bucket_impl(&self, id: &str) -> Result<Option<BucketRecord>> {
        let d = self
            .buckets()
            .find_one(doc! { "_id": id })
            .await
            .map_err(mongo_err)?;
        d.map(from_doc).transpose()
    }

    pub(super) async fn delete_bucket_impl(&self, id: &str) -> Result<()> {
        self.buckets()
            .delete_one(doc! { "_id": id })
            .await
            .map_err(mongo_err)?;
        Ok(())
    }

    pub(super) async fn list_buckets_impl(&self, q: &BucketQuery) -> Result<Vec<BucketRecord>> {
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

    pub(super) async fn reserved_ports_impl(&self) -> Result<HashSet<u16>> {
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

    pub(super) async fn subdomain_taken_impl(&self, subdomain: &str) -> Result<bool> {
        let n = self
            .buckets()
            .count_documents(doc! { "subdomain": subdomain })
            .await
            .map_err(mongo_err)?;
        Ok(n > 0)
    }
}
