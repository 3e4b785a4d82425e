//! Status changes and progress as events: one broadcast bus that the SSE route filters per caller.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::model::BucketRecord;

/// What an event is about; its wire name (`bucket.status`, …) is the SSE event's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum EventKind {
    /// A bucket's status changed.
    #[serde(rename = "bucket.status")]
    BucketStatus,
    /// A step of a long operation.
    #[serde(rename = "bucket.progress")]
    Progress,
    /// A bucket was made.
    #[serde(rename = "bucket.created")]
    Created,
    /// A bucket was deleted.
    #[serde(rename = "bucket.deleted")]
    Deleted,
    /// A domain was linked or unlinked.
    #[serde(rename = "bucket.domain")]
    Domain,
    /// A bucket went over or back under its quota.
    #[serde(rename = "bucket.quota")]
    Quota,
    /// A restore's progress or outcome.
    #[serde(rename = "bucket.restore")]
    Restore,
    /// A bucket's settings were put back.
    #[serde(rename = "bucket.settings")]
    Settings,
    /// A snapshot's progress or outcome.
    #[serde(rename = "bucket.snapshot")]
    Snapshot,
    /// A container was attached or detached.
    #[serde(rename = "bucket.attachment")]
    Attachment,
    /// A bucket's root credentials were rotated.
    #[serde(rename = "bucket.credentials")]
    Credentials,
    /// A scoped key was made, rotated or revoked.
    #[serde(rename = "bucket.key")]
    Key,
    /// An image pull's progress.
    #[serde(rename = "image.pull")]
    ImagePull,
    /// A dock of the cloud inventory synced.
    #[serde(rename = "dock.sync")]
    DockSync,
    /// A bucket fell asleep (its container stopped; it wakes on the next request).
    #[serde(rename = "bucket.sleep")]
    Sleep,
    /// A sleeping bucket woke, with how long it took.
    #[serde(rename = "bucket.wake")]
    Wake,
    /// A bucket of a lost node serves again on another node from its latest snapshot (the
    /// message gives the snapshot's time: what was written after it is lost).
    #[serde(rename = "bucket.evacuated")]
    Evacuated,
}

impl EventKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::BucketStatus => "bucket.status",
            EventKind::Progress => "bucket.progress",
            EventKind::Created => "bucket.created",
            EventKind::Deleted => "bucket.deleted",
            EventKind::Domain => "bucket.domain",
            EventKind::Quota => "bucket.quota",
            EventKind::Restore => "bucket.restore",
            EventKind::Settings => "bucket.settings",
            EventKind::Snapshot => "bucket.snapshot",
            EventKind::Attachment => "bucket.attachment",
            EventKind::Credentials => "bucket.credentials",
            EventKind::Key => "bucket.key",
            EventKind::ImagePull => "image.pull",
            EventKind::DockSync => "dock.sync",
            EventKind::Sleep => "bucket.sleep",
            EventKind::Wake => "bucket.wake",
            EventKind::Evacuated => "bucket.evacuated",
        }
    }
}

/// One event about a bucket (or, for [`EventKind::DockSync`], a dock).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketEvent {
    /// What it is about.
    pub kind: EventKind,
    /// The bucket's id (none for a dock's event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_id: Option<String>,
    /// The dock's id (only for a dock's event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dock_id: Option<String>,
    /// Bucket name.
    pub name: String,
    /// Status after the change.
    pub status: &'static str,
    /// Status message or progress line.
    pub message: Option<String>,
    /// RFC 3339 (UTC), when the event was made.
    pub at: String,
    /// Owner (for filtering; not sent).
    #[serde(skip)]
    pub user_id: String,
    /// Team (for filtering; not sent).
    #[serde(skip)]
    pub team_id: Option<String>,
}

impl BucketEvent {
    /// A sync event about a dock of the cloud inventory (its id, never its token).
    pub fn of_dock(
        d: &crate::inventory::model::Dock,
        status: &'static str,
        message: Option<String>,
    ) -> Self {
        BucketEvent {
            kind: EventKind::DockSync,
            bucket_id: None,
            dock_id: Some(d.id.clone()),
            name: d.name.clone(),
            status,
            message,
            at: crate::model::now(),
            user_id: d.user_id.clone(),
            team_id: d.team_id.clone(),
        }
    }

    /// An event of `kind` about `b` as it is now.
    pub fn of(kind: EventKind, b: &BucketRecord, message: Option<String>) -> Self {
        BucketEvent {
            kind,
            bucket_id: Some(b.id.clone()),
            dock_id: None,
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
type Counts = BTreeMap<(EventKind, &'static str), u64>;

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
