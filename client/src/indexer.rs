//! The indexer: the informer's thread-safe, indexed copy of the objects.
//!
//! Controllers read from here instead of asking the API server: "the pods
//! on node n1" or "the ReplicaSets owned by this Deployment" are lookups in
//! an index kept up to date as changes arrive. Every object is filed under
//! its key (`namespace/name`, or `name` for cluster-scoped kinds) and under
//! the values each index function returns for it; the namespace index is
//! always there, others are added by name ([`by_node_name`], [`by_owner_uid`]
//! or your own).
//!
//! Objects are handed out as `Arc<K>`: readers share them and must not
//! expect them to change; a change replaces the `Arc`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use k8s_openapi::api::core::v1::Pod;

use crate::api::Object;

/// What changed in the cache, as event handlers receive it.
#[derive(Debug, Clone)]
pub enum Event<K> {
    Added(Arc<K>),
    /// `old` is the previous state; on a resync `old` and `new` are the same.
    Updated {
        old: Arc<K>,
        new: Arc<K>,
    },
    /// The last state known: the deleted object, or, when the delete
    /// itself was missed and a relist found the object gone, the last
    /// state the cache had.
    Deleted(Arc<K>),
}

/// An index function: the index values an object is filed under.
pub type IndexFn<K> = Arc<dyn Fn(&K) -> Vec<String> + Send + Sync>;

/// The index every indexer has: objects by namespace.
pub const NAMESPACE: &str = "namespace";

/// The cache key of an object: `namespace/name`, or `name`.
pub fn key_of<K: Object>(object: &K) -> String {
    let meta = object.metadata();
    let name = meta.name.as_deref().unwrap_or_default();
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

/// Pods by `spec.nodeName` (unscheduled pods under "").
pub fn by_node_name() -> IndexFn<Pod> {
    Arc::new(|pod: &Pod| vec![pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default()])
}

/// Objects by the uid of each owner in `metadata.ownerReferences`.
pub fn by_owner_uid<K: Object>() -> IndexFn<K> {
    Arc::new(|object: &K| {
        object
            .metadata()
            .owner_references
            .iter()
            .flatten()
            .map(|o| o.uid.clone())
            .collect()
    })
}

fn resource_version<K: Object>(object: &K) -> Option<&str> {
    object.metadata().resource_version.as_deref()
}

struct Inner<K> {
    items: BTreeMap<String, Arc<K>>,
    functions: HashMap<String, IndexFn<K>>,
    /// index name → index value → keys.
    indices: HashMap<String, HashMap<String, BTreeSet<String>>>,
}

impl<K: Object> Inner<K> {
    fn file(&mut self, key: &str, object: &K) {
        for (name, f) in &self.functions {
            let index = self.indices.entry(name.clone()).or_default();
            for value in f(object) {
                index.entry(value).or_default().insert(key.to_string());
            }
        }
    }

    fn unfile(&mut self, key: &str, object: &K) {
        for (name, f) in &self.functions {
            let Some(index) = self.indices.get_mut(name) else {
                continue;
            };
            for value in f(object) {
                if let Some(keys) = index.get_mut(&value) {
                    keys.remove(key);
                    if keys.is_empty() {
                        index.remove(&value);
                    }
                }
            }
        }
    }
}

/// A thread-safe store of objects with indices.
pub struct Indexer<K> {
    inner: RwLock<Inner<K>>,
}

impl<K: Object> Default for Indexer<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Object> Indexer<K> {
    pub fn new() -> Indexer<K> {
        let mut functions: HashMap<String, IndexFn<K>> = HashMap::new();
        functions.insert(
            NAMESPACE.into(),
            Arc::new(|o: &K| vec![o.metadata().namespace.clone().unwrap_or_default()]),
        );
        Indexer {
            inner: RwLock::new(Inner {
                items: BTreeMap::new(),
                functions,
                indices: HashMap::new(),
            }),
        }
    }

    // A panic while holding the lock cannot leave the maps half-updated in
    // a way later readers would trip over, so a poisoned lock is used as is.
    fn read(&self) -> RwLockReadGuard<'_, Inner<K>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write(&self) -> RwLockWriteGuard<'_, Inner<K>> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an index (existing objects are filed under it at once).
    pub fn add_index(&self, name: &str, function: IndexFn<K>) {
        let mut inner = self.write();
        inner.functions.insert(name.to_string(), function.clone());
        let mut index: HashMap<String, BTreeSet<String>> = HashMap::new();
        for (key, object) in &inner.items {
            for value in function(object) {
                index.entry(value).or_default().insert(key.clone());
            }
        }
        inner.indices.insert(name.to_string(), index);
    }

    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.read().items.get(key).cloned()
    }

    /// By namespace (ignored for cluster-scoped kinds) and name.
    pub fn get_named(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        match namespace {
            Some(ns) if !ns.is_empty() => self.get(&format!("{ns}/{name}")),
            _ => self.get(name),
        }
    }

    /// Every object, in key order.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().items.values().cloned().collect()
    }

    pub fn keys(&self) -> Vec<String> {
        self.read().items.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The objects filed under `value` in index `index`.
    pub fn by_index(&self, index: &str, value: &str) -> Vec<Arc<K>> {
        let inner = self.read();
        let Some(keys) = inner.indices.get(index).and_then(|i| i.get(value)) else {
            return Vec::new();
        };
        keys.iter().filter_map(|k| inner.items.get(k).cloned()).collect()
    }

    /// The objects in one namespace.
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        self.by_index(NAMESPACE, namespace)
    }

    /// Stores an added or modified object. `None` when the cache already
    /// had this very version (a replay after a reconnect).
    pub(crate) fn upsert(&self, object: K) -> Option<Event<K>> {
        let key = key_of(&object);
        let mut inner = self.write();
        let old = inner.items.get(&key).cloned();
        if let Some(old) = &old {
            if resource_version(old.as_ref()).is_some() && resource_version(old.as_ref()) == resource_version(&object) {
                return None;
            }
            inner.unfile(&key, old);
        }
        let new = Arc::new(object);
        inner.file(&key, &new);
        inner.items.insert(key, new.clone());
        Some(match old {
            Some(old) => Event::Updated { old, new },
            None => Event::Added(new),
        })
    }

    /// Removes a deleted object; `object` is its final state. `None` when
    /// the cache did not have it.
    pub(crate) fn remove(&self, object: K) -> Option<Event<K>> {
        let key = key_of(&object);
        let mut inner = self.write();
        let old = inner.items.remove(&key)?;
        inner.unfile(&key, &old);
        Some(Event::Deleted(Arc::new(object)))
    }

    /// Replaces everything with a fresh list and returns the differences:
    /// new objects added, changed ones updated, missing ones deleted (with
    /// their last known state).
    pub(crate) fn replace(&self, objects: Vec<K>) -> Vec<Event<K>> {
        let mut events = Vec::new();
        let mut seen = BTreeSet::new();
        for object in objects {
            seen.insert(key_of(&object));
            events.extend(self.upsert(object));
        }
        let mut inner = self.write();
        let gone: Vec<String> = inner.items.keys().filter(|k| !seen.contains(*k)).cloned().collect();
        for key in gone {
            if let Some(old) = inner.items.remove(&key) {
                inner.unfile(&key, &old);
                events.push(Event::Deleted(old));
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn pod(name: &str, node: &str, rv: &str, owner: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                owner_references: owner.map(|uid| {
                    vec![OwnerReference {
                        uid: uid.into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn indices_follow_changes_and_replays_are_ignored() {
        let cache = Indexer::<Pod>::new();
        cache.add_index("node", by_node_name());
        assert!(matches!(
            cache.upsert(pod("a", "n1", "1", Some("rs1"))),
            Some(Event::Added(_))
        ));
        cache.add_index("owner", by_owner_uid());
        assert!(
            cache.upsert(pod("a", "n1", "1", Some("rs1"))).is_none(),
            "same version twice"
        );
        assert!(matches!(
            cache.upsert(pod("a", "n2", "2", Some("rs1"))),
            Some(Event::Updated { .. })
        ));
        assert!(cache.by_index("node", "n1").is_empty());
        assert_eq!(cache.by_index("node", "n2").len(), 1);
        assert_eq!(cache.by_index("owner", "rs1").len(), 1);
        assert_eq!(cache.list_namespace("ns").len(), 1);
        assert!(cache.get_named(Some("ns"), "a").is_some());
        assert!(matches!(
            cache.remove(pod("a", "n2", "3", None)),
            Some(Event::Deleted(_))
        ));
        assert!(cache.remove(pod("a", "n2", "3", None)).is_none());
        assert!(cache.by_index("node", "n2").is_empty() && cache.is_empty());
    }

    #[test]
    fn replace_reports_the_differences() {
        let cache = Indexer::<Pod>::new();
        cache.upsert(pod("keep", "n", "1", None));
        cache.upsert(pod("change", "n", "1", None));
        cache.upsert(pod("vanish", "n", "1", None));
        let events = cache.replace(vec![
            pod("keep", "n", "1", None),
            pod("change", "n", "5", None),
            pod("new", "n", "6", None),
        ]);
        let summary: Vec<String> = events
            .iter()
            .map(|e| match e {
                Event::Added(p) => format!("+{}", key_of(p.as_ref())),
                Event::Updated { new, .. } => format!("~{}", key_of(new.as_ref())),
                Event::Deleted(p) => format!("-{}", key_of(p.as_ref())),
            })
            .collect();
        assert_eq!(summary, ["~ns/change", "+ns/new", "-ns/vanish"]);
        assert_eq!(cache.keys(), ["ns/change", "ns/keep", "ns/new"]);
    }
}
