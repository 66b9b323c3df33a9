//! Which objects belong to which controller: claiming (adopt matching
//! orphans, release owned objects that stopped matching) and routing a
//! dependent's events to the controller that owns, or could adopt, it.
//! ReplicaSets claim pods this way, and Deployments claim ReplicaSets.
//!
//! Ownership is the pod's controller reference (an ownerReference with
//! `controller: true`), never the label selector alone, so two
//! ReplicaSets with overlapping selectors do not fight over pods: a pod
//! with a controller is left to it, and only orphans are adopted.

use std::sync::Arc;

use client::api::Object;
use client::indexer::key_of;
use client::label_selector::{self, InvalidSelector};
use client::{Api, Client, Event, Informer, Patch, WorkQueue};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use serde_json::json;

use crate::controller_utils::{controller_of, controller_ref};
use crate::expectations::Expectations;

/// The dependents a controller owns after claiming.
pub struct Claimed<D> {
    pub owned: Vec<Arc<D>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(transparent)]
    Selector(#[from] InvalidSelector),
    #[error(transparent)]
    Api(#[from] client::Error),
}

/// Adopts and releases so that the result is exactly the pods that are
/// owned by `owner` and match `selector`.
pub async fn claim<K: Object, D: Object>(
    client: &Client,
    owner: &K,
    selector: &LabelSelector,
    candidates: Vec<Arc<D>>,
) -> Result<Claimed<D>, ClaimError> {
    let meta = owner.metadata();
    let uid = meta.uid.as_deref().unwrap_or_default();
    let mut owned = Vec::new();
    for pod in candidates {
        let pod_meta = pod.metadata();
        let matches = label_selector::matches(selector, pod_meta.labels.as_ref())?;
        match controller_of(pod_meta) {
            Some(r) if r.uid == uid => {
                if matches || meta.deletion_timestamp.is_some() {
                    owned.push(pod);
                } else {
                    release(client, pod.as_ref(), uid).await?;
                }
            }
            Some(_) => {}
            None => {
                if matches && meta.deletion_timestamp.is_none() && pod_meta.deletion_timestamp.is_none() {
                    let reference = controller_ref(K::API_VERSION, K::KIND, meta);
                    if let Some(adopted) = adopt(client, pod.as_ref(), reference).await? {
                        owned.push(Arc::new(adopted));
                    }
                }
            }
        }
    }
    Ok(Claimed { owned })
}

fn api_of<D: Object>(client: &Client, meta: &ObjectMeta) -> Api<D> {
    Api::namespaced(client.clone(), meta.namespace.as_deref().unwrap_or_default())
}

/// Whether a failed claim patch only means the pod changed or went.
fn lost_race(e: &client::Error) -> bool {
    e.is_not_found() || e.is_conflict() || matches!(e.code(), Some(422))
}

/// Adds the controller reference, if the pod is unchanged since it was read.
async fn adopt<D: Object>(client: &Client, pod: &D, reference: OwnerReference) -> client::Result<Option<D>> {
    let meta = pod.metadata();
    let mut references = meta.owner_references.clone().unwrap_or_default();
    references.push(reference);
    let patch = json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta.resource_version},
        {"op": "add", "path": "/metadata/ownerReferences", "value": references},
    ]);
    let name = meta.name.as_deref().unwrap_or_default();
    match api_of::<D>(client, meta).patch(name, &Patch::Json(patch)).await {
        Ok(p) => Ok(Some(p)),
        Err(e) if lost_race(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes the owner's reference from the pod.
async fn release<D: Object>(client: &Client, pod: &D, owner_uid: &str) -> client::Result<()> {
    let meta = pod.metadata();
    let references: Vec<&OwnerReference> = meta
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != owner_uid)
        .collect();
    let patch = json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta.resource_version},
        {"op": "replace", "path": "/metadata/ownerReferences", "value": references},
    ]);
    let name = meta.name.as_deref().unwrap_or_default();
    match api_of::<D>(client, meta).patch(name, &Patch::Json(patch)).await {
        Ok(_) => Ok(()),
        Err(e) if lost_race(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The cache key of the `K` that controls `meta`, if it is in the cache
/// with the same uid.
pub fn owner_key<K: Object>(owners: &Informer<K>, meta: &ObjectMeta) -> Option<String> {
    let r = controller_of(meta)?;
    if r.kind != K::KIND {
        return None;
    }
    let owner = owners.indexer().get_named(meta.namespace.as_deref(), &r.name)?;
    (owner.metadata().uid.as_deref() == Some(r.uid.as_str())).then(|| key_of(owner.as_ref()))
}

/// Keys of the `K`s in the pod's namespace whose selector matches it (who
/// could adopt an orphan).
fn adopters<K: Object>(
    owners: &Informer<K>,
    pod: &ObjectMeta,
    selector_of: fn(&K) -> Option<LabelSelector>,
) -> Vec<String> {
    let namespace = pod.namespace.as_deref().unwrap_or_default();
    owners
        .indexer()
        .list_namespace(namespace)
        .into_iter()
        .filter(|o| {
            selector_of(o).is_some_and(|s| {
                !label_selector::is_empty(&s) && label_selector::matches(&s, pod.labels.as_ref()).unwrap_or(false)
            })
        })
        .map(|o| key_of(o.as_ref()))
        .collect()
}

/// Routes a dependent's events to the owners' queue and counts off
/// expectations: a dependent's controller is told of every change to it,
/// an orphan's possible adopters of its arrival and label changes.
pub fn watch_dependents<K: Object, D: Object>(
    dependents: &Informer<D>,
    owners: &Arc<Informer<K>>,
    queue: &WorkQueue<String>,
    expectations: Option<&Arc<Expectations>>,
    selector_of: fn(&K) -> Option<LabelSelector>,
) {
    let owners = owners.clone();
    let queue = queue.clone();
    let expectations = expectations.cloned().unwrap_or_default();
    dependents.add_handler(move |event| match event {
        Event::Added(pod) => {
            let meta = pod.metadata();
            if let Some(key) = owner_key(&owners, meta) {
                if meta.deletion_timestamp.is_some() {
                    expectations.deletion_observed(&key, &key_of(pod.as_ref()));
                } else {
                    expectations.creation_observed(&key);
                }
                queue.add(key);
            } else if controller_of(meta).is_none() {
                adopters(&owners, meta, selector_of)
                    .into_iter()
                    .for_each(|k| queue.add(k));
            }
        }
        Event::Updated { old, new } => {
            let (old_meta, new_meta) = (old.metadata(), new.metadata());
            if old_meta.resource_version == new_meta.resource_version {
                return;
            }
            let old_key = owner_key(&owners, old_meta);
            let new_key = owner_key(&owners, new_meta);
            if new_meta.deletion_timestamp.is_some() && old_meta.deletion_timestamp.is_none() {
                if let Some(key) = &new_key {
                    expectations.deletion_observed(key, &key_of(new.as_ref()));
                }
            }
            if old_key != new_key {
                if let Some(key) = old_key {
                    queue.add(key);
                }
            }
            match new_key {
                Some(key) => queue.add(key),
                None if controller_of(new_meta).is_none() => {
                    adopters(&owners, new_meta, selector_of)
                        .into_iter()
                        .for_each(|k| queue.add(k));
                }
                None => {}
            }
        }
        Event::Deleted(pod) => {
            if let Some(key) = owner_key(&owners, pod.metadata()) {
                expectations.deletion_observed(&key, &key_of(pod.as_ref()));
                queue.add(key);
            }
        }
    });
}
