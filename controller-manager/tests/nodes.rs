//! The node lifecycle controller and the pod garbage collector end to
//! end: a node whose Lease stops is marked Unknown and tainted, its pods
//! are evicted after their tolerationSeconds and replaced elsewhere, and
//! the taints go when it comes back; finished and orphaned pods are
//! collected.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use client::api::timestamp_now;
use client::{Api, ListParams, Patch};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;
use support::{live_pods, wait_for, Env};

const T: Duration = Duration::from_secs(60);

/// Plays a kubelet's heartbeat for `node` while the flag is set: renews
/// its Lease and reports Ready.
fn heartbeat(env: &Env, node: &str) -> Arc<AtomicBool> {
    let running = Arc::new(AtomicBool::new(true));
    let flag = running.clone();
    let client = env.client.clone();
    let node = node.to_string();
    tokio::spawn(async move {
        let nodes: Api<Node> = Api::all(client.clone());
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client, "kube-node-lease");
        while flag.load(Ordering::SeqCst) {
            let now = timestamp_now().to_string();
            let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": node, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": timestamp_now().to_string()}});
            let lease: k8s_openapi::api::coordination::v1::Lease = serde_json::from_value(lease).unwrap();
            if leases.get_opt(&node).await.ok().flatten().is_some() {
                let _ = leases
                    .patch(
                        &node,
                        &Patch::Merge(json!({"spec": {"renewTime": timestamp_now().to_string()}})),
                    )
                    .await;
            } else {
                let _ = leases.create(&lease).await;
            }
            let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "lastHeartbeatTime": now, "lastTransitionTime": now}]}});
            let _ = nodes.patch_status(&node, &Patch::Merge(status)).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    running
}

async fn taint_keys(nodes: &Api<Node>, name: &str) -> Vec<String> {
    let node = nodes.get(name).await.unwrap();
    let mut keys: Vec<String> = node
        .spec
        .and_then(|s| s.taints)
        .unwrap_or_default()
        .into_iter()
        .map(|t| format!("{}:{}", t.key, t.effect))
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_is_tainted_and_its_pods_move_elsewhere() {
    let env = Env::start(&[
        "--node-monitor-grace-period",
        "3s",
        "--node-monitor-period",
        "300ms",
        "--node-eviction-rate",
        "100",
    ])
    .await;
    let _ = env
        .cluster
        .kubectl(&["create", "namespace", "kube-node-lease"], None)
        .await;
    for n in ["n1", "n2"] {
        env.apply(&format!(
            r#"{{"apiVersion": "v1", "kind": "Node", "metadata": {{"name": "{n}"}}}}"#
        ))
        .await;
    }
    let beat1 = heartbeat(&env, "n1");
    let _beat2 = heartbeat(&env, "n2");
    let kubelet1 = env.fake_kubelet("n1");
    env.apply(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: busybox}]
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
"#,
    )
    .await;
    wait_for("2 pods on n1", T, || async {
        let pods = live_pods(&env.client, "default", "app=web").await;
        let on_n1 = pods
            .iter()
            .filter(|p| {
                p.spec.as_ref().unwrap().node_name.as_deref() == Some("n1")
                    && p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some()
            })
            .count();
        (on_n1 == 2).then_some(())
    })
    .await;
    let nodes: Api<Node> = Api::all(env.client.clone());
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        taint_keys(&nodes, "n1").await.is_empty(),
        "a healthy node is not tainted"
    );

    // n1 goes silent; n2's kubelet takes the new pods.
    beat1.store(false, Ordering::SeqCst);
    kubelet1.store(false, Ordering::SeqCst);
    let _kubelet2 = env.fake_kubelet("n2");
    wait_for("n1 Unknown and tainted", T, || async {
        let node = nodes.get("n1").await.unwrap();
        let ready = node.status?.conditions?.into_iter().find(|c| c.type_ == "Ready")?;
        let keys = taint_keys(&nodes, "n1").await;
        (ready.status == "Unknown"
            && keys
                == vec![
                    "node.kubernetes.io/unreachable:NoExecute",
                    "node.kubernetes.io/unreachable:NoSchedule",
                ])
        .then_some(())
    })
    .await;
    wait_for("pods replaced on n2", T, || async {
        let pods = live_pods(&env.client, "default", "app=web").await;
        let on_n2 = pods
            .iter()
            .filter(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some("n2"))
            .count();
        (pods.len() == 2 && on_n2 == 2).then_some(())
    })
    .await;
    // The old pods are marked for deletion, waiting for their kubelet.
    let all: Api<Pod> = env.api("default");
    let old = all.list(&ListParams::default().labels("app=web")).await.unwrap().items;
    let evicted = old
        .iter()
        .filter(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some("n1"))
        .collect::<Vec<_>>();
    assert_eq!(evicted.len(), 2);
    assert!(evicted.iter().all(|p| p.metadata.deletion_timestamp.is_some()));
    assert!(taint_keys(&nodes, "n2").await.is_empty());

    // n1 comes back: the taints go.
    let _beat1 = heartbeat(&env, "n1");
    wait_for("n1 untainted", T, || async {
        taint_keys(&nodes, "n1").await.is_empty().then_some(())
    })
    .await;
    env.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_gc_collects_finished_and_orphaned_pods() {
    let env = Env::start(&[
        "--controllers",
        "podgc",
        "--pod-gc-period",
        "300ms",
        "--terminated-pod-gc-threshold",
        "2",
    ])
    .await;
    let pods: Api<Pod> = env.api("default");
    for i in 0..4 {
        env.apply(&format!(
            r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "done-{i}", "namespace": "default"}},
                "spec": {{"containers": [{{"name": "c", "image": "busybox"}}]}}}}"#
        ))
        .await;
        pods.patch_status(
            &format!("done-{i}"),
            &Patch::Merge(json!({"status": {"phase": "Failed"}})),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await; // Distinct creation times.
    }
    env.apply(
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stray", "namespace": "default"},
            "spec": {"nodeName": "ghost", "containers": [{"name": "c", "image": "busybox"}]}}"#,
    )
    .await;
    wait_for("the oldest finished pods and the stray collected", T, || async {
        let mut names: Vec<String> = pods
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect();
        names.sort();
        (names == vec!["done-2", "done-3"]).then_some(())
    })
    .await;
    env.cluster.stop().await;
}
