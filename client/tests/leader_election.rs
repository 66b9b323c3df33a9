//! Leader election between real candidates over a real API server: a
//! killed leader is replaced within the lease duration, two leaders never
//! overlap (checked from the Lease records and from inside), a leader that
//! loses the Lease stops at once, and a clean stop hands over quickly.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::leader_election::{LeaderElectionConfig, LeaderElector, Outcome};
use client::{Api, ListParams, WatchEvent};
use k8s_openapi::api::coordination::v1::Lease;
use support::*;
use testkit::Cluster;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

const LEASE: Duration = Duration::from_secs(3);
const RETRY: Duration = Duration::from_millis(500);

fn config(identity: &str) -> LeaderElectionConfig {
    LeaderElectionConfig {
        lease_duration: LEASE,
        renew_deadline: Duration::from_secs(2),
        retry_period: RETRY,
        ..LeaderElectionConfig::new("kube-system", "demo-controller", identity)
    }
}

/// How many candidates are doing leader work right now, and the most ever.
#[derive(Clone, Default)]
struct Leaders {
    now: Arc<AtomicI64>,
    most: Arc<AtomicI64>,
    who: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl Leaders {
    fn work(&self, identity: &str) -> impl FnOnce(CancellationToken) -> futures_like::Work {
        let this = self.clone();
        let identity = identity.to_string();
        move |token: CancellationToken| {
            Box::pin(async move {
                let n = this.now.fetch_add(1, Ordering::SeqCst) + 1;
                this.most.fetch_max(n, Ordering::SeqCst);
                this.who.lock().unwrap().push((identity, Instant::now()));
                token.cancelled().await;
                this.now.fetch_sub(1, Ordering::SeqCst);
            })
        }
    }
}

mod futures_like {
    pub type Work = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

/// Every version of the Lease, as a watch saw it.
fn record_lease_history(api: Api<Lease>, stop: CancellationToken) -> Arc<Mutex<Vec<Lease>>> {
    let history = Arc::new(Mutex::new(Vec::new()));
    let sink = history.clone();
    tokio::spawn(async move {
        let events = api.watch(&ListParams::default(), "", 120).await.unwrap();
        tokio::pin!(events);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                next = events.next() => match next {
                    Some(Ok(WatchEvent::Added(l) | WatchEvent::Modified(l))) => sink.lock().unwrap().push(l),
                    Some(_) => {}
                    None => return,
                },
            }
        }
    });
    history
}

fn micros(t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime>) -> i128 {
    t.as_ref().unwrap().0.as_nanosecond() / 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_in_time_and_leaders_never_overlap() {
    let cluster = Cluster::start("kubernate").await;
    let stop = CancellationToken::new();
    let leases: Api<Lease> = Api::namespaced(connect(&cluster), "kube-system");
    let history = record_lease_history(leases.clone(), stop.clone());
    let leaders = Leaders::default();
    let mut candidates = std::collections::HashMap::new();
    let mut registries = std::collections::HashMap::new();
    for id in ["a", "b", "c", "d"] {
        let registry = prometheus::Registry::new();
        let elector = LeaderElector::new(connect(&cluster), config(id))
            .with_metrics(&registry)
            .unwrap();
        registries.insert(id, registry);
        let work = leaders.work(id);
        let stop = stop.clone();
        candidates.insert(id, tokio::spawn(async move { elector.run(stop, work).await }));
    }
    eventually("someone leads", || async { leaders.now.load(Ordering::SeqCst) == 1 }).await;

    // Kill whoever leads, twice (each time another must take over).
    let mut killed = Vec::new();
    for _ in 0..2 {
        let first = leaders.who.lock().unwrap().last().unwrap().0.clone();
        let lease = leases.get("demo-controller").await.unwrap();
        assert_eq!(
            lease.spec.as_ref().unwrap().holder_identity.as_deref(),
            Some(first.as_str())
        );
        candidates.remove(first.as_str()).unwrap().abort();
        let killed_at = Instant::now();
        killed.push(first.clone());
        eventually("another candidate takes over", || async {
            let who = leaders.who.lock().unwrap();
            who.last().unwrap().0 != first
        })
        .await;
        let took = killed_at.elapsed();
        assert!(
            took <= LEASE + RETRY.mul_f64(2.2) + Duration::from_millis(500),
            "takeover after {took:?}"
        );
    }
    assert_eq!(leaders.most.load(Ordering::SeqCst), 1, "never two leaders at once");
    // The survivors' metrics: the leader reports 1, the backup 0.
    let leader = leaders.who.lock().unwrap().last().unwrap().0.clone();
    for (id, registry) in &registries {
        if killed.iter().any(|k| k == id) {
            continue;
        }
        let expected = if *id == leader { 1 } else { 0 };
        let metric = common::metrics::encode(registry);
        assert!(
            metric.contains(&format!(
                "leader_election_master_status{{name=\"demo-controller\"}} {expected}"
            )),
            "{id}: {metric}"
        );
    }

    // From the Lease records: each new holder acquired only after the
    // previous holder's last renewal plus the lease duration.
    stop.cancel();
    let history = history.lock().unwrap().clone();
    let mut last: Option<(String, i128)> = None;
    let mut transitions = 0;
    for lease in &history {
        let spec = lease.spec.clone().unwrap();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        if let Some((previous, renewed)) = &last {
            if *previous != holder && !holder.is_empty() {
                transitions += 1;
                let acquired = micros(&spec.acquire_time);
                let lease_micros = i128::from(spec.lease_duration_seconds.unwrap()) * 1_000_000;
                assert!(
                    acquired >= renewed + lease_micros,
                    "{holder} acquired at {acquired}, {previous} renewed at {renewed}"
                );
            }
        }
        last = Some((holder, micros(&spec.renew_time)));
    }
    assert_eq!(
        transitions,
        2,
        "two takeovers recorded in {} lease versions",
        history.len()
    );
    for (_, task) in candidates {
        task.abort();
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_loses_the_lease_stops_its_work_at_once() {
    let cluster = Cluster::start("kubernate").await;
    let leases: Api<Lease> = Api::namespaced(connect(&cluster), "kube-system");
    let leaders = Leaders::default();
    let elector = LeaderElector::new(connect(&cluster), config("a"));
    let work = leaders.work("a");
    let run = tokio::spawn(async move { elector.run(CancellationToken::new(), work).await });
    eventually("a leads", || async { leaders.now.load(Ordering::SeqCst) == 1 }).await;

    // Someone else writes itself into the Lease.
    let mut lease = leases.get("demo-controller").await.unwrap();
    let spec = lease.spec.as_mut().unwrap();
    spec.holder_identity = Some("intruder".into());
    spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        client::api::timestamp_now(),
    ));
    leases.update(&lease).await.unwrap();
    let taken_at = Instant::now();
    let outcome = tokio::time::timeout(WAIT, run).await.unwrap().unwrap();
    assert_eq!(outcome, Outcome::Lost);
    assert!(taken_at.elapsed() < RETRY * 3, "stopped after {:?}", taken_at.elapsed());
    eventually("the work stopped", || async { leaders.now.load(Ordering::SeqCst) == 0 }).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_releases_the_lease_for_a_quick_handover() {
    let cluster = Cluster::start("kubernate").await;
    let leaders = Leaders::default();
    let stop_a = CancellationToken::new();
    let a = LeaderElector::new(connect(&cluster), config("a"));
    let work = leaders.work("a");
    let stopper = stop_a.clone();
    let run_a = tokio::spawn(async move { a.run(stopper, work).await });
    eventually("a leads", || async { leaders.now.load(Ordering::SeqCst) == 1 }).await;

    let b = LeaderElector::new(connect(&cluster), config("b"));
    let work = leaders.work("b");
    let run_b = tokio::spawn(async move { b.run(CancellationToken::new(), work).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(leaders.who.lock().unwrap().len(), 1, "b waits while a renews");

    stop_a.cancel();
    let stopped_at = Instant::now();
    assert_eq!(
        tokio::time::timeout(WAIT, run_a).await.unwrap().unwrap(),
        Outcome::Stopped
    );
    eventually("b takes over", || async { leaders.who.lock().unwrap().len() == 2 }).await;
    assert!(
        stopped_at.elapsed() < LEASE,
        "handover after {:?}",
        stopped_at.elapsed()
    );
    run_b.abort();
    cluster.stop().await;
}
