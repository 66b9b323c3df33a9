//! The shape every controller shares: event handlers put keys on a
//! workqueue, workers take keys one at a time and reconcile them from the
//! informers' caches, and failures go back on the queue with backoff.
//!
//! A key is a `namespace/name` (or `name`); the reconciler looks the
//! object up itself, so a burst of changes to one object becomes one
//! reconcile of its latest state, and a deleted object is a lookup that
//! finds nothing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use client::WorkQueue;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// After this many failed attempts in a row a key is dropped until its
/// next change (client-go's controllers use the same bound).
pub const MAX_RETRIES: u32 = 15;

/// For controllers whose keys nothing else brings back (the garbage
/// collector, the namespace controller): retry with backoff for ever.
pub const RETRY_FOREVER: u32 = u32::MAX;

/// A controller's reconcile step.
pub trait Reconciler: Send + Sync + 'static {
    /// Brings the object under `key` toward its desired state. `Ok(Some(d))`
    /// asks to look again after `d` (a deadline or a minReadySeconds to
    /// wait out); an error retries with backoff.
    fn reconcile(&self, key: &str) -> impl Future<Output = client::Result<Option<Duration>>> + Send;
}

/// Runs `workers` workers on `queue` until `stop`, then shuts the queue down.
pub async fn run<R: Reconciler>(
    name: &'static str,
    reconciler: Arc<R>,
    queue: WorkQueue<String>,
    workers: usize,
    stop: CancellationToken,
) {
    run_with_retries(name, reconciler, queue, workers, MAX_RETRIES, stop).await
}

/// [`run`], giving up on a key after `max_retries` failures in a row.
pub async fn run_with_retries<R: Reconciler>(
    name: &'static str,
    reconciler: Arc<R>,
    queue: WorkQueue<String>,
    workers: usize,
    max_retries: u32,
    stop: CancellationToken,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        tasks.spawn(work(name, reconciler.clone(), queue.clone(), max_retries));
    }
    tracing::info!(controller = name, workers, "controller started");
    stop.cancelled().await;
    queue.shutdown();
    while tasks.join_next().await.is_some() {}
}

async fn work<R: Reconciler>(name: &'static str, reconciler: Arc<R>, queue: WorkQueue<String>, max_retries: u32) {
    while let Some(key) = queue.get().await {
        let span = tracing::info_span!("reconcile", controller = name, key = %key);
        let outcome = reconciler.reconcile(&key).instrument(span).await;
        match outcome {
            Ok(again) => {
                queue.forget(&key);
                if let Some(delay) = again {
                    queue.add_after(key.clone(), delay);
                }
            }
            Err(e) if queue.num_requeues(&key) < max_retries => {
                tracing::debug!(controller = name, %key, error = %e, "reconcile failed; will retry");
                queue.add_rate_limited(key.clone());
            }
            Err(e) => {
                tracing::error!(controller = name, %key, error = %e, "reconcile failed too often; dropping the key");
                queue.forget(&key);
            }
        }
        queue.done(&key);
    }
}
