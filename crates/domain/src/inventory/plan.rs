//! Merging a provider's listing into a dock's records: which to insert, replace and remove,
//! and resources listed twice told apart or refused.

use std::collections::{HashMap, HashSet};

use crate::model::new_id;

use super::model::{self, InventoryRecord, InventoryWrite};

/// What a sync writes: `listed` against `existing` (the dock's records now). Records keep their
/// id; only new and changed ones get `at` as `updatedAt`. Two listed resources with one id are
/// told apart by their cluster (`label@cluster`, Linode labels are unique per cluster only);
/// still the same, the answer is garbage. Returns the write and how many were unchanged.
pub fn plan(
    dock_id: &str,
    existing: Vec<InventoryRecord>,
    listed: Vec<InventoryRecord>,
    at: &str,
) -> std::result::Result<(InventoryWrite, u64), String> {
    let mut counts: HashMap<(model::ResourceKind, String), usize> = HashMap::new();
    for r in &listed {
        *counts
            .entry((r.kind, r.provider_resource_id.clone()))
            .or_default() += 1;
    }
    let mut old: HashMap<(model::ResourceKind, String), InventoryRecord> = existing
        .into_iter()
        .map(|r| ((r.kind, r.provider_resource_id.clone()), r))
        .collect();
    let mut seen = HashSet::new();
    let mut write = InventoryWrite::default();
    let mut unchanged = 0u64;
    for mut r in listed {
        if counts[&(r.kind, r.provider_resource_id.clone())] > 1 {
            match &r.cluster {
                Some(c) => r.provider_resource_id = format!("{}@{c}", r.provider_resource_id),
                None => {
                    return Err(format!(
                        "it listed {} more than once",
                        r.provider_resource_id
                    ))
                }
            }
        }
        let key = (r.kind, r.provider_resource_id.clone());
        if !seen.insert(key.clone()) {
            return Err(format!(
                "it listed {} more than once",
                r.provider_resource_id
            ));
        }
        r.dock_id = dock_id.to_string();
        match old.remove(&key) {
            Some(prev) if prev.same_data(&r) => unchanged += 1,
            Some(prev) => {
                r.id = prev.id;
                r.updated_at = at.to_string();
                write.update.push(r);
            }
            None => {
                r.id = new_id();
                r.updated_at = at.to_string();
                write.insert.push(r);
            }
        }
    }
    write.remove = old.into_values().collect();
    Ok((write, unchanged))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::model::{CloudProvider, ResourceKind};
    use crate::inventory::providers;

    fn rec(prid: &str, size: u64, cluster: Option<&str>) -> InventoryRecord {
        let mut r = providers::record(
            ResourceKind::Bucket,
            CloudProvider::Linode,
            prid.into(),
            prid.into(),
            "us-sea".into(),
            "active".into(),
            serde_json::json!({ "bucket": { "label": prid, "size": size } }),
        );
        r.size_bytes = Some(size);
        r.cluster = cluster.map(str::to_string);
        r
    }

    #[test]
    fn a_first_sync_inserts_and_a_second_of_the_same_answer_writes_nothing() {
        let listed = vec![rec("a", 1, None), rec("b", 2, None)];
        let (w, unchanged) = plan("d", Vec::new(), listed.clone(), "t1").expect("plan");
        assert_eq!(
            (w.insert.len(), w.update.len(), w.remove.len(), unchanged),
            (2, 0, 0, 0)
        );
        assert!(w
            .insert
            .iter()
            .all(|r| r.dock_id == "d" && r.updated_at == "t1" && !r.id.is_empty()));
        let (w2, unchanged) = plan("d", w.insert.clone(), listed, "t2").expect("plan");
        assert!(w2.is_empty(), "{w2:?}");
        assert_eq!(unchanged, 2);
    }

    #[test]
    fn changes_keep_the_id_and_what_disappeared_is_removed() {
        let (w, _) = plan(
            "d",
            Vec::new(),
            vec![rec("a", 1, None), rec("b", 2, None)],
            "t1",
        )
        .expect("plan");
        let a_id = w
            .insert
            .iter()
            .find(|r| r.provider_resource_id == "a")
            .map(|r| r.id.clone());
        let (w2, unchanged) = plan("d", w.insert, vec![rec("a", 5, None)], "t2").expect("plan");
        assert_eq!(unchanged, 0);
        assert_eq!(w2.update.len(), 1);
        assert_eq!(Some(w2.update[0].id.clone()), a_id);
        assert_eq!(w2.update[0].updated_at, "t2");
        assert_eq!(w2.remove.len(), 1);
        assert_eq!(w2.remove[0].provider_resource_id, "b");
    }

    #[test]
    fn one_label_in_two_clusters_is_two_buckets_and_a_true_duplicate_is_garbage() {
        let (w, _) = plan(
            "d",
            Vec::new(),
            vec![
                rec("a", 1, Some("us-sea-1")),
                rec("a", 1, Some("eu-central-1")),
            ],
            "t",
        )
        .expect("plan");
        let mut ids: Vec<_> = w
            .insert
            .iter()
            .map(|r| r.provider_resource_id.clone())
            .collect();
        ids.sort();
        assert_eq!(ids, ["a@eu-central-1", "a@us-sea-1"]);
        assert!(plan(
            "d",
            Vec::new(),
            vec![rec("a", 1, None), rec("a", 2, None)],
            "t"
        )
        .is_err());
    }
}
