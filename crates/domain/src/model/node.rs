//! A cluster node as the store knows it: its lease (renewed by its agent's heartbeats through
//! the acting daemon) and the old volumes set aside on it after its buckets were evacuated.

use serde::{Deserialize, Serialize};

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    /// The Swarm node id.
    pub id: String,
    /// Its host name (as bucket views name nodes), once its agent said it.
    #[serde(default)]
    pub hostname: Option<String>,
    /// When the acting daemon last acknowledged its agent's heartbeat (Unix milliseconds).
    pub renewed_at_ms: i64,
    /// Whether its engine answered its agent at that heartbeat.
    #[serde(default)]
    pub engine_ok: bool,
    /// When it was judged lost (Unix milliseconds); cleared when its agent reports again.
    #[serde(default)]
    pub lost_at_ms: Option<i64>,
    /// Old volumes of buckets evacuated from it: never served, kept for an admin to delete.
    #[serde(default)]
    pub set_aside: Vec<SetAsideVolume>,
}

/// A volume set aside on a node that came back after its buckets were evacuated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetAsideVolume {
    /// The volume's name on its node now.
    pub volume: String,
    /// The bucket it held (which serves elsewhere since).
    pub bucket_id: String,
    /// That bucket's name then.
    pub bucket_name: String,
    /// When the bucket was evacuated (RFC 3339).
    pub evacuated_at: String,
    /// When it was set aside (RFC 3339).
    pub set_aside_at: String,
}

/// A bucket brought back on another node from its latest snapshot after its node was lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Evacuation {
    /// The node it was lost with.
    pub from_node: String,
    /// The node it serves from since, once it does.
    #[serde(default)]
    pub to_node: Option<String>,
    /// The snapshot its data came back from.
    pub snapshot_id: String,
    /// When that snapshot was taken (RFC 3339): whatever was written after it is lost.
    pub snapshot_at: String,
    /// When the evacuation began (RFC 3339).
    pub started_at: String,
    /// When it served again (RFC 3339); none while the evacuation runs (a daemon that takes
    /// over finishes it).
    #[serde(default)]
    pub finished_at: Option<String>,
    /// Names of the scoped keys made after the snapshot (put back from the bucket's record).
    #[serde(default)]
    pub keys_after_snapshot: Vec<String>,
    /// Whether its old volume on the lost node was set aside (once that node came back).
    #[serde(default)]
    pub set_aside: bool,
}

/// A bucket in ERROR because its node is lost and no snapshot could bring it back elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LostWithNode {
    /// The node.
    pub node: String,
    /// Its status before, which it takes again when the node comes back.
    pub status_before: super::BucketStatus,
}
