//! Attempt to orphan: an owner deleted with `propagationPolicy: Orphan`
//! lets its dependents go (their references to it are removed), then
//! loses the `orphan` finalizer so the API server can remove it.

use std::sync::Arc;
use std::time::Duration;

use client::Patch;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::json;

use super::graph::ORPHAN;
use super::GarbageCollector;
use crate::controller::Reconciler;

pub struct AttemptToOrphan(pub Arc<GarbageCollector>);

impl Reconciler for AttemptToOrphan {
    async fn reconcile(&self, uid: &str) -> client::Result<Option<Duration>> {
        let gc = &self.0;
        let Some(owner) = gc.graph().get(uid).cloned() else {
            return Ok(None);
        };
        let dependents: Vec<_> = {
            let graph = gc.graph();
            owner.dependents.iter().filter_map(|d| graph.get(d).cloned()).collect()
        };
        for dependent in dependents {
            let Some(api) = gc.api_for(&dependent.identity) else {
                continue;
            };
            let Some(object) = api.get_opt(&dependent.identity.name).await? else {
                continue;
            };
            let references = object.metadata.owner_references.clone().unwrap_or_default();
            if !references.iter().any(|r| r.uid == uid) {
                continue;
            }
            let kept: Vec<&OwnerReference> = references.iter().filter(|r| r.uid != uid).collect();
            let patch = json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": object.metadata.resource_version},
                {"op": "replace", "path": "/metadata/ownerReferences", "value": kept},
            ]);
            match api.patch(&dependent.identity.name, &Patch::Json(patch)).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e), // Changed meanwhile: retried with backoff.
            }
        }
        if let Some(api) = gc.api_for(&owner.identity) {
            gc.remove_finalizer(&api, &owner.identity.name, ORPHAN).await?;
        }
        Ok(None)
    }
}
