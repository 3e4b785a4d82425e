//! Creating a bucket: the request, its checks, port and subdomain allocation, and provisioning
//! (volume, container, start, readiness, the S3 bucket and its settings).

use std::time::{Duration, Instant};

use kalpana_manager_core::readiness::wait_http_ok;
use kalpana_manager_core::spec::{volume_name, BucketSpec};
use kalpana_manager_core::{EngineKind, PullProgress};
use kalpana_s3_ops::BucketClient;
use serde::Deserialize;

use crate::access::Caller;
use crate::context::{Core, Locked};
use crate::error::{Error, Result};
use crate::events::{BucketEvent, EventKind};
use crate::fault;
use crate::model::{new_id, Backend, BucketRecord, BucketStatus, Container, TeamRole};
use crate::secrets::{new_access_key, new_secret_key};
use crate::validate;

use super::*;

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
    /// Make it from a snapshot: same objects, new credentials.
    pub from_snapshot: Option<crate::snapshots::from_snapshot::FromSnapshotRequest>,
    /// Take snapshots on a schedule.
    pub snapshot_policy: Option<crate::snapshots::schedule::SnapshotPolicy>,
}

/// Whether the caller may create a bucket in `team` (any member but a viewer; 404 for a team
/// they are not in).
pub fn may_create_in(caller: &Caller, team: Option<&str>) -> Result<()> {
    match team.map(|t| caller.role_in(t)) {
        None => Ok(()),
        Some(None) => Err(Error::NotFound("team")),
        Some(Some(TeamRole::Viewer)) => Err(Error::Forbidden(
            "a team viewer cannot create buckets, workspaces or domains in the team".into(),
        )),
        Some(Some(_)) => Ok(()),
    }
}

/// Validates the request, reserves ports and name atomically, writes the CREATING record and
/// starts provisioning in the background. Returns the record and the secret key (shown once).
pub async fn create(
    state: &Core,
    caller: &Caller,
    req: CreateBucket,
) -> Result<(BucketRecord, String, crate::supervisor::Finished)> {
    validate::bucket_name(&req.name)?;
    let asked = match &req.engine {
        Some(e) => Some(
            e.parse::<EngineKind>()
                .map_err(|e| Error::Invalid(e.to_string()))?,
        ),
        None => None,
    };
    let (from_snapshot, engine) = match &req.from_snapshot {
        Some(f) => {
            let (from, engine) =
                crate::snapshots::from_snapshot::check_source(state, caller, f, asked).await?;
            (Some(from), engine)
        }
        None => (None, asked.unwrap_or(state.config.engine)),
    };
    if let Some(p) = &req.snapshot_policy {
        crate::snapshots::schedule::check(state, caller, None, p).await?;
    }
    let profile = state.config.profile(engine);
    check_features(engine, req.versioning, req.encryption, req.public_access)?;
    validate::quota(req.max_size_gb)?;
    may_create_in(caller, req.team_id.as_deref())?;
    if let Some(sub) = &req.subdomain {
        validate::dns_label(sub)?;
    }
    require_runtime(state).await?;
    let secret = new_secret_key();
    // A bucket of the default engine's image takes an id whose volume is made already.
    let pooled = if profile.image == state.config.profile(state.config.engine).image {
        state.pool.take()
    } else {
        None
    };
    let id = pooled.clone().unwrap_or_else(new_id);
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
        backend: Backend::Managed(Container {
            container_id: None,
            volume_name: Some(volume_name(&id)),
            network_name: Some(state.config.network.clone()),
            internal_host: Some(container_name(&id)),
        }),
        from_snapshot,
        snapshot_policy: req.snapshot_policy,
        ..BucketRecord::new(id.clone(), req.name.clone(), caller.user.id.clone(), engine)
    };
    let recorded = record_new(state, caller, engine, req.subdomain, &mut record).await;
    if let Some(id) = &pooled {
        match &recorded {
            Ok(()) => state.pool.claimed(id),
            Err(_) => state.pool.give_back(id),
        }
    }
    recorded?;
    tracing::info!(bucket = %record.id, name = %record.name, owner = %record.user_id, %engine,
        port = ?record.port, console_port = ?record.console_port, "bucket CREATING");
    state.events.publish(BucketEvent::of(
        EventKind::BucketStatus,
        &record,
        record.status_message.clone(),
    ));
    fault::point("create.recorded");
    let task_state = state.clone();
    let task_id = record.id.clone();
    let handle = state.tasks.spawn_task("provisioning", async move {
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

/// Takes the subdomain and ports of new bucket `record` and inserts it, under the allocation
/// lock (no two creates take the same ones).
async fn record_new(
    state: &Core,
    caller: &Caller,
    engine: EngineKind,
    subdomain: Option<String>,
    record: &mut BucketRecord,
) -> Result<()> {
    let _alloc = state.locks.allocation.lock().await;
    record.subdomain = Some(match subdomain {
        Some(sub) => {
            if state.store.subdomain_taken(&sub).await? {
                return Err(Error::Conflict(format!(
                    "subdomain {sub:?} is already taken"
                )));
            }
            sub
        }
        None => free_subdomain(state, record).await?,
    });
    if !caller.user.admin {
        check_owner_limits(state, &caller.user.id, engine).await?;
    }
    let ports = allocate_ports(state, engine).await?;
    record.port = ports.first().copied();
    record.console_port = ports.get(1).copied();
    state.store.insert_bucket(record).await?;
    Ok(())
}

async fn free_subdomain(state: &Core, b: &BucketRecord) -> Result<String> {
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
async fn check_owner_limits(state: &Core, owner: &str, engine: EngineKind) -> Result<()> {
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
        return Err(Error::LimitReached(format!(
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
        return Err(Error::LimitReached(format!(
            "you hold {held} of {capacity} host ports; {reserve} are kept for other owners (KALPANA_PORT_RESERVE_PERCENT)"
        )));
    }
    Ok(())
}

/// How many host ports a bucket of `engine` reserves (S3, and the console where there is one).
fn port_count(state: &Core, engine: EngineKind) -> usize {
    if state.config.profile(engine).console_port.is_some() {
        2
    } else {
        1
    }
}

/// Allocates the host ports an engine needs. Must be called with `state.allocation` held.
async fn allocate_ports(state: &Core, engine: EngineKind) -> Result<Vec<u16>> {
    let count = port_count(state, engine);
    let reserved = state.store.reserved_ports().await?;
    let ports = state.ports.allocate(count, &reserved).map_err(|e| {
        Error::Unavailable(format!(
            "{e}: delete unused buckets or widen KALPANA_PORT_RANGE"
        ))
    })?;
    Ok(ports)
}

/// Provisions a CREATING bucket: image, network, volume, container, start, readiness, S3 bucket.
/// Idempotent: a daemon that died half-way runs it again from the top. On failure everything a
/// never-provisioned bucket holds (container, volume, ports) is given back and it goes to ERROR.
pub async fn provision(state: &Core, id: &str) -> Result<()> {
    let Some(mut b) = state.lock_bucket_if(id).await? else {
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

async fn provision_steps(state: &Core, b: &mut Locked) -> Result<()> {
    if b.port.is_none() {
        let _alloc = state.locks.allocation.lock().await;
        let ports = allocate_ports(state, b.engine).await?;
        record_ports(b, &ports).await?;
    }
    let spec = spec_for(state, b)?;
    let t = Instant::now();
    pull_image(state, b, &spec.engine.image).await?;
    step(state, b, "creating volume and container").await?;
    state.runtime.create_volume(&spec).await?;
    let volume = volume_name(&b.id);
    set_container(b, |c| c.volume_name = Some(volume));
    tracing::debug!(bucket = %b.id, elapsed_ms = t.elapsed().as_millis() as u64, "image, network and volume ready");
    if b.from_snapshot.as_ref().is_some_and(|f| !f.imported) {
        step(state, b, "filling the volume from the snapshot").await?;
        crate::snapshots::from_snapshot::import_for_new(state, b).await?;
    }
    fault::point("provision.volume");
    let tls_written = state.pool.holds_fresh_certificates(&b.id);
    let container = state.runtime.create_server(&spec, tls_written).await?;
    set_container(b, |c| c.container_id = Some(container));
    tracing::debug!(bucket = %b.id, elapsed_ms = t.elapsed().as_millis() as u64, tls_written, "container created");
    b.save_if(BucketStatus::Creating).await?;
    tracing::debug!(bucket = %b.id, elapsed_ms = t.elapsed().as_millis() as u64, "container recorded");
    fault::point("provision.container");
    step(state, b, "starting").await?;
    let mut spec = spec;
    let mut attempts = 0;
    loop {
        match bring_up(state, b, &spec, Settings::enabled_in(b)).await {
            // A new bucket's port is in nobody's configuration yet: another one will do.
            Err(Error::Runtime(kalpana_manager_core::Error::PortTaken { port, .. }))
                if attempts < PORT_ATTEMPTS =>
            {
                attempts += 1;
                spec = move_to_other_ports(state, b, port).await?;
            }
            other => break other?,
        }
    }
    if b.from_snapshot.as_ref().is_some_and(|f| !f.settled) {
        step(
            state,
            b,
            "moving the snapshot's objects to the bucket's name",
        )
        .await?;
        crate::snapshots::from_snapshot::settle_new(state, b).await?;
    }
    fault::point("provision.ready");
    Ok(())
}

/// Gives a bucket being made `ports` (S3, then console) and writes them, which reserves them.
/// Caller holds the allocation lock.
async fn record_ports(b: &mut Locked, ports: &[u16]) -> Result<()> {
    b.port = ports.first().copied();
    b.console_port = ports.get(1).copied();
    b.save_if(BucketStatus::Creating).await
}

/// How many times a new bucket whose port was taken before its container started is given
/// other ports.
const PORT_ATTEMPTS: u32 = 5;

/// Gives a new bucket other host ports than `taken` (which something else took between the
/// allocation and the container's start) and a container that publishes them; returns the spec.
async fn move_to_other_ports(state: &Core, b: &mut Locked, taken: u16) -> Result<BucketSpec> {
    state.runtime.remove_server(&b.id).await?;
    {
        let _alloc = state.locks.allocation.lock().await;
        let mut reserved = state.store.reserved_ports().await?;
        reserved.insert(taken);
        let ports = state
            .ports
            .allocate(port_count(state, b.engine), &reserved)
            .map_err(|e| {
                Error::Unavailable(format!(
                    "{e}: delete unused buckets or widen KALPANA_PORT_RANGE"
                ))
            })?;
        tracing::warn!(bucket = %b.id, taken, ports = ?ports, "the new bucket's port was taken before its container started; it gets another");
        record_ports(b, &ports).await?;
    }
    let spec = spec_for(state, b)?;
    let container = state.runtime.create_server(&spec, false).await?;
    set_container(b, |c| c.container_id = Some(container));
    Ok(spec)
}

/// Starts the container, waits for the S3 server, makes sure the S3 bucket exists and carries
/// `settings`.
pub(super) async fn bring_up(
    state: &Core,
    b: &BucketRecord,
    spec: &BucketSpec,
    settings: Settings,
) -> Result<()> {
    let t = Instant::now();
    state.runtime.start_server(&b.id).await?;
    let started = state.runtime.inspect_server(&b.id).await?;
    observed(state, b, started.as_ref());
    let url = format!("{}{}", internal_origin(state, b)?, spec.engine.health_path);
    let at_start = t.elapsed();
    wait_http_ok(spec.engine.kind.as_str(), &url, state.config.ready_timeout).await?;
    tracing::debug!(bucket = %b.id, start_ms = at_start.as_millis() as u64,
        ready_ms = t.elapsed().as_millis() as u64, "container started and serving");
    let client = s3_client(state, b)?;
    // Signed requests can lag the health answer by a few milliseconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.create_bucket().await {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(bucket = %b.id, error = %e, "create bucket not yet accepted");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    apply_settings(&client, settings).await?;
    tracing::debug!(bucket = %b.id, elapsed_ms = t.elapsed().as_millis() as u64, "S3 bucket made and set");
    // Identities owed a sync (a restore of a stopped bucket) before anyone uses the engine; the
    // key refresh records it done, or tries again.
    if b.sweep_identities {
        if let Err(e) = crate::keys::sweep_foreign(state, b).await {
            tracing::warn!(bucket = %b.id, error = %e, "bringing the engine's identities in line with the record failed; the key refresh tries again");
        }
    }
    // A new container of a bucket with attached workspace containers joins them again.
    super::attachments::reconnect(state, b).await
}

async fn step(state: &Core, b: &mut Locked, what: &str) -> Result<()> {
    b.status_message = Some(what.to_string());
    tracing::info!(bucket = %b.id, step = what, "provisioning");
    state.events.publish(BucketEvent::of(
        EventKind::Progress,
        b,
        Some(what.to_string()),
    ));
    Ok(())
}

async fn pull_image(state: &Core, b: &BucketRecord, image: &str) -> Result<()> {
    let bus = state.events.clone();
    let record = b.clone();
    let mut last_line = String::new();
    let mut last_sent = Instant::now() - Duration::from_secs(10);
    let mut report = move |p: PullProgress| {
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
            bus.publish(BucketEvent::of(EventKind::ImagePull, &record, Some(line)));
            last_line = p.status.clone();
            last_sent = Instant::now();
        }
    };
    state.runtime.ensure_image(image, &mut report).await?;
    Ok(())
}

/// Removes a never-provisioned bucket's container and volume and gives back its ports.
async fn release_resources(state: &Core, b: &mut BucketRecord) {
    if let Err(e) = state.runtime.remove_server(&b.id).await {
        tracing::warn!(bucket = %b.id, error = %e, "rollback: removing the container failed");
    }
    if let Err(e) = state.runtime.remove_volume(&b.id).await {
        tracing::warn!(bucket = %b.id, error = %e, "rollback: removing the volume failed");
    }
    set_container(b, |c| c.container_id = None);
    b.port = None;
    b.console_port = None;
}

/// Changes the container parts of managed bucket `b` (provisioning runs for managed buckets
/// only; an external one has none to change).
fn set_container(b: &mut BucketRecord, change: impl FnOnce(&mut Container)) {
    if let Some(c) = b.container_mut() {
        change(c);
    }
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
