//! Buckets made from a snapshot (`fromSnapshot`): the archive read into the new bucket's volume
//! before its container exists (checked against its SHA-256; a mismatch fails the creation),
//! then, once its engine serves, the objects moved from the source's S3 bucket name to the new
//! one and the source's keys removed, before anyone is given the bucket.

use crate::access::Caller;
use crate::context::{Core, Locked};
use crate::error::{Error, Result};
use crate::lifecycle::{self, volume_data};
use crate::model::{BucketRecord, BucketStatus};

use super::archive::{
    archive_present, event, fill_job, matches_record, outcome_of, recount_later, tampered,
};
use super::progress::Meter;
use crate::requests::FromSnapshotRequest;

pub use crate::model::FromSnapshot;

/// Checks a `fromSnapshot` request: a DONE snapshot of a managed bucket the caller manages, whose
/// archive is in place, of the engine asked for (if one is). Returns what the new bucket
/// records and the engine it must run.
pub async fn check_source(
    state: &Core,
    caller: &Caller,
    req: &FromSnapshotRequest,
    engine: Option<kalpana_manager_core::EngineKind>,
) -> Result<(FromSnapshot, kalpana_manager_core::EngineKind)> {
    // The archive is the source's whole engine state: making a bucket of it is as much as
    // restoring it, so it needs the right to manage the source, not just to see it.
    let source =
        lifecycle::authorized(state, caller, &req.bucket_id, crate::access::Access::Manage).await?;
    let s = super::get(state, caller, &req.bucket_id, &req.snapshot_id).await?;
    if engine.is_some_and(|e| e != source.engine) {
        return Err(Error::Unprocessable(format!(
            "the snapshot holds {} data: the new bucket must use engine {}",
            source.engine.as_str(),
            source.engine.as_str()
        )));
    }
    archive_present(state, &s).await?;
    Ok((
        FromSnapshot {
            bucket_id: s.bucket_id,
            snapshot_id: s.id,
            source_name: source.name,
            imported: false,
            settled: false,
        },
        source.engine,
    ))
}

/// Provisioning of a `fromSnapshot` bucket, before its container is made: the archive read into
/// its volume, checked against the record (a mismatch fails the provisioning, which removes the
/// volume).
pub async fn import_for_new(state: &Core, b: &mut Locked) -> Result<()> {
    let Some(mut from) = b.from_snapshot.clone().filter(|f| !f.imported) else {
        return Ok(());
    };
    let s = state
        .store
        .get_snapshot(&from.snapshot_id)
        .await?
        .ok_or_else(|| Error::Unprocessable("the snapshot is gone".into()))?;
    let meter = Meter::new(state, b, format!("filling from snapshot {}", s.id));
    let job = fill_job(state, &s, &meter).await?;
    let imported = volume_data::import(state, b, job).await;
    if !matches_record(&s, outcome_of(&imported)) {
        return Err(Error::Unprocessable(tampered(&s)));
    }
    imported?;
    from.imported = true;
    record_progress(b, from).await?;
    event(
        state,
        b,
        format!(
            "filled from snapshot {}: {} archive bytes",
            s.id,
            meter.bytes()
        ),
    );
    Ok(())
}

/// Provisioning of a `fromSnapshot` bucket, once its engine serves: the objects moved from the
/// source's S3 bucket name to the new one (copies on the server), and the source's keys removed
/// from the engine, before anyone is given the bucket.
pub async fn settle_new(state: &Core, b: &mut Locked) -> Result<()> {
    let Some(mut from) = b.from_snapshot.clone().filter(|f| !f.settled) else {
        return Ok(());
    };
    if from.source_name != b.name {
        move_objects(state, b, &from.source_name).await?;
    }
    // The new bucket has no keys yet: every identity in the engine came with the source's data.
    crate::keys::sweep_foreign(state, b).await?;
    from.settled = true;
    record_progress(b, from).await?;
    recount_later(state, &b.id);
    Ok(())
}

/// Moves every object of S3 bucket `source` to the bucket's own name inside its engine, then
/// removes `source`. Repeatable: what was moved is no longer listed.
async fn move_objects(state: &Core, b: &BucketRecord, source: &str) -> Result<()> {
    let to = lifecycle::s3_client(state, b)?;
    let from = lifecycle::s3_client_named(state, b, source)?;
    if !from.bucket_exists().await? {
        return Ok(());
    }
    let mut moved = 0u64;
    loop {
        let page = from.list_objects(None, None, 1000, None).await?;
        if page.objects.is_empty() {
            break;
        }
        for o in page.objects {
            if o.size > MAX_COPY {
                let d = from.get_object(&o.key, None).await?;
                to.put_object(
                    &o.key,
                    o.content_type.as_deref(),
                    Some(d.content_length),
                    d.body,
                )
                .await?;
            } else {
                to.copy_from(source, &o.key).await?;
            }
            from.delete_object(&o.key).await?;
            moved += 1;
        }
    }
    if let Err(e) = from.delete_bucket().await {
        tracing::warn!(bucket = %b.id, source, error = %e, "removing the source's S3 bucket from the copy failed");
    }
    tracing::info!(bucket = %b.id, source, objects = moved, "objects moved to the new bucket's name");
    Ok(())
}

/// The largest object an S3 server copies in one request.
const MAX_COPY: u64 = 5 * 1024 * 1024 * 1024;

/// Records how far a `fromSnapshot` provisioning got (re-run from there after a crash).
async fn record_progress(b: &mut Locked, from: FromSnapshot) -> Result<()> {
    b.from_snapshot = Some(from);
    b.save_if(BucketStatus::Creating).await
}
