//! Resource samples of containers and of the Docker host, as Docker's stats and info report
//! them, and the CPU percentage `docker stats` shows.

use bollard::models::{ContainerStatsResponse, SystemInfo};

/// Resource use of a container at one moment (counters since it started).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    /// Memory in use, without the inactive page cache (as `docker stats` shows it).
    pub memory_bytes: Option<u64>,
    /// Memory limit.
    pub memory_limit_bytes: Option<u64>,
    /// CPU time used since start.
    pub cpu_seconds: Option<f64>,
    /// CPU time of the whole host since boot (the denominator of CPU percent).
    pub system_cpu_seconds: Option<f64>,
    /// CPUs the container may use.
    pub online_cpus: Option<u32>,
    /// Processes and threads.
    pub pids: Option<u64>,
    /// Bytes received on every network.
    pub rx_bytes: u64,
    /// Bytes sent on every network.
    pub tx_bytes: u64,
    /// Bytes read from block devices.
    pub block_read_bytes: u64,
    /// Bytes written to block devices.
    pub block_write_bytes: u64,
}

impl From<ContainerStatsResponse> for ContainerStats {
    fn from(s: ContainerStatsResponse) -> Self {
        let mem = s.memory_stats.unwrap_or_default();
        let cpu = s.cpu_stats.unwrap_or_default();
        // cgroup v2 reports `inactive_file`, v1 `total_inactive_file`; docker stats subtracts it.
        let inactive = mem.stats.as_ref().and_then(|m| {
            m.get("inactive_file")
                .or_else(|| m.get("total_inactive_file"))
                .copied()
        });
        let memory_bytes = mem.usage.map(|u| u.saturating_sub(inactive.unwrap_or(0)));
        let (rx_bytes, tx_bytes) = s
            .networks
            .unwrap_or_default()
            .values()
            .fold((0, 0), |(rx, tx), n| {
                (rx + n.rx_bytes.unwrap_or(0), tx + n.tx_bytes.unwrap_or(0))
            });
        let (block_read_bytes, block_write_bytes) = s
            .blkio_stats
            .and_then(|b| b.io_service_bytes_recursive)
            .unwrap_or_default()
            .iter()
            .fold((0, 0), |(r, w), e| {
                match e.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
                    Some("read") => (r + e.value.unwrap_or(0), w),
                    Some("write") => (r, w + e.value.unwrap_or(0)),
                    _ => (r, w),
                }
            });
        ContainerStats {
            memory_bytes,
            memory_limit_bytes: mem.limit,
            cpu_seconds: cpu
                .cpu_usage
                .and_then(|u| u.total_usage)
                .map(|ns| ns as f64 / 1e9),
            system_cpu_seconds: cpu.system_cpu_usage.map(|ns| ns as f64 / 1e9),
            online_cpus: cpu.online_cpus,
            pids: s.pids_stats.and_then(|p| p.current),
            rx_bytes,
            tx_bytes,
            block_read_bytes,
            block_write_bytes,
        }
    }
}

/// CPU use between two samples of one container, in percent of one CPU, as `docker stats`
/// computes it: the container's CPU time delta over the host's, times the CPUs it may use.
pub fn cpu_percent(before: &ContainerStats, after: &ContainerStats) -> Option<f64> {
    let cpu = after.cpu_seconds? - before.cpu_seconds?;
    let system = after.system_cpu_seconds? - before.system_cpu_seconds?;
    if system <= 0.0 || cpu < 0.0 {
        return None;
    }
    Some(cpu / system * f64::from(after.online_cpus.unwrap_or(1)) * 100.0)
}

/// The Docker host at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostInfo {
    /// The node's id in its cluster; empty for a lone engine.
    #[serde(default)]
    pub id: String,
    /// Host name.
    pub name: String,
    /// CPUs.
    pub cpus: u64,
    /// Memory.
    pub memory_bytes: u64,
    /// Containers running (all of them, not only buckets).
    pub containers_running: u64,
    /// Docker's data directory.
    pub docker_root: String,
    /// Free bytes there, as measured on the node itself (none: measure it where the daemon
    /// runs, which is that host).
    #[serde(default)]
    pub disk_free_bytes: Option<u64>,
    /// Size of that file system, the same way.
    #[serde(default)]
    pub disk_total_bytes: Option<u64>,
    /// What the node's agent last said of it, for a cluster node (none for a lone engine).
    #[serde(default)]
    pub agent: Option<AgentPresence>,
}

/// A node agent as the daemon last heard it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPresence {
    /// Seconds since its last report.
    pub seen_secs_ago: u64,
    /// Whether its Docker engine answered it then.
    pub engine_ok: bool,
    /// What the engine said when it did not.
    pub engine_error: Option<String>,
}

impl From<SystemInfo> for HostInfo {
    fn from(i: SystemInfo) -> Self {
        HostInfo {
            id: i
                .swarm
                .as_ref()
                .and_then(|s| s.node_id.clone())
                .unwrap_or_default(),
            name: i.name.unwrap_or_default(),
            cpus: i.ncpu.unwrap_or(0).max(0) as u64,
            memory_bytes: i.mem_total.unwrap_or(0).max(0) as u64,
            containers_running: i.containers_running.unwrap_or(0).max(0) as u64,
            docker_root: i.docker_root_dir.unwrap_or_default(),
            disk_free_bytes: None,
            disk_total_bytes: None,
            agent: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_is_the_containers_share_of_host_time_times_its_cpus() {
        let at = |cpu: f64, system: f64| ContainerStats {
            cpu_seconds: Some(cpu),
            system_cpu_seconds: Some(system),
            online_cpus: Some(2),
            ..Default::default()
        };
        // 0.5 s of CPU while the host spent 4 s over 2 CPUs: a quarter of one CPU… times 2.
        let p = cpu_percent(&at(10.0, 100.0), &at(10.5, 104.0)).expect("percent");
        assert!((p - 25.0).abs() < 1e-9, "{p}");
        assert_eq!(cpu_percent(&at(10.0, 100.0), &at(10.0, 100.0)), None);
        assert_eq!(
            cpu_percent(&at(11.0, 100.0), &at(10.0, 101.0)),
            None,
            "a restart"
        );
    }
}
