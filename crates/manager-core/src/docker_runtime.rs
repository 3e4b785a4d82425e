//! The `docker` runtime: bucket servers are containers of one Docker engine (the daemon's
//! host), on one bridge network without inter-container traffic, behind host firewall rules.
//! Data jobs run here, in the daemon's process: Docker's archive API reads and writes volumes,
//! the bytes go straight between it and the archive's bucket.
//!
//! Guarantees: an archive is a consistent read (the container is frozen while Docker reads its
//! volume, and thawed whatever happens); a fill into the staging volume never touches the
//! bucket's own data. Caveat: the daemon reaches servers at their address on the bucket network,
//! so it must run on the Docker host (as deploy/ runs it, with host networking).

use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use crate::archive::{self, ByteStream};
use crate::docker::{
    ContainerEvent, ContainerState, ContainerStats, DockerClient, ExecOutput, ManagedVolume,
    PullProgress,
};
use crate::error::{Error, Result};
use crate::firewall::Firewall;
use crate::runtime::{
    ArchiveJob, Capabilities, FillJob, JobOutcome, Progress, Runtime, VolumeRole, Workload,
};
use crate::spec::{container_name, helper_name, staging_volume_name, volume_name, BucketSpec};
use crate::stats::HostInfo;

/// One Docker engine.
#[derive(Debug)]
pub struct DockerRuntime {
    docker: DockerClient,
    network: String,
    firewall: Option<Firewall>,
}

/// The attachment network of a bucket.
pub fn attach_network(id: &str) -> String {
    format!("kalpana-att-{id}")
}

/// The host interface of a bucket's attachment network (15 characters: the random end of the
/// bucket id, since its start is a time).
fn attach_bridge(id: &str) -> String {
    format!("kba{}", &id[id.len().saturating_sub(12)..])
}

impl DockerRuntime {
    /// A runtime on `docker`, with bucket servers on `network`, and host firewall rules when
    /// `firewall` is given.
    pub fn new(docker: DockerClient, network: &str, firewall: Option<Firewall>) -> Self {
        DockerRuntime {
            docker,
            network: network.to_string(),
            firewall,
        }
    }

    /// The Docker client (for the conformance suite's own checks).
    pub fn docker(&self) -> &DockerClient {
        &self.docker
    }

    /// Puts the bridge of `network` behind the firewall rules; without them it says, once per
    /// call, what stays open.
    async fn isolate(&self, network: &str) -> Result<()> {
        let Some(fw) = &self.firewall else {
            return Ok(());
        };
        let bridge = self.docker.bridge_of(network).await?;
        if let Err(e) = fw.ensure_bridge(&bridge).await {
            tracing::warn!(network, %bridge, error = %e,
                "the host firewall rules could not be made: the engines' internal status pages (SeaweedFS master 9333, admin 23646) answer the host and attached containers without a JWT; run the daemon as root with iptables, or set KALPANA_FIREWALL=false to silence this");
        }
        Ok(())
    }

    /// Runs `tar` into `volume` through data helper `role`, removed afterwards whatever
    /// happened.
    pub(crate) async fn extract_into(
        &self,
        spec: &BucketSpec,
        volume: &str,
        role: &str,
        tar: ByteStream,
    ) -> Result<()> {
        let helper = self.docker.create_helper(spec, volume, role).await?;
        let result = self
            .docker
            .upload_archive(&helper, &extract_at(spec), tar)
            .await;
        if let Err(e) = self.docker.remove_container(&helper).await {
            tracing::warn!(bucket = %spec.id, helper = %helper, error = %e, "removing a data helper failed");
        }
        result
    }
}

/// Where archives are extracted: the parent of the engine's data directory, since the archive's
/// entries carry the directory's own name.
fn extract_at(spec: &BucketSpec) -> String {
    std::path::Path::new(spec.engine.data_path)
        .parent()
        .map_or_else(|| "/".to_string(), |p| p.display().to_string())
}

/// `stream`, each chunk shown to `progress` and hashed: what it saw once it ends.
pub(crate) struct Metered {
    bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    hasher: std::sync::Arc<std::sync::Mutex<sha2::Sha256>>,
}

impl Metered {
    pub(crate) fn wrap(stream: ByteStream, progress: Progress) -> (ByteStream, Metered) {
        use sha2::Digest;
        let bytes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let hasher = std::sync::Arc::new(std::sync::Mutex::new(sha2::Sha256::new()));
        let (b, h) = (bytes.clone(), hasher.clone());
        let metered = stream.map(move |chunk| {
            let chunk = chunk?;
            b.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::SeqCst);
            h.lock().unwrap_or_else(|p| p.into_inner()).update(&chunk);
            progress(chunk.len() as u64);
            Ok(chunk)
        });
        (Box::pin(metered), Metered { bytes, hasher })
    }

    pub(crate) fn outcome(&self) -> JobOutcome {
        use sha2::Digest;
        JobOutcome {
            bytes: self.bytes.load(std::sync::atomic::Ordering::SeqCst),
            sha256: hex::encode(
                self.hasher
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                    .finalize(),
            ),
        }
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            freeze: true,
            host_ports: false,
        }
    }

    async fn ping(&self) -> Result<()> {
        self.docker.ping().await
    }

    async fn prepare(&self) -> Result<()> {
        self.docker.ensure_network(&self.network).await?;
        self.isolate(&self.network).await
    }

    async fn ensure_image(
        &self,
        image: &str,
        progress: &mut (dyn FnMut(PullProgress) + Send),
    ) -> Result<()> {
        self.docker.ensure_image(image, progress).await
    }

    async fn create_volume(&self, spec: &BucketSpec) -> Result<()> {
        self.docker.create_volume(spec).await.map(drop)
    }

    async fn prepare_volume(
        &self,
        id: &str,
        image: &str,
        data_path: &str,
        internal_security: bool,
    ) -> Result<()> {
        self.docker
            .prepare_volume(id, image, data_path, internal_security)
            .await
    }

    async fn remove_volume(&self, id: &str) -> Result<()> {
        self.docker.remove_volume(&volume_name(id)).await
    }

    async fn create_server(&self, spec: &BucketSpec, tls_written: bool) -> Result<String> {
        // Docker would make a missing named volume itself, without the labels that tie it to
        // the bucket (and let clean-up find it).
        self.docker.ensure_network(&spec.network).await?;
        self.docker.create_volume(spec).await?;
        self.docker.create_container(spec, tls_written).await
    }

    async fn start_server(&self, id: &str) -> Result<()> {
        self.docker.start_container(&container_name(id)).await
    }

    async fn stop_server(&self, id: &str, grace: Duration) -> Result<()> {
        self.docker.stop_container(&container_name(id), grace).await
    }

    async fn remove_server(&self, id: &str) -> Result<()> {
        self.docker.remove_container(&container_name(id)).await
    }

    async fn freeze(&self, id: &str) -> Result<()> {
        self.docker.pause_container(&container_name(id)).await
    }

    async fn thaw(&self, id: &str) -> Result<()> {
        self.docker.unpause_container(&container_name(id)).await
    }

    async fn inspect_server(&self, id: &str) -> Result<Option<ContainerState>> {
        self.docker.inspect_container(&container_name(id)).await
    }

    async fn list_servers(&self) -> Result<Vec<ContainerState>> {
        self.docker.list_managed_containers().await
    }

    async fn list_volumes(&self) -> Result<Vec<ManagedVolume>> {
        self.docker.list_managed_volumes().await
    }

    async fn remove_server_named(&self, name: &str) -> Result<()> {
        self.docker.remove_container(name).await
    }

    async fn remove_volume_named(&self, name: &str) -> Result<()> {
        self.docker.remove_volume(name).await
    }

    fn events(&self) -> BoxStream<'static, Result<ContainerEvent>> {
        self.docker.container_events().boxed()
    }

    async fn address(&self, id: &str, s3_port: u16) -> Result<Option<String>> {
        let state = self.inspect_server(id).await?;
        Ok(state.and_then(|c| self.origin(&c, s3_port)))
    }

    fn origin(&self, state: &ContainerState, s3_port: u16) -> Option<String> {
        if !state.running {
            return None;
        }
        state
            .addresses
            .get(&self.network)
            .map(|ip| format!("http://{ip}:{s3_port}"))
    }

    async fn exec(
        &self,
        id: &str,
        cmd: &[&str],
        stdin: &[u8],
        timeout: Duration,
    ) -> Result<ExecOutput> {
        self.docker
            .exec(&container_name(id), cmd, stdin, timeout)
            .await
    }

    async fn stats(&self, id: &str) -> Result<Option<ContainerStats>> {
        self.docker.container_stats(&container_name(id)).await
    }

    async fn hosts(&self) -> Result<Vec<HostInfo>> {
        Ok(vec![self.docker.host_info().await?])
    }

    async fn find_workload(&self, name_or_id: &str) -> Result<Option<Workload>> {
        Ok(self
            .docker
            .container_labels(name_or_id)
            .await?
            .map(|(id, name, labels)| Workload { id, name, labels }))
    }

    async fn attach(&self, id: &str, workloads: &[String]) -> Result<()> {
        let network = attach_network(id);
        self.docker
            .ensure_attach_network(&network, id, &attach_bridge(id))
            .await?;
        self.isolate(&network).await?;
        let server = container_name(id);
        self.docker
            .connect_to(&network, &server, std::slice::from_ref(&server))
            .await?;
        for w in workloads {
            if let Err(e) = self.docker.connect_to(&network, w, &[]).await {
                tracing::warn!(bucket = %id, container = %w, error = %e, "attached container could not be connected");
                if workloads.len() == 1 {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    async fn detach(&self, id: &str, workload: &str) -> Result<()> {
        self.docker.disconnect(&attach_network(id), workload).await
    }

    async fn drop_attachments(&self, id: &str) -> Result<()> {
        let network = attach_network(id);
        let bridge = match self.docker.bridge_of(&network).await {
            Ok(b) => Some(b),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        self.docker
            .disconnect(&network, &container_name(id))
            .await?;
        self.docker.remove_network(&network).await?;
        if let (Some(bridge), Some(fw)) = (bridge, &self.firewall) {
            if let Err(e) = fw.forget_bridge(&bridge).await {
                tracing::warn!(bucket = %id, %bridge, error = %e, "removing the firewall rules of a removed attachment network failed");
            }
        }
        Ok(())
    }

    async fn archive(&self, spec: &BucketSpec, job: ArchiveJob) -> Result<JobOutcome> {
        let name = container_name(&spec.id);
        // A stopped server (a sleeping or stopped bucket) is archived as it is: nothing writes.
        let running = self
            .docker
            .inspect_container(&name)
            .await?
            .is_some_and(|c| c.running);
        if running {
            self.docker.pause_container(&name).await?;
        }
        crate::fault::point("snapshot.paused");
        let result = async {
            let tar = self
                .docker
                .archive(&name, spec.engine.data_path)
                .map_err(std::io::Error::other);
            let reader = tokio_util::io::StreamReader::new(tar);
            let zstd = async_compression::tokio::bufread::ZstdEncoder::new(reader);
            let compressed: ByteStream = Box::pin(tokio_util::io::ReaderStream::new(zstd));
            let sealed = archive::seal(&job.seal, compressed);
            let (stored, meter) = Metered::wrap(sealed, job.progress.clone());
            let body: kalpana_s3_ops::BodyStream =
                Box::pin(stored.map_err(|e| Box::new(e) as kalpana_s3_ops::BoxError));
            job.target
                .client
                .put_object(
                    &job.target.key,
                    Some("application/octet-stream"),
                    None,
                    body,
                )
                .await
                .map_err(Error::Storage)?;
            Ok::<_, Error>(meter.outcome())
        }
        .await;
        let thawed = if running {
            self.docker.unpause_container(&name).await
        } else {
            Ok(())
        };
        let outcome = result?;
        thawed?;
        Ok(outcome)
    }

    async fn fill(&self, spec: &BucketSpec, role: VolumeRole, job: FillJob) -> Result<JobOutcome> {
        let download = job
            .source
            .client
            .get_object(&job.source.key, None)
            .await
            .map_err(Error::Storage)?;
        let stored: ByteStream = Box::pin(download.body.map(|c| c.map_err(std::io::Error::other)));
        self.fill_volume(spec, role, job.open.clone(), job.progress.clone(), stored)
            .await
    }

    async fn staged(&self, id: &str) -> Result<bool> {
        self.docker.volume_exists(&staging_volume_name(id)).await
    }

    async fn promote_staging(&self, spec: &BucketSpec) -> Result<()> {
        let name = container_name(&spec.id);
        self.docker
            .stop_container(&name, Duration::from_secs(30))
            .await?;
        self.docker.remove_container(&name).await?;
        self.docker.remove_volume(&volume_name(&spec.id)).await?;
        crate::fault::point("restore.emptied");
        self.docker.ensure_network(&spec.network).await?;
        self.docker.create_volume(spec).await?;
        let from = self
            .docker
            .create_helper(spec, &staging_volume_name(&spec.id), "export")
            .await?;
        let tar: ByteStream = Box::pin(
            self.docker
                .archive(&from, spec.engine.data_path)
                .map_err(std::io::Error::other),
        );
        let copied = self
            .extract_into(spec, &volume_name(&spec.id), "import", tar)
            .await;
        if let Err(e) = self.docker.remove_container(&from).await {
            tracing::warn!(bucket = %spec.id, error = %e, "removing the export helper failed");
        }
        copied?;
        self.docker.create_container(spec, false).await.map(drop)
    }

    async fn drop_staging(&self, id: &str) -> Result<()> {
        for role in ["staging", "import", "export", "prepare"] {
            self.docker.remove_container(&helper_name(id, role)).await?;
        }
        self.docker.remove_volume(&staging_volume_name(id)).await
    }

    async fn evacuate(
        &self,
        _spec: &BucketSpec,
        _lost: &str,
        _job: FillJob,
        _resumed: bool,
    ) -> Result<(JobOutcome, String)> {
        Err(Error::Unsupported {
            op: "evacuating a lost node",
            runtime: "docker",
            why: "one engine has no other node to move buckets to",
        })
    }

    async fn set_aside(
        &self,
        _node: &str,
        _spec: &BucketSpec,
        _name: &str,
        _evacuated_at: &str,
    ) -> Result<bool> {
        Ok(false)
    }
}
