//! The loop that puts idle buckets to sleep: every second, each awake bucket with a sleep
//! setting and no client activity (no byte moved, no API call) for that long is put to sleep. It reads the store
//! only for the buckets it is about to put to sleep.

use std::time::Duration;

use super::SleepState;
use crate::context::Core;
use crate::error::Error;

/// How often idle buckets are looked for.
const TICK: Duration = Duration::from_secs(1);

/// Starts the idle loop under the supervisor.
pub fn spawn_idle_loop(core: Core) {
    let state = core.clone();
    core.tasks.spawn_loop("sleep on idle", async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            round(&state).await;
        }
    });
}

async fn round(core: &Core) {
    let mut asleep = 0u64;
    let mut held = 0usize;
    for (id, gate) in core.sleep.all() {
        held += gate.held();
        if gate.state() != SleepState::Awake {
            asleep += 1;
            continue;
        }
        let after = gate.after().unwrap_or(core.config.sleep_after_secs);
        // Users are not looked at: a kept-alive connection between requests counts as one and
        // lets go when the bucket goes to sleep; a request in flight makes the sleep wait (and
        // give up after a while).
        if after == 0 || gate.idle_ms() < after.saturating_mul(1000) {
            continue;
        }
        match super::put_to_sleep(core, &id, &format!("no request for {after} s")).await {
            Ok(true) => asleep += 1,
            Ok(false) => {}
            // Not RUNNING, attachments, in use again: it stays awake; looked at again later.
            Err(Error::Conflict(why)) => {
                tracing::debug!(bucket = %id, reason = %why, "idle bucket stays awake");
                gate.touch();
            }
            Err(Error::NotFound(_)) => core.sleep.forget(&id),
            Err(e) => {
                tracing::warn!(bucket = %id, error = %e, "putting an idle bucket to sleep failed");
                gate.touch();
            }
        }
    }
    core.metrics
        .set("kalpana_buckets_asleep", &[], asleep as f64);
    core.metrics.set("kalpana_requests_held", &[], held as f64);
}
