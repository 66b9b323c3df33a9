//! InterPodAffinity: pods that want to be near (affinity) or away from
//! (anti-affinity) other pods, by topology domain.
//!
//! Filter, for required terms: the node's domain must already hold a pod
//! matching each affinity term (unless no pod anywhere matches and the
//! pod matches its own terms: the first of a group may go anywhere); must
//! hold none matching an anti-affinity term; and no pod already in the
//! domain may have an anti-affinity term that matches the incoming pod.
//! Score, for preferred terms: each matching pod in a node's domain adds
//! (affinity) or subtracts (anti-affinity) the term's weight.

use std::collections::HashMap;
use std::sync::Arc;

use client::label_selector;
use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm};

use crate::framework::{CycleState, NodeInfo, Plugin, Snapshot, Status, MAX_NODE_SCORE};

pub const NAME: &str = "InterPodAffinity";
pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const REASON_EXISTING_ANTI_AFFINITY: &str = "node(s) didn't satisfy existing pods anti-affinity rules";
const FILTER_STATE: &str = "PreFilterInterPodAffinity";
const SCORE_STATE: &str = "PreScoreInterPodAffinity";

pub struct InterPodAffinity;

/// A topology domain: (label key, value).
type Domain = (String, String);

/// Whether `term` (declared by a pod in `owner_namespace`) selects `pod`.
/// A term without namespaces means its own pod's namespace; an empty
/// namespaceSelector means every namespace.
pub fn term_selects(term: &PodAffinityTerm, owner_namespace: Option<&str>, pod: &Pod) -> bool {
    let namespace = pod.metadata.namespace.as_deref();
    let every_namespace = term.namespace_selector.as_ref().is_some_and(label_selector::is_empty);
    let listed = term.namespaces.as_deref().unwrap_or_default();
    let namespace_ok = every_namespace
        || if listed.is_empty() {
            namespace == owner_namespace
        } else {
            namespace.is_some_and(|n| listed.iter().any(|l| l == n))
        };
    namespace_ok
        && term
            .label_selector
            .as_ref()
            .is_some_and(|s| label_selector::matches(s, pod.metadata.labels.as_ref()).unwrap_or(false))
}

struct Terms<'a> {
    affinity: &'a [PodAffinityTerm],
    anti_affinity: &'a [PodAffinityTerm],
}

fn required(pod: &Pod) -> Terms<'_> {
    let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
    Terms {
        affinity: affinity
            .and_then(|a| a.pod_affinity.as_ref())
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_deref())
            .unwrap_or_default(),
        anti_affinity: affinity
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_deref())
            .unwrap_or_default(),
    }
}

fn domain_of(node: &NodeInfo, key: &str) -> Option<Domain> {
    node.labels()?.get(key).map(|v| (key.to_string(), v.clone()))
}

#[derive(Default)]
struct FilterState {
    /// Domains where an existing pod's anti-affinity forbids the incoming pod.
    existing_anti: HashMap<Domain, i64>,
    /// Per required affinity term: matching pods per domain.
    affinity: Vec<HashMap<Domain, i64>>,
    /// Per required anti-affinity term: matching pods per domain.
    anti_affinity: Vec<HashMap<Domain, i64>>,
    /// No pod anywhere matches the affinity terms, and the pod matches them itself.
    first_of_group: bool,
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snapshot: &Snapshot) -> Result<(), Status> {
        let terms = required(pod);
        let namespace = pod.metadata.namespace.as_deref();
        let mut s = FilterState {
            affinity: vec![HashMap::new(); terms.affinity.len()],
            anti_affinity: vec![HashMap::new(); terms.anti_affinity.len()],
            ..Default::default()
        };
        for node in &snapshot.nodes {
            for existing in &node.pods {
                if existing.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                for term in required(existing).anti_affinity {
                    if term_selects(term, existing.metadata.namespace.as_deref(), pod) {
                        if let Some(d) = domain_of(node, &term.topology_key) {
                            *s.existing_anti.entry(d).or_default() += 1;
                        }
                    }
                }
                for (i, term) in terms.affinity.iter().enumerate() {
                    if term_selects(term, namespace, existing) {
                        if let Some(d) = domain_of(node, &term.topology_key) {
                            *s.affinity[i].entry(d).or_default() += 1;
                        }
                    }
                }
                for (i, term) in terms.anti_affinity.iter().enumerate() {
                    if term_selects(term, namespace, existing) {
                        if let Some(d) = domain_of(node, &term.topology_key) {
                            *s.anti_affinity[i].entry(d).or_default() += 1;
                        }
                    }
                }
            }
        }
        s.first_of_group =
            s.affinity.iter().all(HashMap::is_empty) && terms.affinity.iter().all(|t| term_selects(t, namespace, pod));
        state.write(FILTER_STATE, s);
        Ok(())
    }

    fn filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<(), Status> {
        let Some(s) = state.read::<FilterState>(FILTER_STATE) else {
            return Ok(());
        };
        let labels = node.labels();
        let in_domain = |d: &Domain| labels.and_then(|l| l.get(&d.0)) == Some(&d.1);
        let terms = required(pod);
        for (i, term) in terms.affinity.iter().enumerate() {
            let satisfied = domain_of(node, &term.topology_key).is_some_and(|d| s.affinity[i].contains_key(&d));
            let first = s.first_of_group && labels.is_some_and(|l| l.contains_key(&term.topology_key));
            if !satisfied && !first {
                return Err(Status::unresolvable(NAME, REASON_AFFINITY));
            }
        }
        for (i, term) in terms.anti_affinity.iter().enumerate() {
            if domain_of(node, &term.topology_key).is_some_and(|d| s.anti_affinity[i].contains_key(&d)) {
                return Err(Status::unschedulable(NAME, REASON_ANTI_AFFINITY));
            }
        }
        // Upstream's order: the pod's own terms first, then existing pods'.
        if s.existing_anti.keys().any(in_domain) {
            return Err(Status::unschedulable(NAME, REASON_EXISTING_ANTI_AFFINITY));
        }
        Ok(())
    }

    fn pre_score(&self, state: &mut CycleState, pod: &Pod, snapshot: &Snapshot, _: &[Arc<NodeInfo>]) {
        let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let preferred = affinity
            .and_then(|a| a.pod_affinity.as_ref())
            .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_deref())
            .unwrap_or_default();
        let preferred_anti = affinity
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_deref())
            .unwrap_or_default();
        let mut scores: HashMap<Domain, i64> = HashMap::new();
        if !preferred.is_empty() || !preferred_anti.is_empty() {
            let namespace = pod.metadata.namespace.as_deref();
            for node in &snapshot.nodes {
                for existing in &node.pods {
                    let weighted = preferred
                        .iter()
                        .map(|w| (w, 1))
                        .chain(preferred_anti.iter().map(|w| (w, -1)));
                    for (w, sign) in weighted {
                        let term = &w.pod_affinity_term;
                        if term_selects(term, namespace, existing) {
                            if let Some(d) = domain_of(node, &term.topology_key) {
                                *scores.entry(d).or_default() += sign * i64::from(w.weight);
                            }
                        }
                    }
                }
            }
        }
        state.write(SCORE_STATE, scores);
    }

    fn score(&self, state: &CycleState, _: &Pod, node: &NodeInfo) -> i64 {
        let Some(scores) = state.read::<HashMap<Domain, i64>>(SCORE_STATE) else {
            return 0;
        };
        let labels = node.labels();
        scores
            .iter()
            .filter(|(d, _)| labels.and_then(|l| l.get(&d.0)) == Some(&d.1))
            .map(|(_, s)| *s)
            .sum()
    }

    fn normalize(&self, _: &CycleState, _: &Pod, scores: &mut [i64]) {
        let (max, min) = (
            scores.iter().copied().max().unwrap_or(0),
            scores.iter().copied().min().unwrap_or(0),
        );
        for s in scores.iter_mut() {
            *s = if max > min {
                MAX_NODE_SCORE * (*s - min) / (max - min)
            } else {
                0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::{labelled, node_with_labels};

    fn with_affinity(name: &str, labels: &[(&str, &str)], affinity: serde_json::Value) -> Pod {
        let mut p = labelled(name, labels);
        p.spec.as_mut().unwrap().affinity = Some(serde_json::from_value(affinity).unwrap());
        p
    }

    fn term(app: &str) -> serde_json::Value {
        serde_json::json!([{"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "zone"}])
    }

    fn filter(pod: &Pod, nodes: &[Arc<NodeInfo>]) -> Vec<Result<(), Vec<String>>> {
        let snapshot = Snapshot { nodes: nodes.to_vec() };
        let mut state = CycleState::default();
        InterPodAffinity.pre_filter(&mut state, pod, &snapshot).unwrap();
        nodes
            .iter()
            .map(|n| InterPodAffinity.filter(&state, pod, n).map_err(|s| s.reasons))
            .collect()
    }

    #[test]
    fn required_affinity_and_anti_affinity() {
        let a = node_with_labels("a", &[("zone", "a")], &[labelled("db", &[("app", "db")])]);
        let b = node_with_labels("b", &[("zone", "b")], &[]);
        let near_db = with_affinity(
            "w",
            &[("app", "web")],
            serde_json::json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term("db")}}),
        );
        assert_eq!(
            filter(&near_db, &[a.clone(), b.clone()]),
            vec![Ok(()), Err(vec![REASON_AFFINITY.to_string()])]
        );
        let away = with_affinity(
            "w",
            &[("app", "web")],
            serde_json::json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term("db")}}),
        );
        assert_eq!(
            filter(&away, &[a.clone(), b.clone()]),
            vec![Err(vec![REASON_ANTI_AFFINITY.to_string()]), Ok(())]
        );
        // An existing pod that wants no web pods near it.
        let hermit = with_affinity(
            "h",
            &[("app", "h")],
            serde_json::json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term("web")}}),
        );
        let c = node_with_labels("c", &[("zone", "c")], &[hermit]);
        let web = labelled("w", &[("app", "web")]);
        assert_eq!(
            filter(&web, &[c, b]),
            vec![Err(vec![REASON_EXISTING_ANTI_AFFINITY.to_string()]), Ok(())]
        );
    }

    #[test]
    fn the_first_pod_of_a_self_affine_group_goes_anywhere() {
        let a = node_with_labels("a", &[("zone", "a")], &[]);
        let pod = with_affinity(
            "w",
            &[("app", "web")],
            serde_json::json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term("web")}}),
        );
        assert_eq!(filter(&pod, &[a]), vec![Ok(())]);
    }
}
