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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::{node, pod};
    use std::sync::Arc;

    fn tainted(name: &str, taints: serde_json::Value) -> Arc<NodeInfo> {
        let mut n = node(name, "4", "8Gi", &[]);
        let info = Arc::make_mut(&mut n);
        let mut raw = info.node.as_ref().clone();
        raw.spec = Some(serde_json::from_value(serde_json::json!({"taints": taints})).unwrap());
        info.set_node(Arc::new(raw));
        n
    }

    #[test]
    fn filter_on_hard_taints_score_on_soft_ones() {
        let s = CycleState::default();
        let hard = tainted(
            "hard",
            serde_json::json!([{"key": "k", "value": "v", "effect": "NoSchedule"}]),
        );
        let soft = tainted(
            "soft",
            serde_json::json!([{"key": "k", "value": "v", "effect": "PreferNoSchedule"}]),
        );
        let clean = node("clean", "4", "8Gi", &[]);
        let p = pod("p", "1", "1Gi");
        let err = TaintToleration.filter(&s, &p, &hard).unwrap_err();
        assert_eq!(err.reasons, vec!["node(s) had untolerated taint {k: v}"]);
        assert!(TaintToleration.filter(&s, &p, &soft).is_ok());
        let mut scores: Vec<i64> = [&soft, &clean]
            .iter()
            .map(|n| TaintToleration.score(&s, &p, n))
            .collect();
        TaintToleration.normalize(&s, &p, &mut scores);
        assert_eq!(scores, vec![0, 100]);
        let mut tolerant = p.clone();
        tolerant.spec.as_mut().unwrap().tolerations = Some(vec![serde_json::from_value(
            serde_json::json!({"key": "k", "operator": "Exists"}),
        )
        .unwrap()]);
        assert!(TaintToleration.filter(&s, &tolerant, &hard).is_ok());
    }
}
