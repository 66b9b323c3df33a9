//! The garbage collector: objects whose owners are gone are deleted, and
//! deletions propagate the way their `propagationPolicy` asked.
//!
//! - [`graph`]: a metadata-only informer per kind (every built-in kind
//!   and every custom resource, rediscovered every `--discovery-period`)
//!   keeps the ownerReferences graph of the whole cluster.
//! - [`attempt_to_delete`]: a dependent whose owners are all gone is
//!   deleted; one with some owners left loses its references to the gone
//!   ones; an owner deleted in the **foreground** (the
//!   `foregroundDeletion` finalizer) has its dependents deleted and loses
//!   the finalizer, so the API server removes it, once no dependent with
//!   `blockOwnerDeletion` is left. **Background** deletion is the default:
//!   the owner is gone at once and its dependents follow.
//! - [`attempt_to_orphan`]: an owner deleted with the `orphan` finalizer
//!   has its references removed from its dependents, which stay, and
//!   then loses the finalizer.

mod attempt_to_delete;
mod attempt_to_orphan;
pub mod graph;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::dynamic::{ApiResource, DynamicObject, PartialObjectMetadata};
use client::{Api, Client, Event, Informer, ListParams, Patch, WorkQueue};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::controller;
use crate::Runner;
use graph::{Graph, Identity, Work};

/// How many objects are examined at once.
const WORKERS: usize = 10;

pub struct GarbageCollector {
    client: Client,
    graph: Mutex<Graph>,
    /// Kinds by (group, kind), to find an owner from its reference.
    kinds: Mutex<HashMap<(String, String), Arc<ApiResource>>>,
    attempt_to_delete: WorkQueue<String>,
    attempt_to_orphan: WorkQueue<String>,
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

impl GarbageCollector {
    fn graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn resolve(&self, api_version: &str, kind: &str) -> Option<Arc<ApiResource>> {
        let kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
        kinds
            .get(&(group_of(api_version).to_string(), kind.to_string()))
            .cloned()
    }

    fn schedule(&self, work: Work) {
        for uid in work.attempt_to_delete {
            self.attempt_to_delete.add(uid);
        }
        for uid in work.attempt_to_orphan {
            self.attempt_to_orphan.add(uid);
        }
    }

    fn on_event(&self, resource: &Arc<ApiResource>, event: &Event<PartialObjectMetadata>) {
        let work = {
            let resolve = |v: &str, k: &str| self.resolve(v, k);
            let mut graph = self.graph();
            match event {
                Event::Added(o) | Event::Updated { new: o, .. } => graph.upsert(resource, &o.metadata, &resolve),
                Event::Deleted(o) => graph.delete(&o.metadata),
            }
        };
        self.schedule(work);
    }

    /// Full access to the object a node stands for.
    fn api_for(&self, identity: &Identity) -> Option<Api<DynamicObject>> {
        let resource = identity
            .resource
            .clone()
            .or_else(|| self.resolve(&identity.api_version, &identity.kind))?;
        Some(Api::dynamic(
            self.client.clone(),
            resource.as_ref().clone(),
            identity.namespace.as_deref(),
        ))
    }

    /// Removes `finalizer` from the object, retrying when it changes meanwhile.
    async fn remove_finalizer(&self, api: &Api<DynamicObject>, name: &str, finalizer: &str) -> client::Result<()> {
        for _ in 0..5 {
            let Some(object) = api.get_opt(name).await? else {
                return Ok(());
            };
            let finalizers = object.metadata.finalizers.clone().unwrap_or_default();
            if !finalizers.iter().any(|f| f == finalizer) {
                return Ok(());
            }
            let kept: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
            let patch = json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": object.metadata.resource_version},
                {"op": "replace", "path": "/metadata/finalizers", "value": kept},
            ]);
            match api.patch(name, &Patch::Json(patch)).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_conflict() || e.code() == Some(422) => continue,
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Err(client::Error::Api(client::error::Status {
            code: 409,
            reason: "Conflict".into(),
            message: format!("the finalizer {finalizer} of {name} kept changing underneath"),
        }))
    }
}

/// Starts the informers of kinds not watched yet, and stops those of
/// kinds that went away (a deleted CRD).
async fn monitor(gc: Arc<GarbageCollector>, period: Duration, stop: CancellationToken) {
    let mut running: HashMap<ApiResource, (Arc<Informer<PartialObjectMetadata>>, CancellationToken)> = HashMap::new();
    let mut first = true;
    loop {
        match crate::resources::discover(&gc.client).await {
            Ok(found) => {
                {
                    let mut kinds = gc.kinds.lock().unwrap_or_else(|p| p.into_inner());
                    kinds.clear();
                    for r in &found {
                        kinds.insert((r.group.clone(), r.kind.clone()), Arc::new(r.clone()));
                    }
                }
                running.retain(|r, (_, token)| {
                    let keep = found.contains(r);
                    if !keep {
                        token.cancel();
                    }
                    keep
                });
                for r in found {
                    if running.contains_key(&r) {
                        continue;
                    }
                    let api = Api::metadata_only(gc.client.clone(), r.clone(), None);
                    let informer = Informer::new(api, ListParams::default());
                    let (resource, handler_gc) = (Arc::new(r.clone()), gc.clone());
                    informer.add_handler(move |event| handler_gc.on_event(&resource, event));
                    let token = stop.child_token();
                    informer.run(token.clone());
                    running.insert(r, (informer, token));
                }
                if first {
                    // Collect only once the graph holds the whole cluster.
                    for (r, (informer, _)) in &running {
                        if !informer.wait_for_sync(Duration::from_secs(120)).await {
                            tracing::warn!(kind = %r.kind, "garbage collector: informer not synced yet");
                        }
                    }
                    tracing::info!(nodes = gc.graph().len(), "garbage collector graph synced");
                    first = false;
                    start_workers(&gc, &stop);
                }
            }
            Err(e) => tracing::warn!(error = %e, "garbage collector: discovery failed"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
    }
}

fn start_workers(gc: &Arc<GarbageCollector>, stop: &CancellationToken) {
    let deleter = Arc::new(attempt_to_delete::AttemptToDelete(gc.clone()));
    tokio::spawn(controller::run_with_retries(
        "garbagecollector",
        deleter,
        gc.attempt_to_delete.clone(),
        WORKERS,
        controller::RETRY_FOREVER,
        stop.clone(),
    ));
    let orphaner = Arc::new(attempt_to_orphan::AttemptToOrphan(gc.clone()));
    tokio::spawn(controller::run_with_retries(
        "garbagecollector-orphan",
        orphaner,
        gc.attempt_to_orphan.clone(),
        2,
        controller::RETRY_FOREVER,
        stop.clone(),
    ));
}

pub fn start(ctx: &Context) -> Runner {
    let gc = Arc::new(GarbageCollector {
        client: ctx.client.clone(),
        graph: Mutex::new(Graph::default()),
        kinds: Mutex::new(HashMap::new()),
        attempt_to_delete: ctx.queue("garbage_collector_attempt_to_delete"),
        attempt_to_orphan: ctx.queue("garbage_collector_attempt_to_orphan"),
    });
    let period = ctx.config.discovery_period;
    Box::new(move |stop| {
        Box::pin(async move {
            monitor(gc.clone(), period, stop.clone()).await;
            gc.attempt_to_delete.shutdown();
            gc.attempt_to_orphan.shutdown();
        })
    })
}
