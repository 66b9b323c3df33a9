//! What the client's integration tests share: a cluster, a connected
//! client, and a log of informer events that can be checked for gaps and
//! repeats.

#![allow(dead_code)] // each test binary uses its own part

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::indexer::key_of;
use client::{Api, Client, Event, Informer};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use testkit::Cluster;

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(30);

/// A client with the admin kubeconfig, pointed at the cluster's port.
pub fn connect(cluster: &Cluster) -> Client {
    connect_as(cluster, &cluster.kubeconfig())
}

pub fn connect_as(cluster: &Cluster, kubeconfig: &std::path::Path) -> Client {
    let mut config = common::kubeconfig::Kubeconfig::load_resolved(kubeconfig).unwrap();
    config.server = cluster.server.clone();
    Client::from_resolved(&config)
        .unwrap()
        .with_timeout(Duration::from_secs(5))
}

pub fn configmap(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            labels: Some([("test".to_string(), "churn".to_string())].into()),
            ..Default::default()
        },
        data: Some([("v".to_string(), value.to_string())].into()),
        ..Default::default()
    }
}

/// A one-container pod in "default" with label app=`app`, bound to `node` if given.
pub fn pod(name: &str, app: &str, node: Option<&str>) -> k8s_openapi::api::core::v1::Pod {
    use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            labels: Some([("app".to_string(), app.to_string())].into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: node.map(str::to_string),
            containers: vec![Container {
                name: "c".into(),
                image: Some("busybox".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// (event kind, key, resourceVersion) for every event a handler received.
#[derive(Clone, Default)]
pub struct EventLog(pub Arc<Mutex<Vec<(char, String, String)>>>);

fn rv(c: &ConfigMap) -> String {
    c.metadata.resource_version.clone().unwrap_or_default()
}

impl EventLog {
    pub fn attach(&self, informer: &Informer<ConfigMap>) {
        let log = self.0.clone();
        informer.add_handler(move |e| {
            let entry = match e {
                Event::Added(o) => ('+', key_of(o.as_ref()), rv(o)),
                Event::Updated { new, .. } => ('~', key_of(new.as_ref()), rv(new)),
                Event::Deleted(o) => ('-', key_of(o.as_ref()), rv(o)),
            };
            log.lock().unwrap().push(entry);
        });
    }

    pub fn entries(&self) -> Vec<(char, String, String)> {
        self.0.lock().unwrap().clone()
    }

    /// Replays the events: each must make sense after the ones before
    /// (no add of a present key, no update or delete of an absent one, no
    /// version seen twice for a key); returns the state they add up to
    /// (key → resourceVersion).
    pub fn replay(&self) -> BTreeMap<String, String> {
        let mut state = BTreeMap::new();
        let mut seen = std::collections::HashSet::new();
        for (kind, key, rv) in self.entries() {
            match kind {
                '+' => assert!(state.insert(key.clone(), rv.clone()).is_none(), "added twice: {key}"),
                '~' => assert!(
                    state.insert(key.clone(), rv.clone()).is_some(),
                    "update of unknown {key}"
                ),
                _ => assert!(state.remove(&key).is_some(), "delete of unknown {key}"),
            }
            if kind != '-' {
                assert!(seen.insert((key.clone(), rv.clone())), "{key}@{rv} delivered twice");
            }
        }
        state
    }
}

/// What a fresh list says: key → resourceVersion.
pub async fn fresh_state(api: &Api<ConfigMap>, selector: &str) -> BTreeMap<String, String> {
    let list = api.list(&client::ListParams::default().labels(selector)).await.unwrap();
    list.items.iter().map(|c| (key_of(c), rv(c))).collect()
}

/// Polls `check` every 100 ms until it holds; panics after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
