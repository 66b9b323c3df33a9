//! The controller manager as a process: its metrics, and refusing
//! unknown controller names.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use std::time::Duration;

use support::{wait_for, Env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_workqueues_and_the_leader() {
    let env = Env::start(&[]).await;
    env.apply(
        r#"{"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "m", "namespace": "default"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "m"}},
                     "template": {"metadata": {"labels": {"app": "m"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}"#,
    )
    .await;
    let metrics = wait_for("metrics with work done", Duration::from_secs(30), || async {
        let m = env.metrics().await;
        m.lines()
            .any(|l| l.starts_with("workqueue_adds_total{name=\"replicaset\"}") && !l.ends_with(" 0"))
            .then_some(m)
    })
    .await;
    for queue in [
        "deployment",
        "garbage_collector_attempt_to_delete",
        "endpoint",
        "endpoint_slice",
        "namespace",
    ] {
        assert!(
            metrics.contains(&format!("workqueue_depth{{name=\"{queue}\"}}")),
            "no queue {queue}:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("leader_election_master_status{name=\"kube-controller-manager\"} 1"),
        "{metrics}"
    );
    env.cluster.stop().await;
}

#[test]
fn unknown_controller_names_are_refused() {
    let out = std::process::Command::new(testkit::binary("kubernate-controller-manager"))
        .args(["--kubeconfig", "/nonexistent", "--controllers", "*,replicasets"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown controller \"replicasets\""), "{stderr}");
    assert!(
        stderr.contains("replicaset, replicationcontroller, deployment"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_cluster_roles_gather_their_parts_rules() {
    let env = Env::start(&[]).await;
    let roles: client::Api<k8s_openapi::api::rbac::v1::ClusterRole> = client::Api::all(env.client.clone());
    // The bootstrap `view` role already holds its system:aggregate-to-view rules.
    wait_for("view aggregated", Duration::from_secs(30), || async {
        let view = roles.get("view").await.ok()?;
        view.rules
            .unwrap_or_default()
            .iter()
            .any(|r| r.resources.iter().flatten().any(|x| x == "pods/log"))
            .then_some(())
    })
    .await;
    env.apply(
        r#"{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "widgets-view", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
            "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get", "list"]}]}"#,
    )
    .await;
    for name in ["view", "edit", "admin"] {
        wait_for(&format!("{name} holding widgets"), Duration::from_secs(30), || async {
            let role = roles.get(name).await.ok()?;
            role.rules
                .unwrap_or_default()
                .iter()
                .any(|r| r.resources.iter().flatten().any(|x| x == "widgets"))
                .then_some(())
        })
        .await;
    }
    env.cluster.stop().await;
}
