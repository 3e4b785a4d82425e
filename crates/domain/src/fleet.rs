//! Fleet monitoring: every `KALPANA_FLEET_SAMPLE_SECS` one resource sample of each running
//! bucket container and of the Docker host, kept in memory for `KALPANA_FLEET_RETENTION_HOURS`
//! (a restart starts the series afresh). Containers are sampled concurrently (32 at a time),
//! each with its own time limit, and a container still being sampled is skipped, so one slow
//! container never delays the others. CPU percent is computed as `docker stats` does (the container's CPU time
//! over the host's between two samples, times its CPUs); network and block counters are
//! cumulative, with rates from the previous sample.
//!
//! Memory: about 120 bytes a sample, 2,880 samples a day at the default 30 s: ~350 KB per bucket
//! for 24 hours.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kalpana_manager_core::{cpu_percent, ContainerStats, HostInfo};
use serde::Serialize;
use time::OffsetDateTime;

use crate::context::Core;
use crate::model::{BucketKind, BucketRecord, BucketStatus};
use crate::store::BucketQuery;

/// One sample of a bucket container.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    /// When (RFC 3339).
    pub at: String,
    /// When, in Unix milliseconds.
    pub at_ms: i64,
    /// CPU use since the previous sample, in percent of one CPU (none for the first sample).
    pub cpu_percent: Option<f64>,
    /// Memory in use, without inactive page cache.
    pub memory_bytes: u64,
    /// Memory limit.
    pub memory_limit_bytes: u64,
    /// Bytes received since the container started.
    pub rx_bytes: u64,
    /// Bytes sent since the container started.
    pub tx_bytes: u64,
    /// Receive rate since the previous sample.
    pub rx_bytes_per_sec: Option<f64>,
    /// Send rate since the previous sample.
    pub tx_bytes_per_sec: Option<f64>,
    /// Bytes read from disk since the container started.
    pub block_read_bytes: u64,
    /// Bytes written to disk since the container started.
    pub block_write_bytes: u64,
}

/// One sample of a Docker host (the one engine, or each node of a cluster).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostSample {
    /// When (RFC 3339).
    pub at: String,
    /// The node's id in its cluster (empty for the one engine).
    pub id: String,
    /// Host name.
    pub name: String,
    /// CPUs.
    pub cpus: u64,
    /// Memory.
    pub memory_bytes: u64,
    /// Containers running (all, not only buckets').
    pub containers_running: u64,
    /// Docker's data directory.
    pub docker_root: String,
    /// Free space there, when the daemon can see that directory.
    pub disk_free_bytes: Option<u64>,
    /// Size of that file system.
    pub disk_total_bytes: Option<u64>,
    /// Seconds since the node's agent last reported (cluster nodes only; none: never).
    pub agent_seen_secs_ago: Option<u64>,
    /// Whether the node's Docker engine answered its agent then.
    pub engine_ok: Option<bool>,
    /// What the engine said when it did not.
    pub engine_error: Option<String>,
}

#[derive(Default)]
struct Inner {
    series: HashMap<String, VecDeque<Point>>,
    last: HashMap<String, (Instant, ContainerStats)>,
    in_flight: HashSet<String>,
    hosts: Vec<HostSample>,
}

/// Most container samples asked of Docker at once: enough that a slow container holds up no
/// other, few enough not to flood Docker with a thousand buckets.
const CONCURRENT_SAMPLES: usize = 32;

/// The samples of the fleet.
pub struct Fleet {
    inner: Mutex<Inner>,
    permits: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet {
            inner: Mutex::default(),
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(CONCURRENT_SAMPLES)),
        }
    }
}

impl Fleet {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks a bucket as being sampled; false when it already is.
    fn begin(&self, id: &str) -> bool {
        self.inner().in_flight.insert(id.to_string())
    }

    fn end(&self, id: &str) {
        self.inner().in_flight.remove(id);
    }

    /// Records a sample of bucket `id` taken at `at`.
    pub fn record(&self, id: &str, at: Instant, now: OffsetDateTime, s: ContainerStats) {
        let mut inner = self.inner();
        let prev = inner.last.get(id).cloned();
        let rate = |after: u64, before: u64, secs: f64| {
            (after >= before && secs > 0.0).then(|| (after - before) as f64 / secs)
        };
        let (cpu, rx_rate, tx_rate) = match &prev {
            Some((then, p)) => {
                let secs = at.duration_since(*then).as_secs_f64();
                (
                    cpu_percent(p, &s),
                    rate(s.rx_bytes, p.rx_bytes, secs),
                    rate(s.tx_bytes, p.tx_bytes, secs),
                )
            }
            None => (None, None, None),
        };
        let point = Point {
            at: crate::model::format_time(now),
            at_ms: unix_ms(now),
            cpu_percent: cpu,
            memory_bytes: s.memory_bytes.unwrap_or(0),
            memory_limit_bytes: s.memory_limit_bytes.unwrap_or(0),
            rx_bytes: s.rx_bytes,
            tx_bytes: s.tx_bytes,
            rx_bytes_per_sec: rx_rate,
            tx_bytes_per_sec: tx_rate,
            block_read_bytes: s.block_read_bytes,
            block_write_bytes: s.block_write_bytes,
        };
        inner.last.insert(id.to_string(), (at, s));
        inner
            .series
            .entry(id.to_string())
            .or_default()
            .push_back(point);
    }

    /// Drops samples older than `keep` and series left empty.
    pub fn prune(&self, keep: Duration, now: OffsetDateTime) {
        let cutoff = unix_ms(now - keep);
        let mut inner = self.inner();
        inner.series.retain(|_, points| {
            while points.front().is_some_and(|p| p.at_ms < cutoff) {
                points.pop_front();
            }
            !points.is_empty()
        });
        let live: HashSet<String> = inner.series.keys().cloned().collect();
        inner.last.retain(|id, _| live.contains(id));
    }

    /// The latest sample of a bucket.
    pub fn latest(&self, id: &str) -> Option<Point> {
        self.inner().series.get(id).and_then(|s| s.back().cloned())
    }

    /// A bucket's samples since `since_ms`, at most one per `step` (the last of each step).
    pub fn history(&self, id: &str, since_ms: i64, step: Option<Duration>) -> Vec<Point> {
        let inner = self.inner();
        let Some(series) = inner.series.get(id) else {
            return Vec::new();
        };
        let mut out: Vec<Point> = Vec::new();
        let step_ms = step.map(|s| s.as_millis().max(1) as i64);
        for p in series.iter().filter(|p| p.at_ms >= since_ms) {
            match (step_ms, out.last_mut()) {
                (Some(step), Some(last)) if last.at_ms / step == p.at_ms / step => {
                    *last = p.clone()
                }
                _ => out.push(p.clone()),
            }
        }
        out
    }

    /// The latest sample of every host.
    pub fn hosts(&self) -> Vec<HostSample> {
        self.inner().hosts.clone()
    }

    fn set_hosts(&self, h: Vec<HostSample>) {
        self.inner().hosts = h;
    }
}

/// Free and total bytes of the file system holding `path`, when it can be seen from here.
fn disk_space(path: &str) -> (Option<u64>, Option<u64>) {
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) => {
            let frag = s.fragment_size();
            (Some(s.blocks_available() * frag), Some(s.blocks() * frag))
        }
        Err(_) => (None, None),
    }
}

async fn sample_host(state: &Core, fleet: &Fleet) {
    match crate::lifecycle::hosts(state).await {
        Ok(hosts) => {
            let at = crate::model::now();
            fleet.set_hosts(hosts.into_iter().map(|h| host_sample(&at, h)).collect());
        }
        Err(e) => tracing::warn!(error = %e, "sampling the hosts failed"),
    }
}

/// A host as the fleet shows it; the disk measured here unless its node's agent measured it.
fn host_sample(at: &str, h: HostInfo) -> HostSample {
    let (disk_free_bytes, disk_total_bytes) = match (h.disk_free_bytes, &h.agent) {
        (Some(free), _) => (Some(free), h.disk_total_bytes),
        // A cluster node's disk is not this host's to measure.
        (None, Some(_)) => (None, None),
        (None, None) => disk_space(&h.docker_root),
    };
    HostSample {
        at: at.to_string(),
        id: h.id,
        name: h.name,
        cpus: h.cpus,
        memory_bytes: h.memory_bytes,
        containers_running: h.containers_running,
        docker_root: h.docker_root,
        disk_free_bytes,
        disk_total_bytes,
        agent_seen_secs_ago: h.agent.as_ref().map(|a| a.seen_secs_ago),
        engine_ok: h.agent.as_ref().map(|a| a.engine_ok),
        engine_error: h.agent.and_then(|a| a.engine_error),
    }
}

/// Unix milliseconds of `t`.
pub fn unix_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The buckets the fleet samples: running, managed, not being deleted.
pub async fn sampled_buckets(state: &Core) -> crate::error::Result<Vec<BucketRecord>> {
    Ok(state
        .store
        .list_buckets(&BucketQuery {
            all: true,
            status: Some(BucketStatus::Running),
            limit: usize::MAX,
            ..Default::default()
        })
        .await?
        .into_iter()
        .filter(|b| b.kind() == BucketKind::Managed && !b.deleting)
        .collect())
}

/// One round: the host and every running managed bucket, each on its own task.
async fn round(state: &Core, fleet: &Arc<Fleet>, limit: Duration) {
    let (host_state, host_fleet) = (state.clone(), fleet.clone());
    state.tasks.spawn_task("host sample", async move {
        sample_host(&host_state, &host_fleet).await;
    });
    let buckets = match sampled_buckets(state).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "listing buckets for the fleet sample failed");
            return;
        }
    };
    for b in buckets {
        if !fleet.begin(&b.id) {
            tracing::debug!(bucket = %b.id, "previous sample still running; skipped");
            continue;
        }
        let (core, fleet) = (state.clone(), fleet.clone());
        state.tasks.spawn_task("bucket sample", async move {
            let state = core;
            let _permit = fleet.permits.clone().acquire_owned().await;
            let at = Instant::now();
            match tokio::time::timeout(limit, crate::lifecycle::container_resources(&state, &b))
                .await
            {
                Ok(Some(s)) => fleet.record(&b.id, at, OffsetDateTime::now_utc(), s),
                Ok(None) => {}
                Err(_) => {
                    tracing::warn!(bucket = %b.id, limit_secs = limit.as_secs(), "container sample timed out")
                }
            }
            fleet.end(&b.id);
        });
    }
    fleet.prune(state.config.fleet_retention, OffsetDateTime::now_utc());
}

/// Samples the fleet every `KALPANA_FLEET_SAMPLE_SECS` (off at 0).
pub fn spawn_sampler(state: Core, fleet: Arc<Fleet>) {
    let every = state.config.fleet_sample_interval;
    if every.is_zero() {
        return;
    }
    let core = state.clone();
    core.tasks.spawn_loop("fleet sampler", async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            round(&state, &fleet, every.max(Duration::from_secs(5))).await;
        }
    });
}

/// Parses `90s`, `30m`, `1h`, `2d`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(cpu: f64, system: f64, rx: u64) -> ContainerStats {
        ContainerStats {
            memory_bytes: Some(100),
            cpu_seconds: Some(cpu),
            system_cpu_seconds: Some(system),
            online_cpus: Some(1),
            rx_bytes: rx,
            ..Default::default()
        }
    }

    #[test]
    fn rates_and_cpu_come_from_the_previous_sample_and_old_points_go() {
        let fleet = Fleet::default();
        let t0 = Instant::now();
        let now = OffsetDateTime::now_utc();
        fleet.record(
            "b",
            t0,
            now - Duration::from_secs(7200),
            stats(1.0, 100.0, 0),
        );
        fleet.record(
            "b",
            t0 + Duration::from_secs(2),
            now,
            stats(1.5, 102.0, 2000),
        );
        let p = fleet.latest("b").expect("latest");
        assert_eq!(p.rx_bytes_per_sec, Some(1000.0));
        assert!((p.cpu_percent.expect("cpu") - 25.0).abs() < 1e-9);
        assert_eq!(fleet.history("b", 0, None).len(), 2);
        fleet.prune(Duration::from_secs(3600), now);
        assert_eq!(fleet.history("b", 0, None), vec![p]);
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        for bad in ["", "h", "0m", "5w", "-1h", "1.5h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
