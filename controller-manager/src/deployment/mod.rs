//! The Deployment controller: rolls a Deployment's pod template out
//! through ReplicaSets.
//!
//! A Deployment owns one ReplicaSet per template it has had. Each sync
//! claims them ([`replica_sets`]), and then:
//!
//! - **paused**, or only **resized** (`spec.replicas` changed, nothing
//!   else): the sizes are adjusted — all to the active ReplicaSet, or in
//!   proportion across several during a rollout ([`sync`]) — and nothing
//!   is rolled out.
//! - **RollingUpdate** ([`rolling`]): the new ReplicaSet grows while the
//!   total stays within `replicas + maxSurge`, and the old ones shrink
//!   while at least `replicas - maxUnavailable` pods stay available.
//! - **Recreate** ([`recreate`]): the old ReplicaSets go to zero, and once
//!   their pods are gone the new one scales up.
//!
//! Every sync ends by writing the status and the `Progressing` and
//! `Available` conditions ([`progress`]), which is what
//! `kubectl rollout status` watches. Old ReplicaSets beyond
//! `revisionHistoryLimit` are deleted once a rollout completes.

mod progress;
mod recreate;
pub mod replica_sets;
mod rolling;
mod sync;

use std::sync::Arc;
use std::time::Duration;

use client::events::EventRecorder;
use client::indexer::key_of;
use client::{Api, Client, Event, Informer};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::context::Context;
use crate::controller::{self, Reconciler};
use crate::controller_ref_manager::{self as claims, ClaimError};
use crate::controller_utils::controller_of;
use crate::Runner;

pub struct DeploymentController {
    client: Client,
    deployments: Arc<Informer<Deployment>>,
    replicasets: Arc<Informer<ReplicaSet>>,
    pods: Arc<Informer<Pod>>,
    recorder: EventRecorder,
}

fn selector_of(d: &Deployment) -> Option<LabelSelector> {
    d.spec.as_ref().map(|s| s.selector.clone())
}

pub fn start(ctx: &Context) -> Runner {
    let deployments = ctx.factory.informer::<Deployment>();
    let replicasets = ctx.factory.informer::<ReplicaSet>();
    let pods = ctx.factory.informer::<Pod>();
    pods.add_index(crate::OWNER_INDEX, client::indexer::by_owner_uid());
    let queue = ctx.queue("deployment");

    let q = queue.clone();
    deployments.add_handler(move |event| match event {
        Event::Added(d) | Event::Updated { new: d, .. } | Event::Deleted(d) => q.add(key_of(d.as_ref())),
    });
    claims::watch_dependents(&replicasets, &deployments, &queue, None, selector_of);
    // A Recreate rollout waits for the old pods to be gone.
    let (q, rs_cache, d_cache) = (queue.clone(), replicasets.clone(), deployments.clone());
    pods.add_handler(move |event| {
        if let Event::Deleted(pod) = event {
            let Some(rs_ref) = controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet") else {
                return;
            };
            let Some(rs) = rs_cache
                .indexer()
                .get_named(pod.metadata.namespace.as_deref(), &rs_ref.name)
            else {
                return;
            };
            if let Some(key) = claims::owner_key(&d_cache, &rs.metadata) {
                q.add(key);
            }
        }
    });

    let controller = Arc::new(DeploymentController {
        client: ctx.client.clone(),
        deployments,
        replicasets,
        pods,
        recorder: ctx.recorder("deployment"),
    });
    let workers = ctx.config.concurrent_syncs;
    Box::new(move |stop| Box::pin(controller::run("deployment", controller, queue, workers, stop)))
}

/// An int-or-percent of `total`, percentages rounded up or down.
pub(crate) fn resolve(value: Option<&IntOrString>, total: i32, round_up: bool, default: &str) -> i32 {
    let text = match value {
        Some(IntOrString::Int(n)) => return *n,
        Some(IntOrString::String(s)) => s.as_str(),
        None => default,
    };
    let Some(percent) = text.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
        return text.parse().unwrap_or(0);
    };
    let scaled = i64::from(total) * percent;
    let value = if round_up { (scaled + 99) / 100 } else { scaled / 100 };
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// `(maxSurge, maxUnavailable)` in pods; both zero would stall, so
/// unavailable becomes 1 then.
pub(crate) fn surge_and_unavailable(d: &Deployment) -> (i32, i32) {
    let spec = d.spec.as_ref();
    let strategy = spec.and_then(|s| s.strategy.as_ref());
    if strategy.and_then(|s| s.type_.as_deref()) == Some("Recreate") {
        return (0, 0);
    }
    let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
    let replicas = replica_sets::desired_replicas(d);
    let surge = resolve(rolling.and_then(|r| r.max_surge.as_ref()), replicas, true, "25%");
    let unavailable = resolve(rolling.and_then(|r| r.max_unavailable.as_ref()), replicas, false, "25%");
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable.min(replicas))
    }
}

impl Reconciler for DeploymentController {
    async fn reconcile(&self, key: &str) -> client::Result<Option<Duration>> {
        let Some(d) = self.deployments.indexer().get(key) else {
            return Ok(None);
        };
        let d = d.as_ref().clone();
        let namespace = d.metadata.namespace.clone().unwrap_or_default();
        let selector = selector_of(&d).unwrap_or_default();
        if client::label_selector::is_empty(&selector) {
            let message = "This deployment has an empty selector, which would select all pods; it will not be synced.";
            self.event(&d, "Warning", "SelectorEmpty", message).await;
            return Ok(None);
        }
        let candidates = self.replicasets.indexer().list_namespace(&namespace);
        let owned = match claims::claim(&self.client, &d, &selector, candidates).await {
            Ok(c) => c.owned,
            Err(ClaimError::Selector(e)) => {
                self.event(&d, "Warning", "InvalidSelector", &e.to_string()).await;
                return Ok(None);
            }
            Err(ClaimError::Api(e)) => return Err(e),
        };
        let all: Vec<ReplicaSet> = owned.iter().map(|rs| rs.as_ref().clone()).collect();
        let mut rollout = sync::Rollout::new(self, d, all);
        rollout.run().await
    }
}

impl DeploymentController {
    async fn event(&self, d: &Deployment, kind: &str, reason: &str, message: &str) {
        if let Err(e) = self.recorder.record(d, kind, reason, message).await {
            tracing::debug!(error = %e, "could not record an event");
        }
    }

    fn replicaset_api(&self, namespace: &str) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Whether any pod of these ReplicaSets still exists and has not finished.
    fn pods_running(&self, replicasets: &[ReplicaSet]) -> bool {
        replicasets.iter().any(|rs| {
            let uid = rs.metadata.uid.as_deref().unwrap_or_default();
            replica_sets::status_replicas(rs) > 0
                || self
                    .pods
                    .indexer()
                    .by_index(crate::OWNER_INDEX, uid)
                    .iter()
                    .any(|p| !crate::controller_utils::is_pod_terminated(p))
        })
    }
}
