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
