//! The dependency graph: every object in the cluster as a node, with
//! edges from owners to dependents taken from `metadata.ownerReferences`.
//!
//! Informer events keep it current. An owner that a dependent names but
//! that has not been seen becomes a *virtual* node, to be checked: if it
//! really does not exist, its dependents are orphans of a vanished owner
//! and are collected. A deleted node hands its dependents to the
//! attempt-to-delete queue; an owner deleted in the foreground is told
//! whenever one of its dependents goes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use client::dynamic::ApiResource;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";

/// Where a node's object lives.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `None` for a virtual node whose kind is not known.
    pub resource: Option<Arc<ApiResource>>,
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub identity: Identity,
    pub owners: Vec<OwnerReference>,
    pub dependents: BTreeSet<String>,
    /// Known only from a dependent's reference; existence unconfirmed.
    pub virtual_: bool,
    /// Being deleted in the foreground: waits for blocking dependents.
    pub deleting_dependents: bool,
}

/// What the graph asks the workers to do after a change.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Work {
    pub attempt_to_delete: Vec<String>,
    pub attempt_to_orphan: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
}

fn has_finalizer(meta: &ObjectMeta, name: &str) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == name)
}

impl Graph {
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn remove_virtual(&mut self, uid: &str) -> Vec<String> {
        match self.nodes.get(uid) {
            Some(n) if n.virtual_ => self
                .nodes
                .remove(uid)
                .map(|n| n.dependents.into_iter().collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Files `dependent` under each owner, creating virtual owners.
    fn link(
        &mut self,
        dependent: &str,
        namespace: Option<&str>,
        owners: &[OwnerReference],
        resolve: &dyn Fn(&str, &str) -> Option<Arc<ApiResource>>,
        work: &mut Work,
    ) {
        for owner in owners {
            let node = self.nodes.entry(owner.uid.clone()).or_insert_with(|| {
                let resource = resolve(&owner.api_version, &owner.kind);
                let namespace = match &resource {
                    Some(r) if !r.namespaced => None,
                    _ => namespace.map(str::to_string),
                };
                work.attempt_to_delete.push(owner.uid.clone());
                Node {
                    identity: Identity {
                        resource,
                        api_version: owner.api_version.clone(),
                        kind: owner.kind.clone(),
                        namespace,
                        name: owner.name.clone(),
                        uid: owner.uid.clone(),
                    },
                    owners: Vec::new(),
                    dependents: BTreeSet::new(),
                    virtual_: true,
                    deleting_dependents: false,
                }
            });
            node.dependents.insert(dependent.to_string());
        }
    }

    fn unlink(&mut self, dependent: &str, owners: &[OwnerReference], work: &mut Work) {
        for owner in owners {
            if let Some(node) = self.nodes.get_mut(&owner.uid) {
                node.dependents.remove(dependent);
                if node.deleting_dependents {
                    work.attempt_to_delete.push(owner.uid.clone());
                }
            }
        }
    }

    /// An object was added or changed.
    pub fn upsert(
        &mut self,
        resource: &Arc<ApiResource>,
        meta: &ObjectMeta,
        resolve: &dyn Fn(&str, &str) -> Option<Arc<ApiResource>>,
    ) -> Work {
        let mut work = Work::default();
        let Some(uid) = meta.uid.clone() else { return work };
        let owners = meta.owner_references.clone().unwrap_or_default();
        let identity = Identity {
            resource: Some(resource.clone()),
            api_version: resource.api_version(),
            kind: resource.kind.clone(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
            uid: uid.clone(),
        };
        let previous = self.nodes.get(&uid).map(|n| n.owners.clone());
        match previous {
            None => {
                self.nodes.insert(
                    uid.clone(),
                    Node {
                        identity,
                        owners: owners.clone(),
                        dependents: BTreeSet::new(),
                        virtual_: false,
                        deleting_dependents: false,
                    },
                );
                self.link(&uid, meta.namespace.as_deref(), &owners, resolve, &mut work);
            }
            Some(old_owners) => {
                if let Some(node) = self.nodes.get_mut(&uid) {
                    node.identity = identity;
                    node.virtual_ = false;
                    node.owners = owners.clone();
                }
                let removed: Vec<OwnerReference> = old_owners
                    .iter()
                    .filter(|o| !owners.iter().any(|n| n.uid == o.uid))
                    .cloned()
                    .collect();
                let added: Vec<OwnerReference> = owners
                    .iter()
                    .filter(|n| !old_owners.iter().any(|o| o.uid == n.uid))
                    .cloned()
                    .collect();
                self.unlink(&uid, &removed, &mut work);
                self.link(&uid, meta.namespace.as_deref(), &added, resolve, &mut work);
                // A changed blockOwnerDeletion may unblock a foreground owner.
                for o in &owners {
                    if self.nodes.get(&o.uid).is_some_and(|n| n.deleting_dependents) {
                        work.attempt_to_delete.push(o.uid.clone());
                    }
                }
            }
        }
        if meta.deletion_timestamp.is_some() {
            if has_finalizer(meta, FOREGROUND) {
                if let Some(node) = self.nodes.get_mut(&uid) {
                    node.deleting_dependents = true;
                    work.attempt_to_delete.extend(node.dependents.iter().cloned());
                }
                work.attempt_to_delete.push(uid.clone());
            }
            if has_finalizer(meta, ORPHAN) {
                work.attempt_to_orphan.push(uid);
            }
        }
        work
    }

    /// An object was deleted.
    pub fn delete(&mut self, meta: &ObjectMeta) -> Work {
        let mut work = Work::default();
        let Some(uid) = meta.uid.as_deref() else { return work };
        let Some(node) = self.nodes.remove(uid) else {
            return work;
        };
        self.unlink(uid, &node.owners, &mut work);
        work.attempt_to_delete.extend(node.dependents);
        work
    }

    /// The dependents that block a foreground deletion of `owner`: those
    /// whose reference to it has `blockOwnerDeletion: true`.
    pub fn blocking_dependents(&self, owner: &str) -> Vec<String> {
        let Some(node) = self.nodes.get(owner) else {
            return Vec::new();
        };
        node.dependents
            .iter()
            .filter(|d| {
                self.nodes.get(*d).is_some_and(|n| {
                    n.owners
                        .iter()
                        .any(|o| o.uid == owner && o.block_owner_deletion == Some(true))
                })
            })
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(kind: &str) -> Arc<ApiResource> {
        Arc::new(ApiResource {
            group: "apps".into(),
            version: "v1".into(),
            plural: format!("{}s", kind.to_lowercase()),
            kind: kind.into(),
            namespaced: true,
        })
    }

    fn meta(uid: &str, owner: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(uid.into()),
            namespace: Some("ns".into()),
            uid: Some(uid.into()),
            owner_references: owner.map(|o| {
                vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: o.into(),
                    uid: o.into(),
                    block_owner_deletion: Some(true),
                    controller: Some(true),
                }]
            }),
            ..Default::default()
        }
    }

    #[test]
    fn unseen_owners_are_virtual_and_checked_and_deletions_hand_on_dependents() {
        let mut g = Graph::default();
        let resolve = |_: &str, kind: &str| Some(resource(kind));
        let work = g.upsert(&resource("ReplicaSet"), &meta("rs", Some("d")), &resolve);
        assert_eq!(work.attempt_to_delete, vec!["d".to_string()]);
        assert!(g.get("d").unwrap().virtual_);
        // The owner shows up: no longer virtual, nothing to do.
        let work = g.upsert(&resource("Deployment"), &meta("d", None), &resolve);
        assert_eq!(work, Work::default());
        assert!(!g.get("d").unwrap().virtual_);
        assert_eq!(g.blocking_dependents("d"), vec!["rs".to_string()]);
        // The owner goes: its dependent is handed on.
        let work = g.delete(&meta("d", None));
        assert_eq!(work.attempt_to_delete, vec!["rs".to_string()]);
    }

    #[test]
    fn foreground_and_orphan_finalizers_ask_for_work() {
        let mut g = Graph::default();
        let resolve = |_: &str, kind: &str| Some(resource(kind));
        g.upsert(&resource("Deployment"), &meta("d", None), &resolve);
        g.upsert(&resource("ReplicaSet"), &meta("rs", Some("d")), &resolve);
        let mut deleting = meta("d", None);
        deleting.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        deleting.finalizers = Some(vec![FOREGROUND.into()]);
        let work = g.upsert(&resource("Deployment"), &deleting, &resolve);
        assert_eq!(work.attempt_to_delete, vec!["rs".to_string(), "d".to_string()]);
        // The dependent going tells the waiting owner.
        let work = g.delete(&meta("rs", Some("d")));
        assert_eq!(work.attempt_to_delete, vec!["d".to_string()]);
        deleting.finalizers = Some(vec![ORPHAN.into()]);
        let work = g.upsert(&resource("Deployment"), &deleting, &resolve);
        assert_eq!(work.attempt_to_orphan, vec!["d".to_string()]);
    }
}
