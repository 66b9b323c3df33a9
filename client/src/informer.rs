//! Informers: a reflector feeding an indexer, and event handlers told
//! about every change.
//!
//! An [`Informer`] keeps a local, indexed copy of one kind of object (all
//! of it, or what a label and field selector select; the kubelet watches
//! `spec.nodeName=<its node>` only) and calls its handlers with
//! [`Event`]s: added, updated (old and new), deleted (final state). A
//! controller's handlers normally just put a key on its workqueue, and
//! its workers read the objects from the indexer.
//!
//! The [`SharedInformerFactory`] hands out one informer per kind and
//! selector, so several controllers in one process share a single watch
//! and a single cache instead of each opening their own.
//!
//! A handler added after the informer has synced first receives the
//! objects already cached as `Added` events, then the changes, so late
//! joiners see the same world as early ones.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::{Api, ListParams, Object};
use crate::connection::Client;
pub use crate::indexer::Event;
use crate::indexer::{IndexFn, Indexer};
use crate::reflector::{Delta, Reflector};

/// An event handler.
pub type Handler<K> = Arc<dyn Fn(&Event<K>) + Send + Sync>;

pub struct Informer<K> {
    api: Api<K>,
    params: ListParams,
    resync: Option<Duration>,
    indexer: Arc<Indexer<K>>,
    /// Held while a change is applied and dispatched, so a handler being
    /// added never misses or doubles one.
    handlers: Mutex<Vec<Handler<K>>>,
    synced: watch::Sender<bool>,
    started: AtomicBool,
}

impl<K: Object> Informer<K> {
    /// An informer over `api` (its namespace, or all) and the selectors in
    /// `params`. Nothing happens until [`Informer::run`].
    pub fn new(api: Api<K>, params: ListParams) -> Arc<Informer<K>> {
        Self::build(api, params, None)
    }

    /// The same, revisiting every object each `period` (handlers get
    /// `Updated` with `old` and `new` the same).
    pub fn with_resync(api: Api<K>, params: ListParams, period: Duration) -> Arc<Informer<K>> {
        Self::build(api, params, Some(period))
    }

    fn build(api: Api<K>, params: ListParams, resync: Option<Duration>) -> Arc<Informer<K>> {
        Arc::new(Informer {
            api,
            params,
            resync,
            indexer: Arc::new(Indexer::new()),
            handlers: Mutex::new(Vec::new()),
            synced: watch::channel(false).0,
            started: AtomicBool::new(false),
        })
    }

    /// The cache.
    pub fn indexer(&self) -> &Arc<Indexer<K>> {
        &self.indexer
    }

    pub fn add_index(&self, name: &str, function: IndexFn<K>) {
        self.indexer.add_index(name, function);
    }

    fn lock_handlers(&self) -> std::sync::MutexGuard<'_, Vec<Handler<K>>> {
        self.handlers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a handler; it first receives what is already cached.
    pub fn add_handler(&self, handler: impl Fn(&Event<K>) + Send + Sync + 'static) {
        let mut handlers = self.lock_handlers();
        for object in self.indexer.list() {
            handler(&Event::Added(object));
        }
        handlers.push(Arc::new(handler));
    }

    /// Whether the first list has reached the cache.
    pub fn has_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits (at most `timeout`) for the first list; false on timeout.
    pub async fn wait_for_sync(&self, timeout: Duration) -> bool {
        let mut synced = self.synced.subscribe();
        let synced = tokio::time::timeout(timeout, synced.wait_for(|s| *s)).await.is_ok();
        synced
    }

    /// Starts the list-watch loop (once; later calls do nothing).
    pub fn run(self: &Arc<Self>, stop: CancellationToken) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let informer = self.clone();
        let reflector = Reflector::new(self.api.clone(), self.params.clone()).with_resync(self.resync);
        tokio::spawn(async move {
            reflector.run(|delta| informer.apply(delta), stop).await;
        });
    }

    fn apply(&self, delta: Delta<K>) {
        let handlers = self.lock_handlers();
        let listed = matches!(delta, Delta::Replace(_));
        let events: Vec<Event<K>> = match delta {
            Delta::Replace(items) => self.indexer.replace(items),
            Delta::Upsert(object) => self.indexer.upsert(object).into_iter().collect(),
            Delta::Delete(object) => self.indexer.remove(object).into_iter().collect(),
            Delta::Resync => self
                .indexer
                .list()
                .into_iter()
                .map(|o| Event::Updated { old: o.clone(), new: o })
                .collect(),
        };
        for event in &events {
            for handler in handlers.iter() {
                handler(event);
            }
        }
        drop(handlers);
        if listed {
            self.synced.send_replace(true);
        }
    }
}

/// What the factory needs of an informer of any kind.
trait Startable: Send + Sync {
    fn start(&self, stop: CancellationToken);
    fn synced(&self) -> watch::Receiver<bool>;
}

struct Typed<K>(Arc<Informer<K>>);

impl<K: Object> Startable for Typed<K> {
    fn start(&self, stop: CancellationToken) {
        self.0.run(stop);
    }
    fn synced(&self) -> watch::Receiver<bool> {
        self.0.synced.subscribe()
    }
}

type InformerKey = (TypeId, Option<String>, ListParams);

/// An informer kept twice: as `Any` to hand back typed, and as
/// `Startable` to start and await without knowing its type.
type Entry = (Arc<dyn Any + Send + Sync>, Arc<dyn Startable>);

/// One informer per kind, namespace and selector, shared by every
/// controller in the process.
pub struct SharedInformerFactory {
    client: Client,
    resync: Option<Duration>,
    informers: Mutex<HashMap<InformerKey, Entry>>,
}

impl SharedInformerFactory {
    pub fn new(client: Client) -> SharedInformerFactory {
        SharedInformerFactory {
            client,
            resync: None,
            informers: Mutex::new(HashMap::new()),
        }
    }

    /// Every informer made by this factory resyncs each `period`.
    pub fn with_resync(mut self, period: Duration) -> SharedInformerFactory {
        self.resync = Some(period);
        self
    }

    /// The informer for every object of kind `K`.
    pub fn informer<K: Object>(&self) -> Arc<Informer<K>> {
        self.informer_for(None, ListParams::default())
    }

    /// The informer for kind `K` in `namespace` (None: all) with these
    /// selectors; the same one for the same arguments.
    pub fn informer_for<K: Object>(&self, namespace: Option<&str>, params: ListParams) -> Arc<Informer<K>> {
        let key = (TypeId::of::<K>(), namespace.map(str::to_string), params.clone());
        let mut informers = self.informers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((any, _)) = informers.get(&key) {
            if let Ok(informer) = any.clone().downcast::<Informer<K>>() {
                return informer;
            }
        }
        let api = match namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let informer = Informer::build(api, params, self.resync);
        let any: Arc<dyn Any + Send + Sync> = informer.clone();
        informers.insert(key, (any, Arc::new(Typed(informer.clone()))));
        informer
    }

    /// Starts every informer made so far that is not running yet.
    pub fn start(&self, stop: &CancellationToken) {
        let informers = self.informers.lock().unwrap_or_else(|p| p.into_inner());
        for (_, startable) in informers.values() {
            startable.start(stop.clone());
        }
    }

    /// Waits (at most `timeout`) until every informer has synced.
    pub async fn wait_for_sync(&self, timeout: Duration) -> bool {
        let receivers: Vec<_> = {
            let informers = self.informers.lock().unwrap_or_else(|p| p.into_inner());
            informers.values().map(|(_, s)| s.synced()).collect()
        };
        let all = async {
            for mut r in receivers {
                if r.wait_for(|s| *s).await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(timeout, all).await.unwrap_or(false)
    }
}
