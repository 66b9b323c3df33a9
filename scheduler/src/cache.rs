//! The scheduler's cache: every node with the pods on it, including pods
//! it has *assumed* onto a node but whose binding has not been confirmed
//! by the watch yet.
//!
//! Assuming is what lets binding be asynchronous: the next pod is
//! scheduled while the previous binding is still in flight, and already
//! sees the resources that pod takes. A binding that fails forgets its
//! pod; an assumed pod whose binding succeeded but never shows up bound is
//! dropped after [`ASSUME_TTL`].
//!
//! Snapshots are cheap: NodeInfos are shared (`Arc`) and a change clones
//! only the node it touches, if a snapshot still holds it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::framework::{NodeInfo, Snapshot};

/// How long a bound pod may stay assumed before the watch confirms it.
pub const ASSUME_TTL: Duration = Duration::from_secs(30);

struct PodState {
    pod: Arc<Pod>,
    node: String,
    assumed: bool,
    /// Set when the binding succeeded: the watch should confirm by then.
    deadline: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    nodes: BTreeMap<String, Arc<NodeInfo>>,
    /// By uid.
    pods: HashMap<String, PodState>,
}

#[derive(Default)]
pub struct Cache {
    inner: Mutex<Inner>,
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn node_of(pod: &Pod) -> String {
    pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default()
}

impl Inner {
    fn attach(&mut self, pod: Arc<Pod>, node: &str) {
        if let Some(info) = self.nodes.get_mut(node) {
            Arc::make_mut(info).add_pod(pod);
        }
    }

    fn detach(&mut self, uid: &str, node: &str) {
        if let Some(info) = self.nodes.get_mut(node) {
            Arc::make_mut(info).remove_pod(uid);
        }
    }
}

impl Cache {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add_node(&self, node: Arc<Node>) {
        let mut inner = self.lock();
        let name = node.metadata.name.clone().unwrap_or_default();
        match inner.nodes.get_mut(&name) {
            Some(info) => Arc::make_mut(info).set_node(node),
            None => {
                let mut info = NodeInfo::new(node);
                // Pods seen before their node (watch order) join it now.
                for state in inner.pods.values().filter(|s| s.node == name) {
                    info.add_pod(state.pod.clone());
                }
                inner.nodes.insert(name, Arc::new(info));
            }
        }
    }

    pub fn remove_node(&self, name: &str) {
        self.lock().nodes.remove(name);
    }

    /// A bound pod from the watch: confirms an assumed one, or adds it.
    pub fn add_pod(&self, pod: Arc<Pod>) {
        self.insert(pod, false);
    }

    fn insert(&self, pod: Arc<Pod>, assumed: bool) {
        let mut inner = self.lock();
        let (uid, node) = (uid(&pod), node_of(&pod));
        if let Some(old) = inner.pods.remove(&uid) {
            inner.detach(&uid, &old.node);
        }
        inner.attach(pod.clone(), &node);
        inner.pods.insert(
            uid,
            PodState {
                pod,
                node,
                assumed,
                deadline: None,
            },
        );
    }

    pub fn remove_pod(&self, pod: &Pod) {
        let mut inner = self.lock();
        let uid = uid(pod);
        if let Some(old) = inner.pods.remove(&uid) {
            inner.detach(&uid, &old.node);
        }
    }

    /// Puts a pod on its chosen node before the binding is written.
    pub fn assume(&self, pod: Arc<Pod>) {
        self.insert(pod, true);
    }

    /// The binding was written: the watch has [`ASSUME_TTL`] to confirm it.
    pub fn finish_binding(&self, uid: &str) {
        if let Some(state) = self.lock().pods.get_mut(uid) {
            if state.assumed {
                state.deadline = Some(Instant::now() + ASSUME_TTL);
            }
        }
    }

    /// The binding failed: the pod is no longer on the node.
    pub fn forget(&self, uid: &str) {
        let mut inner = self.lock();
        if inner.pods.get(uid).is_some_and(|s| s.assumed) {
            if let Some(old) = inner.pods.remove(uid) {
                inner.detach(uid, &old.node);
            }
        }
    }

    pub fn is_assumed(&self, uid: &str) -> bool {
        self.lock().pods.get(uid).is_some_and(|s| s.assumed)
    }

    /// Drops assumed pods whose confirmation never came.
    pub fn cleanup_expired(&self) -> usize {
        let mut inner = self.lock();
        let now = Instant::now();
        let expired: Vec<(String, String)> = inner
            .pods
            .iter()
            .filter(|(_, s)| s.assumed && s.deadline.is_some_and(|d| d < now))
            .map(|(uid, s)| (uid.clone(), s.node.clone()))
            .collect();
        for (uid, node) in &expired {
            tracing::warn!(uid, node, "assumed pod expired without being confirmed bound");
            inner.pods.remove(uid);
            inner.detach(uid, node);
        }
        expired.len()
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            nodes: self.lock().nodes.values().cloned().collect(),
        }
    }

    pub fn node_count(&self) -> usize {
        self.lock().nodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::pod;

    fn node(name: &str) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(serde_json::json!({"metadata": {"name": name},
                "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}))
            .unwrap(),
        )
    }

    fn on(p: &Pod, node: &str) -> Arc<Pod> {
        let mut p = p.clone();
        p.spec.as_mut().unwrap().node_name = Some(node.into());
        Arc::new(p)
    }

    #[test]
    fn assumed_pods_count_until_forgotten_or_confirmed() {
        let cache = Cache::default();
        cache.add_node(node("n1"));
        let p = pod("p", "1", "1Gi");
        cache.assume(on(&p, "n1"));
        let before = cache.snapshot();
        assert_eq!(before.nodes[0].requested.milli_cpu, 1000);
        cache.forget("p");
        assert_eq!(cache.snapshot().nodes[0].requested.milli_cpu, 0);
        assert_eq!(before.nodes[0].requested.milli_cpu, 1000, "snapshots do not change");
        cache.assume(on(&p, "n1"));
        cache.add_pod(on(&p, "n1"));
        assert!(!cache.is_assumed("p"));
        assert_eq!(cache.snapshot().nodes[0].pods.len(), 1, "confirmed once, not twice");
        cache.remove_pod(&p);
        assert!(cache.snapshot().nodes[0].pods.is_empty());
    }

    #[test]
    fn pods_seen_before_their_node_join_it() {
        let cache = Cache::default();
        cache.add_pod(on(&pod("p", "1", "1Gi"), "late"));
        cache.add_node(node("late"));
        assert_eq!(cache.snapshot().nodes[0].pods.len(), 1);
    }
}
