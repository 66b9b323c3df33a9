//! The pod garbage collector: removes pods nobody else will.
//!
//! Every `--pod-gc-period`: finished pods (Succeeded or Failed) beyond
//! `--terminated-pod-gc-threshold` are deleted, oldest first; pods bound
//! to a node that no longer exists are force-deleted (no kubelet will ever
//! confirm their end); and pods marked for deletion that never reached a
//! node are force-deleted.

use std::sync::Arc;
use std::time::Duration;

use client::{Api, Client, DeleteParams, Informer};
use k8s_openapi::api::core::v1::{Node, Pod};
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::controller_utils::is_pod_terminated;
use crate::Runner;

pub struct PodGc {
    client: Client,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    threshold: usize,
    period: Duration,
}

pub fn start(ctx: &Context) -> Runner {
    let gc = Arc::new(PodGc {
        client: ctx.client.clone(),
        pods: ctx.factory.informer::<Pod>(),
        nodes: ctx.factory.informer::<Node>(),
        threshold: ctx.config.terminated_pod_gc_threshold,
        period: ctx.config.pod_gc_period,
    });
    Box::new(move |stop| Box::pin(gc.run(stop)))
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref().filter(|n| !n.is_empty())
}

impl PodGc {
    async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.period) => {}
            }
            self.collect_terminated().await;
            self.collect_orphaned().await;
            self.collect_unscheduled_terminating().await;
        }
    }

    async fn delete(&self, pod: &Pod, force: bool, why: &str) {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        tracing::info!(pod = %format!("{namespace}/{name}"), why, "pod garbage collector deleting");
        let params = DeleteParams {
            uid: pod.metadata.uid.clone(),
            grace_period_seconds: force.then_some(0),
            ..Default::default()
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        match api.delete(name, &params).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() || e.is_conflict() => {}
            Err(e) => tracing::warn!(pod = name, error = %e, "pod garbage collection failed"),
        }
    }

    async fn collect_terminated(&self) {
        if self.threshold == 0 {
            return;
        }
        let mut terminated: Vec<Arc<Pod>> = self
            .pods
            .indexer()
            .list()
            .into_iter()
            .filter(|p| is_pod_terminated(p) && p.metadata.deletion_timestamp.is_none())
            .collect();
        if terminated.len() <= self.threshold {
            return;
        }
        terminated.sort_by_key(|p| {
            (
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                p.metadata.name.clone(),
            )
        });
        let excess = terminated.len() - self.threshold;
        for pod in terminated.iter().take(excess) {
            self.delete(pod, false, "too many terminated pods").await;
        }
    }

    async fn collect_orphaned(&self) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        for pod in self.pods.indexer().list() {
            let Some(node) = node_of(&pod) else { continue };
            if self.nodes.indexer().get(node).is_some() {
                continue;
            }
            // The cache may lag a node's creation: ask before deleting.
            match nodes.get_opt(node).await {
                Ok(None) => self.delete(&pod, true, "bound to a node that does not exist").await,
                Ok(Some(_)) => {}
                Err(e) => tracing::debug!(error = %e, "could not check the node"),
            }
        }
    }

    async fn collect_unscheduled_terminating(&self) {
        for pod in self.pods.indexer().list() {
            if pod.metadata.deletion_timestamp.is_some() && node_of(&pod).is_none() {
                self.delete(&pod, true, "terminating and never scheduled").await;
            }
        }
    }
}
