//! What a node agent (`kalpana-buckets node`) and the daemon say to each other, over the
//! daemon's HTTPS API with the node's own token. The agent only ever dials out: it reports
//! (`POST /api/fleet/stats`, which is also its heartbeat), asks for its next job
//! (`GET /api/node/jobs`), asks for each part's upload URL, reports progress and the outcome.
//!
//! A job names one bucket of the agent's node and carries only what that job needs: no bucket
//! credentials, the archive's key only for that archive, URLs presigned for that one object.

use serde::{Deserialize, Serialize};

use crate::archive::{ArchiveKey, OpenKey, SealKey};
use crate::engine::EngineKind;
use crate::error::{Error, Result};
use crate::reports::{ExecOutput, JobOutcome, ManagedVolume};
use crate::spec::BucketSpec;
use crate::stats::{ContainerStats, HostInfo};

/// Most container samples one report may carry.
pub const MAX_SAMPLES: usize = 4096;

/// Largest report body the daemon reads.
pub const MAX_REPORT_BYTES: usize = 4 << 20;

/// Size of the parts an agent uploads an archive in (at most one in its memory at a time).
pub const PART_SIZE: usize = 16 << 20;

/// A node's report: its heartbeat, its host and its bucket containers' samples.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeReport {
    /// The Swarm node id of the agent's engine (must be its token's).
    pub node_id: String,
    /// The host, when its engine answered.
    pub host: Option<HostInfo>,
    /// Whether the engine answered.
    pub engine_ok: bool,
    /// What went wrong when it did not.
    pub engine_error: Option<String>,
    /// Samples of the running bucket containers (at most [`MAX_SAMPLES`]).
    pub containers: Vec<ContainerSample>,
}

/// One bucket container's sample.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSample {
    /// Its bucket.
    pub bucket_id: String,
    /// The sample.
    pub stats: ContainerStats,
}

/// The daemon's answer to a report.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportAck {
    /// The node the report was taken for.
    pub node_id: String,
    /// Seconds between reports the daemon wants.
    pub report_every_secs: u64,
}

/// A job for a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeJob {
    /// Its id (the daemon's).
    pub id: String,
    /// The bucket it is about.
    pub bucket: JobBucket,
    /// What to do.
    pub work: Work,
}

/// What a job needs to know of its bucket: names and image, never its credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobBucket {
    /// Bucket id.
    pub id: String,
    /// Bucket name.
    pub name: String,
    /// Owner's user id (a label of its volume).
    pub owner: String,
    /// Daemon instance (a label of its volume).
    pub instance: String,
    /// Its engine.
    pub engine: EngineKind,
    /// The engine's image.
    pub image: String,
}

impl JobBucket {
    /// What a job on `spec`'s volume needs of it.
    pub fn of(spec: &BucketSpec) -> Self {
        JobBucket {
            id: spec.id.clone(),
            name: spec.name.clone(),
            owner: spec.owner.clone(),
            instance: spec.instance.clone(),
            engine: spec.engine.kind,
            image: spec.engine.image.clone(),
        }
    }

    /// A spec enough for volume jobs: names, labels and image, no credentials, no ports.
    pub fn spec(&self) -> BucketSpec {
        let mut engine = self.engine.profile();
        engine.image = self.image.clone();
        BucketSpec {
            id: self.id.clone(),
            name: self.name.clone(),
            owner: self.owner.clone(),
            instance: self.instance.clone(),
            engine,
            access_key: String::new(),
            secret_key: String::new(),
            s3_port: 0,
            console_port: None,
            bind_ip: String::new(),
            network: String::new(),
            routed_hosts: Vec::new(),
            routing: Default::default(),
            limits: Default::default(),
            generation: 0,
        }
    }
}

/// What a job does.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Work {
    /// Archive the bucket's volume (its server stopped by the daemon first): tar, zstd, sealed
    /// with this key, uploaded part by part to URLs the daemon presigns on request.
    Archive {
        /// The archive's key and header.
        seal: WireSeal,
    },
    /// Fill a volume from the archive at `url` (a presigned GET of that one object).
    Fill {
        /// `data` (the bucket's own volume, made here) or `staging`.
        staging: bool,
        /// Where the archive is.
        url: String,
        /// The archive's key (hex), or none for a plain (format 1) archive.
        key: Option<String>,
        /// The bucket's data volume here is removed first (an evacuation onto a node that may
        /// hold an old copy): the fill never merges into old data.
        #[serde(default)]
        fresh: bool,
    },
    /// Whether the bucket has a staging volume.
    Staged,
    /// Make the bucket's volume anew from its staging volume.
    PromoteStaging,
    /// Remove the staging volume and any data helper.
    DropStaging,
    /// Remove the bucket's volume (and its stopped containers that hold it).
    RemoveVolume,
    /// Remove a managed volume by name (an orphan).
    RemoveVolumeNamed {
        /// The volume.
        name: String,
    },
    /// List the managed volumes on the node.
    ListVolumes,
    /// Move the bucket's data volume aside into volume `name` (its bucket was evacuated from
    /// this node while the node was lost): never served again, kept for an admin to delete.
    SetAside {
        /// The volume it goes into.
        name: String,
        /// When the bucket was evacuated (RFC 3339), as a label of that volume.
        evacuated_at: String,
    },
    /// Run the engine's own admin tool in the bucket's running server (its input and output
    /// may hold secrets: never logged).
    Exec {
        /// The command.
        cmd: Vec<String>,
        /// Its standard input, base64.
        stdin: String,
        /// How long it may take, in seconds.
        timeout_secs: u64,
    },
}

/// A [`SealKey`] on the wire.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireSeal {
    /// The archive's key, hex.
    pub key: String,
    /// That key sealed by the master key (goes into the archive's header as it is).
    pub sealed_key: String,
    /// The master key's fingerprint.
    pub master_key_id: String,
    /// The bucket.
    pub bucket_id: String,
    /// The snapshot.
    pub snapshot_id: String,
}

impl std::fmt::Debug for WireSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireSeal")
            .field("snapshot_id", &self.snapshot_id)
            .finish_non_exhaustive()
    }
}

impl WireSeal {
    /// On the wire.
    pub fn of(s: &SealKey) -> Self {
        WireSeal {
            key: hex::encode(s.key.0),
            sealed_key: s.sealed_key.clone(),
            master_key_id: s.master_key_id.clone(),
            bucket_id: s.bucket_id.clone(),
            snapshot_id: s.snapshot_id.clone(),
        }
    }

    /// Back from the wire.
    pub fn seal_key(&self) -> Result<SealKey> {
        Ok(SealKey {
            key: parse_key(&self.key)?,
            sealed_key: self.sealed_key.clone(),
            master_key_id: self.master_key_id.clone(),
            bucket_id: self.bucket_id.clone(),
            snapshot_id: self.snapshot_id.clone(),
        })
    }
}

/// An [`OpenKey`] on the wire.
pub fn wire_open_key(k: &OpenKey) -> Option<String> {
    match k {
        OpenKey::Plain => None,
        OpenKey::Sealed(key) => Some(hex::encode(key.0)),
    }
}

/// Back from the wire.
pub fn open_key(key: Option<&str>) -> Result<OpenKey> {
    Ok(match key {
        None => OpenKey::Plain,
        Some(k) => OpenKey::Sealed(parse_key(k)?),
    })
}

fn parse_key(hex_key: &str) -> Result<ArchiveKey> {
    let bytes: [u8; 32] = hex::decode(hex_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::InvalidConfig("an archive key must be 64 hex digits".into()))?;
    Ok(ArchiveKey(bytes))
}

/// An agent's request for one part's upload URL.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartRequest {
    /// The part's number, from 1.
    pub part: i32,
}

/// A presigned URL.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartUrl {
    /// PUT the part here.
    pub url: String,
}

/// An agent's progress report.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobProgress {
    /// Archive bytes moved since the previous report.
    pub bytes: u64,
}

/// How a job ended.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobDone {
    /// Why it failed; none when it went through.
    pub error: Option<String>,
    /// What an archive or fill moved (also when a fill failed part-way).
    pub outcome: Option<WireOutcome>,
    /// For `staged`.
    pub staged: Option<bool>,
    /// For `listVolumes`.
    #[serde(default)]
    pub volumes: Vec<WireVolume>,
    /// For `archive`: the uploaded parts (number, ETag).
    #[serde(default)]
    pub parts: Vec<(i32, String)>,
    /// For `exec`: what the command answered.
    pub exec: Option<WireExec>,
    /// For `setAside`: whether there was a volume to set aside.
    #[serde(default)]
    pub set_aside: Option<bool>,
}

/// An [`ExecOutput`] on the wire (outputs base64).
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireExec {
    /// Exit code.
    pub exit_code: i64,
    /// Standard output, base64.
    pub stdout: String,
    /// Standard error, base64.
    pub stderr: String,
}

impl std::fmt::Debug for WireExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireExec")
            .field("exit_code", &self.exit_code)
            .finish_non_exhaustive()
    }
}

impl From<&ExecOutput> for WireExec {
    fn from(o: &ExecOutput) -> Self {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD;
        WireExec {
            exit_code: o.exit_code,
            stdout: b.encode(&o.stdout),
            stderr: b.encode(&o.stderr),
        }
    }
}

impl WireExec {
    /// Back from the wire.
    pub fn output(&self) -> Result<ExecOutput> {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD;
        let d = |s: &str| {
            b.decode(s)
                .map_err(|_| Error::InvalidConfig("an exec output is not base64".into()))
        };
        Ok(ExecOutput {
            exit_code: self.exit_code,
            stdout: d(&self.stdout)?,
            stderr: d(&self.stderr)?,
        })
    }
}

/// A [`JobOutcome`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireOutcome {
    /// Bytes.
    pub bytes: u64,
    /// Their SHA-256, hex.
    pub sha256: String,
}

impl From<&JobOutcome> for WireOutcome {
    fn from(o: &JobOutcome) -> Self {
        WireOutcome {
            bytes: o.bytes,
            sha256: o.sha256.clone(),
        }
    }
}

impl From<WireOutcome> for JobOutcome {
    fn from(o: WireOutcome) -> Self {
        JobOutcome {
            bytes: o.bytes,
            sha256: o.sha256,
        }
    }
}

/// A [`ManagedVolume`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireVolume {
    /// Its name.
    pub name: String,
    /// Its bucket.
    pub bucket_id: Option<String>,
    /// Made ahead of its bucket.
    pub made_ahead: bool,
}

impl From<&ManagedVolume> for WireVolume {
    fn from(v: &ManagedVolume) -> Self {
        WireVolume {
            name: v.name.clone(),
            bucket_id: v.bucket_id.clone(),
            made_ahead: v.made_ahead,
        }
    }
}

impl From<WireVolume> for ManagedVolume {
    fn from(v: WireVolume) -> Self {
        ManagedVolume {
            name: v.name,
            bucket_id: v.bucket_id,
            made_ahead: v.made_ahead,
        }
    }
}
