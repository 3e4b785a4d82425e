//! Records the daemon keeps, and their JSON views.

use kalpana_manager_core::EngineKind;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The current time as RFC 3339.
pub fn now() -> String {
    format_time(OffsetDateTime::now_utc())
}

/// A time as RFC 3339.
pub fn format_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// A new time-ordered id (UUID v7), so listing by id lists by creation.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// A bucket's status, as in DESIGN.md's status machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BucketStatus {
    /// Being provisioned.
    Creating,
    /// Serving S3.
    Running,
    /// Stopped on request; data kept.
    Stopped,
    /// Something failed; see `statusMessage`.
    Error,
}

impl BucketStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            BucketStatus::Creating => "CREATING",
            BucketStatus::Running => "RUNNING",
            BucketStatus::Stopped => "STOPPED",
            BucketStatus::Error => "ERROR",
        }
    }

    /// Parses the wire name (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "CREATING" => Some(BucketStatus::Creating),
            "RUNNING" => Some(BucketStatus::Running),
            "STOPPED" => Some(BucketStatus::Stopped),
            "ERROR" => Some(BucketStatus::Error),
            _ => None,
        }
    }
}

/// A user of the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    /// Display name.
    pub name: String,
    /// Whether the user is an administrator.
    pub admin: bool,
    /// SHA-256 of the user's API token; the token itself is never stored.
    pub token_hash: String,
    /// RFC 3339 (UTC); set once, when it is made.
    pub created_at: String,
}

/// What a member may do with a team's buckets.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TeamRole {
    /// Reads objects and bucket details.
    Viewer,
    /// Also writes and deletes objects.
    Member,
    /// Also creates, changes, starts, stops, rotates and deletes buckets, and manages members.
    Admin,
    /// The team's creator: everything an admin does, and names admins.
    Owner,
}

impl TeamRole {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TeamRole::Viewer => "viewer",
            TeamRole::Member => "member",
            TeamRole::Admin => "admin",
            TeamRole::Owner => "owner",
        }
    }
}

/// A workspace (a development container, an app, an agent's home): buckets are linked to it
/// with their `workspaceId`, and its containers may be attached to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    /// Id.
    pub id: String,
    /// Free text.
    pub name: String,
    /// Owner.
    pub user_id: String,
    /// Team whose members see it.
    pub team_id: Option<String>,
    /// Creation time.
    pub created_at: String,
}

/// A team: its members reach its buckets as their role allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Team {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// The user who made it.
    pub owner_id: String,
    /// Member user ids (the owner included).
    pub members: Vec<String>,
    /// Role of each member other than the owner; a member missing here (a team made before
    /// roles existed) is a `member`.
    #[serde(default)]
    pub roles: std::collections::BTreeMap<String, TeamRole>,
    /// Creation time.
    pub created_at: String,
}

impl Team {
    /// The role of `user_id`, if they are a member.
    pub fn role_of(&self, user_id: &str) -> Option<TeamRole> {
        if self.owner_id == user_id {
            return Some(TeamRole::Owner);
        }
        self.members
            .iter()
            .any(|m| m == user_id)
            .then(|| self.roles.get(user_id).copied().unwrap_or(TeamRole::Member))
    }
}

/// A domain registered by a user or a team; its buckets can be linked to `<sub>.<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Domain {
    pub id: String,
    /// DNS name, e.g. `files.example.com`.
    pub name: String,
    pub user_id: String,
    /// Team whose members may use it.
    pub team_id: Option<String>,
    /// The value the TXT record `_kalpana-challenge.<name>` must hold to prove control.
    #[serde(default)]
    pub verification_token: String,
    /// When control was proven (by DNS or an admin); an unverified domain routes nothing.
    #[serde(default)]
    pub verified_at: Option<String>,
    /// Who or what verified it: `dns` or `admin:<user id>`.
    #[serde(default)]
    pub verified_by: Option<String>,
    /// RFC 3339 (UTC); set once, when it is made.
    pub created_at: String,
}

impl Domain {
    /// The DNS name whose TXT record proves control of the domain.
    pub fn challenge_name(&self) -> String {
        format!("_kalpana-challenge.{}", self.name)
    }
}

/// What a bucket is in the middle of, beside its status (typed, so that nothing is parsed back
/// out of `statusMessage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// STOPPED recorded, the container not yet stopped.
    Stopping,
    /// RUNNING, the container went down and is being brought back.
    Restarting,
}

/// What a scoped key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAccess {
    /// Read and list objects.
    Read,
    /// Write and delete objects (not read them).
    Write,
    /// Both.
    ReadWrite,
}

/// A scoped access key of a managed bucket, made by the engine itself (an IAM user with a policy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopedKey {
    /// Id (also names the engine's user: `kb-<id>`).
    pub id: String,
    /// Free text.
    pub name: String,
    /// Access key id.
    pub access_key: String,
    /// Secret key, encrypted with the master key (shown once, at creation).
    pub secret_key_enc: String,
    /// What it may do.
    pub access: KeyAccess,
    /// Only keys under this prefix.
    pub prefix: Option<String>,
    /// When it stops working (revoked by the daemon within seconds).
    pub expires_at: Option<String>,
    /// RFC 3339 (UTC); set once, when it is made.
    pub created_at: String,
    /// The user who made it (and saw its secret); none for keys made before this was kept.
    #[serde(default)]
    pub created_by: Option<String>,
    /// When its secret was last replaced, and why; the holder gets a working secret again with
    /// `POST …/keys/{keyId}/rotate`.
    #[serde(default)]
    pub rotated: Option<KeyRotation>,
}

/// A replacement of a scoped key's secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRotation {
    /// When.
    pub at: String,
    /// Why, in words.
    pub reason: String,
}

impl ScopedKey {
    /// The engine's user name of the key.
    pub fn engine_user(&self) -> String {
        format!("kb-{}", self.id)
    }
}

/// A workspace container attached to a bucket: on the bucket's attachment network, with a
/// scoped key of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub id: String,
    /// Docker id of the container.
    pub container_id: String,
    pub container_name: String,
    /// The workspace its label names.
    pub workspace_id: String,
    /// The scoped key it was given.
    pub key_id: String,
    /// RFC 3339 (UTC); set once, when it is made.
    pub created_at: String,
    /// The user who attached it.
    #[serde(default)]
    pub created_by: Option<String>,
}

/// A key revoked while its bucket could not be reached: removed from the engine when it can.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingRevoke {
    /// The engine's user name.
    pub user: String,
    /// The access key id.
    pub access_key: String,
}

/// Where a bucket lives: its own container (`managed`) or a bucket on an S3-compatible service
/// whose credentials the daemon keeps (`external`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BucketKind {
    /// Its own S3 server in its own container.
    #[default]
    Managed,
    /// A bucket on AWS S3, Cloudflare R2 or another S3-compatible service.
    External,
}

impl BucketKind {
    /// The name clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            BucketKind::Managed => "managed",
            BucketKind::External => "external",
        }
    }
}

/// The S3-compatible service an external bucket lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Amazon S3.
    S3,
    /// Cloudflare R2.
    R2,
    /// Any other S3-compatible service.
    Other,
}

/// Where an external bucket is. Its access key id is the record's `access_key`, its secret the
/// record's `secret_key_enc` (encrypted like every other secret), its region the record's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalTarget {
    /// The service.
    pub provider: Provider,
    /// The service's S3 endpoint (origin).
    pub endpoint: String,
    /// The bucket's name on the service.
    pub bucket_name: String,
    /// Path-style requests (`<endpoint>/<bucket>/<key>`) rather than virtual-hosted ones.
    pub path_style: bool,
    /// The R2 account id the endpoint was made from.
    pub account_id: Option<String>,
}

/// What a managed bucket's server is made of on the runtime.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Container {
    /// The runtime's id of its current container, once made.
    pub container_id: Option<String>,
    /// Its data volume.
    pub volume_name: Option<String>,
    /// The network its container joins.
    pub network_name: Option<String>,
    /// The name by which containers on that network reach it.
    pub internal_host: Option<String>,
}

/// Where a bucket lives, and what only that place has: a managed bucket cannot carry an
/// external target, nor an external one container fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredBackend", into = "StoredBackend")]
pub enum Backend {
    /// Its own S3 server in its own container.
    Managed(Container),
    /// A bucket on an S3-compatible service.
    External(ExternalTarget),
}

/// How [`Backend`] is stored: flat fields of the bucket record, as before it was one enum, so
/// records already stored read unchanged (no `kind` means managed, from before external
/// buckets existed).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredBackend {
    #[serde(default)]
    kind: BucketKind,
    #[serde(default)]
    external: Option<ExternalTarget>,
    #[serde(default)]
    container_id: Option<String>,
    #[serde(default)]
    volume_name: Option<String>,
    #[serde(default)]
    network_name: Option<String>,
    #[serde(default)]
    internal_host: Option<String>,
}

impl TryFrom<StoredBackend> for Backend {
    type Error = String;
    fn try_from(s: StoredBackend) -> std::result::Result<Self, String> {
        match (s.kind, s.external) {
            (BucketKind::Managed, None) => Ok(Backend::Managed(Container {
                container_id: s.container_id,
                volume_name: s.volume_name,
                network_name: s.network_name,
                internal_host: s.internal_host,
            })),
            (BucketKind::External, Some(target)) => Ok(Backend::External(target)),
            (BucketKind::Managed, Some(_)) => {
                Err("a managed bucket record carries an external target".into())
            }
            (BucketKind::External, None) => {
                Err("an external bucket record has no external target".into())
            }
        }
    }
}

impl From<Backend> for StoredBackend {
    fn from(b: Backend) -> Self {
        match b {
            Backend::Managed(c) => StoredBackend {
                kind: BucketKind::Managed,
                external: None,
                container_id: c.container_id,
                volume_name: c.volume_name,
                network_name: c.network_name,
                internal_host: c.internal_host,
            },
            Backend::External(target) => StoredBackend {
                kind: BucketKind::External,
                external: Some(target),
                container_id: None,
                volume_name: None,
                network_name: None,
                internal_host: None,
            },
        }
    }
}

/// What the bucket was made from, on a bucket created with `fromSnapshot`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FromSnapshot {
    /// The bucket the snapshot is of.
    pub bucket_id: String,
    pub snapshot_id: String,
    /// The S3 bucket name inside the archive (the source bucket's name).
    pub source_name: String,
    /// The archive is in the new bucket's volume.
    pub imported: bool,
    /// The data moved to the new bucket's name and the source's keys removed.
    pub settled: bool,
}

/// When a bucket's snapshots are taken by themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotPolicy {
    /// Hours between snapshots (fractions allowed, at least `KALPANA_SNAPSHOT_MIN_EVERY_SECS`).
    pub every_hours: f64,
    /// How many successful scheduled snapshots are kept.
    pub keep: u32,
    /// Where they go (default `KALPANA_SNAPSHOT_BUCKET`).
    #[serde(default)]
    pub target_bucket_id: Option<String>,
}

/// Everything the daemon keeps about a bucket: the desired state and what it last observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketRecord {
    pub id: String,
    /// S3 bucket name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    pub user_id: String,
    /// Team whose members share it.
    pub team_id: Option<String>,
    /// Workspace it belongs to.
    pub workspace_id: Option<String>,
    pub engine: EngineKind,
    /// Image the container runs.
    pub image: String,
    /// Host clients use for the direct endpoint.
    pub host: String,
    /// Host port of the S3 API (reserved while set).
    pub port: Option<u16>,
    /// Host port of the console (reserved while set).
    pub console_port: Option<u16>,
    pub access_key: String,
    /// Secret key, encrypted with the master key.
    pub secret_key_enc: String,
    pub region: String,
    /// Versioning wanted.
    pub versioning: bool,
    /// Server-side encryption wanted.
    pub encryption: bool,
    /// Anonymous read wanted.
    pub public_access: bool,
    /// Quota in GB (10^9 bytes); fractions allowed.
    pub max_size_gb: Option<f64>,
    pub status: BucketStatus,
    /// Why the status is what it is.
    pub status_message: Option<String>,
    /// Cached object count.
    pub object_count: u64,
    /// Cached total size.
    pub total_size_bytes: u64,
    /// Whether the last recount found more bytes than the quota (written directly over S3);
    /// API uploads are refused until it is back under.
    #[serde(default)]
    pub over_quota: bool,
    /// When `objectCount`/`totalSizeBytes` were last counted from the S3 server itself.
    #[serde(default)]
    pub stats_synced_at: Option<String>,
    /// Linked domain.
    pub domain_id: Option<String>,
    /// The full host of the domain link (`<sub>.<domain>`), routed beside the default host.
    #[serde(default)]
    pub linked_host: Option<String>,
    /// Subdomain label.
    pub subdomain: Option<String>,
    /// Whether it has ever reached RUNNING (its volume then holds user data).
    pub provisioned: bool,
    /// Generation of the container configuration; bumped (record first) whenever the container
    /// must be replaced, so reconcile replaces one left behind by a daemon that died.
    #[serde(default)]
    pub generation: u64,
    /// Deletion in progress (a finalizer: the record goes only once Docker is clean).
    pub deleting: bool,
    /// With `deleting`: drop the volume too.
    pub delete_volume: bool,
    /// What the bucket is in the middle of, if anything.
    #[serde(default)]
    pub phase: Option<Phase>,
    /// Why its server went down, while it is being brought back ([`Phase::Restarting`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_reason: Option<String>,
    /// Where the bucket lives, with what only that place has (stored flat, as `kind`,
    /// `external` and the container fields beside the others).
    #[serde(flatten)]
    pub backend: Backend,
    /// Scoped access keys.
    #[serde(default)]
    pub keys: Vec<ScopedKey>,
    /// Keys revoked but not yet removed from the engine (the bucket was not running).
    #[serde(default)]
    pub revoke_pending: Vec<PendingRevoke>,
    /// Workspace containers attached to it.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// Engine identities the daemon did not make (users made with the root key, keys a key
    /// minted itself, users that came with a snapshot's data) are to be removed as soon as the
    /// bucket runs.
    #[serde(default)]
    pub sweep_identities: bool,
    /// Secrets of its engine went into an archive of format 1 (plain, from before archives were
    /// sealed): every scoped key's secret and the engine's internal certificates are to be
    /// replaced as soon as the bucket runs.
    #[serde(default)]
    pub rotate_leaked: bool,
    /// When that was last done.
    #[serde(default)]
    pub leaked_rotated_at: Option<String>,
    /// Purposes this bucket is the default for in its scope (the owner's, or its team's).
    #[serde(default)]
    pub default_for: Vec<String>,
    /// The snapshot it was made from, and how far that got.
    #[serde(default)]
    pub from_snapshot: Option<FromSnapshot>,
    /// Snapshots on a schedule.
    #[serde(default)]
    pub snapshot_policy: Option<SnapshotPolicy>,
    /// RFC 3339 (UTC); set once, when it is made.
    pub created_at: String,
    /// RFC 3339 (UTC): when someone last changed the bucket; a recount or a migration
    /// (`Locked::write`) leaves it as it is.
    pub updated_at: String,
}

impl BucketRecord {
    /// A new record (the one constructor): named `name`, owned by `user_id`, not yet anywhere,
    /// status CREATING, every counter zero; callers fill in what their kind needs.
    pub fn new(id: String, name: String, user_id: String, engine: EngineKind) -> Self {
        let ts = now();
        BucketRecord {
            id,
            name,
            description: None,
            user_id,
            team_id: None,
            workspace_id: None,
            engine,
            image: String::new(),
            host: String::new(),
            port: None,
            console_port: None,
            access_key: String::new(),
            secret_key_enc: String::new(),
            region: String::new(),
            versioning: false,
            encryption: false,
            public_access: false,
            max_size_gb: None,
            status: BucketStatus::Creating,
            status_message: None,
            object_count: 0,
            total_size_bytes: 0,
            over_quota: false,
            stats_synced_at: None,
            domain_id: None,
            linked_host: None,
            subdomain: None,
            provisioned: false,
            generation: 0,
            deleting: false,
            delete_volume: false,
            phase: None,
            down_reason: None,
            backend: Backend::Managed(Container::default()),
            default_for: Vec::new(),
            from_snapshot: None,
            snapshot_policy: None,
            keys: Vec::new(),
            revoke_pending: Vec::new(),
            attachments: Vec::new(),
            sweep_identities: false,
            rotate_leaked: false,
            leaked_rotated_at: None,
            created_at: ts.clone(),
            updated_at: ts,
        }
    }

    /// The quota in bytes, if any.
    pub fn quota_bytes(&self) -> Option<u64> {
        self.max_size_gb.map(|gb| (gb * 1e9) as u64)
    }

    /// Where it lives.
    pub fn kind(&self) -> BucketKind {
        match self.backend {
            Backend::Managed(_) => BucketKind::Managed,
            Backend::External(_) => BucketKind::External,
        }
    }

    /// Its container's parts, if it is managed.
    pub fn container(&self) -> Option<&Container> {
        match &self.backend {
            Backend::Managed(c) => Some(c),
            Backend::External(_) => None,
        }
    }

    /// Its container's parts to change, if it is managed.
    pub fn container_mut(&mut self) -> Option<&mut Container> {
        match &mut self.backend {
            Backend::Managed(c) => Some(c),
            Backend::External(_) => None,
        }
    }

    /// Its remote bucket, if it is external.
    pub fn external(&self) -> Option<&ExternalTarget> {
        match &self.backend {
            Backend::External(t) => Some(t),
            Backend::Managed(_) => None,
        }
    }

    /// Host ports this record reserves.
    pub fn ports(&self) -> Vec<u16> {
        self.port.into_iter().chain(self.console_port).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as the code before [`Backend`] wrote it: `kind`, `external` and the container
    /// fields flat beside the others.
    fn stored(extra: serde_json::Value) -> serde_json::Value {
        let mut v = serde_json::to_value(BucketRecord::new(
            "b1".into(),
            "photos".into(),
            "u1".into(),
            EngineKind::Seaweedfs,
        ))
        .expect("record to JSON");
        let obj = v.as_object_mut().expect("object");
        for key in [
            "kind",
            "external",
            "containerId",
            "volumeName",
            "networkName",
            "internalHost",
        ] {
            obj.remove(key);
        }
        for (k, x) in extra.as_object().expect("object") {
            obj.insert(k.clone(), x.clone());
        }
        v
    }

    #[test]
    fn records_stored_flat_read_as_one_backend_and_are_written_back_the_same() {
        let managed = stored(serde_json::json!({
            "kind": "managed", "external": null, "containerId": "c1",
            "volumeName": "v1", "networkName": "n1", "internalHost": "h1",
        }));
        let b: BucketRecord = serde_json::from_value(managed.clone()).expect("managed reads");
        assert_eq!(b.kind(), BucketKind::Managed);
        assert_eq!(
            b.container().and_then(|c| c.volume_name.as_deref()),
            Some("v1")
        );
        assert_eq!(serde_json::to_value(&b).expect("writes"), managed);

        let external = stored(serde_json::json!({
            "kind": "external", "containerId": null, "volumeName": null,
            "networkName": null, "internalHost": null,
            "external": {"provider": "r2", "endpoint": "https://a.r2.cloudflarestorage.com",
                "bucketName": "remote", "pathStyle": true, "accountId": "a"},
        }));
        let b: BucketRecord = serde_json::from_value(external.clone()).expect("external reads");
        assert_eq!(b.external().map(|x| x.bucket_name.as_str()), Some("remote"));
        assert!(b.container().is_none());
        assert_eq!(serde_json::to_value(&b).expect("writes"), external);

        // From before external buckets: no `kind`, no `external`.
        let legacy = stored(serde_json::json!({ "containerId": "c1" }));
        let b: BucketRecord = serde_json::from_value(legacy).expect("legacy reads");
        assert_eq!(b.kind(), BucketKind::Managed);
    }

    #[test]
    fn a_kind_without_its_parts_is_refused() {
        let half_external = stored(serde_json::json!({ "kind": "external" }));
        let e = serde_json::from_value::<BucketRecord>(half_external).expect_err("refused");
        assert!(e.to_string().contains("no external target"), "{e}");
        let managed_with_target = stored(serde_json::json!({
            "kind": "managed",
            "external": {"provider": "s3", "endpoint": "https://s3.amazonaws.com",
                "bucketName": "x", "pathStyle": false, "accountId": null},
        }));
        let e = serde_json::from_value::<BucketRecord>(managed_with_target).expect_err("refused");
        assert!(e.to_string().contains("carries an external target"), "{e}");
    }
}
