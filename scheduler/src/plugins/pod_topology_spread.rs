//! PodTopologySpread: spreads matching pods evenly across topology
//! domains (zones, nodes…) as each pod's `topologySpreadConstraints` ask.
//!
//! For a constraint, the *skew* of a domain is the number of matching
//! pods in it (counting the incoming pod) minus the smallest number in
//! any eligible domain. `DoNotSchedule` constraints filter out nodes
//! whose domain would exceed `maxSkew`; `ScheduleAnyway` ones score nodes
//! in emptier domains higher. Eligible domains are those of nodes that
//! have the topology label and that the pod's node selector and required
//! node affinity allow (`nodeAffinityPolicy: Honor`, the default).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use client::label_selector;
use k8s_openapi::api::core::v1::{Pod, TopologySpreadConstraint};

use crate::framework::{CycleState, NodeInfo, Plugin, Snapshot, Status, MAX_NODE_SCORE};

pub const NAME: &str = "PodTopologySpread";
pub const REASON: &str = "node(s) didn't match pod topology spread constraints";
pub const REASON_MISSING_LABEL: &str = "node(s) didn't match pod topology spread constraints (missing required label)";
const FILTER_STATE: &str = "PreFilterPodTopologySpread";
const SCORE_STATE: &str = "PreScorePodTopologySpread";

pub struct PodTopologySpread;

/// One constraint with the matching-pod count per domain.
struct Counted {
    constraint: TopologySpreadConstraint,
    counts: HashMap<String, i64>,
    /// Whether the incoming pod itself matches the selector.
    self_match: i64,
}

impl Counted {
    fn min(&self) -> i64 {
        let domains = self.counts.len();
        let min = self.counts.values().copied().min().unwrap_or(0);
        // Fewer domains than minDomains: the missing ones count as empty.
        match self.constraint.min_domains {
            Some(m) if usize::try_from(m).unwrap_or(0) > domains => 0,
            _ => min,
        }
    }
}

fn constraints<'a>(pod: &'a Pod, when: &str) -> Vec<&'a TopologySpreadConstraint> {
    pod.spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.when_unsatisfiable == when)
        .collect()
}

/// Whether `other` counts for the constraint: same namespace, selected,
/// not terminating.
fn counts_for(constraint: &TopologySpreadConstraint, pod: &Pod, other: &Pod) -> bool {
    if other.metadata.namespace != pod.metadata.namespace || other.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let Some(selector) = &constraint.label_selector else {
        return false;
    };
    let mut labels = other.metadata.labels.clone().unwrap_or_default();
    // matchLabelKeys: the incoming pod's values of these keys join the selector.
    for key in constraint.match_label_keys.iter().flatten() {
        let wanted = pod.metadata.labels.as_ref().and_then(|l| l.get(key));
        if wanted.is_some() && labels.get(key) != wanted {
            return false;
        }
        labels.entry(key.clone()).or_default();
    }
    label_selector::matches(selector, Some(&labels)).unwrap_or(false)
}

fn eligible(constraint: &TopologySpreadConstraint, pod: &Pod, node: &NodeInfo) -> bool {
    let has_key = node.labels().is_some_and(|l| l.contains_key(&constraint.topology_key));
    let honor_affinity = constraint.node_affinity_policy.as_deref().unwrap_or("Honor") == "Honor";
    let honor_taints = constraint.node_taints_policy.as_deref() == Some("Honor");
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let taints_ok = !honor_taints
        || node
            .node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default()
            .iter()
            .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
            .all(|t| api::scheduling::tolerated(tolerations, t));
    has_key && (!honor_affinity || api::scheduling::pod_matches_node(pod, &node.node)) && taints_ok
}

fn count(pod: &Pod, constraint: &TopologySpreadConstraint, nodes: &[Arc<NodeInfo>]) -> Counted {
    let mut counts: HashMap<String, i64> = HashMap::new();
    for node in nodes.iter().filter(|n| eligible(constraint, pod, n)) {
        let Some(value) = node.labels().and_then(|l| l.get(&constraint.topology_key)) else {
            continue;
        };
        let matching = node.pods.iter().filter(|p| counts_for(constraint, pod, p)).count();
        *counts.entry(value.clone()).or_default() += i64::try_from(matching).unwrap_or(0);
    }
    let self_match = i64::from(
        constraint
            .label_selector
            .as_ref()
            .is_some_and(|s| label_selector::matches(s, pod.metadata.labels.as_ref()).unwrap_or(false)),
    );
    Counted {
        constraint: constraint.clone(),
        counts,
        self_match,
    }
}

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snapshot: &Snapshot) -> Result<(), Status> {
        let counted: Vec<Counted> = constraints(pod, "DoNotSchedule")
            .into_iter()
            .map(|c| count(pod, c, &snapshot.nodes))
            .collect();
        state.write(FILTER_STATE, counted);
        Ok(())
    }

    fn filter(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Result<(), Status> {
        let Some(counted) = state.read::<Vec<Counted>>(FILTER_STATE) else {
            return Ok(());
        };
        for c in counted {
            let Some(value) = node.labels().and_then(|l| l.get(&c.constraint.topology_key)) else {
                return Err(Status::unresolvable(NAME, REASON_MISSING_LABEL));
            };
            let here = c.counts.get(value).copied().unwrap_or(0);
            let skew = here + c.self_match - c.min();
            if skew > i64::from(c.constraint.max_skew) {
                return Err(Status::unschedulable(NAME, REASON));
            }
        }
        Ok(())
    }

    fn pre_score(&self, state: &mut CycleState, pod: &Pod, _: &Snapshot, nodes: &[Arc<NodeInfo>]) {
        let counted: Vec<Counted> = constraints(pod, "ScheduleAnyway")
            .into_iter()
            .map(|c| count(pod, c, nodes))
            .collect();
        state.write(SCORE_STATE, counted);
    }

    fn score(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> i64 {
        let Some(counted) = state.read::<Vec<Counted>>(SCORE_STATE) else {
            return 0;
        };
        counted
            .iter()
            .filter_map(|c| {
                let value = node.labels()?.get(&c.constraint.topology_key)?;
                Some(c.counts.get(value).copied().unwrap_or(0) + c.self_match)
            })
            .sum()
    }

    fn normalize(&self, state: &CycleState, _: &Pod, scores: &mut [i64]) {
        let has_constraints = state.read::<Vec<Counted>>(SCORE_STATE).is_some_and(|c| !c.is_empty());
        if !has_constraints {
            scores.iter_mut().for_each(|s| *s = 0);
            return;
        }
        let (max, min) = (
            scores.iter().copied().max().unwrap_or(0),
            scores.iter().copied().min().unwrap_or(0),
        );
        for s in scores.iter_mut() {
            *s = if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *s) / max
            };
        }
    }
}

/// The domains and counts of each DoNotSchedule constraint, for tests and
/// preemption messages.
pub fn domain_counts(pod: &Pod, snapshot: &Snapshot) -> Vec<BTreeMap<String, i64>> {
    constraints(pod, "DoNotSchedule")
        .into_iter()
        .map(|c| count(pod, c, &snapshot.nodes).counts.into_iter().collect())
        .collect()
}

/// The topology keys a pod's constraints use (for the queue's hints).
pub fn topology_keys(pod: &Pod) -> HashSet<String> {
    constraints(pod, "DoNotSchedule")
        .into_iter()
        .chain(constraints(pod, "ScheduleAnyway"))
        .map(|c| c.topology_key.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::{labelled, node_with_labels};

    fn spreading(name: &str, when: &str) -> Pod {
        let mut p = labelled(name, &[("app", "web")]);
        p.spec.as_mut().unwrap().topology_spread_constraints = Some(vec![serde_json::from_value(serde_json::json!({
            "maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": {"app": "web"}}}))
        .unwrap()]);
        p
    }

    #[test]
    fn do_not_schedule_keeps_the_skew() {
        let a = node_with_labels(
            "a",
            &[("zone", "a")],
            &[labelled("w1", &[("app", "web")]), labelled("w2", &[("app", "web")])],
        );
        let b = node_with_labels("b", &[("zone", "b")], &[labelled("w3", &[("app", "web")])]);
        let bare = node_with_labels("c", &[], &[]);
        let snapshot = Snapshot {
            nodes: vec![a.clone(), b.clone(), bare.clone()],
        };
        let pod = spreading("new", "DoNotSchedule");
        let mut state = CycleState::default();
        PodTopologySpread.pre_filter(&mut state, &pod, &snapshot).unwrap();
        assert_eq!(
            PodTopologySpread.filter(&state, &pod, &a).unwrap_err().reasons,
            vec![REASON]
        );
        assert!(PodTopologySpread.filter(&state, &pod, &b).is_ok());
        assert_eq!(
            PodTopologySpread.filter(&state, &pod, &bare).unwrap_err().reasons,
            vec![REASON_MISSING_LABEL]
        );
    }

    #[test]
    fn schedule_anyway_prefers_emptier_domains() {
        let a = node_with_labels(
            "a",
            &[("zone", "a")],
            &[labelled("w1", &[("app", "web")]), labelled("w2", &[("app", "web")])],
        );
        let b = node_with_labels("b", &[("zone", "b")], &[]);
        let nodes = vec![a.clone(), b.clone()];
        let snapshot = Snapshot { nodes: nodes.clone() };
        let pod = spreading("new", "ScheduleAnyway");
        let mut state = CycleState::default();
        PodTopologySpread.pre_score(&mut state, &pod, &snapshot, &nodes);
        let mut scores: Vec<i64> = nodes.iter().map(|n| PodTopologySpread.score(&state, &pod, n)).collect();
        PodTopologySpread.normalize(&state, &pod, &mut scores);
        assert!(scores[1] > scores[0], "{scores:?}");
    }
}
