//! Bucket lifecycle, the managed backend: a bucket is its own container. Every step writes its
//! intent to the store before it touches Docker, holds the bucket's lock, and publishes each
//! status change as an event and a log line. This module holds what every operation shares (locks,
//! access gates, status changes, origins and S3 clients, the Docker checks); the operations are
//! split by kind: `create` (and provisioning), `start_stop`, `replace` (domain link, rotation),
//! `delete`. Nothing outside this module and `reconcile` calls Docker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kalpana_manager_core::spec::{container_name, BucketSpec};
use kalpana_s3_ops::{BucketClient, Endpoint};
use tokio::sync::OwnedMutexGuard;

use crate::app::AppState;
use crate::auth::{Access, Caller};
use crate::error::{Error, Result};
use crate::events::BucketEvent;
use crate::model::{now, BucketRecord, BucketStatus};

pub mod attachments;
mod create;
mod delete;
pub mod pool;
mod replace;
mod start_stop;
pub mod volume_data;

pub use create::*;
pub use delete::*;
pub use replace::*;
pub use start_stop::*;

/// How long `docker stop` waits before it kills a bucket container.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

/// One lock per bucket, so lifecycle steps of one bucket never interleave.
#[derive(Default)]
pub struct Locks(std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl Locks {
    /// Waits for and takes the lock of bucket `id`.
    pub async fn lock(&self, id: &str) -> OwnedMutexGuard<()> {
        let m = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            // Drop locks nobody holds or waits for, so the map stays small.
            map.retain(|_, m| Arc::strong_count(m) > 1);
            map.entry(id.to_string()).or_default().clone()
        };
        m.lock_owned().await
    }
}

/// The container spec of a bucket as its record says.
pub fn spec_for(state: &AppState, b: &BucketRecord) -> Result<BucketSpec> {
    let cfg = &state.config;
    let s3_port = b
        .port
        .ok_or_else(|| Error::Internal(format!("bucket {} has no port", b.id)))?;
    let mut routed_hosts = match (&cfg.routing.base_domain, &b.subdomain) {
        (Some(base), Some(sub)) => vec![format!("{sub}.{base}")],
        _ => Vec::new(),
    };
    routed_hosts.extend(b.linked_host.clone());
    Ok(BucketSpec {
        id: b.id.clone(),
        name: b.name.clone(),
        owner: b.user_id.clone(),
        instance: cfg.instance.clone(),
        engine: b.engine.profile().with_image(b.image.clone()),
        access_key: b.access_key.clone(),
        secret_key: state.master_key.decrypt(&b.secret_key_enc)?,
        s3_port,
        console_port: b.console_port,
        bind_ip: cfg.bind_ip.to_string(),
        network: cfg.network.clone(),
        routed_hosts,
        routing: cfg.routing.clone(),
        limits: cfg.limits,
        generation: b.generation,
    })
}

/// Where the daemon reaches each bucket container: its address on the bucket network, learnt
/// when the daemon starts it and whenever reconcile looks at it, forgotten when it goes down.
#[derive(Default)]
pub struct Addresses(std::sync::Mutex<HashMap<String, String>>);

impl Addresses {
    /// The address of bucket `id`'s container, if known.
    pub fn get(&self, id: &str) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Records (or, with `None`, forgets) the address of bucket `id`'s container.
    pub fn set(&self, id: &str, ip: Option<String>) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match ip {
            Some(ip) => map.insert(id.to_string(), ip),
            None => map.remove(id),
        };
    }
}

/// Learns the address of a bucket's container from what Docker showed of it (running on the
/// bucket network), or forgets it.
pub fn observed(state: &AppState, id: &str, c: Option<&kalpana_manager_core::ContainerState>) {
    let ip = c
        .filter(|c| c.running)
        .and_then(|c| c.addresses.get(&state.config.network).cloned());
    state.addresses.set(id, ip);
}

/// The origin the daemon itself uses to reach the bucket's S3 server: the container's address
/// on the bucket network when known (the host reaches it; one hop fewer than Docker's userland
/// proxy behind the published port), otherwise the published host port.
pub fn internal_origin(state: &AppState, b: &BucketRecord) -> Result<String> {
    if let Some(ip) = state.addresses.get(&b.id) {
        return Ok(format!(
            "http://{ip}:{}",
            state.config.profile(b.engine).s3_port
        ));
    }
    let port = b
        .port
        .ok_or_else(|| Error::Conflict(format!("bucket {} has no S3 port", b.name)))?;
    Ok(format!("http://{}:{port}", state.config.internal_host()))
}

/// The origin clients use for the bucket's S3 API: its routed host when Traefik routes it,
/// otherwise the public host and the bucket's port.
pub fn public_origin(state: &AppState, b: &BucketRecord) -> Option<String> {
    match (routed_host(state, b), b.port) {
        (Some(host), _) => Some(state.config.routing.origin(&host)),
        (None, Some(port)) => Some(format!("http://{}:{port}", b.host)),
        (None, None) => None,
    }
}

/// The host Traefik routes clients to for this bucket: its linked domain host, else
/// `<subdomain>.<base domain>`; none when routing is off.
pub fn routed_host(state: &AppState, b: &BucketRecord) -> Option<String> {
    let base = state.config.routing.base_domain.as_ref()?;
    b.linked_host
        .clone()
        .or_else(|| b.subdomain.as_ref().map(|sub| format!("{sub}.{base}")))
}

/// Loads a bucket the caller may do `needed` with and that serves S3 now; a bucket in any other
/// state is 409 saying which.
pub async fn running(
    state: &AppState,
    caller: &Caller,
    id: &str,
    needed: Access,
) -> Result<BucketRecord> {
    let b = authorized(state, caller, id, needed).await?;
    match b.status {
        BucketStatus::Running => Ok(b),
        BucketStatus::Stopped => Err(Error::Conflict(format!(
            "bucket {} is stopped: start it to use its objects",
            b.name
        ))),
        BucketStatus::Creating => Err(Error::Conflict(format!(
            "bucket {} is still being created",
            b.name
        ))),
        BucketStatus::Error => Err(Error::Conflict(format!(
            "bucket {} is in ERROR: {}",
            b.name,
            b.status_message.as_deref().unwrap_or("see its status")
        ))),
    }
}

/// An S3 client for the bucket, through the origin the daemon can reach.
pub fn s3_client(state: &AppState, b: &BucketRecord) -> Result<BucketClient> {
    let origin = internal_origin(state, b)?;
    state
        .s3_clients
        .get_or_make(&b.id, &origin, &b.access_key, || {
            s3_client_for(state, b, origin.clone())
        })
}

/// A root-credentials client of the bucket's engine for another S3 bucket name inside it (not
/// cached: for one-off moves).
pub fn s3_client_named(state: &AppState, b: &BucketRecord, name: &str) -> Result<BucketClient> {
    let endpoint = endpoint_at(state, b, internal_origin(state, b)?)?;
    Ok(BucketClient::new(&endpoint, name))
}

/// An S3 client for the bucket at `origin`.
pub fn s3_client_for(state: &AppState, b: &BucketRecord, origin: String) -> Result<BucketClient> {
    Ok(BucketClient::new(&endpoint_at(state, b, origin)?, &b.name))
}

/// The bucket's S3 endpoint and credentials at `origin`.
pub fn endpoint_at(state: &AppState, b: &BucketRecord, origin: String) -> Result<Endpoint> {
    Ok(Endpoint {
        url: origin,
        region: b.region.clone(),
        access_key: b.access_key.clone(),
        secret_key: state.master_key.decrypt(&b.secret_key_enc)?,
    })
}

/// Records a status change (ending any phase), publishes it and logs it. With `expect`, only
/// from that status.
pub async fn set_status(
    state: &AppState,
    b: &mut BucketRecord,
    status: BucketStatus,
    message: Option<String>,
    expect: Option<BucketStatus>,
) -> Result<()> {
    set_status_in(state, b, status, None, message, expect).await
}

/// [`set_status`] with the phase the bucket enters.
pub async fn set_status_in(
    state: &AppState,
    b: &mut BucketRecord,
    status: BucketStatus,
    phase: Option<crate::model::Phase>,
    message: Option<String>,
    expect: Option<BucketStatus>,
) -> Result<()> {
    let before = b.status;
    b.status = status;
    b.phase = phase;
    b.status_message = message;
    b.updated_at = now();
    if status == BucketStatus::Running {
        b.provisioned = true;
    }
    state.store.update_bucket(b, expect).await?;
    // A restarted or replaced server would leave the pool with dead connections.
    state.s3_clients.forget(&b.id);
    if status != BucketStatus::Running {
        state.addresses.set(&b.id, None);
    }
    match status {
        BucketStatus::Error => {
            tracing::warn!(bucket = %b.id, name = %b.name, from = before.as_str(),
            message = b.status_message.as_deref().unwrap_or(""), "bucket ERROR")
        }
        _ => tracing::info!(bucket = %b.id, name = %b.name, from = before.as_str(),
            to = status.as_str(), "bucket status changed"),
    }
    state.events.publish(BucketEvent::of(
        "bucket.status",
        b,
        b.status_message.clone(),
    ));
    Ok(())
}

/// Loads a bucket by id; 404 when there is none.
/// Loads a bucket's record; 404 when there is none.
pub(crate) async fn load(state: &AppState, id: &str) -> Result<BucketRecord> {
    state
        .store
        .get_bucket(id)
        .await?
        .ok_or(Error::NotFound("bucket"))
}

/// Loads a bucket the caller may see; anything else is 404.
pub async fn visible(state: &AppState, caller: &Caller, id: &str) -> Result<BucketRecord> {
    match state.store.get_bucket(id).await? {
        Some(b) if caller.can_see(&b) && !b.deleting => Ok(b),
        _ => Err(Error::NotFound("bucket")),
    }
}

/// Loads a bucket the caller may do `needed` with: 404 if they cannot see it, 403 if their team
/// role does not allow `needed`.
pub async fn authorized(
    state: &AppState,
    caller: &Caller,
    id: &str,
    needed: Access,
) -> Result<BucketRecord> {
    let b = visible(state, caller, id).await?;
    caller.require(&b, needed)?;
    Ok(b)
}

/// Refuses a container operation on a bucket of another kind (422 `not_supported`), before
/// Docker is asked anything. A bucket's kind never changes, so no lock is needed.
async fn only_managed(state: &AppState, id: &str, operation: &str) -> Result<()> {
    match state.store.get_bucket(id).await? {
        Some(b) => crate::backend::require_managed(&b, operation),
        None => Ok(()),
    }
}

/// A sample of a managed bucket's container resources; none while Docker is away (logged).
pub async fn container_resources(
    state: &AppState,
    b: &BucketRecord,
) -> Option<kalpana_manager_core::ContainerStats> {
    match state.docker.container_stats(&container_name(&b.id)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(bucket = %b.id, error = %e, "container stats unavailable");
            None
        }
    }
}

/// Pauses a bucket's container (snapshots read its volume meanwhile).
pub async fn pause(state: &AppState, b: &BucketRecord) -> Result<()> {
    Ok(state.docker.pause_container(&container_name(&b.id)).await?)
}

/// Lets a paused bucket container run again.
pub async fn unpause(state: &AppState, b: &BucketRecord) -> Result<()> {
    Ok(state
        .docker
        .unpause_container(&container_name(&b.id))
        .await?)
}

/// A tar stream of a bucket's data directory, read by Docker from its container's volume.
pub fn volume_archive(
    state: &AppState,
    b: &BucketRecord,
) -> impl futures::Stream<Item = Result<bytes::Bytes>> + Send + 'static {
    use futures::TryStreamExt;
    let path = state.config.profile(b.engine).data_path;
    state
        .docker
        .archive(&container_name(&b.id), path)
        .map_err(Error::from)
}

/// The Docker host's description (fleet monitoring).
pub async fn host_info(state: &AppState) -> Result<kalpana_manager_core::HostInfo> {
    Ok(state.docker.host_info().await?)
}

/// At start-up: warns when Docker is away, and otherwise makes sure the bucket network exists
/// without inter-container traffic (a network that lets containers reach each other would break
/// tenant isolation: refused rather than used).
pub async fn prepare_docker(state: &AppState) -> Result<()> {
    if let Err(e) = state.docker.ping().await {
        tracing::warn!(error = %e, "Docker is not answering; bucket operations will fail with 503 until it does");
        return Ok(());
    }
    state.docker.ensure_network(&state.config.network).await?;
    isolate_bridge(state, &state.config.network).await
}

/// Puts the bridge of network `network` behind the host firewall rules (only the engines' S3
/// and console ports answer, from the host and from containers). Without a firewall (not root,
/// no iptables, or `KALPANA_FIREWALL=false`) it logs, once per network, what stays open.
pub async fn isolate_bridge(state: &AppState, network: &str) -> Result<()> {
    let Some(fw) = &state.firewall else {
        return Ok(());
    };
    let bridge = state.docker.bridge_of(network).await?;
    if let Err(e) = fw.ensure_bridge(&bridge).await {
        tracing::warn!(network, %bridge, error = %e,
            "the host firewall rules could not be made: the engines' internal status pages (SeaweedFS master 9333, admin 23646) answer the host and attached containers without a JWT; run the daemon as root with iptables, or set KALPANA_FIREWALL=false to silence this");
    }
    Ok(())
}

/// Stops a container by name (reconcile, for a STOPPED bucket's stray container).
pub async fn stop_container(state: &AppState, name: &str) -> Result<()> {
    Ok(state.docker.stop_container(name, STOP_GRACE).await?)
}

/// Whether Docker answers (for readiness and metrics).
pub async fn docker_ready(state: &AppState) -> kalpana_manager_core::Result<()> {
    state.docker.ping().await
}

/// Answers 503 at once when Docker is away, before anything is written.
pub async fn require_docker(state: &AppState) -> Result<()> {
    Ok(state.docker.ping().await?)
}

/// 409 for a bucket that has no container to act on yet (still CREATING, or never came up).
fn require_provisioned(b: &BucketRecord) -> Result<()> {
    match b.status {
        BucketStatus::Creating => Err(Error::Conflict("the bucket is still being created".into())),
        BucketStatus::Error if !b.provisioned => Err(Error::Conflict(
            "the bucket never came up; start it to retry or delete it".into(),
        )),
        _ => Ok(()),
    }
}

/// The status message of a bucket whose stop is under way.
pub const STOPPING: &str = "stopping";
