//! Taking a snapshot: the bucket's container paused while Docker reads its volume, the tar
//! compressed with zstd and streamed to the target bucket (multipart), then the container
//! unpaused whatever happened.

use std::time::Instant;

use std::sync::Arc;

use kalpana_manager_core::runtime::{ArchiveJob, ArchiveTarget, JobOutcome};

use crate::context::Core;
use crate::error::Result;
use crate::lifecycle;
use crate::model::{now, BucketKind, BucketRecord, BucketStatus};

use super::model::{Snapshot, SnapshotKey, SnapshotStatus};
use super::progress::Meter;
use super::{event, fail};

/// Takes snapshot `s`: holds the bucket's lock (no stop, start, replacement or key change
/// meanwhile), pauses its container, streams the archive to the target, unpauses, records the
/// outcome; a scheduled one then prunes the bucket's scheduled snapshots to its policy's `keep`.
pub(super) async fn run(state: &Core, mut s: Snapshot) -> Result<()> {
    // The target wakes (taking its own lock) before the source's lock is held: two snapshots
    // of two sleeping buckets into each other never wait on each other's locks.
    let _target_awake = match state.store.get_bucket(&s.target.bucket_id).await? {
        Some(t) => crate::sleep::awake_for_operation(state, &t).await?,
        None => None,
    };
    let b = match state.lock_bucket_if(&s.bucket_id).await? {
        Some(b) if b.status == BucketStatus::Running && b.kind() == BucketKind::Managed => b,
        _ => return fail(state, None, s, "the bucket is no longer running".into()).await,
    };
    let Some(t) = state.store.get_bucket(&s.target.bucket_id).await? else {
        return fail(state, Some(&b), s, "the target bucket is gone".into()).await;
    };
    s.status = SnapshotStatus::Running;
    s.format = super::sealed::FORMAT;
    // What the engine's user table in the archive holds: live keys and revoked ones it has not
    // yet forgotten. A restore removes those the bucket no longer has.
    s.keys = b
        .keys
        .iter()
        .map(|k| SnapshotKey {
            user: k.engine_user(),
            access_key: k.access_key.clone(),
        })
        .chain(b.revoke_pending.iter().map(|p| SnapshotKey {
            user: p.user.clone(),
            access_key: p.access_key.clone(),
        }))
        .collect();
    state.store.put_snapshot(&s).await?;
    event(state, &b, &s, format!("snapshot {} running", s.id));
    let meter = Meter::new(state, &b, format!("snapshot {}", s.id));
    let recorder = meter.record_while_running(&s.id, false);
    let started = Instant::now();
    let outcome = archive(state, &b, &t, &s, &meter).await;
    s.paused_millis = Some(started.elapsed().as_millis() as u64);
    recorder.stop().await;
    match outcome {
        Ok(written) => {
            let size = written.bytes;
            crate::usage::adjust(state, &t, 1, size as i64).await?;
            s.status = SnapshotStatus::Done;
            s.bytes_done = size;
            s.size_bytes = Some(size);
            s.sha256 = Some(written.sha256);
            s.finished_at = Some(now());
            state.store.put_snapshot(&s).await?;
            event(
                state,
                &b,
                &s,
                format!(
                    "snapshot {} done: {size} bytes, container paused {} ms",
                    s.id,
                    s.paused_millis.unwrap_or(0)
                ),
            );
            let mut b = b;
            b.latest_snapshot_at = s.finished_at.clone();
            b.write().await?;
            let b = b.unlock();
            if s.scheduled {
                super::schedule::prune(state, &b).await?;
            }
            Ok(())
        }
        Err(e) => {
            tracing::warn!(bucket = %b.id, snapshot = %s.id, error = %e, "snapshot failed");
            fail(state, Some(&b), s, format!("the snapshot failed: {e}")).await
        }
    }
}

/// Has the runtime archive the bucket's volume into the target (the server frozen or stopped
/// meanwhile, running again afterwards), sealed with a key of its own: the target's readers
/// must learn nothing from it.
async fn archive(
    state: &Core,
    b: &BucketRecord,
    t: &BucketRecord,
    s: &Snapshot,
    meter: &Meter,
) -> Result<JobOutcome> {
    // The target takes the archive awake (a sleeping one wakes), and stays so while it streams.
    let awake = crate::sleep::awake_for_operation(state, t).await?;
    let target = crate::clients::s3(state, t)?;
    // An upload into the target as far as its recounts go: the parts of the archive already
    // sent are not counted as objects of its own while the archive is written.
    let _in_flight = state.pending_usage.upload_started(&t.id);
    let seal = super::sealed::seal_key(&state.master_key, &b.id, &s.id)?;
    let m = meter.clone();
    let job = ArchiveJob {
        target: ArchiveTarget {
            client: target,
            presigner: crate::clients::internal_presigner(state, t)?,
            key: s.target.key.clone(),
        },
        seal,
        progress: Arc::new(move |n| {
            if let Some(a) = &awake {
                a.touch();
            }
            m.observe(n)
        }),
    };
    let spec = lifecycle::spec_for(state, b)?;
    Ok(state.runtime.archive(&spec, job).await?)
}
