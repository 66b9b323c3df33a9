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
