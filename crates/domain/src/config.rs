//! Daemon configuration from `KALPANA_*` environment variables and, optionally, a TOML file with
//! the same keys.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kalpana_manager_core::spec::Limits;
use kalpana_manager_core::{EngineKind, EngineProfile, PortRange, RoutingConfig};

use crate::error::{Error, Result};

/// Limits on how a request body arrives.
#[derive(Debug, Clone, Copy)]
pub struct BodyPace {
    /// Longest wait for the next bytes.
    pub idle: Duration,
    /// How long a body may arrive at any pace before `min_rate` applies.
    pub grace: Duration,
    /// Slowest average rate accepted after `grace`, in bytes per second.
    pub min_rate: u64,
}

/// Limits on accepted connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// How long a client may take to send a request head (`KALPANA_HEADER_TIMEOUT_SECS`).
    pub header_timeout: Duration,
    /// Open connections per client address (`KALPANA_MAX_CONNECTIONS_PER_IP`).
    pub per_address: usize,
    /// Open connections in all (`KALPANA_MAX_CONNECTIONS`).
    pub total: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_timeout: Duration::from_secs(10),
            per_address: 256,
            total: 8192,
        }
    }
}

/// How Traefik is fed the routes of buckets.
#[derive(Clone, PartialEq, Eq)]
pub enum TraefikProvider {
    /// Traefik's Docker provider reads the labels of bucket containers (`traefik/traefik.yml`).
    Docker,
    /// Traefik's HTTP provider polls the daemon's `GET /api/traefik/config`
    /// (`traefik/traefik-http.yml`), which answers only this bearer token.
    Http {
        /// `KALPANA_TRAEFIK_TOKEN`: a secret, never shown by `Debug`.
        token: String,
    },
}

impl TraefikProvider {
    /// The token Traefik must present, when the HTTP provider is on.
    pub fn http_token(&self) -> Option<&str> {
        match self {
            TraefikProvider::Docker => None,
            TraefikProvider::Http { token } => Some(token),
        }
    }

    /// From `KALPANA_TRAEFIK_PROVIDER` and `KALPANA_TRAEFIK_TOKEN`.
    fn from_vars(vars: &Vars) -> Result<Self> {
        match vars.get("KALPANA_TRAEFIK_PROVIDER").as_deref().map(str::trim) {
            None | Some("docker") => Ok(TraefikProvider::Docker),
            Some("http") => match vars.get("KALPANA_TRAEFIK_TOKEN") {
                Some(token) => Ok(TraefikProvider::Http {
                    token: token.trim().to_string(),
                }),
                None => Err(Error::Invalid(
                    "KALPANA_TRAEFIK_TOKEN is required with KALPANA_TRAEFIK_PROVIDER=http: set it to a long random secret and give Traefik the same one (Authorization: Bearer <token>, see traefik/traefik-http.yml)".into(),
                )),
            },
            Some(other) => Err(Error::Invalid(format!(
                "KALPANA_TRAEFIK_PROVIDER={other:?} is not valid: `docker` (container labels) or `http` (Traefik polls the daemon)"
            ))),
        }
    }
}

impl std::fmt::Debug for TraefikProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TraefikProvider::Docker => f.write_str("Docker"),
            TraefikProvider::Http { .. } => f.write_str("Http { token: <redacted> }"),
        }
    }
}

/// Everything the daemon is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses and host names external bucket endpoints may use although the endpoint policy
    /// refuses them (`KALPANA_EXTERNAL_ALLOW`: comma list of CIDRs and host names).
    pub external_allow: Vec<crate::external::endpoint_policy::AllowEntry>,
    /// Address the REST API listens on (`KALPANA_LISTEN`, default 127.0.0.1:8080; port 0 picks
    /// one and writes it to `<data dir>/listen.addr`).
    pub listen: String,
    /// Where the embedded store and the master key live (`KALPANA_DATA_DIR`, default `./data`).
    pub data_dir: PathBuf,
    /// Store URI (`KALPANA_STORE`): empty for embedded.
    pub store: Option<String>,
    /// Bootstrap admin token (`KALPANA_ADMIN_TOKEN`).
    pub admin_token: Option<String>,
    /// Master key (`KALPANA_MASTER_KEY`); generated into the data dir when absent.
    pub master_key: Option<String>,
    /// Default engine (`KALPANA_ENGINE`, default minio).
    pub engine: EngineKind,
    /// Image per engine: `KALPANA_ENGINE_IMAGE` for the default engine,
    /// `KALPANA_IMAGE_MINIO` / `KALPANA_IMAGE_SEAWEEDFS` for each.
    pub images: Vec<(EngineKind, String)>,
    /// Host port range (`KALPANA_PORT_RANGE`, default 40000-50000).
    pub port_range: PortRange,
    /// Host IP bucket ports bind to (`KALPANA_BIND_IP`, default 127.0.0.1).
    pub bind_ip: IpAddr,
    /// Host name in direct endpoints (`KALPANA_PUBLIC_HOST`, default the bind IP).
    pub public_host: String,
    /// Traefik routing (`KALPANA_BASE_DOMAIN`, `KALPANA_PUBLIC_SCHEME`, `KALPANA_PUBLIC_PORT`,
    /// `KALPANA_TRAEFIK_ENTRYPOINTS`, `KALPANA_TRAEFIK_CERTRESOLVER`).
    pub routing: RoutingConfig,
    /// How Traefik learns the bucket routes (`KALPANA_TRAEFIK_PROVIDER`, `docker` by default:
    /// labels on bucket containers; `http`: it polls `GET /api/traefik/config` with
    /// `KALPANA_TRAEFIK_TOKEN`).
    pub traefik_provider: TraefikProvider,
    /// Docker network of bucket containers (`KALPANA_DOCKER_NETWORK`, default `kalpana`).
    pub network: String,
    /// Name of this daemon instance, labelled on everything it makes (`KALPANA_INSTANCE`).
    pub instance: String,
    /// Container limits (`KALPANA_CONTAINER_MEMORY_MB`, `KALPANA_CONTAINER_CPUS`,
    /// `KALPANA_CONTAINER_PIDS`).
    pub limits: Limits,
    /// How long an engine may take to answer after start (`KALPANA_READY_TIMEOUT_SECS`).
    pub ready_timeout: Duration,
    /// How long an image pull may take (`KALPANA_PULL_TIMEOUT_SECS`).
    pub pull_timeout: Duration,
    /// Default region of new buckets (`KALPANA_REGION`).
    pub region: String,
    /// Shortest time between two recounts of a bucket from its S3 server
    /// (`KALPANA_STATS_SYNC_SECS`, default 6; a large bucket waits longer, see
    /// `usage::recount_every`).
    pub stats_sync_interval: Duration,
    /// How request bodies must arrive (`KALPANA_BODY_IDLE_SECS`, default 30;
    /// `KALPANA_BODY_MIN_RATE`, bytes per second on average, default 1024, enforced after
    /// `KALPANA_BODY_GRACE_SECS`, default 30).
    pub body_pace: BodyPace,
    /// Origins allowed to call the API from a browser (`KALPANA_CORS_ORIGINS`, comma-separated,
    /// or `*`); empty (the default) sends no CORS headers at all.
    pub cors_origins: Vec<String>,
    /// Whether the web console is served at `/ui/` (`KALPANA_CONSOLE`, default true).
    pub console: bool,
    /// How often every bucket is reconciled even without events (`KALPANA_RESYNC_SECS`,
    /// default 30).
    pub resync_interval: Duration,
    /// How long SIGTERM waits for in-flight requests before the daemon exits anyway
    /// (`KALPANA_SHUTDOWN_GRACE_SECS`, default 60).
    pub shutdown_grace: Duration,
    /// Header read timeout and connection caps of the API listener.
    pub conn_limits: ConnLimits,
    /// Buckets one owner may hold (`KALPANA_MAX_BUCKETS_PER_OWNER`, default 50; admins exempt).
    pub max_buckets_per_owner: usize,
    /// How many data volumes (with the engine's internal certificates) are made ahead for new
    /// buckets of the default engine (`KALPANA_VOLUME_POOL`, default 2; 0: none).
    pub volume_pool: usize,
    /// Whether the daemon keeps host firewall rules that leave only the engines' S3 (and
    /// console) ports of bucket containers reachable (`KALPANA_FIREWALL`, default true; needs
    /// root and iptables).
    pub firewall: bool,
    /// Whether the daemon adds the port range to `net.ipv4.ip_local_reserved_ports` when it
    /// overlaps the kernel's ephemeral ports (`KALPANA_RESERVE_PORTS`, default true; needs root).
    pub reserve_ports: bool,
    /// Workspaces, teams and domains one user may make (admins exempt).
    pub caps: Caps,
    /// Percent of the port range no single owner may take (`KALPANA_PORT_RESERVE_PERCENT`,
    /// default 10), so one owner cannot lock everyone else out.
    pub port_reserve_percent: u8,
    /// DNS server asked for domain verification records (`KALPANA_DNS_RESOLVER`, `ip[:port]`;
    /// default the first `nameserver` of `/etc/resolv.conf`).
    pub dns_resolver: Option<std::net::SocketAddr>,
    /// How long the store lease of this daemon lasts without renewal (`KALPANA_LEASE_SECS`,
    /// default 15): another daemon on the same store may take over that long after this one
    /// stopped renewing.
    pub lease_ttl: Duration,
    /// Whether a daemon that finds the store lease held waits as a standby (`KALPANA_STANDBY`,
    /// default false: it refuses to start): it answers the API 503 and takes over when the
    /// lease runs out. Daemons on one store must share `KALPANA_MASTER_KEY`.
    pub standby: bool,
    /// Where bucket servers run (`KALPANA_RUNTIME`): `docker` (the default: the one engine at
    /// `DOCKER_HOST`) or `swarm` (a Docker Swarm, through the manager at
    /// `KALPANA_SWARM_MANAGER`, default `DOCKER_HOST`, with a node agent on every bucket node).
    pub runtime: RuntimeKind,
    /// The Swarm manager's Docker API (`KALPANA_SWARM_MANAGER`, `tcp://host:port` or
    /// `unix:///path`; empty: `DOCKER_HOST` or the local socket).
    pub swarm_manager: String,
    /// How long a node agent serves without its heartbeat acknowledged before it stops its
    /// node's bucket containers (`KALPANA_FENCE_SECS`, default 25; the agents read the same
    /// variable). At least the store lease and a third of it, plus 5 s, so a daemon takeover
    /// fences nobody.
    pub fence_after: Duration,
    /// How long after a node's last acknowledged heartbeat its buckets are evacuated
    /// (`KALPANA_NODE_LOST_SECS`, default 40): at least the fencing time plus 10 s, the time a
    /// fenced node takes to stop its containers and a margin.
    pub node_lost_after: Duration,
    /// Longest lifetime of a presigned URL of a team bucket (`KALPANA_TEAM_PRESIGN_MAX_SECS`,
    /// default 3600): a member removed from the team keeps a URL no longer than this.
    pub team_presign_max: Duration,
    /// The bucket snapshots go to when no target is given (`KALPANA_SNAPSHOT_BUCKET`, an id).
    pub snapshot_bucket: Option<String>,
    /// How often snapshot policies are checked (`KALPANA_SNAPSHOT_TICK_SECS`, default 60).
    pub snapshot_tick: Duration,
    /// The shortest interval a snapshot policy may ask for
    /// (`KALPANA_SNAPSHOT_MIN_EVERY_SECS`, default 3600).
    pub snapshot_min_every: Duration,
    /// How often bucket containers and the Docker host are sampled (`KALPANA_FLEET_SAMPLE_SECS`,
    /// default 30; 0 turns sampling off).
    pub fleet_sample_interval: Duration,
    /// How long samples are kept (`KALPANA_FLEET_RETENTION_HOURS`, default 24).
    pub fleet_retention: Duration,
    /// Seconds with no client request after which a managed bucket without its own setting
    /// sleeps (`KALPANA_SLEEP_AFTER_SECS`, default 0: never).
    pub sleep_after_secs: u64,
    /// Client requests one sleeping bucket holds while it wakes (`KALPANA_WAKE_QUEUE`, default
    /// 256); more are answered 503 with `Retry-After`.
    pub wake_queue: usize,
    /// How often docks of the cloud inventory are synced (`KALPANA_INVENTORY_SYNC_SECS`,
    /// default 600; 0 turns the periodic sync off).
    pub inventory_sync_interval: Duration,
    /// Provider API base URLs other than the public ones (`KALPANA_PROVIDER_URL_VULTR`,
    /// `…_DIGITALOCEAN`, `…_LINODE`), e.g. a stand-in for tests.
    pub provider_urls: Vec<(crate::inventory::model::CloudProvider, String)>,
}

/// The configured provider base URLs: each must be an http(s) origin (and path).
fn provider_urls(vars: &Vars) -> Result<Vec<(crate::inventory::model::CloudProvider, String)>> {
    let mut out = Vec::new();
    for p in crate::inventory::model::CloudProvider::ALL {
        let name = format!("KALPANA_PROVIDER_URL_{}", p.as_str().to_ascii_uppercase());
        if let Some(v) = vars.get(&name) {
            let v = v.trim().trim_end_matches('/').to_string();
            if !(v.starts_with("http://") || v.starts_with("https://")) {
                return Err(Error::Invalid(format!(
                    "{name}={v:?}: expected an http:// or https:// URL"
                )));
            }
            out.push((p, v));
        }
    }
    Ok(out)
}

/// `ip` or `ip:port` of a DNS server (port 53 by default).
fn dns_server(value: &str) -> Result<std::net::SocketAddr> {
    let value = value.trim();
    value
        .parse::<std::net::SocketAddr>()
        .or_else(|_| value.parse::<IpAddr>().map(|ip| (ip, 53).into()))
        .map_err(|_| {
            Error::Invalid(format!(
                "KALPANA_DNS_RESOLVER={value:?}: expected an IP address with an optional :port"
            ))
        })
}

/// The first `nameserver` of `/etc/resolv.conf`, if any.
fn system_resolver() -> Option<std::net::SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .ok()?
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .find_map(|ip| ip.trim().parse::<IpAddr>().ok())
        .map(|ip| (ip, 53).into())
}

/// `*` or a comma-separated list of `http(s)://host[:port]` origins.
fn cors_origins(value: Option<String>) -> Result<Vec<String>> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let origins: Vec<String> = value
        .split(',')
        .map(|o| o.trim().trim_end_matches('/').to_string())
        .filter(|o| !o.is_empty())
        .collect();
    for o in &origins {
        let well_formed = o == "*"
            || ((o.starts_with("http://") || o.starts_with("https://"))
                && !o.contains(char::is_whitespace)
                && o.split("://")
                    .nth(1)
                    .is_some_and(|h| !h.is_empty() && !h.contains('/')));
        if !well_formed {
            return Err(Error::Invalid(format!(
                "KALPANA_CORS_ORIGINS: {o:?} is not `*` or an origin like https://app.example.com"
            )));
        }
    }
    Ok(origins)
}

/// Every key the daemon reads, from the environment or a config file.
pub const KEYS: &[&str] = &[
    "KALPANA_LISTEN",
    "KALPANA_DATA_DIR",
    "KALPANA_STORE",
    "KALPANA_ADMIN_TOKEN",
    "KALPANA_MASTER_KEY",
    "KALPANA_ENGINE",
    "KALPANA_ENGINE_IMAGE",
    "KALPANA_IMAGE_MINIO",
    "KALPANA_IMAGE_SEAWEEDFS",
    "KALPANA_PORT_RANGE",
    "KALPANA_BIND_IP",
    "KALPANA_PUBLIC_HOST",
    "KALPANA_BASE_DOMAIN",
    "KALPANA_PUBLIC_SCHEME",
    "KALPANA_PUBLIC_PORT",
    "KALPANA_TRAEFIK_ENTRYPOINTS",
    "KALPANA_TRAEFIK_CERTRESOLVER",
    "KALPANA_TRAEFIK_PROVIDER",
    "KALPANA_TRAEFIK_TOKEN",
    "KALPANA_DOCKER_NETWORK",
    "KALPANA_INSTANCE",
    "KALPANA_CONTAINER_MEMORY_MB",
    "KALPANA_CONTAINER_CPUS",
    "KALPANA_CONTAINER_PIDS",
    "KALPANA_READY_TIMEOUT_SECS",
    "KALPANA_PULL_TIMEOUT_SECS",
    "KALPANA_REGION",
    "KALPANA_STATS_SYNC_SECS",
    "KALPANA_REACH_BUCKETS_VIA",
    "KALPANA_EXTERNAL_ALLOW",
    "KALPANA_BODY_IDLE_SECS",
    "KALPANA_BODY_MIN_RATE",
    "KALPANA_BODY_GRACE_SECS",
    "KALPANA_CORS_ORIGINS",
    "KALPANA_CONSOLE",
    "KALPANA_RESYNC_SECS",
    "KALPANA_SHUTDOWN_GRACE_SECS",
    "KALPANA_HEADER_TIMEOUT_SECS",
    "KALPANA_MAX_CONNECTIONS_PER_IP",
    "KALPANA_MAX_CONNECTIONS",
    "KALPANA_MAX_BUCKETS_PER_OWNER",
    "KALPANA_MAX_WORKSPACES_PER_USER",
    "KALPANA_FIREWALL",
    "KALPANA_VOLUME_POOL",
    "KALPANA_RESERVE_PORTS",
    "KALPANA_MAX_TEAMS_PER_USER",
    "KALPANA_MAX_DOMAINS_PER_USER",
    "KALPANA_PORT_RESERVE_PERCENT",
    "KALPANA_DNS_RESOLVER",
    "KALPANA_TEAM_PRESIGN_MAX_SECS",
    "KALPANA_INVENTORY_SYNC_SECS",
    "KALPANA_FLEET_SAMPLE_SECS",
    "KALPANA_SNAPSHOT_BUCKET",
    "KALPANA_SNAPSHOT_TICK_SECS",
    "KALPANA_SNAPSHOT_MIN_EVERY_SECS",
    "KALPANA_FLEET_RETENTION_HOURS",
    "KALPANA_PROVIDER_URL_VULTR",
    "KALPANA_PROVIDER_URL_DIGITALOCEAN",
    "KALPANA_PROVIDER_URL_LINODE",
    "KALPANA_LEASE_SECS",
    "KALPANA_STANDBY",
    "KALPANA_RUNTIME",
    "KALPANA_SWARM_MANAGER",
    "KALPANA_FENCE_SECS",
    "KALPANA_NODE_LOST_SECS",
    "KALPANA_SLEEP_AFTER_SECS",
    "KALPANA_TRAEFIK_UPSTREAM_HOST",
    "KALPANA_WAKE_QUEUE",
];

/// Where bucket servers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// One Docker engine.
    Docker,
    /// A Docker Swarm.
    Swarm,
}

impl std::str::FromStr for RuntimeKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "docker" => Ok(RuntimeKind::Docker),
            "swarm" => Ok(RuntimeKind::Swarm),
            other => Err(format!("{other:?} is not a runtime (docker, swarm)")),
        }
    }
}

/// Keys whose values are secrets: a config file holding one should be readable by its owner only.
const SECRET_KEYS: &[&str] = &[
    "KALPANA_ADMIN_TOKEN",
    "KALPANA_MASTER_KEY",
    "KALPANA_STORE",
    "KALPANA_TRAEFIK_TOKEN",
];

/// Where configuration values come from: the environment first, then the config file.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    env: HashMap<String, String>,
    file: HashMap<String, String>,
}

impl Vars {
    /// The `KALPANA_*` environment variables and, when given, a TOML file with the same keys
    /// (`KALPANA_LISTEN = "0.0.0.0:8080"`); the environment wins over the file.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        // `vars()` would panic on a variable that is not UTF-8; such a value is left unread.
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with("KALPANA_"))
            .collect();
        let file = match file {
            None => HashMap::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::Invalid(format!("config file {}: {e}", path.display())))?;
                let values = parse_file(&text)
                    .map_err(|e| Error::Invalid(format!("config file {}: {e}", path.display())))?;
                warn_if_readable_by_others(path, &values);
                values
            }
        };
        Ok(Vars { env, file })
    }

    /// Values given directly (for tests and tools).
    pub fn from_maps(env: HashMap<String, String>, file: HashMap<String, String>) -> Self {
        Vars { env, file }
    }

    fn get(&self, name: &str) -> Option<String> {
        // A key read here but missing from KEYS could not be set from a file.
        debug_assert!(KEYS.contains(&name), "{name} is not in config::KEYS");
        let non_empty = |v: &String| !v.trim().is_empty();
        self.env
            .get(name)
            .filter(|v| non_empty(v))
            .or_else(|| self.file.get(name).filter(|v| non_empty(v)))
            .cloned()
    }

    fn parse<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| Error::Invalid(format!("{name}={v:?} is not valid"))),
        }
    }
}

/// The values of a TOML config file: known keys only, each a string, number or boolean.
fn parse_file(text: &str) -> std::result::Result<HashMap<String, String>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let mut values = HashMap::new();
    for (key, value) in table {
        if !KEYS.contains(&key.as_str()) {
            return Err(format!(
                "unknown key {key:?} (keys are the KALPANA_* environment variable names)"
            ));
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => return Err(format!("{key}: expected a string, number or boolean")),
        };
        values.insert(key, value);
    }
    Ok(values)
}

/// Warns (naming the key, never the value) when a file holding a secret can be read by others.
fn warn_if_readable_by_others(path: &Path, values: &HashMap<String, String>) {
    use std::os::unix::fs::PermissionsExt;
    let Some(secret) = SECRET_KEYS.iter().find(|k| values.contains_key(**k)) else {
        return;
    };
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(file = %path.display(), key = %secret,
                "config file holds a secret and can be read by other users; chmod 600 it");
        }
    }
}

impl Config {
    /// Reads the configuration from the environment only.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(&Vars::load(None)?)
    }

    /// Reads the configuration from `vars`.
    pub fn from_vars(vars: &Vars) -> Result<Self> {
        let var = |name: &str| vars.get(name);
        match var("KALPANA_REACH_BUCKETS_VIA").as_deref() {
            None | Some("host") => {}
            Some(other) => {
                return Err(Error::Invalid(format!(
                    "KALPANA_REACH_BUCKETS_VIA={other:?}: only `host` is supported: the bucket network forbids traffic between containers, so the daemon reaches buckets on their published host ports (run it on the host, or in a container with host networking)"
                )))
            }
        }
        let engine = match var("KALPANA_ENGINE") {
            Some(e) => e.parse::<EngineKind>()?,
            None => EngineKind::Minio,
        };
        let mut images = Vec::new();
        for kind in EngineKind::ALL {
            let key = format!("KALPANA_IMAGE_{}", kind.as_str().to_ascii_uppercase());
            if let Some(image) = var(&key) {
                images.push((kind, image));
            }
        }
        if let Some(image) = var("KALPANA_ENGINE_IMAGE") {
            images.retain(|(k, _)| *k != engine);
            images.push((engine, image));
        }
        let (fence_after, node_lost_after) = node_times(vars)?;
        let port_range = match var("KALPANA_PORT_RANGE") {
            Some(r) => r.parse::<PortRange>()?,
            None => PortRange::default(),
        };
        let bind_ip: IpAddr = vars.parse("KALPANA_BIND_IP", IpAddr::V4(Ipv4Addr::LOCALHOST))?;
        let public_host = var("KALPANA_PUBLIC_HOST").unwrap_or_else(|| {
            if bind_ip.is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                bind_ip.to_string()
            }
        });
        let routing = RoutingConfig {
            upstream_host: var("KALPANA_TRAEFIK_UPSTREAM_HOST").unwrap_or_else(|| {
                if bind_ip.is_unspecified() {
                    "127.0.0.1".to_string()
                } else {
                    bind_ip.to_string()
                }
            }),
            base_domain: var("KALPANA_BASE_DOMAIN").map(|d| d.trim_matches('.').to_string()),
            scheme: var("KALPANA_PUBLIC_SCHEME").unwrap_or_else(|| "http".into()),
            public_port: var("KALPANA_PUBLIC_PORT")
                .map(|p| {
                    p.parse().map_err(|_| {
                        Error::Invalid(format!("KALPANA_PUBLIC_PORT={p:?} is not a port"))
                    })
                })
                .transpose()?,
            entrypoints: var("KALPANA_TRAEFIK_ENTRYPOINTS")
                .unwrap_or_else(|| "web".into())
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            cert_resolver: var("KALPANA_TRAEFIK_CERTRESOLVER"),
        };
        let defaults = Limits::default();
        let memory_mb: i64 = vars.parse(
            "KALPANA_CONTAINER_MEMORY_MB",
            defaults.memory_bytes / (1024 * 1024),
        )?;
        let cpus: f64 = vars.parse("KALPANA_CONTAINER_CPUS", 1.0)?;
        let limits = Limits {
            memory_bytes: memory_mb * 1024 * 1024,
            nano_cpus: (cpus * 1e9) as i64,
            pids: vars.parse("KALPANA_CONTAINER_PIDS", defaults.pids)?,
        };
        let external_allow = match var("KALPANA_EXTERNAL_ALLOW") {
            Some(list) => crate::external::endpoint_policy::parse_allow_list(&list)
                .map_err(|e| Error::Invalid(format!("KALPANA_EXTERNAL_ALLOW: {e}")))?,
            None => Vec::new(),
        };
        let runtime = vars.parse("KALPANA_RUNTIME", RuntimeKind::Docker)?;
        Ok(Config {
            external_allow,
            listen: var("KALPANA_LISTEN").unwrap_or_else(|| "127.0.0.1:8080".into()),
            data_dir: var("KALPANA_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| "data".into()),
            store: var("KALPANA_STORE"),
            admin_token: var("KALPANA_ADMIN_TOKEN"),
            master_key: var("KALPANA_MASTER_KEY"),
            engine,
            images,
            port_range,
            bind_ip,
            public_host,
            routing,
            traefik_provider: TraefikProvider::from_vars(vars)?,
            network: var("KALPANA_DOCKER_NETWORK").unwrap_or_else(|| "kalpana".into()),
            instance: var("KALPANA_INSTANCE").unwrap_or_else(|| "default".into()),
            limits,
            ready_timeout: Duration::from_secs(vars.parse("KALPANA_READY_TIMEOUT_SECS", 60)?),
            pull_timeout: Duration::from_secs(vars.parse("KALPANA_PULL_TIMEOUT_SECS", 600)?),
            region: var("KALPANA_REGION").unwrap_or_else(|| "us-east-1".into()),
            stats_sync_interval: Duration::from_secs(
                vars.parse::<u64>("KALPANA_STATS_SYNC_SECS", 6)?.max(1),
            ),
            body_pace: BodyPace {
                idle: Duration::from_secs(vars.parse::<u64>("KALPANA_BODY_IDLE_SECS", 30)?.max(1)),
                grace: Duration::from_secs(vars.parse("KALPANA_BODY_GRACE_SECS", 30)?),
                min_rate: vars.parse("KALPANA_BODY_MIN_RATE", 1024)?,
            },
            cors_origins: cors_origins(var("KALPANA_CORS_ORIGINS"))?,
            console: vars.parse("KALPANA_CONSOLE", true)?,
            resync_interval: Duration::from_secs(
                vars.parse::<u64>("KALPANA_RESYNC_SECS", 30)?.max(1),
            ),
            shutdown_grace: Duration::from_secs(vars.parse("KALPANA_SHUTDOWN_GRACE_SECS", 60)?),
            conn_limits: ConnLimits {
                header_timeout: Duration::from_secs(
                    vars.parse::<u64>("KALPANA_HEADER_TIMEOUT_SECS", 10)?.max(1),
                ),
                per_address: vars
                    .parse::<usize>("KALPANA_MAX_CONNECTIONS_PER_IP", 256)?
                    .max(1),
                total: vars.parse::<usize>("KALPANA_MAX_CONNECTIONS", 8192)?.max(1),
            },
            max_buckets_per_owner: vars.parse("KALPANA_MAX_BUCKETS_PER_OWNER", 50)?,
            firewall: vars.parse("KALPANA_FIREWALL", true)?,
            // Volumes made ahead sit on one engine; a cluster places each bucket when made.
            volume_pool: match runtime {
                RuntimeKind::Docker => vars.parse("KALPANA_VOLUME_POOL", 2)?,
                RuntimeKind::Swarm => 0,
            },
            reserve_ports: vars.parse("KALPANA_RESERVE_PORTS", true)?,
            caps: Caps {
                workspaces: vars.parse("KALPANA_MAX_WORKSPACES_PER_USER", 20)?,
                teams: vars.parse("KALPANA_MAX_TEAMS_PER_USER", 10)?,
                domains: vars.parse("KALPANA_MAX_DOMAINS_PER_USER", 20)?,
            },
            port_reserve_percent: vars
                .parse::<u8>("KALPANA_PORT_RESERVE_PERCENT", 10)?
                .min(90),
            dns_resolver: match var("KALPANA_DNS_RESOLVER") {
                Some(v) => Some(dns_server(&v)?),
                None => system_resolver(),
            },
            lease_ttl: Duration::from_secs(vars.parse::<u64>("KALPANA_LEASE_SECS", 15)?.max(1)),
            standby: vars.parse("KALPANA_STANDBY", false)?,
            runtime,
            swarm_manager: var("KALPANA_SWARM_MANAGER").unwrap_or_default(),
            fence_after,
            node_lost_after,
            team_presign_max: Duration::from_secs(
                vars.parse::<u64>("KALPANA_TEAM_PRESIGN_MAX_SECS", 3600)?
                    .max(1),
            ),
            snapshot_bucket: var("KALPANA_SNAPSHOT_BUCKET").map(|v| v.trim().to_string()),
            snapshot_tick: Duration::from_secs(
                vars.parse::<u64>("KALPANA_SNAPSHOT_TICK_SECS", 60)?.max(1),
            ),
            snapshot_min_every: Duration::from_secs(
                vars.parse::<u64>("KALPANA_SNAPSHOT_MIN_EVERY_SECS", 3600)?
                    .max(1),
            ),
            fleet_sample_interval: Duration::from_secs(
                vars.parse("KALPANA_FLEET_SAMPLE_SECS", 30)?,
            ),
            fleet_retention: Duration::from_secs(
                vars.parse::<u64>("KALPANA_FLEET_RETENTION_HOURS", 24)?
                    .clamp(1, 24 * 31)
                    * 3600,
            ),
            sleep_after_secs: vars.parse("KALPANA_SLEEP_AFTER_SECS", 0)?,
            wake_queue: vars.parse::<usize>("KALPANA_WAKE_QUEUE", 256)?.max(1),
            inventory_sync_interval: Duration::from_secs(
                vars.parse("KALPANA_INVENTORY_SYNC_SECS", 600)?,
            ),
            provider_urls: provider_urls(vars)?,
        })
    }

    /// The profile of `kind`, with its configured image.
    pub fn profile(&self, kind: EngineKind) -> EngineProfile {
        let profile = kind.profile();
        match self.images.iter().find(|(k, _)| *k == kind) {
            Some((_, image)) => profile.with_image(image.clone()),
            None => profile,
        }
    }

    /// The address the daemon itself uses to reach a bucket's published port.
    pub fn internal_host(&self) -> String {
        if self.bind_ip.is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            self.bind_ip.to_string()
        }
    }
}

/// `KALPANA_FENCE_SECS` and `KALPANA_NODE_LOST_SECS`, checked against `KALPANA_LEASE_SECS`:
/// a node fences only after a daemon takeover would have ended, and is evacuated only after it
/// has had time to fence.
fn node_times(vars: &Vars) -> Result<(Duration, Duration)> {
    let lease: u64 = vars.parse::<u64>("KALPANA_LEASE_SECS", 15)?.max(1);
    let fence: u64 = vars.parse("KALPANA_FENCE_SECS", 25)?;
    let lost: u64 = vars.parse("KALPANA_NODE_LOST_SECS", 40)?;
    // A takeover lasts up to the lease, a third of it more (the standby's next try), the new
    // daemon's start and an agent's next report: 5 s covers the last two (2.1–2.8 s measured).
    let takeover = lease + lease.div_ceil(3) + 5;
    if fence < takeover {
        return Err(Error::Invalid(format!(
            "KALPANA_FENCE_SECS={fence} must be at least {takeover} with KALPANA_LEASE_SECS={lease} (the lease, a third of it and 5 s): a daemon takeover would make every node fence"
        )));
    }
    if lost < fence + 10 {
        return Err(Error::Invalid(format!(
            "KALPANA_NODE_LOST_SECS={lost} must be at least KALPANA_FENCE_SECS={fence} + 10: a cut-off node must have stopped its buckets before they serve elsewhere"
        )));
    }
    Ok((Duration::from_secs(fence), Duration::from_secs(lost)))
}

/// The per-user caps (`KALPANA_MAX_WORKSPACES_PER_USER` 20, `KALPANA_MAX_TEAMS_PER_USER` 10,
/// `KALPANA_MAX_DOMAINS_PER_USER` 20).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Workspaces one user may own.
    pub workspaces: usize,
    /// Teams one user may own.
    pub teams: usize,
    /// Domains one user may register.
    pub domains: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            workspaces: 20,
            teams: 10,
            domains: 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn file_values_apply_and_the_environment_wins() -> Result<()> {
        let file = parse_file(
            "KALPANA_LISTEN = \"0.0.0.0:9090\"\nKALPANA_REGION = \"eu-west-3\"\n\
             KALPANA_CONTAINER_PIDS = 300\nKALPANA_CONTAINER_CPUS = 0.5\n",
        )
        .map_err(Error::Invalid)?;
        let env = map(&[("KALPANA_REGION", "ap-south-1"), ("KALPANA_LISTEN", " ")]);
        let config = Config::from_vars(&Vars::from_maps(env, file))?;
        assert_eq!(
            config.listen, "0.0.0.0:9090",
            "a blank env value falls back to the file"
        );
        assert_eq!(config.region, "ap-south-1");
        assert_eq!(config.limits.pids, 300);
        assert_eq!(config.limits.nano_cpus, 500_000_000);
        Ok(())
    }

    #[test]
    fn a_bad_file_is_refused_with_the_key_named() {
        let unknown = parse_file("KALPANA_LISTN = \"x\"");
        assert!(unknown.is_err_and(|e| e.contains("KALPANA_LISTN")));
        let table = parse_file("KALPANA_LISTEN = { a = 1 }");
        assert!(table.is_err_and(|e| e.contains("KALPANA_LISTEN")));
        assert!(parse_file("KALPANA_LISTEN = ").is_err());
    }

    #[test]
    fn fencing_outlasts_a_takeover_and_evacuation_waits_for_fencing() -> Result<()> {
        let at = |pairs: &[(&str, &str)]| {
            Config::from_vars(&Vars::from_maps(map(pairs), HashMap::new()))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let short = at(&[("KALPANA_LEASE_SECS", "30"), ("KALPANA_FENCE_SECS", "30")]);
        assert!(short.contains("KALPANA_FENCE_SECS=30"), "{short}");
        let tight = at(&[("KALPANA_LEASE_SECS", "3"), ("KALPANA_FENCE_SECS", "8")]);
        assert!(tight.contains("at least 9"), "{tight}");
        let enough = at(&[
            ("KALPANA_LEASE_SECS", "3"),
            ("KALPANA_FENCE_SECS", "9"),
            ("KALPANA_NODE_LOST_SECS", "19"),
        ]);
        assert!(enough.is_empty(), "{enough}");
        let early = at(&[
            ("KALPANA_FENCE_SECS", "25"),
            ("KALPANA_NODE_LOST_SECS", "30"),
        ]);
        assert!(early.contains("KALPANA_NODE_LOST_SECS=30"), "{early}");
        let config = Config::from_vars(&Vars::from_maps(HashMap::new(), HashMap::new()))?;
        assert_eq!(config.fence_after, Duration::from_secs(25));
        assert_eq!(config.node_lost_after, Duration::from_secs(40));
        Ok(())
    }

    #[test]
    fn a_bad_value_from_the_file_names_its_key() {
        let vars = Vars::from_maps(HashMap::new(), map(&[("KALPANA_RESYNC_SECS", "soon")]));
        let err = Config::from_vars(&vars)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("KALPANA_RESYNC_SECS"), "{err}");
    }

    #[test]
    fn the_traefik_provider_is_docker_by_default_and_http_needs_its_token() -> Result<()> {
        let config = Config::from_vars(&Vars::from_maps(HashMap::new(), HashMap::new()))?;
        assert_eq!(config.traefik_provider, TraefikProvider::Docker);
        assert_eq!(config.traefik_provider.http_token(), None);

        let env = map(&[("KALPANA_TRAEFIK_PROVIDER", "http")]);
        let err = Config::from_vars(&Vars::from_maps(env, HashMap::new()))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("KALPANA_TRAEFIK_TOKEN"), "{err}");

        let env = map(&[("KALPANA_TRAEFIK_PROVIDER", "consul")]);
        let err = Config::from_vars(&Vars::from_maps(env, HashMap::new()))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("KALPANA_TRAEFIK_PROVIDER"), "{err}");

        let env = map(&[
            ("KALPANA_TRAEFIK_PROVIDER", "http"),
            ("KALPANA_TRAEFIK_TOKEN", "s3cr3t-feed-token"),
        ]);
        let config = Config::from_vars(&Vars::from_maps(env, HashMap::new()))?;
        assert_eq!(
            config.traefik_provider.http_token(),
            Some("s3cr3t-feed-token")
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cr3t-feed-token"), "{shown}");
        assert!(shown.contains("Http"), "{shown}");
        Ok(())
    }
}
