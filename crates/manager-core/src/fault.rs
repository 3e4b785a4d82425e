//! Named fault points for crash tests. With `KALPANA_FAULT_POINT=<name>` the daemon kills itself
//! with SIGKILL the moment it reaches that point, so a test can crash it after any step of a
//! lifecycle operation, deterministically, and check what the restarted daemon makes of it.

use std::sync::OnceLock;

use crate::error::{Error, Result};

/// Every fault point, in the order the operations reach them.
pub const POINTS: &[&str] = &[
    // create: the CREATING record is written, provisioning not begun
    "create.recorded",
    // provisioning: volume made; container made and recorded; container up and S3 bucket made
    "provision.volume",
    "provision.container",
    "provision.ready",
    // start: container serving, RUNNING not yet recorded
    "start.running",
    // stop: STOPPED ("stopping") recorded first, container stopped, the note not yet cleared
    "stop.stopped",
    // delete: deletion mark written; container removed, volume and record not yet
    "delete.marked",
    "delete.container",
    // rotation and domain links: new configuration recorded, container not yet replaced
    "rotate.recorded",
    "link.recorded",
    // container replacement: old one stopped; removed; new one created, not started
    "replace.stopped",
    "replace.removed",
    "replace.created",
    // snapshot: the container paused, its archive not yet read
    "snapshot.paused",
    // restore: the archive staged and checked, the swap recorded; the bucket's volume removed,
    // not yet made anew from the staging volume
    "restore.staged",
    "restore.emptied",
    // sleep: the container stopped, the record not yet asleep
    "sleep.stopped",
    // wake: the container started and answering, the record not yet awake
    "wake.started",
];

fn wanted() -> Option<&'static str> {
    static WANTED: OnceLock<Option<String>> = OnceLock::new();
    WANTED
        .get_or_init(|| std::env::var("KALPANA_FAULT_POINT").ok())
        .as_deref()
}

/// Refuses a `KALPANA_FAULT_POINT` that names no point, so a typo cannot make a crash test pass.
pub fn check_config() -> Result<()> {
    match wanted() {
        Some(p) if !POINTS.contains(&p) => Err(Error::InvalidConfig(format!(
            "KALPANA_FAULT_POINT={p:?} is not a fault point (known: {})",
            POINTS.join(", ")
        ))),
        Some(p) => {
            tracing::warn!(
                point = p,
                "fault point armed: the daemon will kill itself there"
            );
            Ok(())
        }
        None => Ok(()),
    }
}

/// Dies at once, as under `kill -9`, when `name` is the armed fault point.
pub fn point(name: &'static str) {
    debug_assert!(POINTS.contains(&name), "unknown fault point {name}");
    if wanted() == Some(name) {
        tracing::error!(point = name, "fault point reached: killing the daemon");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
        // SIGKILL cannot be caught; this is only reached if sending it failed.
        std::process::abort();
    }
}
