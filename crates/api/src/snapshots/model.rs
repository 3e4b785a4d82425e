//! Snapshot records.

use serde::{Deserialize, Serialize};

/// Where a snapshot is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SnapshotStatus {
    /// Accepted, not started.
    Pending,
    /// Being archived.
    Running,
    /// Archived; size and SHA-256 recorded.
    Done,
    /// Failed; the message says why.
    Failed,
}

/// Where a snapshot's archive is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotTarget {
    /// The bucket holding it.
    pub bucket_id: String,
    /// Its object key: `snapshots/<bucketId>/<snapshotId>.tar.zst`.
    pub key: String,
}

/// A snapshot of a managed bucket's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Id.
    pub id: String,
    /// The bucket it is of.
    pub bucket_id: String,
    /// Who took it.
    pub user_id: String,
    /// Status.
    pub status: SnapshotStatus,
    /// Compressed bytes written so far.
    pub bytes_done: u64,
    /// Size of the archive once done.
    pub size_bytes: Option<u64>,
    /// SHA-256 of the archive once done (hex).
    pub sha256: Option<String>,
    /// Where the archive is.
    pub target: SnapshotTarget,
    /// Free text.
    pub note: Option<String>,
    /// When it was asked for.
    pub created_at: String,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Why it failed.
    pub message: Option<String>,
    /// How long the bucket's container was paused for it (ms).
    pub paused_millis: Option<u64>,
}
