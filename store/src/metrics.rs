//! The store's Prometheus metrics, under etcd's names so etcd dashboards
//! and alerts work unchanged.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tokio_util::sync::CancellationToken;

use crate::node::Node;

/// Every metric the store exports.
#[derive(Clone)]
pub struct Metrics {
    pub has_leader: IntGauge,
    pub is_leader: IntGauge,
    pub leader_changes: IntCounter,
    pub proposals_committed: IntCounter,
    pub proposals_applied: IntCounter,
    pub proposals_pending: IntGauge,
    pub proposals_failed: IntCounter,
    pub wal_fsync: Histogram,
    pub backend_commit: Histogram,
    pub db_size: IntGauge,
    pub peer_rtt: HistogramVec,
    pub keys_total: IntGauge,
    pub grpc_handled: IntCounterVec,
    pub grpc_handling: HistogramVec,
}

fn io_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.001, 2.0, 14).unwrap_or_default()
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Metrics {
            has_leader: IntGauge::new("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.")?,
            is_leader: IntGauge::new("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.")?,
            leader_changes: IntCounter::new("etcd_server_leader_changes_seen_total", "The number of leader changes seen.")?,
            // etcd exports these two as gauges; they only grow, so here
            // they are counters (PromQL treats the names the same way).
            proposals_committed: IntCounter::new("etcd_server_proposals_committed_total", "The total number of consensus proposals committed.")?,
            proposals_applied: IntCounter::new("etcd_server_proposals_applied_total", "The total number of consensus proposals applied.")?,
            proposals_pending: IntGauge::new("etcd_server_proposals_pending", "The current number of pending proposals to commit.")?,
            proposals_failed: IntCounter::new("etcd_server_proposals_failed_total", "The total number of failed proposals seen.")?,
            wal_fsync: Histogram::with_opts(
                HistogramOpts::new("etcd_disk_wal_fsync_duration_seconds", "The latency distributions of fsync called by WAL.")
                    .buckets(io_buckets()),
            )?,
            backend_commit: Histogram::with_opts(
                HistogramOpts::new(
                    "etcd_disk_backend_commit_duration_seconds",
                    "The latency distributions of commit called by backend.",
                )
                .buckets(io_buckets()),
            )?,
            db_size: IntGauge::new("etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.")?,
            peer_rtt: HistogramVec::new(
                HistogramOpts::new("etcd_network_peer_round_trip_time_seconds", "Round-Trip-Time histogram between peers")
                    .buckets(prometheus::exponential_buckets(0.0001, 2.0, 16).unwrap_or_default()),
                &["To"],
            )?,
            keys_total: IntGauge::new("etcd_debugging_mvcc_keys_total", "Total number of keys.")?,
            grpc_handled: IntCounterVec::new(
                Opts::new("grpc_server_handled_total", "Total number of RPCs completed on the server, regardless of success or failure."),
                &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
            )?,
            grpc_handling: HistogramVec::new(
                HistogramOpts::new(
                    "grpc_server_handling_seconds",
                    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
                ),
                &["grpc_type", "grpc_service", "grpc_method"],
            )?,
        };
        registry.register(Box::new(m.has_leader.clone()))?;
        registry.register(Box::new(m.is_leader.clone()))?;
        registry.register(Box::new(m.leader_changes.clone()))?;
        registry.register(Box::new(m.proposals_committed.clone()))?;
        registry.register(Box::new(m.proposals_applied.clone()))?;
        registry.register(Box::new(m.proposals_pending.clone()))?;
        registry.register(Box::new(m.proposals_failed.clone()))?;
        registry.register(Box::new(m.wal_fsync.clone()))?;
        registry.register(Box::new(m.backend_commit.clone()))?;
        registry.register(Box::new(m.db_size.clone()))?;
        registry.register(Box::new(m.peer_rtt.clone()))?;
        registry.register(Box::new(m.keys_total.clone()))?;
        registry.register(Box::new(m.grpc_handled.clone()))?;
        registry.register(Box::new(m.grpc_handling.clone()))?;
        Ok(m)
    }
}

/// Keeps the gauges that mirror Raft and keyspace state up to date.
pub async fn run_updater(node: Arc<Node>, metrics: Metrics, shutdown: CancellationToken) {
    let mut raft = node.raft.metrics();
    let mut leader = None;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        // Raft's metrics change on every commit: on a change only the
        // leader gauges are refreshed (cheap, no lock); the rest, which
        // reads the keyspace, once a second.
        let full = tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = raft.changed() => if changed.is_err() { return } else { false },
            _ = tick.tick() => true,
        };
        let m = raft.borrow().clone();
        if m.current_leader != leader {
            if m.current_leader.is_some() {
                metrics.leader_changes.inc();
            }
            leader = m.current_leader;
        }
        metrics.has_leader.set(i64::from(m.current_leader.is_some()));
        metrics.is_leader.set(i64::from(m.current_leader == Some(node.id)));
        if !full {
            continue;
        }
        if let Some(applied) = m.last_applied {
            let seen = metrics.proposals_applied.get();
            metrics.proposals_applied.inc_by(applied.index.saturating_sub(seen));
            let seen = metrics.proposals_committed.get();
            metrics
                .proposals_committed
                .inc_by(node.committed_index().saturating_sub(seen));
        }
        if let Some(last) = m.last_log_index {
            // Entries in the log that are not applied yet are pending.
            let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
            metrics.proposals_pending.set(last.saturating_sub(applied) as i64);
        }
        if let Ok(state) = node.sm.state.read() {
            metrics.db_size.set(state.kv.size_bytes());
            metrics.keys_total.set(state.kv.key_count() as i64);
        }
    }
}

/// A tower layer counting every gRPC call by service, method and status
/// code (`grpc_server_handled_total`, `grpc_server_handling_seconds`).
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    pub metrics: Metrics,
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    RB::Error: Into<axum::BoxError>,
{
    type Response = http::Response<axum::body::Body>;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().trim_start_matches('/').to_string();
        let (service, method) = path.split_once('/').unwrap_or((path.as_str(), ""));
        // go-grpc-prometheus's names, as etcd exports them.
        let grpc_type = match method {
            "Watch" | "LeaseKeepAlive" => "bidi_stream",
            "Snapshot" | "Observe" | "RangeStream" => "server_stream",
            _ => "unary",
        };
        // The JSON gateway shares the port; it is not a gRPC call.
        let is_grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let mut outcome = is_grpc.then(|| Outcome {
            metrics: self.metrics.clone(),
            labels: [grpc_type.to_string(), service.to_string(), method.to_string()],
            started: Instant::now(),
            recorded: false,
        });
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            let Some(mut outcome) = outcome.take() else {
                return Ok(response.map(axum::body::Body::new));
            };
            // An error comes back trailers-only: its status is in the headers.
            if let Some(code) = grpc_code(response.headers()) {
                outcome.record(&code);
            }
            // Otherwise the status is in the trailers, when the call (a
            // stream, perhaps long after) ends; a body dropped before them
            // was cancelled.
            Ok(response.map(|body| {
                axum::body::Body::new(http_body_util::BodyExt::map_frame(body, move |frame| {
                    if let Some(trailers) = frame.trailers_ref() {
                        outcome.record(&grpc_code(trailers).unwrap_or_else(|| "OK".to_string()));
                    }
                    frame
                }))
            }))
        })
    }
}

/// The status name in `grpc-status`, if there is one.
fn grpc_code(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(|c| match tonic::Code::from_i32(c) {
            // gRPC's own spelling (go-grpc-prometheus); the rest match Debug.
            tonic::Code::Ok => "OK".to_string(),
            code => format!("{code:?}"),
        })
}

/// One call's metrics, recorded once: when its status is known, or as
/// `Canceled` if its response is dropped first.
struct Outcome {
    metrics: Metrics,
    labels: [String; 3],
    started: Instant,
    recorded: bool,
}

impl Outcome {
    fn record(&mut self, code: &str) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        let [grpc_type, service, method] = &self.labels;
        self.metrics
            .grpc_handled
            .with_label_values(&[grpc_type, service, method, code])
            .inc();
        self.metrics
            .grpc_handling
            .with_label_values(&[grpc_type, service, method])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        self.record("Canceled");
    }
}
