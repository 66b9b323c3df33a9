//! The workqueue: what a controller's handlers put keys on and its workers
//! take them from, with client-go's guarantees.
//!
//! - An item waiting in the queue is there once, however often it is
//!   added: ten changes to one Deployment before a worker gets to it are
//!   one reconcile.
//! - An item being processed is never handed to a second worker. Adding
//!   it meanwhile marks it dirty; when the first worker calls
//!   [`WorkQueue::done`] it goes back in line, so the latest change is
//!   still processed.
//! - Failed items come back after a delay from the [`RateLimiter`]
//!   ([`WorkQueue::add_rate_limited`]); [`WorkQueue::add_after`] delays an
//!   add (an item already waiting keeps the earlier time).
//! - [`WorkQueue::shutdown`] stops new adds; workers still get what is
//!   queued, then `None`. [`WorkQueue::shutdown_with_drain`] also waits
//!   until everything handed out is done.
//!
//! Its metrics carry client-go's names with the queue's name as a label.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use prometheus::{CounterVec, GaugeVec, HistogramOpts, HistogramVec, Opts, Registry};
use tokio::sync::Notify;

use crate::rate_limiter::RateLimiter;

/// The workqueue metric families; register once per registry, then give
/// each queue its name with [`WorkQueue::with_metrics`].
#[derive(Clone)]
pub struct Metrics {
    depth: GaugeVec,
    adds: CounterVec,
    queue_duration: HistogramVec,
    work_duration: HistogramVec,
    retries: CounterVec,
    unfinished: GaugeVec,
    longest: GaugeVec,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        let buckets = prometheus::exponential_buckets(1e-8, 10.0, 10)?;
        let m = Metrics {
            depth: GaugeVec::new(Opts::new("workqueue_depth", "Current depth of workqueue"), &["name"])?,
            adds: CounterVec::new(
                Opts::new("workqueue_adds_total", "Total number of adds handled by workqueue"),
                &["name"],
            )?,
            queue_duration: HistogramVec::new(
                HistogramOpts::new(
                    "workqueue_queue_duration_seconds",
                    "How long in seconds an item stays in workqueue before being requested",
                )
                .buckets(buckets.clone()),
                &["name"],
            )?,
            work_duration: HistogramVec::new(
                HistogramOpts::new(
                    "workqueue_work_duration_seconds",
                    "How long in seconds processing an item from workqueue takes",
                )
                .buckets(buckets),
                &["name"],
            )?,
            retries: CounterVec::new(
                Opts::new("workqueue_retries_total", "Total number of retries handled by workqueue"),
                &["name"],
            )?,
            unfinished: GaugeVec::new(
                Opts::new(
                    "workqueue_unfinished_work_seconds",
                    "How many seconds of work has been done that is in progress and hasn't been observed by work_duration",
                ),
                &["name"],
            )?,
            longest: GaugeVec::new(
                Opts::new(
                    "workqueue_longest_running_processor_seconds",
                    "How many seconds has the longest running processor for workqueue been running",
                ),
                &["name"],
            )?,
        };
        registry.register(Box::new(m.depth.clone()))?;
        registry.register(Box::new(m.adds.clone()))?;
        registry.register(Box::new(m.queue_duration.clone()))?;
        registry.register(Box::new(m.work_duration.clone()))?;
        registry.register(Box::new(m.retries.clone()))?;
        registry.register(Box::new(m.unfinished.clone()))?;
        registry.register(Box::new(m.longest.clone()))?;
        Ok(m)
    }
}

struct State<T> {
    queue: VecDeque<T>,
    /// Items that need processing: queued, or re-added while processing.
    dirty: HashSet<T>,
    processing: HashSet<T>,
    /// When each queued item was added (queue-duration metric).
    added_at: HashMap<T, Instant>,
    /// When each item being processed was handed out.
    started_at: HashMap<T, Instant>,
    /// Delayed adds: the time each waiting item is due.
    waiting: HashMap<T, Instant>,
    shutting_down: bool,
}

struct Shared<T> {
    name: String,
    state: Mutex<State<T>>,
    /// Wakes workers waiting in `get`, and drains waiting for `done`.
    changed: Notify,
    limiter: RateLimiter<T>,
    metrics: Option<Metrics>,
}

/// A de-duplicating, rate-limited work queue; clones share the queue.
pub struct WorkQueue<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        WorkQueue {
            shared: self.shared.clone(),
        }
    }
}

/// How often the in-progress gauges are brought up to date.
const GAUGE_PERIOD: Duration = Duration::from_millis(500);

impl<T: Eq + Hash + Clone + Send + Sync + 'static> WorkQueue<T> {
    /// A queue with client-go's default rate limiter and no metrics.
    pub fn new(name: &str) -> WorkQueue<T> {
        Self::build(name, RateLimiter::default(), None)
    }

    /// A queue with its own rate limiter.
    pub fn with_rate_limiter(name: &str, limiter: RateLimiter<T>) -> WorkQueue<T> {
        Self::build(name, limiter, None)
    }

    /// A queue reporting to `metrics` under its name.
    pub fn with_metrics(name: &str, metrics: &Metrics) -> WorkQueue<T> {
        Self::build(name, RateLimiter::default(), Some(metrics.clone()))
    }

    fn build(name: &str, limiter: RateLimiter<T>, metrics: Option<Metrics>) -> WorkQueue<T> {
        let queue = WorkQueue {
            shared: Arc::new(Shared {
                name: name.to_string(),
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    dirty: HashSet::new(),
                    processing: HashSet::new(),
                    added_at: HashMap::new(),
                    started_at: HashMap::new(),
                    waiting: HashMap::new(),
                    shutting_down: false,
                }),
                changed: Notify::new(),
                limiter,
                metrics,
            }),
        };
        if let Some(m) = &queue.shared.metrics {
            // Every series exists from the start (at zero), as in client-go,
            // so dashboards and alerts see an idle queue, not a missing one.
            let label = [name];
            m.depth.with_label_values(&label).set(0.0);
            m.adds.with_label_values(&label).inc_by(0.0);
            m.retries.with_label_values(&label).inc_by(0.0);
            m.unfinished.with_label_values(&label).set(0.0);
            m.longest.with_label_values(&label).set(0.0);
        }
        if queue.shared.metrics.is_some() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(update_gauges(Arc::downgrade(&queue.shared)));
            }
        }
        queue
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn depth_changed(&self, depth: usize) {
        if let Some(m) = &self.shared.metrics {
            m.depth.with_label_values(&[&self.shared.name]).set(depth as f64);
        }
    }

    /// Adds an item (ignored after shutdown, and when already waiting).
    pub fn add(&self, item: T) {
        let mut state = self.state();
        if state.shutting_down || state.dirty.contains(&item) {
            return;
        }
        if let Some(m) = &self.shared.metrics {
            m.adds.with_label_values(&[&self.shared.name]).inc();
        }
        state.dirty.insert(item.clone());
        if state.processing.contains(&item) {
            // Runs again once the current run is done.
            return;
        }
        state.added_at.insert(item.clone(), Instant::now());
        state.queue.push_back(item);
        let depth = state.queue.len();
        drop(state);
        self.depth_changed(depth);
        self.shared.changed.notify_waiters();
        self.shared.changed.notify_one();
    }

    /// Adds an item after `delay`; an item already waiting for an earlier
    /// time keeps it.
    pub fn add_after(&self, item: T, delay: Duration) {
        if delay.is_zero() {
            return self.add(item);
        }
        let due = Instant::now() + delay;
        {
            let mut state = self.state();
            if state.shutting_down {
                return;
            }
            match state.waiting.get(&item) {
                Some(existing) if *existing <= due => return,
                _ => state.waiting.insert(item.clone(), due),
            };
        }
        let queue = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let Some(shared) = queue.upgrade() else { return };
            let queue = WorkQueue { shared };
            let still_due = {
                let mut state = queue.state();
                // Only the add for the time still on record fires.
                if state.waiting.get(&item) == Some(&due) {
                    state.waiting.remove(&item);
                    true
                } else {
                    false
                }
            };
            if still_due {
                queue.add(item);
            }
        });
    }

    /// Adds a failed item after its rate-limited delay.
    pub fn add_rate_limited(&self, item: T) {
        if let Some(m) = &self.shared.metrics {
            m.retries.with_label_values(&[&self.shared.name]).inc();
        }
        let delay = self.shared.limiter.when(&item);
        self.add_after(item, delay);
    }

    /// Clears the item's failure count (call after a success).
    pub fn forget(&self, item: &T) {
        self.shared.limiter.forget(item);
    }

    /// How often the item has been retried since it was last forgotten.
    pub fn num_requeues(&self, item: &T) -> u32 {
        self.shared.limiter.num_requeues(item)
    }

    /// The next item, waiting for one; `None` once the queue is shut down
    /// and empty. Call [`WorkQueue::done`] when finished with it.
    pub async fn get(&self) -> Option<T> {
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.state();
                if let Some(item) = state.queue.pop_front() {
                    state.dirty.remove(&item);
                    state.processing.insert(item.clone());
                    let now = Instant::now();
                    state.started_at.insert(item.clone(), now);
                    let added = state.added_at.remove(&item);
                    let depth = state.queue.len();
                    drop(state);
                    self.depth_changed(depth);
                    if let (Some(m), Some(added)) = (&self.shared.metrics, added) {
                        m.queue_duration
                            .with_label_values(&[&self.shared.name])
                            .observe(now.duration_since(added).as_secs_f64());
                    }
                    return Some(item);
                }
                if state.shutting_down {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Marks the item processed; if it was added meanwhile it is queued again.
    pub fn done(&self, item: &T) {
        let mut state = self.state();
        state.processing.remove(item);
        let started = state.started_at.remove(item);
        let mut requeued = false;
        if state.dirty.contains(item) {
            state.added_at.insert(item.clone(), Instant::now());
            state.queue.push_back(item.clone());
            requeued = true;
        }
        let depth = state.queue.len();
        drop(state);
        if let (Some(m), Some(started)) = (&self.shared.metrics, started) {
            m.work_duration
                .with_label_values(&[&self.shared.name])
                .observe(started.elapsed().as_secs_f64());
        }
        if requeued {
            self.depth_changed(depth);
        }
        self.shared.changed.notify_waiters();
        if requeued {
            self.shared.changed.notify_one();
        }
    }

    /// Items waiting (not counting those being processed or delayed).
    pub fn len(&self) -> usize {
        self.state().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_shutting_down(&self) -> bool {
        self.state().shutting_down
    }

    /// Refuses new adds and wakes the workers; they still receive what is
    /// queued, then `None`.
    pub fn shutdown(&self) {
        let mut state = self.state();
        state.shutting_down = true;
        state.waiting.clear();
        drop(state);
        self.shared.changed.notify_waiters();
    }

    /// Shuts down, then waits until every queued item has been handed out
    /// and every handed-out item is done.
    pub async fn shutdown_with_drain(&self) {
        self.shutdown();
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.state();
                if state.queue.is_empty() && state.processing.is_empty() {
                    return;
                }
            }
            notified.await;
        }
    }
}

/// Keeps workqueue_unfinished_work_seconds and
/// workqueue_longest_running_processor_seconds current while the queue lives.
async fn update_gauges<T: Eq + Hash>(queue: Weak<Shared<T>>) {
    let mut ticks = tokio::time::interval(GAUGE_PERIOD);
    loop {
        ticks.tick().await;
        let Some(shared) = queue.upgrade() else { return };
        let Some(m) = &shared.metrics else { return };
        let (total, longest, done) = {
            let state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            let ages = state.started_at.values().map(|t| t.elapsed().as_secs_f64());
            let (total, longest) = ages.fold((0.0, 0.0f64), |(sum, max), a| (sum + a, max.max(a)));
            (total, longest, state.shutting_down && state.processing.is_empty())
        };
        m.unfinished.with_label_values(&[&shared.name]).set(total);
        m.longest.with_label_values(&[&shared.name]).set(longest);
        if done {
            return;
        }
    }
}
