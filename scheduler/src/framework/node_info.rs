//! What the scheduler knows about one node: the Node, the pods on it
//! (bound or assumed), what they request, the host ports they hold.
//! Plugins read NodeInfos from a snapshot taken at the start of a cycle.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use super::resources::{non_zero_requests, pod_requests, Resource};

/// A host port in use: (host IP, protocol, port).
pub type HostPort = (String, String, i32);

#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node: Arc<Node>,
    pub pods: Vec<Arc<Pod>>,
    /// The sum of the pods' requests.
    pub requested: Resource,
    /// cpu and memory with the scoring defaults for pods that ask for none.
    pub non_zero_requested: (i64, i64),
    pub allocatable: Resource,
    pub used_ports: HashSet<HostPort>,
    /// Images on the node, by every name they go by, with their size.
    pub images: HashMap<String, i64>,
}

/// The host ports a pod asks for.
pub fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|h| h > 0))
        .map(|p| {
            let ip = p
                .host_ip
                .clone()
                .filter(|ip| !ip.is_empty())
                .unwrap_or_else(|| "0.0.0.0".into());
            (
                ip,
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.host_port.unwrap_or(0),
            )
        })
        .collect()
}

/// Whether two host ports conflict (0.0.0.0 takes the port on every IP).
pub fn ports_conflict(a: &HostPort, b: &HostPort) -> bool {
    a.1 == b.1 && a.2 == b.2 && (a.0 == b.0 || a.0 == "0.0.0.0" || b.0 == "0.0.0.0")
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let mut info = NodeInfo {
            node: node.clone(),
            pods: Vec::new(),
            requested: Resource::default(),
            non_zero_requested: (0, 0),
            allocatable: Resource::default(),
            used_ports: HashSet::new(),
            images: HashMap::new(),
        };
        info.set_node(node);
        info
    }

    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or_default()
    }

    pub fn set_node(&mut self, node: Arc<Node>) {
        let status = node.status.as_ref();
        self.allocatable = status
            .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
            .map(Resource::from_list)
            .unwrap_or_default();
        self.images = status
            .and_then(|s| s.images.as_ref())
            .into_iter()
            .flatten()
            .flat_map(|image| {
                let size = image.size_bytes.unwrap_or(0);
                image.names.iter().flatten().map(move |n| (n.clone(), size))
            })
            .collect();
        self.node = node;
    }

    pub fn add_pod(&mut self, pod: Arc<Pod>) {
        self.requested.add(&pod_requests(&pod));
        let (cpu, memory) = non_zero_requests(&pod);
        self.non_zero_requested.0 += cpu;
        self.non_zero_requested.1 += memory;
        self.used_ports.extend(host_ports(&pod));
        self.pods.push(pod);
    }

    /// Removes the pod with this uid; whether it was there.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.metadata.uid.as_deref() == Some(uid)) else {
            return false;
        };
        let pod = self.pods.remove(i);
        self.requested.sub(&pod_requests(&pod));
        let (cpu, memory) = non_zero_requests(&pod);
        self.non_zero_requested.0 -= cpu;
        self.non_zero_requested.1 -= memory;
        self.used_ports = self.pods.iter().flat_map(|p| host_ports(p)).collect();
        true
    }

    pub fn labels(&self) -> Option<&std::collections::BTreeMap<String, String>> {
        self.node.metadata.labels.as_ref()
    }
}
