//! NodeResourcesBalancedAllocation: prefers nodes where cpu and memory
//! would be used in the same proportion after placing the pod, so that
//! no node ends up with cpu left but no memory, or the reverse.

use k8s_openapi::api::core::v1::Pod;

use crate::framework::resources::pod_requests;
use crate::framework::{CycleState, NodeInfo, Plugin, MAX_NODE_SCORE};

pub const NAME: &str = "NodeResourcesBalancedAllocation";

pub struct BalancedAllocation;

fn fraction(requested: i64, allocatable: i64) -> f64 {
    if allocatable <= 0 {
        return 1.0;
    }
    (requested as f64 / allocatable as f64).min(1.0)
}

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }

    fn score(&self, _: &CycleState, pod: &Pod, node: &NodeInfo) -> i64 {
        let wanted = pod_requests(pod);
        let cpu = fraction(node.requested.milli_cpu + wanted.milli_cpu, node.allocatable.milli_cpu);
        let memory = fraction(node.requested.memory + wanted.memory, node.allocatable.memory);
        // The standard deviation of two fractions is half their distance.
        let deviation = (cpu - memory).abs() / 2.0;
        ((1.0 - deviation) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::{node, pod};

    #[test]
    fn balanced_use_scores_higher() {
        let p = pod("q", "1", "1Gi");
        // After placing: 50% cpu / 50% memory vs 50% cpu / 12.5% memory.
        let balanced = node("a", "2", "2Gi", &[]);
        let skewed = node("b", "2", "8Gi", &[]);
        let s = CycleState::default();
        assert_eq!(BalancedAllocation.score(&s, &p, &balanced), 100);
        assert_eq!(BalancedAllocation.score(&s, &p, &skewed), 81);
    }
}
