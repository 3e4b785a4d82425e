//! Provisioning a CREATING bucket (image, volume, container, start, readiness, the S3 bucket and
//! its settings), its rollback, and bringing a bucket's container up, which starting shares.

use std::time::{Duration, Instant};

use kalpana_manager_core::spec::volume_name;
use kalpana_manager_core::PullProgress;

use crate::context::{Core, Locked};
use crate::error::{Error, Result};
use crate::events::{BucketEvent, EventKind};
use crate::fault;
use crate::model::{BucketRecord, BucketStatus, Container};

use super::create::{allocate_ports, port_count};
use super::*;

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
    // The daemon listens on the bucket's ports before anything is made with them: one another
    // process took since the allocation is swapped for another while that costs nothing.
    let mut attempts = 0;
    while let Err(taken) = crate::sleep::proxy::open(state, b, false) {
        attempts += 1;
        if attempts > PORT_ATTEMPTS {
            return Err(Error::Runtime(kalpana_manager_core::Error::PortTaken {
                port: taken,
                holder: kalpana_manager_core::host_ports::holder(taken),
            }));
        }
        move_to_other_ports(state, b, taken).await?;
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
    bring_up(state, b, Settings::enabled_in(b)).await?;
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

/// Gives a new bucket other host ports than `taken` (which another process took between the
/// allocation and the daemon's listening on it). Caller holds the bucket.
async fn move_to_other_ports(state: &Core, b: &mut Locked, taken: u16) -> Result<()> {
    // A provisioning resumed after a crash may have made the container already, with the old
    // port in its labels: it is made again below.
    state.runtime.remove_server(&b.id).await?;
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
    tracing::warn!(bucket = %b.id, taken, ports = ?ports, "the new bucket's port was taken; it gets another");
    record_ports(b, &ports).await
}

/// Starts the container, waits for the S3 server, makes sure the S3 bucket exists and carries
/// `settings`.
pub(super) async fn bring_up(state: &Core, b: &BucketRecord, settings: Settings) -> Result<()> {
    let t = Instant::now();
    state.runtime.start_server(&b.id).await?;
    let client = wait_serving(state, b).await?;
    tracing::debug!(bucket = %b.id, ready_ms = t.elapsed().as_millis() as u64,
        "container started and serving");
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
