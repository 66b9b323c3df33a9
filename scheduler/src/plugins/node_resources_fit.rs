//! NodeResourcesFit: a pod fits where the node's allocatable resources
//! minus what its pods request cover the pod's requests (filter); among
//! those, the scoring strategy prefers the emptiest nodes
//! (`LeastAllocated`, the default, spreading load), the fullest
//! (`MostAllocated`, packing), or follows a utilization→score curve
//! (`RequestedToCapacityRatio`).

use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;

use crate::framework::resources::{non_zero_requests, pod_requests, Resource};
use crate::framework::{CycleState, NodeInfo, Plugin, Status, MAX_NODE_SCORE};

pub const NAME: &str = "NodeResourcesFit";

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceWeight {
    pub name: String,
    #[serde(default = "one")]
    pub weight: i64,
}

fn one() -> i64 {
    1
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ShapePoint {
    pub utilization: i64,
    /// 0..=10, scaled to 0..=100.
    pub score: i64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RequestedToCapacityRatio {
    #[serde(default)]
    pub shape: Vec<ShapePoint>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScoringStrategy {
    #[serde(rename = "type", default = "least_allocated")]
    pub type_: String,
    #[serde(default = "default_resources")]
    pub resources: Vec<ResourceWeight>,
    #[serde(default)]
    pub requested_to_capacity_ratio: RequestedToCapacityRatio,
}

fn least_allocated() -> String {
    "LeastAllocated".into()
}

fn default_resources() -> Vec<ResourceWeight> {
    vec![
        ResourceWeight {
            name: "cpu".into(),
            weight: 1,
        },
        ResourceWeight {
            name: "memory".into(),
            weight: 1,
        },
    ]
}

impl Default for ScoringStrategy {
    fn default() -> Self {
        ScoringStrategy {
            type_: least_allocated(),
            resources: default_resources(),
            requested_to_capacity_ratio: RequestedToCapacityRatio::default(),
        }
    }
}

/// The plugin's arguments (`pluginConfig` in the configuration file).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Args {
    #[serde(default)]
    pub scoring_strategy: ScoringStrategy,
    #[serde(default)]
    pub ignored_resources: Vec<String>,
}

pub struct NodeResourcesFit {
    pub args: Args,
}

impl NodeResourcesFit {
    pub fn new(args: Args) -> Result<NodeResourcesFit, String> {
        match args.scoring_strategy.type_.as_str() {
            "LeastAllocated" | "MostAllocated" => {}
            "RequestedToCapacityRatio" if !args.scoring_strategy.requested_to_capacity_ratio.shape.is_empty() => {}
            "RequestedToCapacityRatio" => return Err("NodeResourcesFit: RequestedToCapacityRatio needs a shape".into()),
            other => return Err(format!("NodeResourcesFit: unknown scoring strategy {other:?}")),
        }
        Ok(NodeResourcesFit { args })
    }
}

const STATE: &str = "PreFilterNodeResourcesFit";

/// The reasons the node cannot hold the pod's requests.
pub fn insufficient(requests: &Resource, node: &NodeInfo, ignored: &[String]) -> Vec<String> {
    let mut reasons = Vec::new();
    let (a, q) = (&node.allocatable, &node.requested);
    if i64::try_from(node.pods.len()).unwrap_or(i64::MAX) + 1 > a.pods {
        reasons.push("Too many pods".to_string());
    }
    if requests.milli_cpu > 0 && requests.milli_cpu > a.milli_cpu - q.milli_cpu {
        reasons.push("Insufficient cpu".into());
    }
    if requests.memory > 0 && requests.memory > a.memory - q.memory {
        reasons.push("Insufficient memory".into());
    }
    if requests.ephemeral_storage > 0 && requests.ephemeral_storage > a.ephemeral_storage - q.ephemeral_storage {
        reasons.push("Insufficient ephemeral-storage".into());
    }
    for (name, wanted) in &requests.scalar {
        if *wanted == 0 || ignored.contains(name) {
            continue;
        }
        let free = a.scalar.get(name).copied().unwrap_or(0) - q.scalar.get(name).copied().unwrap_or(0);
        if *wanted > free {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    reasons
}

/// (requested including the pod, allocatable) of one resource, with the
/// scoring defaults for cpu and memory.
fn usage(resource: &str, pod: &Pod, node: &NodeInfo) -> (i64, i64) {
    match resource {
        "cpu" => (
            node.non_zero_requested.0 + non_zero_requests(pod).0,
            node.allocatable.milli_cpu,
        ),
        "memory" => (
            node.non_zero_requested.1 + non_zero_requests(pod).1,
            node.allocatable.memory,
        ),
        "ephemeral-storage" => (
            node.requested.ephemeral_storage + pod_requests(pod).ephemeral_storage,
            node.allocatable.ephemeral_storage,
        ),
        other => (
            node.requested.scalar.get(other).copied().unwrap_or(0)
                + pod_requests(pod).scalar.get(other).copied().unwrap_or(0),
            node.allocatable.scalar.get(other).copied().unwrap_or(0),
        ),
    }
}

/// Piecewise-linear interpolation of `shape` at `utilization` (0..=100).
fn shape_score(shape: &[ShapePoint], utilization: i64) -> i64 {
    let scaled = |s: i64| s * MAX_NODE_SCORE / 10;
    let Some(first) = shape.first() else { return 0 };
    if utilization <= first.utilization {
        return scaled(first.score);
    }
    for pair in shape.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if utilization <= b.utilization {
            let span = (b.utilization - a.utilization).max(1);
            return scaled(a.score) + (scaled(b.score) - scaled(a.score)) * (utilization - a.utilization) / span;
        }
    }
    shape.last().map_or(0, |p| scaled(p.score))
}

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, _: &crate::framework::Snapshot) -> Result<(), Status> {
        state.write(STATE, pod_requests(pod));
        Ok(())
    }

    fn filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<(), Status> {
        let computed;
        let requests = match state.read::<Resource>(STATE) {
            Some(r) => r,
            None => {
                computed = pod_requests(pod);
                &computed
            }
        };
        let reasons = insufficient(requests, node, &self.args.ignored_resources);
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(Status {
                code: crate::framework::Code::Unschedulable,
                reasons,
                plugin: NAME,
            })
        }
    }

    fn score(&self, _: &CycleState, pod: &Pod, node: &NodeInfo) -> i64 {
        let strategy = &self.args.scoring_strategy;
        let (mut total, mut weights) = (0i64, 0i64);
        for r in &strategy.resources {
            let (requested, capacity) = usage(&r.name, pod, node);
            let score = if capacity <= 0 {
                0
            } else {
                match strategy.type_.as_str() {
                    "MostAllocated" => requested.min(capacity) * MAX_NODE_SCORE / capacity,
                    "RequestedToCapacityRatio" => shape_score(
                        &strategy.requested_to_capacity_ratio.shape,
                        requested.min(capacity) * 100 / capacity,
                    ),
                    _ if requested > capacity => 0,
                    _ => (capacity - requested) * MAX_NODE_SCORE / capacity,
                }
            };
            total += score * r.weight;
            weights += r.weight;
        }
        if weights == 0 {
            0
        } else {
            total / weights
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::{node, pod};

    fn fit(strategy: &str) -> NodeResourcesFit {
        let mut args = Args::default();
        args.scoring_strategy.type_ = strategy.into();
        args.scoring_strategy.requested_to_capacity_ratio.shape = vec![
            ShapePoint {
                utilization: 0,
                score: 0,
            },
            ShapePoint {
                utilization: 100,
                score: 10,
            },
        ];
        NodeResourcesFit::new(args).unwrap()
    }

    #[test]
    fn filter_reports_every_missing_resource() {
        let n = node("n", "2", "4Gi", &[pod("p", "1500m", "3Gi")]);
        let want = pod("q", "1", "2Gi");
        let err = fit("LeastAllocated")
            .filter(&CycleState::default(), &want, &n)
            .unwrap_err();
        assert_eq!(err.reasons, vec!["Insufficient cpu", "Insufficient memory"]);
        let small = pod("q", "500m", "1Gi");
        assert!(fit("LeastAllocated").filter(&CycleState::default(), &small, &n).is_ok());
    }

    #[test]
    fn scoring_strategies() {
        // A node half used and one empty, 4 cpu / 8Gi each; the pod asks 1 cpu / 2Gi.
        let half = node("half", "4", "8Gi", &[pod("p", "2", "4Gi")]);
        let empty = node("empty", "4", "8Gi", &[]);
        let p = pod("q", "1", "2Gi");
        let s = CycleState::default();
        let least = fit("LeastAllocated");
        assert_eq!((least.score(&s, &p, &half), least.score(&s, &p, &empty)), (25, 75));
        let most = fit("MostAllocated");
        assert_eq!((most.score(&s, &p, &half), most.score(&s, &p, &empty)), (75, 25));
        let ratio = fit("RequestedToCapacityRatio");
        assert_eq!(ratio.score(&s, &p, &half), 75);
    }
}
