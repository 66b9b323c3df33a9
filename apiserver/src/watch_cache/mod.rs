//! The watch cache: lists and watches served from memory.
//!
//! Without it every `kubectl get`, every informer's list and every watch
//! goes to the store, and a thousand watchers of pods mean a thousand
//! store watches, each decoding every pod change again. kube-apiserver's
//! answer, repeated here, is one cache per resource: list the store once,
//! follow it with one watch, and keep
//!
//! - the current objects (what a list returns), and
//! - a window of recent changes (what a watch from a recent
//!   resourceVersion replays before it goes live),
//!
//! then hand every change, decoded once, to all watchers of the resource
//! at the same time.
//!
//! Reads stay consistent. A list without a resourceVersion must see every
//! write acknowledged before it, so it first asks the store for its
//! current revision (one cheap call) and waits until the cache has caught
//! up to it; if nothing under the prefix changed since, the cache's store
//! watch is asked for a progress report, which carries the store's
//! revision. `resourceVersion=0` ("any") is served at once; a
//! resourceVersion waits until the cache has reached it. What the cache
//! cannot answer goes to the store as before: exact-version lists, the
//! pages after the first (`continue`), watches from a version older than
//! the window, and everything while the cache is (re)listing after losing
//! its store watch. A cache is started by the first list or watch of its
//! resource and serves from its first complete list on.

mod window;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{broadcast, watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::storage::{Change, Storage, Stored};
pub use window::Window;

/// How long a consistent read waits for the cache to catch up before it
/// goes to the store instead.
pub const CATCH_UP: Duration = Duration::from_secs(3);

/// How often a waiting reader repeats its progress request (the store
/// answers one only when the watch has delivered everything).
const PROGRESS_RETRY: Duration = Duration::from_millis(50);

/// Changes kept per resource for watches that resume from a recent
/// version (kube-apiserver sizes its window between 100 and ~100,000).
pub const WINDOW: usize = 1000;

/// Changes a slow watcher may fall behind before it is dropped (it then
/// resumes from its last resourceVersion, as any client does when a
/// watch ends).
const FAN_OUT_BUFFER: usize = 1024;

/// One stored object, decoded once for all watchers.
#[derive(Debug)]
pub struct Parsed {
    pub key: Vec<u8>,
    pub revision: i64,
    /// The object as stored (storage version, no resourceVersion), or
    /// why it could not be decoded.
    pub value: Result<Value, String>,
}

impl Parsed {
    pub fn of(stored: &Stored) -> Parsed {
        Parsed {
            key: stored.key.clone(),
            revision: stored.revision,
            value: serde_json::from_slice(&stored.value).map_err(|e| e.to_string()),
        }
    }
}

/// A change as watchers see it.
#[derive(Debug)]
pub enum Event {
    /// Created (no `previous`) or modified. The previous value stays
    /// undecoded: only watchers with selectors look at it.
    Put { object: Parsed, previous: Option<Stored> },
    /// Deleted: the last value, at the deletion's revision.
    Delete { object: Parsed },
    /// Everything up to this revision has been seen (a bookmark).
    Progress { revision: i64 },
    /// A streaming list's initial objects have all been sent (made for
    /// one watcher, never broadcast).
    InitialEventsEnd { revision: i64 },
}

impl Event {
    /// Decodes a store change.
    pub fn of(change: &Change) -> Event {
        match change {
            Change::Put { object, previous } => Event::Put {
                object: Parsed::of(object),
                previous: previous.clone(),
            },
            Change::Delete { object } => Event::Delete {
                object: Parsed::of(object),
            },
            Change::Progress { revision } => Event::Progress { revision: *revision },
        }
    }

    /// The revision the change happened at.
    pub fn revision(&self) -> i64 {
        match self {
            Event::Put { object, .. } | Event::Delete { object } => object.revision,
            Event::Progress { revision } | Event::InitialEventsEnd { revision } => *revision,
        }
    }

    /// The key changed, `None` for progress.
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            Event::Put { object, .. } | Event::Delete { object } => Some(&object.key),
            Event::Progress { .. } | Event::InitialEventsEnd { .. } => None,
        }
    }
}

/// Which keys a request reads: a whole resource, one namespace of it
/// (`/registry/pods/web/`), or one object (`/registry/pods/web/front`).
#[derive(Debug, Clone)]
pub struct Keys {
    pub prefix: Vec<u8>,
    pub exact: bool,
}

impl Keys {
    pub fn contains(&self, key: &[u8]) -> bool {
        if self.exact {
            key == self.prefix.as_slice()
        } else {
            key.starts_with(&self.prefix)
        }
    }
}

/// What a watch gets from the cache: the changes it must replay (or the
/// objects it must be told about first), then the live feed.
pub struct Subscription {
    pub backlog: Backlog,
    /// The revision the backlog brings the watcher to: live changes at or
    /// below it are already covered.
    pub floor: i64,
    pub live: broadcast::Receiver<Arc<Event>>,
}

pub enum Backlog {
    /// The current objects, to be sent as ADDED.
    State(Vec<Arc<Stored>>),
    /// The buffered changes after the watch's resourceVersion.
    Changes(Vec<Arc<Event>>),
}

/// Everything a cache holds, behind one lock so that a reader sees the
/// objects, the window and the live feed at the same revision.
struct State {
    /// Serving: the first list is complete and the store watch is live.
    ready: bool,
    /// When watchers were last sent a bookmark: progress reports answer
    /// readers' requests far more often than watchers want bookmarks.
    last_bookmark: tokio::time::Instant,
    bookmarks: Duration,
    revision: i64,
    objects: BTreeMap<Vec<u8>, Arc<Stored>>,
    window: Window,
    fan_out: broadcast::Sender<Arc<Event>>,
}

/// The cache of one resource (one storage prefix).
pub struct WatchCache {
    prefix: Vec<u8>,
    state: Mutex<State>,
    /// The revision the cache has reached, for readers waiting on it.
    reached: watch::Sender<i64>,
    /// Rung by readers who need a progress report from the store.
    progress: Arc<Notify>,
}

impl WatchCache {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; go on.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until the cache has seen revision `revision`; false if it
    /// did not within [`CATCH_UP`] (or stopped serving meanwhile).
    pub async fn wait_for(&self, revision: i64) -> bool {
        let mut reached = self.reached.subscribe();
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        loop {
            if *reached.borrow_and_update() >= revision {
                return self.lock().ready;
            }
            self.progress.notify_one();
            let retry = tokio::time::Instant::now() + PROGRESS_RETRY;
            tokio::select! {
                changed = reached.changed() => if changed.is_err() { return false },
                _ = tokio::time::sleep_until(retry.min(deadline)) => {
                    if tokio::time::Instant::now() >= deadline {
                        return false;
                    }
                }
            }
        }
    }

    /// The objects under `keys` and the revision they are current at;
    /// `None` while the cache is not serving.
    pub fn list(&self, keys: &Keys) -> Option<(Vec<Arc<Stored>>, i64)> {
        let state = self.lock();
        state.ready.then(|| objects_under(&state, keys))
    }

    /// A watch from the current state (`after: None`: the objects first)
    /// or from revision `after` (the buffered changes after it); `None`
    /// when the cache is not serving or no longer holds every change
    /// after `after`.
    pub fn subscribe(&self, keys: &Keys, after: Option<i64>) -> Option<Subscription> {
        let state = self.lock();
        if !state.ready {
            return None;
        }
        let (backlog, floor) = match after {
            None => (Backlog::State(objects_under(&state, keys).0), state.revision),
            Some(after) => (Backlog::Changes(state.window.after(after)?), after.max(state.revision)),
        };
        Some(Subscription {
            backlog,
            floor,
            live: state.fan_out.subscribe(),
        })
    }

    /// Applies one change from the store and hands it to the watchers.
    fn apply(&self, change: Change) {
        let event = Arc::new(Event::of(&change));
        let revision = event.revision();
        let mut state = self.lock();
        match change {
            Change::Put { object, .. } => {
                state.objects.insert(object.key.clone(), Arc::new(object));
                state.window.push(event.clone());
            }
            Change::Delete { object } => {
                state.objects.remove(&object.key);
                state.window.push(event.clone());
            }
            Change::Progress { .. } => {}
        }
        state.revision = state.revision.max(revision);
        let reached = state.revision;
        let progress = matches!(*event, Event::Progress { .. });
        if progress && state.last_bookmark.elapsed() < state.bookmarks {
            // Only a reader waiting for the revision wanted this one.
        } else {
            if progress {
                state.last_bookmark = tokio::time::Instant::now();
            }
            // No receivers is fine: nobody is watching right now.
            let _ = state.fan_out.send(event);
        }
        drop(state);
        self.reached.send_if_modified(|r| {
            let moved = *r < reached;
            *r = (*r).max(reached);
            moved
        });
    }

    /// Starts over from a fresh list: every watcher of the old feed is
    /// ended (their next resume is served from the new state).
    fn reset(&self, items: Vec<Stored>, revision: i64) {
        let mut state = self.lock();
        state.objects = items.into_iter().map(|s| (s.key.clone(), Arc::new(s))).collect();
        state.revision = revision;
        state.window = Window::starting_at(revision, WINDOW);
        state.fan_out = broadcast::channel(FAN_OUT_BUFFER).0;
        state.ready = true;
        drop(state);
        // The store may have been restored to an older revision: what was
        // reached before means nothing now.
        self.reached.send_replace(revision);
    }

    fn stop_serving(&self) {
        let mut state = self.lock();
        state.ready = false;
        state.fan_out = broadcast::channel(1).0;
    }
}

/// The objects of `state` under `keys` at its revision.
fn objects_under(state: &State, keys: &Keys) -> (Vec<Arc<Stored>>, i64) {
    let items = state
        .objects
        .range(keys.prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&keys.prefix))
        .filter(|(k, _)| keys.contains(k))
        .map(|(_, v)| v.clone())
        .collect();
    (items, state.revision)
}

/// Lists the prefix, follows it, and lists again whenever the store watch
/// ends (an error, a compaction, a store restart).
async fn follow(cache: Arc<WatchCache>, storage: Storage, bookmarks: Duration, stop: CancellationToken) {
    let prefix = String::from_utf8_lossy(&cache.prefix).to_string();
    loop {
        if stop.is_cancelled() {
            return;
        }
        let started = async {
            let (items, at) = storage.list(&cache.prefix, 0).await?;
            let changes = storage
                .watch_on_request(&cache.prefix, at, Some(bookmarks), Some(cache.progress.clone()))
                .await?;
            Ok::<_, crate::storage::StorageError>((items, at, changes))
        };
        let (items, at, mut changes) = match started.await {
            Ok(started) => started,
            Err(e) => {
                tracing::warn!(prefix, error = %e, "watch cache cannot list; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        cache.reset(items, at);
        tracing::debug!(prefix, revision = at, "watch cache serving");
        loop {
            let change = tokio::select! {
                _ = stop.cancelled() => return,
                change = changes.recv() => change,
            };
            match change {
                Some(Ok(change)) => cache.apply(change),
                Some(Err(e)) => {
                    tracing::info!(prefix, error = %e, "watch cache lost its store watch; relisting");
                    break;
                }
                None => break,
            }
        }
        cache.stop_serving();
    }
}

/// Every resource's cache, started on first use.
pub struct Caches {
    /// Off (`--watch-cache=false`): nothing is ever served from memory.
    enabled: bool,
    storage: Storage,
    bookmarks: Duration,
    stop: CancellationToken,
    caches: Mutex<HashMap<Vec<u8>, Arc<WatchCache>>>,
}

impl Caches {
    /// Caches over `storage`; their store watches report progress every
    /// `bookmarks` (what watchers that allow bookmarks get) and end with
    /// `stop`.
    pub fn new(enabled: bool, storage: Storage, bookmarks: Duration, stop: CancellationToken) -> Caches {
        Caches {
            enabled,
            storage,
            bookmarks,
            stop,
            caches: Mutex::new(HashMap::new()),
        }
    }

    /// The serving cache whose prefix holds `key`, if one was started
    /// (this never starts one).
    pub fn serving_for_key(&self, key: &str) -> Option<Arc<WatchCache>> {
        if !self.enabled {
            return None;
        }
        let caches = self.caches.lock().unwrap_or_else(|p| p.into_inner());
        let cache = caches
            .iter()
            .find(|(prefix, _)| key.as_bytes().starts_with(prefix))
            .map(|(_, c)| c.clone())?;
        drop(caches);
        let ready = cache.lock().ready;
        ready.then_some(cache)
    }

    /// The cache of the resource stored under `prefix`, if it is serving;
    /// the first call starts it.
    pub fn serving(&self, prefix: &str) -> Option<Arc<WatchCache>> {
        if !self.enabled {
            return None;
        }
        let cache = {
            let mut caches = self.caches.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(cache) = caches.get(prefix.as_bytes()) {
                cache.clone()
            } else {
                let cache = Arc::new(WatchCache {
                    prefix: prefix.as_bytes().to_vec(),
                    state: Mutex::new(State {
                        ready: false,
                        last_bookmark: tokio::time::Instant::now(),
                        bookmarks: self.bookmarks,
                        revision: 0,
                        objects: BTreeMap::new(),
                        window: Window::starting_at(0, WINDOW),
                        fan_out: broadcast::channel(1).0,
                    }),
                    reached: watch::channel(0).0,
                    progress: Arc::new(Notify::new()),
                });
                caches.insert(prefix.as_bytes().to_vec(), cache.clone());
                tokio::spawn(follow(
                    cache.clone(),
                    self.storage.clone(),
                    self.bookmarks,
                    self.stop.clone(),
                ));
                return None;
            }
        };
        let ready = cache.lock().ready;
        ready.then_some(cache)
    }
}
