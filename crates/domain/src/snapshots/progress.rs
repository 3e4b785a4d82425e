//! Progress of a snapshot or a restore: the archive bytes that went by, their SHA-256, an event
//! every [`EVENT_EVERY`] bytes, and `bytesDone` written to the snapshot's record every second
//! while the operation runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::context::Core;
use crate::events::{BucketEvent, EventKind};
use crate::model::BucketRecord;

/// An event every this many archive bytes.
const EVENT_EVERY: u64 = 64 * 1024 * 1024;
/// How often the record's `bytesDone` is brought up to date.
const RECORD_EVERY: Duration = Duration::from_secs(1);

/// Counts and hashes the archive bytes of one operation. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Meter {
    bytes: Arc<AtomicU64>,
    state: Core,
    bucket: BucketRecord,
    what: String,
}

impl Meter {
    /// A meter for `what` (e.g. "snapshot <id>") of bucket `bucket`.
    pub fn new(state: &Core, bucket: &BucketRecord, what: String) -> Self {
        Meter {
            bytes: Arc::default(),
            state: state.clone(),
            bucket: bucket.clone(),
            what,
        }
    }

    /// Counts `n` more bytes of the archive.
    pub fn observe(&self, n: u64) {
        let before = self.bytes.fetch_add(n, Ordering::SeqCst);
        let after = before + n;
        if before / EVENT_EVERY != after / EVENT_EVERY {
            self.state.events.publish(BucketEvent::of(
                EventKind::Snapshot,
                &self.bucket,
                Some(format!("{}: {after} archive bytes", self.what)),
            ));
            tracing::info!(bucket = %self.bucket.id, bytes = after, "{}", self.what);
        }
    }

    /// Bytes so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }

    /// Writes the byte count into the snapshot record `snapshot_id` every second (with
    /// `restore`, into its restore) until the returned handle is stopped.
    pub fn record_while_running(&self, snapshot_id: &str, restore: bool) -> Recorder {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (meter, id) = (self.clone(), snapshot_id.to_string());
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    () = tokio::time::sleep(RECORD_EVERY) => {}
                }
                let Ok(Some(mut s)) = meter.state.store.get_snapshot(&id).await else {
                    continue;
                };
                let done = meter.bytes();
                match (restore, s.restore.as_mut()) {
                    (true, Some(r)) => r.bytes_done = done,
                    (true, None) => continue,
                    (false, _) => s.bytes_done = done,
                }
                if let Err(e) = meter.state.store.put_snapshot(&s).await {
                    tracing::debug!(snapshot = %id, error = %e, "recording progress failed");
                }
            }
        });
        Recorder { stop, task }
    }
}

/// The task that records progress; [`Recorder::stop`] ends it.
pub struct Recorder {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    /// Ends the task and waits for a write it had begun, so no stale progress lands after the
    /// record's final state.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
