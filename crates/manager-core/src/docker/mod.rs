//! The one wrapper around bollard. Docker's 404/409/304 answers are classified here and nowhere
//! else; callers see idempotent operations and [`Error`] values.

mod containers;
mod images;
mod networks;
mod volumes;

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;

use crate::error::{Error, Result};
use crate::spec::{LABEL_INSTANCE, LABEL_MANAGED, SPEC_REVISION};

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

    /// The Docker host: CPUs, memory, running containers, data directory.
    pub async fn host_info(&self) -> Result<crate::stats::HostInfo> {
        self.docker
            .info()
            .await
            .map(Into::into)
            .map_err(|e| Error::docker("info", e))
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
}
