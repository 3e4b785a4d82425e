//! Status changes and progress as events: one broadcast bus that the SSE route filters per caller.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::model::BucketRecord;

/// One event about a bucket.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketEvent {
    /// `bucket.status` or `image.pull`.
    pub kind: &'static str,
    /// Bucket id.
    pub bucket_id: String,
    /// Bucket name.
    pub name: String,
    /// Status after the change.
    pub status: &'static str,
    /// Status message or progress line.
    pub message: Option<String>,
    /// When.
    pub at: String,
    /// Owner (for filtering; not sent).
    #[serde(skip)]
    pub user_id: String,
    /// Team (for filtering; not sent).
    #[serde(skip)]
    pub team_id: Option<String>,
}

impl BucketEvent {
    /// An event of `kind` about a dock of the cloud inventory (its id in `bucketId`, never
    /// its token).
    pub fn of_dock(
        kind: &'static str,
        d: &crate::inventory::model::Dock,
        status: &'static str,
        message: Option<String>,
    ) -> Self {
        BucketEvent {
            kind,
            bucket_id: d.id.clone(),
            name: d.name.clone(),
            status,
            message,
            at: crate::model::now(),
            user_id: d.user_id.clone(),
            team_id: d.team_id.clone(),
        }
    }

    /// An event of `kind` about `b` as it is now.
    pub fn of(kind: &'static str, b: &BucketRecord, message: Option<String>) -> Self {
        BucketEvent {
            kind,
            bucket_id: b.id.clone(),
            name: b.name.clone(),
            status: b.status.as_str(),
            message,
            at: crate::model::now(),
            user_id: b.user_id.clone(),
            team_id: b.team_id.clone(),
        }
    }
}

/// Events published, by (kind, status).
type Counts = BTreeMap<(&'static str, &'static str), u64>;

/// The event bus.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<BucketEvent>,
    published: Arc<Mutex<Counts>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A bus that keeps the last 1024 events for slow subscribers.
    pub fn new() -> Self {
        EventBus {
            tx: broadcast::channel(1024).0,
            published: Arc::default(),
        }
    }

    /// Sends an event to every subscriber (none is fine).
    pub fn publish(&self, event: BucketEvent) {
        *self
            .published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((event.kind, event.status))
            .or_default() += 1;
        let _ = self.tx.send(event);
    }

    /// How many events of each (kind, status) have been published (for `/metrics`).
    pub fn counts(&self) -> Counts {
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A new subscription.
    pub fn subscribe(&self) -> broadcast::Receiver<BucketEvent> {
        self.tx.subscribe()
    }
}
