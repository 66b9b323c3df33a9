//! The disruption controller end to end: a budget's status counts its
//! ready pods, evictions spend what it allows and get 429 beyond it, and
//! replacements make room again, as `kubectl drain` relies on.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use std::time::Duration;

use client::{Api, DeleteParams, ListParams};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use support::{wait_for, Env};

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_respect_the_budget_the_controller_computes() {
    let env = Env::start(&[]).await;
    let _kubelet = env.fake_kubelet("n1");
    env.apply(
        r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}"#,
    )
    .await;
    env.apply(
        r#"{"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}}"#,
    )
    .await;
    let budgets: Api<PodDisruptionBudget> = env.api("default");
    let status = || async {
        let b = budgets.get("web").await.unwrap();
        b.status.map(|s| {
            (
                s.current_healthy,
                s.desired_healthy,
                s.disruptions_allowed,
                s.expected_pods,
            )
        })
    };
    wait_for("the budget computed", T, || async {
        (status().await == Some((3, 2, 1, 3))).then_some(())
    })
    .await;

    let pods: Api<Pod> = env.api("default");
    let names: Vec<String> = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    // A dry run checks the budget but spends nothing and deletes nothing.
    let eviction = format!(
        r#"{{"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {{"name": "{}", "namespace": "default"}}}}"#,
        names[0]
    );
    let path = format!("/api/v1/namespaces/default/pods/{}/eviction?dryRun=All", names[0]);
    let (ok, out, err) = env
        .cluster
        .kubectl(&["create", "--raw", &path, "-f", "-"], Some(&eviction))
        .await;
    assert!(ok, "{out}{err}");
    assert!(pods.get_opt(&names[0]).await.unwrap().is_some());
    assert_eq!(status().await.map(|s| s.2), Some(1));
    pods.evict(&names[0], &DeleteParams::default()).await.unwrap();
    let refused = pods.evict(&names[1], &DeleteParams::default()).await.unwrap_err();
    assert!(refused.to_string().contains("disruption budget"), "{refused}");
    // The Deployment replaces the evicted pod; once it is ready the
    // budget allows one disruption again.
    wait_for("room again", T, || async {
        let s = status().await;
        (s.is_some_and(|(healthy, _, allowed, _)| healthy == 3 && allowed == 1)).then_some(())
    })
    .await;
    pods.evict(&names[1], &DeleteParams::default()).await.unwrap();
    env.cluster.stop().await;
}
