//! The node lifecycle controller: notices nodes that stopped reporting
//! and moves their pods elsewhere.
//!
//! Every `--node-monitor-period` it looks at each node's heartbeat (its
//! Lease in `kube-node-lease`, or the Ready condition's heartbeat). A
//! heartbeat is timed by this controller's own clock from when it was
//! *seen* to change, so clock skew between machines does not matter. A
//! node silent for `--node-monitor-grace-period` gets its conditions set
//! to `Unknown` and its pods marked not ready (so Services stop sending
//! them traffic). Nodes whose Ready condition is False or Unknown get the
//! `node.kubernetes.io/not-ready` or `unreachable` taints, NoSchedule and
//! NoExecute (the NoExecute ones at `--node-eviction-rate` nodes per
//! second, so a network partition does not evict the whole cluster at
//! once); pods that do not tolerate a NoExecute taint, or whose
//! `tolerationSeconds` ran out, are deleted so their controllers replace
//! them elsewhere. A node that comes back loses the taints.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::events::EventRecorder;
use client::indexer::by_node_name;
use client::rate_limiter::TokenBucket;
use client::{Api, Client, DeleteParams, Informer, ListParams, Patch};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::controller_utils::{now, now_seconds};
use crate::taints::toleration_window;
use crate::Runner;

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const NODE_INDEX: &str = "node";
const CONDITIONS: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

struct Health {
    /// The last heartbeat value seen, and when it was seen to change.
    heartbeat: Option<i64>,
    seen: Instant,
}

pub struct NodeLifecycleController {
    client: Client,
    nodes: Arc<Informer<Node>>,
    leases: Arc<Informer<Lease>>,
    pods: Arc<Informer<Pod>>,
    health: Mutex<HashMap<String, Health>>,
    taints_seen: Mutex<HashMap<(String, String), i64>>,
    grace: Duration,
    period: Duration,
    eviction_limiter: TokenBucket,
    recorder: EventRecorder,
}

pub fn start(ctx: &Context) -> Runner {
    let pods = ctx.factory.informer::<Pod>();
    pods.add_index(NODE_INDEX, by_node_name());
    let controller = Arc::new(NodeLifecycleController {
        client: ctx.client.clone(),
        nodes: ctx.factory.informer::<Node>(),
        leases: ctx
            .factory
            .informer_for::<Lease>(Some("kube-node-lease"), ListParams::default()),
        pods,
        health: Mutex::new(HashMap::new()),
        taints_seen: Mutex::new(HashMap::new()),
        grace: ctx.config.node_monitor_grace_period,
        period: ctx.config.node_monitor_period,
        eviction_limiter: TokenBucket::new(ctx.config.node_eviction_rate.max(0.001), 1),
        recorder: ctx.recorder("node"),
    });
    Box::new(move |stop| Box::pin(controller.run(stop)))
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

fn ready_status(node: &Node) -> &str {
    condition(node, "Ready").map_or("Unknown", |c| c.status.as_str())
}

impl NodeLifecycleController {
    async fn run(self: Arc<Self>, stop: CancellationToken) {
        tracing::info!(grace = ?self.grace, period = ?self.period, "node lifecycle controller started");
        loop {
            let nodes = self.nodes.indexer().list();
            let unhealthy = nodes.iter().filter(|n| ready_status(n) != "True").count();
            // Every node down at once (more than one): a partition between
            // us and them is likelier than a dead cluster; evict nothing.
            let full_disruption = nodes.len() > 1 && unhealthy == nodes.len();
            if full_disruption {
                tracing::warn!(
                    nodes = nodes.len(),
                    "every node is unhealthy: no evictions until some recover"
                );
            }
            for node in nodes {
                if let Err(e) = self.monitor(&node, full_disruption).await {
                    tracing::warn!(node = ?node.metadata.name, error = %e, "node health check failed");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.period) => {}
            }
        }
    }

    /// The newest heartbeat: the Lease's renewTime or the Ready condition's.
    fn heartbeat(&self, node: &Node, name: &str) -> Option<i64> {
        let lease = self
            .leases
            .indexer()
            .get_named(Some("kube-node-lease"), name)
            .and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0.as_microsecond()));
        let ready = condition(node, "Ready")
            .and_then(|c| c.last_heartbeat_time.as_ref())
            .map(|t| t.0.as_microsecond());
        lease.max(ready)
    }

    /// Whether the node has been silent for longer than the grace period.
    fn silent(&self, name: &str, heartbeat: Option<i64>) -> bool {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let entry = health.entry(name.to_string()).or_insert(Health {
            heartbeat,
            seen: Instant::now(),
        });
        if entry.heartbeat != heartbeat {
            entry.heartbeat = heartbeat;
            entry.seen = Instant::now();
        }
        entry.seen.elapsed() > self.grace
    }

    async fn monitor(&self, node: &Node, full_disruption: bool) -> client::Result<()> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let mut node = node.clone();
        if self.silent(&name, self.heartbeat(&node, &name)) && ready_status(&node) != "Unknown" {
            node = self.mark_unknown(&node, &name).await?;
            self.mark_pods_not_ready(&name).await;
        }
        self.reconcile_taints(&node, &name, full_disruption).await?;
        if !full_disruption {
            self.evict(&node, &name).await;
        }
        Ok(())
    }

    async fn mark_unknown(&self, node: &Node, name: &str) -> client::Result<Node> {
        tracing::warn!(node = name, "node stopped posting status; marking it Unknown");
        let mut conditions: Vec<NodeCondition> = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        for type_ in CONDITIONS {
            let existing = conditions.iter().position(|c| c.type_ == *type_);
            let heartbeat = existing.and_then(|i| conditions[i].last_heartbeat_time.clone());
            let updated = NodeCondition {
                type_: type_.to_string(),
                status: "Unknown".into(),
                reason: Some("NodeStatusUnknown".into()),
                message: Some("Kubelet stopped posting node status.".into()),
                last_heartbeat_time: heartbeat,
                last_transition_time: Some(now()),
            };
            match existing {
                Some(i) => conditions[i] = updated,
                None => conditions.push(updated),
            }
        }
        let api: Api<Node> = Api::all(self.client.clone());
        // Only over the status we read: a kubelet that just reported wins.
        let patch = json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": node.metadata.resource_version},
            {"op": "add", "path": "/status/conditions", "value": conditions},
        ]);
        let updated = api.patch_status(name, &Patch::Json(patch)).await?;
        let _ = self
            .recorder
            .record(
                &updated,
                "Normal",
                "NodeNotReady",
                &format!("Node {name} status is now: NodeNotReady"),
            )
            .await;
        Ok(updated)
    }

    async fn mark_pods_not_ready(&self, node: &str) {
        for pod in self.pods.indexer().by_index(NODE_INDEX, node) {
            let mut conditions = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            let Some(ready) = conditions.iter_mut().find(|c| c.type_ == "Ready" && c.status == "True") else {
                continue;
            };
            ready.status = "False".into();
            ready.last_transition_time = Some(now());
            let api: Api<Pod> = Api::namespaced(
                self.client.clone(),
                pod.metadata.namespace.as_deref().unwrap_or_default(),
            );
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            if let Err(e) = api
                .patch_status(name, &Patch::Merge(json!({"status": {"conditions": conditions}})))
                .await
            {
                tracing::debug!(pod = name, error = %e, "could not mark the pod not ready");
            }
        }
    }

    /// Adds the taints the Ready condition calls for and removes the others.
    async fn reconcile_taints(&self, node: &Node, name: &str, full_disruption: bool) -> client::Result<()> {
        let wanted_key = match ready_status(node) {
            "True" => None,
            "False" => Some(NOT_READY),
            _ => Some(UNREACHABLE),
        };
        let taints: Vec<Taint> = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        let ours = |t: &Taint| t.key == NOT_READY || t.key == UNREACHABLE;
        let mut desired: Vec<Taint> = taints
            .iter()
            .filter(|t| !ours(t) || Some(t.key.as_str()) == wanted_key)
            .cloned()
            .collect();
        if let Some(key) = wanted_key {
            for effect in ["NoSchedule", "NoExecute"] {
                if !desired.iter().any(|t| t.key == key && t.effect == effect) {
                    // NoExecute evicts: at the limited rate, and not at all when
                    // every node looks down (more likely our view than the nodes).
                    if effect == "NoExecute" && (full_disruption || !self.eviction_limiter.try_acquire()) {
                        continue;
                    }
                    desired.push(Taint {
                        key: key.to_string(),
                        effect: effect.to_string(),
                        time_added: Some(now()),
                        value: None,
                    });
                }
            }
        }
        if desired == taints {
            return Ok(());
        }
        tracing::info!(node = name, taint = ?wanted_key, "updating node taints");
        let api: Api<Node> = Api::all(self.client.clone());
        let set = if node.spec.is_some() {
            json!({"op": "add", "path": "/spec/taints", "value": desired})
        } else {
            json!({"op": "add", "path": "/spec", "value": {"taints": desired}})
        };
        let patch = json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": node.metadata.resource_version},
            set,
        ]);
        match api.patch(name, &Patch::Json(patch)).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(422) || e.is_conflict() => Ok(()), // Changed meanwhile: next round.
            Err(e) => Err(e),
        }
    }

    /// When this controller first saw a taint that carries no timeAdded.
    fn first_seen(&self, node: &str, taint: &Taint, now: i64) -> i64 {
        let mut seen = self.taints_seen.lock().unwrap_or_else(|p| p.into_inner());
        *seen.entry((node.to_string(), taint.key.clone())).or_insert(now)
    }

    /// Deletes the node's pods that do not tolerate its NoExecute taints
    /// (any more).
    async fn evict(&self, node: &Node, name: &str) {
        let taints: Vec<Taint> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.effect == "NoExecute")
            .collect();
        if taints.is_empty() {
            return;
        }
        let now = now_seconds();
        for pod in self.pods.indexer().by_index(NODE_INDEX, name) {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let tolerations = pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.clone())
                .unwrap_or_default();
            // Each taint on its own clock: since it was added (or first seen).
            let due = taints.iter().any(|taint| {
                let since = match &taint.time_added {
                    Some(t) => t.0.as_second(),
                    None => self.first_seen(name, taint, now),
                };
                match toleration_window(&tolerations, std::slice::from_ref(taint)) {
                    None => true,
                    Some(None) => false,
                    Some(Some(seconds)) => since + seconds <= now,
                }
            });
            if !due {
                continue;
            }
            let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
            let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
            tracing::info!(node = name, pod = %format!("{namespace}/{pod_name}"), "evicting a pod from a tainted node");
            let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            let params = DeleteParams {
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            };
            match api.delete(pod_name, &params).await {
                Ok(_) => {
                    let message = format!("Marking for deletion Pod {namespace}/{pod_name}");
                    let _ = self
                        .recorder
                        .record(pod.as_ref(), "Normal", "TaintManagerEviction", &message)
                        .await;
                }
                Err(e) if e.is_not_found() || e.is_conflict() => {}
                Err(e) => tracing::warn!(pod = pod_name, error = %e, "eviction failed"),
            }
        }
    }
}
