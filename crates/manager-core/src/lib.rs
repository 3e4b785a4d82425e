//! The Docker side of Kalpana Buckets: engine profiles, host port allocation, the container and
//! volume spec of a bucket (with its Traefik labels), and the one wrapper around bollard.
//!
//! It knows nothing of HTTP, auth or the store: callers hand it a [`spec::BucketSpec`] and get
//! containers, volumes and readiness back.

pub mod archive;
pub mod docker;
pub mod docker_runtime;
pub mod engine;
pub mod error;
pub mod fault;
pub mod firewall;
pub mod host_ports;
pub mod internal_tls;
pub mod names;
pub mod node_hub;
pub mod node_protocol;
pub mod ports;
pub mod readiness;
pub mod reports;
pub mod runtime;
pub mod spec;
pub mod stats;
pub mod swarm;
pub mod volume_jobs;
pub mod weed_shell;

pub use docker::{
    ContainerAction, ContainerEvent, ContainerState, ContainerStats, DockerClient, ExecOutput,
    PullProgress,
};
pub use docker_runtime::DockerRuntime;
pub use engine::{EngineFeatures, EngineKind, EngineProfile, KeyApi};
pub use error::{Error, Result};
pub use ports::{PortAllocator, PortRange};
pub use runtime::{Runtime, Workload};
pub use spec::{BucketSpec, RoutingConfig};
pub use stats::{cpu_percent, HostInfo};
pub use swarm::SwarmRuntime;
