//! The store suite's checks of docks, the cloud inventory and snapshot records.

use serde_json::json;

use super::Store;
use crate::error::Error;
use crate::inventory::model::{
    CloudProvider, Dock, InventoryQuery, InventoryRecord, InventoryWrite, ResourceKind,
};
use crate::model::{new_id, now};

fn dock(user: &str) -> Dock {
    Dock {
        id: new_id(),
        name: "prod".into(),
        provider: CloudProvider::Vultr,
        user_id: user.into(),
        team_id: None,
        token_enc: "sealed".into(),
        created_at: now(),
        last_synced_at: None,
        last_sync_error: None,
        last_good_sync_at: None,
        last_sync: None,
    }
}

fn volume(dock: &str, prid: &str, region: &str) -> InventoryRecord {
    let mut r = crate::inventory::providers::record(
        ResourceKind::Volume,
        CloudProvider::Vultr,
        prid.into(),
        prid.into(),
        region.into(),
        "active".into(),
        json!({ "block": { "id": prid } }),
    );
    r.id = new_id();
    r.dock_id = dock.into();
    r.size_gb = Some(10);
    r.updated_at = now();
    r
}

fn query(kind: ResourceKind, docks: &[&str]) -> InventoryQuery {
    InventoryQuery {
        kind,
        dock_ids: docks.iter().map(|d| d.to_string()).collect(),
        provider: None,
        region: None,
        after: None,
        limit: usize::MAX,
    }
}

/// Docks round-trip; inventory writes insert, replace and remove; the (dock, resource) key is
/// unique; listing filters, orders and pages by id; deleting a dock takes its records along.
pub async fn inventory(s: &dyn Store) {
    let a = dock("u1");
    let b = dock("u2");
    s.put_dock(&a).await.expect("put dock");
    s.put_dock(&b).await.expect("put dock");
    assert_eq!(s.get_dock(&a.id).await.expect("get"), Some(a.clone()));
    assert_eq!(s.list_docks().await.expect("list").len(), 2);

    let v1 = volume(&a.id, "vol-1", "lax");
    let v2 = volume(&a.id, "vol-2", "ewr");
    let other = volume(&b.id, "vol-1", "lax");
    let mut bucket = volume(&a.id, "vol-1", "lax");
    bucket.kind = ResourceKind::Bucket;
    s.write_inventory(&InventoryWrite {
        insert: vec![v1.clone(), v2.clone(), other.clone(), bucket.clone()],
        ..Default::default()
    })
    .await
    .expect("insert");
    // The same resource of the same dock again is refused, whatever its id.
    let dup = volume(&a.id, "vol-1", "lax");
    let refused = s
        .write_inventory(&InventoryWrite {
            insert: vec![dup],
            ..Default::default()
        })
        .await;
    assert!(matches!(refused, Err(Error::Conflict(_))), "{refused:?}");
    let mine = s.dock_inventory(&a.id).await.expect("dock inventory");
    assert_eq!(mine.len(), 3, "two volumes and a bucket: {mine:?}");

    let page = s
        .list_inventory(&query(ResourceKind::Volume, &[&a.id]))
        .await
        .expect("list");
    let mut ids = vec![v1.id.clone(), v2.id.clone()];
    ids.sort();
    assert_eq!(page.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), ids);
    let lax = s
        .list_inventory(&InventoryQuery {
            region: Some("lax".into()),
            ..query(ResourceKind::Volume, &[&a.id, &b.id])
        })
        .await
        .expect("by region");
    assert_eq!(lax.len(), 2);
    let after = s
        .list_inventory(&InventoryQuery {
            after: Some(ids[0].clone()),
            limit: 1,
            ..query(ResourceKind::Volume, &[&a.id])
        })
        .await
        .expect("after");
    assert_eq!(after.iter().map(|r| &r.id).collect::<Vec<_>>(), [&ids[1]]);
    assert!(s
        .list_inventory(&query(ResourceKind::Volume, &[]))
        .await
        .expect("no docks")
        .is_empty());

    let mut changed = v1.clone();
    changed.size_gb = Some(20);
    s.write_inventory(&InventoryWrite {
        update: vec![changed.clone()],
        remove: vec![v2.clone()],
        ..Default::default()
    })
    .await
    .expect("update and remove");
    let mine = s
        .list_inventory(&query(ResourceKind::Volume, &[&a.id]))
        .await
        .expect("list");
    assert_eq!(mine, vec![changed]);

    s.delete_dock(&a.id).await.expect("delete dock");
    assert_eq!(s.get_dock(&a.id).await.expect("get"), None);
    assert!(s.dock_inventory(&a.id).await.expect("gone").is_empty());
    assert_eq!(
        s.dock_inventory(&b.id).await.expect("kept"),
        vec![other],
        "another dock's records stay"
    );
    s.delete_dock(&b.id).await.expect("delete dock");
    s.delete_dock(&b.id).await.expect("deleting twice is fine");
}

/// Snapshot records round-trip and list per bucket.
pub async fn snapshots(s: &dyn Store) {
    use crate::snapshots::model::{
        Restore, RestoreStatus, Snapshot, SnapshotKey, SnapshotStatus, SnapshotTarget,
    };
    let snap = |bucket: &str| Snapshot {
        id: new_id(),
        bucket_id: bucket.into(),
        user_id: "u1".into(),
        status: SnapshotStatus::Pending,
        bytes_done: 0,
        size_bytes: None,
        sha256: None,
        target: SnapshotTarget {
            bucket_id: "t".into(),
            key: "snapshots/x".into(),
        },
        note: None,
        created_at: now(),
        finished_at: None,
        message: None,
        paused_millis: None,
        keys: Vec::new(),
        scheduled: false,
        restore: None,
        format: 2,
    };
    let (a1, a2, b1) = (snap("a"), snap("a"), snap("b"));
    for x in [&a1, &a2, &b1] {
        s.put_snapshot(x).await.expect("put snapshot");
    }
    let mut done = a1.clone();
    done.status = SnapshotStatus::Done;
    done.sha256 = Some("ab".into());
    done.scheduled = true;
    done.keys = vec![SnapshotKey {
        user: "kb-1".into(),
        access_key: "AK1".into(),
    }];
    done.restore = Some(Restore {
        status: RestoreStatus::Replacing,
        bytes_done: 12,
        user_id: "u1".into(),
        started_at: now(),
        finished_at: None,
        message: None,
        downtime_millis: Some(5),
    });
    s.put_snapshot(&done).await.expect("replace snapshot");
    assert_eq!(
        s.get_snapshot(&a1.id).await.expect("get"),
        Some(done.clone())
    );
    assert_eq!(
        s.list_snapshots(Some("a")).await.expect("list"),
        vec![done, a2.clone()]
    );
    assert_eq!(s.list_snapshots(None).await.expect("all").len(), 3);
    s.delete_snapshot(&a2.id).await.expect("delete");
    s.delete_snapshot(&a2.id).await.expect("twice");
    assert_eq!(s.list_snapshots(Some("a")).await.expect("list").len(), 1);
    s.delete_snapshot(&a1.id).await.expect("delete");
    s.delete_snapshot(&b1.id).await.expect("delete");
}
