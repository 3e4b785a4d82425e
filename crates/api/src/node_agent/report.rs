//! The agent's reports: its host and its running bucket containers, every couple of seconds
//! (the heartbeat), the containers sampled every few reports.

use std::time::{Duration, Instant};

use futures::StreamExt;
use kalpana_manager_core::node_hub::REPORT_EVERY;
use kalpana_manager_core::node_protocol::{ContainerSample, NodeReport, ReportAck, MAX_SAMPLES};
use kalpana_manager_core::DockerClient;

use super::Link;

/// How often the containers are sampled (each sample asks Docker for a second or so).
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// Longest a report may take, shared between the daemons it tries: a cut-off daemon must not
/// hold the heartbeat up.
const REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Reports forever; each acknowledged report is noted in `acked`.
pub(super) async fn run(
    link: Link,
    docker: DockerClient,
    node: String,
    acked: super::fence::Acked,
) {
    let mut tick = tokio::time::interval(REPORT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sampled: Option<Instant> = None;
    let mut failing = false;
    loop {
        tick.tick().await;
        let mut report = NodeReport {
            node_id: node.clone(),
            host: None,
            engine_ok: false,
            engine_error: None,
            containers: Vec::new(),
        };
        match docker.host_info().await {
            Ok(mut h) => {
                let (free, total) = disk(&h.docker_root);
                h.disk_free_bytes = free;
                h.disk_total_bytes = total;
                report.host = Some(h);
                report.engine_ok = true;
            }
            Err(e) => report.engine_error = Some(e.to_string()),
        }
        if report.engine_ok && sampled.is_none_or(|t| t.elapsed() >= SAMPLE_EVERY) {
            sampled = Some(Instant::now());
            report.containers = samples(&docker).await;
        }
        let sent = link
            .post_within::<_, ReportAck>("/api/fleet/stats", &report, REPORT_TIMEOUT)
            .await;
        // Measured before this acknowledgement counts: how close the node came to fencing.
        let unacked = acked.silence();
        if sent.is_ok() {
            acked.mark();
        }
        match sent {
            Ok(_) if failing => {
                failing = false;
                tracing::info!(node = %node, unacked_ms = unacked.as_millis() as u64,
                    "reports reach the daemon again");
            }
            Ok(_) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(node = %node, error = %e, "a report did not reach the daemon");
            }
            Err(_) => {}
        }
    }
}

/// Samples of the running bucket containers (Swarm tasks carry the bucket's labels).
async fn samples(docker: &DockerClient) -> Vec<ContainerSample> {
    let running: Vec<(String, String)> = match docker.list_managed_containers().await {
        Ok(list) => list
            .into_iter()
            .filter(|c| c.running)
            .filter_map(|c| Some((c.name, c.bucket_id?)))
            .take(MAX_SAMPLES)
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "listing bucket containers failed");
            return Vec::new();
        }
    };
    futures::stream::iter(running)
        .map(|(name, bucket_id)| async move {
            match docker.container_stats(&name).await {
                Ok(Some(stats)) => Some(ContainerSample { bucket_id, stats }),
                _ => None,
            }
        })
        .buffer_unordered(16)
        .filter_map(|s| async move { s })
        .collect()
        .await
}

/// Free and total bytes of the file system holding `path`, when it can be seen from here.
fn disk(path: &str) -> (Option<u64>, Option<u64>) {
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) => {
            let frag = s.fragment_size();
            (Some(s.blocks_available() * frag), Some(s.blocks() * frag))
        }
        Err(_) => (None, None),
    }
}
