//! What a service, its tasks and the nodes say, read into the runtime's words (pure).

use std::collections::HashMap;

use bollard::models::{Node, Service, Task, TaskState};

use super::service::{self, NODE_LABEL_BUCKETS, NODE_LABEL_PUBLIC_HOST};
use crate::reports::{ContainerAction, ContainerState};
use crate::spec::{LABEL_BUCKET_ID, LABEL_GENERATION, LABEL_SPEC_REVISION};

/// The key of [`ContainerState::addresses`] holding `host:port` of a running task's node and
/// published S3 port.
pub const NODE_ADDRESS: &str = "node";

/// What the runtime uses of a node.
#[derive(Debug, Clone, Default)]
pub struct NodeView {
    /// Its host name.
    pub hostname: String,
    /// Where clients reach its published ports.
    pub address: String,
    /// Whether it is labelled for buckets.
    pub for_buckets: bool,
    /// Its CPUs.
    pub cpus: u64,
    /// Its memory.
    pub memory_bytes: u64,
}

impl NodeView {
    /// Reads node `n`: its address is its `kalpana.public-host` label, else the address Swarm
    /// knows it by.
    pub fn of(n: &Node) -> Self {
        let labels = n
            .spec
            .as_ref()
            .and_then(|s| s.labels.clone())
            .unwrap_or_default();
        let desc = n.description.clone().unwrap_or_default();
        let res = desc.resources.unwrap_or_default();
        NodeView {
            hostname: desc.hostname.unwrap_or_default(),
            address: labels
                .get(NODE_LABEL_PUBLIC_HOST)
                .cloned()
                .or_else(|| n.status.as_ref().and_then(|s| s.addr.clone()))
                .unwrap_or_default(),
            for_buckets: labels.get(NODE_LABEL_BUCKETS).map(String::as_str) == Some("true"),
            cpus: (res.nano_cpus.unwrap_or(0).max(0) / 1_000_000_000) as u64,
            memory_bytes: res.memory_bytes.unwrap_or(0).max(0) as u64,
        }
    }
}

/// Whether a task in `state` may still have a container running.
pub fn is_live(state: Option<TaskState>) -> bool {
    !matches!(
        state,
        None | Some(
            TaskState::COMPLETE
                | TaskState::SHUTDOWN
                | TaskState::FAILED
                | TaskState::REJECTED
                | TaskState::REMOVE
                | TaskState::ORPHANED
        )
    )
}

/// The server state of service `svc` from its `tasks` and the `nodes`: running when a task
/// meant to run runs; its node the running task's, else the one it is pinned to.
pub fn of_service(
    svc: &Service,
    tasks: &[Task],
    nodes: &HashMap<String, NodeView>,
) -> ContainerState {
    let spec = svc.spec.clone().unwrap_or_default();
    let labels = service::labels(&spec);
    let current = tasks
        .iter()
        .filter(|t| t.desired_state == Some(TaskState::RUNNING))
        .max_by_key(|t| t.version.as_ref().and_then(|v| v.index).unwrap_or(0));
    let running_on = current
        .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
        .and_then(|t| t.node_id.clone());
    let status = match (current, service::replicas(&spec)) {
        (_, 0) => "stopped".to_string(),
        (Some(t), _) => t
            .status
            .as_ref()
            .and_then(|s| s.state)
            .map_or_else(|| "pending".to_string(), |s| s.to_string()),
        (None, _) => "pending".to_string(),
    };
    // The newest task's (the API lists them in no useful order).
    let exit_code = tasks
        .iter()
        .filter_map(|t| {
            let code = t.status.as_ref()?.container_status.as_ref()?.exit_code?;
            Some((t.version.as_ref().and_then(|v| v.index).unwrap_or(0), code))
        })
        .max_by_key(|(v, _)| *v)
        .map(|(_, code)| code);
    let s3_target = spec
        .endpoint_spec
        .as_ref()
        .and_then(|e| e.ports.as_ref())
        .and_then(|p| p.first())
        .and_then(|p| p.target_port)
        .and_then(|p| u16::try_from(p).ok());
    let mut addresses = HashMap::new();
    // Scaled to zero, a task still winding down is not serving.
    let meant_to_run = service::replicas(&spec) > 0;
    if let (true, Some(node), Some(target)) = (meant_to_run, &running_on, s3_target) {
        if let (Some(n), Some(port)) = (nodes.get(node), service::published_port(&spec, target)) {
            if !n.address.is_empty() {
                addresses.insert(NODE_ADDRESS.to_string(), format!("{}:{port}", n.address));
            }
        }
    }
    let node_id = running_on.or_else(|| service::pinned_node(&spec));
    let node = node_id
        .clone()
        .map(|id| nodes.get(&id).map_or(id, |n| n.hostname.clone()));
    ContainerState {
        id: svc.id.clone().unwrap_or_default(),
        name: spec.name.clone().unwrap_or_default(),
        bucket_id: labels.get(LABEL_BUCKET_ID).cloned(),
        running: !addresses.is_empty(),
        status,
        exit_code,
        oom_killed: false,
        generation: labels.get(LABEL_GENERATION).and_then(|g| g.parse().ok()),
        spec_revision: labels.get(LABEL_SPEC_REVISION).and_then(|r| r.parse().ok()),
        addresses,
        node,
        node_id,
    }
}

/// A service event's action in the runtime's words: removed is gone, scaled to zero is down.
pub fn service_action(action: &str, replicas_new: Option<&str>) -> ContainerAction {
    match (action, replicas_new) {
        ("remove", _) => ContainerAction::Destroy,
        ("update", Some("0")) => ContainerAction::Die,
        _ => ContainerAction::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_scaled_to_zero_is_down_and_a_removed_one_destroyed() {
        assert_eq!(service_action("update", Some("0")), ContainerAction::Die);
        assert_eq!(service_action("update", Some("1")), ContainerAction::Other);
        assert_eq!(service_action("update", None), ContainerAction::Other);
        assert_eq!(service_action("remove", None), ContainerAction::Destroy);
        assert_eq!(service_action("create", None), ContainerAction::Other);
    }

    #[test]
    fn only_finished_tasks_are_not_live() {
        assert!(is_live(Some(TaskState::RUNNING)));
        assert!(is_live(Some(TaskState::STARTING)));
        assert!(!is_live(Some(TaskState::SHUTDOWN)));
        assert!(!is_live(None));
    }
}
