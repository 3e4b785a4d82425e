//! What a runtime reports: containers, their events, volumes, image pulls, command output and
//! data jobs. Plain data, shared by the runtime port and its implementations.

use std::collections::HashMap;

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

/// What Docker says of one managed container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    /// The cluster node it runs on (or is pinned to), by host name as views show it; none on
    /// a single engine.
    pub node: Option<String>,
    /// That node's id: what decisions compare (host names are the nodes' own and need not be
    /// unique).
    pub node_id: Option<String>,
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

/// The outcome of a data job: stored bytes moved and their SHA-256 (hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    /// Stored (sealed) bytes.
    pub bytes: u64,
    /// Their SHA-256, hex.
    pub sha256: String,
}
