//! A cluster (store + API server) with the controller manager running
//! against it, and a stand-in for kubelets: the controllers are tested
//! end to end, and pods "run" because the test writes their status the
//! way a kubelet would.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use client::api::timestamp_now;
use client::{Api, Client, DeleteParams, ListParams, Patch};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
pub use testkit::wait_for;
use testkit::{Cluster, Component};

pub struct Env {
    pub cluster: Cluster,
    pub client: Client,
    manager: Component,
}

impl Env {
    /// A cluster and a controller manager with `args` added to its flags.
    pub async fn start(args: &[&str]) -> Env {
        let cluster = Cluster::start("kubernate").await;
        let client = Client::from_resolved(&cluster.admin_config()).unwrap();
        let mut all = vec!["--leader-elect-retry-period", "500ms"];
        all.extend_from_slice(args);
        let manager = Component::start(&cluster, "kubernate-controller-manager", "controller-manager", &all);
        Env {
            cluster,
            client,
            manager,
        }
    }

    pub fn start_manager(&mut self) {
        self.manager.restart();
    }

    /// kill -9 of the controller manager.
    pub fn kill_manager(&mut self) {
        self.manager.kill();
    }

    pub fn manager_log(&self) -> String {
        self.manager.log()
    }

    pub fn api<K: client::api::Object>(&self, namespace: &str) -> Api<K> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// `kubectl apply -f -` of a YAML manifest.
    pub async fn apply(&self, manifest: &str) {
        let (ok, out, err) = self.cluster.kubectl(&["apply", "-f", "-"], Some(manifest)).await;
        assert!(ok, "kubectl apply failed: {out}{err}");
    }

    /// Plays the kubelet of node `node` for every pod until the returned
    /// flag is cleared: binds unscheduled pods, reports them Running and
    /// Ready, and finishes graceful deletions.
    pub fn fake_kubelet(&self, node: &str) -> Arc<AtomicBool> {
        let running = Arc::new(AtomicBool::new(true));
        let flag = running.clone();
        let pods: Api<Pod> = Api::all(self.client.clone());
        let node = node.to_string();
        let client = self.client.clone();
        tokio::spawn(async move {
            while flag.load(Ordering::SeqCst) {
                if let Ok(list) = pods.list(&ListParams::default()).await {
                    for pod in list.items {
                        let _ = run_pod(&client, &pod, &node).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        running
    }

    pub async fn metrics(&self) -> String {
        self.manager.metrics().await
    }
}

/// One kubelet step for one pod.
pub async fn run_pod(client: &Client, pod: &Pod, node: &str) -> client::Result<()> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let bound_to = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
    if bound_to.is_some_and(|n| n != node) {
        return Ok(()); // Another node's pod.
    }
    if pod.metadata.deletion_timestamp.is_some() {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        api.delete(name, &params).await?;
        return Ok(());
    }
    if bound_to.is_none() {
        api.bind(name, node).await?;
    }
    // A pod reported once keeps its status: tests may change it.
    let reported = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready"));
    if !reported {
        set_ready(&api, name, true).await?;
    }
    Ok(())
}

/// The IP the stand-in kubelet gives a pod: 10.244.x.y from its name.
pub fn pod_ip(name: &str) -> String {
    let h = name
        .bytes()
        .fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    format!("10.244.{}.{}", (h >> 8) & 0xff, h & 0xff)
}

/// Writes a pod's status as Running with Ready = `ready`.
pub async fn set_ready(api: &Api<Pod>, name: &str, ready: bool) -> client::Result<Pod> {
    let now = timestamp_now().to_string();
    let status = if ready { "True" } else { "False" };
    let ip = pod_ip(name);
    let patch = json!({"status": {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": status, "lastTransitionTime": now}],
    }});
    api.patch_status(name, &Patch::Merge(patch)).await
}

/// The pods in `namespace` that `selector` selects and that are not being
/// deleted.
pub async fn live_pods(client: &Client, namespace: &str, selector: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = api.list(&ListParams::default().labels(selector)).await.unwrap();
    list.items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}
