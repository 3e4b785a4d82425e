//! The cluster nodes' leases as the acting daemon keeps them: the store's node records, loaded
//! once when it begins to act and written through on every change, and which buckets' and
//! nodes' evacuation work runs now. The rules that act on them are `node_loss`'s.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::Result;
use crate::model::NodeRecord;
use crate::store::Store;

/// A node with no heartbeat for this long is not converged by reconcile (its buckets are
/// neither restarted nor moved by it): only the lease decides what happens to them.
const AWAY_AFTER: Duration = Duration::from_secs(10);

/// Evacuations run at once, daemon-wide: each reads a whole archive from its snapshot bucket
/// (one engine answering them all) and writes a volume on a node.
const EVACUATIONS_AT_ONCE: usize = 3;

/// The nodes' records as this daemon keeps them.
pub struct Nodes {
    records: Mutex<Option<HashMap<String, NodeRecord>>>,
    write: tokio::sync::Mutex<()>,
    running: Mutex<HashSet<String>>,
    slots: tokio::sync::Semaphore,
}

impl Default for Nodes {
    fn default() -> Self {
        Nodes {
            records: Mutex::default(),
            write: tokio::sync::Mutex::default(),
            running: Mutex::default(),
            slots: tokio::sync::Semaphore::new(EVACUATIONS_AT_ONCE),
        }
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Nodes {
    fn cached(&self) -> Option<HashMap<String, NodeRecord>> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every node's record (loaded from `store` once).
    pub async fn records(&self, store: &dyn Store) -> Result<HashMap<String, NodeRecord>> {
        if let Some(r) = self.cached() {
            return Ok(r);
        }
        let loaded: HashMap<String, NodeRecord> = store
            .list_nodes()
            .await?
            .into_iter()
            .map(|n| (n.id.clone(), n))
            .collect();
        let mut slot = self.records.lock().unwrap_or_else(|p| p.into_inner());
        Ok(slot.get_or_insert(loaded).clone())
    }

    /// Changes node `id`'s record (made when missing) and writes it to `store`; one change at
    /// a time.
    pub async fn modify(
        &self,
        store: &dyn Store,
        id: &str,
        change: impl FnOnce(&mut NodeRecord),
    ) -> Result<NodeRecord> {
        let _w = self.write.lock().await;
        let mut rec = self
            .records(store)
            .await?
            .remove(id)
            .unwrap_or_else(|| NodeRecord {
                id: id.to_string(),
                hostname: None,
                renewed_at_ms: 0,
                engine_ok: false,
                lost_at_ms: None,
                set_aside: Vec::new(),
            });
        change(&mut rec);
        store.put_node(&rec).await?;
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(HashMap::new)
            .insert(rec.id.clone(), rec.clone());
        Ok(rec)
    }

    /// Whether node `node` (its id) is lost, has not been heard from for a while,
    /// or its engine does not answer its agent: its buckets are left alone by reconcile and the
    /// periodic refresh (the lease decides). A node never heard from is not away.
    pub fn away(&self, node: &str) -> bool {
        let stale = |n: &NodeRecord| {
            n.lost_at_ms.is_some()
                || !n.engine_ok
                || now_ms() - n.renewed_at_ms > AWAY_AFTER.as_millis() as i64
        };
        self.cached()
            .and_then(|r| r.get(node).map(stale))
            .unwrap_or(false)
    }

    /// Marks work `key` as running; false when it already runs.
    pub fn claim(&self, key: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string())
    }

    /// Work `key` ended.
    pub fn release(&self, key: &str) {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// One of the evacuation slots, held while an evacuation runs.
    pub async fn evacuation_slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.slots.acquire().await.ok()
    }
}
