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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::{node, pod};

    #[test]
    fn cordoned_nodes_take_only_tolerating_pods() {
        let s = CycleState::default();
        let cordoned = {
            let mut n = node("n", "4", "8Gi", &[]);
            let info = std::sync::Arc::make_mut(&mut n);
            let mut raw = info.node.as_ref().clone();
            raw.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
                unschedulable: Some(true),
                ..Default::default()
            });
            info.set_node(std::sync::Arc::new(raw));
            n
        };
        let plain = pod("p", "1", "1Gi");
        assert_eq!(
            NodeUnschedulable.filter(&s, &plain, &cordoned).unwrap_err().reasons,
            vec![REASON]
        );
        assert!(NodeUnschedulable
            .filter(&s, &plain, &node("m", "4", "8Gi", &[]))
            .is_ok());
        let mut tolerant = plain.clone();
        tolerant.spec.as_mut().unwrap().tolerations = Some(vec![serde_json::from_value(serde_json::json!(
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}))
        .unwrap()]);
        assert!(NodeUnschedulable.filter(&s, &tolerant, &cordoned).is_ok());
    }
}
