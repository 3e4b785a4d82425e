//! Network probes for the isolation tests: connections from inside a container's network
//! namespace, port scans of a container's address, and a real DNS server (dnsmasq) with the TXT
//! records a test needs.

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;

use crate::docker_inspect;

/// The address of container `name` on the network `network`.
pub fn container_ip(name: &str, network: &str) -> Result<IpAddr> {
    let ip = docker_inspect(
        name,
        &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
    )?;
    ip.parse()
        .with_context(|| format!("{name} has no address on {network}: {ip:?}"))
}

/// The host pid of container `name`'s main process (its namespaces are reachable from it).
pub fn container_pid(name: &str) -> Result<u32> {
    let pid = docker_inspect(name, "{{.State.Pid}}")?;
    let pid: u32 = pid.parse().with_context(|| format!("pid of {name}"))?;
    if pid == 0 {
        bail!("{name} is not running");
    }
    Ok(pid)
}

/// Whether a TCP connection to `ip:port` opens from inside the network namespace of process
/// `pid` (a container's), within 2 s. Uses `nsenter` and bash's `/dev/tcp`.
pub fn connects_from_netns(pid: u32, ip: IpAddr, port: u16) -> Result<bool> {
    let status = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "timeout", "2", "bash", "-c"])
        .arg(format!("exec 3<>/dev/tcp/{ip}/{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("nsenter (util-linux) is needed to probe from inside a container")?;
    Ok(status.success())
}

/// The ports of `ip` in `ports` that accept a TCP connection from here, probed `parallel` at a
/// time with a short timeout each.
pub async fn open_ports(
    ip: IpAddr,
    ports: impl IntoIterator<Item = u16>,
    parallel: usize,
) -> Vec<u16> {
    let mut open: Vec<u16> = futures::stream::iter(ports)
        .map(|port| async move {
            let addr = SocketAddr::new(ip, port);
            match tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(addr),
            )
            .await
            {
                Ok(Ok(_)) => Some(port),
                _ => None,
            }
        })
        .buffer_unordered(parallel)
        .filter_map(|p| async move { p })
        .collect()
        .await;
    open.sort_unstable();
    open
}

/// A dnsmasq process answering TXT records on a local UDP port, and nothing else.
pub struct Dnsmasq {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub addr: SocketAddr,
}

impl Dnsmasq {
    /// A UDP port free right now on 127.0.0.1, for a server started later.
    pub fn free_port() -> Result<u16> {
        Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    }

    /// Starts dnsmasq on `port` with these `(name, value)` TXT records; every other name is
    /// unknown to it. Fails, saying how to install it, when dnsmasq is missing. Waits for the
    /// server's first answer (up to 60 s: a busy machine starts it slowly), and starts it again
    /// should it exit first (the port still held by the server it replaces).
    pub async fn start(port: u16, records: &[(&str, &str)]) -> Result<Self> {
        let spawn = || {
            let mut cmd = Command::new("dnsmasq");
            cmd.args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--conf-file=/dev/null",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--user=root",
                "--pid-file=",
            ])
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
            for (name, value) in records {
                cmd.arg(format!("--txt-record={name},{value}"));
            }
            cmd.spawn().context(
                "dnsmasq is missing: install Debian's dnsmasq-base (`.ci/build-test-images` does)",
            )
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut server = Dnsmasq {
            child: spawn()?,
            addr,
        };
        // Ready once it answers a query (any answer).
        let probe = std::net::UdpSocket::bind("127.0.0.1:0")?;
        probe.set_read_timeout(Some(Duration::from_millis(200)))?;
        let query =
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05ready\x00\x00\x10\x00\x01";
        let started = Instant::now();
        let mut last_exit = String::new();
        loop {
            probe.send_to(query, addr)?;
            let mut buf = [0u8; 512];
            if probe.recv_from(&mut buf).is_ok() {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                let mut err = String::new();
                if let Some(mut e) = server.child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                last_exit = format!("{status}: {}", err.trim());
                server.child = spawn()?;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("dnsmasq did not answer on {addr} within 60 s (last exit: {last_exit})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The HTTP status that `method url` (with `body`, if any) answers from inside the network
/// namespace of process `pid` (a container's), within 5 s; 0 when nothing answered. Uses
/// `nsenter` and the host's `curl`.
pub fn http_status_from_netns(
    pid: u32,
    method: &str,
    url: &str,
    body: Option<&str>,
) -> Result<u16> {
    let mut cmd = Command::new("nsenter");
    cmd.args([
        "-t",
        &pid.to_string(),
        "-n",
        "curl",
        "-s",
        "-o",
        "/dev/null",
    ])
    .args(["-w", "%{http_code}", "--max-time", "5", "-X", method]);
    if let Some(b) = body {
        cmd.args(["--data-binary", b]);
    }
    let out = cmd
        .arg(url)
        .stderr(Stdio::null())
        .output()
        .context("nsenter (util-linux) and curl are needed to probe from inside a container")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0))
}

/// What `openssl s_client` (no client certificate) prints, stdout and stderr together, when it
/// connects to `ip:port` from inside the network namespace of process `pid`. The client is kept
/// open a second: TLS 1.3 sends a refusal after the handshake.
pub fn tls_client_from_netns(pid: u32, ip: IpAddr, port: u16) -> Result<String> {
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "bash", "-c"])
        .arg(format!(
            "sleep 1 | timeout 10 openssl s_client -connect {ip}:{port} 2>&1"
        ))
        .output()
        .context("nsenter (util-linux) and openssl are needed to probe from inside a container")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
