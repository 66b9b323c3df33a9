//! Informers against a real API server process and store: the cache must
//! equal a fresh list after any churn, and no event may be lost or
//! repeated across an API server restart or a forced 410 Gone.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use client::indexer::{by_node_name, key_of};
use client::{Api, DeleteParams, Informer, ListParams, SharedInformerFactory};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use support::*;
use testkit::Cluster;
use tokio_util::sync::CancellationToken;

fn churn_params() -> ListParams {
    ListParams::default().labels("test=churn")
}

/// An informer over the churn configmaps with its events logged.
async fn watched(api: &Api<ConfigMap>, stop: &CancellationToken) -> (std::sync::Arc<Informer<ConfigMap>>, EventLog) {
    let informer = Informer::new(api.clone(), churn_params());
    let log = EventLog::default();
    log.attach(&informer);
    informer.run(stop.clone());
    assert!(informer.wait_for_sync(WAIT).await, "the informer synced");
    (informer, log)
}

fn cache_state(informer: &Informer<ConfigMap>) -> std::collections::BTreeMap<String, String> {
    informer
        .indexer()
        .list()
        .iter()
        .map(|c| {
            (
                key_of(c.as_ref()),
                c.metadata.resource_version.clone().unwrap_or_default(),
            )
        })
        .collect()
}

async fn caught_up(informer: &Informer<ConfigMap>, api: &Api<ConfigMap>) {
    eventually("the informer cache equals a fresh list", || async {
        cache_state(informer) == fresh_state(api, "test=churn").await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_churn_the_cache_equals_a_fresh_list_and_every_change_was_seen_once() {
    let cluster = Cluster::start("kubernate").await;
    let api: Api<ConfigMap> = Api::namespaced(connect(&cluster), "default");
    api.create(&configmap("before", "0")).await.unwrap();
    let stop = CancellationToken::new();
    let (informer, log) = watched(&api, &stop).await;

    // Two writers create, update and delete overlapping names.
    let mut writers = Vec::new();
    for w in 0..2 {
        let api = api.clone();
        writers.push(tokio::spawn(async move {
            let mut written = Vec::new();
            for i in 0..30 {
                let name = format!("cm-{}", (i * 7 + w) % 8);
                let result = match i % 3 {
                    0 => api.create(&configmap(&name, &i.to_string())).await.map(|c| ('+', c)),
                    1 => match api.get(&name).await {
                        Ok(mut c) => {
                            c.data = Some([("v".to_string(), format!("{w}-{i}"))].into());
                            api.update(&c).await.map(|c| ('~', c))
                        }
                        Err(e) => Err(e),
                    },
                    _ => api.delete(&name, &DeleteParams::default()).await.map(|c| ('-', c)),
                };
                // Losing a race to the other writer is part of the churn.
                if let Ok((kind, c)) = result {
                    written.push((kind, key_of(&c), c.metadata.resource_version.unwrap()));
                }
            }
            written
        }));
    }
    let mut written: BTreeSet<(char, String, String)> = BTreeSet::new();
    for w in writers {
        written.extend(w.await.unwrap());
    }
    caught_up(&informer, &api).await;
    assert_eq!(
        log.replay(),
        fresh_state(&api, "test=churn").await,
        "the events add up to the list"
    );
    let seen: BTreeSet<_> = log
        .entries()
        .into_iter()
        .filter(|(_, k, _)| k != "default/before")
        .collect();
    assert_eq!(seen, written, "exactly the writes, each once");
    stop.cancel();
    cluster.stop().await;
}

/// Writes a ConfigMap straight into the store (the API server is down),
/// as another API server replica would; returns its revision.
async fn put_in_store(store: &mut etcd_client::Client, name: &str, value: &str) -> i64 {
    let object = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "labels": {"test": "churn"}},
        "data": {"v": value},
    });
    let key = format!("/registry/configmaps/default/{name}");
    let put = store.put(key, object.to_string(), None).await.unwrap();
    put.header().unwrap().revision()
}

async fn store_client(cluster: &Cluster) -> etcd_client::Client {
    etcd_client::Client::connect([cluster.store_endpoint()], None)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_api_server_lets_the_watch_resume_without_gaps_or_repeats() {
    let mut cluster = Cluster::start("kubernate").await;
    let api: Api<ConfigMap> = Api::namespaced(connect(&cluster), "default");
    let a = api.create(&configmap("a", "1")).await.unwrap();
    let stop = CancellationToken::new();
    let (informer, log) = watched(&api, &stop).await;

    cluster.kill_apiserver();
    let mut store = store_client(&cluster).await;
    let mut versions = Vec::new();
    for v in ["2", "3", "4"] {
        versions.push(put_in_store(&mut store, "a", v).await.to_string());
    }
    let b = put_in_store(&mut store, "b", "1").await.to_string();
    cluster.start_apiserver().await;
    caught_up(&informer, &api).await;

    let entries = log.entries();
    let mut expected = vec![('+', "default/a".to_string(), a.metadata.resource_version.unwrap())];
    expected.extend(versions.iter().map(|v| ('~', "default/a".to_string(), v.clone())));
    expected.push(('+', "default/b".to_string(), b));
    assert_eq!(entries, expected, "every intermediate version, in order, once");
    stop.cancel();
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_410_relists_and_reports_the_differences() {
    let mut cluster = Cluster::start("kubernate").await;
    let api: Api<ConfigMap> = Api::namespaced(connect(&cluster), "default");
    let mut before = std::collections::HashMap::new();
    for name in ["a", "b", "c"] {
        let c = api.create(&configmap(name, "1")).await.unwrap();
        before.insert(name, c.metadata.resource_version.unwrap());
    }
    let stop = CancellationToken::new();
    let (informer, log) = watched(&api, &stop).await;
    let synced = log.entries().len();

    cluster.kill_apiserver();
    let mut store = store_client(&cluster).await;
    put_in_store(&mut store, "a", "2").await;
    let a_final = put_in_store(&mut store, "a", "3").await.to_string();
    store.delete("/registry/configmaps/default/b", None).await.unwrap();
    let d = put_in_store(&mut store, "d", "1").await;
    // The history the watch would resume from is gone.
    store.compact(d, None).await.unwrap();
    cluster.start_apiserver().await;
    caught_up(&informer, &api).await;

    let after: BTreeSet<_> = log.entries()[synced..].iter().cloned().collect();
    let expected: BTreeSet<_> = [
        ('~', "default/a".to_string(), a_final),
        // The delete was missed; the last state the cache had is reported.
        ('-', "default/b".to_string(), before["b"].clone()),
        ('+', "default/d".to_string(), d.to_string()),
    ]
    .into();
    assert_eq!(after, expected, "the relist reports exactly the differences");
    assert_eq!(log.replay(), fresh_state(&api, "test=churn").await);
    stop.cancel();
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_informers_are_shared_filtered_and_indexed() {
    let cluster = Cluster::start("kubernate").await;
    let client = connect(&cluster);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&pod("on-n1", "x", Some("n1"))).await.unwrap();
    pods.create(&pod("on-n2", "x", Some("n2"))).await.unwrap();

    let factory = SharedInformerFactory::new(client);
    let all = factory.informer::<Pod>();
    assert!(
        std::sync::Arc::ptr_eq(&all, &factory.informer::<Pod>()),
        "one informer per kind"
    );
    let n1_params = ListParams::default().fields("spec.nodeName=n1");
    let n1 = factory.informer_for::<Pod>(None, n1_params.clone());
    assert!(std::sync::Arc::ptr_eq(
        &n1,
        &factory.informer_for::<Pod>(None, n1_params)
    ));
    assert!(!std::sync::Arc::ptr_eq(&all, &n1), "another selector, another informer");
    all.add_index("node", by_node_name());
    let stop = CancellationToken::new();
    factory.start(&stop);
    assert!(factory.wait_for_sync(WAIT).await);

    let names = |i: &Informer<Pod>| -> Vec<String> { i.indexer().keys() };
    assert_eq!(
        names(&n1),
        ["default/on-n1"],
        "the filtered informer holds only its node's pods"
    );
    assert_eq!(all.indexer().by_index("node", "n2").len(), 1);

    // A pod bound to n1 enters the filtered cache; one deleted leaves it.
    pods.create(&pod("later", "x", None)).await.unwrap();
    pods.bind("later", "n1").await.unwrap();
    eventually("the bound pod reaches the n1 informer", || async {
        names(&n1) == ["default/later", "default/on-n1"]
    })
    .await;
    eventually("the index follows the binding", || async {
        all.indexer().by_index("node", "n1").len() == 2 && all.indexer().by_index("node", "").is_empty()
    })
    .await;
    // Grace period 0: the pod is bound, and no kubelet runs to finish a
    // graceful deletion.
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    pods.delete("on-n1", &now).await.unwrap();
    eventually("the deleted pod leaves", || async { names(&n1) == ["default/later"] }).await;
    stop.cancel();
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_receive_bookmarks_and_resync_revisits_everything() {
    let cluster = Cluster::start_with("kubernate", &["--watch-bookmark-interval", "1"]).await;
    let client = connect(&cluster);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = api.create(&configmap("x", "1")).await.unwrap();
    let rv: i64 = created.metadata.resource_version.unwrap().parse().unwrap();
    // A write elsewhere moves the store on; the configmap watch sees only
    // a bookmark for it.
    let other: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), "default");
    let secret = k8s_openapi::api::core::v1::Secret {
        metadata: ObjectMeta {
            name: Some("s".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let secret_rv: i64 = other
        .create(&secret)
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap()
        .parse()
        .unwrap();
    let events = api.watch(&ListParams::default(), &rv.to_string(), 30).await.unwrap();
    tokio::pin!(events);
    let bookmark = tokio::time::timeout(WAIT, async {
        use tokio_stream::StreamExt;
        while let Some(event) = events.next().await {
            if let client::WatchEvent::Bookmark(v) = event.unwrap() {
                return v.parse::<i64>().unwrap();
            }
        }
        panic!("the watch ended without a bookmark");
    })
    .await
    .expect("a bookmark within 30 s");
    assert!(
        bookmark >= secret_rv,
        "the bookmark {bookmark} covers the later write {secret_rv}"
    );

    let informer = Informer::with_resync(api.clone(), churn_params(), Duration::from_millis(500));
    let log = EventLog::default();
    log.attach(&informer);
    let stop = CancellationToken::new();
    informer.run(stop.clone());
    eventually("a resync delivers updates of unchanged objects", || async {
        log.entries().iter().filter(|(k, _, _)| *k == '~').count() >= 2
    })
    .await;
    stop.cancel();
    cluster.stop().await;
}
