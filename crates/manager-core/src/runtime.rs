//! The container runtime as a port: everything the domain asks of the place where bucket
//! servers run, behind one trait, so the domain never learns whether that is one Docker engine
//! (`docker`, [`crate::docker_runtime::DockerRuntime`]) or a cluster.
//!
//! Shape: a bucket has one *server* (the engine running on the bucket's data volume), named by
//! the bucket's id; the runtime keeps the volume, the server, the bucket's attachment network
//! and the address by which the daemon reaches the server. Moving a volume's data is a *job*
//! the runtime runs where the volume lives ([`Runtime::archive`], [`Runtime::fill`],
//! [`Runtime::promote_staging`]), handed only what the job needs: where the archive goes or
//! comes from, and that archive's key; never a stream the domain must carry.
//!
//! Caveats every implementation documents: what [`Capabilities`] it lacks (a cluster cannot
//! freeze a task in place), and what "the daemon's address of a server" means for it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::archive::{OpenKey, SealKey};
use crate::error::Result;
pub use crate::reports::JobOutcome;
use crate::reports::{ContainerEvent, ContainerState, ExecOutput, ManagedVolume, PullProgress};
use crate::spec::BucketSpec;
use crate::stats::ContainerStats;
use crate::stats::HostInfo;

/// What a runtime can do beyond the common operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// It can freeze a running server in place and thaw it (no CPU, memory kept).
    pub freeze: bool,
    /// Servers are reached at their published host ports (on their node), not at the
    /// engine's own ports on a network the daemon shares with them.
    pub host_ports: bool,
}

/// A container labelled for a workspace, found by name or id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its labels.
    pub labels: std::collections::HashMap<String, String>,
}

/// Where an archive goes: an object of an S3 bucket, through a client the job may use for that
/// object only, or (for a job run on another node) through URLs presigned for that object only.
#[derive(Clone)]
pub struct ArchiveTarget {
    /// A client of the bucket holding the archive.
    pub client: kalpana_s3_ops::BucketClient,
    /// Presigns requests for the archive's object, at an origin the bucket's nodes can reach.
    pub presigner: kalpana_s3_ops::Presigner,
    /// The archive's object key.
    pub key: String,
}

impl std::fmt::Debug for ArchiveTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveTarget")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Told how many more of the archive's bytes (as stored, sealed) a job has moved, as it moves
/// them: for progress. The job's [`JobOutcome`] gives the total and its hash.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// "Archive this bucket's data to this target": a consistent read of the volume (the server
/// frozen or stopped meanwhile, and running again afterwards if it ran), zstd-compressed,
/// sealed with `seal`, written to `target`.
#[derive(Clone)]
pub struct ArchiveJob {
    /// Where it goes.
    pub target: ArchiveTarget,
    /// The archive's key and the header that carries it sealed.
    pub seal: SealKey,
    /// Sees every stored byte.
    pub progress: Progress,
}

/// Which volume of a bucket a fill writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeRole {
    /// The bucket's own data volume (a new bucket's, before its server exists).
    Data,
    /// The staging volume a restore fills while the bucket serves its current data (made empty
    /// first).
    Staging,
}

/// "Fill this volume from this archive": the archive read from `source`, opened (plain or
/// sealed), decompressed and extracted into the volume.
#[derive(Clone)]
pub struct FillJob {
    /// Where the archive is.
    pub source: ArchiveTarget,
    /// How to open it.
    pub open: OpenKey,
    /// Sees every stored byte read.
    pub progress: Progress,
}

/// Everything the domain asks of the place where bucket servers run.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// `docker` or `swarm`.
    fn name(&self) -> &'static str;

    /// What it can do beyond the common operations.
    fn capabilities(&self) -> Capabilities;

    /// Whether it answers at all.
    async fn ping(&self) -> Result<()>;

    /// At start: makes what every bucket shares (the bucket network and its isolation).
    async fn prepare(&self) -> Result<()>;

    /// Makes sure `image` is there, pulling it and reporting each step.
    async fn ensure_image(
        &self,
        image: &str,
        progress: &mut (dyn FnMut(PullProgress) + Send),
    ) -> Result<()>;

    /// Makes the bucket's data volume (an existing one is kept, data and all).
    async fn create_volume(&self, spec: &BucketSpec) -> Result<()>;

    /// Makes the data volume of a bucket to come (`id`), with the engine's internal
    /// certificates already in it.
    async fn prepare_volume(
        &self,
        id: &str,
        image: &str,
        data_path: &str,
        internal_security: bool,
    ) -> Result<()>;

    /// Removes the bucket's data volume; a missing one is fine.
    async fn remove_volume(&self, id: &str) -> Result<()>;

    /// Makes the bucket's server from `spec` (not started), writing fresh internal
    /// certificates unless the volume holds unused ones (`tls_written`). Returns its id.
    async fn create_server(&self, spec: &BucketSpec, tls_written: bool) -> Result<String>;

    /// Starts the bucket's server; one running already is fine. A host port held by something
    /// else is [`crate::Error::PortTaken`].
    async fn start_server(&self, id: &str) -> Result<()>;

    /// Stops the bucket's server within `grace`; stopped or missing is fine.
    async fn stop_server(&self, id: &str, grace: Duration) -> Result<()>;

    /// Removes the bucket's server; missing is fine.
    async fn remove_server(&self, id: &str) -> Result<()>;

    /// Freezes a running server in place (see [`Capabilities::freeze`]).
    async fn freeze(&self, id: &str) -> Result<()>;

    /// Lets a frozen server run again.
    async fn thaw(&self, id: &str) -> Result<()>;

    /// The bucket's server as it is, or none.
    async fn inspect_server(&self, id: &str) -> Result<Option<ContainerState>>;

    /// Every server this daemon instance manages (also those of no bucket).
    async fn list_servers(&self) -> Result<Vec<ContainerState>>;

    /// Every volume this daemon instance manages.
    async fn list_volumes(&self) -> Result<Vec<ManagedVolume>>;

    /// Removes a managed server by its name (an orphan); missing is fine.
    async fn remove_server_named(&self, name: &str) -> Result<()>;

    /// Removes a managed volume by its name (an orphan); missing is fine.
    async fn remove_volume_named(&self, name: &str) -> Result<()>;

    /// Events of servers going down, as they happen.
    fn events(&self) -> BoxStream<'static, Result<ContainerEvent>>;

    /// The origin (`http://host:port`) by which the daemon reaches a running server's S3 API,
    /// or none while it does not run.
    async fn address(&self, id: &str, s3_port: u16) -> Result<Option<String>>;

    /// The same, from what [`Runtime::inspect_server`] or [`Runtime::list_servers`] showed.
    fn origin(&self, state: &ContainerState, s3_port: u16) -> Option<String>;

    /// Runs `cmd` inside the bucket's running server (the engine's own admin tools).
    async fn exec(
        &self,
        id: &str,
        cmd: &[&str],
        stdin: &[u8],
        timeout: Duration,
    ) -> Result<ExecOutput>;

    /// One sample of the server's resource use; none when it does not run.
    async fn stats(&self, id: &str) -> Result<Option<ContainerStats>>;

    /// The hosts servers run on.
    async fn hosts(&self) -> Result<Vec<HostInfo>>;

    /// A container by name or id, for attaching it; none when there is no such container.
    async fn find_workload(&self, name_or_id: &str) -> Result<Option<Workload>>;

    /// Puts the bucket's server and `workloads` on the bucket's attachment network (made, and
    /// isolated, when missing).
    async fn attach(&self, id: &str, workloads: &[String]) -> Result<()>;

    /// Takes `workload` off the bucket's attachment network.
    async fn detach(&self, id: &str, workload: &str) -> Result<()>;

    /// Removes the bucket's attachment network.
    async fn drop_attachments(&self, id: &str) -> Result<()>;

    /// Archives the bucket's data (see [`ArchiveJob`]).
    async fn archive(&self, spec: &BucketSpec, job: ArchiveJob) -> Result<JobOutcome>;

    /// Fills one of the bucket's volumes (see [`FillJob`]). Whatever the archive holds, the
    /// outcome says what was read: the caller compares it with what it expects.
    async fn fill(&self, spec: &BucketSpec, role: VolumeRole, job: FillJob) -> Result<JobOutcome>;

    /// Whether the bucket has a staging volume (a restore left one).
    async fn staged(&self, id: &str) -> Result<bool>;

    /// Makes the bucket's data the staged data: its server removed, its volume made anew from
    /// the staging volume, its server created again from `spec` (not started). Repeatable.
    async fn promote_staging(&self, spec: &BucketSpec) -> Result<()>;

    /// Removes the bucket's staging volume and any helper left; none is fine.
    async fn drop_staging(&self, id: &str) -> Result<()>;

    /// Brings a bucket whose node `lost` is gone back on another node: a fresh data volume
    /// there filled by `job`, and the server pinned there, stopped (the caller starts it).
    /// Returns what was read and the node. Only a cluster has nodes to lose. `resumed`: a
    /// daemon that was killed began it, and may have left a half-filled data volume on a node
    /// other than the one chosen now; the bucket's data volumes on the reporting nodes but the
    /// chosen and the lost one are removed once it is done.
    async fn evacuate(
        &self,
        spec: &BucketSpec,
        lost: &str,
        job: FillJob,
        resumed: bool,
    ) -> Result<(JobOutcome, String)>;

    /// On node `node`, which came back after its buckets were evacuated, moves bucket `spec`'s
    /// old data volume aside into volume `name` (never served, labelled with `evacuated_at`).
    /// False when that node holds no such volume.
    async fn set_aside(
        &self,
        node: &str,
        spec: &BucketSpec,
        name: &str,
        evacuated_at: &str,
    ) -> Result<bool>;
}
