//! A bucket's Swarm service, as data: the spec made from a [`BucketSpec`] (pure, unit-tested),
//! and the secrets it mounts. Nothing here talks to Docker.
//!
//! Guarantees: nothing secret is in the spec itself (env, labels, args): credentials, signing
//! keys and the internal certificates reach the task as Swarm secrets, files under
//! `/run/secrets`, which `docker service inspect` does not show.

use std::collections::HashMap;

use super::engine_files::SecretFile;
use crate::spec::{container_name, volume_name, BucketSpec};
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum,
    Limit, Mount, MountTmpfsOptions, MountType, MountVolumeOptions, NetworkAttachmentConfig,
    ResourceObject, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec,
    TaskSpecContainerSpec, TaskSpecContainerSpecFile, TaskSpecContainerSpecSecrets,
    TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};

/// The node label that marks a node for bucket services.
pub const NODE_LABEL_BUCKETS: &str = "kalpana.buckets";
/// The node label holding the address clients reach the node's published ports at.
pub const NODE_LABEL_PUBLIC_HOST: &str = "kalpana.public-host";
/// The label of a secret naming the bucket it belongs to.
pub const SECRET_LABEL_BUCKET: &str = "kalpana.bucket.id";

/// The placement constraint every bucket service has.
pub fn bucket_nodes_constraint() -> String {
    format!("node.labels.{NODE_LABEL_BUCKETS}==true")
}

/// The constraint that pins a service to node `node_id`.
pub fn pin_constraint(node_id: &str) -> String {
    format!("node.id=={node_id}")
}

/// The node a service is pinned to, read back from its constraints.
pub fn pinned_node(spec: &ServiceSpec) -> Option<String> {
    spec.task_template
        .as_ref()?
        .placement
        .as_ref()?
        .constraints
        .as_ref()?
        .iter()
        .find_map(|c| c.strip_prefix("node.id==").map(str::to_string))
}

/// The service of bucket `spec`: one replica when `running` (zero otherwise), on a node labelled
/// for buckets (and `pinned` to one once its volume is made there), its S3 and console ports
/// published in host mode on that node, DNS round robin (no VIP: the kernel here has no IPVS,
/// and buckets need none), on its own `network` only (known there by its server's name), the
/// engine's hardening, `env` (nothing secret) and `secrets`.
pub fn service_spec(
    spec: &BucketSpec,
    running: bool,
    pinned: Option<&str>,
    network: &str,
    env: Vec<String>,
    secrets: &[(SecretFile, String)],
) -> ServiceSpec {
    let e = &spec.engine;
    let mut constraints = vec![bucket_nodes_constraint()];
    if let Some(node) = pinned {
        constraints.push(pin_constraint(node));
    }
    let mut mounts = vec![Mount {
        target: Some(e.data_path.to_string()),
        source: Some(volume_name(&spec.id)),
        typ: Some(MountType::VOLUME),
        volume_options: Some(MountVolumeOptions {
            labels: Some(spec.volume_labels()),
            ..Default::default()
        }),
        ..Default::default()
    }];
    mounts.extend(e.tmpfs.iter().map(|p| Mount {
        target: Some(p.to_string()),
        typ: Some(MountType::TMPFS),
        tmpfs_options: Some(MountTmpfsOptions {
            size_bytes: Some(64 * 1024 * 1024),
            ..Default::default()
        }),
        ..Default::default()
    }));
    let mut ports = vec![published(e.s3_port, spec.s3_port)];
    if let (Some(inner), Some(host)) = (e.console_port, spec.console_port) {
        ports.push(published(inner, host));
    }
    let mut labels = spec.volume_labels();
    labels.insert(
        crate::spec::LABEL_GENERATION.to_string(),
        spec.generation.to_string(),
    );
    labels.insert(
        crate::spec::LABEL_SPEC_REVISION.to_string(),
        crate::spec::SPEC_REVISION.to_string(),
    );
    ServiceSpec {
        name: Some(container_name(&spec.id)),
        labels: Some(labels.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(e.image.clone()),
                labels: Some(labels),
                command: e.entrypoint.clone(),
                args: Some(
                    e.command(spec.limits.memory_bytes)
                        .into_iter()
                        .chain(super::engine_files::extra_args(spec))
                        .collect(),
                ),
                hostname: Some(container_name(&spec.id)),
                env: Some(env),
                read_only: Some(true),
                mounts: Some(mounts),
                stop_grace_period: Some(30_000_000_000),
                secrets: Some(
                    secrets
                        .iter()
                        .map(|(s, id)| TaskSpecContainerSpecSecrets {
                            file: Some(TaskSpecContainerSpecFile {
                                name: Some(s.file.clone()),
                                uid: Some("0".into()),
                                gid: Some("0".into()),
                                mode: Some(s.mode),
                            }),
                            secret_id: Some(id.clone()),
                            secret_name: Some(s.name.clone()),
                        })
                        .collect(),
                ),
                capability_drop: Some(vec!["ALL".to_string()]),
                capability_add: (!e.cap_add.is_empty()).then(|| e.cap_add.clone()),
                ..Default::default()
            }),
            resources: Some(TaskSpecResources {
                limits: Some(Limit {
                    nano_cpus: Some(spec.limits.nano_cpus),
                    memory_bytes: Some(spec.limits.memory_bytes),
                    pids: Some(spec.limits.pids),
                }),
                // The scheduler places by what a bucket may use, so a node is never promised
                // more memory than it has.
                reservations: Some(ResourceObject {
                    memory_bytes: Some(spec.limits.memory_bytes),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
                delay: Some(1_000_000_000),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: Some(constraints),
                ..Default::default()
            }),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some(network.to_string()),
                aliases: Some(vec![container_name(&spec.id)]),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(i64::from(running)),
            }),
            ..Default::default()
        }),
        endpoint_spec: Some(EndpointSpec {
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ports: Some(ports),
        }),
        ..Default::default()
    }
}

fn published(target: u16, host: u16) -> EndpointPortConfig {
    EndpointPortConfig {
        protocol: Some(bollard::models::EndpointPortConfigProtocolEnum::TCP),
        target_port: Some(i64::from(target)),
        published_port: Some(i64::from(host)),
        publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
        ..Default::default()
    }
}

/// Replicas a service spec asks for.
pub fn replicas(spec: &ServiceSpec) -> i64 {
    spec.mode
        .as_ref()
        .and_then(|m| m.replicated.as_ref())
        .and_then(|r| r.replicas)
        .unwrap_or(0)
}

/// `spec` asking for `n` replicas.
pub fn with_replicas(mut spec: ServiceSpec, n: i64) -> ServiceSpec {
    spec.mode = Some(ServiceSpecMode {
        replicated: Some(ServiceSpecModeReplicated { replicas: Some(n) }),
        ..Default::default()
    });
    spec
}

/// `spec` pinned to `node_id` (replacing any earlier pin).
pub fn with_pin(mut spec: ServiceSpec, node_id: &str) -> ServiceSpec {
    if let Some(p) = spec
        .task_template
        .as_mut()
        .and_then(|t| t.placement.as_mut())
    {
        let mut c: Vec<String> = p
            .constraints
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !c.starts_with("node.id=="))
            .collect();
        c.push(pin_constraint(node_id));
        p.constraints = Some(c);
    }
    spec
}

/// The host port published for engine port `target`.
pub fn published_port(spec: &ServiceSpec, target: u16) -> Option<u16> {
    spec.endpoint_spec
        .as_ref()?
        .ports
        .as_ref()?
        .iter()
        .find(|p| p.target_port == Some(i64::from(target)))
        .and_then(|p| p.published_port)
        .and_then(|p| u16::try_from(p).ok())
}

/// The labels of a service spec.
pub fn labels(spec: &ServiceSpec) -> HashMap<String, String> {
    spec.labels.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineKind;
    use crate::swarm::test_bucket as bucket;

    #[test]
    fn a_service_publishes_s3_in_host_mode_reserves_its_memory_and_holds_no_secret() {
        let mut b = bucket(EngineKind::Seaweedfs);
        b.generation = 4;
        let secret = SecretFile::new(&b.id, "s3.json", b"very-secret-key".to_vec(), 0o400);
        let s = service_spec(
            &b,
            false,
            None,
            "net",
            vec!["A=b".into()],
            &[(secret, "sid".into())],
        );
        assert_eq!(replicas(&s), 0);
        assert_eq!(published_port(&s, b.engine.s3_port), Some(48000));
        let shown = serde_json::to_string(&s).expect("json");
        assert!(!shown.contains("very-secret-key"), "{shown}");
        assert!(shown.contains("\"PublishMode\":\"host\""), "{shown}");
        assert!(shown.contains("\"Mode\":\"dnsrr\""), "{shown}");
        assert!(shown.contains("node.labels.kalpana.buckets==true"));
        let t = s.task_template.as_ref().expect("template");
        assert_eq!(
            t.resources
                .as_ref()
                .and_then(|r| r.reservations.as_ref())
                .and_then(|r| r.memory_bytes),
            Some(b.limits.memory_bytes)
        );
        assert_eq!(
            labels(&s)
                .get(crate::spec::LABEL_GENERATION)
                .map(String::as_str),
            Some("4")
        );
        assert_eq!(pinned_node(&s), None);
    }

    #[test]
    fn pinning_replaces_an_earlier_pin_and_keeps_the_label_constraint() {
        let s = service_spec(
            &bucket(EngineKind::Seaweedfs),
            true,
            Some("n1"),
            "net",
            Vec::new(),
            &[],
        );
        assert_eq!(pinned_node(&s).as_deref(), Some("n1"));
        let s = with_pin(with_replicas(s, 0), "n2");
        assert_eq!(pinned_node(&s).as_deref(), Some("n2"));
        assert_eq!(replicas(&s), 0);
        let c = s
            .task_template
            .and_then(|t| t.placement)
            .and_then(|p| p.constraints);
        assert_eq!(
            c,
            Some(vec![bucket_nodes_constraint(), pin_constraint("n2")])
        );
    }
}
