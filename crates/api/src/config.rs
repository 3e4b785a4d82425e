//! Daemon configuration from `KALPANA_*` environment variables.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use kalpana_manager_core::spec::Limits;
use kalpana_manager_core::{EngineKind, EngineProfile, PortRange, RoutingConfig};

use crate::error::{Error, Result};

/// Everything the daemon is configured with.
#[derive(Debug, Clone)]
pub struct Config {
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
    /// How often object counts and sizes are recounted from every running bucket's S3 server
    /// (`KALPANA_STATS_SYNC_SECS`, default 300).
    pub stats_sync_interval: Duration,
    /// Reach bucket servers by container name on the Docker network instead of the published
    /// host port (`KALPANA_REACH_BUCKETS_VIA=network`; default `host`).
    pub reach_via_network: bool,
    /// How request bodies must arrive (`KALPANA_BODY_IDLE_SECS`, default 30;
    /// `KALPANA_BODY_MIN_RATE`, bytes per second on average, default 1024, enforced after
    /// `KALPANA_BODY_GRACE_SECS`, default 30).
    pub body_pace: crate::body_guard::BodyPace,
    /// Origins allowed to call the API from a browser (`KALPANA_CORS_ORIGINS`, comma-separated,
    /// or `*`); empty (the default) sends no CORS headers at all.
    pub cors_origins: Vec<String>,
    /// How often every bucket is reconciled even without events (`KALPANA_RESYNC_SECS`,
    /// default 30).
    pub resync_interval: Duration,
    /// How long SIGTERM waits for in-flight requests before the daemon exits anyway
    /// (`KALPANA_SHUTDOWN_GRACE_SECS`, default 60).
    pub shutdown_grace: Duration,
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
            return Err(Error::BadRequest(format!(
                "KALPANA_CORS_ORIGINS: {o:?} is not `*` or an origin like https://app.example.com"
            )));
        }
    }
    Ok(origins)
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| Error::BadRequest(format!("{name}={v:?} is not valid"))),
    }
}

impl Config {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self> {
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
        let port_range = match var("KALPANA_PORT_RANGE") {
            Some(r) => r.parse::<PortRange>()?,
            None => PortRange::default(),
        };
        let bind_ip: IpAddr = parse("KALPANA_BIND_IP", IpAddr::V4(Ipv4Addr::LOCALHOST))?;
        let public_host = var("KALPANA_PUBLIC_HOST").unwrap_or_else(|| {
            if bind_ip.is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                bind_ip.to_string()
            }
        });
        let routing = RoutingConfig {
            base_domain: var("KALPANA_BASE_DOMAIN").map(|d| d.trim_matches('.').to_string()),
            scheme: var("KALPANA_PUBLIC_SCHEME").unwrap_or_else(|| "http".into()),
            public_port: var("KALPANA_PUBLIC_PORT")
                .map(|p| {
                    p.parse().map_err(|_| {
                        Error::BadRequest(format!("KALPANA_PUBLIC_PORT={p:?} is not a port"))
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
        let memory_mb: i64 = parse(
            "KALPANA_CONTAINER_MEMORY_MB",
            defaults.memory_bytes / (1024 * 1024),
        )?;
        let cpus: f64 = parse("KALPANA_CONTAINER_CPUS", 1.0)?;
        let limits = Limits {
            memory_bytes: memory_mb * 1024 * 1024,
            nano_cpus: (cpus * 1e9) as i64,
            pids: parse("KALPANA_CONTAINER_PIDS", defaults.pids)?,
        };
        Ok(Config {
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
            network: var("KALPANA_DOCKER_NETWORK").unwrap_or_else(|| "kalpana".into()),
            instance: var("KALPANA_INSTANCE").unwrap_or_else(|| "default".into()),
            limits,
            ready_timeout: Duration::from_secs(parse("KALPANA_READY_TIMEOUT_SECS", 60)?),
            pull_timeout: Duration::from_secs(parse("KALPANA_PULL_TIMEOUT_SECS", 600)?),
            region: var("KALPANA_REGION").unwrap_or_else(|| "us-east-1".into()),
            stats_sync_interval: Duration::from_secs(
                parse::<u64>("KALPANA_STATS_SYNC_SECS", 300)?.max(1),
            ),
            body_pace: crate::body_guard::BodyPace {
                idle: Duration::from_secs(parse::<u64>("KALPANA_BODY_IDLE_SECS", 30)?.max(1)),
                grace: Duration::from_secs(parse("KALPANA_BODY_GRACE_SECS", 30)?),
                min_rate: parse("KALPANA_BODY_MIN_RATE", 1024)?,
            },
            cors_origins: cors_origins(var("KALPANA_CORS_ORIGINS"))?,
            resync_interval: Duration::from_secs(parse::<u64>("KALPANA_RESYNC_SECS", 30)?.max(1)),
            shutdown_grace: Duration::from_secs(parse("KALPANA_SHUTDOWN_GRACE_SECS", 60)?),
            reach_via_network: match var("KALPANA_REACH_BUCKETS_VIA").as_deref() {
                None | Some("host") => false,
                Some("network") => true,
                Some(other) => {
                    return Err(Error::BadRequest(format!(
                        "KALPANA_REACH_BUCKETS_VIA={other:?}: expected host or network"
                    )))
                }
            },
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
