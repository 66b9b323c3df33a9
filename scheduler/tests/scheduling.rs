//! The scheduler end to end with the real API server and store, on Node
//! objects only: resources, taints, affinity, topology spread,
//! anti-affinity, priority and preemption, and a restart.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use client::{Api, DeleteParams};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use support::{wait_for, Env, T};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_for_lack_of_cpu_until_a_node_is_added() {
    let env = Env::start(&[]).await;
    env.node("small-1", "1", "4Gi", json!({}), json!([])).await;
    env.node("small-2", "1", "4Gi", json!({}), json!([])).await;
    env.pod("big", "2", json!({})).await;
    let message = wait_for("a FailedScheduling event", T, || async {
        env.failed_scheduling("big").await.into_iter().next()
    })
    .await;
    assert!(
        message.starts_with("0/2 nodes are available: 2 Insufficient cpu."),
        "{message}"
    );
    let pod: Pod = Api::namespaced(env.client.clone(), "default").get("big").await.unwrap();
    let condition = pod
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "PodScheduled")
        .unwrap();
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_deref()),
        ("False", Some("Unschedulable"))
    );

    env.node("large", "4", "8Gi", json!({}), json!([])).await;
    assert_eq!(env.wait_bound("big").await, "large");
    let metrics = env.scheduler.metrics().await;
    assert!(
        metrics.contains("scheduler_schedule_attempts_total{profile=\"default-scheduler\",result=\"scheduled\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("scheduler_schedule_attempts_total{profile=\"default-scheduler\",result=\"unschedulable\"}")
    );
    env.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taints_tolerations_and_node_affinity() {
    let env = Env::start(&[]).await;
    let gpu_taint = json!([{"key": "gpu", "value": "true", "effect": "NoSchedule"}]);
    env.node("gpu", "4", "8Gi", json!({"zone": "a"}), gpu_taint).await;
    env.node("plain-a", "4", "8Gi", json!({"zone": "a"}), json!([])).await;
    env.node("plain-b", "4", "8Gi", json!({"zone": "b"}), json!([])).await;

    // Tolerating and selecting the taint's node.
    env.pod(
        "trainer",
        "1",
        json!({"nodeSelector": {"kubernetes.io/hostname": "gpu"},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]}),
    )
    .await;
    assert_eq!(env.wait_bound("trainer").await, "gpu");
    // Selecting it without tolerating: never scheduled, and told why.
    env.pod(
        "intruder",
        "1",
        json!({"nodeSelector": {"kubernetes.io/hostname": "gpu"}}),
    )
    .await;
    let message = wait_for("FailedScheduling", T, || async {
        env.failed_scheduling("intruder").await.into_iter().next()
    })
    .await;
    assert!(
        message.contains("1 node(s) had untolerated taint {gpu: true}"),
        "{message}"
    );
    assert!(
        message.contains("2 node(s) didn't match Pod's node affinity/selector"),
        "{message}"
    );
    // Required node affinity: zone b only.
    env.pod(
        "zonal",
        "1",
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
        {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}]}}}}),
    )
    .await;
    assert_eq!(env.wait_bound("zonal").await, "plain-b");
    // Preferred affinity picks zone a among untainted nodes.
    env.pod(
        "prefers-a",
        "1",
        json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution":
        [{"weight": 100, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}]}}}),
    )
    .await;
    assert_eq!(env.wait_bound("prefers-a").await, "plain-a");
    assert_eq!(env.node_of("intruder").await, None);
    env.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_spread_and_anti_affinity() {
    let env = Env::start(&[]).await;
    for zone in ["a", "b", "c"] {
        for i in 1..=2 {
            env.node(&format!("{zone}{i}"), "8", "16Gi", json!({"zone": zone}), json!([]))
                .await;
        }
    }
    let spread = json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
        "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]});
    for i in 0..6 {
        env.pod(&format!("web-{i}"), "100m", spread.clone()).await;
        env.wait_bound(&format!("web-{i}")).await;
    }
    let mut per_zone: BTreeMap<char, usize> = BTreeMap::new();
    for i in 0..6 {
        let node = env.node_of(&format!("web-{i}")).await.unwrap();
        *per_zone.entry(node.chars().next().unwrap()).or_default() += 1;
    }
    assert_eq!(
        per_zone.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "{per_zone:?}"
    );

    // One db per node by anti-affinity on the hostname; the 7th has nowhere to go.
    let apart = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
        [{"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    for i in 0..7 {
        env.pod(&format!("db-{i}"), "100m", apart.clone()).await;
    }
    let mut nodes = Vec::new();
    for i in 0..6 {
        nodes.push(env.wait_bound(&format!("db-{i}")).await);
    }
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 6, "one per node");
    let message = wait_for("db-6 refused", T, || async {
        env.failed_scheduling("db-6").await.into_iter().next()
    })
    .await;
    assert!(
        message.contains("6 node(s) didn't match pod anti-affinity rules"),
        "{message}"
    );
    env.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_priority_pod_preempts_a_lower_one() {
    let env = Env::start(&[]).await;
    env.apply(
        r#"
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: low}
value: 10
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: high}
value: 1000
"#,
    )
    .await;
    env.node("only", "2", "4Gi", json!({}), json!([])).await;
    env.pod("filler", "1500m", json!({"priorityClassName": "low"})).await;
    assert_eq!(env.wait_bound("filler").await, "only");
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    assert_eq!(
        pods.get("filler").await.unwrap().spec.unwrap().priority,
        Some(10),
        "priority admission"
    );

    env.pod("vip", "1500m", json!({"priorityClassName": "high"})).await;
    // The victim is deleted gracefully (it is bound); finish it as its kubelet would.
    let victim = wait_for("the victim marked for deletion", T, || async {
        let p = pods.get_opt("filler").await.unwrap()?;
        p.metadata.deletion_timestamp.is_some().then_some(p)
    })
    .await;
    // The preemptor is nominated to the node (written just after the victims' deletion).
    wait_for("vip nominated", T, || async {
        let vip = pods.get("vip").await.ok()?;
        (vip.status?.nominated_node_name.as_deref() == Some("only")).then_some(())
    })
    .await;
    let force = DeleteParams {
        grace_period_seconds: Some(0),
        uid: victim.metadata.uid.clone(),
        ..Default::default()
    };
    pods.delete("filler", &force).await.unwrap();
    assert_eq!(env.wait_bound("vip").await, "only");

    // A pod of equal or lower priority preempts nobody.
    env.pod("late", "1500m", json!({"priorityClassName": "low"})).await;
    wait_for("late refused", T, || async {
        env.failed_scheduling("late").await.into_iter().next()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(pods.get("vip").await.unwrap().metadata.deletion_timestamp.is_none());
    // Unknown classes are refused at admission.
    let (ok, _, err) = env
        .cluster
        .kubectl(
            &[
                "run",
                "x",
                "--image=busybox",
                "--overrides",
                r#"{"spec": {"priorityClassName": "nope"}}"#,
            ],
            None,
        )
        .await;
    assert!(
        !ok && err.contains("no PriorityClass with name nope was found"),
        "{err}"
    );
    env.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_scheduler_loses_no_pod() {
    let mut env = Env::start(&[]).await;
    for i in 0..4 {
        env.node(&format!("n{i}"), "8", "16Gi", json!({}), json!([])).await;
    }
    for i in 0..20 {
        env.pod(&format!("p-{i}"), "100m", json!({})).await;
    }
    env.scheduler.kill();
    for i in 20..40 {
        env.pod(&format!("p-{i}"), "100m", json!({})).await;
    }
    env.scheduler.restart();
    wait_for("all 40 bound", T, || async {
        let pods = env.pods().await;
        (pods.len() == 40 && pods.iter().all(|p| p.spec.as_ref().unwrap().node_name.is_some())).then_some(())
    })
    .await;
    env.cluster.stop().await;
}
