//! Docker as the `docker` CLI sees it, independent of the daemon under test.

use std::process::{Command, Stdio};

use anyhow::{bail, Result};

/// Removes every container, volume and attachment network labelled with this daemon instance
/// (a test that fails half-way leaves them to its daemon, which is killed).
pub fn remove_instance_resources(instance: &str) {
    let filter = format!("label=kalpana.instance={instance}");
    // A container created with a bind of a volume that a sweep had just removed makes Docker
    // create that volume again, without labels: such volumes are found by their bucket's id.
    let mut unlabelled = Vec::new();
    for list in [&["ps", "-a"][..], &["volume", "ls"][..]] {
        let out = Command::new("docker")
            .args(list)
            .args(["--filter", &filter])
            .args(["--format", "{{.Label \"kalpana.bucket.id\"}}"])
            .output();
        if let Ok(out) = out {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                unlabelled.push(kalpana_manager_core::spec::volume_name(id));
            }
        }
    }
    for (list, remove) in [
        (&["ps", "-aq"][..], &["rm", "-f"][..]),
        (&["volume", "ls", "-q"][..], &["volume", "rm", "-f"][..]),
        (&["network", "ls", "-q"][..], &["network", "rm"][..]),
    ] {
        let Ok(out) = Command::new("docker")
            .args(list)
            .args(["--filter", &filter])
            .output()
        else {
            continue;
        };
        let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(String::from)
            .collect();
        if !names.is_empty() {
            let _ = Command::new("docker")
                .args(remove)
                .args(&names)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
    unlabelled.sort();
    unlabelled.dedup();
    if !unlabelled.is_empty() {
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f"])
            .args(&unlabelled)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `docker inspect` of a container or volume by name: whether it exists.
pub fn docker_exists(kind: &str, name: &str) -> bool {
    Command::new("docker")
        .args([kind, "inspect", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `docker inspect -f <format> <name>`.
pub fn docker_inspect(name: &str, format: &str) -> Result<String> {
    let out = Command::new("docker")
        .args(["inspect", "-f", format, name])
        .output()?;
    if !out.status.success() {
        bail!(
            "docker inspect {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
