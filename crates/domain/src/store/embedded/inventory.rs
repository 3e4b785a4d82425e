//! Docks and the cloud inventory in the embedded store. Volumes and buckets have a table each,
//! keyed by `dockId \n providerResourceId`: the key is the unique index the seeds ask for, and a
//! dock's records are one key range.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{db_err, decode, encode};
use crate::error::{Error, Result};
use crate::inventory::model::{
    Dock, InventoryQuery, InventoryRecord, InventoryWrite, ResourceKind,
};

pub(super) const DOCKS: TableDefinition<&str, &[u8]> = TableDefinition::new("docks");
pub(super) const VOLUMES: TableDefinition<&str, &[u8]> = TableDefinition::new("block_volumes");
pub(super) const CLOUD_BUCKETS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("cloud_buckets");

fn table(kind: ResourceKind) -> TableDefinition<'static, &'static str, &'static [u8]> {
    match kind {
        ResourceKind::Volume => VOLUMES,
        ResourceKind::Bucket => CLOUD_BUCKETS,
    }
}

fn key(r: &InventoryRecord) -> String {
    format!("{}\n{}", r.dock_id, r.provider_resource_id)
}

/// The key range of one dock's records (`\n` is 0x0A, so 0x0B ends it).
fn dock_range(dock_id: &str) -> (String, String) {
    (format!("{dock_id}\n"), format!("{dock_id}\u{b}"))
}

pub(super) fn delete_dock(db: &Database, id: &str) -> Result<()> {
    let txn = db.begin_write().map_err(db_err)?;
    {
        let (from, to) = dock_range(id);
        for kind in [ResourceKind::Volume, ResourceKind::Bucket] {
            let mut t = txn.open_table(table(kind)).map_err(db_err)?;
            t.retain_in(from.as_str()..to.as_str(), |_, _| false)
                .map_err(db_err)?;
        }
        txn.open_table(DOCKS)
            .map_err(db_err)?
            .remove(id)
            .map_err(db_err)?;
    }
    txn.commit().map_err(db_err)
}

pub(super) fn dock_inventory(db: &Database, dock_id: &str) -> Result<Vec<InventoryRecord>> {
    let txn = db.begin_read().map_err(db_err)?;
    let (from, to) = dock_range(dock_id);
    let mut out = Vec::new();
    for kind in [ResourceKind::Volume, ResourceKind::Bucket] {
        let t = txn.open_table(table(kind)).map_err(db_err)?;
        for row in t.range(from.as_str()..to.as_str()).map_err(db_err)? {
            let (_, v) = row.map_err(db_err)?;
            out.push(decode(v.value())?);
        }
    }
    Ok(out)
}

pub(super) fn write_inventory(db: &Database, w: &InventoryWrite) -> Result<()> {
    let txn = db.begin_write().map_err(db_err)?;
    {
        let mut tables = [
            txn.open_table(VOLUMES).map_err(db_err)?,
            txn.open_table(CLOUD_BUCKETS).map_err(db_err)?,
        ];
        let at = |kind| match kind {
            ResourceKind::Volume => 0,
            ResourceKind::Bucket => 1,
        };
        for r in &w.insert {
            let t = &mut tables[at(r.kind)];
            let k = key(r);
            if t.get(k.as_str()).map_err(db_err)?.is_some() {
                return Err(Error::Conflict(format!(
                    "dock {} already holds {}",
                    r.dock_id, r.provider_resource_id
                )));
            }
            t.insert(k.as_str(), encode(r)?.as_slice())
                .map_err(db_err)?;
        }
        for r in &w.update {
            tables[at(r.kind)]
                .insert(key(r).as_str(), encode(r)?.as_slice())
                .map_err(db_err)?;
        }
        for r in &w.remove {
            tables[at(r.kind)].remove(key(r).as_str()).map_err(db_err)?;
        }
    }
    txn.commit().map_err(db_err)
}

pub(super) fn list_inventory(db: &Database, q: &InventoryQuery) -> Result<Vec<InventoryRecord>> {
    let txn = db.begin_read().map_err(db_err)?;
    let t = txn.open_table(table(q.kind)).map_err(db_err)?;
    let mut out = Vec::new();
    for dock in &q.dock_ids {
        let (from, to) = dock_range(dock);
        for row in t.range(from.as_str()..to.as_str()).map_err(db_err)? {
            let (_, v) = row.map_err(db_err)?;
            let r: InventoryRecord = decode(v.value())?;
            if q.matches(&r) {
                out.push(r);
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.truncate(q.limit);
    Ok(out)
}

pub(super) fn put_dock(db: &Database, dock: &Dock) -> Result<()> {
    let txn = db.begin_write().map_err(db_err)?;
    txn.open_table(DOCKS)
        .map_err(db_err)?
        .insert(dock.id.as_str(), encode(dock)?.as_slice())
        .map_err(db_err)?;
    txn.commit().map_err(db_err)
}
