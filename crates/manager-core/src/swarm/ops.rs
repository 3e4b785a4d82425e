//! The Swarm manager calls the runtime is made of: services and their tasks, waits, secrets,
//! a bucket's own network, nodes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{NetworkCreateRequest, SecretSpec, Service, ServiceSpec, Task, TaskState};
use bollard::query_parameters::{
    InspectServiceOptions, ListSecretsOptions, ListTasksOptions, UpdateServiceOptions,
};

use super::engine_files::SecretFile;
use super::service::SECRET_LABEL_BUCKET;
use super::{state, SwarmRuntime, NEEDS_AGENT, START_TIMEOUT};
use crate::error::{Error, Result};
use crate::spec::{container_name, LABEL_BUCKET_ID, LABEL_INSTANCE, LABEL_MANAGED};

impl SwarmRuntime {
    pub(super) fn unsupported(op: &'static str) -> Error {
        Error::Unsupported {
            op,
            runtime: "swarm",
            why: NEEDS_AGENT,
        }
    }

    /// Bucket `id`'s service, if there is one.
    pub(super) async fn service(&self, id: &str) -> Result<Option<Service>> {
        let name = container_name(id);
        crate::names::check("service", &name)?;
        match self
            .docker
            .inspect_service(&name, None::<InspectServiceOptions>)
            .await
        {
            Ok(s) => Ok(Some(s)),
            Err(e) => match Error::docker("inspect service", e) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    /// The tasks of service `name` (current and recent history).
    pub(super) async fn tasks(&self, name: &str) -> Result<Vec<Task>> {
        let opts = ListTasksOptions {
            filters: Some(HashMap::from([(
                "service".to_string(),
                vec![name.to_string()],
            )])),
        };
        self.docker
            .list_tasks(Some(opts))
            .await
            .map_err(|e| Error::docker("list tasks", e))
    }

    /// Applies `change` to bucket `id`'s service spec and updates it (no update when `change`
    /// leaves it as it is). An update that raced another is tried again on the fresh spec.
    pub(super) async fn modify(
        &self,
        id: &str,
        op: &'static str,
        change: impl Fn(ServiceSpec) -> ServiceSpec,
    ) -> Result<()> {
        self.modify_service(&container_name(id), op, change).await
    }

    /// [`SwarmRuntime::modify`] for any service, by name or id.
    pub(super) async fn modify_service(
        &self,
        name: &str,
        op: &'static str,
        change: impl Fn(ServiceSpec) -> ServiceSpec,
    ) -> Result<()> {
        crate::names::check("service", name)?;
        let mut tries = 0;
        loop {
            let svc = match self
                .docker
                .inspect_service(name, None::<InspectServiceOptions>)
                .await
            {
                Ok(s) => s,
                Err(e) => match Error::docker(op, e) {
                    e if e.is_not_found() => {
                        return Err(Error::Docker {
                            op,
                            status: 404,
                            message: format!("no such service: {name}"),
                        })
                    }
                    e => return Err(e),
                },
            };
            let current = svc.spec.clone().unwrap_or_default();
            let wanted = change(current.clone());
            if wanted == current {
                return Ok(());
            }
            let version = svc.version.and_then(|v| v.index).unwrap_or(0);
            let opts = UpdateServiceOptions {
                version: i32::try_from(version).unwrap_or(i32::MAX),
                ..Default::default()
            };
            match self.docker.update_service(name, wanted, opts, None).await {
                Ok(_) => return Ok(()),
                Err(e) => match Error::docker(op, e) {
                    Error::Docker { message, .. }
                        if message.contains("out of sequence") && tries < 5 =>
                    {
                        tries += 1;
                    }
                    e => return Err(e),
                },
            }
        }
    }

    /// Waits until bucket `id`'s service has a running task; its node id.
    pub(super) async fn wait_running(&self, id: &str) -> Result<String> {
        let name = container_name(id);
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::from("no task was scheduled");
        loop {
            for t in self.tasks(&name).await? {
                if t.desired_state != Some(TaskState::RUNNING) {
                    continue;
                }
                let status = t.status.clone().unwrap_or_default();
                match status.state {
                    Some(TaskState::RUNNING) => {
                        if let Some(node) = t.node_id {
                            return Ok(node);
                        }
                    }
                    Some(s) => {
                        let why = status.err.or(status.message).unwrap_or_default();
                        last = format!("task {s}: {why}");
                    }
                    None => {}
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Job {
                    what: "starting the bucket's service",
                    message: format!("no task ran within {} s ({last})", START_TIMEOUT.as_secs()),
                    outcome: None,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until no task of bucket `id`'s service runs, at most `limit`.
    pub(super) async fn wait_stopped(&self, id: &str, limit: Duration) -> Result<()> {
        let name = container_name(id);
        let deadline = Instant::now() + limit;
        loop {
            let live = self
                .tasks(&name)
                .await?
                .iter()
                .any(|t| state::is_live(t.status.as_ref().and_then(|s| s.state)));
            if !live {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Job {
                    what: "stopping the bucket's service",
                    message: format!("a task still runs after {} s", limit.as_secs()),
                    outcome: None,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Makes the secrets of `files` (an existing one, same name hence same content, is kept);
    /// each with its id.
    pub(super) async fn ensure_secrets(
        &self,
        id: &str,
        files: Vec<SecretFile>,
    ) -> Result<Vec<(SecretFile, String)>> {
        use base64::Engine as _;
        let existing = self.secrets_of(id).await?;
        let mut out = Vec::new();
        for f in files {
            if let Some(sid) = existing.get(&f.name) {
                out.push((f, sid.clone()));
                continue;
            }
            let spec = SecretSpec {
                name: Some(f.name.clone()),
                labels: Some(HashMap::from([
                    (LABEL_MANAGED.to_string(), "true".to_string()),
                    (LABEL_INSTANCE.to_string(), self.instance.clone()),
                    (SECRET_LABEL_BUCKET.to_string(), id.to_string()),
                ])),
                data: Some(base64::engine::general_purpose::STANDARD.encode(&f.data)),
                ..Default::default()
            };
            let made = self
                .docker
                .create_secret(spec)
                .await
                .map_err(|e| Error::docker("create secret", e))?;
            out.push((f, made.id));
        }
        Ok(out)
    }

    /// Bucket `id`'s secrets, name → id.
    pub(super) async fn secrets_of(&self, id: &str) -> Result<HashMap<String, String>> {
        let opts = ListSecretsOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![
                    format!("{SECRET_LABEL_BUCKET}={id}"),
                    format!("{LABEL_INSTANCE}={}", self.instance),
                ],
            )])),
        };
        let list = self
            .docker
            .list_secrets(Some(opts))
            .await
            .map_err(|e| Error::docker("list secrets", e))?;
        Ok(list
            .into_iter()
            .filter_map(|s| Some((s.spec?.name?, s.id?)))
            .collect())
    }

    /// Removes bucket `id`'s secrets but `keep`. One still in use (a task not yet gone) is left
    /// for the next clean-up, saying so.
    pub(super) async fn drop_secrets(&self, id: &str, keep: &[String]) -> Result<()> {
        for (name, sid) in self.secrets_of(id).await? {
            if keep.contains(&name) {
                continue;
            }
            if let Err(e) = self.docker.delete_secret(&sid).await {
                match Error::docker("remove secret", e) {
                    e if e.is_not_found() => {}
                    e => {
                        tracing::debug!(bucket = %id, secret = %name, error = %e, "secret not removed yet")
                    }
                }
            }
        }
        Ok(())
    }

    /// Makes bucket `id`'s own overlay network unless it exists: attachable (a workload joins it
    /// to reach the bucket by name), and the bucket's only network, so no other bucket's task
    /// shares one with it (each node's `docker_gwbridge`, through which its port is published,
    /// forbids traffic between containers).
    pub(super) async fn ensure_network(&self, id: &str) -> Result<String> {
        let name = crate::docker_runtime::attach_network(id);
        match self.docker.inspect_network(&name, None).await {
            Ok(_) => return Ok(name),
            Err(e) => match Error::docker("inspect network", e) {
                e if e.is_not_found() => {}
                e => return Err(e),
            },
        }
        let req = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("overlay".into()),
            attachable: Some(true),
            labels: Some(HashMap::from([
                (LABEL_MANAGED.to_string(), "true".to_string()),
                (LABEL_INSTANCE.to_string(), self.instance.clone()),
                (LABEL_BUCKET_ID.to_string(), id.to_string()),
            ])),
            ..Default::default()
        };
        self.docker
            .create_network(req)
            .await
            .map_err(|e| Error::docker("create network", e))?;
        Ok(name)
    }

    /// Removes bucket `id`'s network (tried for a while: a task leaving lets go of it late).
    pub(super) async fn drop_network(&self, id: &str) -> Result<()> {
        let name = crate::docker_runtime::attach_network(id);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.docker.remove_network(&name).await {
                Ok(()) => return Ok(()),
                Err(e) => match Error::docker("remove network", e) {
                    e if e.is_not_found() => return Ok(()),
                    e if Instant::now() >= deadline => return Err(e),
                    _ => tokio::time::sleep(Duration::from_millis(250)).await,
                },
            }
        }
    }

    /// Every bucket service of this daemon instance.
    pub(super) async fn managed_services(&self) -> Result<Vec<Service>> {
        let opts = bollard::query_parameters::ListServicesOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![
                    format!("{LABEL_MANAGED}=true"),
                    format!("{LABEL_INSTANCE}={}", self.instance),
                ],
            )])),
            ..Default::default()
        };
        self.docker
            .list_services(Some(opts))
            .await
            .map_err(|e| Error::docker("list services", e))
    }

    /// Every node's id → what the runtime says of it.
    pub(super) async fn nodes(&self) -> Result<HashMap<String, state::NodeView>> {
        let nodes = self
            .docker
            .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
            .await
            .map_err(|e| Error::docker("list nodes", e))?;
        Ok(nodes
            .into_iter()
            .filter_map(|n| Some((n.id.clone()?, state::NodeView::of(&n))))
            .collect())
    }
}
