//! The workqueue's promises, checked with real concurrent workers and a
//! real Prometheus registry.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::rate_limiter::RateLimiter;
use client::workqueue::{Metrics, WorkQueue};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn adds_of_a_waiting_item_are_folded_into_one() {
    let q = WorkQueue::new("fold");
    for _ in 0..5 {
        q.add("a");
    }
    q.add("b");
    assert_eq!(q.len(), 2);
    assert_eq!(q.get().await, Some("a"));
    assert_eq!(q.get().await, Some("b"));
    assert!(q.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_is_never_processed_by_two_workers_and_readds_run_after() {
    let q: WorkQueue<u32> = WorkQueue::new("exclusive");
    let busy = Arc::new(Mutex::new(HashSet::new()));
    let runs = Arc::new(AtomicUsize::new(0));
    // When each item last started a run.
    let started = Arc::new(Mutex::new(std::collections::HashMap::new()));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (q, busy, runs, started) = (q.clone(), busy.clone(), runs.clone(), started.clone());
        workers.push(tokio::spawn(async move {
            while let Some(item) = q.get().await {
                assert!(
                    busy.lock().unwrap().insert(item),
                    "item {item} handed out twice at once"
                );
                started.lock().unwrap().insert(item, Instant::now());
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                busy.lock().unwrap().remove(&item);
                q.done(&item);
            }
        }));
    }
    // Bursts of re-adds of three items, many while they are processed.
    let mut last_added = std::collections::HashMap::new();
    for round in 0..50u32 {
        for _ in 0..4 {
            q.add(round % 3);
        }
        last_added.insert(round % 3, Instant::now());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::timeout(WAIT, q.shutdown_with_drain()).await.unwrap();
    for w in workers {
        tokio::time::timeout(WAIT, w).await.unwrap().unwrap();
    }
    let runs = runs.load(Ordering::SeqCst);
    // A burst folds into at most two runs: the one under way and one after.
    assert!((3..=100).contains(&runs), "200 adds folded into {runs} runs");
    let started = started.lock().unwrap();
    for (item, added) in last_added {
        assert!(started[&item] >= added, "the last add of {item} was followed by a run");
    }
}

#[tokio::test]
async fn an_item_added_while_processing_is_handed_out_again_after_done() {
    let q = WorkQueue::new("dirty");
    q.add("x");
    let item = q.get().await.unwrap();
    q.add("x");
    assert!(q.is_empty(), "not queued while it is being processed");
    let second = tokio::time::timeout(Duration::from_millis(100), q.get()).await;
    assert!(second.is_err(), "not handed out while the first run is on");
    q.done(&item);
    assert_eq!(tokio::time::timeout(WAIT, q.get()).await.unwrap(), Some("x"));
}

#[tokio::test]
async fn delayed_adds_keep_the_earliest_time() {
    let q = WorkQueue::new("delay");
    let start = Instant::now();
    q.add_after("late", Duration::from_millis(300));
    q.add_after("late", Duration::from_millis(100));
    q.add_after("late", Duration::from_millis(500));
    assert!(q.is_empty());
    assert_eq!(tokio::time::timeout(WAIT, q.get()).await.unwrap(), Some("late"));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_millis(300),
        "{waited:?}"
    );
    q.done(&"late");
    // The later timers do not add it again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(q.is_empty());
}

#[tokio::test]
async fn failures_back_off_per_item_and_forget_resets() {
    let limiter = RateLimiter::new(Duration::from_millis(20), Duration::from_secs(10), 1000.0, 1000);
    let q = WorkQueue::with_rate_limiter("backoff", limiter);
    let mut waits = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        q.add_rate_limited("flaky");
        let item = tokio::time::timeout(WAIT, q.get()).await.unwrap().unwrap();
        waits.push(start.elapsed());
        q.done(&item);
    }
    assert_eq!(q.num_requeues(&"flaky"), 3);
    // 20 ms, 40 ms, 80 ms: each wait at least its step, and growing.
    for (wait, step) in waits.iter().zip([20, 40, 80]) {
        assert!(*wait >= Duration::from_millis(step), "{waits:?}");
    }
    q.forget(&"flaky");
    assert_eq!(q.num_requeues(&"flaky"), 0);
}

#[tokio::test]
async fn shutdown_hands_out_what_is_left_then_none_and_refuses_adds() {
    let q = WorkQueue::new("stop");
    q.add(1);
    q.add(2);
    q.shutdown();
    q.add(3);
    assert_eq!(q.get().await, Some(1));
    assert_eq!(q.get().await, Some(2));
    assert_eq!(q.get().await, None);
    assert!(q.is_shutting_down());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_drain_waits_for_work_in_progress() {
    let q = WorkQueue::new("drain");
    q.add("job");
    let item = q.get().await.unwrap();
    let finished = Arc::new(AtomicUsize::new(0));
    let (worker_q, worker_finished) = (q.clone(), finished.clone());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        worker_finished.store(1, Ordering::SeqCst);
        worker_q.done(&item);
    });
    tokio::time::timeout(WAIT, q.shutdown_with_drain()).await.unwrap();
    assert_eq!(finished.load(Ordering::SeqCst), 1, "drain returned only after done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_have_client_gos_names_and_the_queue_name() {
    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry).unwrap();
    let q = WorkQueue::with_metrics("deployment", &metrics);
    q.add("a");
    q.add("b");
    q.add_rate_limited("c");
    let item = q.get().await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let text = common::metrics::encode(&registry);
    q.done(&item);
    for line in [
        // a, b, and c once its retry delay passed.
        r#"workqueue_adds_total{name="deployment"} 3"#,
        r#"workqueue_retries_total{name="deployment"} 1"#,
        r#"workqueue_queue_duration_seconds_count{name="deployment"} 1"#,
    ] {
        assert!(text.contains(line), "{line} missing in\n{text}");
    }
    let gauge = |name: &str| -> f64 {
        let prefix = format!("{name}{{name=\"deployment\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
            .parse()
            .unwrap()
    };
    assert!(gauge("workqueue_depth") >= 1.0);
    assert!(gauge("workqueue_longest_running_processor_seconds") > 0.1);
    assert!(gauge("workqueue_unfinished_work_seconds") > 0.1);
    let after = common::metrics::encode(&registry);
    assert!(
        after.contains(r#"workqueue_work_duration_seconds_count{name="deployment"} 1"#),
        "{after}"
    );
}
