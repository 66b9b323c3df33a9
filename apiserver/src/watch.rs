//! The watch verb: a stream of ADDED, MODIFIED, DELETED, BOOKMARK and
//! ERROR events for the objects a request selects.
//!
//! The events come from the resource's watch cache ([`crate::watch_cache`]) when
//! it can serve the request, and from a store watch of the request's own
//! otherwise (a resourceVersion older than the cache's window, or a cache
//! still listing). Either way each change arrives as one [`Event`],
//! decoded once, and is turned into what this watcher sees here: filtered
//! by its keys and selectors, converted to its API version.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};

use crate::registry;
use crate::request_info::RequestInfo;
use crate::rest::App;
use crate::selector::Selector;
use crate::status::ApiError;
use crate::storage::StorageError;
use crate::verbs::{storage_error, Query, WatchEvent};
use crate::watch_cache::{Backlog, Event, Keys, Parsed};

type Result<T> = std::result::Result<T, ApiError>;

/// Changes as they reach one watcher, or the error that ends its watch.
type Events = Pin<Box<dyn Stream<Item = std::result::Result<Arc<Event>, ApiError>> + Send>>;

/// The keys a request covers: a collection (optionally one namespace) or
/// one named object.
pub fn keys(info: &RequestInfo) -> Keys {
    Keys {
        prefix: info.key().into_bytes(),
        exact: info.name.is_some(),
    }
}

/// What a watcher asked for, from its selectors.
struct Filter {
    labels: Selector,
    fields: Selector,
    keys: Keys,
    bookmarks: bool,
}

impl Filter {
    fn selects(&self, object: &Value) -> bool {
        self.labels.matches_labels(object) && self.fields.matches_fields(object)
    }

    fn selects_all(&self) -> bool {
        self.labels == Selector::default() && self.fields == Selector::default()
    }
}

/// An object as this watcher's API version shows it.
fn present(info: &RequestInfo, parsed: &Parsed) -> Result<Value> {
    let value = parsed
        .value
        .clone()
        .map_err(|e| ApiError::internal(format!("stored {} is not JSON: {e}", info.resource.plural)))?;
    let object = crate::conversion::from_storage(info, value);
    Ok(registry::with_version(object, parsed.revision))
}

/// The event this watcher sees for `event`, if any. With selectors, an
/// object that starts matching is ADDED and one that stops matching is
/// DELETED, as kube-apiserver does it, so a filtered cache never keeps an
/// object it should not hold.
fn seen_as(info: &RequestInfo, filter: &Filter, event: &Event) -> Option<WatchEvent> {
    if let Event::InitialEventsEnd { revision } = event {
        return Some((
            "BOOKMARK",
            json!({
                "kind": info.resource.kind,
                "apiVersion": info.resource.api_version(),
                "metadata": {
                    "resourceVersion": revision.to_string(),
                    "annotations": {"k8s.io/initial-events-end": "true"},
                },
            }),
        ));
    }
    if let Event::Progress { revision } = event {
        // A bookmark: only the kind and the version the watch has reached.
        return filter.bookmarks.then(|| {
            (
                "BOOKMARK",
                json!({
                    "kind": info.resource.kind,
                    "apiVersion": info.resource.api_version(),
                    "metadata": {"resourceVersion": revision.to_string()},
                }),
            )
        });
    }
    if !event.key().is_some_and(|k| filter.keys.contains(k)) {
        return None;
    }
    match event {
        Event::Put { object, previous } => {
            let new = match present(info, object) {
                Ok(o) => o,
                Err(e) => return Some(("ERROR", e.status())),
            };
            let was = match previous {
                Some(_) if filter.selects_all() => true,
                Some(p) => present(info, &Parsed::of(p))
                    .map(|o| filter.selects(&o))
                    .unwrap_or(false),
                None => false,
            };
            match (was, filter.selects(&new)) {
                (false, true) => Some(("ADDED", new)),
                (true, true) => Some(("MODIFIED", new)),
                (true, false) => Some(("DELETED", new)),
                (false, false) => None,
            }
        }
        Event::Delete { object } => match present(info, object) {
            Ok(o) if filter.selects(&o) => Some(("DELETED", o)),
            Ok(_) => None,
            Err(e) => Some(("ERROR", e.status())),
        },
        Event::Progress { .. } | Event::InitialEventsEnd { .. } => None,
    }
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy)]
enum Start {
    /// With the objects as they are (ADDED events), at a state including
    /// revision `at_least` (`None`: every acknowledged write, a consistent
    /// read); `end_marker`: then a bookmark saying the initial events are
    /// over (`sendInitialEvents=true`, client-go's streaming list).
    State { at_least: Option<i64>, end_marker: bool },
    /// After revision `after` (the changes since).
    After(i64),
}

/// The bookmark that ends a streaming list's initial events.
fn end_of_initial_events(revision: i64) -> Arc<Event> {
    Arc::new(Event::InitialEventsEnd { revision })
}

/// The current objects as ADDED changes, then whatever comes next.
fn added(items: impl IntoIterator<Item = Arc<crate::storage::Stored>>) -> Vec<Arc<Event>> {
    items
        .into_iter()
        .map(|stored| {
            Arc::new(Event::Put {
                object: Parsed::of(&stored),
                previous: None,
            })
        })
        .collect()
}

/// The watch from the cache, when it can serve it: the changes to replay
/// (or the current objects), then its live feed.
async fn from_cache(app: &App, info: &RequestInfo, keys: &Keys, start: Start) -> Result<Option<Events>> {
    let Some(cache) = app.watch_cache.serving(&info.resource.storage_prefix()) else {
        return Ok(None);
    };
    // The revision the cache must have reached before it answers.
    let needed = match start {
        // The current state must include every acknowledged write.
        Start::State { at_least: None, .. } => {
            Some(app.storage.revision().await.map_err(|e| storage_error(info, "", e))?)
        }
        Start::State { at_least, .. } => at_least.filter(|rv| *rv > 0),
        // Resuming from a version the cache has not reached yet (a client
        // that just wrote, or read from another API server).
        Start::After(after) => Some(after),
    };
    if let Some(needed) = needed {
        if !cache.wait_for(needed).await {
            return Ok(None);
        }
    }
    let after = match start {
        Start::After(after) => {
            // The window may reach further back than the store's compacted
            // history; a version the store no longer has is a 410 all the
            // same (the store watch reports it), so that the answer does
            // not depend on which path serves the watch.
            if !app.storage.holds(after + 1).await.unwrap_or(false) {
                return Ok(None);
            }
            Some(after)
        }
        Start::State { .. } => None,
    };
    let Some(subscription) = cache.subscribe(keys, after) else {
        return Ok(None);
    };
    let floor = subscription.floor;
    let mut backlog = match subscription.backlog {
        Backlog::State(items) => added(items),
        Backlog::Changes(changes) => changes,
    };
    if let Start::State { end_marker: true, .. } = start {
        backlog.push(end_of_initial_events(floor));
    }
    // A watcher that falls too far behind is dropped; it resumes from its
    // last resourceVersion like after any ended watch.
    let live = tokio_stream::wrappers::BroadcastStream::new(subscription.live)
        .map_while(|r| r.ok())
        .filter(move |event| event.revision() > floor);
    let events = tokio_stream::iter(backlog).chain(live).map(Ok);
    Ok(Some(Box::pin(events)))
}

/// The watch from a store watch of its own.
async fn from_store(app: &App, info: &RequestInfo, start: Start, bookmarks: bool) -> Result<Events> {
    let prefix = info.key();
    let (initial, after) = match start {
        Start::After(rv) => (Vec::new(), rv),
        // The current state first, as ADDED events.
        Start::State { end_marker, .. } => {
            let (items, at) = app
                .storage
                .list(prefix.as_bytes(), 0)
                .await
                .map_err(|e| storage_error(info, "", e))?;
            let mut initial = added(items.into_iter().map(Arc::new));
            if end_marker {
                initial.push(end_of_initial_events(at));
            }
            (initial, at)
        }
    };
    let changes = app
        .storage
        .watch(prefix.as_bytes(), after, bookmarks.then_some(app.bookmark_interval))
        .await
        .map_err(|e| storage_error(info, "", e))?;
    let live = tokio_stream::wrappers::ReceiverStream::new(changes).map(move |change| match change {
        Ok(change) => Ok(Arc::new(Event::of(&change))),
        Err(StorageError::Compacted(rev)) => Err(ApiError::gone(format!("too old resource version: {after} ({rev})"))),
        Err(e) => Err(ApiError::unavailable(e.to_string())),
    });
    Ok(Box::pin(tokio_stream::iter(initial).map(Ok).chain(live)))
}

/// A watch: events until the receiver goes, the timeout ends, or the start
/// version is too old (an ERROR event carrying a 410 Status).
pub async fn watch(app: &App, info: &RequestInfo, query: &Query) -> Result<mpsc::Receiver<WatchEvent>> {
    let (labels, fields) = crate::verbs::selectors(info, query)?;
    let filter = Filter {
        labels,
        fields,
        keys: keys(info),
        bookmarks: query.flag("allowWatchBookmarks"),
    };
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let asked = match query.get("resourceVersion").filter(|rv| !rv.is_empty()) {
        Some(rv) => Some(
            rv.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
        None => None,
    };
    let initial_events = match query.get("sendInitialEvents") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(ApiError::bad_request(format!("invalid sendInitialEvents {other:?}"))),
    };
    if initial_events && (query.get("resourceVersionMatch") != Some("NotOlderThan") || !filter.bookmarks) {
        return Err(ApiError::invalid(
            "WatchList",
            "",
            "sendInitialEvents",
            "sendInitialEvents requires resourceVersionMatch=NotOlderThan and allowWatchBookmarks=true",
        ));
    }
    let start = match asked {
        None => Start::State {
            at_least: None,
            end_marker: initial_events,
        },
        Some(rv) if rv == 0 || initial_events => Start::State {
            at_least: Some(rv),
            end_marker: initial_events,
        },
        Some(rv) => Start::After(rv),
    };
    let mut events = match from_cache(app, info, &filter.keys, start).await? {
        Some(found) => found,
        None => from_store(app, info, start, filter.bookmarks).await?,
    };
    let info = info.clone();
    let (tx, rx) = mpsc::channel::<WatchEvent>(64);
    let registered = app.metrics.watcher(info.resource);
    tokio::spawn(async move {
        let _registered = registered;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            let next = tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                next = events.next() => match next {
                    Some(event) => event,
                    None => return,
                },
            };
            let (kind, object) = match next {
                Ok(event) => match seen_as(&info, &filter, &event) {
                    Some(seen) => seen,
                    None => continue,
                },
                Err(e) => ("ERROR", e.status()),
            };
            if tx.send((kind, object)).await.is_err() || kind == "ERROR" {
                return;
            }
        }
    });
    Ok(rx)
}
