//! Records of the cloud inventory: provider accounts ("docks") and the block volumes and
//! buckets synced from them, in the universal shape the seeds define.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A cloud provider whose storage the inventory syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CloudProvider {
    /// Vultr (block storage).
    Vultr,
    /// DigitalOcean (volumes).
    Digitalocean,
    /// Linode (object storage buckets).
    Linode,
}

impl CloudProvider {
    /// Every provider.
    pub const ALL: [CloudProvider; 3] = [
        CloudProvider::Vultr,
        CloudProvider::Digitalocean,
        CloudProvider::Linode,
    ];

    /// The provider's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            CloudProvider::Vultr => "vultr",
            CloudProvider::Digitalocean => "digitalocean",
            CloudProvider::Linode => "linode",
        }
    }
}

/// What kind of storage a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum ResourceKind {
    /// Block storage (the seeds' `blockVolumes`).
    Volume,
    /// Object storage (the seeds' `buckets`).
    Bucket,
}

/// What the last sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStats {
    /// Pages fetched.
    pub pages: u64,
    /// Resources the provider listed.
    pub listed: u64,
    /// Records made.
    pub inserted: u64,
    /// Records whose provider data changed.
    pub updated: u64,
    /// Records the provider no longer lists, removed.
    pub removed: u64,
    /// Records left as they were.
    pub unchanged: u64,
    /// Inventory records written or deleted in the store (the dock's own record not counted).
    pub store_writes: u64,
    /// Answers of 429 waited out.
    pub rate_limited: u64,
    /// Milliseconds the sync took.
    pub millis: u64,
}

/// A provider account. Its token is encrypted with the master key and never leaves the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dock {
    pub id: String,
    /// Free text.
    pub name: String,
    pub provider: CloudProvider,
    pub user_id: String,
    /// Team whose members see it (the organisation of the seeds).
    pub team_id: Option<String>,
    /// The API token, encrypted.
    pub token_enc: String,
    /// RFC 3339 (UTC); set once, when it is made.
    pub created_at: String,
    /// When the last sync ended, well or not.
    pub last_synced_at: Option<String>,
    /// Why the last sync failed; none when it succeeded.
    pub last_sync_error: Option<String>,
    /// When the inventory was last replaced by a complete, good answer.
    pub last_good_sync_at: Option<String>,
    /// What the last good sync did.
    pub last_sync: Option<SyncStats>,
}

/// One synced volume or bucket, unique by (dock, kind, providerResourceId).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryRecord {
    /// Id (kept across syncs).
    pub id: String,
    /// Volume or bucket.
    pub kind: ResourceKind,
    /// The dock it came from.
    pub dock_id: String,
    /// Provider.
    pub provider: CloudProvider,
    /// The provider's id of it.
    pub provider_resource_id: String,
    /// Name.
    pub name: String,
    /// Provider region code.
    pub region: String,
    /// Status (`active` where the provider has none).
    pub status: String,
    /// Size in GB (volumes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_gb: Option<u64>,
    /// Id of the instance it is attached to (volumes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached_to_instance: Option<String>,
    /// Label of that instance (Vultr).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached_to_instance_label: Option<String>,
    /// Vultr `mount_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_id: Option<String>,
    /// Vultr `block_type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_type: Option<String>,
    /// DigitalOcean `filesystem_type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem_type: Option<String>,
    /// Linode cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Linode hostname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// S3-compatible endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    /// Size in bytes (buckets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Number of objects (buckets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_count: Option<u64>,
    /// The provider's whole object, under `block`, `volume` or `bucket` as the seeds keep it.
    pub full_api_data: Value,
    /// When this record was made or its provider data last changed (a sync that finds it
    /// unchanged writes nothing; the dock's `lastSyncedAt` says when it was last seen).
    pub updated_at: String,
}

impl InventoryRecord {
    /// Whether the provider's data of both records is the same (ids and times aside).
    pub fn same_data(&self, other: &InventoryRecord) -> bool {
        let strip = |r: &InventoryRecord| InventoryRecord {
            id: String::new(),
            dock_id: String::new(),
            updated_at: String::new(),
            ..r.clone()
        };
        strip(self) == strip(other)
    }
}

/// Which inventory records a listing returns.
#[derive(Debug, Clone)]
pub struct InventoryQuery {
    /// Volumes or buckets.
    pub kind: ResourceKind,
    /// Only records of these docks (the ones the caller sees).
    pub dock_ids: Vec<String>,
    /// Only this provider.
    pub provider: Option<CloudProvider>,
    /// Only this region.
    pub region: Option<String>,
    /// Only ids greater than this one (the page cursor).
    pub after: Option<String>,
    /// At most this many.
    pub limit: usize,
}

impl InventoryQuery {
    /// Whether `r` matches the query (for stores that filter in code).
    pub fn matches(&self, r: &InventoryRecord) -> bool {
        r.kind == self.kind
            && self.dock_ids.contains(&r.dock_id)
            && self.provider.is_none_or(|p| r.provider == p)
            && self.region.as_ref().is_none_or(|g| &r.region == g)
            && self
                .after
                .as_ref()
                .is_none_or(|a| r.id.as_str() > a.as_str())
    }
}

/// The changes one sync writes.
#[derive(Debug, Clone, Default)]
pub struct InventoryWrite {
    /// New records (409 when one with the same key exists).
    pub insert: Vec<InventoryRecord>,
    /// Changed records, replaced by id.
    pub update: Vec<InventoryRecord>,
    /// Records to remove.
    pub remove: Vec<InventoryRecord>,
}

impl InventoryWrite {
    /// How many record writes this is.
    pub fn len(&self) -> usize {
        self.insert.len() + self.update.len() + self.remove.len()
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
