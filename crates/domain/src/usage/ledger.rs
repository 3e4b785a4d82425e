//! The quota ledger: bytes stored, streaming and promised per bucket, checked under one lock.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use crate::model::BucketRecord;

/// Bytes a bucket holds and has promised, as far as its quota is concerned.
#[derive(Debug, Default)]
struct Entry {
    /// Bytes stored, as last recorded.
    used: u64,
    /// Bytes of uploads streaming now.
    in_flight: u64,
    /// Keys whose current object an upload in flight counts as freed (one upload per key).
    credited: HashSet<String>,
    /// Presigned uploads not yet expired: (expiry, bytes). Held until they expire, since the
    /// daemon does not see when they land.
    presigned: Vec<(Instant, u64)>,
}

impl Entry {
    fn committed(&mut self) -> u64 {
        let now = Instant::now();
        self.presigned.retain(|(until, _)| *until > now);
        let promised: u64 = self.presigned.iter().map(|(_, n)| n).sum();
        self.used
            .saturating_add(self.in_flight)
            .saturating_add(promised)
    }
}

/// The quota ledger of every bucket with a quota. All checks happen under one lock, so two
/// uploads can never both take the last bytes.
#[derive(Debug, Default)]
pub struct Ledger(Mutex<HashMap<String, Entry>>);

impl Ledger {
    fn with<T>(&self, b: &BucketRecord, f: impl FnOnce(&mut Entry) -> T) -> T {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let e = map.entry(b.id.clone()).or_insert_with(|| Entry {
            used: b.total_size_bytes,
            ..Default::default()
        });
        f(e)
    }

    /// Records what a bucket holds (after an API write or a recount).
    pub fn set_used(&self, id: &str, used: u64) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get_mut(id) {
            e.used = used;
        }
    }

    /// Forgets a deleted bucket.
    pub fn forget(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// Bytes the quota still allows, counting uploads in flight and presigned uploads issued.
    pub fn remaining(&self, b: &BucketRecord) -> Option<u64> {
        let quota = b.quota_bytes()?;
        Some(self.with(b, |e| quota.saturating_sub(e.committed())))
    }

    /// Counts `key`'s current object (`old_size` bytes) as freed for one upload of it at a time:
    /// returns the credit that upload gets.
    pub(super) fn credit(&self, b: &BucketRecord, key: &str, old_size: u64) -> u64 {
        self.with(b, |e| {
            if e.credited.insert(key.to_string()) {
                old_size
            } else {
                0
            }
        })
    }

    /// Takes `bytes` for an upload allowed `quota + credit`; false (nothing taken) when over.
    pub(super) fn take(&self, b: &BucketRecord, limit: u64, bytes: u64) -> bool {
        self.with(b, |e| {
            if e.committed().saturating_add(bytes) > limit {
                return false;
            }
            e.in_flight += bytes;
            true
        })
    }

    /// Gives back what an upload held, and its credit on `key`.
    pub(super) fn release(&self, b: &BucketRecord, held: u64, key: &str, credited: bool) {
        self.with(b, |e| {
            e.in_flight = e.in_flight.saturating_sub(held);
            if credited {
                e.credited.remove(key);
            }
        });
    }

    /// Promises `bytes` to a presigned upload until `until`; false (nothing promised) when the
    /// quota does not allow them.
    pub fn promise(&self, b: &BucketRecord, bytes: u64, until: Instant) -> bool {
        let Some(quota) = b.quota_bytes() else {
            return true;
        };
        self.with(b, |e| {
            if e.committed().saturating_add(bytes) > quota {
                return false;
            }
            e.presigned.push((until, bytes));
            true
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(quota: u64, used: u64) -> BucketRecord {
        let mut b = crate::store::suite::bucket("u1", "photos", &[40001]);
        b.max_size_gb = Some(quota as f64 / 1e9);
        b.total_size_bytes = used;
        b
    }

    #[test]
    fn concurrent_takes_never_exceed_the_quota() {
        let ledger = Ledger::default();
        let b = bucket(10_000, 0);
        let taken = (0..10).filter(|_| ledger.take(&b, 10_000, 9_000)).count();
        assert_eq!(taken, 1, "ten 9,000-byte uploads under 10,000 bytes");
        ledger.release(&b, 9_000, "k", false);
        assert!(ledger.take(&b, 10_000, 9_000), "freed by the release");
    }

    #[test]
    fn a_replaced_object_is_credited_to_one_upload_at_a_time() {
        let ledger = Ledger::default();
        let b = bucket(1_000_000, 600_000);
        assert_eq!(ledger.remaining(&b), Some(400_000));
        assert_eq!(ledger.credit(&b, "k", 100_000), 100_000);
        assert_eq!(ledger.credit(&b, "k", 100_000), 0, "second upload of k");
        assert!(ledger.take(&b, 1_100_000, 500_000));
        ledger.release(&b, 500_000, "k", true);
        assert_eq!(ledger.credit(&b, "k", 100_000), 100_000);
    }

    #[test]
    fn presigned_promises_count_until_they_expire() {
        let ledger = Ledger::default();
        let b = bucket(10_000, 2_000);
        let later = Instant::now() + std::time::Duration::from_secs(60);
        assert!(ledger.promise(&b, 5_000, later));
        assert!(!ledger.promise(&b, 5_000, later), "only 3,000 left");
        assert_eq!(ledger.remaining(&b), Some(3_000));
        ledger.set_used(&b.id, 9_000);
        assert_eq!(ledger.remaining(&b), Some(0));
    }
}
