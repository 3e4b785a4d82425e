//! The runtime conformance suite (`kalpana_e2e::runtime_suite`) against the Docker runtime, on
//! a network and instance label of its own.

use std::sync::Arc;
use std::time::Duration;

use kalpana_e2e::runtime_suite::{self, Place};
use kalpana_e2e::{new_instance, next_port_range, remove_instance_resources, require_environment};
use kalpana_manager_core::{DockerClient, DockerRuntime};

#[tokio::test]
async fn the_docker_runtime_passes_the_conformance_suite() -> anyhow::Result<()> {
    require_environment()?;
    let instance = new_instance();
    let network = format!("kalpana-conf-{}", &instance[5..17]);
    let (first, _) = next_port_range();
    let place = Place {
        instance: instance.clone(),
        network: network.clone(),
        ports: (first, first + 1),
    };
    let docker = DockerClient::connect(&instance, Duration::from_secs(60))?;
    let rt = Arc::new(DockerRuntime::new(docker, &network, None));
    let outcome = runtime_suite::run_all(rt, &place).await;
    remove_instance_resources(&instance);
    let _ = std::process::Command::new("docker")
        .args(["network", "rm", &network])
        .output();
    outcome
}
