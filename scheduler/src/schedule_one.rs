//! One scheduling decision: filter the nodes, score the ones that fit,
//! pick the best (ties broken at random).
//!
//! Large clusters are not searched exhaustively: once enough feasible
//! nodes are found (`percentageOfNodesToScore`, by default adaptive: 50%
//! of the nodes minus 1% per 125 nodes, at least 5% and at least 100
//! nodes) the search stops, and the next pod's search starts where this
//! one stopped, so every node gets its turn. Filtering runs on several
//! threads when there are many nodes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{CycleState, NodeInfo, Profile, Snapshot, Status};

/// Below this many nodes every node is checked.
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;
/// Below this many nodes filtering stays on one thread.
const PARALLEL_THRESHOLD: usize = 256;

/// Why no node fits: each node's refusal.
#[derive(Debug, Clone)]
pub struct FitError {
    pub nodes: usize,
    pub statuses: HashMap<String, Status>,
}

impl FitError {
    /// kube-scheduler's message: "0/3 nodes are available: 1 Insufficient
    /// cpu, 2 node(s) had untolerated taint {k: v}."
    pub fn message(&self) -> String {
        if self.nodes == 0 {
            return "no nodes available to schedule pods".into();
        }
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for status in self.statuses.values() {
            for reason in &status.reasons {
                *counts.entry(reason.as_str()).or_default() += 1;
            }
        }
        let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
        parts.sort();
        format!("0/{} nodes are available: {}.", self.nodes, parts.join(", "))
    }

    /// The plugins that refused some node.
    pub fn plugins(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.statuses.values().map(|s| s.plugin)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub node: String,
    pub evaluated: usize,
    pub feasible: usize,
}

/// How many feasible nodes to look for among `all`.
pub fn feasible_nodes_to_find(percentage: i32, all: usize) -> usize {
    if all < MIN_FEASIBLE_NODES_TO_FIND || percentage >= 100 {
        return all;
    }
    let percent = if percentage > 0 {
        usize::try_from(percentage).unwrap_or(100)
    } else {
        (50usize.saturating_sub(all / 125)).max(MIN_FEASIBLE_NODES_PERCENTAGE)
    };
    (all * percent / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

type Checked = (usize, Result<(), Status>);

/// Filters nodes in rotated order from `start` until `want` fit.
fn filter_range(
    profile: &Profile,
    state: &CycleState,
    pod: &Pod,
    nodes: &[Arc<NodeInfo>],
    order: &[usize],
    want: usize,
    found: &AtomicUsize,
) -> Vec<Checked> {
    let mut out = Vec::with_capacity(order.len());
    for &i in order {
        if found.load(Ordering::Relaxed) >= want {
            break;
        }
        let result = profile.filter(state, pod, &nodes[i]);
        if result.is_ok() {
            found.fetch_add(1, Ordering::Relaxed);
        }
        out.push((i, result));
    }
    out
}

/// The feasible nodes (at most `want`), every refusal seen, and how many
/// nodes were looked at.
pub fn find_feasible(
    profile: &Profile,
    state: &CycleState,
    pod: &Pod,
    snapshot: &Snapshot,
    start: usize,
    want: usize,
    parallelism: usize,
) -> (Vec<Arc<NodeInfo>>, HashMap<String, Status>, usize) {
    let n = snapshot.nodes.len();
    let order: Vec<usize> = (0..n).map(|i| (start + i) % n).collect();
    let found = AtomicUsize::new(0);
    let mut checked: Vec<Checked> = if n < PARALLEL_THRESHOLD || parallelism <= 1 {
        filter_range(profile, state, pod, &snapshot.nodes, &order, want, &found)
    } else {
        let chunk = n.div_ceil(parallelism);
        std::thread::scope(|scope| {
            let handles: Vec<_> = order
                .chunks(chunk)
                .map(|part| {
                    let found = &found;
                    scope.spawn(move || filter_range(profile, state, pod, &snapshot.nodes, part, want, found))
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
        })
    };
    // Back into rotated order, so "the first `want` feasible" is well defined.
    let rank = |i: usize| (i + n - start % n.max(1)) % n.max(1);
    checked.sort_by_key(|(i, _)| rank(*i));
    let mut feasible = Vec::new();
    let mut statuses = HashMap::new();
    let mut evaluated = 0;
    for (i, result) in checked {
        if feasible.len() >= want {
            break;
        }
        evaluated = rank(i) + 1;
        match result {
            Ok(()) => feasible.push(snapshot.nodes[i].clone()),
            Err(status) => {
                statuses.insert(snapshot.nodes[i].name().to_string(), status);
            }
        }
    }
    (feasible, statuses, evaluated)
}

/// Chooses a node for `pod`, or says why none fits.
pub fn schedule(
    profile: &Profile,
    pod: &Pod,
    snapshot: &Snapshot,
    percentage: i32,
    start: usize,
    parallelism: usize,
) -> Result<Decision, FitError> {
    let n = snapshot.nodes.len();
    if n == 0 {
        return Err(FitError {
            nodes: 0,
            statuses: HashMap::new(),
        });
    }
    let mut state = CycleState::default();
    if let Err(status) = profile.pre_filter(&mut state, pod, snapshot) {
        let statuses = snapshot
            .nodes
            .iter()
            .map(|node| (node.name().to_string(), status.clone()))
            .collect();
        return Err(FitError { nodes: n, statuses });
    }
    let want = feasible_nodes_to_find(percentage, n);
    let (feasible, statuses, evaluated) = find_feasible(profile, &state, pod, snapshot, start, want, parallelism);
    if feasible.is_empty() {
        return Err(FitError { nodes: n, statuses });
    }
    if feasible.len() == 1 {
        return Ok(Decision {
            node: feasible[0].name().to_string(),
            evaluated,
            feasible: 1,
        });
    }
    let scores = profile.score(&mut state, pod, snapshot, &feasible);
    Ok(Decision {
        node: select_host(&feasible, &scores),
        evaluated,
        feasible: feasible.len(),
    })
}

/// The highest score; among equals, each has the same chance.
fn select_host(nodes: &[Arc<NodeInfo>], scores: &[i64]) -> String {
    let mut best = 0;
    let mut ties = 0u32;
    for (i, score) in scores.iter().enumerate() {
        if *score > scores[best] {
            best = i;
            ties = 1;
        } else if *score == scores[best] {
            ties += 1;
            if fastrand::u32(0..ties) == 0 {
                best = i;
            }
        }
    }
    nodes[best].name().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Profile;
    use crate::plugins::test_support::{node, pod};

    fn profile() -> Profile {
        let build = |n: &str| crate::plugins::build(n, None).unwrap();
        Profile {
            scheduler_name: "default-scheduler".into(),
            filters: crate::plugins::DEFAULT_FILTERS.iter().map(|n| build(n)).collect(),
            scores: crate::plugins::DEFAULT_SCORES
                .iter()
                .map(|(n, w)| (build(n), *w))
                .collect(),
            preemption: true,
        }
    }

    #[test]
    fn adaptive_percentage_of_nodes_to_score() {
        assert_eq!(feasible_nodes_to_find(0, 50), 50);
        assert_eq!(feasible_nodes_to_find(0, 1000), 420);
        assert_eq!(feasible_nodes_to_find(0, 5000), 500);
        assert_eq!(feasible_nodes_to_find(0, 10_000), 500);
        assert_eq!(feasible_nodes_to_find(10, 5000), 500);
        assert_eq!(feasible_nodes_to_find(100, 5000), 5000);
    }

    #[test]
    fn picks_the_least_allocated_node_and_explains_failures() {
        let snapshot = Snapshot {
            nodes: vec![
                node("busy", "4", "8Gi", &[pod("a", "3", "1Gi")]),
                node("idle", "4", "8Gi", &[]),
                node("tiny", "500m", "8Gi", &[]),
            ],
        };
        let decision = schedule(&profile(), &pod("p", "1", "1Gi"), &snapshot, 0, 0, 2).unwrap();
        assert_eq!(decision.node, "idle");
        assert_eq!(decision.feasible, 2);
        let err = schedule(&profile(), &pod("big", "4500m", "1Gi"), &snapshot, 0, 0, 2).unwrap_err();
        assert_eq!(err.message(), "0/3 nodes are available: 3 Insufficient cpu.");
    }

    #[test]
    fn parallel_filtering_finds_as_many_feasible_nodes() {
        let nodes: Vec<_> = (0..600)
            .map(|i| {
                if i % 3 == 0 {
                    node(&format!("n{i:03}"), "4", "8Gi", &[])
                } else {
                    node(&format!("n{i:03}"), "100m", "8Gi", &[])
                }
            })
            .collect();
        let snapshot = Snapshot { nodes };
        let mut state = CycleState::default();
        let p = pod("p", "1", "1Gi");
        let prof = profile();
        prof.pre_filter(&mut state, &p, &snapshot).unwrap();
        let (one, _, _) = find_feasible(&prof, &state, &p, &snapshot, 7, 50, 1);
        let (many, _, _) = find_feasible(&prof, &state, &p, &snapshot, 7, 50, 4);
        // Threads race to the quota, so which nodes are found may differ;
        // how many, and that each fits, may not.
        let fits = |v: &[Arc<NodeInfo>]| v.iter().all(|n| n.allocatable.milli_cpu == 4000);
        assert!(fits(&one) && fits(&many));
        assert_eq!(many.len(), 50);
        assert_eq!(one.len(), 50);
    }
}
