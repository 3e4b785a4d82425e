//! Attachments on a Swarm: a workload is a Swarm service, and attaching it puts it on the
//! bucket's own attachable overlay network (`kalpana-att-<id>`, which the bucket's service is
//! on with its name as alias); detaching takes it off. Both are service updates: Swarm
//! replaces the workload's tasks to apply them (a rolling restart of the workload).

use bollard::models::{NetworkAttachmentConfig, ServiceSpec};
use bollard::query_parameters::ListServicesOptions;

use super::SwarmRuntime;
use crate::docker_runtime::attach_network;
use crate::error::{Error, Result};

/// `spec` with `network` among its task's networks.
fn with_network(mut spec: ServiceSpec, network: &str) -> ServiceSpec {
    let t = spec.task_template.get_or_insert_with(Default::default);
    let nets = t.networks.get_or_insert_with(Vec::new);
    if !nets.iter().any(|n| n.target.as_deref() == Some(network)) {
        nets.push(NetworkAttachmentConfig {
            target: Some(network.to_string()),
            ..Default::default()
        });
    }
    spec
}

/// `spec` without `network` (by name or id `network_id`).
fn without_network(mut spec: ServiceSpec, network: &str, network_id: &str) -> ServiceSpec {
    if let Some(nets) = spec
        .task_template
        .as_mut()
        .and_then(|t| t.networks.as_mut())
    {
        nets.retain(|n| {
            n.target
                .as_deref()
                .is_none_or(|t| t != network && t != network_id)
        });
    }
    spec
}

impl SwarmRuntime {
    /// The id of bucket `id`'s network (a service's spec names it by id once Swarm took it).
    async fn network_id(&self, id: &str) -> Result<(String, String)> {
        let name = self.ensure_network(id).await?;
        let net = self
            .docker
            .inspect_network(&name, None)
            .await
            .map_err(|e| Error::docker("inspect network", e))?;
        Ok((name, net.id.unwrap_or_default()))
    }

    /// Puts `workloads` (services) on bucket `id`'s network.
    pub(super) async fn attach_services(&self, id: &str, workloads: &[String]) -> Result<()> {
        let (network, _) = self.network_id(id).await?;
        for w in workloads {
            self.modify_service(w, "attach service", |s| with_network(s, &network))
                .await?;
        }
        Ok(())
    }

    /// Takes `workload` off bucket `id`'s network.
    pub(super) async fn detach_service(&self, id: &str, workload: &str) -> Result<()> {
        let (network, net_id) = self.network_id(id).await?;
        match self
            .modify_service(workload, "detach service", |s| {
                without_network(s, &network, &net_id)
            })
            .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// Takes every service but the bucket's own off bucket `id`'s network.
    pub(super) async fn detach_all(&self, id: &str) -> Result<()> {
        let network = attach_network(id);
        let net_id = match self.docker.inspect_network(&network, None).await {
            Ok(n) => n.id.unwrap_or_default(),
            Err(e) => match Error::docker("inspect network", e) {
                e if e.is_not_found() => return Ok(()),
                e => return Err(e),
            },
        };
        let services = self
            .docker
            .list_services(None::<ListServicesOptions>)
            .await
            .map_err(|e| Error::docker("list services", e))?;
        let own = crate::spec::container_name(id);
        for svc in services {
            let spec = svc.spec.unwrap_or_default();
            let name = spec.name.clone().unwrap_or_default();
            let on = spec
                .task_template
                .as_ref()
                .and_then(|t| t.networks.as_ref())
                .is_some_and(|n| {
                    n.iter().any(
                        |n| matches!(n.target.as_deref(), Some(t) if t == network || t == net_id),
                    )
                });
            if on && name != own {
                self.detach_service(id, &name).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_is_added_once_and_removed_by_name_or_id() {
        let s = with_network(ServiceSpec::default(), "kalpana-att-b");
        let s = with_network(s, "kalpana-att-b");
        let nets = s.task_template.as_ref().and_then(|t| t.networks.clone());
        assert_eq!(nets.map(|n| n.len()), Some(1));
        let mut by_id = s.clone();
        if let Some(n) = by_id
            .task_template
            .as_mut()
            .and_then(|t| t.networks.as_mut())
        {
            n[0].target = Some("abc123".into());
        }
        for spec in [s, by_id] {
            let out = without_network(spec, "kalpana-att-b", "abc123");
            assert_eq!(
                out.task_template.and_then(|t| t.networks).map(|n| n.len()),
                Some(0)
            );
        }
    }
}
