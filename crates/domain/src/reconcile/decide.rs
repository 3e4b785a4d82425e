//! Reconcile decisions: what to do with a bucket given its record (desired state) and what
//! Docker shows (actual state). Pure functions, so every case is unit-tested without Docker;
//! `mod.rs` carries them out against the real one.

use kalpana_manager_core::{ContainerAction, ContainerState};

use crate::model::{BucketKind, BucketRecord, BucketStatus, Phase};

/// How a status message says the daemon is bringing a dead container back.
pub const RESTARTING: &str = "restarting it";

/// What a bucket's record asks of reconcile, before Docker is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Nothing (an external bucket, or a bucket in ERROR waiting for its owner).
    Nothing,
    /// Finish a delete the daemon began.
    FinishDelete,
    /// Finish provisioning (a create the daemon died in).
    Provision,
    /// Make the container of the record's generation run.
    ConvergeRunning,
    /// Make sure no container runs, and finish a stop.
    ConvergeStopped,
    /// A RUNNING bucket asleep: its container of the record's generation exists, stopped.
    ConvergeAsleep,
}

/// The plan for a record.
pub fn plan(b: &BucketRecord) -> Plan {
    if b.kind() != BucketKind::Managed {
        return Plan::Nothing;
    }
    if b.deleting {
        return Plan::FinishDelete;
    }
    match b.status {
        BucketStatus::Creating => Plan::Provision,
        BucketStatus::Running if b.asleep() => Plan::ConvergeAsleep,
        BucketStatus::Running => Plan::ConvergeRunning,
        BucketStatus::Stopped => Plan::ConvergeStopped,
        BucketStatus::Error => Plan::Nothing,
    }
}

/// What a RUNNING bucket needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunningStep {
    /// Serving as it should.
    Serving,
    /// Serving again after Docker's restart policy brought it back: clear the restart phase.
    BackUp,
    /// Not serving: bring it back, for this reason.
    BringBack(String),
}

/// Decides for a RUNNING bucket whose container Docker shows as `actual`.
pub fn running(b: &BucketRecord, actual: Option<&ContainerState>) -> RunningStep {
    let current = actual.is_some_and(|c| c.is_current(b.generation));
    if current && actual.is_some_and(|c| c.running) {
        return if b.phase == Some(Phase::Restarting) {
            RunningStep::BackUp
        } else {
            RunningStep::Serving
        };
    }
    RunningStep::BringBack(match actual {
        None => "container was removed".to_string(),
        Some(_) if !current => "container was of an older configuration".to_string(),
        Some(c) if c.oom_killed => "container was OOM-killed".to_string(),
        Some(c) => format!("container exited (code {})", c.exit_code.unwrap_or(-1)),
    })
}

/// What a STOPPED bucket needs; several may apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoppedSteps {
    /// The container is of an older configuration: replace it (not started).
    pub replace: bool,
    /// The container runs: stop it.
    pub stop: bool,
    /// A stop was under way: record it finished.
    pub finish_stop: bool,
}

/// Decides for a STOPPED bucket whose container Docker shows as `actual`.
pub fn stopped(b: &BucketRecord, actual: Option<&ContainerState>) -> StoppedSteps {
    let Some(c) = actual else {
        // Start recreates it on the kept volume.
        return StoppedSteps::default();
    };
    if !c.is_current(b.generation) {
        return StoppedSteps {
            replace: true,
            ..Default::default()
        };
    }
    StoppedSteps {
        replace: false,
        stop: c.running,
        finish_stop: b.phase == Some(Phase::Stopping),
    }
}

/// What a sleeping bucket needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsleepStep {
    /// Its container is there, current and stopped.
    Asleep,
    /// Its container is missing or of an older configuration: made anew, not started.
    Remake,
    /// Its container runs (a wake the daemon died in, or a start by hand): record it awake.
    Woken,
}

/// Decides for a sleeping bucket whose container the runtime shows as `actual`.
pub fn asleep(b: &BucketRecord, actual: Option<&ContainerState>) -> AsleepStep {
    match actual {
        Some(c) if c.is_current(b.generation) && c.running => AsleepStep::Woken,
        Some(c) if c.is_current(b.generation) => AsleepStep::Asleep,
        _ => AsleepStep::Remake,
    }
}

/// Whether a container event about `event_container` should mark the bucket as down: only for
/// a RUNNING bucket, and only when it is about the bucket's current container (one the daemon
/// replaced itself dies too).
pub fn event_marks_down(
    b: &BucketRecord,
    event_container: &str,
    current: Option<&ContainerState>,
) -> bool {
    b.status == BucketStatus::Running
        && !b.deleting
        && current.is_none_or(|c| c.id == event_container)
}

/// Why a bucket container went down, in words: an OOM kill names the memory limit (Docker sends
/// `oom` and then `die`, and the `die` must not hide the reason).
pub fn down_reason(
    action: ContainerAction,
    exit_code: Option<i64>,
    oom_killed: bool,
    limit_bytes: i64,
) -> String {
    match action {
        ContainerAction::Oom => {}
        ContainerAction::Die if oom_killed => {}
        ContainerAction::Destroy => return "container was removed".to_string(),
        _ => return format!("container exited (code {})", exit_code.unwrap_or(-1)),
    }
    format!("out of memory (limit {} MiB)", limit_bytes / (1024 * 1024))
}

/// How long to wait before retrying a bucket whose reconcile failed `failures` times in a row:
/// 1 s, 2 s, 4 s … at most 60 s.
pub fn backoff(failures: u32) -> std::time::Duration {
    std::time::Duration::from_secs(1u64 << failures.saturating_sub(1).min(6))
        .min(std::time::Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalpana_manager_core::spec::SPEC_REVISION;

    fn record(status: BucketStatus) -> BucketRecord {
        let mut b = crate::store::suite::bucket("u1", "photos", &[40001]);
        b.status = status;
        b.generation = 3;
        b
    }

    fn container(running: bool, generation: u64) -> ContainerState {
        ContainerState {
            id: "c1".into(),
            name: "kalpana-bucket-x".into(),
            bucket_id: Some("x".into()),
            running,
            status: if running { "running" } else { "exited" }.into(),
            exit_code: Some(if running { 0 } else { 137 }),
            oom_killed: false,
            generation: Some(generation),
            addresses: Default::default(),
            spec_revision: Some(SPEC_REVISION),
            node: None,
            node_id: None,
        }
    }

    #[test]
    fn plans_follow_the_record() {
        assert_eq!(plan(&record(BucketStatus::Creating)), Plan::Provision);
        assert_eq!(plan(&record(BucketStatus::Running)), Plan::ConvergeRunning);
        assert_eq!(plan(&record(BucketStatus::Stopped)), Plan::ConvergeStopped);
        assert_eq!(plan(&record(BucketStatus::Error)), Plan::Nothing);
        let mut deleting = record(BucketStatus::Running);
        deleting.deleting = true;
        assert_eq!(plan(&deleting), Plan::FinishDelete);
        let mut external = record(BucketStatus::Running);
        external.backend = crate::model::Backend::External(crate::model::ExternalTarget {
            provider: crate::model::Provider::Other,
            endpoint: "https://s3.example.com".into(),
            bucket_name: "remote".into(),
            path_style: true,
            account_id: None,
        });
        assert_eq!(plan(&external), Plan::Nothing);
        external.deleting = true;
        assert_eq!(plan(&external), Plan::Nothing, "no container to delete");
    }

    #[test]
    fn a_running_bucket_is_brought_back_for_each_reason() {
        let b = record(BucketStatus::Running);
        assert_eq!(running(&b, Some(&container(true, 3))), RunningStep::Serving);
        assert_eq!(
            running(&b, None),
            RunningStep::BringBack("container was removed".into())
        );
        assert_eq!(
            running(&b, Some(&container(true, 2))),
            RunningStep::BringBack("container was of an older configuration".into())
        );
        let mut old_spec = container(true, 3);
        old_spec.spec_revision = Some(SPEC_REVISION - 1);
        assert_eq!(
            running(&b, Some(&old_spec)),
            RunningStep::BringBack("container was of an older configuration".into())
        );
        assert_eq!(
            running(&b, Some(&container(false, 3))),
            RunningStep::BringBack("container exited (code 137)".into())
        );
        let mut oom = container(false, 3);
        oom.oom_killed = true;
        assert_eq!(
            running(&b, Some(&oom)),
            RunningStep::BringBack("container was OOM-killed".into())
        );
    }

    #[test]
    fn a_restart_docker_finished_first_is_recorded_as_back_up() {
        let mut b = record(BucketStatus::Running);
        b.phase = Some(Phase::Restarting);
        assert_eq!(running(&b, Some(&container(true, 3))), RunningStep::BackUp);
    }

    #[test]
    fn a_stopped_bucket_never_keeps_a_running_container() {
        let b = record(BucketStatus::Stopped);
        assert_eq!(stopped(&b, None), StoppedSteps::default());
        assert_eq!(
            stopped(&b, Some(&container(true, 3))),
            StoppedSteps {
                stop: true,
                ..Default::default()
            }
        );
        assert_eq!(
            stopped(&b, Some(&container(false, 3))),
            StoppedSteps::default()
        );
        assert_eq!(
            stopped(&b, Some(&container(false, 1))),
            StoppedSteps {
                replace: true,
                ..Default::default()
            }
        );
        let mut stopping = b.clone();
        stopping.phase = Some(Phase::Stopping);
        assert_eq!(
            stopped(&stopping, Some(&container(true, 3))),
            StoppedSteps {
                stop: true,
                finish_stop: true,
                replace: false
            }
        );
        let mut legacy = b;
        legacy.status_message = Some(crate::lifecycle::STOPPING.into());
        assert!(
            !stopped(&legacy, Some(&container(false, 3))).finish_stop,
            "the message is never read back: the start-up migration sets the phase"
        );
    }

    #[test]
    fn a_sleeping_bucket_keeps_a_stopped_current_container() {
        let mut b = record(BucketStatus::Running);
        b.sleep = Some(crate::model::SleepRecord {
            asleep: true,
            ..Default::default()
        });
        assert_eq!(plan(&b), Plan::ConvergeAsleep);
        assert_eq!(asleep(&b, Some(&container(false, 3))), AsleepStep::Asleep);
        assert_eq!(asleep(&b, Some(&container(true, 3))), AsleepStep::Woken);
        assert_eq!(asleep(&b, Some(&container(false, 2))), AsleepStep::Remake);
        assert_eq!(asleep(&b, None), AsleepStep::Remake);
        b.status = BucketStatus::Stopped;
        assert_eq!(plan(&b), Plan::ConvergeStopped, "a stop wins over sleep");
    }

    #[test]
    fn only_events_about_the_current_container_of_a_running_bucket_count() {
        let b = record(BucketStatus::Running);
        let current = container(false, 3);
        assert!(event_marks_down(&b, "c1", Some(&current)));
        assert!(event_marks_down(&b, "c1", None), "removed");
        assert!(!event_marks_down(&b, "old", Some(&current)), "replaced");
        assert!(!event_marks_down(
            &record(BucketStatus::Stopped),
            "c1",
            Some(&current)
        ));
        let mut deleting = b;
        deleting.deleting = true;
        assert!(!event_marks_down(&deleting, "c1", Some(&current)));
    }

    #[test]
    fn an_oom_kill_is_named_with_the_limit() {
        let limit = 512 * 1024 * 1024;
        assert_eq!(
            down_reason(ContainerAction::Oom, None, false, limit),
            "out of memory (limit 512 MiB)"
        );
        assert_eq!(
            down_reason(ContainerAction::Die, Some(137), true, limit),
            "out of memory (limit 512 MiB)",
            "the die after an oom keeps the reason"
        );
        assert_eq!(
            down_reason(ContainerAction::Die, Some(137), false, limit),
            "container exited (code 137)"
        );
        assert_eq!(
            down_reason(ContainerAction::Destroy, None, false, limit),
            "container was removed"
        );
    }

    #[test]
    fn retries_back_off_to_a_minute() {
        let secs: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
