//! The namespace controller: a deleted namespace is emptied, then goes.
//!
//! Deleting a namespace only marks it (`Terminating`): the API server
//! keeps it while `spec.finalizers` holds `kubernetes`, and refuses new
//! objects in it. This controller deletes everything inside, kind by kind
//! (custom resources too), waits for what takes time (pods shutting down
//! gracefully, objects with finalizers), and reports what remains in the
//! namespace's conditions. When nothing is left it removes its finalizer
//! through `namespaces/{name}/finalize`, and the API server deletes the
//! namespace.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use client::dynamic::DynamicObject;
use client::indexer::key_of;
use client::{Api, Client, DeleteParams, Event, Informer, ListParams};
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};

use crate::context::Context;
use crate::controller::{self, Reconciler};
use crate::controller_utils::now;
use crate::Runner;

const FINALIZER: &str = "kubernetes";
/// How soon to look again while content remains.
const RECHECK: Duration = Duration::from_secs(2);
/// The longest wait between rechecks of a namespace whose content stays.
const RECHECK_MAX: Duration = Duration::from_secs(30);

pub struct NamespaceController {
    client: Client,
    namespaces: Arc<Informer<Namespace>>,
    /// Rechecks so far of each namespace still holding content: each
    /// waits twice as long (every recheck lists every kind).
    rechecks: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

pub fn start(ctx: &Context) -> Runner {
    let namespaces = ctx.factory.informer::<Namespace>();
    let queue = ctx.queue("namespace");
    let q = queue.clone();
    namespaces.add_handler(move |event| {
        if let Event::Added(ns) | Event::Updated { new: ns, .. } = event {
            if ns.metadata.deletion_timestamp.is_some() {
                q.add(key_of(ns.as_ref()));
            }
        }
    });
    let controller = Arc::new(NamespaceController {
        client: ctx.client.clone(),
        namespaces,
        rechecks: Default::default(),
    });
    let workers = ctx.config.concurrent_syncs;
    Box::new(move |stop| {
        Box::pin(controller::run_with_retries(
            "namespace",
            controller,
            queue,
            workers,
            controller::RETRY_FOREVER,
            stop,
        ))
    })
}

/// What is left in a namespace after a round of deletes.
#[derive(Default)]
struct Remaining {
    /// Objects per resource (`pods.` or `widgets.example.com`).
    objects: BTreeMap<String, usize>,
    /// Objects held by each finalizer.
    finalizers: BTreeMap<String, usize>,
    errors: Vec<String>,
}

fn condition(
    type_: &str,
    problem: Option<String>,
    ok_reason: &str,
    ok_message: &str,
    bad_reason: &str,
) -> NamespaceCondition {
    let (status, reason, message) = match problem {
        Some(m) => ("True", bad_reason, m),
        None => ("False", ok_reason, ok_message.to_string()),
    };
    NamespaceCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: Some(now()),
    }
}

fn summary(counts: &BTreeMap<String, usize>) -> String {
    let parts: Vec<String> = counts
        .iter()
        .map(|(k, n)| format!("{k} has {n} resource instances"))
        .collect();
    parts.join(", ")
}

impl NamespaceController {
    /// Deletes every object in the namespace; counts what is still there.
    async fn delete_content(&self, namespace: &str) -> Remaining {
        let mut remaining = Remaining::default();
        let resources = match crate::resources::discover(&self.client).await {
            Ok(r) => r,
            Err(e) => {
                remaining.errors.push(format!("discovery failed: {e}"));
                return remaining;
            }
        };
        for resource in resources.into_iter().filter(|r| r.namespaced) {
            let label = format!("{}.{}", resource.plural, resource.group);
            let api = Api::dynamic(self.client.clone(), resource, Some(namespace));
            let objects = match api.list_all(&ListParams::default(), 500).await {
                Ok(list) => list.items,
                Err(e) => {
                    remaining.errors.push(format!("listing {label}: {e}"));
                    continue;
                }
            };
            for object in &objects {
                self.delete_one(&api, object, &label, &mut remaining).await;
            }
        }
        remaining
    }

    async fn delete_one(
        &self,
        api: &Api<DynamicObject>,
        object: &DynamicObject,
        label: &str,
        remaining: &mut Remaining,
    ) {
        let name = object.metadata.name.as_deref().unwrap_or_default();
        let left = if object.metadata.deletion_timestamp.is_some() {
            Some(object.clone())
        } else {
            let params = DeleteParams {
                uid: object.metadata.uid.clone(),
                propagation_policy: Some("Background".into()),
                ..Default::default()
            };
            match api.delete(name, &params).await {
                // Marked, not removed: pods shutting down, finalizers.
                Ok(o) if o.metadata.deletion_timestamp.is_some() && o.metadata.uid == object.metadata.uid => Some(o),
                Ok(_) => None,
                Err(e) if e.is_not_found() || e.is_conflict() => None,
                Err(e) => {
                    remaining.errors.push(format!("deleting {label} {name}: {e}"));
                    Some(object.clone())
                }
            }
        };
        if let Some(o) = left {
            *remaining.objects.entry(label.to_string()).or_default() += 1;
            for f in o.metadata.finalizers.iter().flatten() {
                *remaining.finalizers.entry(f.clone()).or_default() += 1;
            }
        }
    }

    async fn write_conditions(&self, ns: &Namespace, remaining: &Remaining) -> client::Result<()> {
        let errors = (!remaining.errors.is_empty()).then(|| remaining.errors.join("; "));
        let content = (!remaining.objects.is_empty())
            .then(|| format!("Some resources are remaining: {}", summary(&remaining.objects)));
        let finalizers = (!remaining.finalizers.is_empty()).then(|| {
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                summary(&remaining.finalizers)
            )
        });
        let conditions = vec![
            condition(
                "NamespaceDeletionContentFailure",
                errors,
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization",
                "ContentDeletionFailed",
            ),
            condition(
                "NamespaceContentRemaining",
                content,
                "ContentRemoved",
                "All content successfully removed",
                "SomeResourcesRemain",
            ),
            condition(
                "NamespaceFinalizersRemaining",
                finalizers,
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished",
                "SomeFinalizersRemain",
            ),
        ];
        let unchanged = ns
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|current| {
                conditions.iter().all(|c| {
                    current
                        .iter()
                        .any(|x| x.type_ == c.type_ && x.status == c.status && x.message == c.message)
                })
            });
        if unchanged {
            return Ok(());
        }
        let mut updated = ns.clone();
        let status = updated.status.get_or_insert_with(Default::default);
        status.conditions = Some(conditions);
        let api: Api<Namespace> = Api::all(self.client.clone());
        match api.update_status(&updated).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_conflict() || e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Reconciler for NamespaceController {
    async fn reconcile(&self, key: &str) -> client::Result<Option<Duration>> {
        let Some(ns) = self.namespaces.indexer().get(key) else {
            return Ok(None);
        };
        let has_finalizer = ns
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.as_ref())
            .is_some_and(|f| f.iter().any(|f| f == FINALIZER));
        if ns.metadata.deletion_timestamp.is_none() || !has_finalizer {
            return Ok(None);
        }
        let remaining = self.delete_content(key).await;
        self.write_conditions(&ns, &remaining).await?;
        if !remaining.objects.is_empty() || !remaining.errors.is_empty() {
            let mut rechecks = self.rechecks.lock().unwrap_or_else(|p| p.into_inner());
            let n = rechecks.entry(key.to_string()).or_insert(0);
            *n += 1;
            let delay = RECHECK.saturating_mul(1 << (*n - 1).min(4)).min(RECHECK_MAX);
            return Ok(Some(delay));
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        let Some(mut current) = api.get_opt(key).await? else {
            return Ok(None);
        };
        if let Some(finalizers) = current.spec.as_mut().and_then(|s| s.finalizers.as_mut()) {
            finalizers.retain(|f| f != FINALIZER);
        }
        match api.replace_subresource("finalize", &current).await {
            Ok(_) => {
                self.rechecks.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
                tracing::info!(namespace = key, "namespace emptied and finalized");
                Ok(None)
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}
