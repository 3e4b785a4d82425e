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
