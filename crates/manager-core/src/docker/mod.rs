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
use crate::spec::{LABEL_INSTANCE, LABEL_MANAGED};

/// The bridge driver option that allows or forbids traffic between a network's containers.
pub const ICC_OPTION: &str = "com.docker.network.bridge.enable_icc";
/// The bridge driver option that names a network's host interface.
pub const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";

pub use crate::reports::{
    ContainerAction, ContainerEvent, ContainerState, ExecOutput, ManagedVolume, PullProgress,
};
pub use crate::stats::ContainerStats;

/// Most bytes of each output stream an exec keeps.
pub const EXEC_OUTPUT_MAX: usize = 1024 * 1024;

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
