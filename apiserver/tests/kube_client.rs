//! The kube crate (kube-rs), the Rust ecosystem's Kubernetes client,
//! against the API server: list, watch, create, patch (merge and
//! server-side apply) and delete, with its own kubeconfig handling.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::Client;
use serde_json::json;
use testkit::Cluster;
use tokio_stream::StreamExt;

async fn client(c: &Cluster) -> Client {
    support::kube_client(c).await
}

async fn kube_rs_lists_watches_creates_patches_and_deletes_on(kind: &str) {
    let c = Cluster::start(kind).await;
    let client = client(&c).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.contains(&"kube-system".to_string()), "{names:?}");

    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let events = cms.watch(&WatchParams::default().timeout(20), "0").await.unwrap();
    tokio::pin!(events);
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "from-kube-rs", "labels": {"made-by": "kube"}},
        "data": {"a": "1"},
    }))
    .unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    assert!(created.metadata.uid.is_some());
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = events.try_next().await.unwrap() {
            if let WatchEvent::Added(o) = event {
                if o.metadata.name.as_deref() == Some("from-kube-rs") {
                    return o;
                }
            }
        }
        panic!("the watch ended first");
    })
    .await
    .expect("the watch reports the create");
    assert_eq!(seen.data.unwrap()["a"], "1");

    let merged = cms
        .patch(
            "from-kube-rs",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"b": "2"}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.data.as_ref().unwrap()["b"], "2");
    let applied = cms
        .patch(
            "from-kube-rs",
            &PatchParams::apply("kube-rs-test"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "from-kube-rs"}, "data": {"c": "3"}})),
        )
        .await
        .unwrap();
    assert_eq!(applied.data.as_ref().unwrap()["c"], "3");
    let selected = cms.list(&ListParams::default().labels("made-by=kube")).await.unwrap();
    assert_eq!(selected.items.len(), 1);

    cms.delete("from-kube-rs", &DeleteParams::default()).await.unwrap();
    let gone = cms.get("from-kube-rs").await.unwrap_err();
    assert!(matches!(gone, kube::Error::Api(ref s) if s.code == 404), "{gone:?}");
    c.stop().await;
}

/// Many watchers, concurrent writers: every watcher sees every write once,
/// in increasing resourceVersion order; a compacted version is a 410.
async fn many_watchers_see_every_concurrent_write_once_in_order_on(kind: &str) {
    let c = Cluster::start(kind).await;
    let client = client(&c).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let start = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();

    const WATCHERS: usize = 50;
    const WRITES_PER_WRITER: usize = 20;
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let cms = cms.clone();
        let start = start.clone();
        watchers.push(tokio::spawn(async move {
            let events = cms.watch(&WatchParams::default().timeout(60), &start).await.unwrap();
            tokio::pin!(events);
            let mut seen = Vec::new();
            while let Some(event) = events.try_next().await.unwrap() {
                let (kind, o) = match event {
                    WatchEvent::Added(o) => ('+', o),
                    WatchEvent::Modified(o) => ('~', o),
                    WatchEvent::Deleted(o) => ('-', o),
                    _ => continue,
                };
                let rv: i64 = o.metadata.resource_version.unwrap().parse().unwrap();
                let done = o.metadata.name.as_deref() == Some("last");
                seen.push((kind, o.metadata.name.unwrap(), rv));
                if done {
                    break;
                }
            }
            seen
        }));
    }
    let mut writers = Vec::new();
    for w in 0..3 {
        let cms = cms.clone();
        writers.push(tokio::spawn(async move {
            let mut writes = Vec::new();
            for i in 0..WRITES_PER_WRITER {
                let name = format!("w{w}-{}", i / 3);
                let written = match i % 3 {
                    0 => {
                        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
                        ('+', cms.create(&PostParams::default(), &cm).await.unwrap())
                    }
                    1 => {
                        let patch = Patch::Merge(json!({"data": {"i": i.to_string()}}));
                        ('~', cms.patch(&name, &PatchParams::default(), &patch).await.unwrap())
                    }
                    _ => {
                        let gone = cms.delete(&name, &DeleteParams::default()).await.unwrap();
                        ('-', gone.left().unwrap())
                    }
                };
                let rv: i64 = written.1.metadata.resource_version.unwrap().parse().unwrap();
                writes.push((written.0, name, rv));
            }
            writes
        }));
    }
    let mut expected = Vec::new();
    for w in writers {
        expected.extend(w.await.unwrap());
    }
    let last: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "last"}})).unwrap();
    let last = cms.create(&PostParams::default(), &last).await.unwrap();
    expected.push((
        '+',
        "last".into(),
        last.metadata.resource_version.unwrap().parse().unwrap(),
    ));
    expected.sort_by_key(|(_, _, rv)| *rv);
    for watcher in watchers {
        let seen = tokio::time::timeout(Duration::from_secs(60), watcher)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen, expected, "each watcher sees exactly the writes, in order");
    }

    // A version compacted away answers 410 Gone.
    let mut store = etcd_client::Client::connect([c.store_endpoint()], None).await.unwrap();
    let now = store.get("/registry", None).await.unwrap().header().unwrap().revision();
    store.compact(now, None).await.unwrap();
    let events = cms.watch(&WatchParams::default(), &start).await.unwrap();
    tokio::pin!(events);
    let first = events.try_next().await;
    let gone = match first {
        Ok(Some(WatchEvent::Error(e))) => e.code,
        Err(kube::Error::Api(e)) => e.code,
        other => panic!("expected a 410, got {other:?}"),
    };
    assert_eq!(gone, 410);
    c.stop().await;
}

/// With --etcd-compaction-interval the API server compacts the store's
/// history: a watch from a version older than an interval becomes a 410.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_compacts_old_history() {
    let c = Cluster::start_with("kubernate", &["--etcd-compaction-interval", "1"]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client(&c).await, "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "old"}})).unwrap();
    let rv: i64 = cms
        .create(&PostParams::default(), &cm)
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap()
        .parse()
        .unwrap();
    let from = (rv - 1).to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        // Another write, so that the store's revision moves on.
        let patch = Patch::Merge(json!({"data": {"t": format!("{:?}", std::time::Instant::now())}}));
        cms.patch("old", &PatchParams::default(), &patch).await.unwrap();
        let events = cms.watch(&WatchParams::default().timeout(2), &from).await.unwrap();
        tokio::pin!(events);
        let gone = match events.try_next().await {
            Ok(Some(WatchEvent::Error(e))) => e.code == 410,
            Err(kube::Error::Api(e)) => e.code == 410,
            _ => false,
        };
        if gone {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "history still there after 20 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    c.stop().await;
}

/// resourceVersion and resourceVersionMatch on lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_honour_resource_version_semantics() {
    let c = Cluster::start("kubernate").await;
    let cms: Api<ConfigMap> = Api::namespaced(client(&c).await, "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "a"}})).unwrap();
    let first: i64 = cms
        .create(&PostParams::default(), &cm)
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap()
        .parse()
        .unwrap();
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "b"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();

    // Exact: the list as it was then.
    let then = cms
        .list(
            &ListParams::default()
                .at(&first.to_string())
                .matching(kube::api::VersionMatch::Exact),
        )
        .await
        .unwrap();
    let names: Vec<String> = then.items.into_iter().filter_map(|c| c.metadata.name).collect();
    assert_eq!(names, ["a"]);
    assert_eq!(then.metadata.resource_version.unwrap(), first.to_string());
    // (A version from the future is a 504, which kube-rs retries for
    // minutes; api.rs checks it with curl.)
    c.stop().await;
}

/// A watcher that lost its API server resumes from its last
/// resourceVersion on the restarted one and misses nothing written
/// meanwhile (through the restarted server, whose watch cache starts
/// empty: the store serves the older versions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_from_its_last_version_after_an_api_server_restart() {
    let mut c = Cluster::start("kubernate").await;
    let cms: Api<ConfigMap> = Api::namespaced(client(&c).await, "default");
    let cm = |name: &str| -> ConfigMap { serde_json::from_value(json!({"metadata": {"name": name}})).unwrap() };
    let first = cms.create(&PostParams::default(), &cm("before")).await.unwrap();
    let last_seen = first.metadata.resource_version.unwrap();
    c.kill_apiserver();
    c.start_apiserver().await;
    let cms: Api<ConfigMap> = Api::namespaced(client(&c).await, "default");
    for name in ["after-1", "after-2"] {
        cms.create(&PostParams::default(), &cm(name)).await.unwrap();
    }
    let events = cms
        .watch(&WatchParams::default().timeout(10), &last_seen)
        .await
        .unwrap();
    tokio::pin!(events);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), events.try_next()).await {
            Ok(Ok(Some(WatchEvent::Added(o)))) => seen.push(o.metadata.name.unwrap()),
            Ok(Ok(Some(WatchEvent::Bookmark(_)))) => {}
            other => panic!("expected the writes made during the restart, got {other:?}"),
        }
    }
    assert_eq!(seen, ["after-1", "after-2"]);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_lists_watches_creates_patches_and_deletes() {
    kube_rs_lists_watches_creates_patches_and_deletes_on("kubernate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_lists_watches_creates_patches_and_deletes_on_etcd() {
    kube_rs_lists_watches_creates_patches_and_deletes_on("etcd").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_watchers_see_every_concurrent_write_once_in_order() {
    many_watchers_see_every_concurrent_write_once_in_order_on("kubernate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_watchers_see_every_concurrent_write_once_in_order_on_etcd() {
    many_watchers_see_every_concurrent_write_once_in_order_on("etcd").await;
}
