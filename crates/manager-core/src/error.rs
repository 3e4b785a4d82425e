//! The error type of manager-core: Docker failures classified once, here.

/// Anything that can go wrong while managing bucket containers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Docker could not be reached at all (socket missing, daemon down, timeout).
    #[error("Docker is unreachable: {0}")]
    DockerUnavailable(String),
    /// The engine image is not present locally and could not be pulled.
    #[error("image {image} is not present and could not be pulled: {reason}")]
    ImageUnavailable {
        /// The image reference that was asked for.
        image: String,
        /// What the registry or Docker said.
        reason: String,
    },
    /// A Docker call failed with a status Docker gave.
    #[error("Docker {op} failed ({status}): {message}")]
    Docker {
        /// The operation, e.g. "create container".
        op: &'static str,
        /// Docker's HTTP status.
        status: u16,
        /// Docker's message.
        message: String,
    },
    /// The bucket network exists but lets its containers reach each other.
    #[error("Docker network {0} lets containers reach each other; bucket containers must be isolated: remove it (docker network rm {0}) so the daemon recreates it with com.docker.network.bridge.enable_icc=false, or name another with KALPANA_DOCKER_NETWORK")]
    NetworkNotIsolated(String),
    /// The configured host port range has no free ports left.
    #[error("no free host ports left in {0}")]
    PortsExhausted(String),
    /// A configuration value is malformed.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A name or id given for a Docker object is not one Docker could have made.
    #[error("{what} {name:?} is not a Docker name or id (letters, digits, `_`, `.` and `-`, starting with a letter or digit)")]
    InvalidName {
        /// What kind of object it names.
        what: &'static str,
        /// The name, cut to 64 characters.
        name: String,
    },
    /// A host port of the bucket is held by something else, so Docker could not publish it.
    /// (Who holds it is logged, not shown: it is the host's business.)
    #[error("host port {port} is taken by another process on the host")]
    PortTaken {
        /// The port.
        port: u16,
        /// Who holds it, as far as the daemon can tell.
        holder: String,
    },
    /// The S3 side of a data job failed (the archive's bucket).
    #[error(transparent)]
    Storage(#[from] kalpana_s3_ops::Error),
    /// A data job failed part-way; `outcome` says what it had read or written by then.
    #[error("{what} failed: {message}")]
    Job {
        /// What the job was doing.
        what: &'static str,
        /// Why it failed.
        message: String,
        /// What it moved before it failed.
        outcome: Option<crate::reports::JobOutcome>,
    },
    /// An operation a runtime does not offer (yet), and why.
    #[error("{op} is not available on the {runtime} runtime: {why}")]
    Unsupported {
        /// The operation.
        op: &'static str,
        /// The runtime's name.
        runtime: &'static str,
        /// Why not, in words.
        why: &'static str,
    },
    /// A node's agent is not reporting, or stopped during a job; the node is named.
    #[error("{0}")]
    NodeUnavailable(String),
    /// A job that no agent of this node holds.
    #[error("no job {0} for this node")]
    UnknownJob(String),
    /// The host firewall rules could not be read or written.
    #[error("host firewall: {0}")]
    Firewall(String),
    /// The unknown engine name given.
    #[error("unknown engine {0:?} (known: minio, seaweedfs)")]
    UnknownEngine(String),
    /// The S3 server in the container did not answer in time.
    #[error("the {engine} server did not become ready within {seconds} s: {last}")]
    NotReady {
        /// The engine name.
        engine: String,
        /// How long we waited.
        seconds: u64,
        /// The last thing that went wrong while polling.
        last: String,
    },
}

/// Result with [`Error`] as default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Classifies a bollard error for operation `op`: transport failures become
    /// [`Error::DockerUnavailable`], server answers keep their status.
    pub(crate) fn docker(op: &'static str, err: bollard::errors::Error) -> Self {
        use bollard::errors::Error as B;
        match err {
            B::DockerResponseServerError {
                status_code,
                message,
            } => Error::Docker {
                op,
                status: status_code,
                message,
            },
            B::DockerStreamError { error } => Error::Docker {
                op,
                status: 500,
                message: error,
            },
            other => Error::DockerUnavailable(format!("{op}: {other}")),
        }
    }

    /// Docker answered 404 for this operation.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Docker { status: 404, .. })
    }

    /// Docker answered 409 for this operation.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Docker { status: 409, .. })
    }

    /// The failure says Docker itself is down or unreachable.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Error::DockerUnavailable(_) | Error::NodeUnavailable(_)
        )
    }
}
