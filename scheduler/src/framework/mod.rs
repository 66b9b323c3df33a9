//! The scheduling framework: a profile is a list of plugins, each hooked
//! into the extension points it implements.
//!
//! - **PreFilter** computes, once per pod, what filtering needs (a pod's
//!   requests, the topology counts of matching pods).
//! - **Filter** says whether the pod fits one node; a node passes only if
//!   every filter plugin says yes. A refusal carries a reason ("Insufficient
//!   cpu") that ends up in the FailedScheduling event, and says whether
//!   preemption could help (`Unschedulable`) or not
//!   (`UnschedulableAndUnresolvable`).
//! - **PreScore** / **Score** / **NormalizeScore** rank the nodes that
//!   passed: each score plugin gives every node 0..=[`MAX_NODE_SCORE`]
//!   after normalizing, and the weighted sum picks the node.

pub mod node_info;
pub mod resources;

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

pub use node_info::NodeInfo;

pub const MAX_NODE_SCORE: i64 = 100;

/// Why a node does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// Could fit if other pods went away: preemption may help.
    Unschedulable,
    /// Would not fit whatever is removed (a taint, a selector).
    UnschedulableAndUnresolvable,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub reasons: Vec<String>,
    /// The plugin that refused.
    pub plugin: &'static str,
}

impl Status {
    pub fn unschedulable(plugin: &'static str, reason: impl Into<String>) -> Status {
        Status {
            code: Code::Unschedulable,
            reasons: vec![reason.into()],
            plugin,
        }
    }

    pub fn unresolvable(plugin: &'static str, reason: impl Into<String>) -> Status {
        Status {
            code: Code::UnschedulableAndUnresolvable,
            reasons: vec![reason.into()],
            plugin,
        }
    }
}

/// Every node of the cluster as the cycle sees it.
pub struct Snapshot {
    pub nodes: Vec<Arc<NodeInfo>>,
}

impl Snapshot {
    pub fn get(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.nodes.iter().find(|n| n.name() == name)
    }
}

/// Per-cycle data that plugins compute in PreFilter/PreScore and read in
/// Filter/Score, by plugin name.
#[derive(Default)]
pub struct CycleState {
    data: HashMap<&'static str, Box<dyn Any + Send + Sync>>,
}

impl CycleState {
    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        self.data.insert(key, Box::new(value));
    }

    pub fn read<T: Any>(&self, key: &'static str) -> Option<&T> {
        self.data.get(key).and_then(|v| v.downcast_ref())
    }
}

/// A plugin implements the extension points it needs; the others are
/// no-ops. Plugins are stateless between cycles.
pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;

    fn pre_filter(&self, _state: &mut CycleState, _pod: &Pod, _snapshot: &Snapshot) -> Result<(), Status> {
        Ok(())
    }

    fn filter(&self, _state: &CycleState, _pod: &Pod, _node: &NodeInfo) -> Result<(), Status> {
        Ok(())
    }

    fn pre_score(&self, _state: &mut CycleState, _pod: &Pod, _snapshot: &Snapshot, _nodes: &[Arc<NodeInfo>]) {}

    fn score(&self, _state: &CycleState, _pod: &Pod, _node: &NodeInfo) -> i64 {
        0
    }

    /// Brings the raw scores (one per node, in order) into 0..=100.
    fn normalize(&self, _state: &CycleState, _pod: &Pod, _scores: &mut [i64]) {}
}

/// Scales scores so the highest is [`MAX_NODE_SCORE`]; `reverse` makes
/// the lowest raw score the best (fewer untolerated taints, say).
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let scaled = MAX_NODE_SCORE * *s / max;
        *s = if reverse { MAX_NODE_SCORE - scaled } else { scaled };
    }
}

/// A profile's plugins: `schedulerName` → filter plugins and weighted
/// score plugins.
pub struct Profile {
    pub scheduler_name: String,
    pub filters: Vec<Arc<dyn Plugin>>,
    pub scores: Vec<(Arc<dyn Plugin>, i64)>,
    pub preemption: bool,
}

impl Profile {
    pub fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snapshot: &Snapshot) -> Result<(), Status> {
        for p in &self.filters {
            p.pre_filter(state, pod, snapshot)?;
        }
        Ok(())
    }

    pub fn filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<(), Status> {
        for p in &self.filters {
            p.filter(state, pod, node)?;
        }
        Ok(())
    }

    /// The weighted, normalized total of every score plugin for each node.
    pub fn score(&self, state: &mut CycleState, pod: &Pod, snapshot: &Snapshot, nodes: &[Arc<NodeInfo>]) -> Vec<i64> {
        let mut totals = vec![0i64; nodes.len()];
        for (plugin, _) in &self.scores {
            plugin.pre_score(state, pod, snapshot, nodes);
        }
        for (plugin, weight) in &self.scores {
            let mut scores: Vec<i64> = nodes.iter().map(|n| plugin.score(state, pod, n)).collect();
            plugin.normalize(state, pod, &mut scores);
            for (t, s) in totals.iter_mut().zip(scores) {
                *t += s.clamp(0, MAX_NODE_SCORE) * weight;
            }
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_normalize_scales_and_reverses() {
        let mut s = [0, 5, 10];
        default_normalize(&mut s, false);
        assert_eq!(s, [0, 50, 100]);
        let mut s = [0, 5, 10];
        default_normalize(&mut s, true);
        assert_eq!(s, [100, 50, 0]);
        let mut s = [0, 0];
        default_normalize(&mut s, true);
        assert_eq!(s, [100, 100]);
    }
}
