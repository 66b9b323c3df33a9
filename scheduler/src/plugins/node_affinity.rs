//! NodeAffinity: `nodeSelector` and required node affinity decide where a
//! pod may go (filter); preferred terms add their weight to the nodes that
//! match them (score).

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{default_normalize, CycleState, NodeInfo, Plugin, Status};

pub const NAME: &str = "NodeAffinity";
pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

pub struct NodeAffinity;

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<(), Status> {
        if api::scheduling::pod_matches_node(pod, &node.node) {
            Ok(())
        } else {
            Err(Status::unresolvable(NAME, REASON))
        }
    }

    fn score(&self, _: &CycleState, pod: &Pod, node: &NodeInfo) -> i64 {
        let preferred = pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| n.preferred_during_scheduling_ignored_during_execution.as_deref())
            .unwrap_or_default();
        preferred
            .iter()
            .filter(|p| p.weight != 0 && api::scheduling::term_matches(&p.preference, &node.node))
            .map(|p| i64::from(p.weight))
            .sum()
    }

    fn normalize(&self, _: &CycleState, _: &Pod, scores: &mut [i64]) {
        default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::{node_with_labels, pod};

    #[test]
    fn required_terms_filter_and_preferred_terms_score() {
        let s = CycleState::default();
        let a = node_with_labels("a", &[("zone", "a"), ("disk", "ssd")], &[]);
        let b = node_with_labels("b", &[("zone", "b")], &[]);
        let mut p = pod("p", "1", "1Gi");
        p.spec.as_mut().unwrap().affinity = Some(serde_json::from_value(serde_json::json!({"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]},
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
                {"weight": 5, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}}]}}))
        .unwrap());
        assert!(NodeAffinity.filter(&s, &p, &a).is_ok());
        assert!(NodeAffinity.filter(&s, &p, &b).is_ok());
        let c = node_with_labels("c", &[("zone", "c")], &[]);
        assert_eq!(NodeAffinity.filter(&s, &p, &c).unwrap_err().reasons, vec![REASON]);
        let mut scores: Vec<i64> = [&a, &b, &c].iter().map(|n| NodeAffinity.score(&s, &p, n)).collect();
        assert_eq!(scores, vec![10, 5, 0]);
        NodeAffinity.normalize(&s, &p, &mut scores);
        assert_eq!(scores, vec![100, 50, 0]);
    }
}
