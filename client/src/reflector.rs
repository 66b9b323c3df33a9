//! The reflector: List, then Watch, forever, into a consumer.
//!
//! This is the loop under every informer, as in client-go. It lists the
//! objects once (page by page, all pages at one version), hands the whole
//! list over, and watches from the list's resourceVersion so that nothing
//! between the list and the watch is missed. After that:
//!
//! - a watch that ends (the server's timeout, a dropped connection, an API
//!   server restart) is reopened from the last resourceVersion seen, so
//!   no event is lost and none is repeated;
//! - bookmarks move that resourceVersion forward even when nothing the
//!   watch selects changes, so a resume after a quiet hour is still cheap;
//! - 410 Gone (the version was compacted away) means the history is lost:
//!   list again and let the consumer work out the differences;
//! - other failures wait with exponential backoff and jitter;
//! - with a resync period, the consumer is told to revisit everything it
//!   holds every period, which lets controllers repair drift.

use std::time::Duration;

use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::api::{Api, ListParams, Object, WatchEvent};
use crate::backoff::Backoff;

/// What the reflector hands its consumer.
#[derive(Debug)]
pub enum Delta<K> {
    /// A complete list: the consumer's state should become exactly this.
    Replace(Vec<K>),
    /// An object added or modified.
    Upsert(K),
    /// An object deleted, in its final state.
    Delete(K),
    /// Time to revisit every object (the resync period passed).
    Resync,
}

/// List page size: big lists are read in pages of this many objects.
const PAGE: i64 = 500;

pub struct Reflector<K> {
    api: Api<K>,
    params: ListParams,
    resync: Option<Duration>,
    /// Server-side watch timeout, in seconds (randomised per watch, as
    /// client-go does, so that many watches do not all restart at once).
    watch_timeout: (i64, i64),
}

impl<K: Object> Reflector<K> {
    pub fn new(api: Api<K>, params: ListParams) -> Reflector<K> {
        Reflector {
            api,
            params,
            resync: None,
            watch_timeout: (300, 600),
        }
    }

    pub fn with_resync(mut self, period: Option<Duration>) -> Reflector<K> {
        self.resync = period.filter(|p| !p.is_zero());
        self
    }

    /// Runs until `stop`, feeding `sink`.
    pub async fn run(self, mut sink: impl FnMut(Delta<K>) + Send, stop: CancellationToken) {
        let what = K::URL_PATH_SEGMENT;
        let mut backoff = Backoff::new(Duration::from_millis(800), Duration::from_secs(30));
        // The version to resume from; None means "list first".
        let mut version: Option<String> = None;
        let period = self.resync.unwrap_or(Duration::from_secs(3600));
        let mut resync = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            if stop.is_cancelled() {
                return;
            }
            let rv = match &version {
                Some(rv) => rv.clone(),
                None => match self.api.list_all(&self.params, PAGE).await {
                    Ok(list) => {
                        tracing::debug!(resource = what, items = list.items.len(), rv = %list.resource_version, "listed");
                        sink(Delta::Replace(list.items));
                        version = Some(list.resource_version.clone());
                        list.resource_version
                    }
                    Err(e) => {
                        tracing::warn!(resource = what, error = %e, "list failed; retrying");
                        pause(&stop, backoff.next_delay()).await;
                        continue;
                    }
                },
            };
            let timeout = fastrand::i64(self.watch_timeout.0..=self.watch_timeout.1);
            let events = match self.api.watch(&self.params, &rv, timeout).await {
                Ok(events) => events,
                Err(e) if e.is_gone() => {
                    tracing::info!(resource = what, %rv, "watch version expired; relisting");
                    version = None;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(resource = what, error = %e, "watch failed; retrying");
                    pause(&stop, backoff.next_delay()).await;
                    continue;
                }
            };
            tokio::pin!(events);
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = resync.tick(), if self.resync.is_some() => {
                        sink(Delta::Resync);
                        continue;
                    }
                    next = events.next() => next,
                };
                match next {
                    // The server closed the watch: reopen from where we are.
                    None => break,
                    Some(Ok(event)) => {
                        backoff.reset();
                        let (delta, rv) = match event {
                            WatchEvent::Added(k) | WatchEvent::Modified(k) => {
                                let rv = k.metadata().resource_version.clone();
                                (Some(Delta::Upsert(k)), rv)
                            }
                            WatchEvent::Deleted(k) => {
                                let rv = k.metadata().resource_version.clone();
                                (Some(Delta::Delete(k)), rv)
                            }
                            WatchEvent::Bookmark(rv) => (None, Some(rv)),
                        };
                        if let Some(rv) = rv.filter(|v| !v.is_empty()) {
                            version = Some(rv);
                        }
                        if let Some(delta) = delta {
                            sink(delta);
                        }
                    }
                    Some(Err(e)) if e.is_gone() => {
                        tracing::info!(resource = what, error = %e, "watch expired; relisting");
                        version = None;
                        break;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(resource = what, error = %e, "watch broke; resuming");
                        pause(&stop, backoff.next_delay()).await;
                        break;
                    }
                }
            }
        }
    }
}

/// Sleeps, unless stopped first.
async fn pause(stop: &CancellationToken, delay: Duration) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(delay) => {}
    }
}
