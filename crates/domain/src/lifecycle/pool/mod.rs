//! Bucket ids whose data volume is made ahead of time, with the engine's internal certificates
//! already in it: writing them into a new container's volume through Docker's archive API takes
//! about 70 ms, which a create would otherwise wait for between the container's creation and
//! its start. A background task keeps `KALPANA_VOLUME_POOL` (2) of them ready; a create takes
//! one when it can, and makes its own otherwise.
//!
//! Guarantees: a prepared volume is given to one bucket only; its certificates are used by that
//! bucket's first container only (later containers get fresh ones as before). Every id whose
//! volume is being made or waits for a bucket is written to a ledger file in the data directory
//! before its volume is made, and leaves it only once a bucket record holds it; at start, the
//! ledger's ids without a record are removed (ids are not reused), even with the pool off.
//! Volumes are never removed by their `kalpana.pool` label alone: Docker volume labels cannot
//! change, so the label stays on a volume a bucket took, and on the data such a bucket left when
//! it was deleted without `deleteVolume=true`. Caveat: a ledger file lost with its data
//! directory turns those volumes into orphans (listed, removed by an admin), never into data
//! loss.

mod filler;

pub use filler::spawn_filler;

use std::collections::{BTreeSet, HashSet, VecDeque};

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The ids ready for new buckets, and those taken whose first container is still to come.
#[derive(Default)]
pub struct VolumePool {
    pub(crate) ready: Mutex<VecDeque<String>>,
    fresh: Mutex<HashSet<String>>,
    /// Ids no bucket record holds yet, as in the ledger file.
    pub(crate) unclaimed: Mutex<BTreeSet<String>>,
    ledger: Option<PathBuf>,
    pub(crate) wanted: tokio::sync::Notify,
}

impl VolumePool {
    /// The pool whose ledger is `<data_dir>/volume-pool`, with the ids an earlier run left in
    /// it (removed by [`spawn_filler`] unless a record holds them).
    pub fn open(data_dir: &Path) -> Self {
        let ledger = data_dir.join("volume-pool");
        let unclaimed = match std::fs::read_to_string(&ledger) {
            Ok(text) => text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => {
                tracing::warn!(path = %ledger.display(), error = %e,
                    "the volume pool's ledger cannot be read; volumes an earlier run made ahead are listed as orphans");
                BTreeSet::new()
            }
        };
        VolumePool {
            unclaimed: Mutex::new(unclaimed),
            ledger: Some(ledger),
            ..Default::default()
        }
    }

    /// An id whose volume is made, if one is ready. It stays unclaimed (in the ledger) until
    /// [`VolumePool::claimed`] or [`VolumePool::give_back`].
    pub fn take(&self) -> Option<String> {
        let id = self
            .ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()?;
        self.fresh
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone());
        self.wanted.notify_one();
        Some(id)
    }

    /// A bucket record now holds `id`: its volume is that bucket's.
    pub fn claimed(&self, id: &str) {
        self.forget(id);
    }

    /// A create that took `id` failed before its record was written: the volume waits for the
    /// next one.
    pub fn give_back(&self, id: &str) {
        if !self.holds(id) {
            return;
        }
        self.fresh
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_front(id.to_string());
    }

    /// Whether bucket `id`'s volume holds certificates no container has used yet (asked once,
    /// by its first container's creation).
    pub fn holds_fresh_certificates(&self, id: &str) -> bool {
        self.fresh
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
    }

    /// Whether `id` is one the pool made (or is making, or an earlier run left) that no bucket
    /// record holds yet: its volume and helper are no orphans.
    pub fn holds(&self, id: &str) -> bool {
        self.unclaimed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }

    pub(crate) fn ready_count(&self) -> usize {
        self.ready.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Writes `id` into the ledger before its volume is made; false when the ledger cannot be
    /// written (then nothing is made ahead: the volume could not be found again).
    pub(crate) fn remember(&self, id: &str) -> bool {
        let mut set = self.unclaimed.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(id.to_string());
        match self.write(&set) {
            Ok(()) => true,
            Err(e) => {
                set.remove(id);
                tracing::warn!(error = %e, "the volume pool's ledger cannot be written; no volume is made ahead");
                false
            }
        }
    }

    pub fn forget(&self, id: &str) {
        let mut set = self.unclaimed.lock().unwrap_or_else(|p| p.into_inner());
        if set.remove(id) {
            // A stale line only makes the next start look the id up and keep its volume.
            if let Err(e) = self.write(&set) {
                tracing::warn!(error = %e, "the volume pool's ledger cannot be written");
            }
        }
    }

    fn write(&self, set: &BTreeSet<String>) -> std::io::Result<()> {
        let Some(path) = &self.ledger else {
            return Ok(());
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        let mut text = String::new();
        for id in set {
            text.push_str(id);
            text.push('\n');
        }
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}
