//! The in-tree plugins, by the names the configuration file uses, and the
//! default profile: which run as filters, and the weights of the scores.

pub mod balanced_allocation;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;

use std::sync::Arc;

use crate::framework::Plugin;

/// Filter plugins of the default profile, cheapest first.
pub const DEFAULT_FILTERS: &[&str] = &[
    node_unschedulable::NAME,
    node_name::NAME,
    taint_toleration::NAME,
    node_affinity::NAME,
    node_ports::NAME,
    node_resources_fit::NAME,
    pod_topology_spread::NAME,
    inter_pod_affinity::NAME,
];

/// Score plugins of the default profile and their weights (upstream's).
pub const DEFAULT_SCORES: &[(&str, i64)] = &[
    (taint_toleration::NAME, 3),
    (node_affinity::NAME, 2),
    (pod_topology_spread::NAME, 2),
    (inter_pod_affinity::NAME, 2),
    (node_resources_fit::NAME, 1),
    (balanced_allocation::NAME, 1),
    (image_locality::NAME, 1),
];

/// Plugins that only score.
const SCORE_ONLY: &[&str] = &[balanced_allocation::NAME, image_locality::NAME];
/// Plugins that only filter.
const FILTER_ONLY: &[&str] = &[node_unschedulable::NAME, node_name::NAME, node_ports::NAME];

pub fn filters(name: &str) -> bool {
    !SCORE_ONLY.contains(&name)
}

pub fn scores(name: &str) -> bool {
    !FILTER_ONLY.contains(&name)
}

/// Builds a plugin by name with its `pluginConfig` arguments.
pub fn build(name: &str, args: Option<&serde_json::Value>) -> Result<Arc<dyn Plugin>, String> {
    Ok(match name {
        node_unschedulable::NAME => Arc::new(node_unschedulable::NodeUnschedulable),
        node_name::NAME => Arc::new(node_name::NodeName),
        taint_toleration::NAME => Arc::new(taint_toleration::TaintToleration),
        node_affinity::NAME => Arc::new(node_affinity::NodeAffinity),
        node_ports::NAME => Arc::new(node_ports::NodePorts),
        node_resources_fit::NAME => {
            let args = match args {
                Some(a) => serde_json::from_value(a.clone()).map_err(|e| format!("NodeResourcesFit args: {e}"))?,
                None => node_resources_fit::Args::default(),
            };
            Arc::new(node_resources_fit::NodeResourcesFit::new(args)?)
        }
        pod_topology_spread::NAME => Arc::new(pod_topology_spread::PodTopologySpread),
        inter_pod_affinity::NAME => Arc::new(inter_pod_affinity::InterPodAffinity),
        balanced_allocation::NAME => Arc::new(balanced_allocation::BalancedAllocation),
        image_locality::NAME => Arc::new(image_locality::ImageLocality),
        other => return Err(format!("unknown plugin {other:?}")),
    })
}

#[cfg(test)]
pub mod test_support {
    //! Nodes and pods for the plugins' table tests.

    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Node, Pod};

    use crate::framework::NodeInfo;

    pub fn pod(name: &str, cpu: &str, memory: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default", "uid": name},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}}))
        .unwrap()
    }

    pub fn labelled(name: &str, labels: &[(&str, &str)]) -> Pod {
        let labels: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default", "uid": name, "labels": labels},
            "spec": {"containers": [{"name": "c"}]}}))
        .unwrap()
    }

    fn info(node: serde_json::Value, pods: &[Pod]) -> Arc<NodeInfo> {
        let node: Node = serde_json::from_value(node).unwrap();
        let mut info = NodeInfo::new(Arc::new(node));
        for p in pods {
            info.add_pod(Arc::new(p.clone()));
        }
        Arc::new(info)
    }

    pub fn node(name: &str, cpu: &str, memory: &str, pods: &[Pod]) -> Arc<NodeInfo> {
        info(
            serde_json::json!({"metadata": {"name": name},
                "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}}),
            pods,
        )
    }

    pub fn node_with_labels(name: &str, labels: &[(&str, &str)], pods: &[Pod]) -> Arc<NodeInfo> {
        let labels: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect();
        info(
            serde_json::json!({"metadata": {"name": name, "labels": labels},
                "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}),
            pods,
        )
    }
}
