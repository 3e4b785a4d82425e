//! Bucket lifecycle: create, provision, start, stop, delete. Every step writes its intent to the
//! store before it touches Docker, holds the bucket's lock, and publishes each status change as
//! an event and a log line.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kalpana_manager_core::readiness::wait_http_ok;
use kalpana_manager_core::spec::{container_name, volume_name, BucketSpec};
use kalpana_manager_core::{EngineKind, PullProgress};
use kalpana_s3_ops::{BucketClient, Endpoint};
use serde::Deserialize;
use tokio::sync::OwnedMutexGuard;

use crate::app::AppState;
use crate::auth::{Access, Caller};
use crate::error::{Error, Result};
use crate::events::BucketEvent;
use crate::fault;
use crate::model::{new_id, now, BucketRecord, BucketStatus, TeamRole};
use crate::secrets::{new_access_key, new_secret_key};
use crate::validate;

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

/// The body of `POST /api/buckets`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateBucket {
    /// S3 bucket name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Team that shares it (the caller must be a member).
    pub team_id: Option<String>,
    /// Workspace.
    pub workspace_id: Option<String>,
    /// Versioning.
    pub versioning: Option<bool>,
    /// Server-side encryption.
    pub encryption: Option<bool>,
    /// Anonymous read.
    pub public_access: Option<bool>,
    /// Quota in GB (10^9 bytes); fractions allowed.
    #[serde(rename = "maxSizeGB")]
    pub max_size_gb: Option<f64>,
    /// Engine (default from configuration).
    pub engine: Option<String>,
    /// Subdomain label (default derived from the name).
    pub subdomain: Option<String>,
    /// `managed` (default: its own container) or `external`.
    pub kind: Option<crate::model::BucketKind>,
    /// Where an external bucket is, and its credentials.
    pub external: Option<crate::external::ExternalRequest>,
}

/// Whether the caller may create a bucket in `team` (any member but a viewer; 404 for a team
/// they are not in).
pub fn may_create_in(caller: &Caller, team: Option<&str>) -> Result<()> {
    match team.map(|t| caller.role_in(t)) {
        None => Ok(()),
        Some(None) => Err(Error::NotFound("team")),
        Some(Some(TeamRole::Viewer)) => Err(Error::Forbidden(
            "a viewer cannot create buckets in the team".into(),
        )),
        Some(Some(_)) => Ok(()),
    }
}

/// Validates the request, reserves ports and name atomically, writes the CREATING record and
/// starts provisioning in the background. Returns the record and the secret key (shown once).
pub async fn create(
    state: &AppState,
    caller: &Caller,
    req: CreateBucket,
) -> Result<(BucketRecord, String, tokio::task::JoinHandle<()>)> {
    validate::bucket_name(&req.name)?;
    let engine = match &req.engine {
        Some(e) => e
            .parse::<EngineKind>()
            .map_err(|e| Error::BadRequest(e.to_string()))?,
        None => state.config.engine,
    };
    let profile = state.config.profile(engine);
    check_features(engine, req.versioning, req.encryption, req.public_access)?;
    validate::quota(req.max_size_gb)?;
    may_create_in(caller, req.team_id.as_deref())?;
    if let Some(sub) = &req.subdomain {
        validate::dns_label(sub)?;
    }
    require_docker(state).await?;
    let secret = new_secret_key();
    let id = new_id();
    let mut record = BucketRecord {
        description: req.description,
        team_id: req.team_id,
        workspace_id: req.workspace_id,
        image: profile.image.clone(),
        host: state.config.public_host.clone(),
        access_key: new_access_key(),
        secret_key_enc: state.master_key.encrypt(&secret)?,
        region: state.config.region.clone(),
        versioning: req.versioning.unwrap_or(false),
        encryption: req.encryption.unwrap_or(false),
        public_access: req.public_access.unwrap_or(false),
        max_size_gb: req.max_size_gb,
        status_message: Some("waiting to be provisioned".into()),
        volume_name: Some(volume_name(&id)),
        network_name: Some(state.config.network.clone()),
        internal_host: Some(container_name(&id)),
        ..BucketRecord::new(id.clone(), req.name.clone(), caller.user.id.clone(), engine)
    };
    {
        let _alloc = state.allocation.lock().await;
        record.subdomain = Some(match req.subdomain {
            Some(sub) => {
                if state.store.subdomain_taken(&sub).await? {
                    return Err(Error::Conflict(format!(
                        "subdomain {sub:?} is already taken"
                    )));
                }
                sub
            }
            None => free_subdomain(state, &record).await?,
        });
        if !caller.user.admin {
            check_owner_limits(state, &caller.user.id, engine).await?;
        }
        let ports = allocate_ports(state, engine).await?;
        record.port = ports.first().copied();
        record.console_port = ports.get(1).copied();
        state.store.insert_bucket(&record).await?;
    }
    tracing::info!(bucket = %record.id, name = %record.name, owner = %record.user_id, %engine,
        port = ?record.port, console_port = ?record.console_port, "bucket CREATING");
    state.events.publish(BucketEvent::of(
        "bucket.status",
        &record,
        record.status_message.clone(),
    ));
    fault::point("create.recorded");
    let task_state = state.clone();
    let task_id = record.id.clone();
    let handle = tokio::spawn(async move {
        if let Err(e) = provision(&task_state, &task_id).await {
            tracing::error!(bucket = %task_id, error = %e, "provisioning failed");
        }
    });
    Ok((record, secret, handle))
}

/// Refuses bucket features the engine lacks (422 naming the engine) rather than accepting and
/// ignoring them.
pub fn check_features(
    engine: EngineKind,
    versioning: Option<bool>,
    encryption: Option<bool>,
    public_access: Option<bool>,
) -> Result<()> {
    let features = engine.profile().features;
    for (wanted, supported, what) in [
        (versioning, features.versioning, "versioning"),
        (encryption, features.encryption, "server-side encryption"),
        (public_access, features.public_access, "public access"),
    ] {
        if wanted == Some(true) && !supported {
            return Err(Error::Unprocessable(format!(
                "the {engine} engine does not support {what}"
            )));
        }
    }
    Ok(())
}

/// Which bucket settings to write to the S3 server.
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings {
    /// Versioning on/off.
    pub versioning: Option<bool>,
    /// Anonymous read on/off.
    pub public_access: Option<bool>,
    /// Default encryption on/off.
    pub encryption: Option<bool>,
}

impl Settings {
    /// Every setting as the record wants it.
    pub fn all_of(b: &BucketRecord) -> Self {
        Settings {
            versioning: Some(b.versioning),
            public_access: Some(b.public_access),
            encryption: Some(b.encryption),
        }
    }

    /// Only the settings that differ from a new S3 bucket's defaults (all off).
    pub fn enabled_in(b: &BucketRecord) -> Self {
        Settings {
            versioning: b.versioning.then_some(true),
            public_access: b.public_access.then_some(true),
            encryption: b.encryption.then_some(true),
        }
    }
}

/// Writes bucket settings to the S3 server inside the container.
pub async fn apply_settings(client: &BucketClient, s: Settings) -> Result<()> {
    if let Some(v) = s.versioning {
        client.set_versioning(v).await?;
    }
    if let Some(p) = s.public_access {
        client.set_public_read(p).await?;
    }
    if let Some(e) = s.encryption {
        client.set_default_encryption(e).await?;
    }
    Ok(())
}

async fn free_subdomain(state: &AppState, b: &BucketRecord) -> Result<String> {
    let base = validate::subdomain_from_name(&b.name);
    if !state.store.subdomain_taken(&base).await? {
        return Ok(base);
    }
    // Same name under another owner: disambiguate with the start of the id.
    for len in [6, 10, 16, 32] {
        let suffix = &b.id[b.id.len().saturating_sub(len)..];
        let mut candidate = base.clone();
        candidate.truncate(62 - suffix.len());
        let candidate = format!("{}-{suffix}", candidate.trim_end_matches('-'));
        if !state.store.subdomain_taken(&candidate).await? {
            return Ok(candidate);
        }
    }
    Err(Error::Conflict("could not find a free subdomain".into()))
}

/// Refuses (429) a bucket that would take `owner` over `KALPANA_MAX_BUCKETS_PER_OWNER`, or into
/// the share of the port range kept for everyone else. Must be called with `state.allocation`
/// held, so concurrent creates of one owner are counted one after the other.
async fn check_owner_limits(state: &AppState, owner: &str, engine: EngineKind) -> Result<()> {
    let owned = state
        .store
        .list_buckets(&crate::store::BucketQuery {
            owner: Some(owner.to_string()),
            limit: usize::MAX,
            ..Default::default()
        })
        .await?;
    let max = state.config.max_buckets_per_owner;
    if owned.len() >= max {
        return Err(Error::OwnerLimit(format!(
            "you hold {} buckets, the most one owner may (KALPANA_MAX_BUCKETS_PER_OWNER={max}); delete one first",
            owned.len()
        )));
    }
    let capacity = state.ports.range().len();
    let reserve = capacity * usize::from(state.config.port_reserve_percent) / 100;
    let held: usize = owned.iter().map(|b| b.ports().len()).sum();
    let needed = port_count(state, engine);
    // Without a reserve there is nobody to keep ports for: a full range is 503 as before.
    if reserve > 0 && held + needed > capacity - reserve {
        return Err(Error::OwnerLimit(format!(
            "you hold {held} of {capacity} host ports; {reserve} are kept for other owners (KALPANA_PORT_RESERVE_PERCENT)"
        )));
    }
    Ok(())
}

/// How many host ports a bucket of `engine` reserves (S3, and the console where there is one).
fn port_count(state: &AppState, engine: EngineKind) -> usize {
    if state.config.profile(engine).console_port.is_some() {
        2
    } else {
        1
    }
}

/// Allocates the host ports an engine needs. Must be called with `state.allocation` held.
async fn allocate_ports(state: &AppState, engine: EngineKind) -> Result<Vec<u16>> {
    let count = port_count(state, engine);
    let reserved = state.store.reserved_ports().await?;
    let ports = state.ports.allocate(count, &reserved).map_err(|e| {
        Error::Unavailable(format!(
            "{e}: delete unused buckets or widen KALPANA_PORT_RANGE"
        ))
    })?;
    Ok(ports)
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

/// The origin the daemon itself uses to reach the bucket's S3 server: the published host port
/// (the bucket network forbids traffic from other containers, the daemon included).
pub fn internal_origin(state: &AppState, b: &BucketRecord) -> Result<String> {
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

/// Records a status change, publishes it and logs it. With `expect`, only from that status.
pub async fn set_status(
    state: &AppState,
    b: &mut BucketRecord,
    status: BucketStatus,
    message: Option<String>,
    expect: Option<BucketStatus>,
) -> Result<()> {
    let before = b.status;
    b.status = status;
    b.status_message = message;
    b.updated_at = now();
    if status == BucketStatus::Running {
        b.provisioned = true;
    }
    state.store.update_bucket(b, expect).await?;
    // A restarted or replaced server would leave the pool with dead connections.
    state.s3_clients.forget(&b.id);
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

/// Provisions a CREATING bucket: image, network, volume, container, start, readiness, S3 bucket.
/// Idempotent: a daemon that died half-way runs it again from the top. On failure everything a
/// never-provisioned bucket holds (container, volume, ports) is given back and it goes to ERROR.
pub async fn provision(state: &AppState, id: &str) -> Result<()> {
    let _guard = state.locks.lock(id).await;
    let Some(mut b) = state.store.get_bucket(id).await? else {
        return Ok(());
    };
    if b.deleting || b.status != BucketStatus::Creating {
        return Ok(());
    }
    let started = Instant::now();
    match provision_steps(state, &mut b).await {
        Ok(()) => {
            tracing::info!(bucket = %b.id, elapsed_ms = started.elapsed().as_millis() as u64, "bucket provisioned");
            set_status(
                state,
                &mut b,
                BucketStatus::Running,
                None,
                Some(BucketStatus::Creating),
            )
            .await
        }
        Err(e) => {
            let message = e.to_string();
            if !b.provisioned {
                release_resources(state, &mut b).await;
            }
            set_status(state, &mut b, BucketStatus::Error, Some(message), None).await?;
            Err(e)
        }
    }
}

async fn provision_steps(state: &AppState, b: &mut BucketRecord) -> Result<()> {
    if b.port.is_none() {
        let _alloc = state.allocation.lock().await;
        let ports = allocate_ports(state, b.engine).await?;
        b.port = ports.first().copied();
        b.console_port = ports.get(1).copied();
        b.updated_at = now();
        state
            .store
            .update_bucket(b, Some(BucketStatus::Creating))
            .await?;
    }
    let spec = spec_for(state, b)?;
    pull_image(state, b, &spec.engine.image).await?;
    step(state, b, "creating volume and container").await?;
    state.docker.ensure_network(&spec.network).await?;
    b.volume_name = Some(state.docker.create_volume(&spec).await?);
    fault::point("provision.volume");
    b.container_id = Some(state.docker.create_container(&spec).await?);
    b.updated_at = now();
    state
        .store
        .update_bucket(b, Some(BucketStatus::Creating))
        .await?;
    fault::point("provision.container");
    step(state, b, "starting").await?;
    bring_up(state, b, &spec, Settings::enabled_in(b)).await?;
    fault::point("provision.ready");
    Ok(())
}

/// Starts the container, waits for the S3 server, makes sure the S3 bucket exists and carries
/// `settings`.
async fn bring_up(
    state: &AppState,
    b: &BucketRecord,
    spec: &BucketSpec,
    settings: Settings,
) -> Result<()> {
    let name = container_name(&b.id);
    state.docker.start_container(&name).await?;
    let url = format!("{}{}", internal_origin(state, b)?, spec.engine.health_path);
    wait_http_ok(spec.engine.kind.as_str(), &url, state.config.ready_timeout).await?;
    let client = s3_client(state, b)?;
    // Signed requests can lag the health answer by a few milliseconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.create_bucket().await {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(bucket = %b.id, error = %e, "create bucket not yet accepted");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    apply_settings(&client, settings).await
}

async fn step(state: &AppState, b: &mut BucketRecord, what: &str) -> Result<()> {
    b.status_message = Some(what.to_string());
    tracing::info!(bucket = %b.id, step = what, "provisioning");
    state.events.publish(BucketEvent::of(
        "bucket.progress",
        b,
        Some(what.to_string()),
    ));
    Ok(())
}

async fn pull_image(state: &AppState, b: &BucketRecord, image: &str) -> Result<()> {
    let bus = state.events.clone();
    let record = b.clone();
    let mut last_line = String::new();
    let mut last_sent = Instant::now() - Duration::from_secs(10);
    state
        .docker
        .ensure_image(image, move |p: PullProgress| {
            let line = match (p.current, p.total) {
                (Some(c), Some(t)) if t > 0 => format!(
                    "pulling {}: {} {} {}/{} bytes",
                    p.image,
                    p.layer.as_deref().unwrap_or(""),
                    p.status,
                    c,
                    t
                ),
                _ => format!(
                    "pulling {}: {} {}",
                    p.image,
                    p.layer.as_deref().unwrap_or(""),
                    p.status
                ),
            };
            // Byte counters change many times a second; report a new status at once and
            // byte progress at most once a second.
            if p.status != last_line || last_sent.elapsed() >= Duration::from_secs(1) {
                tracing::info!(bucket = %record.id, progress = %line, "image pull");
                bus.publish(BucketEvent::of("image.pull", &record, Some(line)));
                last_line = p.status.clone();
                last_sent = Instant::now();
            }
        })
        .await?;
    Ok(())
}

/// Removes a never-provisioned bucket's container and volume and gives back its ports.
async fn release_resources(state: &AppState, b: &mut BucketRecord) {
    let name = container_name(&b.id);
    if let Err(e) = state.docker.remove_container(&name).await {
        tracing::warn!(bucket = %b.id, error = %e, "rollback: removing the container failed");
    }
    if let Err(e) = state.docker.remove_volume(&volume_name(&b.id)).await {
        tracing::warn!(bucket = %b.id, error = %e, "rollback: removing the volume failed");
    }
    b.container_id = None;
    b.port = None;
    b.console_port = None;
}

/// Loads a bucket by id; 404 when there is none.
async fn load(state: &AppState, id: &str) -> Result<BucketRecord> {
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

/// Starts a bucket: STOPPED or ERROR → RUNNING. A never-provisioned ERROR bucket is provisioned
/// again from scratch; a container removed by hand is recreated on the kept volume.
pub async fn start(state: &AppState, id: &str) -> Result<BucketRecord> {
    only_managed(state, id, "starting").await?;
    require_docker(state).await?;
    let guard = state.locks.lock(id).await;
    let mut b = load(state, id).await?;
    match b.status {
        BucketStatus::Creating => {
            return Err(Error::Conflict("the bucket is still being created".into()))
        }
        BucketStatus::Error if !b.provisioned => {
            set_status(
                state,
                &mut b,
                BucketStatus::Creating,
                Some("retrying provisioning".into()),
                Some(BucketStatus::Error),
            )
            .await?;
            drop(guard);
            let _ = provision(state, id).await;
            return state
                .store
                .get_bucket(id)
                .await?
                .ok_or(Error::NotFound("bucket"));
        }
        _ => {}
    }
    let from = b.status;
    let result = ensure_running(state, &b).await;
    match result {
        Ok(()) => {
            fault::point("start.running");
            if b.status != BucketStatus::Running || b.status_message.is_some() {
                set_status(state, &mut b, BucketStatus::Running, None, Some(from)).await?;
            }
            Ok(b)
        }
        Err(e) if matches!(&e, Error::Manager(m) if m.is_unavailable()) => Err(e),
        Err(e) => {
            set_status(
                state,
                &mut b,
                BucketStatus::Error,
                Some(format!("start failed: {e}")),
                None,
            )
            .await?;
            Err(e)
        }
    }
}

/// Makes the container of a provisioned bucket exist with the record's configuration and serve S3.
pub async fn ensure_running(state: &AppState, b: &BucketRecord) -> Result<()> {
    let spec = spec_for(state, b)?;
    ensure_container(state, b, &spec).await?;
    // Settings changed while the bucket was stopped, or lost with a recreated container.
    bring_up(state, b, &spec, Settings::all_of(b)).await
}

/// Makes the bucket's container exist with the record's generation: recreated on the kept
/// volume when it is missing, replaced when it is older (a rotation or link the daemon did not
/// finish). Does not start it.
pub async fn ensure_container(state: &AppState, b: &BucketRecord, spec: &BucketSpec) -> Result<()> {
    match state
        .docker
        .inspect_container(&container_name(&b.id))
        .await?
    {
        Some(c) if c.is_current(b.generation) => Ok(()),
        Some(c) => {
            tracing::warn!(bucket = %b.id, container_generation = ?c.generation,
                generation = b.generation, "container is of an older configuration; replacing it");
            swap_container(state, b, spec).await
        }
        None => {
            tracing::warn!(bucket = %b.id, "container missing; recreating it on the kept volume");
            state.docker.ensure_network(&spec.network).await?;
            state.docker.create_volume(spec).await?;
            state.docker.create_container(spec).await?;
            Ok(())
        }
    }
}

/// Stops and removes the container and creates it anew from `spec`, on the same volume.
async fn swap_container(state: &AppState, b: &BucketRecord, spec: &BucketSpec) -> Result<()> {
    let name = container_name(&b.id);
    state.docker.stop_container(&name, STOP_GRACE).await?;
    fault::point("replace.stopped");
    state.docker.remove_container(&name).await?;
    fault::point("replace.removed");
    state.docker.ensure_network(&spec.network).await?;
    // Docker would make a missing named volume itself, without the labels that tie it to the
    // bucket (and let clean-up find it).
    state.docker.create_volume(spec).await?;
    state.docker.create_container(spec).await?;
    // The old server's pooled connections and credentials are gone with it.
    state.s3_clients.forget(&b.id);
    fault::point("replace.created");
    Ok(())
}

/// Refuses a container operation on a bucket of another kind (422 `not_supported`), before
/// Docker is asked anything. A bucket's kind never changes, so no lock is needed.
async fn only_managed(state: &AppState, id: &str, operation: &str) -> Result<()> {
    match state.store.get_bucket(id).await? {
        Some(b) => crate::backend::require_managed(&b, operation),
        None => Ok(()),
    }
}

/// Answers 503 at once when Docker is away, before anything is written.
pub async fn require_docker(state: &AppState) -> Result<()> {
    Ok(state.docker.ping().await?)
}

/// Stops a bucket: RUNNING (or a provisioned ERROR) → STOPPED. Stopping a stopped bucket is fine.
pub async fn stop(state: &AppState, id: &str) -> Result<BucketRecord> {
    only_managed(state, id, "stopping").await?;
    require_docker(state).await?;
    let _guard = state.locks.lock(id).await;
    let mut b = load(state, id).await?;
    if b.status == BucketStatus::Stopped {
        return Ok(b);
    }
    require_provisioned(&b)?;
    // The intent first: object calls answer 409 "stopped" from now on rather than meet a server
    // going away, and a daemon that dies mid-way finishes the stop when it comes back.
    let from = b.status;
    set_status(
        state,
        &mut b,
        BucketStatus::Stopped,
        Some(STOPPING.into()),
        Some(from),
    )
    .await?;
    if let Err(e) = state
        .docker
        .stop_container(&container_name(&b.id), STOP_GRACE)
        .await
    {
        let message = format!("stop failed: {e}");
        set_status(
            state,
            &mut b,
            from,
            Some(message),
            Some(BucketStatus::Stopped),
        )
        .await?;
        return Err(e.into());
    }
    fault::point("stop.stopped");
    set_status(
        state,
        &mut b,
        BucketStatus::Stopped,
        None,
        Some(BucketStatus::Stopped),
    )
    .await?;
    Ok(b)
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

/// Links the bucket to `host` (or unlinks it with `None`). Labels cannot change on a live
/// container, so a provisioned bucket's container is replaced: same volume, ports and
/// credentials; a running bucket is brought up again and is unavailable only meanwhile.
pub async fn set_link(
    state: &AppState,
    id: &str,
    domain_id: Option<String>,
    host: Option<String>,
) -> Result<BucketRecord> {
    only_managed(state, id, "a domain link").await?;
    require_docker(state).await?;
    let _guard = state.locks.lock(id).await;
    let mut b = load(state, id).await?;
    if b.status == BucketStatus::Creating {
        return Err(Error::Conflict("the bucket is still being created".into()));
    }
    if b.linked_host == host {
        return Ok(b);
    }
    {
        // Same lock order as provisioning: the bucket's, then allocation's.
        // The store refuses a host linked to another bucket (409).
        let _alloc = state.allocation.lock().await;
        b.domain_id = domain_id;
        b.linked_host = host;
        b.generation += 1;
        b.updated_at = now();
        // The record first: a daemon that dies mid-way replaces the container from it.
        state.store.update_bucket(&b, None).await?;
    }
    tracing::info!(bucket = %b.id, host = ?b.linked_host, generation = b.generation,
        "domain link changed; replacing the container");
    state
        .events
        .publish(BucketEvent::of("bucket.domain", &b, b.linked_host.clone()));
    fault::point("link.recorded");
    replace_container(state, &mut b, "the domain link").await?;
    Ok(b)
}

/// Rotates the bucket's secret key: the new secret is recorded (encrypted) first, then the
/// container is replaced to serve it. Returns the record and the new secret (shown once).
pub async fn rotate_credentials(state: &AppState, id: &str) -> Result<(BucketRecord, String)> {
    only_managed(state, id, "rotating credentials").await?;
    require_docker(state).await?;
    let _guard = state.locks.lock(id).await;
    let mut b = load(state, id).await?;
    require_provisioned(&b)?;
    let secret = new_secret_key();
    b.secret_key_enc = state.master_key.encrypt(&secret)?;
    b.generation += 1;
    b.updated_at = now();
    state.store.update_bucket(&b, None).await?;
    tracing::info!(bucket = %b.id, generation = b.generation, "credentials rotated; replacing the container");
    state.events.publish(BucketEvent::of(
        "bucket.credentials",
        &b,
        Some("secret key rotated".into()),
    ));
    fault::point("rotate.recorded");
    replace_container(state, &mut b, "new credentials").await?;
    Ok((b, secret))
}

/// Replaces a provisioned bucket's container with one of the record's configuration and brings
/// it up if the bucket is RUNNING; on failure the bucket goes to ERROR saying `why` it was
/// replaced.
async fn replace_container(state: &AppState, b: &mut BucketRecord, why: &str) -> Result<()> {
    if !b.provisioned {
        return Ok(());
    }
    let result = async {
        let spec = spec_for(state, b)?;
        swap_container(state, b, &spec).await?;
        if b.status == BucketStatus::Running {
            bring_up(state, b, &spec, Settings::all_of(b)).await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        let from = b.status;
        let message = format!("replacing the container for {why} failed: {e}");
        set_status(state, b, BucketStatus::Error, Some(message), Some(from)).await?;
        return Err(e);
    }
    Ok(())
}

/// Deletes a bucket as a finalizer: mark it deleting, remove the container (and the volume when
/// asked), then drop the record, which frees its ports. A failure leaves the mark for reconcile.
pub async fn delete(state: &AppState, id: &str, delete_volume: bool) -> Result<()> {
    require_docker(state).await?;
    let _guard = state.locks.lock(id).await;
    let Some(mut b) = state.store.get_bucket(id).await? else {
        return Ok(());
    };
    if !b.deleting || (delete_volume && !b.delete_volume) {
        b.deleting = true;
        b.delete_volume |= delete_volume;
        b.updated_at = now();
        state.store.update_bucket(&b, None).await?;
    }
    fault::point("delete.marked");
    finish_delete(state, &b).await
}

/// The Docker half of a delete, then the record. Idempotent.
pub async fn finish_delete(state: &AppState, b: &BucketRecord) -> Result<()> {
    state
        .docker
        .remove_container(&container_name(&b.id))
        .await?;
    fault::point("delete.container");
    // A bucket that never held data has nothing worth keeping.
    if b.delete_volume || !b.provisioned {
        state.docker.remove_volume(&volume_name(&b.id)).await?;
    }
    state.store.delete_bucket(&b.id).await?;
    state.s3_clients.forget(&b.id);
    state.quotas.forget(&b.id);
    state.pending_usage.take(&b.id);
    tracing::info!(bucket = %b.id, name = %b.name, volume_deleted = b.delete_volume || !b.provisioned, "bucket deleted");
    state
        .events
        .publish(BucketEvent::of("bucket.deleted", b, None));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_an_engine_lacks_are_422_naming_it() {
        let err = check_features(EngineKind::Minio, None, Some(true), None)
            .expect_err("minio has no SSE without a KMS");
        assert!(
            matches!(&err, Error::Unprocessable(m) if m.contains("minio")),
            "{err}"
        );
        assert!(check_features(EngineKind::Minio, Some(true), Some(false), Some(true)).is_ok());
        assert!(check_features(EngineKind::Seaweedfs, Some(true), Some(true), Some(true)).is_ok());
    }
}
