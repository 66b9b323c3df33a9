//! The scheduling queue: which pod is scheduled next, and when a pod that
//! did not fit is tried again.
//!
//! - **active**: pods ready to be tried, highest priority first, then
//!   oldest first.
//! - **backoff**: pods that failed recently wait out a per-pod exponential
//!   backoff (1 s, 2 s, 4 s … 10 s) before going back to active.
//! - **unschedulable**: pods no node fits. They stay until a cluster event
//!   could change that — a node added or changed, a pod deleted — and only
//!   for the plugins that refused them (a pod refused for cpu does not move
//!   when a pod's labels change), or until they have waited
//!   [`MAX_UNSCHEDULABLE`].
//!
//! A cluster event that arrives while a pod is being scheduled sends that
//! pod to backoff rather than unschedulable if it fails, so the event is
//! not missed.

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::Notify;

/// How long a pod may sit in unschedulable before it is tried anyway.
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(5 * 60);

/// A pod in the queue and what the queue remembers about it.
#[derive(Debug, Clone)]
pub struct QueuedPod {
    pub pod: Arc<Pod>,
    pub key: String,
    pub attempts: u32,
    /// When it was first tried (for the scheduling SLI).
    pub initial_attempt: Option<Instant>,
    /// When it entered its current sub-queue.
    pub since: Instant,
    /// The plugins that refused it last time.
    pub unschedulable_plugins: BTreeSet<String>,
}

impl QueuedPod {
    pub fn new(pod: Arc<Pod>) -> QueuedPod {
        QueuedPod {
            key: key_of(&pod),
            pod,
            attempts: 0,
            initial_attempt: None,
            since: Instant::now(),
            unschedulable_plugins: BTreeSet::new(),
        }
    }

    fn priority(&self) -> i32 {
        self.pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
    }

    fn backoff(&self, initial: Duration, max: Duration) -> Duration {
        let factor = 2u32.saturating_pow(self.attempts.saturating_sub(1));
        initial.saturating_mul(factor).min(max)
    }
}

pub fn key_of(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Heap order: higher priority, then earlier arrival, then key.
struct Ranked {
    priority: i32,
    since: Instant,
    key: String,
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then(other.since.cmp(&self.since))
            .then(other.key.cmp(&self.key))
    }
}

/// Where a queued pod is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    Backoff(Instant),
    Unschedulable,
}

#[derive(Default)]
struct State {
    pods: HashMap<String, (QueuedPod, Place)>,
    heap: BinaryHeap<Ranked>,
    /// Being scheduled right now.
    in_flight: HashSet<String>,
    /// Bumped by every cluster event that could make pods fit.
    move_cycle: u64,
    /// The move cycle at which each in-flight pod was popped.
    popped_at: HashMap<String, u64>,
    /// In-flight pods updated during their cycle: tried again soon if
    /// the cycle fails.
    updated_in_flight: HashSet<String>,
}

/// The events that move unschedulable pods, and which plugins they help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterEvent {
    NodeAdd,
    NodeUpdate,
    AssignedPodAdd,
    AssignedPodUpdate,
    AssignedPodDelete,
}

impl ClusterEvent {
    fn helps(self, plugin: &str) -> bool {
        use crate::plugins::*;
        match self {
            ClusterEvent::NodeAdd | ClusterEvent::NodeUpdate => true,
            ClusterEvent::AssignedPodDelete => [
                node_resources_fit::NAME,
                node_ports::NAME,
                inter_pod_affinity::NAME,
                pod_topology_spread::NAME,
            ]
            .contains(&plugin),
            ClusterEvent::AssignedPodAdd | ClusterEvent::AssignedPodUpdate => {
                [inter_pod_affinity::NAME, pod_topology_spread::NAME].contains(&plugin)
            }
        }
    }
}

pub struct SchedulingQueue {
    state: Mutex<State>,
    ready: Notify,
    initial_backoff: Duration,
    max_backoff: Duration,
}

/// Sizes of the sub-queues, for `scheduler_pending_pods`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub active: usize,
    pub backoff: usize,
    pub unschedulable: usize,
}

impl SchedulingQueue {
    pub fn new(initial_backoff: Duration, max_backoff: Duration) -> SchedulingQueue {
        SchedulingQueue {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            initial_backoff,
            max_backoff,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn activate(&self, state: &mut State, mut qp: QueuedPod) {
        qp.since = Instant::now();
        state.heap.push(Ranked {
            priority: qp.priority(),
            since: qp.since,
            key: qp.key.clone(),
        });
        state.pods.insert(qp.key.clone(), (qp, Place::Active));
        self.ready.notify_one();
    }

    /// A new pod to schedule, or a newer version of one already queued
    /// (which is tried again at once: the change may make it fit).
    pub fn add(&self, pod: Arc<Pod>) {
        let mut state = self.lock();
        let key = key_of(&pod);
        let in_flight = state.in_flight.contains(&key);
        match state.pods.get_mut(&key) {
            Some((qp, Place::Active)) => qp.pod = pod,
            Some((qp, _)) => {
                let mut qp = qp.clone();
                qp.pod = pod;
                self.activate(&mut state, qp);
            }
            None if in_flight => {
                state.updated_in_flight.insert(key);
            }
            None => self.activate(&mut state, QueuedPod::new(pod)),
        }
    }

    pub fn delete(&self, key: &str) {
        self.lock().pods.remove(key);
    }

    /// Waits for the next pod to try.
    pub async fn pop(&self) -> QueuedPod {
        loop {
            let notified = self.ready.notified();
            {
                let mut state = self.lock();
                while let Some(top) = state.heap.pop() {
                    // Heap entries of pods since moved or removed are skipped.
                    let current =
                        matches!(state.pods.get(&top.key), Some((qp, Place::Active)) if qp.since == top.since);
                    if !current {
                        continue;
                    }
                    if let Some((mut qp, _)) = state.pods.remove(&top.key) {
                        qp.attempts += 1;
                        qp.initial_attempt.get_or_insert_with(Instant::now);
                        let cycle = state.move_cycle;
                        state.popped_at.insert(qp.key.clone(), cycle);
                        state.in_flight.insert(qp.key.clone());
                        return qp;
                    }
                }
            }
            notified.await;
        }
    }

    /// The pod's cycle is over (scheduled or requeued).
    pub fn done(&self, key: &str) {
        let mut state = self.lock();
        state.in_flight.remove(key);
        state.popped_at.remove(key);
        state.updated_in_flight.remove(key);
    }

    /// The pod did not fit: to unschedulable, or to backoff if a cluster
    /// event came while it was being tried.
    pub fn add_unschedulable(&self, mut qp: QueuedPod) {
        let mut state = self.lock();
        let key = qp.key.clone();
        let moved =
            state.popped_at.get(&key).is_some_and(|c| *c < state.move_cycle) || state.updated_in_flight.remove(&key);
        state.in_flight.remove(&key);
        state.popped_at.remove(&key);
        qp.since = Instant::now();
        let place = if moved {
            Place::Backoff(Instant::now() + qp.backoff(self.initial_backoff, self.max_backoff))
        } else {
            Place::Unschedulable
        };
        state.pods.insert(key, (qp, place));
    }

    /// A failure worth retrying soon (binding failed, an API error).
    pub fn add_backoff(&self, mut qp: QueuedPod) {
        let mut state = self.lock();
        state.in_flight.remove(&qp.key);
        state.popped_at.remove(&qp.key);
        qp.since = Instant::now();
        let until = Instant::now() + qp.backoff(self.initial_backoff, self.max_backoff);
        state.pods.insert(qp.key.clone(), (qp, Place::Backoff(until)));
    }

    /// A cluster event: unschedulable pods it could help go to active (or
    /// to backoff if their backoff has not run out).
    pub fn move_for(&self, event: ClusterEvent) {
        let mut state = self.lock();
        state.move_cycle += 1;
        let keys: Vec<String> = state
            .pods
            .iter()
            .filter(|(_, (qp, place))| {
                *place == Place::Unschedulable
                    && (qp.unschedulable_plugins.is_empty() || qp.unschedulable_plugins.iter().any(|p| event.helps(p)))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            if let Some((qp, _)) = state.pods.remove(&key) {
                let until = qp.since + qp.backoff(self.initial_backoff, self.max_backoff);
                if until > Instant::now() {
                    state.pods.insert(key, (qp, Place::Backoff(until)));
                } else {
                    self.activate(&mut state, qp);
                }
            }
        }
    }

    /// Moves pods whose backoff ran out, and pods unschedulable for longer
    /// than [`MAX_UNSCHEDULABLE`], to active. Called every second.
    pub fn flush(&self) {
        let mut state = self.lock();
        let now = Instant::now();
        let due: Vec<String> = state
            .pods
            .iter()
            .filter(|(_, (qp, place))| match place {
                Place::Backoff(until) => *until <= now,
                Place::Unschedulable => now.duration_since(qp.since) >= MAX_UNSCHEDULABLE,
                Place::Active => false,
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if let Some((qp, _)) = state.pods.remove(&key) {
                self.activate(&mut state, qp);
            }
        }
    }

    pub fn pending(&self) -> Pending {
        let state = self.lock();
        let mut p = Pending::default();
        for (_, place) in state.pods.values() {
            match place {
                Place::Active => p.active += 1,
                Place::Backoff(_) => p.backoff += 1,
                Place::Unschedulable => p.unschedulable += 1,
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::pod;

    fn with_priority(name: &str, priority: i32) -> Arc<Pod> {
        let mut p = pod(name, "1", "1Gi");
        p.spec.as_mut().unwrap().priority = Some(priority);
        Arc::new(p)
    }

    fn queue() -> SchedulingQueue {
        SchedulingQueue::new(Duration::from_millis(50), Duration::from_millis(200))
    }

    #[tokio::test]
    async fn higher_priority_first_then_oldest() {
        let q = queue();
        q.add(with_priority("low", 0));
        q.add(with_priority("high", 100));
        q.add(with_priority("low2", 0));
        let order: Vec<String> = [q.pop().await, q.pop().await, q.pop().await]
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(order, ["default/high", "default/low", "default/low2"]);
    }

    #[tokio::test]
    async fn unschedulable_pods_move_on_helpful_events_only() {
        let q = queue();
        q.add(with_priority("p", 0));
        let mut qp = q.pop().await;
        qp.unschedulable_plugins
            .insert(crate::plugins::node_resources_fit::NAME.into());
        q.add_unschedulable(qp);
        assert_eq!(q.pending().unschedulable, 1);
        q.move_for(ClusterEvent::AssignedPodAdd);
        assert_eq!(q.pending().unschedulable, 1, "a pod add does not free cpu");
        tokio::time::sleep(Duration::from_millis(60)).await;
        q.move_for(ClusterEvent::AssignedPodDelete);
        assert_eq!(q.pending().active, 1);
    }

    #[tokio::test]
    async fn an_event_during_the_cycle_sends_the_pod_to_backoff() {
        let q = queue();
        q.add(with_priority("p", 0));
        let qp = q.pop().await;
        q.move_for(ClusterEvent::NodeAdd);
        q.add_unschedulable(qp);
        assert_eq!(q.pending().backoff, 1);
        tokio::time::sleep(Duration::from_millis(120)).await;
        q.flush();
        assert_eq!(q.pending().active, 1);
    }
}
