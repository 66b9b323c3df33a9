//! TaintToleration: a node's NoSchedule and NoExecute taints keep off
//! pods that do not tolerate them (filter); PreferNoSchedule taints make a
//! node less attractive per untolerated taint (score).

use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};

use crate::framework::{default_normalize, CycleState, NodeInfo, Plugin, Status};

pub const NAME: &str = "TaintToleration";

pub struct TaintToleration;

fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

fn taints(node: &NodeInfo) -> &[Taint] {
    node.node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<(), Status> {
        let untolerated = taints(node)
            .iter()
            .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
            .find(|t| !api::scheduling::tolerated(tolerations(pod), t));
        match untolerated {
            Some(t) => Err(Status::unresolvable(
                NAME,
                format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    t.key,
                    t.value.as_deref().unwrap_or("")
                ),
            )),
            None => Ok(()),
        }
    }

    fn score(&self, _: &CycleState, pod: &Pod, node: &NodeInfo) -> i64 {
        // Only tolerations that could apply to PreferNoSchedule count.
        let relevant: Vec<Toleration> = tolerations(pod)
            .iter()
            .filter(|t| {
                t.effect
                    .as_deref()
                    .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
            })
            .cloned()
            .collect();
        let count = taints(node)
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule" && !api::scheduling::tolerated(&relevant, t))
            .count();
        i64::try_from(count).unwrap_or(i64::MAX)
    }

    fn normalize(&self, _: &CycleState, _: &Pod, scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}
