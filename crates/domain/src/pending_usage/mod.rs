//! Usage changes of buckets without a quota, held in memory and written to the store about once
//! a second instead of once per request: a durable store commit per object write was most of
//! the API's fixed cost on small objects.
//!
//! Guarantees: every view of a bucket (`GET /api/buckets/{id}`, lists, stats) adds what is
//! pending, so a client reads its own writes at once. Caveat: changes still pending when the
//! daemon is killed (at most about a second of them) are lost until the next recount from the
//! S3 server itself puts the counters right. Buckets with a quota are written at once, since
//! the quota ledger must start from exact figures.

mod flush;

pub use flush::{flush_all, flush_one, spawn_flusher};

use std::collections::HashMap;
use std::sync::Mutex;

use crate::model::BucketRecord;

/// Object and byte changes per bucket id not yet in the store, and the API uploads streaming
/// now per bucket (a recount that overlaps one would count its parts, then the upload again
/// when it lands).
#[derive(Debug, Default)]
pub struct PendingUsage {
    changes: Mutex<HashMap<String, (i64, i64)>>,
    /// Per bucket: uploads streaming now, and uploads ever started (to see one come and go).
    uploads: Mutex<HashMap<String, (usize, u64)>>,
    /// Per bucket: when a recount was last written.
    recounted: Mutex<HashMap<String, std::time::Instant>>,
}

/// An API upload streaming into a bucket; counted until dropped.
pub struct UploadInFlight<'a> {
    owner: &'a PendingUsage,
    id: String,
}

impl Drop for UploadInFlight<'_> {
    fn drop(&mut self) {
        let mut uploads = self.owner.uploads.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = uploads.get_mut(&self.id) {
            e.0 = e.0.saturating_sub(1);
        }
    }
}

impl PendingUsage {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, i64)>> {
        self.changes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes an API upload into bucket `id` until the guard is dropped.
    pub fn upload_started(&self, id: &str) -> UploadInFlight<'_> {
        let mut uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        let e = uploads.entry(id.to_string()).or_default();
        e.0 += 1;
        e.1 += 1;
        UploadInFlight {
            owner: self,
            id: id.to_string(),
        }
    }

    /// A mark of bucket `id`'s API uploads when none streams (None while one does): a recount
    /// is trusted only when the mark is the same before and after its listing.
    pub fn quiet_mark(&self, id: &str) -> Option<u64> {
        let uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        match uploads.get(id) {
            Some((0, started)) => Some(*started),
            Some(_) => None,
            None => Some(0),
        }
    }

    /// Notes that a recount of bucket `id` was written now.
    pub fn recounted(&self, id: &str) {
        self.recounted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), std::time::Instant::now());
    }

    /// Whether a recount of bucket `id` was written after `since`.
    pub fn recounted_since(&self, id: &str, since: std::time::Instant) -> bool {
        self.recounted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .is_some_and(|at| *at >= since)
    }

    /// Adds a change to a bucket's counters.
    pub fn add(&self, id: &str, objects: i64, bytes: i64) {
        let mut map = self.map();
        let e = map.entry(id.to_string()).or_default();
        e.0 += objects;
        e.1 += bytes;
    }

    /// Takes (and forgets) what is pending for one bucket.
    pub fn take(&self, id: &str) -> (i64, i64) {
        self.map().remove(id).unwrap_or_default()
    }

    /// Adds what is pending to a copy of a record, for a view of it.
    pub fn overlay(&self, b: &mut BucketRecord) {
        if let Some((objects, bytes)) = self.map().get(&b.id).copied() {
            apply(b, objects, bytes);
        }
    }

    fn ids(&self) -> Vec<String> {
        self.map().keys().cloned().collect()
    }
}

/// Adds a change to a record's counters.
pub fn apply(b: &mut BucketRecord, objects: i64, bytes: i64) {
    b.object_count = b.object_count.saturating_add_signed(objects);
    b.total_size_bytes = b.total_size_bytes.saturating_add_signed(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_changes_add_up_and_overlay_a_record() {
        let p = PendingUsage::default();
        p.add("b1", 1, 4096);
        p.add("b1", 1, 100);
        p.add("b1", -1, -4096);
        let mut b = crate::store::suite::bucket("u1", "photos", &[40001]);
        b.id = "b1".into();
        b.object_count = 10;
        b.total_size_bytes = 1000;
        p.overlay(&mut b);
        assert_eq!((b.object_count, b.total_size_bytes), (11, 1100));
        assert_eq!(p.take("b1"), (1, 100));
        assert_eq!(p.take("b1"), (0, 0), "taken once");
    }

    #[test]
    fn counters_never_go_below_zero() {
        let mut b = crate::store::suite::bucket("u1", "photos", &[40001]);
        apply(&mut b, -3, -10);
        assert_eq!((b.object_count, b.total_size_bytes), (0, 0));
    }
}
