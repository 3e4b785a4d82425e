//! A test daemon: the real binary on its own data dir, port slice and instance label, whose
//! Docker resources are swept and whose log is checked for secrets when it is dropped.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::secrets::{remember_secret, secrets_in};
use crate::{
    daemon_binary, next_port_range, remove_instance_resources, require_environment, Api,
    ENGINE_IMAGE, TEST_NETWORK,
};

/// Options for a test daemon.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// Port range override, e.g. "40000-40001".
    pub port_range: Option<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Instance label (default: a fresh one), e.g. the one a test's Traefik is constrained to.
    pub instance: Option<String>,
}

/// A fresh instance label for a test daemon.
pub fn new_instance() -> String {
    format!("test-{}", uuid::Uuid::new_v4().simple())
}

/// A running daemon with its own data dir, port slice and Docker instance label.
pub struct Daemon {
    child: Option<Child>,
    /// Base URL of the REST API.
    pub url: String,
    /// Admin token.
    pub admin_token: String,
    /// The instance label on everything it creates.
    pub instance: String,
    /// Data dir (and log file) of the daemon.
    pub data_dir: PathBuf,
    /// Port range it allocates from.
    pub port_range: (u16, u16),
    http: reqwest::Client,
    opts: DaemonOptions,
}

impl Daemon {
    /// Starts a daemon with the seaweedfs engine and default options.
    pub async fn start() -> Result<Self> {
        Self::start_with(DaemonOptions::default()).await
    }

    /// Starts a daemon with options.
    pub async fn start_with(opts: DaemonOptions) -> Result<Self> {
        let instance = opts.instance.clone().unwrap_or_else(new_instance);
        let data_dir = std::env::temp_dir().join(format!("kalpana-{instance}"));
        Self::start_in(opts, instance, data_dir).await
    }

    /// Starts a daemon on a data dir prepared beforehand (e.g. a store filled with records).
    pub async fn start_in(
        opts: DaemonOptions,
        instance: String,
        data_dir: PathBuf,
    ) -> Result<Self> {
        require_environment()?;
        std::fs::create_dir_all(&data_dir)?;
        let port_range = match &opts.port_range {
            Some(r) => {
                let (a, b) = r.split_once('-').context("range a-b")?;
                (a.parse()?, b.parse()?)
            }
            None => next_port_range(),
        };
        let admin_token = format!("admin-{}", uuid::Uuid::new_v4().simple());
        remember_secret(&admin_token);
        let mut d = Daemon {
            child: None,
            url: String::new(),
            admin_token,
            instance,
            data_dir,
            port_range,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()?,
            opts,
        };
        d.spawn().await?;
        Ok(d)
    }

    /// (Re)starts the process on the same data dir.
    pub async fn spawn(&mut self) -> Result<()> {
        let bin = daemon_binary()?;
        let addr_file = self.data_dir.join("listen.addr");
        let _ = std::fs::remove_file(&addr_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .env("KALPANA_LISTEN", "127.0.0.1:0")
            .env("KALPANA_DATA_DIR", &self.data_dir)
            .env("KALPANA_ADMIN_TOKEN", &self.admin_token)
            .env("KALPANA_ENGINE", "seaweedfs")
            .env("KALPANA_IMAGE_SEAWEEDFS", ENGINE_IMAGE)
            .env(
                "KALPANA_PORT_RANGE",
                format!("{}-{}", self.port_range.0, self.port_range.1),
            )
            .env("KALPANA_DOCKER_NETWORK", TEST_NETWORK)
            .env("KALPANA_INSTANCE", &self.instance)
            .env("KALPANA_LOG", "info,kalpana_api=debug")
            .envs(mongodb_store(&self.instance).map(|uri| ("KALPANA_STORE", uri)))
            .envs(self.opts.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone()?)
            .stderr(log);
        self.child = Some(cmd.spawn().context("spawning kalpana-buckets")?);
        let started = Instant::now();
        loop {
            if let Ok(addr) = std::fs::read_to_string(&addr_file) {
                self.url = format!("http://{}", addr.trim());
                if self
                    .http
                    .get(format!("{}/healthz", self.url))
                    .send()
                    .await
                    .is_ok()
                {
                    return Ok(());
                }
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("daemon exited with {status} at start; log:\n{}", self.log());
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("daemon did not start in 30 s; log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process (SIGKILL) without cleaning up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts the daemon armed to kill itself at fault point `point`, runs `trigger` against
    /// it, checks that it died there (SIGKILL, the point named in its log), then starts it again
    /// unarmed. Returns an API client of `token` and what `trigger` returned.
    pub async fn crash_at<F, Fut, T>(
        &mut self,
        token: &str,
        point: &str,
        trigger: F,
    ) -> Result<(Api, T)>
    where
        F: FnOnce(Api) -> Fut,
        Fut: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.kill();
        self.set_env("KALPANA_FAULT_POINT", Some(point));
        self.spawn().await?;
        let call = tokio::spawn(trigger(self.api(token)));
        let status = self.wait_exit(Duration::from_secs(60)).await?;
        {
            use std::os::unix::process::ExitStatusExt;
            if status.signal() != Some(9) {
                bail!("{point}: daemon ended with {status}, not killed at the point");
            }
        }
        let answer = call.await?;
        if !self.log().contains("fault point reached") {
            bail!("{point}: no fault point in the log");
        }
        self.set_env("KALPANA_FAULT_POINT", None);
        self.spawn().await?;
        Ok((self.api(token), answer))
    }

    /// Sets (`Some`) or removes (`None`) an environment variable for the next [`Daemon::spawn`].
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.opts.env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.opts.env.push((key.to_string(), v.to_string()));
        }
    }

    /// Sends `signal` (e.g. "TERM") to the daemon process.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let pid = self.pid().context("daemon not running")?;
        let ok = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()?
            .success();
        if !ok {
            bail!("kill -{signal} {pid} failed");
        }
        Ok(())
    }

    /// Waits up to `timeout` for the daemon process to exit by itself; returns how it ended.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let started = Instant::now();
        loop {
            let child = self.child.as_mut().context("daemon not running")?;
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if started.elapsed() > timeout {
                bail!("daemon still running after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Process id of the running daemon.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Path of the daemon's log file.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join("daemon.log")
    }

    /// The daemon's whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A client with the admin token.
    pub fn admin(&self) -> Api {
        self.api(&self.admin_token)
    }

    /// A client with `token`.
    pub fn api(&self, token: &str) -> Api {
        Api {
            base: self.url.clone(),
            token: Some(token.to_string()),
            http: self.http.clone(),
        }
    }

    /// A client with no token.
    pub fn anonymous(&self) -> Api {
        Api {
            base: self.url.clone(),
            token: None,
            http: self.http.clone(),
        }
    }

    /// Creates a user through the admin API and returns a client with its token.
    pub async fn new_user(&self, name: &str) -> Result<(Api, String)> {
        let (status, body) = self
            .admin()
            .send("POST", "/api/users", Some(json!({ "name": name })))
            .await?;
        if status != 201 {
            bail!("creating user {name}: {status} {body}");
        }
        let token = body["token"].as_str().context("token")?.to_string();
        let id = body["id"].as_str().context("id")?.to_string();
        Ok((self.api(&token), id))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        // A failing test's daemon log goes with its data dir: its end is printed first, so the
        // test output says what the daemon saw.
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "--- last {} lines of {} ---",
                tail.len(),
                self.log_path().display()
            );
            let leaked = secrets_in(&log);
            for line in tail.iter().rev() {
                let mut line = line.to_string();
                for secret in &leaked {
                    line = line.replace(secret.as_str(), "<secret>");
                }
                eprintln!("{line}");
            }
        }
        // The whole log of every test daemon is checked for every token and secret key any
        // test of this run was handed: a test whose daemon logged one fails.
        let leaked = secrets_in(&self.log());
        if !leaked.is_empty() && !std::thread::panicking() {
            remove_instance_resources(&self.instance);
            panic!(
                "secrets handed out by the API appear in the daemon log {}: {leaked:?}",
                self.log_path().display()
            );
        }
        remove_instance_resources(&self.instance);
        // A Docker call the daemon made just before it was killed can still land after the
        // first sweep (a container created a moment later): sweep once more.
        std::thread::sleep(Duration::from_millis(500));
        remove_instance_resources(&self.instance);
        if std::env::var_os("KALPANA_TEST_KEEP_DATA").is_none() {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// With `KALPANA_TEST_E2E_MONGODB_URI` set (`.ci/test` sets it for its MongoDB pass), the daemons
/// keep their state in MongoDB, each in a database of its own; otherwise in the embedded store.
pub fn mongodb_store(instance: &str) -> Option<String> {
    let uri = std::env::var("KALPANA_TEST_E2E_MONGODB_URI").ok()?;
    let uri = uri.trim();
    if uri.is_empty() {
        return None;
    }
    let (base, query) = match uri.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (uri, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let hosts = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    let db = instance.replace('-', "_");
    Some(match query {
        Some(q) => format!("{hosts}/{db}?{q}"),
        None => format!("{hosts}/{db}"),
    })
}
