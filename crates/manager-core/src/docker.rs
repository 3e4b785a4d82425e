//! The one wrapper around bollard. Docker's 404/409/304 answers are classified here and nowhere
//! else; callers see idempotent operations and [`Error`] values.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{
    EndpointSettings, NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, EventsOptions, InspectContainerOptions,
    ListContainersOptions, ListNetworksOptions, ListVolumesOptions, RemoveContainerOptions,
    RemoveVolumeOptions, StatsOptions, StopContainerOptions, UploadToContainerOptions,
};
use bollard::Docker;
use futures::{Stream, StreamExt};

use crate::error::{Error, Result};
use crate::names;
use crate::spec::{
    container_name, helper_name, staging_volume_name, volume_name, BucketSpec, LABEL_BUCKET_ID,
    LABEL_GENERATION, LABEL_INSTANCE, LABEL_MANAGED, LABEL_POOL, LABEL_SPEC_REVISION,
    SPEC_REVISION,
};

/// The bridge driver option that allows or forbids traffic between a network's containers.
pub const ICC_OPTION: &str = "com.docker.network.bridge.enable_icc";
/// The bridge driver option that names a network's host interface.
pub const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";

/// One step of an image pull as Docker reports it.
#[derive(Debug, Clone)]
pub struct PullProgress {
    /// The image being pulled.
    pub image: String,
    /// Docker's status line ("Downloading", "Pull complete", …).
    pub status: String,
    /// Layer id, when the line is about a layer.
    pub layer: Option<String>,
    /// Bytes done of this layer.
    pub current: Option<i64>,
    /// Bytes total of this layer.
    pub total: Option<i64>,
}

pub use crate::stats::ContainerStats;

/// What Docker says of one managed container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    /// Container id.
    pub id: String,
    /// Container name without the leading slash.
    pub name: String,
    /// Bucket id from its label.
    pub bucket_id: Option<String>,
    /// Whether the container is running.
    pub running: bool,
    /// Docker's status word (created, running, exited, …).
    pub status: String,
    /// Exit code of the last run.
    pub exit_code: Option<i64>,
    /// Whether the kernel OOM-killed it.
    pub oom_killed: bool,
    /// Configuration generation from its label.
    pub generation: Option<u64>,
    /// Revision of the daemon's container spec it was made from.
    pub spec_revision: Option<u32>,
    /// Its address on each network it is on (network name → IPv4 address), while it runs.
    pub addresses: HashMap<String, String>,
}

impl ContainerState {
    /// Whether the container is of the record's `generation` and of this daemon's container
    /// spec; anything else is replaced (on the same volume).
    pub fn is_current(&self, generation: u64) -> bool {
        self.generation.unwrap_or(0) == generation && self.spec_revision == Some(SPEC_REVISION)
    }
}

/// What happened to a container, as far as the daemon cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerAction {
    /// It exited (any exit code; also after `oom`).
    Die,
    /// The kernel killed a process in it for memory.
    Oom,
    /// It was removed.
    Destroy,
    /// Anything else (start, stop, kill, …).
    Other,
}

impl ContainerAction {
    /// Docker's action string, read.
    pub fn parse(action: &str) -> Self {
        match action {
            "die" => ContainerAction::Die,
            "oom" => ContainerAction::Oom,
            "destroy" => ContainerAction::Destroy,
            _ => ContainerAction::Other,
        }
    }

    /// The action's name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerAction::Die => "die",
            ContainerAction::Oom => "oom",
            ContainerAction::Destroy => "destroy",
            ContainerAction::Other => "other",
        }
    }

    /// Whether the container stopped serving.
    pub fn is_down(self) -> bool {
        !matches!(self, ContainerAction::Other)
    }
}

/// A container event for a managed bucket container.
#[derive(Debug, Clone)]
pub struct ContainerEvent {
    /// What happened.
    pub action: ContainerAction,
    /// Bucket id from the container's labels.
    pub bucket_id: String,
    /// Id of the container the event is about.
    pub container_id: String,
    /// Exit code for `die`.
    pub exit_code: Option<i64>,
}

/// The port in Docker's "…listen tcp4 127.0.0.1:48672: bind: address already in use".
fn taken_port(message: &str) -> Option<u16> {
    if !message.contains("address already in use") {
        return None;
    }
    let before = message.split(": bind:").next()?;
    before.rsplit(':').next()?.trim().parse().ok()
}

/// A volume this daemon instance manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedVolume {
    /// Its name.
    pub name: String,
    /// The bucket id on its label.
    pub bucket_id: Option<String>,
    /// Made ahead of its bucket (see [`DockerClient::prepare_volume`]).
    pub made_ahead: bool,
}

/// Most bytes of each output stream an exec keeps.
pub const EXEC_OUTPUT_MAX: usize = 1024 * 1024;

/// What a command run in a container answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Its exit code (-1 when Docker did not say).
    pub exit_code: i64,
    /// Standard output (capped).
    pub stdout: Vec<u8>,
    /// Standard error (capped).
    pub stderr: Vec<u8>,
}

fn append_capped(buf: &mut Vec<u8>, bytes: &[u8]) {
    let room = EXEC_OUTPUT_MAX.saturating_sub(buf.len());
    buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

/// A cheap-to-clone handle on the Docker daemon.
#[derive(Debug, Clone)]
pub struct DockerClient {
    docker: Docker,
    instance: String,
    pull_timeout: Duration,
}

impl DockerClient {
    /// Connects with the usual defaults (`DOCKER_HOST` or the local socket). Nothing is sent yet.
    pub fn connect(instance: &str, pull_timeout: Duration) -> Result<Self> {
        let docker = Docker::connect_with_defaults()
            .map_err(|e| Error::DockerUnavailable(format!("connect: {e}")))?
            .with_timeout(Duration::from_secs(60));
        Ok(DockerClient {
            docker,
            instance: instance.to_string(),
            pull_timeout,
        })
    }

    /// Whether Docker answers at all.
    pub async fn ping(&self) -> Result<()> {
        tokio::time::timeout(Duration::from_secs(3), self.docker.ping())
            .await
            .map_err(|_| Error::DockerUnavailable("ping timed out".into()))?
            .map_err(|e| Error::docker("ping", e))?;
        Ok(())
    }

    /// The host interface of bridge network `name`: the name it was given, or Docker's
    /// `br-<first 12 of its id>`.
    pub async fn bridge_of(&self, name: &str) -> Result<String> {
        names::check("network", name)?;
        let n = self
            .docker
            .inspect_network(name, None)
            .await
            .map_err(|e| Error::docker("inspect network", e))?;
        if let Some(b) = n.options.as_ref().and_then(|o| o.get(BRIDGE_NAME_OPTION)) {
            return Ok(b.clone());
        }
        let id = n.id.unwrap_or_default();
        Ok(format!("br-{}", &id[..id.len().min(12)]))
    }

    /// Creates a bucket's attachment network if it is not there: a bridge without a route out
    /// (`internal`), on which the bucket's container and the workspace containers attached to
    /// it reach each other, and nothing else does. Its interface is `bridge` (at most 15
    /// characters), so host firewall rules can name it.
    pub async fn ensure_attach_network(
        &self,
        name: &str,
        bucket_id: &str,
        bridge: &str,
    ) -> Result<()> {
        names::check("network", name)?;
        if self.docker.inspect_network(name, None).await.is_ok() {
            return Ok(());
        }
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            internal: Some(true),
            options: Some(HashMap::from([(
                BRIDGE_NAME_OPTION.to_string(),
                bridge.to_string(),
            )])),
            labels: Some(HashMap::from([
                (LABEL_MANAGED.to_string(), "true".to_string()),
                (LABEL_INSTANCE.to_string(), self.instance.clone()),
                (LABEL_BUCKET_ID.to_string(), bucket_id.to_string()),
            ])),
            ..Default::default()
        };
        match self.docker.create_network(req).await {
            Ok(_) => Ok(()),
            Err(e) => match Error::docker("create network", e) {
                e if e.is_conflict() => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Connects a container to a network under these aliases; already connected is success.
    pub async fn connect_to(
        &self,
        network: &str,
        container: &str,
        aliases: &[String],
    ) -> Result<()> {
        names::check("network", network)?;
        names::check("container", container)?;
        let req = NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: Some(EndpointSettings {
                aliases: Some(aliases.to_vec()),
                ..Default::default()
            }),
        };
        match self.docker.connect_network(network, req).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let text = e.to_string();
                if text.contains("already exists") || text.contains("already attached") {
                    return Ok(());
                }
                Err(Error::docker("connect network", e))
            }
        }
    }

    /// Disconnects a container from a network; not connected (or gone) is success.
    pub async fn disconnect(&self, network: &str, container: &str) -> Result<()> {
        names::check("network", network)?;
        names::check("container", container)?;
        let req = NetworkDisconnectRequest {
            container: container.to_string(),
            force: Some(true),
        };
        match self.docker.disconnect_network(network, req).await {
            Ok(()) => Ok(()),
            Err(e) => match Error::docker("disconnect network", e) {
                e if e.is_not_found() => Ok(()),
                e if e.to_string().contains("is not connected") => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Removes a network; a missing one is success.
    pub async fn remove_network(&self, name: &str) -> Result<()> {
        names::check("network", name)?;
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) => match Error::docker("remove network", e) {
                e if e.is_not_found() => Ok(()),
                e => Err(e),
            },
        }
    }

    /// A container's id, name and labels (by name or id); `None` when there is none.
    pub async fn container_labels(
        &self,
        name_or_id: &str,
    ) -> Result<Option<(String, String, HashMap<String, String>)>> {
        names::check("container", name_or_id)?;
        match self
            .docker
            .inspect_container(name_or_id, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => Ok(Some((
                c.id.unwrap_or_default(),
                c.name
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                c.config.and_then(|c| c.labels).unwrap_or_default(),
            ))),
            Err(e) => match Error::docker("inspect container", e) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    /// Creates the network if it is not there, with traffic between its containers disabled
    /// (`enable_icc=false`): bucket containers reach nobody on it and nobody on it reaches them;
    /// the host (the daemon, Traefik) still does. An existing network that lets containers talk
    /// to each other is refused with [`Error::NetworkNotIsolated`].
    pub async fn ensure_network(&self, name: &str) -> Result<()> {
        names::check("network", name)?;
        match self.docker.inspect_network(name, None).await {
            Ok(n) => {
                let icc = n
                    .options
                    .as_ref()
                    .and_then(|o| o.get(ICC_OPTION))
                    .map(String::as_str);
                return match icc {
                    Some("false") => Ok(()),
                    _ => Err(Error::NetworkNotIsolated(name.to_string())),
                };
            }
            Err(e) => {
                let e = Error::docker("inspect network", e);
                if !e.is_not_found() {
                    // "ambiguous": racing daemons made two networks of this name.
                    return self.dedupe_network(name).await.or(Err(e));
                }
            }
        }
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            options: Some(HashMap::from([(
                ICC_OPTION.to_string(),
                "false".to_string(),
            )])),
            labels: Some(HashMap::from([(
                LABEL_MANAGED.to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        };
        match self.docker.create_network(req).await {
            Ok(_) => {}
            // Another daemon made it between our inspect and create.
            Err(e) => match Error::docker("create network", e) {
                e if e.is_conflict() => {}
                e => return Err(e),
            },
        }
        // Docker does not refuse a second network of the same name when two creates race.
        self.dedupe_network(name).await
    }

    /// Keeps one network of this name: every racer keeps the same one (lowest id) and removes
    /// the others, which are still empty.
    async fn dedupe_network(&self, name: &str) -> Result<()> {
        let nets = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(HashMap::from([(
                    "name".to_string(),
                    vec![name.to_string()],
                )])),
            }))
            .await
            .map_err(|e| Error::docker("list networks", e))?;
        let mut ids: Vec<String> = nets
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name))
            .filter_map(|n| n.id)
            .collect();
        ids.sort();
        for extra in ids.iter().skip(1) {
            if let Err(e) = self.docker.remove_network(extra).await {
                let e = Error::docker("remove duplicate network", e);
                if !e.is_not_found() {
                    tracing::warn!(network = name, id = %extra, error = %e, "could not remove a duplicate network");
                }
            }
        }
        Ok(())
    }

    /// Whether the image is present locally.
    pub async fn image_present(&self, image: &str) -> Result<bool> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) => match Error::docker("inspect image", e) {
                e if e.is_not_found() => Ok(false),
                e => Err(e),
            },
        }
    }

    /// Makes sure the image is present, pulling it if needed and reporting each pull step to
    /// `progress`. A pull that fails or times out is [`Error::ImageUnavailable`] naming the image.
    pub async fn ensure_image(
        &self,
        image: &str,
        mut progress: impl FnMut(PullProgress) + Send,
    ) -> Result<()> {
        if self.image_present(image).await? {
            return Ok(());
        }
        let unavailable = |reason: String| Error::ImageUnavailable {
            image: image.to_string(),
            reason,
        };
        let opts = CreateImageOptions {
            from_image: Some(image.to_string()),
            ..Default::default()
        };
        progress(PullProgress {
            image: image.to_string(),
            status: "image not present; pulling".to_string(),
            layer: None,
            current: None,
            total: None,
        });
        let pull = async {
            let mut stream = self.docker.create_image(Some(opts), None, None);
            while let Some(item) = stream.next().await {
                match item {
                    Ok(info) => progress(PullProgress {
                        image: image.to_string(),
                        status: info.status.unwrap_or_default(),
                        layer: info.id,
                        current: info.progress_detail.as_ref().and_then(|d| d.current),
                        total: info.progress_detail.as_ref().and_then(|d| d.total),
                    }),
                    Err(e) => {
                        return Err(match Error::docker("pull image", e) {
                            Error::Docker { message, .. } => unavailable(message),
                            other => other,
                        })
                    }
                }
            }
            Ok(())
        };
        tokio::time::timeout(self.pull_timeout, pull)
            .await
            .map_err(|_| unavailable(format!("pull timed out after {:?}", self.pull_timeout)))??;
        if self.image_present(image).await? {
            Ok(())
        } else {
            Err(unavailable(
                "the pull ended but the image is still missing".into(),
            ))
        }
    }

    /// Creates the bucket's data volume (idempotent: an existing volume is kept, data and all).
    pub async fn create_volume(&self, spec: &BucketSpec) -> Result<String> {
        self.labelled_volume(spec, volume_name(&spec.id)).await
    }

    /// Creates volume `name` with the bucket's labels (an existing one is kept).
    async fn labelled_volume(&self, spec: &BucketSpec, name: String) -> Result<String> {
        names::check("volume", &name)?;
        let req = VolumeCreateRequest {
            name: Some(name.clone()),
            labels: Some(spec.volume_labels()),
            ..Default::default()
        };
        self.docker
            .create_volume(req)
            .await
            .map_err(|e| Error::docker("create volume", e))?;
        Ok(name)
    }

    /// Makes the data volume of a bucket that does not exist yet (id `id`, labelled as made
    /// ahead) and writes fresh internal certificates into it through a helper of `image`
    /// mounted at `data_path`, so the bucket's first container starts without that step.
    pub async fn prepare_volume(
        &self,
        id: &str,
        image: &str,
        data_path: &str,
        internal_security: bool,
    ) -> Result<()> {
        let name = volume_name(id);
        names::check("volume", &name)?;
        let req = VolumeCreateRequest {
            name: Some(name.clone()),
            labels: Some(HashMap::from([
                (LABEL_MANAGED.to_string(), "true".to_string()),
                (LABEL_INSTANCE.to_string(), self.instance.clone()),
                (LABEL_BUCKET_ID.to_string(), id.to_string()),
                (LABEL_POOL.to_string(), "true".to_string()),
            ])),
            ..Default::default()
        };
        self.docker
            .create_volume(req)
            .await
            .map_err(|e| Error::docker("create volume", e))?;
        if !internal_security {
            return Ok(());
        }
        let helper = helper_name(id, "prepare");
        self.remove_container(&helper).await?;
        let body = bollard::models::ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: Some(vec!["kalpana-data-helper-is-never-started".to_string()]),
            labels: Some(HashMap::from([
                (LABEL_MANAGED.to_string(), "true".to_string()),
                (LABEL_INSTANCE.to_string(), self.instance.clone()),
                (LABEL_BUCKET_ID.to_string(), id.to_string()),
                (crate::spec::LABEL_HELPER.to_string(), "prepare".to_string()),
            ])),
            network_disabled: Some(true),
            host_config: Some(bollard::models::HostConfig {
                binds: Some(vec![format!("{name}:{data_path}")]),
                network_mode: Some("none".to_string()),
                cap_drop: Some(vec!["ALL".to_string()]),
                security_opt: Some(vec!["no-new-privileges:true".to_string()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptions {
            name: Some(helper.clone()),
            ..Default::default()
        };
        self.docker
            .create_container(Some(opts), body)
            .await
            .map_err(|e| Error::docker("create data helper", e))?;
        let written = self.write_internal_tls(&helper, data_path).await;
        self.remove_container(&helper).await?;
        written
    }

    /// Removes a volume; a missing one is fine.
    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        names::check("volume", name)?;
        let opts = RemoveVolumeOptions { force: true };
        match self.docker.remove_volume(name, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) => match Error::docker("remove volume", e) {
                e if e.is_not_found() => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Whether a volume exists.
    pub async fn volume_exists(&self, name: &str) -> Result<bool> {
        names::check("volume", name)?;
        match self.docker.inspect_volume(name).await {
            Ok(_) => Ok(true),
            Err(e) => match Error::docker("inspect volume", e) {
                e if e.is_not_found() => Ok(false),
                e => Err(e),
            },
        }
    }

    /// Creates the bucket's container, and writes fresh internal certificates into its volume
    /// unless `tls_written` says the volume already holds some nobody else has seen (a volume
    /// made ahead, see [`DockerClient::prepare_volume`]). If a container of that name exists
    /// already (a retried step), it is reused when it belongs to the same bucket. Returns the
    /// container id.
    pub async fn create_container(&self, spec: &BucketSpec, tls_written: bool) -> Result<String> {
        let name = container_name(&spec.id);
        let opts = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        let id = match self
            .docker
            .create_container(Some(opts), spec.container_body())
            .await
        {
            Ok(resp) => resp.id,
            Err(e) => match Error::docker("create container", e) {
                e if e.is_conflict() => match self.inspect_container(&name).await? {
                    // Made by an earlier attempt; a running one already has its files.
                    Some(c) if c.bucket_id.as_deref() == Some(spec.id.as_str()) => {
                        if c.running {
                            return Ok(c.id);
                        }
                        c.id
                    }
                    _ => return Err(e),
                },
                e => return Err(e),
            },
        };
        if spec.engine.internal_security && !tls_written {
            let t = std::time::Instant::now();
            self.write_internal_tls(&name, spec.engine.data_path)
                .await?;
            tracing::debug!(container = %name, elapsed_ms = t.elapsed().as_millis() as u64, "internal certificates written");
        }
        Ok(id)
    }

    /// Writes a fresh CA and node certificate for the engine's internal mutual TLS into the
    /// data volume of a created (not running) container.
    async fn write_internal_tls(&self, name: &str, data_path: &str) -> Result<()> {
        let t = std::time::Instant::now();
        let archive = crate::internal_tls::InternalTls::generate()?.archive()?;
        tracing::debug!(container = %name, elapsed_us = t.elapsed().as_micros() as u64, "internal certificates made");
        let opts = UploadToContainerOptions {
            path: data_path.to_string(),
            ..Default::default()
        };
        self.docker
            .upload_to_container(name, Some(opts), bollard::body_full(archive.into()))
            .await
            .map_err(|e| Error::docker("write internal certificates", e))
    }

    /// Starts a container; one already running is fine.
    pub async fn start_container(&self, name: &str) -> Result<()> {
        names::check("container", name)?;
        match self.docker.start_container(name, None).await {
            Ok(()) => Ok(()),
            Err(e) => match Error::docker("start container", e) {
                Error::Docker { status: 304, .. } => Ok(()),
                e => match &e {
                    Error::Docker { message, .. } => match taken_port(message) {
                        Some(port) => {
                            let holder = crate::host_ports::holder(port);
                            tracing::warn!(container = name, port, %holder, "a bucket's host port is taken; the container cannot start");
                            Err(Error::PortTaken { port, holder })
                        }
                        None => Err(e),
                    },
                    _ => Err(e),
                },
            },
        }
    }

    /// Stops a container, giving it `grace` to exit; a stopped or missing one is fine.
    pub async fn stop_container(&self, name: &str, grace: Duration) -> Result<()> {
        names::check("container", name)?;
        let opts = StopContainerOptions {
            t: Some(i32::try_from(grace.as_secs()).unwrap_or(i32::MAX)),
            signal: None,
        };
        match self.docker.stop_container(name, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) => match Error::docker("stop container", e) {
                Error::Docker { status: 304, .. } => Ok(()),
                e if e.is_not_found() => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Removes a container by force; a missing one is fine.
    pub async fn remove_container(&self, name: &str) -> Result<()> {
        names::check("container", name)?;
        let opts = RemoveContainerOptions {
            force: true,
            v: false,
            link: false,
        };
        match self.docker.remove_container(name, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) => match Error::docker("remove container", e) {
                e if e.is_not_found() => Ok(()),
                // "removal already in progress"
                e if e.is_conflict() => Ok(()),
                e => Err(e),
            },
        }
    }

    /// One sample of a container's resource use; `None` when it does not exist or is not running.
    pub async fn container_stats(&self, name: &str) -> Result<Option<ContainerStats>> {
        names::check("container", name)?;
        let mut stream = self.docker.stats(
            name,
            Some(StatsOptions {
                stream: false,
                // Without one-shot Docker waits a second for a second sample.
                one_shot: true,
            }),
        );
        match stream.next().await {
            None => Ok(None),
            Some(Ok(s)) => Ok(Some(s.into())),
            Some(Err(e)) => match Error::docker("container stats", e) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    /// Freezes every process of a container (a consistent read of its volume); paused already
    /// is success.
    pub async fn pause_container(&self, name: &str) -> Result<()> {
        names::check("container", name)?;
        match self.docker.pause_container(name).await {
            Ok(()) => Ok(()),
            Err(e) => match Error::docker("pause container", e) {
                e if e.is_conflict() => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Lets a paused container run again; not paused is success.
    pub async fn unpause_container(&self, name: &str) -> Result<()> {
        names::check("container", name)?;
        match self.docker.unpause_container(name).await {
            Ok(()) => Ok(()),
            Err(e) => match Error::docker("unpause container", e) {
                e if e.is_conflict() => Ok(()),
                e => Err(e),
            },
        }
    }

    /// A tar stream of `path` inside a container (Docker reads it from the container's mounts;
    /// the container may be paused).
    pub fn archive(
        &self,
        name: &str,
        path: &str,
    ) -> futures::stream::BoxStream<'static, Result<bytes::Bytes>> {
        if let Err(e) = names::check("container", name) {
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        let opts = bollard::query_parameters::DownloadFromContainerOptions {
            path: path.to_string(),
        };
        self.docker
            .download_from_container(name, Some(opts))
            .map(|r| r.map_err(|e| Error::docker("archive", e)))
            .boxed()
    }

    /// Writes a tar stream into a container at `path` (Docker extracts it as it arrives; the
    /// container may be created and never started). A body that fails fails the upload.
    pub async fn upload_archive(
        &self,
        name: &str,
        path: &str,
        tar: impl Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    ) -> Result<()> {
        names::check("container", name)?;
        let opts = UploadToContainerOptions {
            path: path.to_string(),
            ..Default::default()
        };
        self.docker
            .upload_to_container(name, Some(opts), bollard::body_try_stream(tar))
            .await
            .map_err(|e| Error::docker("extract archive", e))
    }

    /// Makes the restore staging volume of a bucket, empty: one left by an earlier attempt is
    /// removed first.
    pub async fn fresh_staging_volume(&self, spec: &BucketSpec) -> Result<String> {
        let name = staging_volume_name(&spec.id);
        self.remove_container(&helper_name(&spec.id, "staging"))
            .await?;
        self.remove_volume(&name).await?;
        self.labelled_volume(spec, name).await
    }

    /// Creates data helper `role` of the bucket on `volume` (see [`BucketSpec::helper_body`]),
    /// replacing one an earlier attempt left. Returns its name.
    pub async fn create_helper(
        &self,
        spec: &BucketSpec,
        volume: &str,
        role: &str,
    ) -> Result<String> {
        names::check("volume", volume)?;
        let name = helper_name(&spec.id, role);
        self.remove_container(&name).await?;
        let opts = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        self.docker
            .create_container(Some(opts), spec.helper_body(volume, role))
            .await
            .map_err(|e| Error::docker("create data helper", e))?;
        Ok(name)
    }

    /// Runs `cmd` inside running container `name` with `stdin` as its input (closed after), and
    /// answers its exit code, standard output and standard error, each capped at
    /// [`EXEC_OUTPUT_MAX`] bytes. Gives up after `timeout`.
    pub async fn exec(
        &self,
        name: &str,
        cmd: &[&str],
        stdin: &[u8],
        timeout: Duration,
    ) -> Result<ExecOutput> {
        use tokio::io::AsyncWriteExt;
        names::check("container", name)?;
        let run = async {
            let created = self
                .docker
                .create_exec(
                    name,
                    bollard::exec::CreateExecOptions {
                        cmd: Some(cmd.iter().map(|c| c.to_string()).collect()),
                        attach_stdin: Some(true),
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| Error::docker("create exec", e))?;
            let started = self
                .docker
                .start_exec(&created.id, None)
                .await
                .map_err(|e| Error::docker("start exec", e))?;
            let bollard::exec::StartExecResults::Attached {
                mut output,
                mut input,
            } = started
            else {
                return Err(Error::Docker {
                    op: "start exec",
                    status: 500,
                    message: "the exec was not attached".into(),
                });
            };
            let write = async {
                input.write_all(stdin).await?;
                input.shutdown().await
            };
            let io_failed = |e: std::io::Error| Error::Docker {
                op: "exec input",
                status: 500,
                message: e.to_string(),
            };
            let mut out = ExecOutput::default();
            let read = async {
                while let Some(item) = output.next().await {
                    use bollard::container::LogOutput;
                    match item.map_err(|e| Error::docker("exec output", e))? {
                        LogOutput::StdOut { message } => append_capped(&mut out.stdout, &message),
                        LogOutput::StdErr { message } => append_capped(&mut out.stderr, &message),
                        _ => {}
                    }
                }
                Ok::<_, Error>(())
            };
            let (written, read) = tokio::join!(write, read);
            read?;
            written.map_err(io_failed)?;
            let inspected = self
                .docker
                .inspect_exec(&created.id)
                .await
                .map_err(|e| Error::docker("inspect exec", e))?;
            out.exit_code = inspected.exit_code.unwrap_or(-1);
            Ok(out)
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| Error::Docker {
                op: "exec",
                status: 504,
                message: format!("{} did not finish within {timeout:?}", cmd.join(" ")),
            })?
    }

    /// The Docker host: CPUs, memory, running containers, data directory.
    pub async fn host_info(&self) -> Result<crate::stats::HostInfo> {
        self.docker
            .info()
            .await
            .map(Into::into)
            .map_err(|e| Error::docker("info", e))
    }

    /// The container's state, or `None` when there is no such container.
    pub async fn inspect_container(&self, name: &str) -> Result<Option<ContainerState>> {
        names::check("container", name)?;
        match self
            .docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => {
                let state = c.state.unwrap_or_default();
                let labels = c.config.and_then(|cfg| cfg.labels).unwrap_or_default();
                let addresses = c
                    .network_settings
                    .and_then(|n| n.networks)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(net, ep)| {
                        ep.ip_address
                            .filter(|ip| !ip.is_empty())
                            .map(|ip| (net, ip))
                    })
                    .collect();
                Ok(Some(ContainerState {
                    id: c.id.unwrap_or_default(),
                    name: c
                        .name
                        .unwrap_or_default()
                        .trim_start_matches('/')
                        .to_string(),
                    bucket_id: labels.get(LABEL_BUCKET_ID).cloned(),
                    running: state.running.unwrap_or(false),
                    status: state.status.map(|s| s.to_string()).unwrap_or_default(),
                    exit_code: state.exit_code,
                    oom_killed: state.oom_killed.unwrap_or(false),
                    generation: labels.get(LABEL_GENERATION).and_then(|g| g.parse().ok()),
                    spec_revision: labels.get(LABEL_SPEC_REVISION).and_then(|r| r.parse().ok()),
                    addresses,
                }))
            }
            Err(e) => match Error::docker("inspect container", e) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    fn managed_filters(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([(
            "label".to_string(),
            vec![
                format!("{LABEL_MANAGED}=true"),
                format!("{LABEL_INSTANCE}={}", self.instance),
            ],
        )])
    }

    /// Every container this daemon instance manages, running or not.
    pub async fn list_managed_containers(&self) -> Result<Vec<ContainerState>> {
        let opts = ListContainersOptions {
            all: true,
            filters: Some(self.managed_filters()),
            ..Default::default()
        };
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| Error::docker("list containers", e))?;
        Ok(list
            .into_iter()
            .map(|c| {
                let labels = c.labels.unwrap_or_default();
                let status = c.state.map(|s| s.to_string()).unwrap_or_default();
                let addresses = c
                    .network_settings
                    .and_then(|n| n.networks)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(net, ep)| {
                        ep.ip_address
                            .filter(|ip| !ip.is_empty())
                            .map(|ip| (net, ip))
                    })
                    .collect();
                ContainerState {
                    id: c.id.unwrap_or_default(),
                    name: c
                        .names
                        .and_then(|n| n.into_iter().next())
                        .unwrap_or_default()
                        .trim_start_matches('/')
                        .to_string(),
                    bucket_id: labels.get(LABEL_BUCKET_ID).cloned(),
                    running: status == "running",
                    status,
                    exit_code: None,
                    oom_killed: false,
                    generation: labels.get(LABEL_GENERATION).and_then(|g| g.parse().ok()),
                    spec_revision: labels.get(LABEL_SPEC_REVISION).and_then(|r| r.parse().ok()),
                    addresses,
                }
            })
            .collect())
    }

    /// Every volume this daemon instance manages: name, bucket id, and whether it was made
    /// ahead of its bucket and not yet given to one.
    pub async fn list_managed_volumes(&self) -> Result<Vec<ManagedVolume>> {
        let opts = ListVolumesOptions {
            filters: Some(self.managed_filters()),
        };
        let resp = self
            .docker
            .list_volumes(Some(opts))
            .await
            .map_err(|e| Error::docker("list volumes", e))?;
        Ok(resp
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| ManagedVolume {
                bucket_id: v.labels.get(LABEL_BUCKET_ID).cloned(),
                made_ahead: v.labels.contains_key(LABEL_POOL),
                name: v.name,
            })
            .collect())
    }

    /// Container events of the buckets this instance manages, as they happen.
    pub fn container_events(&self) -> impl Stream<Item = Result<ContainerEvent>> + Send + 'static {
        let mut filters = self.managed_filters();
        filters.insert("type".into(), vec!["container".into()]);
        let opts = EventsOptions {
            filters: Some(filters),
            ..Default::default()
        };
        self.docker
            .events(Some(opts))
            .filter_map(|item| async move {
                match item {
                    Ok(ev) => {
                        let actor = ev.actor?;
                        let container_id = actor.id.unwrap_or_default();
                        let attrs = actor.attributes.unwrap_or_default();
                        let bucket_id = attrs.get(LABEL_BUCKET_ID)?.clone();
                        let exit_code = attrs.get("exitCode").and_then(|c| c.parse().ok());
                        Some(Ok(ContainerEvent {
                            action: ContainerAction::parse(ev.action.as_deref().unwrap_or("")),
                            bucket_id,
                            container_id,
                            exit_code,
                        }))
                    }
                    Err(e) => Some(Err(Error::docker("events", e))),
                }
            })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_taken_port_is_read_from_dockers_words() {
        let m = "driver failed programming external connectivity on endpoint kalpana-bucket-x (abc): Error starting userland proxy: listen tcp4 127.0.0.1:48672: bind: address already in use";
        assert_eq!(super::taken_port(m), Some(48672));
        assert_eq!(super::taken_port("no such container"), None);
    }
}
