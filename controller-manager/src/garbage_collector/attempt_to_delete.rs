//! Attempt to delete: decide the fate of one object whose owners may be
//! gone, or which is waiting for its dependents.

use std::sync::Arc;
use std::time::Duration;

use client::dynamic::DynamicObject;
use client::{DeleteParams, Patch};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::json;

use super::graph::{Identity, FOREGROUND, ORPHAN};
use super::GarbageCollector;
use crate::controller::Reconciler;

pub struct AttemptToDelete(pub Arc<GarbageCollector>);

/// An owner reference, sorted by what became of its owner.
enum OwnerState {
    /// Exists and is not waiting for dependents.
    Solid,
    /// Does not exist (or is another object under the same name).
    Dangling,
    /// Being deleted in the foreground.
    Waiting,
}

fn has_finalizer(object: &DynamicObject, name: &str) -> bool {
    object.metadata.finalizers.iter().flatten().any(|f| f == name)
}

impl AttemptToDelete {
    fn gc(&self) -> &GarbageCollector {
        &self.0
    }

    async fn owner_state(&self, dependent: &Identity, owner: &OwnerReference) -> client::Result<OwnerState> {
        let identity = Identity {
            resource: None,
            api_version: owner.api_version.clone(),
            kind: owner.kind.clone(),
            namespace: dependent.namespace.clone(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
        };
        let Some(api) = self.gc().api_for(&identity) else {
            // A kind the server does not serve (yet: a CRD not discovered,
            // or a typo). Kubernetes leaves such objects alone; so do we.
            tracing::warn!(kind = %owner.kind, api_version = %owner.api_version, "owner reference to an unknown kind");
            return Ok(OwnerState::Solid);
        };
        match api.get_opt(&owner.name).await? {
            Some(o) if o.metadata.uid.as_deref() == Some(owner.uid.as_str()) => {
                if o.metadata.deletion_timestamp.is_some() && has_finalizer(&o, FOREGROUND) {
                    Ok(OwnerState::Waiting)
                } else {
                    Ok(OwnerState::Solid)
                }
            }
            _ => Ok(OwnerState::Dangling),
        }
    }

    /// A virtual node: does the owner exist after all?
    async fn check_virtual(&self, uid: &str, identity: &Identity) -> client::Result<()> {
        let Some(api) = self.gc().api_for(identity) else {
            // Not discovered yet (a new CRD): ask again later, keeping the edges.
            return Err(client::Error::Config(format!(
                "owner kind {} {} is not known (yet)",
                identity.api_version, identity.kind
            )));
        };
        if let Some(o) = api.get_opt(&identity.name).await? {
            if o.metadata.uid.as_deref() == Some(uid) {
                return Ok(()); // It exists; its informer will add it.
            }
        }
        let dependents = self.gc().graph().remove_virtual(uid);
        for d in dependents {
            self.gc().attempt_to_delete.add(d);
        }
        Ok(())
    }

    /// A foreground deletion: delete the blocking dependents, and drop the
    /// finalizer once none is left.
    async fn process_deleting_dependents(&self, uid: &str, identity: &Identity) -> client::Result<Option<Duration>> {
        let blocking = self.gc().graph().blocking_dependents(uid);
        if blocking.is_empty() {
            if let Some(api) = self.gc().api_for(identity) {
                self.gc().remove_finalizer(&api, &identity.name, FOREGROUND).await?;
            }
            return Ok(None);
        }
        for d in blocking {
            self.gc().attempt_to_delete.add(d);
        }
        Ok(None)
    }
}

impl Reconciler for AttemptToDelete {
    async fn reconcile(&self, uid: &str) -> client::Result<Option<Duration>> {
        let Some(node) = self.gc().graph().get(uid).cloned() else {
            return Ok(None);
        };
        if node.virtual_ {
            self.check_virtual(uid, &node.identity).await?;
            return Ok(None);
        }
        let Some(api) = self.gc().api_for(&node.identity) else {
            return Ok(None);
        };
        let Some(object) = api.get_opt(&node.identity.name).await? else {
            return Ok(None); // Gone: its delete event updates the graph.
        };
        if object.metadata.uid.as_deref() != Some(uid) {
            return Ok(None);
        }
        if object.metadata.deletion_timestamp.is_some() {
            if has_finalizer(&object, FOREGROUND) {
                return self.process_deleting_dependents(uid, &node.identity).await;
            }
            return Ok(None);
        }
        let owners = object.metadata.owner_references.clone().unwrap_or_default();
        if owners.is_empty() {
            return Ok(None);
        }
        let (mut solid, mut dangling, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
        for owner in &owners {
            match self.owner_state(&node.identity, owner).await? {
                OwnerState::Solid => solid.push(owner.clone()),
                OwnerState::Dangling => dangling.push(owner.uid.clone()),
                OwnerState::Waiting => waiting.push(owner.uid.clone()),
            }
        }
        if !solid.is_empty() {
            if dangling.is_empty() && waiting.is_empty() {
                return Ok(None);
            }
            // Keep the object; forget the gone owners, stop blocking the waiting ones.
            let kept: Vec<OwnerReference> = owners
                .into_iter()
                .filter(|o| !dangling.contains(&o.uid))
                .map(|mut o| {
                    if waiting.contains(&o.uid) {
                        o.block_owner_deletion = Some(false);
                    }
                    o
                })
                .collect();
            // Only if nothing changed since the read (an adoption, say).
            let patch = json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": object.metadata.resource_version},
                {"op": "replace", "path": "/metadata/ownerReferences", "value": kept},
            ]);
            return match api.patch(&node.identity.name, &Patch::Json(patch)).await {
                Ok(_) => Ok(None),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e),
            };
        }
        let policy = if !waiting.is_empty() && !node.dependents.is_empty() {
            "Foreground"
        } else if has_finalizer(&object, ORPHAN) {
            "Orphan"
        } else if has_finalizer(&object, FOREGROUND) {
            "Foreground"
        } else {
            "Background"
        };
        tracing::info!(kind = %node.identity.kind, namespace = ?node.identity.namespace, name = %node.identity.name, policy, "deleting an object whose owners are gone");
        let params = DeleteParams {
            uid: Some(uid.to_string()),
            propagation_policy: Some(policy.to_string()),
            ..Default::default()
        };
        match api.delete(&node.identity.name, &params).await {
            Ok(_) => Ok(None),
            Err(e) if e.is_not_found() || e.is_conflict() => Ok(None),
            Err(e) => Err(e),
        }
    }
}
