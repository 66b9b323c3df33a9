//! The scheduling loop: informers feed the cache and the queue; one pod
//! at a time is popped, a node chosen ([`schedule_one`](crate::schedule_one)),
//! the pod assumed onto it in the cache, and the binding written in the
//! background while the next pod is scheduled. A pod that fits nowhere
//! may preempt lower-priority pods, gets a `FailedScheduling` event and the
//! `PodScheduled=False` condition, and waits in the queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::events::EventRecorder;
use client::indexer::key_of;
use client::{Api, Client, DeleteParams, Event, Informer, Patch};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cache::Cache;
use crate::framework::Profile;
use crate::metrics::Metrics;
use crate::queue::{ClusterEvent, QueuedPod, SchedulingQueue};
use crate::schedule_one::{self, FitError};
use crate::{config::Settings, preemption};

pub struct Scheduler {
    client: Client,
    profiles: HashMap<String, Arc<Profile>>,
    cache: Arc<Cache>,
    queue: Arc<SchedulingQueue>,
    pods: Arc<Informer<Pod>>,
    pdbs: Arc<Informer<PodDisruptionBudget>>,
    recorder: EventRecorder,
    metrics: Metrics,
    percentage: i32,
    parallelism: usize,
    next_start: AtomicUsize,
}

fn assigned(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn scheduler_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or("default-scheduler")
}

/// Whether a node change could make pods fit.
fn node_changed(old: &Node, new: &Node) -> bool {
    let status = |n: &Node| {
        n.status
            .as_ref()
            .map(|s| (s.allocatable.clone(), s.images.as_ref().map(Vec::len)))
    };
    old.metadata.labels != new.metadata.labels || old.spec != new.spec || status(old) != status(new)
}

impl Scheduler {
    pub fn new(
        client: Client,
        settings: &Settings,
        factory: &client::SharedInformerFactory,
        metrics: Metrics,
    ) -> Arc<Scheduler> {
        let scheduler = Arc::new(Scheduler {
            recorder: EventRecorder::new(client.clone(), "default-scheduler"),
            client,
            profiles: settings
                .profiles
                .iter()
                .map(|p| (p.scheduler_name.clone(), p.clone()))
                .collect(),
            cache: Arc::new(Cache::default()),
            queue: Arc::new(SchedulingQueue::new(settings.initial_backoff, settings.max_backoff)),
            pods: factory.informer::<Pod>(),
            pdbs: factory.informer::<PodDisruptionBudget>(),
            metrics,
            percentage: settings.percentage_of_nodes_to_score,
            parallelism: settings.parallelism,
            next_start: AtomicUsize::new(0),
        });
        scheduler.watch_pods();
        scheduler.watch_nodes(&factory.informer::<Node>());
        scheduler
    }

    fn responsible(&self, pod: &Pod) -> bool {
        self.profiles.contains_key(scheduler_name(pod))
    }

    fn watch_pods(self: &Arc<Self>) {
        let (cache, queue, me) = (self.cache.clone(), self.queue.clone(), Arc::downgrade(self));
        self.pods.add_handler(move |event| {
            let Some(me) = me.upgrade() else { return };
            match event {
                Event::Added(pod) => {
                    if assigned(pod) {
                        if !terminal(pod) {
                            cache.add_pod(pod.clone());
                            queue.move_for(ClusterEvent::AssignedPodAdd);
                        }
                    } else if me.responsible(pod) && !terminal(pod) && pod.metadata.deletion_timestamp.is_none() {
                        queue.add(pod.clone());
                    }
                }
                Event::Updated { old, new } => match (assigned(old), assigned(new)) {
                    (false, false) if me.responsible(new) => {
                        if new.metadata.deletion_timestamp.is_some() || terminal(new) {
                            queue.delete(&key_of(new.as_ref()));
                        } else if old.metadata.resource_version != new.metadata.resource_version {
                            queue.add(new.clone());
                        }
                    }
                    (false, true) => {
                        queue.delete(&key_of(new.as_ref()));
                        cache.add_pod(new.clone());
                    }
                    (true, true) => {
                        if terminal(new) {
                            cache.remove_pod(new);
                            queue.move_for(ClusterEvent::AssignedPodDelete);
                        } else {
                            cache.add_pod(new.clone());
                            if old.metadata.labels != new.metadata.labels {
                                queue.move_for(ClusterEvent::AssignedPodUpdate);
                            }
                        }
                    }
                    _ => {}
                },
                Event::Deleted(pod) => {
                    if assigned(pod) {
                        cache.remove_pod(pod);
                        queue.move_for(ClusterEvent::AssignedPodDelete);
                    } else {
                        queue.delete(&key_of(pod.as_ref()));
                    }
                }
            }
        });
    }

    fn watch_nodes(&self, nodes: &Informer<Node>) {
        let (cache, queue) = (self.cache.clone(), self.queue.clone());
        nodes.add_handler(move |event| match event {
            Event::Added(node) => {
                cache.add_node(node.clone());
                queue.move_for(ClusterEvent::NodeAdd);
            }
            Event::Updated { old, new } => {
                cache.add_node(new.clone());
                if node_changed(old, new) {
                    queue.move_for(ClusterEvent::NodeUpdate);
                }
            }
            Event::Deleted(node) => cache.remove_node(node.metadata.name.as_deref().unwrap_or_default()),
        });
    }

    /// Schedules until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let housekeeping = {
            let me = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    me.queue.flush();
                    me.cache.cleanup_expired();
                    let pending = me.queue.pending();
                    me.metrics
                        .pending
                        .with_label_values(&["active"])
                        .set(pending.active as f64);
                    me.metrics
                        .pending
                        .with_label_values(&["backoff"])
                        .set(pending.backoff as f64);
                    me.metrics
                        .pending
                        .with_label_values(&["unschedulable"])
                        .set(pending.unschedulable as f64);
                    me.metrics.cache_nodes.set(me.cache.node_count() as f64);
                }
            })
        };
        tracing::info!(profiles = ?self.profiles.keys().collect::<Vec<_>>(), "scheduler started");
        loop {
            let qp = tokio::select! {
                _ = stop.cancelled() => break,
                qp = self.queue.pop() => qp,
            };
            let span = tracing::info_span!("scheduling_cycle", pod = %qp.key, attempt = qp.attempts);
            self.schedule_one(qp).instrument(span).await;
        }
        housekeeping.abort();
    }

    async fn schedule_one(self: &Arc<Self>, qp: QueuedPod) {
        let started = Instant::now();
        // The queue may hold an older copy: decide on the latest.
        let Some(pod) = self.pods.indexer().get(&qp.key) else {
            self.queue.done(&qp.key);
            return;
        };
        // Bound, going, or already assumed with its binding in flight.
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        if assigned(&pod) || pod.metadata.deletion_timestamp.is_some() || terminal(&pod) || self.cache.is_assumed(uid) {
            self.queue.done(&qp.key);
            return;
        }
        let Some(profile) = self.profiles.get(scheduler_name(&pod)).cloned() else {
            self.queue.done(&qp.key);
            return;
        };
        let snapshot = Arc::new(self.cache.snapshot());
        let start = self.next_start.load(Ordering::Relaxed);
        let (percentage, parallelism) = (self.percentage, self.parallelism);
        let (p, prof, snap) = (pod.clone(), profile.clone(), snapshot.clone());
        let decided = tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let result = schedule_one::schedule(&prof, &p, &snap, percentage, start, parallelism);
            (result, t.elapsed())
        })
        .await;
        let (result, took) = match decided {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "scheduling algorithm panicked");
                self.finish(&profile, "error", started);
                self.queue.add_backoff(qp);
                return;
            }
        };
        let outcome = if result.is_ok() { "Success" } else { "Unschedulable" };
        self.metrics
            .extension_point
            .with_label_values(&["Filter", outcome, &profile.scheduler_name])
            .observe(took.as_secs_f64());
        match result {
            Ok(decision) => {
                let nodes = snapshot.nodes.len().max(1);
                self.next_start
                    .store((start + decision.evaluated) % nodes, Ordering::Relaxed);
                self.assume_and_bind(qp, pod, decision.node, profile, started);
            }
            Err(fit) => self.handle_failure(qp, pod, &profile, &snapshot, fit, started).await,
        }
    }

    fn finish(&self, profile: &Profile, result: &str, started: Instant) {
        let labels = [result, profile.scheduler_name.as_str()];
        self.metrics.attempts.with_label_values(&labels).inc();
        self.metrics
            .attempt_duration
            .with_label_values(&labels)
            .observe(started.elapsed().as_secs_f64());
    }

    fn assume_and_bind(
        self: &Arc<Self>,
        qp: QueuedPod,
        pod: Arc<Pod>,
        node: String,
        profile: Arc<Profile>,
        started: Instant,
    ) {
        let mut assumed = pod.as_ref().clone();
        if let Some(spec) = assumed.spec.as_mut() {
            spec.node_name = Some(node.clone());
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        self.cache.assume(Arc::new(assumed));
        self.queue.done(&qp.key);
        let me = self.clone();
        tokio::spawn(async move {
            let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(me.client.clone(), namespace);
            let bind_started = Instant::now();
            let bound = api.bind(name, &node).await;
            let status = if bound.is_ok() { "Success" } else { "Error" };
            me.metrics
                .extension_point
                .with_label_values(&["Bind", status, &profile.scheduler_name])
                .observe(bind_started.elapsed().as_secs_f64());
            match bound {
                Ok(()) => {
                    me.cache.finish_binding(&uid);
                    me.finish(&profile, "scheduled", started);
                    if let Some(first) = qp.initial_attempt {
                        me.metrics
                            .sli_duration
                            .with_label_values(&[&qp.attempts.to_string()])
                            .observe(first.elapsed().as_secs_f64());
                    }
                    tracing::debug!(node, "bound");
                    let message = format!("Successfully assigned {namespace}/{name} to {node}");
                    me.event(&pod, "Normal", "Scheduled", &message).await;
                }
                Err(e) => {
                    me.cache.forget(&uid);
                    me.finish(&profile, "error", started);
                    // Bound by someone else, or gone: nothing more to do.
                    // Any other conflict (a busy store) is tried again.
                    let current = me.pods.indexer().get(&qp.key);
                    if e.is_not_found() || current.as_ref().is_none_or(|p| assigned(p)) {
                        return;
                    }
                    tracing::warn!(node, error = %e, "binding failed");
                    me.event(&pod, "Warning", "FailedScheduling", &format!("Binding rejected: {e}"))
                        .await;
                    me.queue.add_backoff(qp);
                }
            }
        });
    }

    async fn handle_failure(
        &self,
        mut qp: QueuedPod,
        pod: Arc<Pod>,
        profile: &Profile,
        snapshot: &crate::framework::Snapshot,
        fit: FitError,
        started: Instant,
    ) {
        let mut message = fit.message();
        let mut nominated = None;
        if profile.preemption && fit.nodes > 0 && preemption::eligible(&pod, snapshot) {
            self.metrics.preemption_attempts.inc();
            let pdbs: Vec<PodDisruptionBudget> =
                self.pdbs.indexer().list().iter().map(|p| p.as_ref().clone()).collect();
            match preemption::find_candidate(profile, &pod, snapshot, &fit, &pdbs) {
                Some(candidate) => {
                    self.metrics.preemption_victims.observe(candidate.victims.len() as f64);
                    self.preempt(&pod, &candidate).await;
                    nominated = Some(candidate.node);
                }
                None => message.push_str(" preemption: not helpful for scheduling."),
            }
        }
        tracing::debug!(%message, "unschedulable");
        self.finish(profile, "unschedulable", started);
        self.event(&pod, "Warning", "FailedScheduling", &message).await;
        self.set_unschedulable(&pod, &message, nominated.as_deref()).await;
        qp.unschedulable_plugins = fit.plugins().map(str::to_string).collect();
        qp.pod = pod;
        self.queue.add_unschedulable(qp);
    }

    async fn preempt(&self, preemptor: &Pod, candidate: &preemption::Candidate) {
        let uid = preemptor.metadata.uid.as_deref().unwrap_or_default();
        for victim in &candidate.victims {
            let namespace = victim.metadata.namespace.as_deref().unwrap_or_default();
            let name = victim.metadata.name.as_deref().unwrap_or_default();
            tracing::info!(victim = %format!("{namespace}/{name}"), node = %candidate.node, "preempting");
            let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            let params = DeleteParams {
                uid: victim.metadata.uid.clone(),
                ..Default::default()
            };
            match api.delete(name, &params).await {
                Ok(_) => {
                    let message = format!("Preempted by pod {uid} on node {}", candidate.node);
                    self.event(victim, "Normal", "Preempted", &message).await;
                }
                Err(e) if e.is_not_found() || e.is_conflict() => {}
                Err(e) => tracing::warn!(error = %e, "could not delete a preemption victim"),
            }
        }
    }

    /// `PodScheduled=False` with the reason, and the nominated node if
    /// preemption chose one.
    async fn set_unschedulable(&self, pod: &Pod, message: &str, nominated: Option<&str>) {
        let mut conditions = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let unchanged = conditions
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "False" && c.message.as_deref() == Some(message));
        if unchanged && nominated.is_none() {
            return;
        }
        conditions.retain(|c| c.type_ != "PodScheduled");
        conditions.push(
            serde_json::from_value(json!({
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                "lastTransitionTime": client::api::timestamp_now().to_string(),
            }))
            .unwrap_or_default(),
        );
        let mut status = json!({"conditions": conditions});
        if let Some(node) = nominated {
            status["nominatedNodeName"] = json!(node);
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        if let Err(e) = api.patch_status(name, &Patch::Merge(json!({ "status": status }))).await {
            tracing::debug!(error = %e, "could not write the PodScheduled condition");
        }
    }

    async fn event(&self, pod: &Pod, kind: &str, reason: &str, message: &str) {
        if let Err(e) = self.recorder.record(pod, kind, reason, message).await {
            tracing::debug!(error = %e, "could not record an event");
        }
    }
}
