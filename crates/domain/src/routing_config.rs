//! The dynamic configuration Traefik's HTTP provider polls (`KALPANA_TRAEFIK_PROVIDER=http`):
//! the same routers the Docker provider reads from container labels (rule, priority,
//! entrypoints, TLS, one service each), for every managed bucket with a routed host, plus the
//! catch-all router to the daemon that `traefik/dynamic.yml` holds for the Docker provider.
//!
//! Where a bucket's service points: at the daemon's listener on the bucket's port (as the labels
//! do), which holds a request while the bucket sleeps or its server is away and wakes it; or,
//! on a runtime whose servers Traefik can reach directly (not `docker`, whose servers sit on a
//! bucket network Traefik is not on), at the server itself while it is awake and its address is
//! known, so an awake bucket's traffic does not pass through the daemon.
//!
//! Guarantees: built from the store's bucket list and the daemon's in-memory state (sleep gates,
//! the address cache); it never asks the runtime, so a poll costs one store listing whatever the
//! number of buckets. Nothing secret is in it: ids, hosts, ports and addresses only.
//! Caveats: Traefik learns a change at its next poll (`pollInterval`), so for that long after a
//! bucket falls asleep a direct route still points at its stopped server (Traefik answers 502;
//! S3 clients retry).

use std::collections::BTreeMap;

use kalpana_manager_core::spec::{host_rule, router_name, CONSOLE_HOST_PREFIX, ROUTER_PRIORITY};
use kalpana_manager_core::RoutingConfig;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::context::Core;
use crate::error::Result;
use crate::model::{BucketKind, BucketRecord, BucketStatus};
use crate::sleep::gate::SleepState;
use crate::store::all_buckets;

/// Name of the catch-all router (and of its service and middleware stem).
pub const FALLBACK_ROUTER: &str = "kalpana-fallback";
/// Name of the service that is the daemon's API.
pub const DAEMON_SERVICE: &str = "kalpana-daemon";
/// Name of the middleware that prefixes the catch-all's requests.
pub const FALLBACK_MIDDLEWARE: &str = "kalpana-fallback-prefix";
/// The path prefix the daemon's catch-all route answers under.
pub const FALLBACK_PREFIX: &str = "/_kalpana/fallback";
/// The catch-all's priority: below every bucket router.
pub const FALLBACK_PRIORITY: u32 = 1;

/// Traefik dynamic configuration, as its HTTP (and file) provider reads it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct DynamicConfig {
    /// The HTTP routers, services and middlewares.
    pub http: HttpConfig,
}

/// The `http` section of [`DynamicConfig`].
#[derive(Debug, Clone, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct HttpConfig {
    /// Routers by name.
    pub routers: BTreeMap<String, Router>,
    /// Services by name.
    pub services: BTreeMap<String, Service>,
    /// Middlewares by name.
    pub middlewares: BTreeMap<String, Middleware>,
}

/// A Traefik router.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Router {
    /// Entrypoints it listens on (all of Traefik's when empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entry_points: Vec<String>,
    /// Its rule, e.g. ``Host(`photos.buckets.example.com`)``.
    pub rule: String,
    /// Explicit priority (bucket routers all share one, so no rule wins by being longer).
    pub priority: u32,
    /// The service it sends to.
    pub service: String,
    /// Middlewares on the way.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub middlewares: Vec<String>,
    /// TLS, when a certificate resolver is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<RouterTls>,
}

/// A router's TLS settings.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouterTls {
    /// Certificate resolver (`KALPANA_TRAEFIK_CERTRESOLVER`).
    pub cert_resolver: String,
}

/// A Traefik service: one server.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// Its load balancer.
    pub load_balancer: LoadBalancer,
}

/// A service's servers.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct LoadBalancer {
    /// The servers (one).
    pub servers: Vec<Server>,
}

/// One server of a service.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Server {
    /// Its URL, e.g. `http://127.0.0.1:40001`.
    pub url: String,
}

/// A Traefik middleware (only the kind the catch-all needs).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Middleware {
    /// Adds a path prefix.
    pub add_prefix: AddPrefix,
}

/// The `addPrefix` middleware.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct AddPrefix {
    /// The prefix.
    pub prefix: String,
}

/// One bucket as routing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedBucket {
    /// Bucket id.
    pub id: String,
    /// Hosts routed to its S3 API.
    pub hosts: Vec<String>,
    /// Its S3 host port (the daemon's listener).
    pub s3_port: u16,
    /// Its console host port, when its engine has a console.
    pub console_port: Option<u16>,
    /// The origin of its server when Traefik should go there directly (see [`direct_origin`]).
    pub direct: Option<String>,
}

/// Where Traefik may reach a bucket's server itself instead of the daemon's listener: only on a
/// runtime other than `docker` (whose servers are on a network Traefik is not on), only while
/// it is awake (asleep, the listener must take the request and wake it), and only when its
/// address is known.
pub fn direct_origin(runtime: &str, awake: bool, address: Option<String>) -> Option<String> {
    if runtime == "docker" || !awake {
        return None;
    }
    address
}

fn router(routing: &RoutingConfig, rule: String, service: &str) -> Router {
    Router {
        entry_points: routing.entrypoints.clone(),
        rule,
        priority: ROUTER_PRIORITY,
        service: service.to_string(),
        middlewares: Vec::new(),
        tls: routing
            .cert_resolver
            .clone()
            .map(|r| RouterTls { cert_resolver: r }),
    }
}

fn service(url: String) -> Service {
    Service {
        load_balancer: LoadBalancer {
            servers: vec![Server { url }],
        },
    }
}

/// The whole configuration for `buckets` (pure): one router and one service per bucket with a
/// routed host (and its console's, when it has one), none without a base domain (as the Docker
/// labels), and the catch-all to the daemon's API at `daemon_url`.
pub fn build(routing: &RoutingConfig, daemon_url: &str, buckets: &[RoutedBucket]) -> DynamicConfig {
    let mut http = HttpConfig::default();
    if routing.base_domain.is_some() {
        for b in buckets.iter().filter(|b| !b.hosts.is_empty()) {
            let name = router_name(&b.id);
            http.routers.insert(
                name.clone(),
                router(routing, host_rule(&b.hosts, ""), &name),
            );
            let url = b
                .direct
                .clone()
                .unwrap_or_else(|| routing.upstream_url(b.s3_port));
            http.services.insert(name.clone(), service(url));
            if let Some(port) = b.console_port {
                let console = format!("{name}-console");
                http.routers.insert(
                    console.clone(),
                    router(routing, host_rule(&b.hosts, CONSOLE_HOST_PREFIX), &console),
                );
                http.services
                    .insert(console, service(routing.upstream_url(port)));
            }
        }
    }
    // As `traefik/dynamic.yml`: every host no bucket router claims goes to the daemon, which
    // answers 503 with Retry-After for a bucket's host and 404 for any other.
    http.routers.insert(
        FALLBACK_ROUTER.to_string(),
        Router {
            entry_points: routing.entrypoints.clone(),
            rule: "HostRegexp(`^.+$`)".to_string(),
            priority: FALLBACK_PRIORITY,
            service: DAEMON_SERVICE.to_string(),
            middlewares: vec![FALLBACK_MIDDLEWARE.to_string()],
            tls: None,
        },
    );
    http.middlewares.insert(
        FALLBACK_MIDDLEWARE.to_string(),
        Middleware {
            add_prefix: AddPrefix {
                prefix: FALLBACK_PREFIX.to_string(),
            },
        },
    );
    http.services.insert(
        DAEMON_SERVICE.to_string(),
        service(daemon_url.trim_end_matches('/').to_string()),
    );
    DynamicConfig { http }
}

/// How routing sees bucket `b` now, from its record and the daemon's memory; none for a bucket
/// Traefik does not route (external, being deleted, no port, no routed host).
pub fn routed_bucket(core: &Core, b: &BucketRecord) -> Option<RoutedBucket> {
    if b.kind() != BucketKind::Managed || b.deleting {
        return None;
    }
    let s3_port = b.port?;
    let hosts = crate::lifecycle::routed_hosts(&core.config, b);
    if hosts.is_empty() {
        return None;
    }
    let awake = b.status == BucketStatus::Running
        && match core.sleep.get(&b.id) {
            Some(gate) => gate.state() == SleepState::Awake,
            None => !b.sleep.as_ref().is_some_and(|s| s.asleep),
        };
    let direct = direct_origin(core.runtime.name(), awake, core.addresses.get(&b.id));
    Some(RoutedBucket {
        id: b.id.clone(),
        hosts,
        s3_port,
        console_port: b
            .console_port
            .filter(|_| b.engine.profile().console_port.is_some()),
        direct,
    })
}

/// The configuration Traefik gets now: one store listing, no runtime call. `daemon_url` is the
/// daemon's API as Traefik reaches it (the catch-all's target).
pub async fn dynamic_config(core: &Core, daemon_url: &str) -> Result<DynamicConfig> {
    let buckets: Vec<RoutedBucket> = all_buckets(core.store.as_ref())
        .await?
        .iter()
        .filter_map(|b| routed_bucket(core, b))
        .collect();
    Ok(build(&core.config.routing, daemon_url, &buckets))
}

/// Whether `given` is the configured feed token `expected`, in time that depends on neither
/// (both are hashed first, then every byte of the digests is compared).
pub fn token_matches(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing(cert_resolver: Option<&str>) -> RoutingConfig {
        RoutingConfig {
            base_domain: Some("buckets.example.com".into()),
            scheme: "https".into(),
            public_port: None,
            entrypoints: vec!["websecure".into()],
            cert_resolver: cert_resolver.map(str::to_string),
            upstream_host: "10.0.0.5".into(),
        }
    }

    fn bucket(id: &str, direct: Option<&str>) -> RoutedBucket {
        RoutedBucket {
            id: id.into(),
            hosts: vec![
                format!("{id}.buckets.example.com"),
                "files.example.org".into(),
            ],
            s3_port: 40001,
            console_port: None,
            direct: direct.map(str::to_string),
        }
    }

    #[test]
    fn a_bucket_gets_the_labels_router_and_the_daemons_listener() {
        let c = build(
            &routing(Some("le")),
            "http://10.0.0.5:8080/",
            &[bucket("b1", None)],
        );
        let r = &c.http.routers["kalpana-b1"];
        assert_eq!(
            r.rule,
            "Host(`b1.buckets.example.com`) || Host(`files.example.org`)"
        );
        assert_eq!(r.priority, ROUTER_PRIORITY);
        assert_eq!(r.service, "kalpana-b1");
        assert_eq!(r.entry_points, vec!["websecure".to_string()]);
        assert_eq!(
            r.tls,
            Some(RouterTls {
                cert_resolver: "le".into()
            })
        );
        assert!(r.middlewares.is_empty());
        assert_eq!(
            c.http.services["kalpana-b1"].load_balancer.servers,
            vec![Server {
                url: "http://10.0.0.5:40001".into()
            }]
        );
        // The catch-all, as traefik/dynamic.yml has it.
        let f = &c.http.routers[FALLBACK_ROUTER];
        assert_eq!(f.priority, 1);
        assert_eq!(f.rule, "HostRegexp(`^.+$`)");
        assert_eq!(f.middlewares, vec![FALLBACK_MIDDLEWARE.to_string()]);
        assert_eq!(
            c.http.services[DAEMON_SERVICE].load_balancer.servers[0].url,
            "http://10.0.0.5:8080"
        );
        assert_eq!(
            c.http.middlewares[FALLBACK_MIDDLEWARE].add_prefix.prefix,
            "/_kalpana/fallback"
        );
        assert_eq!(c.http.routers.len(), 2);
    }

    #[test]
    fn the_json_has_traefiks_field_names() -> std::result::Result<(), serde_json::Error> {
        let c = build(&routing(None), "http://d:8080", &[bucket("b1", None)]);
        let v = serde_json::to_value(&c)?;
        let r = &v["http"]["routers"]["kalpana-b1"];
        assert_eq!(r["entryPoints"][0], "websecure");
        assert!(r.get("tls").is_none(), "no TLS without a resolver: {r}");
        assert!(r.get("middlewares").is_none());
        assert_eq!(
            v["http"]["services"]["kalpana-b1"]["loadBalancer"]["servers"][0]["url"],
            "http://10.0.0.5:40001"
        );
        assert_eq!(
            v["http"]["middlewares"][FALLBACK_MIDDLEWARE]["addPrefix"]["prefix"],
            "/_kalpana/fallback"
        );
        let tls = serde_json::to_value(build(
            &routing(Some("le")),
            "http://d:8080",
            &[bucket("b1", None)],
        ))?;
        assert_eq!(
            tls["http"]["routers"]["kalpana-b1"]["tls"]["certResolver"],
            "le"
        );
        Ok(())
    }

    #[test]
    fn an_awake_server_on_a_cluster_is_reached_directly_and_its_console_never() {
        let mut b = bucket("b2", Some("http://10.203.0.2:40007"));
        b.console_port = Some(40008);
        let c = build(&routing(None), "http://d:8080", &[b]);
        assert_eq!(
            c.http.services["kalpana-b2"].load_balancer.servers[0].url,
            "http://10.203.0.2:40007"
        );
        assert_eq!(
            c.http.routers["kalpana-b2-console"].rule,
            "Host(`console-b2.buckets.example.com`) || Host(`console-files.example.org`)"
        );
        assert_eq!(
            c.http.services["kalpana-b2-console"].load_balancer.servers[0].url,
            "http://10.0.0.5:40008"
        );
    }

    #[test]
    fn only_an_awake_server_with_a_known_address_off_docker_is_direct() {
        let addr = || Some("http://10.203.0.2:40007".to_string());
        assert_eq!(direct_origin("docker", true, addr()), None);
        assert_eq!(direct_origin("swarm", false, addr()), None);
        assert_eq!(direct_origin("swarm", true, None), None);
        assert_eq!(direct_origin("swarm", true, addr()), addr());
    }

    #[test]
    fn without_a_base_domain_or_hosts_only_the_catch_all_is_routed() {
        let mut r = routing(None);
        r.base_domain = None;
        let c = build(&r, "http://d:8080", &[bucket("b1", None)]);
        assert_eq!(
            c.http.routers.keys().collect::<Vec<_>>(),
            vec![FALLBACK_ROUTER]
        );
        let mut b = bucket("b1", None);
        b.hosts.clear();
        let c = build(&routing(None), "http://d:8080", &[b]);
        assert_eq!(c.http.routers.len(), 1);
        assert_eq!(c.http.services.len(), 1);
    }

    #[test]
    fn the_token_must_match_exactly() {
        assert!(token_matches("feed-token", "feed-token"));
        assert!(!token_matches("feed-token ", "feed-token"));
        assert!(!token_matches("feed-toke", "feed-token"));
        assert!(!token_matches("", "feed-token"));
        assert!(!token_matches("FEED-TOKEN", "feed-token"));
    }
}
