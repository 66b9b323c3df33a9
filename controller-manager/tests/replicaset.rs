//! The ReplicaSet and ReplicationController controllers against a real
//! API server and store.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use std::time::Duration;

use client::{Api, Patch};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use serde_json::json;
use support::{live_pods, set_ready, wait_for, Env};

const T: Duration = Duration::from_secs(30);

fn replicaset(name: &str, replicas: i32) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata: {{name: {name}, namespace: default}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: c, image: busybox}}]}}
"#
    )
}

async fn scale(env: &Env, name: &str, replicas: i32) {
    let api: Api<ReplicaSet> = env.api("default");
    api.patch(name, &Patch::Merge(json!({"spec": {"replicas": replicas}})))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_creates_pods_then_deletes_unscheduled_and_not_ready_first() {
    let env = Env::start(&[]).await;
    env.apply(&replicaset("web", 4)).await;
    let pods = wait_for("4 pods", T, || async {
        let pods = live_pods(&env.client, "default", "app=web").await;
        (pods.len() == 4).then_some(pods)
    })
    .await;
    let rs: ReplicaSet = env.api("default").get("web").await.unwrap();
    for pod in &pods {
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("ReplicaSet", Some(true)));
        assert_eq!(Some(&owner.uid), rs.metadata.uid.as_ref());
        assert!(pod.metadata.name.as_ref().unwrap().starts_with("web-"));
    }
    // Two pods run and are ready on a node, one runs but is not ready, one stays unscheduled.
    let api: Api<Pod> = env.api("default");
    let names: Vec<String> = pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
    for (i, name) in names.iter().enumerate().take(3) {
        api.bind(name, "n1").await.unwrap();
        set_ready(&api, name, i < 2).await.unwrap();
    }
    wait_for("status with 2 ready", T, || async {
        let rs: ReplicaSet = env.api("default").get("web").await.unwrap();
        let s = rs.status.unwrap_or_default();
        (s.replicas == 4
            && s.ready_replicas == Some(2)
            && s.available_replicas == Some(2)
            && s.fully_labeled_replicas == Some(4)
            && s.observed_generation == rs.metadata.generation)
            .then_some(())
    })
    .await;

    scale(&env, "web", 3).await;
    wait_for("the unscheduled pod deleted", T, || async {
        let left: Vec<String> = live_pods(&env.client, "default", "app=web")
            .await
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect();
        (left.len() == 3 && !left.contains(&names[3])).then_some(())
    })
    .await;
    scale(&env, "web", 2).await;
    let left = wait_for("the not-ready pod deleted", T, || async {
        let left: Vec<String> = live_pods(&env.client, "default", "app=web")
            .await
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect();
        (left.len() == 2).then_some(left)
    })
    .await;
    assert!(
        !left.contains(&names[2]),
        "the not-ready pod should go before ready ones: {left:?}"
    );
    // Steady: no further creates or deletes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(live_pods(&env.client, "default", "app=web").await.len(), 2);
    env.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_adopts_orphans_and_releases_pods_that_stop_matching() {
    let env = Env::start(&[]).await;
    // An orphan first: the ReplicaSet adopts it and creates only one more.
    env.apply(
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan", "namespace": "default", "labels": {"app": "db"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}"#,
    )
    .await;
    env.apply(&replicaset("db", 2)).await;
    let pods = wait_for("orphan adopted and one pod created", T, || async {
        let pods = live_pods(&env.client, "default", "app=db").await;
        let owned = pods.iter().filter(|p| p.metadata.owner_references.is_some()).count();
        (pods.len() == 2 && owned == 2).then_some(pods)
    })
    .await;
    assert!(pods.iter().any(|p| p.metadata.name.as_deref() == Some("orphan")));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        live_pods(&env.client, "default", "app=db").await.len(),
        2,
        "no extra pod"
    );

    // Relabelled, the pod is released (its reference removed) and replaced.
    let api: Api<Pod> = env.api("default");
    api.patch(
        "orphan",
        &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
    )
    .await
    .unwrap();
    wait_for("released and replaced", T, || async {
        let released = api.get("orphan").await.unwrap();
        let refs = released.metadata.owner_references.unwrap_or_default();
        let replaced = live_pods(&env.client, "default", "app=db").await.len() == 2;
        (refs.is_empty() && replaced).then_some(())
    })
    .await;
    env.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_controller_keeps_its_replicas() {
    let env = Env::start(&["--controllers", "replicationcontroller"]).await;
    env.apply(
        r#"{"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "rc", "namespace": "default"},
            "spec": {"replicas": 3, "selector": {"app": "rc"},
                     "template": {"metadata": {"labels": {"app": "rc"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}"#,
    )
    .await;
    let pods = wait_for("3 pods", T, || async {
        let pods = live_pods(&env.client, "default", "app=rc").await;
        (pods.len() == 3).then_some(pods)
    })
    .await;
    // A deleted pod is replaced.
    let api: Api<Pod> = env.api("default");
    let victim = pods[0].metadata.name.clone().unwrap();
    api.delete(&victim, &Default::default()).await.unwrap();
    wait_for("replacement", T, || async {
        let pods = live_pods(&env.client, "default", "app=rc").await;
        (pods.len() == 3 && pods.iter().all(|p| p.metadata.name.as_ref() != Some(&victim))).then_some(())
    })
    .await;
    wait_for("status", T, || async {
        let rc: ReplicationController = env.api("default").get("rc").await.unwrap();
        (rc.status.is_some_and(|s| s.replicas == 3)).then_some(())
    })
    .await;
    env.cluster.stop().await;
}
