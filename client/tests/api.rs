//! Typed access through the internal gRPC API, against the real API
//! server process: every verb, the pod subresources, and the errors a
//! controller branches on.

#![allow(clippy::unwrap_used)]

mod support;

use client::{Api, DeleteParams, ListParams, Patch, WatchEvent};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, PodStatus};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use support::*;
use testkit::Cluster;
use tokio_stream::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_verb_works_typed() {
    let cluster = Cluster::start("kubernate").await;
    let client = connect(&cluster);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let events = cms.watch(&ListParams::default(), "", 20).await.unwrap();
    tokio::pin!(events);
    let created = cms.create(&configmap("typed", "1")).await.unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    let first = tokio::time::timeout(WAIT, events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(first, WatchEvent::Added(c) if c.metadata.name.as_deref() == Some("typed")));

    assert!(cms
        .create(&configmap("typed", "1"))
        .await
        .unwrap_err()
        .is_already_exists());
    assert_eq!(
        cms.get("typed").await.unwrap().metadata.uid.as_deref(),
        Some(uid.as_str())
    );
    assert!(cms.get_opt("absent").await.unwrap().is_none());
    assert!(cms.get("absent").await.unwrap_err().is_not_found());

    // replace with a stale version is a conflict; with the current one it works.
    let mut stale = created.clone();
    let mut current = created.clone();
    current.data = Some([("v".to_string(), "2".to_string())].into());
    let current = cms.update(&current).await.unwrap();
    stale.data = Some([("v".to_string(), "3".to_string())].into());
    assert!(cms.update(&stale).await.unwrap_err().is_conflict());

    let merged = cms
        .patch("typed", &Patch::Merge(serde_json::json!({"data": {"w": "x"}})))
        .await
        .unwrap();
    assert_eq!(merged.data.as_ref().unwrap()["w"], "x");
    let json = cms
        .patch(
            "typed",
            &Patch::Json(serde_json::json!([{"op": "remove", "path": "/data/w"}])),
        )
        .await
        .unwrap();
    assert!(!json.data.as_ref().unwrap().contains_key("w"));

    // Paged lists read every page at one version.
    for i in 0..5 {
        cms.create(&configmap(&format!("page-{i}"), "p")).await.unwrap();
    }
    let page = cms
        .list(&ListParams {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    assert!(page.continue_token.is_some());
    let all = cms
        .list_all(&ListParams::default().labels("test=churn"), 2)
        .await
        .unwrap();
    assert_eq!(all.items.len(), 6);

    // Delete preconditions.
    let wrong_uid = DeleteParams {
        uid: Some("not-the-uid".into()),
        ..Default::default()
    };
    let e = cms.delete("typed", &wrong_uid).await.unwrap_err();
    assert!(e.is_conflict() && e.to_string().contains("Precondition failed"), "{e}");
    let old_version = DeleteParams {
        resource_version: created.metadata.resource_version.clone(),
        ..Default::default()
    };
    assert!(cms.delete("typed", &old_version).await.unwrap_err().is_conflict());
    let right = DeleteParams {
        uid: Some(uid),
        resource_version: json.metadata.resource_version.clone(),
        ..Default::default()
    };
    let deleted = cms.delete("typed", &right).await.unwrap();
    assert_eq!(deleted.metadata.name.as_deref(), Some("typed"));
    assert!(cms.get_opt("typed").await.unwrap().is_none());
    drop(current);

    // Cluster-scoped kinds.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let names: Vec<_> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.contains(&"kube-system".to_string()), "{names:?}");

    // Status is written only through update_status.
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut p = pods.create(&pod("status", "s", None)).await.unwrap();
    p.status = Some(PodStatus {
        phase: Some("Running".into()),
        ..Default::default()
    });
    let ignored = pods.update(&p).await.unwrap();
    assert_ne!(ignored.status.and_then(|s| s.phase).as_deref(), Some("Running"));
    let mut p = pods.get("status").await.unwrap();
    p.status = Some(PodStatus {
        phase: Some("Running".into()),
        ..Default::default()
    });
    let written = pods.update_status(&p).await.unwrap();
    assert_eq!(written.status.unwrap().phase.as_deref(), Some("Running"));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_assigns_a_node_exactly_once() {
    let cluster = Cluster::start("kubernate").await;
    let pods: Api<Pod> = Api::namespaced(connect(&cluster), "default");
    pods.create(&pod("p", "web", None)).await.unwrap();
    pods.bind("p", "node-1").await.unwrap();
    let bound = pods.get("p").await.unwrap();
    assert_eq!(bound.spec.unwrap().node_name.as_deref(), Some("node-1"));
    let scheduled = bound.status.unwrap().conditions.unwrap();
    assert!(scheduled
        .iter()
        .any(|c| c.type_ == "PodScheduled" && c.status == "True"));
    let again = pods.bind("p", "node-2").await.unwrap_err();
    assert!(
        again.is_conflict() && again.to_string().contains("already assigned"),
        "{again}"
    );
    assert!(pods.bind("absent", "node-1").await.unwrap_err().is_not_found());
    cluster.stop().await;
}

fn running(mut p: Pod) -> Pod {
    p.status = Some(PodStatus {
        phase: Some("Running".into()),
        ..Default::default()
    });
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_respects_disruption_budgets() {
    let cluster = Cluster::start("kubernate").await;
    let client = connect(&cluster);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for name in ["a", "b"] {
        let created = pods.create(&pod(name, "guarded", None)).await.unwrap();
        pods.update_status(&running(created)).await.unwrap();
    }
    pods.create(&pod("free", "other", None)).await.unwrap();

    // A pod no budget covers is simply evicted.
    pods.evict("free", &DeleteParams::default()).await.unwrap();
    assert!(pods.get_opt("free").await.unwrap().is_none());

    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client, "default");
    let pdb = pdbs
        .create(&PodDisruptionBudget {
            metadata: ObjectMeta {
                name: Some("keep-one".into()),
                ..Default::default()
            },
            spec: Some(PodDisruptionBudgetSpec {
                min_available: Some(IntOrString::Int(1)),
                selector: Some(LabelSelector {
                    match_labels: Some([("app".to_string(), "guarded".to_string())].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    // Until the budget's status is computed, evictions wait.
    let e = pods.evict("a", &DeleteParams::default()).await.unwrap_err();
    assert_eq!(e.code(), Some(429), "{e}");
    // One disruption allowed (what the disruption controller would write).
    let mut with_status = pdb.clone();
    with_status.status = Some(PodDisruptionBudgetStatus {
        current_healthy: 2,
        desired_healthy: 1,
        disruptions_allowed: 1,
        expected_pods: 2,
        observed_generation: pdb.metadata.generation,
        ..Default::default()
    });
    pdbs.update_status(&with_status).await.unwrap();
    pods.evict("a", &DeleteParams::default()).await.unwrap();
    assert!(pods.get_opt("a").await.unwrap().is_none());
    let e = pods.evict("b", &DeleteParams::default()).await.unwrap_err();
    assert_eq!(e.code(), Some(429), "the budget is spent: {e}");
    assert!(e.to_string().contains("disruption budget"), "{e}");
    assert!(pods.get_opt("b").await.unwrap().is_some());
    let spent = pdbs.get("keep-one").await.unwrap().status.unwrap();
    assert_eq!(spent.disruptions_allowed, 0);
    assert!(spent.disrupted_pods.unwrap().contains_key("a"));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_connect_with_their_own_identity_and_errors_are_typed() {
    let cluster = Cluster::start("kubernate").await;
    let scheduler = connect_as(&cluster, &cluster.kubeconfig_of("scheduler"));
    let pods: Api<Pod> = Api::all(scheduler);
    pods.list(&ListParams::default()).await.unwrap();

    // The API server down: a transport error, quickly, not a hang.
    let mut cluster = cluster;
    cluster.kill_apiserver();
    let started = std::time::Instant::now();
    let e = pods.list(&ListParams::default()).await.unwrap_err();
    assert!(e.is_transient() && e.code().is_none(), "{e:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(6),
        "bounded by the call deadline"
    );
    // Back again: the same client reconnects by itself.
    cluster.start_apiserver().await;
    eventually("the client reconnects", || async {
        pods.list(&ListParams::default()).await.is_ok()
    })
    .await;

    // A kubeconfig that does not exist is a configuration error.
    let missing = client::Client::from_kubeconfig(std::path::Path::new("/nonexistent/kubeconfig"));
    assert!(matches!(missing, Err(client::Error::Config(_))));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_writes_are_413_and_store_nothing() {
    let cluster = Cluster::start("kubernate").await;
    let cms: Api<ConfigMap> = Api::namespaced(connect(&cluster), "default");
    // Over the store's own limit (2 MiB here), over the API server's body
    // limit (3 MiB), and over both by far.
    for size in [5 << 19, (3 << 20) + 1000, 5 << 20] {
        let big = configmap("big", &"x".repeat(size));
        let e = cms.create(&big).await.unwrap_err();
        assert_eq!(e.code(), Some(413), "{size} bytes: {e:?}");
    }
    assert!(cms.get_opt("big").await.unwrap().is_none());
    cluster.stop().await;
}
