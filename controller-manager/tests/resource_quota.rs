//! The resource-quota controller end to end: a quota's status counts its
//! namespace's objects, and deleting objects hands their share back so
//! that creates refused by the API server's quota admission succeed
//! again.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use std::time::Duration;

use client::Api;
use k8s_openapi::api::core::v1::ResourceQuota;
use support::{wait_for, Env};

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_objects_free_their_quota() {
    let env = Env::start(&["--resource-quota-sync-period", "2s"]).await;
    env.cluster.must(&["create", "namespace", "team"]).await;
    // Objects that exist before the quota are counted too.
    env.cluster.must(&["create", "configmap", "old", "-n", "team"]).await;
    env.apply(
        r#"{"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q", "namespace": "team"},
            "spec": {"hard": {"count/configmaps": "3", "secrets": "5"}}}"#,
    )
    .await;
    let quotas: Api<ResourceQuota> = env.api("team");
    let used = |key: &'static str| {
        let quotas = quotas.clone();
        async move {
            let q = quotas.get("q").await.unwrap();
            q.status
                .and_then(|s| s.used)
                .and_then(|u| u.get(key).map(|v| v.0.clone()))
        }
    };
    // kube-root-ca.crt (the root CA publisher's) and "old".
    wait_for("the quota counted", T, || async {
        (used("count/configmaps").await.as_deref() == Some("2")).then_some(())
    })
    .await;
    assert_eq!(used("secrets").await.as_deref(), Some("0"));

    env.cluster.must(&["create", "configmap", "new", "-n", "team"]).await;
    let (ok, _, err) = env
        .cluster
        .kubectl(&["create", "configmap", "more", "-n", "team"], None)
        .await;
    assert!(!ok && err.contains("exceeded quota: q"), "{err}");

    env.cluster
        .must(&["delete", "configmap", "old", "new", "-n", "team"])
        .await;
    wait_for("the share handed back", T, || async {
        (used("count/configmaps").await.as_deref() == Some("1")).then_some(())
    })
    .await;
    env.cluster.must(&["create", "configmap", "more", "-n", "team"]).await;
    env.cluster.stop().await;
}
