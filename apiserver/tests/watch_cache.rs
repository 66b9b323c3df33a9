//! The watch cache seen from outside: once a resource's cache is serving,
//! lists and watches of it no longer read the store (the API server's
//! own store-call metrics say so), yet every list sees every write
//! acknowledged before it, also writes to other resources, and a watch
//! resuming from a recent version replays exactly what followed it.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::Client;
use serde_json::json;
use testkit::Cluster;
use tokio_stream::StreamExt;

async fn client(c: &Cluster) -> Client {
    support::kube_client(c).await
}

/// How many times the API server has listed `resource` from the store.
async fn store_lists(c: &Cluster, resource: &str) -> u64 {
    let metrics = c.must(&["get", "--raw", "/metrics"]).await;
    let line = format!(r#"etcd_request_duration_seconds_count{{operation="list",type="{resource}"}} "#);
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |n| n.trim().parse().unwrap())
}

fn rv_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> i64 {
    meta.resource_version.as_deref().unwrap().parse().unwrap()
}

async fn served_from_memory(kind: &str) {
    let c = Cluster::start(kind).await;
    let client = client(&c).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");

    // The first list starts the cache; wait until lists stop reaching
    // the store.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut before = store_lists(&c, "configmaps").await;
    loop {
        cms.list(&ListParams::default()).await.unwrap();
        let now = store_lists(&c, "configmaps").await;
        if now == before {
            break;
        }
        before = now;
        assert!(tokio::time::Instant::now() < deadline, "the cache never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cached_from = store_lists(&c, "configmaps").await;

    // Read your writes: each list made right after a create holds it, at a
    // resourceVersion no older than the create's.
    let mut created = Vec::new();
    for i in 0..20 {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("cm-{i}")}})).unwrap();
        let cm = cms.create(&PostParams::default(), &cm).await.unwrap();
        let rv = rv_of(&cm.metadata);
        let list = cms.list(&ListParams::default()).await.unwrap();
        let names: Vec<String> = list.items.iter().filter_map(|c| c.metadata.name.clone()).collect();
        assert!(names.contains(&format!("cm-{i}")), "{names:?}");
        let at: i64 = list.metadata.resource_version.unwrap().parse().unwrap();
        assert!(at >= rv, "list at {at}, write at {rv}");
        created.push(rv);
    }
    // A write elsewhere moves the store's revision without touching
    // configmaps: a list still answers at a version that includes it.
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap();
    let secret_rv = rv_of(&secrets.create(&PostParams::default(), &secret).await.unwrap().metadata);
    let list = cms.list(&ListParams::default()).await.unwrap();
    let at: i64 = list.metadata.resource_version.unwrap().parse().unwrap();
    assert!(at >= secret_rv, "list at {at}, latest write at {secret_rv}");
    let ours = list
        .items
        .iter()
        .filter(|c| c.metadata.name.as_deref().unwrap().starts_with("cm-"));
    assert_eq!(ours.count(), 20);

    // resourceVersion=0 and a namespaced selector list: from memory too.
    let any = cms.list(&ListParams::default().at("0")).await.unwrap();
    assert_eq!(any.items.len(), list.items.len());
    let one = cms
        .list(&ListParams::default().fields("metadata.name=cm-3"))
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);

    // A watch from the tenth create's version replays the ten after it.
    let from = created[9].to_string();
    let events = cms.watch(&WatchParams::default().timeout(10), &from).await.unwrap();
    tokio::pin!(events);
    let mut replayed = Vec::new();
    while replayed.len() < 10 {
        match tokio::time::timeout(Duration::from_secs(10), events.try_next()).await {
            Ok(Ok(Some(WatchEvent::Added(cm)))) => replayed.push(rv_of(&cm.metadata)),
            Ok(Ok(Some(WatchEvent::Bookmark(_)))) => {}
            other => panic!("expected ADDED events, got {other:?}"),
        }
    }
    assert_eq!(replayed, created[10..].to_vec());

    // A watch from the version a write just returned (the cache may not
    // have seen it yet) starts after that write, not with it.
    for i in 0..5 {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("w-{i}")}})).unwrap();
        let written = rv_of(&cms.create(&PostParams::default(), &cm).await.unwrap().metadata);
        let events = cms
            .watch(&WatchParams::default().timeout(10), &written.to_string())
            .await
            .unwrap();
        tokio::pin!(events);
        let next: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("x-{i}")}})).unwrap();
        cms.create(&PostParams::default(), &next).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(10), events.try_next()).await {
            Ok(Ok(Some(WatchEvent::Added(cm)))) => {
                assert_eq!(cm.metadata.name.as_deref(), Some(format!("x-{i}").as_str()))
            }
            other => panic!("expected the next create, got {other:?}"),
        }
    }

    // Without a resourceVersion, and with 0, a watch starts with the
    // current objects as ADDED events.
    for rv in ["", "&resourceVersion=0"] {
        let path = format!("/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1{rv}");
        let lines = c.must(&["get", "--raw", &path]).await;
        let added = lines
            .lines()
            .filter(|l| l.contains(r#""type":"ADDED""#) && l.contains(r#""cm-"#));
        assert_eq!(added.count(), 20, "{rv}: {lines}");
    }

    // A streaming list (client-go's WatchList): the objects, then a
    // bookmark marking the end of the initial events, at a version that
    // includes every write so far.
    let path = "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true";
    let lines = c.must(&["get", "--raw", path]).await;
    let events: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let end = events
        .iter()
        .position(|e| e["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true")
        .unwrap_or_else(|| panic!("no end-of-initial-events bookmark: {lines}"));
    assert_eq!(events[end]["type"], "BOOKMARK");
    assert!(events[..end].iter().all(|e| e["type"] == "ADDED"), "{lines}");
    assert_eq!(end, list.items.len() + 10, "{lines}");
    let at: i64 = events[end]["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(at >= secret_rv);
    let (ok, _, err) = c
        .kubectl(
            &[
                "get",
                "--raw",
                "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true",
            ],
            None,
        )
        .await;
    assert!(
        !ok && err.contains("sendInitialEvents requires resourceVersionMatch=NotOlderThan"),
        "{err}"
    );

    assert_eq!(
        store_lists(&c, "configmaps").await,
        cached_from,
        "no configmap list reached the store once the cache served"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_and_watches_come_from_memory_on_our_store() {
    served_from_memory("kubernate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_and_watches_come_from_memory_on_etcd() {
    served_from_memory("etcd").await;
}
