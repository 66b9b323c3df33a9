//! A cluster with the scheduler running against it, and Node objects
//! standing in for machines (no kubelet is needed to schedule).

#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use client::{Api, Client, ListParams, Patch};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};
pub use testkit::wait_for;
use testkit::{Cluster, Component};

pub const T: Duration = Duration::from_secs(60);

pub struct Env {
    pub cluster: Cluster,
    pub client: Client,
    pub scheduler: Component,
}

impl Env {
    pub async fn start(args: &[&str]) -> Env {
        let cluster = Cluster::start("kubernate").await;
        let client = Client::from_resolved(&cluster.admin_config()).unwrap();
        let mut all = vec!["--leader-elect-retry-period-seconds", "0.5"];
        all.extend_from_slice(args);
        let scheduler = Component::start(&cluster, "kubernate-scheduler", "scheduler", &all);
        Env {
            cluster,
            client,
            scheduler,
        }
    }

    pub async fn apply(&self, manifest: &str) {
        let (ok, out, err) = self.cluster.kubectl(&["apply", "-f", "-"], Some(manifest)).await;
        assert!(ok, "kubectl apply failed: {out}{err}");
    }

    /// A Node with this capacity, labels and taints, reported Ready.
    pub async fn node(&self, name: &str, cpu: &str, memory: &str, labels: Value, taints: Value) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let mut all_labels = json!({"kubernetes.io/hostname": name});
        if let Some(extra) = labels.as_object() {
            for (k, v) in extra {
                all_labels[k] = v.clone();
            }
        }
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": all_labels},
            "spec": {"taints": taints},
        }))
        .unwrap();
        nodes.create(&node).await.unwrap();
        let status = json!({"status": {
            "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        }});
        nodes.patch_status(name, &Patch::Merge(status)).await.unwrap();
    }

    /// A pod asking for `cpu`, with extra spec fields merged in.
    pub async fn pod(&self, name: &str, cpu: &str, extra: Value) {
        let mut spec = json!({"containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": cpu, "memory": "10Mi"}}}]});
        if let Some(extra) = extra.as_object() {
            for (k, v) in extra {
                spec[k] = v.clone();
            }
        }
        let labels = json!({"app": name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')});
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "labels": labels}, "spec": spec}))
        .unwrap();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        api.create(&pod).await.unwrap();
    }

    /// The node the pod is bound to, once it is.
    pub async fn wait_bound(&self, name: &str) -> String {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        wait_for(&format!("{name} bound"), T, || async {
            api.get(name).await.ok()?.spec?.node_name
        })
        .await
    }

    pub async fn node_of(&self, name: &str) -> Option<String> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        api.get(name).await.ok()?.spec?.node_name
    }

    pub async fn pods(&self) -> Vec<Pod> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        api.list(&ListParams::default()).await.unwrap().items
    }

    /// The messages of the pod's FailedScheduling events.
    pub async fn failed_scheduling(&self, pod: &str) -> Vec<String> {
        let events = self
            .cluster
            .json(&[
                "get",
                "events",
                "-n",
                "default",
                "--field-selector",
                &format!("involvedObject.name={pod}"),
                "-o",
                "json",
            ])
            .await;
        events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["reason"] == "FailedScheduling")
            .filter_map(|e| e["message"].as_str().map(str::to_string))
            .collect()
    }
}
