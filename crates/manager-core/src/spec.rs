//! The container and volume of a bucket, as pure functions of its spec: names, labels (including
//! Traefik's), ports, limits and hardening. Built here and nowhere else.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig, RestartPolicy,
    RestartPolicyNameEnum,
};

use crate::engine::{EngineProfile, PublicOrigins};

/// Label every managed container and volume carries.
pub const LABEL_MANAGED: &str = "kalpana.managed";
/// Label naming the daemon instance that manages the resource.
pub const LABEL_INSTANCE: &str = "kalpana.instance";
/// Label with the bucket id.
pub const LABEL_BUCKET_ID: &str = "kalpana.bucket.id";
/// Label with the bucket name.
pub const LABEL_BUCKET_NAME: &str = "kalpana.bucket.name";
/// Label with the owner's user id.
pub const LABEL_OWNER: &str = "kalpana.owner";
/// Label with the generation of the bucket's container configuration; a container whose
/// generation differs from its record's is replaced by reconcile.
pub const LABEL_GENERATION: &str = "kalpana.generation";

/// Label with the revision of the container spec (engine command, environment, hardening) the
/// container was made from.
pub const LABEL_SPEC_REVISION: &str = "kalpana.spec.revision";
/// Revision of the container spec this daemon makes; bumped whenever a change must reach
/// existing containers (2: engine internals locked to the container, memory ceiling; 3: the
/// IAM API that makes scoped keys; 4: no IAM API on the S3 port, keys made by `weed shell`;
/// 5: no published ports, the daemon owns them, and Traefik routes to the daemon).
pub const SPEC_REVISION: u32 = 5;

/// Priority of every bucket router.
pub const ROUTER_PRIORITY: u32 = 1000;

/// Name of the container of bucket `id`.
pub fn container_name(id: &str) -> String {
    format!("kalpana-bucket-{id}")
}

/// Name of the data volume of bucket `id`.
pub fn volume_name(id: &str) -> String {
    format!("kalpana-bucket-{id}-data")
}

/// Name of the volume bucket `id`'s old data is set aside in on a node it was evacuated from
/// (`stamp`: when, in Unix milliseconds): never served, kept for an admin to delete.
pub fn set_aside_volume_name(id: &str, stamp: i64) -> String {
    format!("kalpana-bucket-{id}-aside-{stamp}")
}

/// Label of a set-aside volume: when its bucket was evacuated (RFC 3339).
pub const LABEL_SET_ASIDE: &str = "kalpana.set-aside";

/// Label of a volume made ahead of a bucket (with its internal certificates) and not yet
/// given to one.
pub const LABEL_POOL: &str = "kalpana.pool";

/// Label of a data helper container: what it is for (`staging`, `import`, `export`).
pub const LABEL_HELPER: &str = "kalpana.helper";

/// Name of the volume a restore stages a snapshot's data in before it replaces the bucket's.
pub fn staging_volume_name(id: &str) -> String {
    format!("kalpana-bucket-{id}-staging")
}

/// Name of a data helper of bucket `id`: a container created and never started, there only so
/// Docker's archive API can read or write a volume without the bucket's own container.
pub fn helper_name(id: &str, role: &str) -> String {
    format!("kalpana-bucket-{id}-{role}")
}

/// Resource limits applied to every bucket container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Memory limit in bytes.
    pub memory_bytes: i64,
    /// CPU limit in billionths of a CPU.
    pub nano_cpus: i64,
    /// Maximum number of processes/threads.
    pub pids: i64,
}

impl Default for Limits {
    fn default() -> Self {
        // 512 MiB: SeaweedFS grows to 200–300 MiB under traffic and was OOM-killed at 128 MiB.
        Limits {
            memory_bytes: 512 * 1024 * 1024,
            nano_cpus: 1_000_000_000,
            pids: 512,
        }
    }
}

/// How buckets are exposed through Traefik.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingConfig {
    /// Base domain; without it no routing labels are written.
    pub base_domain: Option<String>,
    /// `http` or `https`.
    pub scheme: String,
    /// Public port of routed URLs when not the scheme's default.
    pub public_port: Option<u16>,
    /// Traefik entrypoints of the routers.
    pub entrypoints: Vec<String>,
    /// Traefik certificate resolver; when set the routers get TLS labels.
    pub cert_resolver: Option<String>,
    /// The host by which Traefik reaches the daemon's listeners on bucket ports
    /// (`KALPANA_TRAEFIK_UPSTREAM_HOST`): routes go to the daemon, which owns every bucket's
    /// ports, never to the container itself.
    pub upstream_host: String,
}

impl RoutingConfig {
    /// The daemon's listener on host port `port` as Traefik reaches it
    /// (`http://<upstream host>:<port>`): where a bucket's routers point.
    pub fn upstream_url(&self, port: u16) -> String {
        format!("http://{}:{port}", self.upstream_host)
    }

    /// Public origin of `host`, e.g. `https://b.example.com` or `http://b.localhost:8081`.
    pub fn origin(&self, host: &str) -> String {
        let scheme = if self.scheme.is_empty() {
            "http"
        } else {
            &self.scheme
        };
        match self.public_port {
            Some(p) if !is_default_port(scheme, p) => format!("{scheme}://{host}:{p}"),
            _ => format!("{scheme}://{host}"),
        }
    }
}

/// The name of bucket `id`'s S3 router and service in Traefik (`kalpana-<id>`; its console's
/// is this plus `-console`), whichever provider feeds Traefik.
pub fn router_name(id: &str) -> String {
    format!("kalpana-{id}")
}

/// What a routed host is prefixed with to reach the bucket's console.
pub const CONSOLE_HOST_PREFIX: &str = "console-";

/// The Traefik rule that matches any of `hosts`, each prefixed with `prefix`:
/// ``Host(`a`) || Host(`b`)``.
pub fn host_rule(hosts: &[String], prefix: &str) -> String {
    hosts
        .iter()
        .map(|h| format!("Host(`{prefix}{h}`)"))
        .collect::<Vec<_>>()
        .join(" || ")
}

fn is_default_port(scheme: &str, port: u16) -> bool {
    (scheme == "http" && port == 80) || (scheme == "https" && port == 443)
}

/// Everything that determines a bucket's container. `Debug` leaves the secret out.
#[derive(Clone)]
pub struct BucketSpec {
    /// Bucket id.
    pub id: String,
    /// Bucket (and S3 bucket) name.
    pub name: String,
    /// Owner's user id.
    pub owner: String,
    /// Daemon instance label value.
    pub instance: String,
    /// Engine profile (with the image to run).
    pub engine: EngineProfile,
    /// Access key.
    pub access_key: String,
    /// Secret key.
    pub secret_key: String,
    /// Host port of the S3 API.
    pub s3_port: u16,
    /// Host port of the console, when the engine has one.
    pub console_port: Option<u16>,
    /// Host IP the ports are bound to.
    pub bind_ip: String,
    /// Docker network the container joins.
    pub network: String,
    /// Host names routed to the S3 API (default subdomain host and linked domains).
    pub routed_hosts: Vec<String>,
    /// Routing settings.
    pub routing: RoutingConfig,
    /// Resource limits.
    pub limits: Limits,
    /// Generation of the container configuration (bumped by credential rotation, domain links).
    pub generation: u64,
}

impl std::fmt::Debug for BucketSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketSpec")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("owner", &self.owner)
            .field("instance", &self.instance)
            .field("engine", &self.engine.kind)
            .field("image", &self.engine.image)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("s3_port", &self.s3_port)
            .field("console_port", &self.console_port)
            .field("network", &self.network)
            .field("routed_hosts", &self.routed_hosts)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl BucketSpec {
    /// Labels of the volume: ownership only.
    pub fn volume_labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_MANAGED.to_string(), "true".to_string()),
            (LABEL_INSTANCE.to_string(), self.instance.clone()),
            (LABEL_BUCKET_ID.to_string(), self.id.clone()),
            (LABEL_BUCKET_NAME.to_string(), self.name.clone()),
            (LABEL_OWNER.to_string(), self.owner.clone()),
        ])
    }

    /// Labels of the container: ownership plus Traefik's router and service labels.
    pub fn container_labels(&self) -> HashMap<String, String> {
        let mut labels = self.volume_labels();
        labels.insert(LABEL_GENERATION.to_string(), self.generation.to_string());
        labels.insert(LABEL_SPEC_REVISION.to_string(), SPEC_REVISION.to_string());
        labels.extend(self.traefik_labels());
        labels
    }

    /// Public origins of the routed S3 API and console (for the engine's env).
    pub fn public_origins(&self) -> PublicOrigins {
        if self.routing.base_domain.is_none() {
            return PublicOrigins::default();
        }
        let s3 = self.routed_hosts.first().map(|h| self.routing.origin(h));
        let console = match (self.engine.console_port, self.routed_hosts.first()) {
            (Some(_), Some(h)) => Some(self.routing.origin(&format!("{CONSOLE_HOST_PREFIX}{h}"))),
            _ => None,
        };
        PublicOrigins { s3, console }
    }

    /// Traefik Docker-provider labels; empty without a base domain or routed host.
    pub fn traefik_labels(&self) -> HashMap<String, String> {
        let mut labels = HashMap::new();
        if self.routing.base_domain.is_none() || self.routed_hosts.is_empty() {
            return labels;
        }
        let router = router_name(&self.id);
        let rule = host_rule(&self.routed_hosts, "");
        labels.insert("traefik.enable".into(), "true".into());
        self.add_router(&mut labels, &router, rule, self.s3_port);
        if let Some(console_port) = self
            .console_port
            .filter(|_| self.engine.console_port.is_some())
        {
            let rule = host_rule(&self.routed_hosts, CONSOLE_HOST_PREFIX);
            self.add_router(
                &mut labels,
                &format!("{router}-console"),
                rule,
                console_port,
            );
        }
        labels
    }

    fn add_router(
        &self,
        labels: &mut HashMap<String, String>,
        name: &str,
        rule: String,
        port: u16,
    ) {
        let r = format!("traefik.http.routers.{name}");
        labels.insert(format!("{r}.rule"), rule);
        // Traefik ranks routers by rule length unless told otherwise: every bucket router gets
        // the same priority, so no rule can outrank another by being longer (hosts are unique).
        labels.insert(format!("{r}.priority"), ROUTER_PRIORITY.to_string());
        labels.insert(format!("{r}.service"), name.to_string());
        if !self.routing.entrypoints.is_empty() {
            labels.insert(
                format!("{r}.entrypoints"),
                self.routing.entrypoints.join(","),
            );
        }
        if let Some(resolver) = &self.routing.cert_resolver {
            labels.insert(format!("{r}.tls"), "true".into());
            labels.insert(format!("{r}.tls.certresolver"), resolver.clone());
        }
        // The daemon's listener on the bucket's host port: it holds a request while the
        // bucket sleeps or its container is stopping, where the container's own address would
        // answer 502.
        labels.insert(
            format!("traefik.http.services.{name}.loadbalancer.server.url"),
            self.routing.upstream_url(port),
        );
    }

    /// The full create-container body: image, env, volume, limits, hardening, labels. No port
    /// is published: the daemon listens on the bucket's host ports itself and passes the bytes
    /// to the container's address (see the domain's `sleep::proxy`).
    pub fn container_body(&self) -> ContainerCreateBody {
        let e = &self.engine;
        let mut exposed = vec![format!("{}/tcp", e.s3_port)];
        if let Some(inner) = e.console_port {
            exposed.push(format!("{inner}/tcp"));
        }
        let host_config = HostConfig {
            binds: Some(vec![format!("{}:{}", volume_name(&self.id), e.data_path)]),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            memory: Some(self.limits.memory_bytes),
            nano_cpus: Some(self.limits.nano_cpus),
            pids_limit: Some(self.limits.pids),
            privileged: Some(false),
            cap_drop: Some(vec!["ALL".to_string()]),
            cap_add: (!e.cap_add.is_empty()).then(|| e.cap_add.clone()),
            security_opt: Some(vec!["no-new-privileges:true".to_string()]),
            readonly_rootfs: Some(true),
            tmpfs: Some(
                e.tmpfs
                    .iter()
                    .map(|p| (p.to_string(), "rw,nosuid,nodev,size=64m".to_string()))
                    .collect(),
            ),
            network_mode: Some(self.network.clone()),
            ..Default::default()
        };
        ContainerCreateBody {
            image: Some(e.image.clone()),
            entrypoint: e.entrypoint.clone(),
            cmd: Some(e.command(self.limits.memory_bytes)),
            env: Some(e.env(
                &self.access_key,
                &self.secret_key,
                self.limits.memory_bytes,
                &self.public_origins(),
            )),
            exposed_ports: Some(exposed),
            labels: Some(self.container_labels()),
            hostname: Some(container_name(&self.id)),
            host_config: Some(host_config),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    self.network.clone(),
                    EndpointSettings {
                        aliases: Some(vec![container_name(&self.id)]),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        }
    }

    /// A data helper on `volume`, mounted where the engine keeps its data: no network, no
    /// ports, no restart, everything dropped; never started (Docker's archive API reads and
    /// writes a created container's mounts). Its root file system is writable, unlike the
    /// engine's, because the archive API refuses to extract onto a read-only root.
    pub fn helper_body(&self, volume: &str, role: &str) -> ContainerCreateBody {
        let mut labels = self.volume_labels();
        labels.insert(LABEL_HELPER.to_string(), role.to_string());
        ContainerCreateBody {
            image: Some(self.engine.image.clone()),
            entrypoint: self.engine.entrypoint.clone(),
            cmd: Some(vec!["kalpana-data-helper-is-never-started".to_string()]),
            labels: Some(labels),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("{volume}:{}", self.engine.data_path)]),
                network_mode: Some("none".to_string()),
                privileged: Some(false),
                cap_drop: Some(vec!["ALL".to_string()]),
                security_opt: Some(vec!["no-new-privileges:true".to_string()]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// Which containers this daemon's spec made.
impl crate::reports::ContainerState {
    /// Whether the container is of the record's `generation` and of this daemon's container
    /// spec; anything else is replaced (on the same volume).
    pub fn is_current(&self, generation: u64) -> bool {
        self.generation.unwrap_or(0) == generation && self.spec_revision == Some(SPEC_REVISION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineProfile;

    fn spec(engine: EngineProfile, routing: RoutingConfig) -> BucketSpec {
        BucketSpec {
            id: "b1".into(),
            name: "photos".into(),
            owner: "u1".into(),
            instance: "default".into(),
            engine,
            access_key: "AK".into(),
            secret_key: "SK".into(),
            s3_port: 40001,
            console_port: Some(40002),
            bind_ip: "127.0.0.1".into(),
            network: "kalpana".into(),
            routed_hosts: vec!["photos.example.com".into()],
            routing,
            limits: Limits::default(),
            generation: 3,
        }
    }

    fn routed(cert_resolver: Option<&str>) -> RoutingConfig {
        RoutingConfig {
            base_domain: Some("example.com".into()),
            scheme: "https".into(),
            public_port: None,
            entrypoints: vec!["web".into(), "websecure".into()],
            cert_resolver: cert_resolver.map(String::from),
            upstream_host: "10.0.0.5".into(),
        }
    }

    #[test]
    fn minio_labels_route_s3_and_console_with_tls() {
        let l = spec(EngineProfile::minio(), routed(Some("le"))).container_labels();
        let get = |k: &str| l.get(k).map(String::as_str);
        assert_eq!(get("kalpana.managed"), Some("true"));
        assert_eq!(get("kalpana.bucket.id"), Some("b1"));
        assert_eq!(get("kalpana.bucket.name"), Some("photos"));
        assert_eq!(get("kalpana.owner"), Some("u1"));
        assert_eq!(get("traefik.enable"), Some("true"));
        assert_eq!(
            get("traefik.http.routers.kalpana-b1.rule"),
            Some("Host(`photos.example.com`)")
        );
        assert_eq!(
            get("traefik.http.routers.kalpana-b1-console.rule"),
            Some("Host(`console-photos.example.com`)")
        );
        for r in ["kalpana-b1", "kalpana-b1-console"] {
            assert_eq!(
                get(&format!("traefik.http.routers.{r}.entrypoints")),
                Some("web,websecure")
            );
            assert_eq!(get(&format!("traefik.http.routers.{r}.tls")), Some("true"));
            assert_eq!(
                get(&format!("traefik.http.routers.{r}.tls.certresolver")),
                Some("le")
            );
            assert_eq!(get(&format!("traefik.http.routers.{r}.service")), Some(r));
            assert_eq!(
                get(&format!("traefik.http.routers.{r}.priority")),
                Some("1000")
            );
        }
        // Traefik reaches the daemon's listeners on the bucket's host ports, not the container.
        assert_eq!(
            get("traefik.http.services.kalpana-b1.loadbalancer.server.url"),
            Some("http://10.0.0.5:40001")
        );
        assert_eq!(
            get("traefik.http.services.kalpana-b1-console.loadbalancer.server.url"),
            Some("http://10.0.0.5:40002")
        );
    }

    #[test]
    fn no_tls_labels_without_resolver_and_no_routing_without_domain() {
        let l = spec(EngineProfile::minio(), routed(None)).container_labels();
        assert!(!l.keys().any(|k| k.contains(".tls")));
        let l = spec(EngineProfile::minio(), RoutingConfig::default()).container_labels();
        assert!(!l.keys().any(|k| k.starts_with("traefik.")));
        // Ownership labels, the configuration generation and the spec revision.
        assert_eq!(l.len(), 7);
        assert_eq!(l.get(LABEL_SPEC_REVISION), Some(&SPEC_REVISION.to_string()));
        assert_eq!(l.get(LABEL_GENERATION).map(String::as_str), Some("3"));
    }

    #[test]
    fn container_is_hardened_limited_and_publishes_no_port() {
        let body = spec(EngineProfile::minio(), RoutingConfig::default()).container_body();
        let hc = body.host_config.expect("host config");
        assert_eq!(hc.privileged, Some(false));
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(
            hc.security_opt,
            Some(vec!["no-new-privileges:true".to_string()])
        );
        assert_eq!(hc.readonly_rootfs, Some(true));
        assert_eq!(hc.memory, Some(512 * 1024 * 1024));
        assert_eq!(hc.pids_limit, Some(512));
        assert_eq!(
            hc.restart_policy.and_then(|r| r.name),
            Some(RestartPolicyNameEnum::UNLESS_STOPPED)
        );
        assert!(
            hc.port_bindings.is_none_or(|b| b.is_empty()),
            "the daemon owns the bucket's host ports"
        );
        let exposed = body.exposed_ports.expect("exposed");
        assert!(exposed.contains(&"9000/tcp".to_string()));
        assert!(exposed.contains(&"9001/tcp".to_string()));
        assert_eq!(
            hc.binds,
            Some(vec!["kalpana-bucket-b1-data:/data".to_string()])
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let mut s = spec(EngineProfile::seaweedfs(), RoutingConfig::default());
        s.secret_key = "very-secret-value".into();
        let shown = format!("{s:?}");
        assert!(!shown.contains("very-secret-value"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn origins_omit_default_ports() {
        let mut r = routed(None);
        assert_eq!(r.origin("a.example.com"), "https://a.example.com");
        r.public_port = Some(443);
        assert_eq!(r.origin("a.example.com"), "https://a.example.com");
        r.scheme = "http".into();
        r.public_port = Some(8081);
        assert_eq!(r.origin("a.localhost"), "http://a.localhost:8081");
    }
}
