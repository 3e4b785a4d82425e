//! Snapshot records in the embedded store, keyed by id.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{db_err, decode, encode};
use crate::error::Result;
use crate::snapshots::model::Snapshot;

pub(super) const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");

pub(super) fn put(db: &Database, s: &Snapshot) -> Result<()> {
    let txn = db.begin_write().map_err(db_err)?;
    txn.open_table(SNAPSHOTS)
        .map_err(db_err)?
        .insert(s.id.as_str(), encode(s)?.as_slice())
        .map_err(db_err)?;
    txn.commit().map_err(db_err)
}

pub(super) fn list(db: &Database, bucket_id: Option<&str>) -> Result<Vec<Snapshot>> {
    let txn = db.begin_read().map_err(db_err)?;
    let t = txn.open_table(SNAPSHOTS).map_err(db_err)?;
    let mut out = Vec::new();
    for row in t.iter().map_err(db_err)? {
        let (_, v) = row.map_err(db_err)?;
        let s: Snapshot = decode(v.value())?;
        if bucket_id.is_none_or(|b| s.bucket_id == b) {
            out.push(s);
        }
    }
    Ok(out)
}

pub(super) fn delete(db: &Database, id: &str) -> Result<()> {
    let txn = db.begin_write().map_err(db_err)?;
    txn.open_table(SNAPSHOTS)
        .map_err(db_err)?
        .remove(id)
        .map_err(db_err)?;
    txn.commit().map_err(db_err)
}
