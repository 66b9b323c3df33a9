//! NodePorts: a pod asking for a host port fits only on nodes where no
//! pod holds it (the same port and protocol on the same or any IP).

use k8s_openapi::api::core::v1::Pod;

use crate::framework::node_info::{host_ports, ports_conflict};
use crate::framework::{CycleState, NodeInfo, Plugin, Status};

pub const NAME: &str = "NodePorts";
pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<(), Status> {
        let wanted = host_ports(pod);
        let conflict = wanted
            .iter()
            .any(|w| node.used_ports.iter().any(|u| ports_conflict(w, u)));
        if conflict {
            Err(Status::unschedulable(NAME, REASON))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::node;

    fn with_port(name: &str, ip: &str, protocol: &str, port: i32) -> Pod {
        serde_json::from_value(
            serde_json::json!({"metadata": {"name": name, "uid": name}, "spec": {"containers": [
            {"name": "c", "ports": [{"containerPort": 80, "hostPort": port, "hostIP": ip, "protocol": protocol}]}]}}),
        )
        .unwrap()
    }

    #[test]
    fn host_ports_conflict_by_protocol_port_and_ip() {
        let s = CycleState::default();
        let n = node("n", "4", "8Gi", &[with_port("a", "10.0.0.1", "TCP", 8080)]);
        for (p, fits) in [
            (with_port("b", "10.0.0.1", "TCP", 8080), false),
            (with_port("c", "0.0.0.0", "TCP", 8080), false),
            (with_port("d", "10.0.0.2", "TCP", 8080), true),
            (with_port("e", "10.0.0.1", "UDP", 8080), true),
            (with_port("f", "10.0.0.1", "TCP", 9090), true),
        ] {
            assert_eq!(NodePorts.filter(&s, &p, &n).is_ok(), fits, "{:?}", p.metadata.name);
        }
    }
}
