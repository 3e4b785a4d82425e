//! Bucket containers and their never-started data helpers, from create to events.

use std::collections::HashMap;
use std::time::Duration;

use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, InspectContainerOptions, ListContainersOptions,
    RemoveContainerOptions, StatsOptions, StopContainerOptions, UploadToContainerOptions,
};
use futures::{Stream, StreamExt};

use super::{
    ContainerAction, ContainerEvent, ContainerState, ContainerStats, DockerClient, ExecOutput,
    EXEC_OUTPUT_MAX,
};
use crate::error::{Error, Result};
use crate::names;
use crate::spec::{
    container_name, helper_name, BucketSpec, LABEL_BUCKET_ID, LABEL_GENERATION, LABEL_SPEC_REVISION,
};

/// The port in Docker's "…listen tcp4 127.0.0.1:48672: bind: address already in use".
fn taken_port(message: &str) -> Option<u16> {
    if !message.contains("address already in use") {
        return None;
    }
    let before = message.split(": bind:").next()?;
    before.rsplit(':').next()?.trim().parse().ok()
}

fn append_capped(buf: &mut Vec<u8>, bytes: &[u8]) {
    let room = EXEC_OUTPUT_MAX.saturating_sub(buf.len());
    buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

impl DockerClient {
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
    pub(super) async fn write_internal_tls(&self, name: &str, data_path: &str) -> Result<()> {
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
                    node: None,
                    node_id: None,
                }))
            }
            Err(e) => match Error::docker("inspect container", e) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    /// The running container of Swarm service `service` on this engine (its task), if any.
    pub async fn running_task_of(&self, service: &str) -> Result<Option<String>> {
        names::check("service", service)?;
        let opts = ListContainersOptions {
            all: false,
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![format!("com.docker.swarm.service.name={service}")],
            )])),
            ..Default::default()
        };
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| Error::docker("list containers", e))?;
        Ok(list.into_iter().find_map(|c| c.id))
    }

    /// The containers (name, running) that mount volume `volume`.
    pub async fn containers_using(&self, volume: &str) -> Result<Vec<(String, bool)>> {
        names::check("volume", volume)?;
        let opts = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "volume".to_string(),
                vec![volume.to_string()],
            )])),
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
                let name = c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string();
                let running = c.state.is_some_and(|s| s.to_string() == "running");
                (
                    if name.is_empty() {
                        c.id.unwrap_or_default()
                    } else {
                        name
                    },
                    running,
                )
            })
            .collect())
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
                    node: None,
                    node_id: None,
                }
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
