//! Benchmarks pod start-up on one node with the process runtime: 100 pods
//! created through the API server, scheduled by the scheduler and started
//! by the kubelet; latency from create to Running as a watch sees it.
//!
//! ```text
//! scripts/bench-kubelet.sh [--pods 100]
//! ```

#![allow(clippy::unwrap_used)] // a benchmark that fails should stop loudly

use std::collections::HashMap;
use std::time::{Duration, Instant};

use client::{Api, Client, DeleteParams, ListParams, WatchEvent};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use testkit::bench::{arg, percentile_ms};
use testkit::{Cluster, Component};
use tokio_stream::StreamExt;

#[tokio::main]
async fn main() {
    let pods = arg("--pods", 100);
    let cluster = Cluster::start("kubernate-process").await;
    cluster.add_node("node-1");
    let client = Client::from_resolved(&cluster.admin_config()).unwrap();
    let root = cluster.dir.path().join("kubelet");
    let images = cluster.dir.path().join("images");
    testkit::import_busybox(&images);
    let kubelet = Component::start(
        &cluster,
        "kubernate-kubelet",
        "nodes/node-1",
        &[
            "--hostname-override",
            "node-1",
            "--root-dir",
            root.to_str().unwrap(),
            "--image-store",
            images.to_str().unwrap(),
            "--node-ip",
            "127.0.0.1",
        ],
    );
    let scheduler = Component::start(&cluster, "kubernate-scheduler", "scheduler", &["--leader-elect=false"]);
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    testkit::wait_for("the node", Duration::from_secs(60), || async {
        let (ok, out, _) = cluster.kubectl(&["get", "node", "node-1", "-o", "name"], None).await;
        (ok && !out.is_empty()).then_some(())
    })
    .await;

    let list = api.list(&ListParams::default()).await.unwrap();
    let mut stream = Box::pin(
        api.watch(&ListParams::default(), &list.resource_version, 0)
            .await
            .unwrap(),
    );
    let watcher = tokio::spawn(async move {
        let mut running: HashMap<String, Instant> = HashMap::new();
        while running.len() < pods {
            match stream.next().await {
                Some(Ok(WatchEvent::Modified(p))) => {
                    if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                        running
                            .entry(p.metadata.name.unwrap_or_default())
                            .or_insert_with(Instant::now);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("watch failed: {e}"),
                None => panic!("watch ended"),
            }
        }
        running
    });
    let mut created = HashMap::new();
    let started = Instant::now();
    for i in 0..pods {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("p-{i}"), "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]},
        }))
        .unwrap();
        created.insert(format!("p-{i}"), Instant::now());
        api.create(&pod).await.unwrap();
    }
    let running = tokio::time::timeout(Duration::from_secs(300), watcher)
        .await
        .unwrap()
        .unwrap();
    let total = started.elapsed();
    let mut latencies: Vec<Duration> = running
        .iter()
        .filter_map(|(name, at)| created.get(name).map(|c| at.saturating_duration_since(*c)))
        .collect();
    latencies.sort();
    println!("| pods | p50 ms | p99 ms | max ms | all Running after |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| {pods} | {:.0} | {:.0} | {:.0} | {:.1} s |",
        percentile_ms(&latencies, 0.5),
        percentile_ms(&latencies, 0.99),
        percentile_ms(&latencies, 1.0),
        total.as_secs_f64()
    );

    // Clean up: every container stopped before the cluster goes.
    for i in 0..pods {
        let _ = api.delete(&format!("p-{i}"), &DeleteParams::default()).await;
    }
    testkit::wait_for("pods gone", Duration::from_secs(120), || async {
        api.list(&ListParams::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    drop(scheduler);
    drop(kubelet);
    cluster.stop().await;
}
