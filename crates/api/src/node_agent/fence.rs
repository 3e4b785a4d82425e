//! Fencing: an agent whose heartbeats the acting daemon has not acknowledged for
//! `KALPANA_FENCE_SECS` stops its node's bucket containers, and keeps them stopped while that
//! lasts, so that a node cut off from the daemon never serves a bucket the daemon may bring
//! back elsewhere (`KALPANA_NODE_LOST_SECS` later). Swarm restarts nothing while the node is
//! cut off from its manager; once heartbeats are acknowledged again the agent stops fencing and
//! Swarm puts back whatever is still pinned here.
//!
//! Caveat: a node whose agent is dead but whose containers still serve cannot fence itself; the
//! daemon waits out the fencing time and a margin before it evacuates, and Swarm stops the old
//! tasks when the node reaches its manager again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kalpana_manager_core::DockerClient;

/// How often the agent checks whether it must fence.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// When a heartbeat was last acknowledged (milliseconds since the agent started).
#[derive(Clone)]
pub(super) struct Acked {
    start: Instant,
    at_ms: Arc<AtomicU64>,
}

impl Acked {
    /// Counted as acknowledged now: an agent that starts gets a whole fencing time.
    pub(super) fn now() -> Self {
        Acked {
            start: Instant::now(),
            at_ms: Arc::default(),
        }
    }

    /// A heartbeat was acknowledged.
    pub(super) fn mark(&self) {
        self.at_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::SeqCst);
    }

    /// How long no heartbeat has been acknowledged.
    pub(super) fn silence(&self) -> Duration {
        let at = Duration::from_millis(self.at_ms.load(Ordering::SeqCst));
        self.start.elapsed().saturating_sub(at)
    }
}

/// Fences the node whenever heartbeats go unacknowledged for `after`.
pub(super) async fn run(docker: DockerClient, node: String, acked: Acked, after: Duration) {
    let mut fenced = false;
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let silence = acked.silence();
        if silence < after {
            if fenced {
                fenced = false;
                tracing::warn!(node = %node, "heartbeats are acknowledged again: fence lifted");
            }
            continue;
        }
        if !fenced {
            fenced = true;
            tracing::error!(node = %node, silent_secs = silence.as_secs(), "no heartbeat acknowledged for the fencing time: stopping this node's bucket containers");
        }
        stop_buckets(&docker, &node).await;
    }
}

/// Stops every running bucket container here (at once: a cut-off node must stop serving).
async fn stop_buckets(docker: &DockerClient, node: &str) {
    let running = match docker.list_managed_containers().await {
        Ok(list) => list
            .into_iter()
            .filter(|c| c.running && c.bucket_id.is_some()),
        Err(e) => {
            tracing::warn!(node = %node, error = %e, "listing bucket containers to fence failed");
            return;
        }
    };
    for c in running {
        match docker.stop_container(&c.name, Duration::from_secs(1)).await {
            Ok(()) => {
                tracing::warn!(node = %node, bucket = c.bucket_id.as_deref().unwrap_or(""), container = %c.name, "fenced: bucket container stopped")
            }
            Err(e) => {
                tracing::warn!(node = %node, container = %c.name, error = %e, "fencing a bucket container failed")
            }
        }
    }
}
