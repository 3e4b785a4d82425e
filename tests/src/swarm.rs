//! The test Swarm: three Docker engines in network namespaces on this machine, made by
//! `.ci/swarm-up` (the test command runs it) and described in `/run/kalpana-swarm/env`.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// Where `.ci/swarm-up` describes the cluster it made.
const ENV_FILE: &str = "/run/kalpana-swarm/env";

/// The test cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The manager's Docker API (`tcp://…`).
    pub manager: String,
    /// Every node's address (the manager's first).
    pub nodes: Vec<String>,
}

/// The cluster `.ci/swarm-up` made; fails, saying how to make it, when there is none.
pub fn require_cluster() -> Result<Cluster> {
    let text = std::fs::read_to_string(ENV_FILE).with_context(|| {
        format!("no test Swarm ({ENV_FILE} is missing): run `.ci/swarm-up` as root (the README's test command does), then the tests again")
    })?;
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(|v| v.trim_matches('"').to_string())
    };
    let manager = value("KALPANA_SWARM_MANAGER").context("KALPANA_SWARM_MANAGER")?;
    let nodes: Vec<String> = value("KALPANA_SWARM_NODES")
        .context("KALPANA_SWARM_NODES")?
        .split_whitespace()
        .map(String::from)
        .collect();
    let c = Cluster { manager, nodes };
    let ready = c.docker_at(&c.manager, &["node", "ls", "--format", "{{.Status}}"])?;
    if ready.lines().filter(|l| *l == "Ready").count() != c.nodes.len() {
        bail!("the test Swarm is not healthy (node ls: {ready:?}): run `.ci/swarm-down && .ci/swarm-up`");
    }
    Ok(c)
}

impl Cluster {
    /// Kills every process of node N (SIGKILL), as if its host died: those in its network
    /// namespace (its engine, containerd, shims, agents) and those in its cgroups (its
    /// containers). Returns how many were killed. The cluster must be made again afterwards
    /// (`.ci/swarm-up` does it when it finds a node missing).
    pub fn kill_node(&self, n: u32) -> Result<usize> {
        let mut killed = 0;
        for _ in 0..3 {
            let mut pids: Vec<i32> = Vec::new();
            let out = Command::new("ip")
                .args(["netns", "pids", &format!("kalpana-swarm-{n}")])
                .output()
                .context("ip netns pids")?;
            pids.extend(
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
            let out = Command::new("find")
                .args([
                    "/sys/fs/cgroup",
                    "-path",
                    &format!("*kalpana-swarm-{n}*"),
                    "-name",
                    "cgroup.procs",
                ])
                .output()
                .context("find cgroups")?;
            for f in String::from_utf8_lossy(&out.stdout).lines() {
                if let Ok(text) = std::fs::read_to_string(f) {
                    pids.extend(
                        text.split_whitespace()
                            .filter_map(|p| p.parse::<i32>().ok()),
                    );
                }
            }
            pids.sort_unstable();
            pids.dedup();
            pids.retain(|p| *p > 1 && *p != std::process::id() as i32);
            if pids.is_empty() {
                break;
            }
            for p in &pids {
                if sigkill(*p).is_ok() {
                    killed += 1;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        Ok(killed)
    }

    /// Kills node N's Docker engine only (SIGKILL of its dockerd): its containers keep running.
    pub fn kill_engine(&self, n: u32) -> Result<i32> {
        let pid: i32 = std::fs::read_to_string(format!("/run/kalpana-swarm-{n}/docker.pid"))
            .with_context(|| format!("node {n}'s engine pid file"))?
            .trim()
            .parse()?;
        sigkill(pid).with_context(|| format!("killing node {n}'s engine"))?;
        Ok(pid)
    }

    /// Makes the cluster whole again after a test took a node away (`.ci/swarm-up`: it tears
    /// a broken cluster down and makes it anew).
    pub fn heal(&self) -> Result<()> {
        let script = crate::repo_root().join(".ci/swarm-up");
        let out = Command::new(&script)
            .output()
            .context("running .ci/swarm-up")?;
        if !out.status.success() {
            bail!(
                ".ci/swarm-up failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// The `docker` CLI against the engine at `host` (`tcp://…` or a bare node address).
    pub fn docker_at(&self, host: &str, args: &[&str]) -> Result<String> {
        let h = if host.contains("://") {
            host.to_string()
        } else {
            format!("tcp://{host}:2375")
        };
        let out = Command::new("docker")
            .arg("-H")
            .arg(&h)
            .args(args)
            .output()
            .context("the docker CLI")?;
        if !out.status.success() {
            bail!(
                "docker -H {h} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The manager's `docker` CLI.
    pub fn docker(&self, args: &[&str]) -> Result<String> {
        self.docker_at(&self.manager, args)
    }

    /// Removes what daemon instance `instance` made anywhere in the cluster: services and
    /// secrets on the manager, then containers and volumes on every node.
    pub fn remove_instance(&self, instance: &str) {
        let filter = format!("label=kalpana.instance={instance}");
        for (list, rm) in [
            (&["service", "ls", "-q"][..], &["service", "rm"][..]),
            (&["secret", "ls", "-q"][..], &["secret", "rm"][..]),
        ] {
            if let Ok(ids) = self.docker(&[list, &["--filter", &filter]].concat()) {
                for id in ids.split_whitespace() {
                    let _ = self.docker(&[rm, &[id]].concat());
                }
            }
        }
        // Tasks let go of their containers, then their volumes, a moment after the service goes.
        std::thread::sleep(std::time::Duration::from_secs(2));
        for node in &self.nodes {
            for (list, rm) in [
                (&["ps", "-aq"][..], &["rm", "-f"][..]),
                (&["volume", "ls", "-q"][..], &["volume", "rm", "-f"][..]),
            ] {
                if let Ok(ids) = self.docker_at(node, &[list, &["--filter", &filter]].concat()) {
                    for id in ids.split_whitespace() {
                        let _ = self.docker_at(node, &[rm, &[id]].concat());
                    }
                }
            }
        }
    }
}

/// The node agents of a test daemon on the cluster: one `kalpana-buckets node` process per
/// node, in that node's network namespace, on that node's Docker socket, each with the token
/// the daemon issued for its node. Killed when dropped.
pub struct Agents {
    children: Vec<(String, std::process::Child)>,
    dir: std::path::PathBuf,
    env: Vec<(String, String)>,
    url: String,
    instance: String,
}

/// A node of the cluster as the agents see it.
#[derive(Debug, Clone)]
pub struct NodeRef {
    /// Its Swarm node id.
    pub id: String,
    /// Its number N (host name kalpana-swarm-N, address 10.203.0.N).
    pub n: u32,
}

impl Cluster {
    /// Every node: id and number.
    pub fn node_refs(&self) -> Result<Vec<NodeRef>> {
        let out = self.docker(&["node", "ls", "--format", "{{.ID}} {{.Hostname}}"])?;
        out.lines()
            .map(|l| {
                let (id, host) = l.split_once(' ').context("node ls line")?;
                let n = host
                    .trim()
                    .strip_prefix("kalpana-swarm-")
                    .context("a kalpana-swarm-N host name")?
                    .parse()?;
                Ok(NodeRef {
                    id: id.to_string(),
                    n,
                })
            })
            .collect()
    }
}

/// Waits (30 s at most) until the daemon of `admin` hears every node's agent; the fleet then.
pub async fn fleet_reporting(admin: &crate::Api, nodes: usize) -> Result<serde_json::Value> {
    crate::until(
        "every node's agent reporting",
        std::time::Duration::from_secs(30),
        || async {
            let (_, f) = admin.send("GET", "/api/fleet", None).await?;
            let reporting = f["nodes"]
                .as_array()
                .map(|n| {
                    n.iter()
                        .filter(|n| n["agentSeenSecsAgo"].as_u64().is_some_and(|s| s < 10))
                        .count()
                })
                .unwrap_or(0);
            Ok((reporting == nodes).then_some(f))
        },
    )
    .await
}

impl Agents {
    /// Enrols every node with `daemon` (its admin asks for each node's token) and starts its
    /// agent; the daemon must listen where the nodes reach it (`KALPANA_LISTEN` on the host's
    /// cluster address, 10.203.0.254).
    pub async fn start(cluster: &Cluster, daemon: &crate::Daemon) -> Result<Self> {
        Self::start_with(cluster, daemon, &[]).await
    }

    /// [`Agents::start`] with extra environment for every agent (e.g. `KALPANA_FENCE_SECS`).
    pub async fn start_with(
        cluster: &Cluster,
        daemon: &crate::Daemon,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        Self::start_to(cluster, daemon, &daemon.url, env).await
    }

    /// [`Agents::start_with`], the agents reporting to `url` (e.g. a relay in front of an
    /// active daemon and its standby) rather than to `daemon` itself.
    pub async fn start_to(
        cluster: &Cluster,
        daemon: &crate::Daemon,
        url: &str,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let dir = daemon.data_dir.join("agents");
        std::fs::create_dir_all(&dir)?;
        let mut agents = Agents {
            children: Vec::new(),
            dir,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            url: url.to_string(),
            instance: daemon.instance.clone(),
        };
        for node in cluster.node_refs()? {
            let (status, body) = daemon
                .admin()
                .send("POST", &format!("/api/nodes/{}/token", node.id), None)
                .await?;
            if status != 200 {
                bail!("enrolling node {}: {status} {body}", node.id);
            }
            let token = body["token"].as_str().context("token")?.to_string();
            crate::secrets::remember_secret(&token);
            agents.spawn(&node, &token)?;
        }
        Ok(agents)
    }

    /// Starts the agent of `node` with `token`.
    pub fn spawn(&mut self, node: &NodeRef, token: &str) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let token_file = self.dir.join(format!("node-{}.token", node.n));
        std::fs::write(&token_file, token)?;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600))?;
        let log = std::fs::File::create(self.log_path(node.n))?;
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/kalpana-swarm-{}", node.n))
            .arg("--")
            .arg(crate::daemon_binary()?)
            .arg("node")
            .env(
                "DOCKER_HOST",
                format!("unix:///run/kalpana-swarm-{}/docker.sock", node.n),
            )
            .env("KALPANA_NODE_DAEMON", &self.url)
            .env("KALPANA_NODE_TOKEN_FILE", &token_file)
            .env("KALPANA_INSTANCE", &self.instance)
            .env("KALPANA_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting a node agent (nsenter, as root)")?;
        self.children.push((node.id.clone(), child));
        Ok(())
    }

    /// The log file of node N's agent.
    pub fn log_path(&self, n: u32) -> std::path::PathBuf {
        self.dir.join(format!("agent-{n}.log"))
    }

    /// Every agent's log.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in 1..=3 {
            out.push_str(&format!("--- agent {n}\n"));
            out.push_str(&std::fs::read_to_string(self.log_path(n)).unwrap_or_default());
        }
        out
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Counts the bytes between this host and one TCP endpoint (ip:port) in both directions, by
/// iptables rules of its own that only count (no target); removed when dropped.
pub struct Traffic {
    rules: Vec<(&'static str, Vec<String>)>,
}

impl Traffic {
    /// Starts counting the traffic to and from `ip:port`.
    pub fn count(ip: &str, port: u16) -> Result<Self> {
        let tag = format!("kb-count-{}", uuid::Uuid::new_v4().simple());
        let port = port.to_string();
        let rules = vec![
            (
                "OUTPUT",
                vec![
                    "-d",
                    ip,
                    "-p",
                    "tcp",
                    "--dport",
                    &port,
                    "-m",
                    "comment",
                    "--comment",
                    &tag,
                ]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>(),
            ),
            (
                "INPUT",
                vec![
                    "-s",
                    ip,
                    "-p",
                    "tcp",
                    "--sport",
                    &port,
                    "-m",
                    "comment",
                    "--comment",
                    &tag,
                ]
                .into_iter()
                .map(String::from)
                .collect(),
            ),
        ];
        for (chain, rule) in &rules {
            let ok = Command::new("iptables")
                .args(["-w", "-I", chain])
                .args(rule)
                .status()
                .context("iptables (as root)")?
                .success();
            if !ok {
                bail!("iptables -I {chain} {} failed", rule.join(" "));
            }
        }
        Ok(Traffic { rules })
    }

    /// Bytes counted so far, both ways.
    pub fn bytes(&self) -> Result<u64> {
        let mut total = 0;
        for (chain, rule) in &self.rules {
            let tag = rule.last().context("tag")?;
            let out = Command::new("iptables")
                .args(["-w", "-L", chain, "-v", "-x", "-n"])
                .output()?;
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if line.contains(tag.as_str()) {
                    total += line
                        .split_whitespace()
                        .nth(1)
                        .context("bytes column")?
                        .parse::<u64>()?;
                }
            }
        }
        Ok(total)
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        for (chain, rule) in &self.rules {
            let _ = Command::new("iptables")
                .args(["-w", "-D", chain])
                .args(rule)
                .status();
        }
    }
}

/// `kill -9 pid`.
fn sigkill(pid: i32) -> Result<()> {
    let ok = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .context("kill")?
        .success();
    if !ok {
        bail!("kill -9 {pid} failed");
    }
    Ok(())
}
