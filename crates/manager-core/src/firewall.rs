//! Host firewall rules that leave only the engines' S3 (and console) ports of bucket containers
//! reachable: from the host itself (the `OUTPUT` chain) and from other containers on a bucket's
//! networks (Docker's `DOCKER-USER` chain, which bridged traffic passes). Inside a SeaweedFS
//! container the master's status pages (9333) and the admin server (23646) answer without a
//! JWT and no flag of `weed mini` binds them to loopback alone; filtering in each container's
//! own network namespace would have to be redone at every start. These rules are made once per
//! bridge and cost nothing at a container's start.
//!
//! Layout: one chain, [`CHAIN`]: replies of established connections pass, new TCP connections to
//! the allowed ports pass, other TCP is reset, anything else dropped. `OUTPUT` and `DOCKER-USER`
//! jump to it for traffic leaving on a bucket bridge (`-o <bridge>`).
//!
//! Assumptions: the daemon runs as root on the Docker host with `iptables` (the same one Docker
//! uses); without it [`Firewall::ensure_bridge`] fails and the caller says what stays open.
//! Caveat: IPv4 only (bucket networks have no IPv6).

use std::process::Stdio;

use tokio::process::Command;
use tokio::sync::Mutex;

use crate::error::{Error, Result};

/// The chain every bucket bridge jumps to.
pub const CHAIN: &str = "KALPANA-ISOLATE";

/// Installs and keeps the rules. One per daemon; cheap to share.
#[derive(Debug)]
pub struct Firewall {
    allowed_ports: Vec<u16>,
    /// Serialises this daemon's changes (iptables' own lock orders single commands only).
    busy: Mutex<()>,
}

async fn iptables(args: &[&str]) -> Result<bool> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| Error::Firewall(format!("running iptables: {e}")))?;
    Ok(out.status.success())
}

async fn must(args: &[&str]) -> Result<()> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| Error::Firewall(format!("running iptables: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Firewall(format!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl Firewall {
    /// Rules that let `allowed_ports` (the engines' S3 and console ports) through.
    pub fn new(mut allowed_ports: Vec<u16>) -> Self {
        allowed_ports.sort_unstable();
        allowed_ports.dedup();
        Firewall {
            allowed_ports,
            busy: Mutex::new(()),
        }
    }

    /// The rules of [`CHAIN`], in order.
    pub fn chain_rules(&self) -> Vec<Vec<String>> {
        let ports = self
            .allowed_ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let words = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        vec![
            words("-m conntrack --ctstate ESTABLISHED,RELATED -j RETURN"),
            words(&format!("-p tcp -m multiport --dports {ports} -j RETURN")),
            words("-p tcp -j REJECT --reject-with tcp-reset"),
            words("-j DROP"),
        ]
    }

    /// Makes [`CHAIN`] hold exactly its rules (rewritten when any is missing).
    async fn ensure_chain(&self) -> Result<()> {
        if !iptables(&["-n", "-L", CHAIN]).await? {
            // Another daemon may make it at the same moment.
            let _ = iptables(&["-N", CHAIN]).await?;
        }
        let rules = self.chain_rules();
        let mut complete = true;
        for r in &rules {
            let mut args = vec!["-C", CHAIN];
            args.extend(r.iter().map(String::as_str));
            if !iptables(&args).await? {
                complete = false;
                break;
            }
        }
        if complete {
            return Ok(());
        }
        must(&["-F", CHAIN]).await?;
        for r in &rules {
            let mut args = vec!["-A", CHAIN];
            args.extend(r.iter().map(String::as_str));
            must(&args).await?;
        }
        Ok(())
    }

    /// Makes traffic leaving on `bridge` (a bucket or attachment network's interface) pass
    /// [`CHAIN`], from the host and from other containers. Idempotent.
    pub async fn ensure_bridge(&self, bridge: &str) -> Result<()> {
        crate::names::check("bridge", bridge)?;
        let _one = self.busy.lock().await;
        self.ensure_chain().await?;
        if !iptables(&["-n", "-L", "DOCKER-USER"]).await? {
            // Docker makes it at start; a daemon that came first makes it the same way.
            let _ = iptables(&["-N", "DOCKER-USER"]).await?;
            must(&["-I", "FORWARD", "-j", "DOCKER-USER"]).await?;
        }
        for parent in ["OUTPUT", "DOCKER-USER"] {
            if !iptables(&["-C", parent, "-o", bridge, "-j", CHAIN]).await? {
                must(&["-I", parent, "-o", bridge, "-j", CHAIN]).await?;
            }
        }
        Ok(())
    }

    /// Removes the jumps of a bridge that is gone; none there is fine.
    pub async fn forget_bridge(&self, bridge: &str) -> Result<()> {
        crate::names::check("bridge", bridge)?;
        let _one = self.busy.lock().await;
        for parent in ["OUTPUT", "DOCKER-USER"] {
            while iptables(&["-C", parent, "-o", bridge, "-j", CHAIN]).await? {
                must(&["-D", parent, "-o", bridge, "-j", CHAIN]).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_allowed_ports_take_new_connections() {
        let fw = Firewall::new(vec![9001, 8333, 9000, 8333]);
        let rules: Vec<String> = fw.chain_rules().iter().map(|r| r.join(" ")).collect();
        assert_eq!(
            rules,
            [
                "-m conntrack --ctstate ESTABLISHED,RELATED -j RETURN",
                "-p tcp -m multiport --dports 8333,9000,9001 -j RETURN",
                "-p tcp -j REJECT --reject-with tcp-reset",
                "-j DROP",
            ]
        );
    }
}
