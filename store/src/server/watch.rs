//! The Watch service: a bidirectional stream carrying many watchers.
//!
//! Each watcher first replays history from its start revision (from the
//! MVCC keyspace), then follows the events the state machine publishes as
//! it applies commands. It subscribes to those before reading history, and
//! skips live events at or below the revision history covered, so nothing
//! is lost or sent twice in the hand-over. A watcher that falls behind the
//! live feed catches up from history again; one whose start revision has
//! been compacted away gets etcd's compacted response and is cancelled.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::proto::{PbEvent, PbWatchRequest, PbWatchRequestUnion, PbWatchResponse, PbWatchService};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::{wrappers::ReceiverStream, Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::mvcc;
use crate::node::Node;

/// `WatchCreateRequest.FilterType`.
const FILTER_NOPUT: i32 = 0;
const FILTER_NODELETE: i32 = 1;
/// `mvccpb.Event.EventType`.
const EVENT_PUT: i32 = 0;
/// How many history events go into one response.
const REPLAY_CHUNK: usize = 1000;
/// How often an idle watcher with `progress_notify` hears the current
/// revision, unless `--experimental-watch-progress-notify-interval` says.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(600);

pub struct WatchService {
    pub node: Arc<Node>,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<PbWatchResponse, Status>> + Send>>;

/// What one watcher asked for.
#[derive(Debug, Clone)]
pub struct Spec {
    id: i64,
    key: Vec<u8>,
    range_end: Vec<u8>,
    start_revision: i64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    fragment: bool,
}

impl Spec {
    /// A watcher from the gateway's JSON `create_request` (watch id 0).
    pub fn from_json(i: &crate::gateway::json::In<'_>) -> Result<Spec, String> {
        let filters: Vec<i32> = match i.0.get("filters") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|f| match f.as_str() {
                    Some("NOPUT") => Ok(FILTER_NOPUT),
                    Some("NODELETE") => Ok(FILTER_NODELETE),
                    _ => f
                        .as_i64()
                        .filter(|n| *n == 0 || *n == 1)
                        .map(|n| n as i32)
                        .ok_or_else(|| format!("unknown watch filter {f}")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("field \"filters\" must be a list".into()),
        };
        Ok(Spec {
            id: i.int("watch_id")?,
            key: i.bytes("key")?,
            range_end: i.bytes("range_end")?,
            start_revision: i.int("start_revision")?,
            prev_kv: i.boolean("prev_kv")?,
            no_put: filters.contains(&FILTER_NOPUT),
            no_delete: filters.contains(&FILTER_NODELETE),
            progress_notify: i.boolean("progress_notify")?,
            fragment: i.boolean("fragment")?,
        })
    }

    /// The events of `events` this watcher wants, shaped as it asked.
    fn select(&self, events: &[PbEvent]) -> Vec<PbEvent> {
        events
            .iter()
            .filter(|e| {
                let key = e.kv.as_ref().map(|kv| kv.key.as_slice()).unwrap_or_default();
                mvcc::in_range(key, &self.key, &self.range_end)
                    && !(self.no_put && e.r#type == EVENT_PUT)
                    && !(self.no_delete && e.r#type != EVENT_PUT)
            })
            .map(|e| {
                let mut e = e.clone();
                if !self.prev_kv {
                    e.prev_kv = None;
                }
                e
            })
            .collect()
    }
}

#[tonic::async_trait]
impl PbWatchService for WatchService {
    type WatchStream = WatchStream;

    async fn watch(&self, request: Request<Streaming<PbWatchRequest>>) -> Result<Response<WatchStream>, Status> {
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel::<Result<PbWatchResponse, Status>>(256);
        let node = self.node.clone();
        tokio::spawn(async move {
            let stream_done = CancellationToken::new();
            let mut watchers: HashMap<i64, Handle> = HashMap::new();
            let mut next_id: i64 = 0;
            // Progress requests are answered in order by one task, so the
            // stream can go on serving creates and cancels meanwhile.
            let (progress, requests) = mpsc::unbounded_channel();
            tokio::spawn(answer_progress(node.clone(), tx.clone(), requests));
            while let Some(message) = incoming.next().await {
                let Ok(message) = message else { break };
                match message.request_union {
                    Some(PbWatchRequestUnion::CreateRequest(create)) => {
                        let id = if create.watch_id == 0 {
                            while watchers.contains_key(&next_id) {
                                next_id += 1;
                            }
                            next_id
                        } else {
                            create.watch_id
                        };
                        if watchers.contains_key(&id) {
                            // etcd answers with id -1 and its mvcc error.
                            let resp = PbWatchResponse {
                                header: Some(node.header(node.revision())),
                                watch_id: -1,
                                created: true,
                                canceled: true,
                                cancel_reason: "mvcc: duplicate watch ID provided on the WatchStream".into(),
                                ..Default::default()
                            };
                            if tx.send(Ok(resp)).await.is_err() {
                                break;
                            }
                            continue;
                        }
                        let spec = Spec {
                            id,
                            key: create.key,
                            range_end: create.range_end,
                            start_revision: create.start_revision,
                            prev_kv: create.prev_kv,
                            no_put: create.filters.contains(&FILTER_NOPUT),
                            no_delete: create.filters.contains(&FILTER_NODELETE),
                            progress_notify: create.progress_notify,
                            fragment: create.fragment,
                        };
                        // Answered here, in request order, before any event.
                        let registered = spec.register(&node);
                        if tx.send(Ok(registered.created.clone())).await.is_err() {
                            break;
                        }
                        let cancel = stream_done.child_token();
                        let (delivered, delivered_rx) = tokio::sync::watch::channel(0);
                        watchers.insert(
                            id,
                            Handle {
                                cancel: cancel.clone(),
                                delivered: delivered_rx,
                            },
                        );
                        tokio::spawn(run_watcher(
                            node.clone(),
                            spec,
                            registered,
                            tx.clone(),
                            cancel,
                            delivered,
                        ));
                    }
                    Some(PbWatchRequestUnion::CancelRequest(c)) => {
                        if let Some(handle) = watchers.remove(&c.watch_id) {
                            handle.cancel.cancel();
                            let resp = PbWatchResponse {
                                header: Some(node.header(node.revision())),
                                watch_id: c.watch_id,
                                canceled: true,
                                ..Default::default()
                            };
                            if tx.send(Ok(resp)).await.is_err() {
                                break;
                            }
                        }
                    }
                    Some(PbWatchRequestUnion::ProgressRequest(_)) => {
                        let revision = node.revision();
                        let delivered: Vec<_> = watchers.values().map(|h| h.delivered.clone()).collect();
                        if progress.send((revision, delivered)).is_err() {
                            break;
                        }
                    }
                    None => {}
                }
            }
            stream_done.cancel();
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// What the stream keeps of each of its watchers.
struct Handle {
    cancel: CancellationToken,
    /// The revision up to which the watcher has sent every event it wants.
    delivered: tokio::sync::watch::Receiver<i64>,
}

/// Answers each progress request once every watcher of the stream has sent
/// its events up to the revision the request found, so the answer promises
/// what it says: no event at or below it is still to come (what the API
/// server's watch cache relies on for consistent reads). Watchers that
/// ended are not waited for. Like etcd, a stream whose watchers do not
/// catch up in time (the request timeout) gets no answer; the client asks
/// again.
async fn answer_progress(node: Arc<Node>, tx: Sender, mut requests: mpsc::UnboundedReceiver<ProgressRequest>) {
    while let Some((revision, delivered)) = requests.recv().await {
        let caught_up = async {
            for mut watcher in delivered {
                let _ = watcher.wait_for(|r| *r >= revision).await;
            }
        };
        if tokio::time::timeout(node.limits.request_timeout, caught_up)
            .await
            .is_err()
        {
            tracing::debug!(revision, "watchers did not catch up; progress request unanswered");
            continue;
        }
        let resp = PbWatchResponse {
            header: Some(node.header(revision)),
            watch_id: -1,
            ..Default::default()
        };
        if tx.send(Ok(resp)).await.is_err() {
            return;
        }
    }
}

/// A progress request: the revision to report, and each watcher's progress.
type ProgressRequest = (i64, Vec<tokio::sync::watch::Receiver<i64>>);

/// Where a watcher sends its responses.
pub type Sender = mpsc::Sender<Result<PbWatchResponse, Status>>;

/// Sends `events` for watcher `spec`, fragmenting when asked and needed.
async fn send_events(node: &Node, spec: &Spec, tx: &Sender, revision: i64, events: Vec<PbEvent>) -> bool {
    if events.is_empty() {
        return true;
    }
    let header = Some(node.header(revision));
    // Room for the rest of the response (header, ids, flags).
    let limit = node.limits.max_request_bytes.saturating_sub(256);
    let mut chunks: Vec<Vec<PbEvent>> = Vec::new();
    if spec.fragment {
        let mut current = Vec::new();
        let mut size = 0usize;
        for e in events {
            // The event's field tag and length prefix count too.
            let len = prost::encoding::message::encoded_len(11, &e);
            if !current.is_empty() && size + len > limit {
                chunks.push(std::mem::take(&mut current));
                size = 0;
            }
            size += len;
            current.push(e);
        }
        chunks.push(current);
    } else {
        chunks.push(events);
    }
    let last = chunks.len() - 1;
    for (i, events) in chunks.into_iter().enumerate() {
        let resp = PbWatchResponse {
            header,
            watch_id: spec.id,
            fragment: i < last,
            events,
            ..Default::default()
        };
        if tx.send(Ok(resp)).await.is_err() {
            return false;
        }
    }
    true
}

/// Replays history from `from` (inclusive); returns the revision covered,
/// or `None` when the watcher had to be cancelled or the stream is gone.
async fn replay(node: &Node, spec: &Spec, tx: &Sender, from: i64) -> Option<i64> {
    let history = {
        let state = node.sm.state.read().ok()?;
        let current = state.kv.revision();
        if from > current {
            return Some(current);
        }
        state
            .kv
            .events_since(from, &spec.key, &spec.range_end, spec.prev_kv)
            .map(|events| (events, current))
            .map_err(|_| (state.kv.compact_revision(), current))
    };
    let (history, current) = match history {
        Ok(found) => found,
        Err((compacted, current)) => {
            let resp = PbWatchResponse {
                header: Some(node.header(current)),
                watch_id: spec.id,
                canceled: true,
                // etcd says no more than the compact revision.
                compact_revision: compacted,
                ..Default::default()
            };
            let _ = tx.send(Ok(resp)).await;
            return None;
        }
    };
    let selected = spec.select(&history);
    for chunk in selected.chunks(REPLAY_CHUNK) {
        // etcd's header says where the store is, not where the events are.
        if !send_events(node, spec, tx, current, chunk.to_vec()).await {
            return None;
        }
    }
    Some(current)
}

/// A watcher that exists: subscribed to live events, with its start
/// revision fixed, and the `created` answer to send before anything else.
/// Both are settled before the client hears `created`, so a write the client
/// makes after that answer is always seen.
pub struct Registered {
    live: broadcast::Receiver<Arc<crate::raft::state_machine::EventBatch>>,
    start: i64,
    pub created: PbWatchResponse,
}

impl Spec {
    pub fn register(&self, node: &Node) -> Registered {
        let live = node.sm.subscribe();
        let current = node.revision();
        let start = if self.start_revision > 0 {
            self.start_revision
        } else {
            current + 1
        };
        let created = PbWatchResponse {
            header: Some(node.header(current)),
            watch_id: self.id,
            created: true,
            ..Default::default()
        };
        Registered { live, start, created }
    }
}

/// Runs one watcher until `cancel`, the stream closing, or a compaction,
/// publishing in `delivered` the revision up to which it has sent events.
pub async fn run_watcher(
    node: Arc<Node>,
    spec: Spec,
    registered: Registered,
    tx: Sender,
    cancel: CancellationToken,
    delivered: tokio::sync::watch::Sender<i64>,
) {
    let Registered { mut live, start, .. } = registered;
    let Some(mut covered) = replay(&node, &spec, &tx, start).await else {
        return;
    };
    // Events at or below `covered` were sent by the replay (or predate the watch).
    covered = covered.max(start - 1);
    delivered.send_replace(covered);
    let mut progress = tokio::time::interval(node.limits.progress_interval);
    progress.reset();
    loop {
        tokio::select! {
            // A cancelled watcher sends nothing more.
            biased;
            _ = cancel.cancelled() => return,
            _ = progress.tick(), if spec.progress_notify => {
                // What this watcher has delivered, not the keyspace's
                // revision: a batch applied but not yet seen here must not
                // be promised as sent.
                let resp = PbWatchResponse {
                    header: Some(node.header(covered)),
                    watch_id: spec.id,
                    ..Default::default()
                };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
            batch = live.recv() => match batch {
                Ok(batch) => {
                    if batch.revision <= covered {
                        continue;
                    }
                    covered = batch.revision;
                    let events = spec.select(&batch.events);
                    // etcd restarts the progress timer only when this
                    // watcher was sent something.
                    let sent = !events.is_empty();
                    if !send_events(&node, &spec, &tx, batch.revision, events).await {
                        return;
                    }
                    delivered.send_replace(covered);
                    if sent {
                        progress.reset();
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(watch_id = spec.id, missed, "watcher fell behind; catching up from history");
                    match replay(&node, &spec, &tx, covered + 1).await {
                        Some(rev) => covered = rev,
                        None => return,
                    }
                    delivered.send_replace(covered);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}
