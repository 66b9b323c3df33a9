//! NodeUnschedulable: cordoned nodes (`spec.unschedulable`, `kubectl
//! cordon`) take no new pods, unless the pod tolerates the
//! `node.kubernetes.io/unschedulable:NoSchedule` taint.

use k8s_openapi::api::core::v1::{Pod, Taint};

use crate::framework::{CycleState, NodeInfo, Plugin, Status};

pub const NAME: &str = "NodeUnschedulable";
pub const REASON: &str = "node(s) were unschedulable";

pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<(), Status> {
        if node.node.spec.as_ref().and_then(|s| s.unschedulable) != Some(true) {
            return Ok(());
        }
        let taint = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or_default();
        if api::scheduling::tolerated(tolerations, &taint) {
            Ok(())
        } else {
            Err(Status::unresolvable(NAME, REASON))
        }
    }
}
