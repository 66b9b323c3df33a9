//! The garbage collector end to end: background, foreground and orphan
//! propagation through kubectl, dangling owner references, and custom
//! resources as owners.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use std::time::Duration;

use client::{Api, ListParams};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use support::{live_pods, wait_for, Env};

const T: Duration = Duration::from_secs(60);

fn deployment(name: &str) -> String {
    format!(
        r#"{{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {{"name": "{name}", "namespace": "default"}},
            "spec": {{"replicas": 2, "selector": {{"matchLabels": {{"app": "{name}"}}}},
                     "template": {{"metadata": {{"labels": {{"app": "{name}"}}}}, "spec": {{"containers": [{{"name": "c", "image": "busybox"}}]}}}}}}}}"#
    )
}

async fn count<K: client::api::Object>(env: &Env, selector: &str) -> usize {
    let api: Api<K> = env.api("default");
    api.list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
        .len()
}

async fn wait_for_pods(env: &Env, app: &str, n: usize) {
    wait_for("pods", T, || async {
        (live_pods(&env.client, "default", &format!("app={app}")).await.len() == n).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_foreground_and_orphan_deletion() {
    let env = Env::start(&["--discovery-period", "1s"]).await;
    let _kubelet = env.fake_kubelet("n1");
    for name in ["bg", "fg", "or"] {
        env.apply(&deployment(name)).await;
    }
    for name in ["bg", "fg", "or"] {
        wait_for_pods(&env, name, 2).await;
    }

    // Background (kubectl's default): the Deployment goes at once, the rest follows.
    env.cluster.must(&["delete", "deployment", "bg", "--wait=false"]).await;
    wait_for("bg ReplicaSet and pods collected", T, || async {
        (count::<ReplicaSet>(&env, "app=bg").await == 0 && count::<Pod>(&env, "app=bg").await == 0).then_some(())
    })
    .await;

    // Foreground: the Deployment stays, marked, until its dependents are gone.
    env.cluster
        .must(&["delete", "deployment", "fg", "--cascade=foreground", "--wait=false"])
        .await;
    let d: Api<Deployment> = env.api("default");
    let marked = d.get("fg").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert!(marked
        .metadata
        .finalizers
        .unwrap()
        .contains(&"foregroundDeletion".to_string()));
    wait_for("fg and dependents gone", T, || async {
        let gone = d.get_opt("fg").await.unwrap().is_none();
        if gone {
            // The owner went last.
            assert_eq!(count::<ReplicaSet>(&env, "app=fg").await, 0);
            assert_eq!(count::<Pod>(&env, "app=fg").await, 0);
        }
        gone.then_some(())
    })
    .await;

    // Orphan: the ReplicaSet goes, its pods stay without an owner.
    let rs: Api<ReplicaSet> = env.api("default");
    let or_rs = rs.list(&ListParams::default().labels("app=or")).await.unwrap().items;
    let rs_name = or_rs[0].metadata.name.clone().unwrap();
    env.cluster
        .must(&["delete", "deployment", "or", "--cascade=orphan"])
        .await;
    env.cluster
        .must(&["delete", "replicaset", &rs_name, "--cascade=orphan"])
        .await;
    wait_for("or ReplicaSet gone, pods orphaned", T, || async {
        let pods = live_pods(&env.client, "default", "app=or").await;
        let orphaned = pods.len() == 2
            && pods
                .iter()
                .all(|p| p.metadata.owner_references.as_ref().is_none_or(|r| r.is_empty()));
        (rs.get_opt(&rs_name).await.unwrap().is_none() && orphaned).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        live_pods(&env.client, "default", "app=or").await.len(),
        2,
        "orphans stay"
    );
    env.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependents_of_vanished_owners_are_collected_and_custom_resources_count_as_owners() {
    let env = Env::start(&["--controllers", "garbagecollector", "--discovery-period", "1s"]).await;
    let cms: Api<ConfigMap> = env.api("default");
    env.apply(r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner", "namespace": "default"}}"#)
        .await;
    let owner_uid = cms.get("owner").await.unwrap().metadata.uid.unwrap();
    let owned_by = |refs: &[(&str, &str)]| {
        let refs: Vec<String> = refs
            .iter()
            .map(|(name, uid)| {
                format!(r#"{{"apiVersion": "v1", "kind": "ConfigMap", "name": "{name}", "uid": "{uid}"}}"#)
            })
            .collect();
        refs.join(",")
    };
    // Owned by something that never existed: collected.
    env.apply(&format!(
        r#"{{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "dangling", "namespace": "default", "ownerReferences": [{}]}}}}"#,
        owned_by(&[("ghost", "00000000-0000-0000-0000-000000000001")])
    ))
    .await;
    // Owned by one that exists and one that does not: only the reference goes.
    env.apply(&format!(
        r#"{{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "half", "namespace": "default", "ownerReferences": [{}]}}}}"#,
        owned_by(&[("owner", &owner_uid), ("ghost", "00000000-0000-0000-0000-000000000002")])
    ))
    .await;
    wait_for("dangling collected, half trimmed", T, || async {
        let dangling_gone = cms.get_opt("dangling").await.unwrap().is_none();
        let half = cms.get("half").await.unwrap();
        let refs = half.metadata.owner_references.unwrap_or_default();
        (dangling_gone && refs.len() == 1 && refs[0].uid == owner_uid).then_some(())
    })
    .await;
    // Deleting the remaining owner collects the dependent.
    cms.delete("owner", &Default::default()).await.unwrap();
    wait_for("half collected", T, || async {
        cms.get_opt("half").await.unwrap().is_none().then_some(())
    })
    .await;

    // A custom resource as owner.
    env.apply(
        r#"{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                     "versions": [{"name": "v1", "served": true, "storage": true,
                                   "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}"#,
    )
    .await;
    wait_for("the CRD served", T, || async {
        let (ok, _, _) = env.cluster.kubectl(&["get", "widgets"], None).await;
        ok.then_some(())
    })
    .await;
    env.apply(
        r#"{"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "default"}}"#,
    )
    .await;
    let widget = env.cluster.json(&["get", "widget", "w", "-o", "json"]).await;
    let widget_uid = widget["metadata"]["uid"].as_str().unwrap().to_string();
    env.apply(&format!(
        r#"{{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "of-widget", "namespace": "default",
             "ownerReferences": [{{"apiVersion": "example.com/v1", "kind": "Widget", "name": "w", "uid": "{widget_uid}"}}]}}}}"#
    ))
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        cms.get_opt("of-widget").await.unwrap().is_some(),
        "its owner exists: kept"
    );
    env.cluster.must(&["delete", "widget", "w"]).await;
    for _ in 0..300 {
        if cms.get_opt("of-widget").await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = env.manager_log();
    assert!(
        cms.get_opt("of-widget").await.unwrap().is_none(),
        "of-widget not collected:\n{}",
        &log[log.len().saturating_sub(5000)..]
    );
    env.cluster.stop().await;
}
