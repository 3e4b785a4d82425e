//! Start-up migrations of stored records, run on either store before anything else reads them;
//! each is idempotent, so every start runs them all.
//!
//! - `workspaceId` strings of v1 records become workspaces ([`crate::workspaces::migrate_links`]).
//! - Sub-states that records written before phases existed kept only in `statusMessage` (a
//!   stop under way: `stopping`; a server being brought back: `…; restarting it`) become the
//!   typed [`Phase`], so that nothing reads them back out of the message afterwards.

use crate::context::Core;
use crate::error::Result;
use crate::model::{BucketRecord, BucketStatus, Phase};
use crate::reconcile::decide::RESTARTING;

/// Runs every migration.
pub async fn run(state: &Core) -> Result<()> {
    crate::workspaces::migrate_links(state).await?;
    let mut moved = 0;
    for b in crate::store::all_buckets(state.store.as_ref()).await? {
        let Some(mut locked) = state.lock_bucket_if(&b.id).await? else {
            continue;
        };
        if phase_from_message(&mut locked.record) {
            locked.write().await?;
            moved += 1;
        }
    }
    if moved > 0 {
        tracing::info!(
            buckets = moved,
            "sub-states kept in status messages moved to the phase"
        );
    }
    Ok(())
}

/// Sets the phase a record written before phases kept in its message; whether it changed.
pub fn phase_from_message(b: &mut BucketRecord) -> bool {
    if b.phase.is_some() {
        return false;
    }
    let Some(m) = b.status_message.as_deref() else {
        return false;
    };
    if b.status == BucketStatus::Stopped && m == crate::lifecycle::STOPPING {
        b.phase = Some(Phase::Stopping);
        return true;
    }
    if b.status == BucketStatus::Running {
        if let Some(why) = m.strip_suffix(RESTARTING) {
            b.down_reason = Some(why.trim_end_matches([';', ' ']).to_string());
            b.phase = Some(Phase::Restarting);
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as the daemon wrote it before phases (no `phase`, no `downReason`).
    fn old(status: &str, message: &str) -> BucketRecord {
        let mut v =
            serde_json::to_value(crate::store::suite::bucket("u1", "old", &[41000])).expect("json");
        let o = v.as_object_mut().expect("object");
        o.remove("phase");
        o.remove("downReason");
        o.insert("status".into(), status.into());
        o.insert("statusMessage".into(), message.into());
        serde_json::from_value(v).expect("an old record still reads")
    }

    #[test]
    fn sub_states_in_old_messages_become_phases_once() {
        let mut b = old("STOPPED", "stopping");
        assert!(phase_from_message(&mut b));
        assert_eq!(b.phase, Some(Phase::Stopping));
        assert!(!phase_from_message(&mut b), "idempotent");

        let mut b = old("RUNNING", "container exited with code 137; restarting it");
        assert!(phase_from_message(&mut b));
        assert_eq!(b.phase, Some(Phase::Restarting));
        assert_eq!(
            b.down_reason.as_deref(),
            Some("container exited with code 137")
        );

        for (status, message) in [
            ("RUNNING", "stopping"),
            ("STOPPED", "stopped by hand"),
            ("RUNNING", "back up at 12:00"),
        ] {
            let mut b = old(status, message);
            assert!(!phase_from_message(&mut b), "{status} {message}");
            assert_eq!(b.phase, None);
        }
    }
}
