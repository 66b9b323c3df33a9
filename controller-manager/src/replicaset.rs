//! The ReplicaSet controller (and, through the same code, the
//! ReplicationController controller): keep `spec.replicas` pods running.
//!
//! Each sync of a ReplicaSet:
//!
//! 1. **Claims** its pods: those whose controller reference names it, plus
//!    orphans its selector matches (adopted by adding the reference);
//!    owned pods that no longer match are released.
//! 2. If its [expectations](crate::expectations) are met, compares the
//!    active pods with `spec.replicas`: too few → creates the difference in
//!    slow-start batches (1, 2, 4, …, stopping at the first failure, so a
//!    quota or admission refusal costs one request, not hundreds); too
//!    many → deletes the surplus in
//!    [deletion order](crate::controller_utils::deletion_order).
//! 3. Writes status: replicas, fullyLabeledReplicas, readyReplicas,
//!    availableReplicas (ready for minReadySeconds), observedGeneration.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use client::api::Object;
use client::indexer::key_of;
use client::label_selector;
use client::{Api, DeleteParams, Event, Informer, Patch};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::json;

use crate::context::Context;
use crate::controller::{self, Reconciler};
use crate::controller_ref_manager::{self as claims, ClaimError, Claimed};
use crate::controller_utils::{
    controller_ref, deletion_order, is_pod_active, is_pod_available, is_pod_ready, now_seconds, pod_from_template,
};
use crate::expectations::Expectations;
use crate::Runner;

/// At most this many pods are created or deleted in one sync.
const BURST_REPLICAS: usize = 500;

/// What the controller needs of the kind it manages.
pub trait Replicated: Object {
    /// The controller's name (`--controllers`) and queue name.
    const CONTROLLER: &'static str;
    fn desired_replicas(&self) -> i32;
    /// The pod selector as a LabelSelector (a ReplicationController's map
    /// becomes matchLabels).
    fn pod_selector(&self) -> Option<LabelSelector>;
    fn pod_template(&self) -> Option<&PodTemplateSpec>;
    fn min_ready_seconds(&self) -> i32;
    /// The current status, as JSON, to compare with the computed one.
    fn status_json(&self) -> serde_json::Value;
}

/// The fields ReplicaSets and ReplicationControllers share, by the same
/// names.
macro_rules! replicated_common {
    () => {
        fn desired_replicas(&self) -> i32 {
            self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
        }
        fn pod_template(&self) -> Option<&PodTemplateSpec> {
            self.spec.as_ref().and_then(|s| s.template.as_ref())
        }
        fn min_ready_seconds(&self) -> i32 {
            self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
        }
        fn status_json(&self) -> serde_json::Value {
            serde_json::to_value(&self.status).unwrap_or_default()
        }
    };
}

impl Replicated for ReplicaSet {
    const CONTROLLER: &'static str = "replicaset";
    replicated_common!();
    fn pod_selector(&self) -> Option<LabelSelector> {
        self.spec.as_ref().map(|s| s.selector.clone())
    }
}

impl Replicated for ReplicationController {
    const CONTROLLER: &'static str = "replicationcontroller";
    replicated_common!();
    fn pod_selector(&self) -> Option<LabelSelector> {
        let selector = self.spec.as_ref()?.selector.clone()?;
        Some(LabelSelector {
            match_labels: Some(selector),
            match_expressions: None,
        })
    }
}

pub struct ReplicaSetController<K> {
    ctx_client: client::Client,
    owners: Arc<Informer<K>>,
    pods: Arc<Informer<Pod>>,
    expectations: Arc<Expectations>,
    recorder: client::events::EventRecorder,
    kind: PhantomData<fn() -> K>,
}

/// Registers the informers and handlers; the returned future runs the workers.
pub fn start<K: Replicated>(ctx: &Context) -> Runner {
    let owners = ctx.factory.informer::<K>();
    let pods = ctx.factory.informer::<Pod>();
    let queue = ctx.queue(K::CONTROLLER);
    let expectations = Arc::new(Expectations::default());

    let q = queue.clone();
    let e = expectations.clone();
    owners.add_handler(move |event| match event {
        Event::Added(o) | Event::Updated { new: o, .. } => q.add(key_of(o.as_ref())),
        Event::Deleted(o) => {
            e.forget(&key_of(o.as_ref()));
            q.add(key_of(o.as_ref()));
        }
    });
    claims::watch_dependents(&pods, &owners, &queue, Some(&expectations), K::pod_selector);

    let controller = Arc::new(ReplicaSetController {
        ctx_client: ctx.client.clone(),
        owners,
        pods,
        expectations,
        recorder: ctx.recorder(K::CONTROLLER),
        kind: PhantomData,
    });
    let workers = ctx.config.concurrent_syncs;
    Box::new(move |stop| Box::pin(controller::run(K::CONTROLLER, controller, queue, workers, stop)))
}

impl<K: Replicated> ReplicaSetController<K> {
    async fn create_pods(&self, key: &str, owner: &K, template: &PodTemplateSpec, count: usize) -> client::Result<()> {
        let namespace = owner.metadata().namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.ctx_client.clone(), &namespace);
        let reference = controller_ref(K::API_VERSION, K::KIND, owner.metadata());
        let pod = pod_from_template(template, &namespace, reference);
        self.expectations.expect(key, count as i64, []);
        let mut created = 0;
        let mut batch = 1;
        while created < count {
            let size = batch.min(count - created);
            let mut batch_tasks = tokio::task::JoinSet::new();
            for _ in 0..size {
                let (api, pod) = (api.clone(), pod.clone());
                batch_tasks.spawn(async move { api.create(&pod).await });
            }
            let mut failed = Vec::new();
            while let Some(done) = batch_tasks.join_next().await {
                match done {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => failed.push(e),
                    Err(e) => failed.push(client::Error::Config(format!("pod creation task failed: {e}"))),
                }
            }
            created += size;
            let failures = failed.len();
            if let Some(e) = failed.into_iter().next() {
                // Creations that failed or were never tried will not be observed.
                for _ in 0..(failures + count - created) {
                    self.expectations.creation_observed(key);
                }
                let message = format!("Error creating: {e}");
                self.event(owner, "Warning", "FailedCreate", &message).await;
                return Err(e);
            }
            batch *= 2;
        }
        let message = format!("Created {count} pod(s)");
        self.event(owner, "Normal", "SuccessfulCreate", &message).await;
        Ok(())
    }

    async fn delete_pods(&self, key: &str, owner: &K, mut pods: Vec<Arc<Pod>>, count: usize) -> client::Result<()> {
        pods.sort_by(|a, b| deletion_order(a, b));
        pods.truncate(count);
        self.expectations
            .expect(key, 0, pods.iter().map(|p| key_of(p.as_ref())));
        let mut first_error = None;
        for pod in &pods {
            let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let params = DeleteParams {
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            };
            match Api::<Pod>::namespaced(self.ctx_client.clone(), namespace)
                .delete(name, &params)
                .await
            {
                Ok(_) => {}
                Err(e) => {
                    self.expectations.deletion_observed(key, &key_of(pod.as_ref()));
                    if !e.is_not_found() && first_error.is_none() {
                        first_error = Some(e);
                    }
                }
            }
        }
        let message = format!("Deleted {} pod(s)", pods.len());
        self.event(owner, "Normal", "SuccessfulDelete", &message).await;
        first_error.map_or(Ok(()), Err)
    }

    async fn event(&self, owner: &K, kind: &str, reason: &str, message: &str) {
        if let Err(e) = self.recorder.record(owner, kind, reason, message).await {
            tracing::debug!(error = %e, "could not record an event");
        }
    }
}

impl<K: Replicated> Reconciler for ReplicaSetController<K> {
    async fn reconcile(&self, key: &str) -> client::Result<Option<Duration>> {
        let Some(owner) = self.owners.indexer().get(key) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let Some(selector) = owner.pod_selector() else {
            return Ok(None);
        };
        let namespace = owner.metadata().namespace.clone().unwrap_or_default();
        let claimed = match claims::claim(
            &self.ctx_client,
            owner.as_ref(),
            &selector,
            self.pods.indexer().list_namespace(&namespace),
        )
        .await
        {
            Ok(c) => c,
            Err(ClaimError::Selector(e)) => {
                self.event(&owner, "Warning", "InvalidSelector", &e.to_string()).await;
                return Ok(None);
            }
            Err(ClaimError::Api(e)) => return Err(e),
        };
        let Claimed { owned: pods } = claimed;
        let active: Vec<Arc<Pod>> = pods.into_iter().filter(|p| is_pod_active(p)).collect();

        let mut result = Ok(());
        if self.expectations.satisfied(key) && owner.metadata().deletion_timestamp.is_none() {
            let desired = usize::try_from(owner.desired_replicas().max(0)).unwrap_or(0);
            if active.len() < desired {
                let count = (desired - active.len()).min(BURST_REPLICAS);
                if let Some(template) = owner.pod_template() {
                    result = self.create_pods(key, &owner, template, count).await;
                }
            } else if active.len() > desired {
                let count = (active.len() - desired).min(BURST_REPLICAS);
                result = self.delete_pods(key, &owner, active.clone(), count).await;
            }
        }

        let requeue = self.update_status(&owner, &active).await?;
        result.map(|()| requeue)
    }
}

impl<K: Replicated> ReplicaSetController<K> {
    /// Writes the computed status if it differs; asks to look again when a
    /// ready pod will become available once minReadySeconds pass.
    async fn update_status(&self, owner: &K, active: &[Arc<Pod>]) -> client::Result<Option<Duration>> {
        let template_labels: BTreeMap<String, String> = owner
            .pod_template()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let now = now_seconds();
        let min_ready = owner.min_ready_seconds();
        let fully_labeled = active
            .iter()
            .filter(|p| label_selector::matches_map(&template_labels, p.metadata.labels.as_ref()))
            .count();
        let ready = active.iter().filter(|p| is_pod_ready(p)).count();
        let available = active.iter().filter(|p| is_pod_available(p, min_ready, now)).count();
        let desired = json!({
            "replicas": active.len(),
            "fullyLabeledReplicas": fully_labeled,
            "readyReplicas": ready,
            "availableReplicas": available,
            "observedGeneration": owner.metadata().generation.unwrap_or(0),
        });
        let current = owner.status_json();
        let differs = desired
            .as_object()
            .into_iter()
            .flatten()
            .any(|(k, v)| current.get(k).unwrap_or(&json!(0)) != v);
        if differs {
            let namespace = owner.metadata().namespace.as_deref().unwrap_or_default();
            let name = owner.metadata().name.as_deref().unwrap_or_default();
            let api: Api<K> = Api::namespaced(self.ctx_client.clone(), namespace);
            api.patch_status(name, &Patch::Merge(json!({ "status": desired })))
                .await?;
        }
        Ok((min_ready > 0 && ready > available).then(|| Duration::from_secs(u64::try_from(min_ready).unwrap_or(1))))
    }
}
