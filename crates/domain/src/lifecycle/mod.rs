//! Bucket lifecycle, the managed backend: a bucket is its own container. Every step writes its
//! intent to the store before it touches Docker, holds the bucket's lock, and publishes each
//! status change as an event and a log line. This module holds what every operation shares (locks,
//! access gates, status changes, origins and S3 clients, the Docker checks); the operations are
//! split by kind: `create`, `provision`, `start_stop`, `replace` (domain link, rotation),
//! `delete`. Nothing outside this module and `reconcile` calls Docker.

use std::time::Duration;

use kalpana_manager_core::spec::{container_name, BucketSpec};
use kalpana_s3_ops::{BucketClient, Endpoint};

use crate::access::{Access, Caller};
use crate::context::{Core, Locked};
use crate::error::{Error, Result};
use crate::events::{BucketEvent, EventKind};
use crate::model::{BucketRecord, BucketStatus};

pub mod attachments;
mod create;
mod delete;
pub mod pool;
mod provision;
mod replace;
mod settings;
mod start_stop;
mod update;
pub mod volume_data;

pub use create::*;
pub use delete::*;
pub use provision::*;
pub use replace::*;
pub use settings::*;
pub use start_stop::*;
pub use update::*;

/// How long `docker stop` waits before it kills a bucket container.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

/// The container spec of a bucket as its record says.
pub fn spec_for(state: &Core, b: &BucketRecord) -> Result<BucketSpec> {
    let cfg = &state.config;
    let s3_port = b
        .port
        .ok_or_else(|| Error::Internal(format!("bucket {} has no port", b.id)))?;
    let routed_hosts = routed_hosts(cfg, b);
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

/// Every host Traefik routes to the bucket's S3 API: `<subdomain>.<base domain>`, then its
/// linked domain host (none without a base domain: routing is off).
pub fn routed_hosts(cfg: &crate::config::Config, b: &BucketRecord) -> Vec<String> {
    let mut hosts = match (&cfg.routing.base_domain, &b.subdomain) {
        (Some(base), Some(sub)) => vec![format!("{sub}.{base}")],
        _ => Vec::new(),
    };
    hosts.extend(b.linked_host.clone());
    hosts
}

/// Learns the origin by which the daemon reaches a bucket's server from what the runtime
/// showed of it (see [`kalpana_manager_core::Runtime::origin`]), or forgets it.
pub fn observed(state: &Core, b: &BucketRecord, c: Option<&kalpana_manager_core::ContainerState>) {
    let s3_port = state.config.profile(b.engine).s3_port;
    let origin = c.and_then(|c| state.runtime.origin(c, s3_port));
    state.addresses.set(&b.id, origin);
    state.addresses.set_node(
        &b.id,
        c.and_then(|c| c.node.clone()),
        c.and_then(|c| c.node_id.clone()),
    );
}

/// The origin the daemon itself uses to reach the bucket's S3 server: the one the runtime gave
/// when it last showed the server running (for Docker, the container's address on the bucket
/// network: one hop fewer than the userland proxy), otherwise the published host port.
pub fn internal_origin(state: &Core, b: &BucketRecord) -> Result<String> {
    if let Some(origin) = state.addresses.get(&b.id) {
        return Ok(origin);
    }
    // The published port is the daemon's own listener, which would wake it: the daemon's own
    // requests are never made to a sleeping bucket.
    if state.sleep.sleeping(&b.id) {
        return Err(Error::Conflict(format!("bucket {} is asleep", b.name)));
    }
    let port = b
        .port
        .ok_or_else(|| Error::Conflict(format!("bucket {} has no S3 port", b.name)))?;
    Ok(format!("http://{}:{port}", state.config.internal_host()))
}

/// The origin clients use for the bucket's S3 API: its routed host when Traefik routes it,
/// otherwise the public host and the bucket's port.
pub fn public_origin(state: &Core, b: &BucketRecord) -> Option<String> {
    // On a cluster, the daemon reaches a running server where clients do: its node's public
    // address and its published port.
    if state.runtime.name() == "swarm" && routed_host(state, b).is_none() {
        if let Some(origin) = state.addresses.get(&b.id) {
            return Some(origin);
        }
    }
    match (routed_host(state, b), b.port) {
        (Some(host), _) => Some(state.config.routing.origin(&host)),
        (None, Some(port)) => Some(format!("http://{}:{port}", b.host)),
        (None, None) => None,
    }
}

/// The host Traefik routes clients to for this bucket: its linked domain host, else
/// `<subdomain>.<base domain>`; none when routing is off.
pub fn routed_host(state: &Core, b: &BucketRecord) -> Option<String> {
    let base = state.config.routing.base_domain.as_ref()?;
    b.linked_host
        .clone()
        .or_else(|| b.subdomain.as_ref().map(|sub| format!("{sub}.{base}")))
}

/// Loads a bucket the caller may do `needed` with and that serves S3 now; a bucket in any other
/// state is 409 saying which.
pub async fn running(
    state: &Core,
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

/// Waits until a just-started server answers its health path (polled every
/// [`kalpana_manager_core::readiness::POLL`]), learning its address on the way; the client is
/// the bucket's own.
pub async fn wait_serving(state: &Core, b: &BucketRecord) -> Result<BucketClient> {
    let started = state.runtime.inspect_server(&b.id).await?;
    observed(state, b, started.as_ref());
    let engine = state.config.profile(b.engine);
    let origin = state.addresses.get(&b.id).ok_or_else(|| {
        Error::Unavailable(format!("the server of bucket {} did not stay up", b.name))
    })?;
    let url = format!("{origin}{}", engine.health_path);
    kalpana_manager_core::readiness::wait_http_ok(
        engine.kind.as_str(),
        &url,
        state.config.ready_timeout,
    )
    .await?;
    s3_client(state, b)
}

/// An S3 client for the bucket, through the origin the daemon can reach.
pub fn s3_client(state: &Core, b: &BucketRecord) -> Result<BucketClient> {
    let origin = internal_origin(state, b)?;
    state
        .s3_clients
        .get_or_make(&b.id, &origin, &b.access_key, || {
            s3_client_for(state, b, origin.clone())
        })
}

/// A root-credentials client of the bucket's engine for another S3 bucket name inside it (not
/// cached: for one-off moves).
pub fn s3_client_named(state: &Core, b: &BucketRecord, name: &str) -> Result<BucketClient> {
    let endpoint = endpoint_at(state, b, internal_origin(state, b)?)?;
    Ok(BucketClient::new(&endpoint, name))
}

/// An S3 client for the bucket at `origin`.
pub fn s3_client_for(state: &Core, b: &BucketRecord, origin: String) -> Result<BucketClient> {
    Ok(BucketClient::new(&endpoint_at(state, b, origin)?, &b.name))
}

/// The bucket's S3 endpoint and credentials at `origin`.
pub fn endpoint_at(state: &Core, b: &BucketRecord, origin: String) -> Result<Endpoint> {
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
    state: &Core,
    b: &mut Locked,
    status: BucketStatus,
    message: Option<String>,
    expect: Option<BucketStatus>,
) -> Result<()> {
    set_status_in(state, b, status, None, message, expect).await
}

/// [`set_status`] with the phase the bucket enters.
pub async fn set_status_in(
    state: &Core,
    b: &mut Locked,
    status: BucketStatus,
    phase: Option<crate::model::Phase>,
    message: Option<String>,
    expect: Option<BucketStatus>,
) -> Result<()> {
    let before = b.status;
    b.status = status;
    b.phase = phase;
    if phase != Some(crate::model::Phase::Restarting) {
        b.down_reason = None;
    }
    b.status_message = message;
    if status == BucketStatus::Running {
        b.provisioned = true;
    }
    match expect {
        Some(from) => b.save_if(from).await?,
        None => b.save().await?,
    }
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
        EventKind::BucketStatus,
        b,
        b.status_message.clone(),
    ));
    Ok(())
}

/// Loads a bucket the caller may see; anything else is 404.
pub async fn visible(state: &Core, caller: &Caller, id: &str) -> Result<BucketRecord> {
    match state.store.get_bucket(id).await? {
        Some(b) if caller.can_see(&b) && !b.deleting => Ok(b),
        _ => Err(Error::NotFound("bucket")),
    }
}

/// Whether the caller may do `needed` with loaded bucket `b`: 404 if they cannot see it, 403
/// if their team role does not allow it.
pub fn permit(caller: &Caller, b: &BucketRecord, needed: Access) -> Result<()> {
    if !caller.can_see(b) || b.deleting {
        return Err(Error::NotFound("bucket"));
    }
    caller.require(b, needed)
}

/// Loads a bucket the caller may do `needed` with: 404 if they cannot see it, 403 if their team
/// role does not allow `needed`.
pub async fn authorized(
    state: &Core,
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
async fn only_managed(state: &Core, id: &str, operation: &str) -> Result<()> {
    match state.store.get_bucket(id).await? {
        Some(b) => crate::kinds::require_managed(&b, operation),
        None => Ok(()),
    }
}

/// A sample of a managed bucket's container resources; none while Docker is away (logged).
pub async fn container_resources(
    state: &Core,
    b: &BucketRecord,
) -> Option<kalpana_manager_core::ContainerStats> {
    match state.runtime.stats(&b.id).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(bucket = %b.id, error = %e, "container stats unavailable");
            None
        }
    }
}

/// The hosts bucket servers run on (fleet monitoring).
pub async fn hosts(state: &Core) -> Result<Vec<kalpana_manager_core::HostInfo>> {
    Ok(state.runtime.hosts().await?)
}

/// At start-up: warns when Docker is away, and otherwise makes sure the bucket network exists
/// without inter-container traffic (a network that lets containers reach each other would break
/// tenant isolation: refused rather than used).
pub async fn prepare_runtime(state: &Core) -> Result<()> {
    if let Err(e) = state.runtime.ping().await {
        tracing::warn!(runtime = state.runtime.name(), error = %e, "the container runtime is not answering; bucket operations will fail with 503 until it does");
        return Ok(());
    }
    Ok(state.runtime.prepare().await?)
}

/// Stops a bucket's server (reconcile, for a STOPPED bucket's server found running).
pub async fn stop_server(state: &Core, id: &str) -> Result<()> {
    Ok(state.runtime.stop_server(id, STOP_GRACE).await?)
}

/// Whether Docker answers (for readiness and metrics).
pub async fn runtime_ready(state: &Core) -> kalpana_manager_core::Result<()> {
    state.runtime.ping().await
}

/// Answers 503 at once when Docker is away, before anything is written.
pub async fn require_runtime(state: &Core) -> Result<()> {
    Ok(state.runtime.ping().await?)
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
