//! Benchmarks the API server through its REST API (with the kube crate,
//! JSON, as kubectl and controllers use it): CREATE, GET, LIST of all
//! pods, and watch fan-out, on Kubernate's store (with and without the
//! watch cache) and on etcd 3.4 in the same run, plus the API server's
//! resident memory with every pod stored.
//!
//! ```text
//! scripts/bench-apiserver.sh [--pods 10000] [--watchers 1000] [--clients 16]
//! ```

#![allow(clippy::unwrap_used)] // a benchmark that fails should stop loudly

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;
use testkit::bench::{arg, percentile_ms};
use testkit::Cluster;
use tokio_stream::StreamExt;

async fn client(c: &Cluster) -> Client {
    let kubeconfig = Kubeconfig::read_from(c.kubeconfig()).unwrap();
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    config.cluster_url = c.server.parse().unwrap();
    config.read_timeout = Some(Duration::from_secs(120));
    Client::try_from(config).unwrap()
}

fn pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("pod-{i}"), "labels": {"app": "bench", "shard": (i % 10).to_string()}},
        "spec": {"nodeName": format!("node-{}", i % 100), "containers": [{"name": "app", "image": "busybox:1.36",
            "args": ["sleep", "3600"], "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]},
    }))
    .unwrap()
}

fn report(system: &str, phase: &str, count: usize, elapsed: Duration, mut latencies: Vec<Duration>) {
    latencies.sort();
    println!(
        "| {system} | {phase} | {:.0} | {:.2} | {:.2} |",
        count as f64 / elapsed.as_secs_f64(),
        percentile_ms(&latencies, 0.5),
        percentile_ms(&latencies, 0.99)
    );
}

/// Runs `total` calls of `call(i)` from `clients` tasks; returns latencies.
async fn drive<F, Fut>(clients: usize, total: usize, call: F) -> (Duration, Vec<Duration>)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (call, next) = (call.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return latencies;
                }
                let t = Instant::now();
                call(i).await;
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (started.elapsed(), all)
}

fn rss_mib(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

async fn bench(system: &str, backend: &str, watch_cache: bool, pods: usize, watchers: usize, clients: usize) {
    let cache = format!("--watch-cache={watch_cache}");
    let c = Cluster::start_with(
        backend,
        &[
            "--max-requests-inflight",
            "0",
            "--max-mutating-requests-inflight",
            "0",
            &cache,
        ],
    )
    .await;
    let client = client(&c).await;
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");

    let creator = api.clone();
    let (elapsed, lat) = drive(clients, pods, move |i| {
        let api = creator.clone();
        async move {
            api.create(&PostParams::default(), &pod(i)).await.unwrap();
        }
    })
    .await;
    report(system, "CREATE pod", pods, elapsed, lat);

    let getter = api.clone();
    let gets = pods.min(20_000);
    let (elapsed, lat) = drive(clients, gets, move |i| {
        let api = getter.clone();
        async move {
            api.get(&format!("pod-{}", (i * 7919) % pods)).await.unwrap();
        }
    })
    .await;
    report(system, "GET pod", gets, elapsed, lat);

    let lister = api.clone();
    let lists = 10;
    let (elapsed, lat) = drive(1, lists, move |_| {
        let api = lister.clone();
        async move {
            let all = api.list(&ListParams::default()).await.unwrap();
            assert_eq!(all.items.len(), pods);
        }
    })
    .await;
    report(system, &format!("LIST {pods} pods"), lists, elapsed, lat);
    let rss = rss_mib(c.apiserver_pid());

    // Watch fan-out: `watchers` watches of all pods; 50 updates; the time
    // from each update's answer to its arrival at every watcher.
    let rv = api
        .list(&ListParams::default().limit(1))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let mut tasks = Vec::new();
    let ready = Arc::new(tokio::sync::Barrier::new(watchers + 1));
    // A connection carries at most 1000 streams; spread the watchers over
    // connections of 200, as many clients would.
    let mut connections = Vec::new();
    for _ in 0..watchers.div_ceil(200) {
        connections.push(Api::<Pod>::namespaced(self::client(&c).await, "default"));
    }
    for w in 0..watchers {
        let api = connections[w / 200].clone();
        let (rv, tx, ready) = (rv.clone(), tx.clone(), ready.clone());
        tasks.push(tokio::spawn(async move {
            let events = api.watch(&WatchParams::default().timeout(120), &rv).await.unwrap();
            ready.wait().await;
            tokio::pin!(events);
            let mut got = 0;
            while let Some(Ok(event)) = events.next().await {
                if let WatchEvent::Modified(p) = event {
                    let n: usize = p.metadata.annotations.unwrap_or_default()["n"].parse().unwrap();
                    let _ = tx.send((n, Instant::now()));
                    got += 1;
                    if got == 50 {
                        return;
                    }
                }
            }
        }));
    }
    ready.wait().await;
    let mut sent = Vec::new();
    let started = Instant::now();
    for n in 0..50usize {
        let patch = Patch::Merge(json!({"metadata": {"annotations": {"n": n.to_string()}}}));
        api.patch("pod-0", &PatchParams::default(), &patch).await.unwrap();
        sent.push(Instant::now());
    }
    drop(tx);
    let mut delays = Vec::new();
    while let Some((n, at)) = rx.recv().await {
        delays.push(at.saturating_duration_since(sent[n]));
    }
    let delivered = delays.len();
    report(
        system,
        &format!("watch fan-out ({watchers} watchers x 50 events)"),
        delivered,
        started.elapsed(),
        delays,
    );
    for t in tasks {
        t.abort();
    }
    println!("| {system} | API server RSS, {pods} pods stored | {rss:.0} MiB | | |");
    c.stop().await;
}

#[tokio::main]
async fn main() {
    let pods = arg("--pods", 10_000);
    let watchers = arg("--watchers", 1000);
    let clients = arg("--clients", 16);
    println!("| store | phase | ops/s | p50 ms | p99 ms |");
    println!("|---|---|---:|---:|---:|");
    bench("kubernate store", "kubernate-process", true, pods, watchers, clients).await;
    // The same without the watch cache: what serving from memory changes.
    bench(
        "kubernate store, --watch-cache=false",
        "kubernate-process",
        false,
        pods,
        watchers,
        clients,
    )
    .await;
    bench("etcd 3.4", "etcd", true, pods, watchers, clients).await;
}
