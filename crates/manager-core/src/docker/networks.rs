//! Networks: the shared bucket network, whose containers must not reach each other, and the
//! internal attachment network of each bucket.

use std::collections::HashMap;

use bollard::models::{
    EndpointSettings, NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest,
};
use bollard::query_parameters::ListNetworksOptions;

use super::{DockerClient, BRIDGE_NAME_OPTION, ICC_OPTION};
use crate::error::{Error, Result};
use crate::names;
use crate::spec::{LABEL_BUCKET_ID, LABEL_INSTANCE, LABEL_MANAGED};

impl DockerClient {
    /// The host interface of bridge network `name`: the name it was given, or Docker's
    /// `br-<first 12 of its id>`.
    pub async fn bridge_of(&self, name: &str) -> Result<String> {
        names::check("network", name)?;
        let n = self
            .docker
            .inspect_network(name, None)
            .await
            .map_err(|e| Error::docker("inspect network", e))?;
        if let Some(b) = n.options.as_ref().and_then(|o| o.get(BRIDGE_NAME_OPTION)) {
            return Ok(b.clone());
        }
        let id = n.id.unwrap_or_default();
        Ok(format!("br-{}", &id[..id.len().min(12)]))
    }

    /// Creates a bucket's attachment network if it is not there: a bridge without a route out
    /// (`internal`), on which the bucket's container and the workspace containers attached to
    /// it reach each other, and nothing else does. Its interface is `bridge` (at most 15
    /// characters), so host firewall rules can name it.
    pub async fn ensure_attach_network(
        &self,
        name: &str,
        bucket_id: &str,
        bridge: &str,
    ) -> Result<()> {
        names::check("network", name)?;
        if self.docker.inspect_network(name, None).await.is_ok() {
            return Ok(());
        }
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            internal: Some(true),
            options: Some(HashMap::from([(
                BRIDGE_NAME_OPTION.to_string(),
                bridge.to_string(),
            )])),
            labels: Some(HashMap::from([
                (LABEL_MANAGED.to_string(), "true".to_string()),
                (LABEL_INSTANCE.to_string(), self.instance.clone()),
                (LABEL_BUCKET_ID.to_string(), bucket_id.to_string()),
            ])),
            ..Default::default()
        };
        match self.docker.create_network(req).await {
            Ok(_) => Ok(()),
            Err(e) => match Error::docker("create network", e) {
                e if e.is_conflict() => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Connects a container to a network under these aliases; already connected is success.
    pub async fn connect_to(
        &self,
        network: &str,
        container: &str,
        aliases: &[String],
    ) -> Result<()> {
        names::check("network", network)?;
        names::check("container", container)?;
        let req = NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: Some(EndpointSettings {
                aliases: Some(aliases.to_vec()),
                ..Default::default()
            }),
        };
        match self.docker.connect_network(network, req).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let text = e.to_string();
                if text.contains("already exists") || text.contains("already attached") {
                    return Ok(());
                }
                Err(Error::docker("connect network", e))
            }
        }
    }

    /// Disconnects a container from a network; not connected (or gone) is success.
    pub async fn disconnect(&self, network: &str, container: &str) -> Result<()> {
        names::check("network", network)?;
        names::check("container", container)?;
        let req = NetworkDisconnectRequest {
            container: container.to_string(),
            force: Some(true),
        };
        match self.docker.disconnect_network(network, req).await {
            Ok(()) => Ok(()),
            Err(e) => match Error::docker("disconnect network", e) {
                e if e.is_not_found() => Ok(()),
                e if e.to_string().contains("is not connected") => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Removes a network; a missing one is success.
    pub async fn remove_network(&self, name: &str) -> Result<()> {
        names::check("network", name)?;
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) => match Error::docker("remove network", e) {
                e if e.is_not_found() => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Creates the network if it is not there, with traffic between its containers disabled
    /// (`enable_icc=false`): bucket containers reach nobody on it and nobody on it reaches them;
    /// the host (the daemon, Traefik) still does. An existing network that lets containers talk
    /// to each other is refused with [`Error::NetworkNotIsolated`].
    pub async fn ensure_network(&self, name: &str) -> Result<()> {
        names::check("network", name)?;
        match self.docker.inspect_network(name, None).await {
            Ok(n) => {
                let icc = n
                    .options
                    .as_ref()
                    .and_then(|o| o.get(ICC_OPTION))
                    .map(String::as_str);
                return match icc {
                    Some("false") => Ok(()),
                    _ => Err(Error::NetworkNotIsolated(name.to_string())),
                };
            }
            Err(e) => {
                let e = Error::docker("inspect network", e);
                if !e.is_not_found() {
                    // "ambiguous": racing daemons made two networks of this name.
                    return self.dedupe_network(name).await.or(Err(e));
                }
            }
        }
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            options: Some(HashMap::from([(
                ICC_OPTION.to_string(),
                "false".to_string(),
            )])),
            labels: Some(HashMap::from([(
                LABEL_MANAGED.to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        };
        match self.docker.create_network(req).await {
            Ok(_) => {}
            // Another daemon made it between our inspect and create.
            Err(e) => match Error::docker("create network", e) {
                e if e.is_conflict() => {}
                e => return Err(e),
            },
        }
        // Docker does not refuse a second network of the same name when two creates race.
        self.dedupe_network(name).await
    }

    /// Keeps one network of this name: every racer keeps the same one (lowest id) and removes
    /// the others, which are still empty.
    async fn dedupe_network(&self, name: &str) -> Result<()> {
        let nets = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(HashMap::from([(
                    "name".to_string(),
                    vec![name.to_string()],
                )])),
            }))
            .await
            .map_err(|e| Error::docker("list networks", e))?;
        let mut ids: Vec<String> = nets
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name))
            .filter_map(|n| n.id)
            .collect();
        ids.sort();
        for extra in ids.iter().skip(1) {
            if let Err(e) = self.docker.remove_network(extra).await {
                let e = Error::docker("remove duplicate network", e);
                if !e.is_not_found() {
                    tracing::warn!(network = name, id = %extra, error = %e, "could not remove a duplicate network");
                }
            }
        }
        Ok(())
    }
}
