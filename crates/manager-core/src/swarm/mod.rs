//! The `swarm` runtime: bucket servers are Docker Swarm services, driven through a Swarm
//! manager's Docker API. A bucket is service `kalpana-bucket-<id>`: one replica when it runs,
//! zero when stopped, pinned at creation to the node labelled `kalpana.buckets=true` with the
//! fewest buckets (among those whose agent reports, when any does); Swarm enforces the labels
//! and its memory reservation.
//! Volumes are node-local, so the pin never changes. Its S3 port is published in host mode on that node; the daemon
//! reaches it at the node's `kalpana.public-host` label (or its Swarm address) and that port.
//!
//! What must happen on the bucket's node itself (volumes listed, filled, archived or removed,
//! container samples) is asked of that node's agent (`kalpana-buckets node`) through the
//! [`NodeHub`], and so is running the engine's admin tool in a server. Attached workloads are
//! services put on the bucket's attachable overlay. What it does not do, and says so
//! ([`Error::Unsupported`]): volumes made ahead (the warm pool), freezing.
//!
//! Caveats: Swarm never restarts a stopped container: every 0→1 makes a new one (on the same
//! volume). Its service events are the manager's (create, update, remove): a task dying on a
//! node is seen by the next reconcile pass, not at once.

mod attachments;
mod engine_files;
mod evacuation;
mod node_jobs;
mod ops;
mod service;
mod state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::models::{Task, TaskState};
use bollard::query_parameters::{EventsOptions, InspectServiceOptions, ListTasksOptions};
use bollard::Docker;
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::node_hub::NodeHub;
use crate::reports::{ContainerEvent, ContainerState, ExecOutput, ManagedVolume, PullProgress};
use crate::runtime::{
    ArchiveJob, Capabilities, FillJob, JobOutcome, Runtime, VolumeRole, Workload,
};
use crate::spec::{container_name, BucketSpec};
use crate::stats::{ContainerStats, HostInfo};

pub use service::{NODE_LABEL_BUCKETS, NODE_LABEL_PUBLIC_HOST};

/// How long a start waits for the service's task to run.
pub(super) const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Why the operations a cluster does not offer are refused, in words.
pub(super) const NEEDS_AGENT: &str =
    "the swarm runtime offers no volumes made ahead and no freezing";

/// A Swarm, through one manager's Docker API, and its nodes' agents.
#[derive(Debug, Clone)]
pub struct SwarmRuntime {
    docker: Docker,
    instance: String,
    hub: Arc<NodeHub>,
    /// Nodes chosen for volumes filled before their bucket's service existed.
    planned: Arc<Mutex<HashMap<String, String>>>,
    /// Evacuations under way, by target node: counted as that node's buckets while they fill,
    /// so that the buckets of a lost node spread over the others.
    incoming: Arc<Mutex<HashMap<String, usize>>>,
    /// One evacuation target chosen at a time.
    choosing: Arc<tokio::sync::Mutex<()>>,
}

impl SwarmRuntime {
    /// A runtime on the Swarm manager at `manager` (`tcp://host:port`, `unix:///path`, or empty
    /// for `DOCKER_HOST` or the local socket), for daemon instance `instance`, with the node
    /// agents of `hub`. Nothing is sent yet.
    pub fn connect(manager: &str, instance: &str, hub: Arc<NodeHub>) -> Result<Self> {
        let docker = if manager.is_empty() {
            Docker::connect_with_defaults()
        } else if let Some(path) = manager.strip_prefix("unix://") {
            Docker::connect_with_unix(path, 60, bollard::API_DEFAULT_VERSION)
        } else {
            Docker::connect_with_http(manager, 60, bollard::API_DEFAULT_VERSION)
        }
        .map_err(|e| Error::DockerUnavailable(format!("connect to the Swarm manager: {e}")))?;
        Ok(SwarmRuntime {
            docker,
            instance: instance.to_string(),
            hub,
            planned: Arc::default(),
            incoming: Arc::default(),
            choosing: Arc::default(),
        })
    }
}

#[async_trait]
impl Runtime for SwarmRuntime {
    fn name(&self) -> &'static str {
        "swarm"
    }

    fn capabilities(&self) -> Capabilities {
        // A task cannot be paused in place through the manager.
        Capabilities {
            freeze: false,
            host_ports: true,
        }
    }

    async fn ping(&self) -> Result<()> {
        tokio::time::timeout(Duration::from_secs(3), self.docker.ping())
            .await
            .map_err(|_| Error::DockerUnavailable("ping timed out".into()))?
            .map_err(|e| Error::docker("ping", e))?;
        Ok(())
    }

    async fn prepare(&self) -> Result<()> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| Error::docker("info", e))?;
        let manager = info
            .swarm
            .as_ref()
            .and_then(|s| s.control_available)
            .unwrap_or(false);
        if !manager {
            return Err(Error::InvalidConfig(
                "the swarm runtime needs a Swarm manager's Docker API (docker swarm init, or point DOCKER_HOST at a manager)".into(),
            ));
        }
        let labelled = self
            .nodes()
            .await?
            .values()
            .filter(|n| n.for_buckets)
            .count();
        if labelled == 0 {
            return Err(Error::InvalidConfig(format!(
                "no Swarm node is labelled for buckets: docker node update --label-add {NODE_LABEL_BUCKETS}=true <node>"
            )));
        }
        Ok(())
    }

    async fn ensure_image(
        &self,
        _image: &str,
        _progress: &mut (dyn FnMut(PullProgress) + Send),
    ) -> Result<()> {
        // Each node gets the image itself when a task is placed there; a node that cannot is
        // named by the start that waits for the task (with the node's words).
        Ok(())
    }

    async fn create_volume(&self, _spec: &BucketSpec) -> Result<()> {
        // The volume is made, with the bucket's labels, by the service's mount on the node the
        // scheduler picks; the service is then pinned there.
        Ok(())
    }

    async fn prepare_volume(
        &self,
        _id: &str,
        _image: &str,
        _data_path: &str,
        _internal_security: bool,
    ) -> Result<()> {
        Err(Self::unsupported("making a volume ahead"))
    }

    async fn remove_volume(&self, id: &str) -> Result<()> {
        self.remove_volume_everywhere(id).await
    }

    async fn create_server(&self, spec: &BucketSpec, _tls_written: bool) -> Result<String> {
        let network = self.ensure_network(&spec.id).await?;
        let (env, files) = engine_files::task_files(spec)?;
        let secrets = self.ensure_secrets(&spec.id, files).await?;
        let keep: Vec<String> = secrets.iter().map(|(f, _)| f.name.clone()).collect();
        let id = match self.service(&spec.id).await? {
            None => {
                // Placed on the labelled node with the fewest buckets (of those whose agent
                // reports, when any does): Swarm's own spread counts running tasks only, and
                // stacked new buckets on one node while others were starting (1/3/2 of six).
                // A service made again (a replaced server) goes back to its volume's node.
                let pin = match self.planned(&spec.id) {
                    Some(n) => Some(n),
                    None => match self.locate_volume(&spec.id).await? {
                        Some(n) => Some(n),
                        None => self.choose_node().await.ok(),
                    },
                };
                let s = service::service_spec(spec, false, pin.as_deref(), &network, env, &secrets);
                match self.docker.create_service(s, None).await {
                    Ok(r) => r.id.unwrap_or_default(),
                    Err(e) => return Err(Error::docker("create service", e)),
                }
            }
            Some(svc) => {
                // A new generation on the same volume: its replicas and its pin stay.
                let now = svc.spec.clone().unwrap_or_default();
                let running = service::replicas(&now) > 0;
                let pin = service::pinned_node(&now);
                let wanted = service::service_spec(
                    spec,
                    running,
                    pin.as_deref(),
                    &network,
                    env.clone(),
                    &secrets,
                );
                self.modify(&spec.id, "update service", |_| wanted.clone())
                    .await?;
                svc.id.unwrap_or_default()
            }
        };
        self.drop_secrets(&spec.id, &keep).await?;
        Ok(id)
    }

    async fn start_server(&self, id: &str) -> Result<()> {
        self.modify(id, "start service", |s| service::with_replicas(s, 1))
            .await?;
        let node = self.wait_running(id).await?;
        // Pinned where its volume now is: a placement-only change that the running task
        // satisfies does not restart it.
        self.modify(id, "pin service", |s| {
            if service::pinned_node(&s).is_some() {
                s
            } else {
                service::with_pin(s, &node)
            }
        })
        .await
    }

    async fn stop_server(&self, id: &str, grace: Duration) -> Result<()> {
        if self.service(id).await?.is_none() {
            return Ok(());
        }
        self.modify(id, "stop service", |s| service::with_replicas(s, 0))
            .await?;
        self.wait_stopped(id, grace + Duration::from_secs(30)).await
    }

    async fn remove_server(&self, id: &str) -> Result<()> {
        let svc = self.service(id).await?;
        // Its volume stays on its node: a server made again for it must go there.
        if let Some(node) = svc
            .as_ref()
            .and_then(|s| s.spec.as_ref())
            .and_then(service::pinned_node)
        {
            self.planned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.to_string(), node);
        }
        let service_id = svc.and_then(|s| s.id);
        if let Err(e) = self.docker.delete_service(&container_name(id)).await {
            match Error::docker("remove service", e) {
                e if e.is_not_found() => {}
                e => return Err(e),
            }
        }
        // Its secrets go once its tasks have let go of them (a deleted service's tasks are
        // found by its id only).
        if let Some(sid) = service_id {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                let tasks = self
                    .docker
                    .list_tasks(None::<ListTasksOptions>)
                    .await
                    .map_err(|e| Error::docker("list tasks", e))?;
                let live = tasks.iter().any(|t| {
                    t.service_id.as_deref() == Some(sid.as_str())
                        && state::is_live(t.status.as_ref().and_then(|s| s.state))
                });
                if !live {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        self.drop_secrets(id, &[]).await?;
        self.drop_network(id).await
    }

    async fn freeze(&self, _id: &str) -> Result<()> {
        Err(Self::unsupported("freezing a server"))
    }

    async fn thaw(&self, _id: &str) -> Result<()> {
        Err(Self::unsupported("thawing a server"))
    }

    async fn inspect_server(&self, id: &str) -> Result<Option<ContainerState>> {
        let Some(svc) = self.service(id).await? else {
            return Ok(None);
        };
        let tasks = self.tasks(&container_name(id)).await?;
        let nodes = self.nodes().await?;
        Ok(Some(state::of_service(&svc, &tasks, &nodes)))
    }

    async fn list_servers(&self) -> Result<Vec<ContainerState>> {
        let services = self.managed_services().await?;
        let tasks = self
            .docker
            .list_tasks(None::<ListTasksOptions>)
            .await
            .map_err(|e| Error::docker("list tasks", e))?;
        let nodes = self.nodes().await?;
        Ok(services
            .iter()
            .map(|svc| {
                let mine: Vec<Task> = tasks
                    .iter()
                    .filter(|t| t.service_id.is_some() && t.service_id == svc.id)
                    .cloned()
                    .collect();
                state::of_service(svc, &mine, &nodes)
            })
            .collect())
    }

    async fn list_volumes(&self) -> Result<Vec<ManagedVolume>> {
        self.volumes_everywhere().await
    }

    async fn remove_server_named(&self, name: &str) -> Result<()> {
        crate::names::check("service", name)?;
        match self.docker.delete_service(name).await {
            Ok(()) => Ok(()),
            Err(e) => match Error::docker("remove service", e) {
                e if e.is_not_found() => Ok(()),
                e => Err(e),
            },
        }
    }

    async fn remove_volume_named(&self, name: &str) -> Result<()> {
        self.remove_volume_named_everywhere(name).await
    }

    fn events(&self) -> BoxStream<'static, Result<ContainerEvent>> {
        let opts = EventsOptions {
            filters: Some(HashMap::from([(
                "type".to_string(),
                vec!["service".to_string()],
            )])),
            ..Default::default()
        };
        self.docker
            .events(Some(opts))
            .filter_map(|item| async move {
                match item {
                    Ok(ev) => {
                        let actor = ev.actor?;
                        let attrs = actor.attributes.unwrap_or_default();
                        let bucket_id = attrs
                            .get("name")?
                            .strip_prefix("kalpana-bucket-")
                            .filter(|rest| !rest.contains('-'))?
                            .to_string();
                        let action = state::service_action(
                            ev.action.as_deref().unwrap_or(""),
                            attrs.get("replicas.new").map(String::as_str),
                        );
                        Some(Ok(ContainerEvent {
                            action,
                            bucket_id,
                            container_id: actor.id.unwrap_or_default(),
                            exit_code: None,
                        }))
                    }
                    Err(e) => Some(Err(Error::docker("events", e))),
                }
            })
            .boxed()
    }

    async fn address(&self, id: &str, s3_port: u16) -> Result<Option<String>> {
        let state = self.inspect_server(id).await?;
        Ok(state.and_then(|c| self.origin(&c, s3_port)))
    }

    fn origin(&self, state: &ContainerState, _s3_port: u16) -> Option<String> {
        if !state.running {
            return None;
        }
        state
            .addresses
            .get(state::NODE_ADDRESS)
            .map(|hp| format!("http://{hp}"))
    }

    async fn exec(
        &self,
        id: &str,
        cmd: &[&str],
        stdin: &[u8],
        timeout: Duration,
    ) -> Result<ExecOutput> {
        self.exec_on_node(id, cmd, stdin, timeout).await
    }

    async fn stats(&self, id: &str) -> Result<Option<ContainerStats>> {
        // The node's agent samples its containers and reports them.
        Ok(self.hub.sample(id))
    }

    async fn hosts(&self) -> Result<Vec<HostInfo>> {
        let tasks = self
            .docker
            .list_tasks(None::<ListTasksOptions>)
            .await
            .map_err(|e| Error::docker("list tasks", e))?;
        let mut running: HashMap<String, u64> = HashMap::new();
        for t in &tasks {
            if t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING) {
                if let Some(n) = &t.node_id {
                    *running.entry(n.clone()).or_default() += 1;
                }
            }
        }
        let nodes = self.nodes().await?;
        self.hub.set_names(
            nodes
                .iter()
                .map(|(id, n)| (id.clone(), n.hostname.clone()))
                .collect(),
        );
        Ok(nodes
            .into_iter()
            .map(|(id, n)| {
                let (reported, agent) = match self.hub.presence(&id) {
                    Some((h, a)) => (h, Some(a)),
                    None => (None, None),
                };
                let reported = reported.unwrap_or_default();
                HostInfo {
                    name: n.hostname,
                    cpus: n.cpus,
                    memory_bytes: n.memory_bytes,
                    containers_running: running.get(&id).copied().unwrap_or(0),
                    docker_root: reported.docker_root,
                    disk_free_bytes: reported.disk_free_bytes,
                    disk_total_bytes: reported.disk_total_bytes,
                    agent,
                    id,
                }
            })
            .collect())
    }

    async fn find_workload(&self, name_or_id: &str) -> Result<Option<Workload>> {
        crate::names::check("service", name_or_id)?;
        match self
            .docker
            .inspect_service(name_or_id, None::<InspectServiceOptions>)
            .await
        {
            Ok(s) => {
                let spec = s.spec.unwrap_or_default();
                Ok(Some(Workload {
                    id: s.id.unwrap_or_default(),
                    name: spec.name.clone().unwrap_or_default(),
                    labels: spec.labels.unwrap_or_default(),
                }))
            }
            Err(e) => match Error::docker("inspect service", e) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    async fn attach(&self, id: &str, workloads: &[String]) -> Result<()> {
        self.attach_services(id, workloads).await
    }

    async fn detach(&self, id: &str, workload: &str) -> Result<()> {
        self.detach_service(id, workload).await
    }

    async fn drop_attachments(&self, id: &str) -> Result<()> {
        self.detach_all(id).await
    }

    async fn archive(&self, spec: &BucketSpec, job: ArchiveJob) -> Result<JobOutcome> {
        self.archive_on_node(spec, job).await
    }

    async fn fill(&self, spec: &BucketSpec, role: VolumeRole, job: FillJob) -> Result<JobOutcome> {
        self.fill_on_node(spec, role, job).await
    }

    async fn staged(&self, id: &str) -> Result<bool> {
        self.staged_on_node(id).await
    }

    async fn promote_staging(&self, spec: &BucketSpec) -> Result<()> {
        self.promote_on_node(spec).await
    }

    async fn drop_staging(&self, id: &str) -> Result<()> {
        self.drop_staging_on_node(id).await
    }

    async fn evacuate(
        &self,
        spec: &BucketSpec,
        lost: &str,
        job: FillJob,
        resumed: bool,
    ) -> Result<(JobOutcome, String)> {
        let (outcome, node) = self.evacuate_to_another(spec, lost, job).await?;
        if resumed {
            self.remove_half_made(spec, &[lost, node.as_str()]).await;
        }
        Ok((outcome, node))
    }

    async fn set_aside(
        &self,
        node: &str,
        spec: &BucketSpec,
        name: &str,
        evacuated_at: &str,
    ) -> Result<bool> {
        self.set_aside_on(node, spec, name, evacuated_at).await
    }
}

/// A bucket spec of engine `kind` for the unit tests of this module.
#[cfg(test)]
pub(crate) fn test_bucket(kind: crate::engine::EngineKind) -> BucketSpec {
    BucketSpec {
        id: "0123456789abcdef0123456789abcdef".into(),
        name: "photos".into(),
        owner: "alice".into(),
        instance: "test".into(),
        engine: kind.profile(),
        access_key: "AKIAEXAMPLE".into(),
        secret_key: "very-secret-key".into(),
        s3_port: 48000,
        console_port: None,
        bind_ip: "127.0.0.1".into(),
        network: "n".into(),
        routed_hosts: Vec::new(),
        routing: Default::default(),
        limits: Default::default(),
        generation: 1,
    }
}
