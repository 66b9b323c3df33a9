//! Benchmarks the scheduler: 10,000 pods onto 5,000 nodes (Node objects
//! only, as kubemark does), first through the framework alone in this
//! process, then end to end: the real API server and store, the
//! `kubernate-scheduler` binary, pods created through the API and their
//! bindings observed through a watch.
//!
//! ```text
//! scripts/bench-scheduler.sh [--nodes 5000] [--pods 10000]
//! ```

#![allow(clippy::unwrap_used)] // a benchmark that fails should stop loudly

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use client::{Api, Client, ListParams, Patch, WatchEvent};
use k8s_openapi::api::core::v1::{Node, Pod};
use scheduler::cache::Cache;
use scheduler::config::{Flags, Settings};
use serde_json::json;
use testkit::bench::{arg, percentile_ms};
use testkit::{Cluster, Component};
use tokio_stream::StreamExt;

fn node(i: usize) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": format!("node-{i}"), "labels": {"kubernetes.io/hostname": format!("node-{i}"),
            "topology.kubernetes.io/zone": format!("zone-{}", i % 3)}},
        "status": {"allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                   "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .unwrap()
}

fn pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("pod-{i}"), "namespace": "default", "uid": format!("uid-{i}"), "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "app", "image": "busybox:1.36",
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]},
    }))
    .unwrap()
}

fn row(what: &str, pods: usize, elapsed: Duration, mut latencies: Vec<Duration>) {
    latencies.sort();
    println!(
        "| {what} | {pods} | {:.0} | {:.2} | {:.2} |",
        pods as f64 / elapsed.as_secs_f64(),
        percentile_ms(&latencies, 0.5),
        percentile_ms(&latencies, 0.99),
    );
}

/// The framework alone: every decision and assumption, no API.
fn in_process(nodes: usize, pods: usize) {
    let flags = Flags::parse_from(["bench", "--kubeconfig", "unused"]);
    let settings = Settings::from_file(None, &flags).unwrap();
    let profile = settings.profiles[0].clone();
    let cache = Cache::default();
    for i in 0..nodes {
        cache.add_node(Arc::new(node(i)));
    }
    let mut latencies = Vec::with_capacity(pods);
    let started = Instant::now();
    let mut start = 0;
    for i in 0..pods {
        let t = Instant::now();
        let p = pod(i);
        let snapshot = cache.snapshot();
        let decision =
            scheduler::schedule_one::schedule(&profile, &p, &snapshot, 0, start, settings.parallelism).unwrap();
        start = (start + decision.evaluated) % nodes;
        let mut assumed = p;
        assumed.spec.as_mut().unwrap().node_name = Some(decision.node);
        cache.assume(Arc::new(assumed));
        latencies.push(t.elapsed());
    }
    row("framework alone (in process)", pods, started.elapsed(), latencies);
}

async fn end_to_end(nodes: usize, pods: usize) {
    let cluster = Cluster::start("kubernate-process").await;
    let mut config = common::kubeconfig::Kubeconfig::load_resolved(&cluster.kubeconfig()).unwrap();
    config.server = cluster.server.clone();
    let client = Client::from_resolved(&config)
        .unwrap()
        .with_timeout(Duration::from_secs(120));

    let node_api: Api<Node> = Api::all(client.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in (0..nodes).collect::<Vec<_>>().chunks(nodes.div_ceil(32)) {
        let (api, chunk) = (node_api.clone(), chunk.to_vec());
        tasks.spawn(async move {
            for i in chunk {
                let n = node(i);
                api.create(&n).await.unwrap();
                let status = json!({"status": serde_json::to_value(&n.status).unwrap()});
                api.patch_status(&format!("node-{i}"), &Patch::Merge(status))
                    .await
                    .unwrap();
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    eprintln!("{nodes} nodes created");

    let scheduler = Component::start(&cluster, "kubernate-scheduler", "scheduler", &["--leader-elect=false"]);
    let wanted = format!("scheduler_cache_size_nodes {nodes}");
    testkit::wait_for("the scheduler's cache", Duration::from_secs(300), || async {
        scheduler.metrics().await.contains(&wanted).then_some(())
    })
    .await;

    // Bindings as the watch sees them.
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let list = pod_api.list(&ListParams::default()).await.unwrap();
    let mut stream = Box::pin(
        pod_api
            .watch(&ListParams::default(), &list.resource_version, 0)
            .await
            .unwrap(),
    );
    let watcher = tokio::spawn(async move {
        let mut bound: HashMap<String, Instant> = HashMap::new();
        while bound.len() < pods {
            match stream.next().await {
                Some(Ok(WatchEvent::Modified(p) | WatchEvent::Added(p))) => {
                    if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                        bound
                            .entry(p.metadata.name.unwrap_or_default())
                            .or_insert_with(Instant::now);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("watch failed: {e}"),
                None => panic!("watch ended"),
            }
        }
        bound
    });

    let created: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in (0..pods).collect::<Vec<_>>().chunks(pods.div_ceil(64)) {
        let (api, chunk, created) = (pod_api.clone(), chunk.to_vec(), created.clone());
        tasks.spawn(async move {
            for i in chunk {
                let mut p = pod(i);
                p.metadata.uid = None;
                let at = Instant::now();
                api.create(&p).await.unwrap();
                created.lock().unwrap().insert(format!("pod-{i}"), at);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let creating = started.elapsed();
    let bound = tokio::time::timeout(Duration::from_secs(900), watcher)
        .await
        .unwrap()
        .unwrap();
    let last = bound.values().max().copied().unwrap();
    let latencies: Vec<Duration> = {
        let created = created.lock().unwrap();
        bound
            .iter()
            .filter_map(|(name, at)| created.get(name).map(|c| at.saturating_duration_since(*c)))
            .collect()
    };
    eprintln!("{pods} pods created in {creating:?}");
    row(
        "end to end (API server + store + scheduler binary)",
        pods,
        last - started,
        latencies,
    );
    drop(scheduler);
    cluster.stop().await;
}

#[tokio::main]
async fn main() {
    let (nodes, pods) = (arg("--nodes", 5000), arg("--pods", 10_000));
    println!("Scheduling {pods} pods (100m cpu, 64Mi each) onto {nodes} nodes (32 cpu, 128Gi, 110 pods each):\n");
    println!("| path | pods | pods/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    in_process(nodes, pods);
    end_to_end(nodes, pods).await;
}
