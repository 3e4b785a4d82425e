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
    /// Its object key: `snapshots/<bucketId>/<snapshotId>.tar.zst.sealed` (`.tar.zst` for
    /// archives of format 1).
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
    /// The bucket's scoped keys when it was taken (the engine's copy of them is in the archive).
    #[serde(default)]
    pub keys: Vec<SnapshotKey>,
    /// Taken by the bucket's `snapshotPolicy` (and pruned by it).
    #[serde(default)]
    pub scheduled: bool,
    /// The last restore of the bucket from it.
    #[serde(default)]
    pub restore: Option<Restore>,
    /// The archive's format: 1 for plain zstd (snapshots taken before archives were sealed; it
    /// holds the engine's secrets in clear), 2 for sealed with a key of its own.
    #[serde(default = "format_1")]
    pub format: u8,
}

fn format_1() -> u8 {
    1
}

/// A scoped key the engine held when a snapshot was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotKey {
    /// The engine's user name of the key.
    pub user: String,
    /// Its access key.
    pub access_key: String,
}

/// Where a restore is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RestoreStatus {
    /// The archive is being read into a staging volume and checked; the bucket's data is
    /// untouched.
    Staging,
    /// The archive checked out; the bucket's data is being replaced (a daemon that dies now
    /// finishes it when it comes back).
    Replacing,
    /// The bucket's data is the snapshot's.
    Done,
    /// Failed before anything was replaced (the message says why), or the replacement could
    /// not be finished.
    Failed,
}

/// A restore of a bucket from a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Restore {
    /// Status.
    pub status: RestoreStatus,
    /// Compressed bytes of the archive read so far.
    pub bytes_done: u64,
    /// Who asked for it.
    pub user_id: String,
    /// When it was asked for.
    pub started_at: String,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Why it failed.
    pub message: Option<String>,
    /// How long the bucket was out of service for it (ms).
    pub downtime_millis: Option<u64>,
}
