//! Object counts, sizes and quotas: kept current after API writes, recounted periodically from
//! the S3 servers themselves (which also sees writes made directly over S3), and a ledger of
//! bytes in flight so that concurrent uploads and issued presigned uploads are counted against
//! the quota together.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use crate::context::Core;
use crate::error::{Error, Result};
use crate::events::{BucketEvent, EventKind};
use crate::model::{now, BucketRecord, BucketStatus};
use crate::store::all_buckets;

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
    fn credit(&self, b: &BucketRecord, key: &str, old_size: u64) -> u64 {
        self.with(b, |e| {
            if e.credited.insert(key.to_string()) {
                old_size
            } else {
                0
            }
        })
    }

    /// Takes `bytes` for an upload allowed `quota + credit`; false (nothing taken) when over.
    fn take(&self, b: &BucketRecord, limit: u64, bytes: u64) -> bool {
        self.with(b, |e| {
            if e.committed().saturating_add(bytes) > limit {
                return false;
            }
            e.in_flight += bytes;
            true
        })
    }

    /// Gives back what an upload held, and its credit on `key`.
    fn release(&self, b: &BucketRecord, held: u64, key: &str, credited: bool) {
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

/// Bytes an upload has taken from its bucket's quota; given back when dropped (after the store
/// recorded what was stored, or when the upload failed).
pub struct Reservation {
    state: Core,
    bucket: BucketRecord,
    key: String,
    quota: Option<u64>,
    /// Size of the object the upload replaces, if this upload may count it as freed.
    credit: u64,
    /// Whether this upload holds the credit of its key (to give it back).
    credited: bool,
    held: u64,
}

impl Reservation {
    /// Starts an upload of `key`, whose current object is `old_size` bytes.
    pub fn begin(state: &Core, b: &BucketRecord, key: &str, old_size: u64) -> Self {
        let quota = b.quota_bytes();
        let credit = match quota {
            Some(_) => state.quotas.credit(b, key, old_size),
            None => 0,
        };
        Reservation {
            state: state.clone(),
            bucket: b.clone(),
            key: key.to_string(),
            quota,
            credit,
            credited: quota.is_some() && credit == old_size,
            held: 0,
        }
    }

    /// Takes `bytes` more; false when the quota does not allow them (nothing taken).
    pub fn take(&mut self, bytes: u64) -> bool {
        let Some(quota) = self.quota else {
            return true;
        };
        let ok = self
            .state
            .quotas
            .take(&self.bucket, quota.saturating_add(self.credit), bytes);
        if ok {
            self.held += bytes;
        }
        ok
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.quota.is_some() {
            self.state
                .quotas
                .release(&self.bucket, self.held, &self.key, self.credited);
        }
    }
}

/// The 413 of an upload over quota.
pub fn over_quota(b: &BucketRecord) -> Error {
    let quota = b.max_size_gb.unwrap_or_default();
    Error::QuotaExceeded(format!(
        "the upload would take bucket {} over its quota of {quota} GB ({} bytes in use); nothing was stored",
        b.name, b.total_size_bytes
    ))
}

/// Adds to a bucket's counters after an API write or delete: at once for a bucket with a quota
/// (its ledger needs exact figures), within about a second otherwise (see `pending_usage`).
pub async fn adjust(state: &Core, b: &BucketRecord, objects: i64, bytes: i64) -> Result<()> {
    if objects == 0 && bytes == 0 {
        return Ok(());
    }
    if b.quota_bytes().is_none() {
        state.pending_usage.add(&b.id, objects, bytes);
        return Ok(());
    }
    let id = &b.id;
    let Some(mut b) = state.lock_bucket_if(id).await? else {
        return Ok(());
    };
    b.object_count = b.object_count.saturating_add_signed(objects);
    b.total_size_bytes = b.total_size_bytes.saturating_add_signed(bytes);
    let over_changed = mark_over_quota(&mut b);
    b.write().await?;
    state.quotas.set_used(&b.id, b.total_size_bytes);
    if over_changed {
        announce_quota(state, &b);
    }
    Ok(())
}

/// Sets `overQuota` from the bucket's counted bytes; whether it changed.
pub fn mark_over_quota(b: &mut BucketRecord) -> bool {
    let over = b.quota_bytes().is_some_and(|q| b.total_size_bytes > q);
    let changed = b.over_quota != over;
    b.over_quota = over;
    changed
}

/// The event and log line of a bucket going over its quota or back under it.
pub fn announce_quota(state: &Core, b: &BucketRecord) {
    let message = if b.over_quota {
        format!(
            "bucket holds {} bytes, over its quota of {} bytes: uploads through the API are refused until it is back under",
            b.total_size_bytes,
            b.quota_bytes().unwrap_or_default()
        )
    } else {
        "bucket is back under its quota".to_string()
    };
    tracing::warn!(bucket = %b.id, bytes = b.total_size_bytes, over = b.over_quota, "{message}");
    state
        .events
        .publish(BucketEvent::of(EventKind::Quota, b, Some(message)));
}

/// Recounts one bucket from its S3 server.
pub async fn sync_one(state: &Core, id: &str) -> Result<()> {
    let Some(b) = state.store.get_bucket(id).await? else {
        return Ok(());
    };
    if b.status != BucketStatus::Running || b.deleting {
        return Ok(());
    }
    let before = state.pending_usage.quiet_mark(id);
    let (count, bytes) = crate::backend::s3(state, &b)?.usage().await?;
    if before.is_none() || state.pending_usage.quiet_mark(id) != before {
        // An API upload overlapped the listing: its parts may be in the count and its object
        // about to be added to it. The next recount, in a quiet moment, is trusted instead.
        tracing::debug!(bucket = %id, "recount overlapped an API upload; not recorded");
        return Ok(());
    }
    let Some(mut b) = state.lock_bucket_if(id).await? else {
        return Ok(());
    };
    // The listing counted what API writes had not yet recorded.
    state.pending_usage.take(id);
    let changed = b.object_count != count || b.total_size_bytes != bytes;
    b.object_count = count;
    b.total_size_bytes = bytes;
    b.stats_synced_at = Some(now());
    let over_changed = mark_over_quota(&mut b);
    b.write().await?;
    state.pending_usage.recounted(id);
    state.quotas.set_used(&b.id, bytes);
    if changed {
        tracing::info!(bucket = %b.id, objects = count, bytes, "bucket usage recounted");
    }
    if over_changed {
        announce_quota(state, &b);
    }
    Ok(())
}

/// Most presigned uploads followed at once (`App::followed_uploads`); past it new ones are left
/// to the periodic recount.
const MAX_FOLLOWED: usize = 4096;

/// Follows a presigned upload of `key` until it lands or its URL expires, and counts it in the
/// bucket's stats when it lands: one HEAD of the key every 2 s for the first minute, every 5 s
/// after that (so a landed upload shows within 5 s, at a cost of 12 requests a minute per URL
/// still open, however large the bucket). `before` is what the key held when the URL was made.
pub fn follow_presigned(
    state: &Core,
    b: &BucketRecord,
    key: &str,
    before: Option<kalpana_s3_ops::ObjectInfo>,
    expires: std::time::Duration,
) {
    use std::sync::atomic::Ordering;
    if state.followed_uploads.fetch_add(1, Ordering::SeqCst) >= MAX_FOLLOWED {
        state.followed_uploads.fetch_sub(1, Ordering::SeqCst);
        tracing::debug!(bucket = %b.id, "too many presigned uploads followed; the periodic recount will count this one");
        return;
    }
    let (state, id, key) = (state.clone(), b.id.clone(), key.to_string());
    let until = Instant::now() + expires;
    let core = state.clone();
    core.tasks.spawn_loop("presigned upload follower", async move {
        let started = Instant::now();
        // Before the last look that did not see the upload: it landed after this.
        let mut unseen_at = started;
        while Instant::now() < until {
            let pause = if started.elapsed() < std::time::Duration::from_secs(60) {
                std::time::Duration::from_secs(2)
            } else {
                std::time::Duration::from_secs(5)
            };
            tokio::time::sleep(pause).await;
            let Ok(Some(b)) = state.store.get_bucket(&id).await else {
                break; // deleted
            };
            if b.status != BucketStatus::Running {
                continue;
            }
            let Ok(client) = crate::backend::s3(&state, &b) else {
                continue;
            };
            let looked_at = Instant::now();
            let Ok(Some(now)) = client.head_object(&key).await else {
                unseen_at = looked_at;
                continue;
            };
            let landed = before
                .as_ref()
                .is_none_or(|old| old.etag != now.etag || old.last_modified != now.last_modified);
            if !landed {
                unseen_at = looked_at;
            }
            if landed && state.pending_usage.recounted_since(&id, unseen_at) {
                // A recount written since it may or may not have counted it: only another
                // recount knows (adding it would count it twice).
                if let Err(e) = sync_one(&state, &id).await {
                    tracing::warn!(bucket = %id, error = %e, "recounting after a presigned upload failed");
                }
                tracing::info!(bucket = %id, key, size = now.size, "presigned upload landed beside a recount; recounted");
                break;
            }
            if landed {
                let old_size = before.as_ref().map_or(0, |o| o.size);
                if let Err(e) = adjust(
                    &state,
                    &b,
                    i64::from(before.is_none()),
                    now.size as i64 - old_size as i64,
                )
                .await
                {
                    tracing::warn!(bucket = %id, error = %e, "counting a presigned upload failed");
                }
                tracing::info!(bucket = %id, key, size = now.size, "presigned upload landed");
                break;
            }
        }
        state.followed_uploads.fetch_sub(1, Ordering::SeqCst);
    });
}

/// How long a bucket of `objects` objects waits between recounts: `min`, or longer for a large
/// bucket so that recounting costs it one listing request (1,000 objects) per second on average.
pub fn recount_every(min: std::time::Duration, objects: u64) -> std::time::Duration {
    min.max(std::time::Duration::from_secs(objects.div_ceil(1000)))
}

/// Most buckets recounted at once.
const RECOUNTS_AT_ONCE: usize = 4;

/// Refreshes each bucket when [`recount_every`] says it is due (see `backend::refresh`: a
/// managed bucket is recounted, catching writes made directly over S3, and its settings put
/// back; an external one is checked). A long recount of a large bucket does not hold up the
/// others.
pub fn spawn_periodic_sync(state: Core) {
    let core = state.clone();
    core.tasks.spawn_loop("usage refresh", async move {
        let min = state.config.stats_sync_interval;
        let mut tick = tokio::time::interval(min.min(std::time::Duration::from_secs(2)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let last = std::sync::Arc::new(Mutex::new(HashMap::<String, Instant>::new()));
        let busy = std::sync::Arc::new(Mutex::new(HashSet::<String>::new()));
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(RECOUNTS_AT_ONCE));
        loop {
            tick.tick().await;
            let buckets = match all_buckets(state.store.as_ref()).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "usage sync: listing buckets failed");
                    continue;
                }
            };
            {
                let ids: HashSet<&str> = buckets.iter().map(|b| b.id.as_str()).collect();
                last.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|id, _| ids.contains(id.as_str()));
            }
            // Expired and revoked keys first, on every tick: refused within seconds.
            for b in buckets.iter().filter(|b| crate::keys::due(b)) {
                if let Err(e) = crate::keys::enforce(&state, &b.id).await {
                    tracing::warn!(bucket = %b.id, error = %e, "revoking keys failed; will retry");
                }
            }
            for b in buckets.into_iter().filter(|b| {
                !b.deleting
                    && (b.status == BucketStatus::Running || crate::backend::checked_while_down(b))
            }) {
                let due = last
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&b.id)
                    .is_none_or(|t| t.elapsed() >= recount_every(min, b.object_count));
                if !due
                    || !busy
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(b.id.clone())
                {
                    continue;
                }
                let (state, last, busy, slots) =
                    (state.clone(), last.clone(), busy.clone(), slots.clone());
                let core = state.clone();
                core.tasks.spawn_task("bucket refresh", async move {
                    let _slot = slots.acquire().await;
                    crate::backend::refresh(&state, &b).await;
                    last.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(b.id.clone(), Instant::now());
                    busy.lock().unwrap_or_else(|p| p.into_inner()).remove(&b.id);
                });
            }
        }
    });
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
    fn large_buckets_are_recounted_at_one_listing_request_per_second() {
        let ten = std::time::Duration::from_secs(10);
        assert_eq!(recount_every(ten, 0), ten);
        assert_eq!(recount_every(ten, 10_000), ten);
        assert_eq!(recount_every(ten, 100_000).as_secs(), 100);
        assert_eq!(recount_every(ten, 1_000_001).as_secs(), 1001);
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
