//! The bucket record: everything the daemon keeps about a bucket.

use kalpana_manager_core::EngineKind;
use serde::{Deserialize, Serialize};

use super::{now, Attachment, Backend, BucketKind, BucketStatus, Container, ExternalTarget};
use super::{PendingRevoke, Phase, ScopedKey};

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

/// A managed bucket's sleep, as recorded (see [`crate::sleep`]): written when it falls asleep
/// and when it wakes, never per request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SleepRecord {
    /// Its container is stopped on purpose (its status stays RUNNING); the next request wakes it.
    pub asleep: bool,
    /// When it last fell asleep or woke (RFC 3339).
    pub since: Option<String>,
    /// The last client request the daemon saw before it fell asleep (RFC 3339).
    pub last_request_at: Option<String>,
    /// How long its last wake took, from the wake's start to the engine's first answer.
    pub last_wake_millis: Option<u64>,
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
    /// Seconds with no client request after which it sleeps; none takes the daemon's default
    /// (`KALPANA_SLEEP_AFTER_SECS`), 0 never sleeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep_after_secs: Option<u64>,
    /// Asleep or not, and the figures of its last wake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep: Option<SleepRecord>,
    /// When its latest successful snapshot that still exists finished (RFC 3339): what a
    /// restore from it would lose is everything written since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_snapshot_at: Option<String>,
    /// Its last evacuation from a lost node (a cluster's), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evacuation: Option<super::Evacuation>,
    /// Set while it is in ERROR because its node is lost and it had no usable snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_with_node: Option<super::LostWithNode>,
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
            sleep_after_secs: None,
            sleep: None,
            latest_snapshot_at: None,
            evacuation: None,
            lost_with_node: None,
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

    /// Whether its container is stopped on purpose while it sleeps.
    pub fn asleep(&self) -> bool {
        self.sleep.as_ref().is_some_and(|s| s.asleep)
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
