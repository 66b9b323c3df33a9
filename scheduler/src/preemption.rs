//! Preemption (DefaultPreemption): when no node fits a pod, find the node
//! where evicting lower-priority pods would make it fit, evicting as
//! little as possible.
//!
//! For each node that refused the pod for a reason removing pods could
//! fix (`Unschedulable`, not `UnschedulableAndUnresolvable`), every pod
//! of lower priority is a potential victim. If the pod fits with all of
//! them gone, victims are *reprieved* one by one, most important first
//! (and those protected by a PodDisruptionBudget before the others), as
//! long as the pod still fits. The node chosen has, in order: the fewest
//! PodDisruptionBudget violations, the lowest highest-victim priority,
//! the lowest sum of victim priorities, the fewest victims.
//!
//! Known simplification: plugins' PreFilter state (topology spread and
//! inter-pod affinity counts) is not recomputed without the victims, so
//! preemption for those constraints is conservative.

use std::sync::Arc;

use client::label_selector;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use crate::framework::{Code, CycleState, NodeInfo, Profile, Snapshot};
use crate::schedule_one::FitError;

#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<Arc<Pod>>,
    pub pdb_violations: usize,
}

pub fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

fn start_time(pod: &Pod) -> i64 {
    pod.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .or(pod.metadata.creation_timestamp.as_ref())
        .map_or(0, |t| t.0.as_second())
}

/// Whether the pod may preempt at all.
pub fn eligible(pod: &Pod, snapshot: &Snapshot) -> bool {
    if pod.spec.as_ref().and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return false;
    }
    // Already nominated, with victims still terminating there: wait for them.
    let nominated = pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref());
    if let Some(node) = nominated.and_then(|n| snapshot.get(n)) {
        let waiting = node
            .pods
            .iter()
            .any(|p| p.metadata.deletion_timestamp.is_some() && priority(p) < priority(pod));
        if waiting {
            return false;
        }
    }
    true
}

/// Whether removing `victim` would break one of the budgets (and counts
/// the disruption against it).
fn violates(victim: &Pod, budgets: &mut [(PodDisruptionBudget, i32)]) -> bool {
    let mut violation = false;
    for (pdb, allowed) in budgets.iter_mut() {
        if pdb.metadata.namespace != victim.metadata.namespace {
            continue;
        }
        let Some(selector) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
            continue;
        };
        if label_selector::is_empty(selector)
            || !label_selector::matches(selector, victim.metadata.labels.as_ref()).unwrap_or(false)
        {
            continue;
        }
        *allowed -= 1;
        if *allowed < 0 {
            violation = true;
        }
    }
    violation
}

/// The victims on one node, or `None` if evicting cannot make the pod fit.
fn select_victims(
    profile: &Profile,
    state: &CycleState,
    pod: &Pod,
    node: &NodeInfo,
    pdbs: &[PodDisruptionBudget],
) -> Option<Candidate> {
    let own = priority(pod);
    let mut potential: Vec<Arc<Pod>> = node
        .pods
        .iter()
        .filter(|p| priority(p) < own && p.metadata.deletion_timestamp.is_none())
        .cloned()
        .collect();
    if potential.is_empty() {
        return None;
    }
    let mut reduced = node.clone();
    for v in &potential {
        reduced.remove_pod(v.metadata.uid.as_deref().unwrap_or_default());
    }
    if profile.filter(state, pod, &reduced).is_err() {
        return None;
    }
    // Most important first: higher priority, then running longer.
    potential.sort_by(|a, b| priority(b).cmp(&priority(a)).then(start_time(a).cmp(&start_time(b))));
    let mut budgets: Vec<(PodDisruptionBudget, i32)> = pdbs
        .iter()
        .map(|p| (p.clone(), p.status.as_ref().map_or(0, |s| s.disruptions_allowed)))
        .collect();
    let (protected, unprotected): (Vec<_>, Vec<_>) = potential.into_iter().partition(|v| {
        let mut probe = budgets.clone();
        violates(v, &mut probe)
    });
    let mut victims = Vec::new();
    let mut violations = 0;
    for (group, counts) in [(protected, true), (unprotected, false)] {
        for v in group {
            reduced.add_pod(v.clone());
            if profile.filter(state, pod, &reduced).is_ok() {
                continue; // Reprieved.
            }
            reduced.remove_pod(v.metadata.uid.as_deref().unwrap_or_default());
            if counts && violates(&v, &mut budgets) {
                violations += 1;
            }
            victims.push(v);
        }
    }
    Some(Candidate {
        node: node.name().to_string(),
        victims,
        pdb_violations: violations,
    })
}

/// The best node to preempt on, if any.
pub fn find_candidate(
    profile: &Profile,
    pod: &Pod,
    snapshot: &Snapshot,
    fit: &FitError,
    pdbs: &[PodDisruptionBudget],
) -> Option<Candidate> {
    let mut state = CycleState::default();
    profile.pre_filter(&mut state, pod, snapshot).ok()?;
    let candidates: Vec<Candidate> = snapshot
        .nodes
        .iter()
        .filter(|n| {
            fit.statuses
                .get(n.name())
                .is_some_and(|s| s.code == Code::Unschedulable)
        })
        .filter_map(|n| select_victims(profile, &state, pod, n, pdbs))
        .collect();
    candidates.into_iter().min_by_key(|c| {
        let highest = c.victims.iter().map(|v| priority(v)).max().unwrap_or(i32::MIN);
        let sum: i64 = c.victims.iter().map(|v| i64::from(priority(v))).sum();
        (c.pdb_violations, highest, sum, c.victims.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::{node, pod};
    use crate::schedule_one::schedule;

    fn with_priority(name: &str, cpu: &str, p: i32) -> Pod {
        let mut pod = pod(name, cpu, "100Mi");
        pod.spec.as_mut().unwrap().priority = Some(p);
        pod
    }

    fn profile() -> Profile {
        let build = |n: &str| crate::plugins::build(n, None).unwrap();
        Profile {
            scheduler_name: "default-scheduler".into(),
            filters: crate::plugins::DEFAULT_FILTERS.iter().map(|n| build(n)).collect(),
            scores: Vec::new(),
            preemption: true,
        }
    }

    #[test]
    fn fewest_and_least_important_victims() {
        let snapshot = Snapshot {
            nodes: vec![
                node(
                    "a",
                    "2",
                    "8Gi",
                    &[with_priority("a1", "1", 10), with_priority("a2", "1", 10)],
                ),
                node(
                    "b",
                    "2",
                    "8Gi",
                    &[with_priority("b1", "1", 1), with_priority("b2", "1", 500)],
                ),
                node("c", "2", "8Gi", &[with_priority("c1", "2", 1000)]),
            ],
        };
        let preemptor = with_priority("p", "1", 100);
        let fit = schedule(&profile(), &preemptor, &snapshot, 0, 0, 1).unwrap_err();
        let c = find_candidate(&profile(), &preemptor, &snapshot, &fit, &[]).unwrap();
        assert_eq!(c.node, "b", "one victim of priority 1 beats one of 10");
        let names: Vec<_> = c.victims.iter().map(|v| v.metadata.name.clone().unwrap()).collect();
        assert_eq!(names, ["b1"]);
        // Nothing to gain against a higher-priority pod.
        let weak = with_priority("w", "2", 0);
        let fit = schedule(&profile(), &weak, &snapshot, 0, 0, 1).unwrap_err();
        assert!(find_candidate(&profile(), &weak, &snapshot, &fit, &[]).is_none());
    }
}
