//! Snapshots on a schedule: a bucket's `snapshotPolicy {everyHours, keep, targetBucketId?}`
//! takes one whenever the last scheduled one is `everyHours` old, and keeps the newest `keep`
//! that succeeded (older ones are deleted with their archives; failed ones once a newer one
//! succeeded). Snapshots taken by hand are never pruned.

use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::access::{Access, Caller};
use crate::context::Core;
use crate::error::{Error, Result};
use crate::events::{BucketEvent, EventKind};
use crate::lifecycle;
use crate::model::{BucketKind, BucketRecord, BucketStatus};

use super::model::{Snapshot, SnapshotStatus};
use super::MAX_PER_BUCKET;

pub use crate::model::SnapshotPolicy;

/// Checks a policy asked for on bucket `bucket_id` by `caller`: sane numbers, and a target the
/// caller can write to (or the configured snapshot bucket).
pub async fn check(
    state: &Core,
    caller: &Caller,
    bucket_id: Option<&str>,
    p: &SnapshotPolicy,
) -> Result<()> {
    let min = state.config.snapshot_min_every.as_secs_f64();
    if !p.every_hours.is_finite() || p.every_hours * 3600.0 < min || p.every_hours > 24.0 * 366.0 {
        return Err(Error::Invalid(format!(
            "snapshotPolicy.everyHours must be between {} and 8784 hours",
            min / 3600.0
        )));
    }
    if p.keep == 0 || p.keep as usize > MAX_PER_BUCKET {
        return Err(Error::Invalid(format!(
            "snapshotPolicy.keep must be between 1 and {MAX_PER_BUCKET}"
        )));
    }
    match (&p.target_bucket_id, &state.config.snapshot_bucket) {
        (Some(t), _) if Some(t.as_str()) == bucket_id => Err(Error::Invalid(
            "a bucket cannot hold its own snapshots: give another targetBucketId".into(),
        )),
        (Some(t), _) => lifecycle::authorized(state, caller, t, Access::Write)
            .await
            .map(|_| ()),
        (None, Some(_)) => Ok(()),
        (None, None) => Err(Error::Invalid(
            "snapshotPolicy.targetBucketId is required (no KALPANA_SNAPSHOT_BUCKET is configured)"
                .into(),
        )),
    }
}

fn created(s: &Snapshot) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(&s.created_at, &Rfc3339).ok()
}

/// Whether a bucket with `policy` and these snapshots is due for a scheduled one at `now`.
pub fn due(policy: &SnapshotPolicy, snapshots: &[Snapshot], now: OffsetDateTime) -> bool {
    let last = snapshots
        .iter()
        .filter(|s| s.scheduled)
        .filter_map(created)
        .max();
    last.is_none_or(|t| (now - t).as_seconds_f64() >= policy.every_hours * 3600.0)
}

/// The scheduled snapshots beyond `keep`: successful ones older than the newest `keep`, failed
/// ones older than the newest success.
pub fn beyond_keep(keep: u32, snapshots: &[Snapshot]) -> Vec<Snapshot> {
    let mut done: Vec<&Snapshot> = snapshots
        .iter()
        .filter(|s| s.scheduled && s.status == SnapshotStatus::Done && s.restore.is_none())
        .collect();
    done.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    let newest_done = done.first().map(|s| s.created_at.clone());
    let mut out: Vec<Snapshot> = done.into_iter().skip(keep as usize).cloned().collect();
    if let Some(newest) = newest_done {
        out.extend(
            snapshots
                .iter()
                .filter(|s| {
                    s.scheduled && s.status == SnapshotStatus::Failed && s.created_at < newest
                })
                .cloned(),
        );
    }
    out
}

/// Deletes the bucket's scheduled snapshots beyond its policy's `keep`.
pub async fn prune(state: &Core, b: &BucketRecord) -> Result<()> {
    let Some(policy) = state
        .store
        .get_bucket(&b.id)
        .await?
        .and_then(|b| b.snapshot_policy)
    else {
        return Ok(());
    };
    let all = state.store.list_snapshots(Some(&b.id)).await?;
    for s in beyond_keep(policy.keep, &all) {
        match super::remove(state, &s).await {
            Ok(()) => {
                tracing::info!(bucket = %b.id, snapshot = %s.id, keep = policy.keep, "scheduled snapshot pruned");
                state.events.publish(BucketEvent::of(
                    EventKind::Snapshot,
                    b,
                    Some(format!("snapshot {} pruned (keep {})", s.id, policy.keep)),
                ));
            }
            Err(e) => {
                tracing::warn!(bucket = %b.id, snapshot = %s.id, error = %e, "pruning a scheduled snapshot failed")
            }
        }
    }
    Ok(())
}

/// One pass: a scheduled snapshot for every running bucket whose policy says it is due.
pub async fn tick(state: &Core) -> Result<()> {
    let now = OffsetDateTime::now_utc();
    for b in crate::store::all_buckets(&*state.store).await? {
        let Some(policy) = b.snapshot_policy.clone() else {
            continue;
        };
        if b.status != BucketStatus::Running || b.kind() != BucketKind::Managed || b.deleting {
            continue;
        }
        let snapshots = state.store.list_snapshots(Some(&b.id)).await?;
        if !due(&policy, &snapshots, now) || super::busy(&snapshots) {
            continue;
        }
        let target_id = policy
            .target_bucket_id
            .clone()
            .or_else(|| state.config.snapshot_bucket.clone());
        let target = match target_id {
            Some(id) => state.store.get_bucket(&id).await?,
            None => None,
        };
        let outcome = match target {
            Some(t) if t.status == BucketStatus::Running && !t.over_quota => {
                super::accept(state, &b, &t, &b.user_id, Some("scheduled".into()), true)
                    .await
                    .map(|_| ())
            }
            Some(t) => Err(Error::Conflict(format!(
                "the snapshot bucket {} is not running or is over its quota",
                t.name
            ))),
            None => Err(Error::Unprocessable(
                "the policy's snapshot bucket is gone".into(),
            )),
        };
        if let Err(e) = outcome {
            tracing::warn!(bucket = %b.id, error = %e, "a scheduled snapshot could not start");
            state.events.publish(BucketEvent::of(
                EventKind::Snapshot,
                &b,
                Some(format!("scheduled snapshot not taken: {e}")),
            ));
        }
    }
    Ok(())
}

/// Runs [`tick`] every `KALPANA_SNAPSHOT_TICK_SECS`.
pub fn spawn(state: Core) {
    let core = state.clone();
    core.tasks.spawn_loop("snapshot schedule", async move {
        let every: Duration = state.config.snapshot_tick;
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = tick(&state).await {
                tracing::warn!(error = %e, "the snapshot schedule pass failed");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshots::model::SnapshotTarget;

    fn snap(id: &str, at: &str, status: SnapshotStatus, scheduled: bool) -> Snapshot {
        Snapshot {
            id: id.into(),
            bucket_id: "b".into(),
            user_id: "u".into(),
            status,
            bytes_done: 0,
            size_bytes: None,
            sha256: None,
            target: SnapshotTarget {
                bucket_id: "t".into(),
                key: "k".into(),
            },
            note: None,
            created_at: at.into(),
            finished_at: None,
            message: None,
            paused_millis: None,
            keys: Vec::new(),
            scheduled,
            restore: None,
            format: 2,
        }
    }

    fn policy(every_hours: f64, keep: u32) -> SnapshotPolicy {
        SnapshotPolicy {
            every_hours,
            keep,
            target_bucket_id: None,
        }
    }

    #[test]
    fn a_snapshot_is_due_when_the_last_scheduled_one_is_old_enough() {
        let now = OffsetDateTime::parse("2026-01-01T12:00:00Z", &Rfc3339).expect("time");
        assert!(due(&policy(1.0, 3), &[], now));
        let recent = snap("a", "2026-01-01T11:30:00Z", SnapshotStatus::Done, true);
        assert!(!due(&policy(1.0, 3), std::slice::from_ref(&recent), now));
        assert!(due(&policy(0.5, 3), &[recent], now));
        // Snapshots taken by hand do not move the schedule.
        let manual = snap("m", "2026-01-01T11:59:00Z", SnapshotStatus::Done, false);
        assert!(due(&policy(1.0, 3), &[manual], now));
    }

    #[test]
    fn pruning_keeps_the_newest_successes_and_never_manual_ones() {
        let all = vec![
            snap("s1", "2026-01-01T01:00:00Z", SnapshotStatus::Done, true),
            snap("s2", "2026-01-01T02:00:00Z", SnapshotStatus::Failed, true),
            snap("s3", "2026-01-01T03:00:00Z", SnapshotStatus::Done, true),
            snap("m1", "2026-01-01T00:00:00Z", SnapshotStatus::Done, false),
            snap("s4", "2026-01-01T04:00:00Z", SnapshotStatus::Done, true),
            snap("s5", "2026-01-01T05:00:00Z", SnapshotStatus::Running, true),
        ];
        let mut gone: Vec<String> = beyond_keep(2, &all).into_iter().map(|s| s.id).collect();
        gone.sort();
        assert_eq!(gone, vec!["s1", "s2"]);
        assert!(beyond_keep(5, &all).iter().all(|s| s.id == "s2"));
    }
}
