//! Creating a bucket: the request, its checks, port and subdomain allocation, and the CREATING
//! record; provisioning it is `provision`.

use kalpana_manager_core::spec::volume_name;
use kalpana_manager_core::EngineKind;

use crate::access::Caller;
use crate::context::Core;
use crate::error::{Error, Result};
use crate::events::{BucketEvent, EventKind};
use crate::fault;
use crate::model::{new_id, Backend, BucketRecord, Container};
use crate::requests::{may_create_in, CreateBucket};
use crate::secrets::{new_access_key, new_secret_key};
use crate::validate;

use super::*;

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
    let sleep_after_secs = req
        .sleep_after_secs
        .map(validate::sleep_after)
        .transpose()?;
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
        sleep_after_secs,
        ..BucketRecord::new(id.clone(), req.name.clone(), caller.user.id.clone(), engine)
    };
    let recorded = record_new(state, caller, engine, req.subdomain, &mut record).await;
    if let Some(id) = &pooled {
        match &recorded {
            Ok(()) => state.pool.claimed(id),
            // An insert that failed may still have been written (a timeout): the id goes back
            // only when no record holds it; unknown, it stays in the ledger for the next start.
            Err(_) => match state.store.get_bucket(id).await {
                Ok(None) => state.pool.give_back(id),
                Ok(Some(_)) => state.pool.claimed(id),
                Err(_) => {}
            },
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
pub(super) fn port_count(state: &Core, engine: EngineKind) -> usize {
    if state.config.profile(engine).console_port.is_some() {
        2
    } else {
        1
    }
}

/// Allocates the host ports an engine needs. Must be called with `state.allocation` held.
pub(super) async fn allocate_ports(state: &Core, engine: EngineKind) -> Result<Vec<u16>> {
    let count = port_count(state, engine);
    let reserved = state.store.reserved_ports().await?;
    let ports = state.ports.allocate(count, &reserved).map_err(|e| {
        Error::Unavailable(format!(
            "{e}: delete unused buckets or widen KALPANA_PORT_RANGE"
        ))
    })?;
    Ok(ports)
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
