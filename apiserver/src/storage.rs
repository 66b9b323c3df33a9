//! Storage: objects in the store, through the etcd v3 API.
//!
//! The API server is the only component that talks to the store, and it
//! does so as any etcd client would (the etcd-client crate), so it runs on
//! Kubernate's store or on a real etcd. Objects are JSON under
//! `/registry/<resource>/[<namespace>/]<name>`; an object's
//! resourceVersion is its key's mod revision, and writes are compare-and-
//! swap transactions on that revision, which is how optimistic concurrency
//! reaches the store.

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, KvClient, Txn, TxnOp, TxnOpResponse, WatchClient, WatchOptions,
};

/// What the store said, in the API server's terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    AlreadyExists,
    /// The object changed since the version the caller had.
    #[error("conflict")]
    Conflict,
    /// The revision asked for has been compacted away.
    #[error("revision {0} has been compacted")]
    Compacted(i64),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The store refused a value this large.
    #[error("the store refused the object as too large: {0}")]
    TooLarge(String),
}

/// Keys per range request when listing.
pub const LIST_PAGE: i64 = 1000;

/// The first key after every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

/// How long any one store call may take.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// One stored object: its JSON and its mod revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub revision: i64,
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Created (no `previous`) or modified, with the new value and, for
    /// a modification, the one before.
    Put { object: Stored, previous: Option<Stored> },
    /// Deleted: the last value, at the deletion's revision.
    Delete { object: Stored },
    /// Every change up to this revision has been delivered (the answer to
    /// a progress request): what a watch bookmark reports.
    Progress { revision: i64 },
}

/// The largest answer accepted from the store (etcd-client's default is
/// 4 MiB, less than one page of big objects).
const MAX_MESSAGE: usize = 1 << 30;

#[derive(Clone)]
pub struct Storage {
    kv: KvClient,
    watcher: WatchClient,
    /// etcd_request_duration_seconds, once the metrics exist.
    timings: Option<prometheus::HistogramVec>,
}

/// The object type a key belongs to, for metrics and spans:
/// `/registry/pods/ns/name` → `pods`, `/registry/services/specs/…` → `services`.
fn type_of(key: &[u8]) -> String {
    let text = String::from_utf8_lossy(key);
    let mut parts = text.trim_start_matches('/').split('/');
    let _registry = parts.next();
    parts.next().unwrap_or_default().to_string()
}

async fn bounded<T>(call: impl std::future::Future<Output = Result<T, etcd_client::Error>>) -> Result<T, StorageError> {
    match tokio::time::timeout(STORE_TIMEOUT, call).await {
        Err(_) => Err(StorageError::Unavailable("the store did not answer in time".into())),
        Ok(Err(e)) => {
            let text = e.to_string();
            if text.contains("required revision has been compacted") {
                Err(StorageError::Compacted(0))
            } else if text.contains("request is too large") || text.contains("message length too large") {
                // etcd's --max-request-bytes (1.5 MiB by default), or the
                // gRPC message limit in front of it.
                Err(StorageError::TooLarge(text))
            } else {
                Err(StorageError::Unavailable(text))
            }
        }
        Ok(Ok(v)) => Ok(v),
    }
}

impl Storage {
    pub fn new(client: Client) -> Self {
        Storage {
            kv: client.kv_client().max_decoding_message_size(MAX_MESSAGE),
            watcher: client.watch_client().max_decoding_message_size(MAX_MESSAGE),
            timings: None,
        }
    }

    /// The same storage, timing every call into `histogram`.
    pub fn with_timings(mut self, histogram: prometheus::HistogramVec) -> Self {
        self.timings = Some(histogram);
        self
    }

    /// Runs a store call in a span, timed.
    async fn timed<T>(
        &self,
        operation: &'static str,
        key: &[u8],
        call: impl std::future::Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        use tracing::Instrument;
        let kind = type_of(key);
        // info: exported with the request's span as its child.
        let span = tracing::info_span!("etcd", operation, r#type = %kind);
        let started = std::time::Instant::now();
        let result = call.instrument(span).await;
        if let Some(h) = &self.timings {
            h.with_label_values(&[operation, &kind])
                .observe(started.elapsed().as_secs_f64());
        }
        result
    }

    /// The store's current revision.
    pub async fn revision(&self) -> Result<i64, StorageError> {
        let options = GetOptions::new().with_count_only();
        let resp = self
            .timed(
                "revision",
                b"/registry",
                bounded(self.kv.clone().get("/registry", Some(options))),
            )
            .await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Whether the store still holds revision `revision` (not compacted
    /// away); a revision it has not reached yet counts as held.
    pub async fn holds(&self, revision: i64) -> Result<bool, StorageError> {
        let options = GetOptions::new().with_count_only().with_revision(revision);
        let mut kv = self.kv.clone();
        let call = bounded(kv.get("/registry", Some(options)));
        match self.timed("revision", b"/registry", call).await {
            Ok(_) => Ok(true),
            Err(StorageError::Compacted(_)) => Ok(false),
            Err(StorageError::Unavailable(e)) if e.contains("future revision") => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Drops the history before `revision` (etcd's physical compaction).
    pub async fn compact(&self, revision: i64) -> Result<(), StorageError> {
        let options = etcd_client::CompactionOptions::new().with_physical();
        self.timed(
            "compact",
            b"/registry",
            bounded(self.kv.clone().compact(revision, Some(options))),
        )
        .await
        .map(|_| ())
    }

    /// How many keys start with `prefix`.
    pub async fn count(&self, prefix: &[u8]) -> Result<i64, StorageError> {
        let options = GetOptions::new().with_prefix().with_count_only();
        let resp = self
            .timed("count", prefix, bounded(self.kv.clone().get(prefix, Some(options))))
            .await?;
        Ok(resp.count())
    }

    pub async fn get(&self, key: &[u8]) -> Result<Stored, StorageError> {
        let resp = self.timed("get", key, bounded(self.kv.clone().get(key, None))).await?;
        let kv = resp.kvs().first().ok_or(StorageError::NotFound)?;
        Ok(Stored {
            key: kv.key().to_vec(),
            value: kv.value().to_vec(),
            revision: kv.mod_revision(),
        })
    }

    /// Every object under `prefix` (at `revision`, 0 for the latest) and
    /// the revision the list was read at.
    ///
    /// The store is read in pages of [`LIST_PAGE`] keys, all at one
    /// revision, so that no single response outgrows a gRPC message (4 MiB
    /// by default) however many objects there are.
    pub async fn list(&self, prefix: &[u8], revision: i64) -> Result<(Vec<Stored>, i64), StorageError> {
        let end = prefix_end(prefix);
        let mut start = prefix.to_vec();
        let mut at = revision;
        let mut items = Vec::new();
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(LIST_PAGE);
            if at > 0 {
                options = options.with_revision(at);
            }
            let resp = self
                .timed(
                    "list",
                    prefix,
                    bounded(self.kv.clone().get(start.clone(), Some(options))),
                )
                .await?;
            if at <= 0 {
                at = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            items.extend(resp.kvs().iter().map(|kv| Stored {
                key: kv.key().to_vec(),
                value: kv.value().to_vec(),
                revision: kv.mod_revision(),
            }));
            match (resp.more(), resp.kvs().last()) {
                (true, Some(last)) => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => return Ok((items, at)),
            }
        }
    }

    /// Stores a new object; fails if the key exists.
    pub async fn create(&self, key: &[u8], value: Vec<u8>) -> Result<i64, StorageError> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        let resp = self.timed("create", key, bounded(self.kv.clone().txn(txn))).await?;
        if !resp.succeeded() {
            return Err(StorageError::AlreadyExists);
        }
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Replaces an object that must exist, only if its revision is still
    /// `expected` (when given).
    pub async fn update(&self, key: &[u8], value: Vec<u8>, expected: Option<i64>) -> Result<i64, StorageError> {
        let compare = match expected {
            Some(rev) => Compare::mod_revision(key, CompareOp::Equal, rev),
            None => Compare::create_revision(key, CompareOp::Greater, 0),
        };
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::put(key, value, None)])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.timed("update", key, bounded(self.kv.clone().txn(txn))).await?;
        if resp.succeeded() {
            return Ok(resp.header().map(|h| h.revision()).unwrap_or(0));
        }
        let exists = resp
            .op_responses()
            .iter()
            .any(|r| matches!(r, TxnOpResponse::Get(g) if !g.kvs().is_empty()));
        Err(if exists {
            StorageError::Conflict
        } else {
            StorageError::NotFound
        })
    }

    /// Deletes an object (only at revision `expected`, when given); returns
    /// its last value and the deletion's revision.
    pub async fn delete(&self, key: &[u8], expected: Option<i64>) -> Result<Stored, StorageError> {
        let current = self.get(key).await?;
        if let Some(rev) = expected {
            if rev != current.revision {
                return Err(StorageError::Conflict);
            }
        }
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, current.revision)])
            .and_then([TxnOp::delete(key, None)]);
        let resp = self.timed("delete", key, bounded(self.kv.clone().txn(txn))).await?;
        if !resp.succeeded() {
            return Err(StorageError::Conflict);
        }
        Ok(Stored {
            revision: resp.header().map(|h| h.revision()).unwrap_or(0),
            ..current
        })
    }

    /// Changes under `prefix` after `after` (a revision), in order. With
    /// `progress_every`, the store is asked that often (while the watch is
    /// quiet or not) how far it has delivered, and the answers arrive as
    /// [`Change::Progress`].
    pub async fn watch(
        &self,
        prefix: &[u8],
        after: i64,
        progress_every: Option<Duration>,
    ) -> Result<tokio::sync::mpsc::Receiver<Result<Change, StorageError>>, StorageError> {
        self.watch_on_request(prefix, after, progress_every, None).await
    }

    /// [`watch`](Self::watch), also asking the store for its progress
    /// whenever `requests` is notified: how a watch cache learns that it
    /// has seen everything up to the store's current revision even when
    /// nothing under its prefix changed.
    pub async fn watch_on_request(
        &self,
        prefix: &[u8],
        after: i64,
        progress_every: Option<Duration>,
        requests: Option<std::sync::Arc<tokio::sync::Notify>>,
    ) -> Result<tokio::sync::mpsc::Receiver<Result<Change, StorageError>>, StorageError> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_start_revision(after + 1);
        let mut stream = bounded(self.watcher.clone().watch(prefix, Some(options))).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            let period = progress_every.unwrap_or(Duration::from_secs(3600));
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                let requested = async {
                    match &requests {
                        Some(requests) => requests.notified().await,
                        None => std::future::pending().await,
                    }
                };
                let next = tokio::select! {
                    next = stream.message() => next,
                    _ = requested => {
                        if let Err(e) = stream.request_progress().await {
                            let _ = tx.send(Err(StorageError::Unavailable(e.to_string()))).await;
                            return;
                        }
                        continue;
                    }
                    _ = ticks.tick(), if progress_every.is_some() => {
                        if let Err(e) = stream.request_progress().await {
                            let _ = tx.send(Err(StorageError::Unavailable(e.to_string()))).await;
                            return;
                        }
                        continue;
                    }
                };
                let message = match next {
                    Ok(Some(m)) => m,
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(StorageError::Unavailable(e.to_string()))).await;
                        return;
                    }
                };
                if message.compact_revision() > 0 {
                    let _ = tx.send(Err(StorageError::Compacted(message.compact_revision()))).await;
                    return;
                }
                let progress = message.events().is_empty() && !message.created() && !message.canceled();
                if progress {
                    let revision = message.header().map(|h| h.revision()).unwrap_or(0);
                    if tx.send(Ok(Change::Progress { revision })).await.is_err() {
                        return;
                    }
                    continue;
                }
                for event in message.events() {
                    let Some(kv) = event.kv() else { continue };
                    let change = match event.event_type() {
                        EventType::Put => Change::Put {
                            object: Stored {
                                key: kv.key().to_vec(),
                                value: kv.value().to_vec(),
                                revision: kv.mod_revision(),
                            },
                            previous: event
                                .prev_kv()
                                .filter(|_| kv.create_revision() != kv.mod_revision())
                                .map(|p| Stored {
                                    key: p.key().to_vec(),
                                    value: p.value().to_vec(),
                                    revision: p.mod_revision(),
                                }),
                        },
                        EventType::Delete => Change::Delete {
                            object: Stored {
                                key: kv.key().to_vec(),
                                value: event.prev_kv().map(|p| p.value().to_vec()).unwrap_or_default(),
                                revision: kv.mod_revision(),
                            },
                        },
                    };
                    if tx.send(Ok(change)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }
}
