//! The root CA publisher: every namespace has a ConfigMap
//! `kube-root-ca.crt` whose `ca.crt` is the cluster's CA, so pods can
//! verify the API server (projected service account volumes mount it). A
//! changed or deleted copy is put back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use client::indexer::key_of;
use client::{Api, Client, Event, Informer, ListParams, Patch};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

use crate::context::Context;
use crate::controller::{self, Reconciler};
use crate::Runner;

pub const NAME: &str = "kube-root-ca.crt";
const KEY: &str = "ca.crt";

pub struct RootCaPublisher {
    client: Client,
    namespaces: Arc<Informer<Namespace>>,
    configmaps: Arc<Informer<ConfigMap>>,
    ca: Arc<String>,
}

pub fn start(ctx: &Context) -> Runner {
    let namespaces = ctx.factory.informer::<Namespace>();
    // Only the published ConfigMaps, not every ConfigMap in the cluster.
    let configmaps = ctx
        .factory
        .informer_for::<ConfigMap>(None, ListParams::default().fields(&format!("metadata.name={NAME}")));
    let queue = ctx.queue("root_ca_cert_publisher");
    let q = queue.clone();
    namespaces.add_handler(move |event| {
        if let Event::Added(ns) | Event::Updated { new: ns, .. } = event {
            q.add(key_of(ns.as_ref()));
        }
    });
    let q = queue.clone();
    configmaps.add_handler(move |event| {
        let (Event::Added(cm) | Event::Updated { new: cm, .. } | Event::Deleted(cm)) = event;
        q.add(cm.metadata.namespace.clone().unwrap_or_default());
    });
    let publisher = Arc::new(RootCaPublisher {
        client: ctx.client.clone(),
        namespaces,
        configmaps,
        ca: ctx.root_ca.clone(),
    });
    let workers = ctx.config.concurrent_syncs;
    Box::new(move |stop| {
        Box::pin(controller::run(
            "root_ca_cert_publisher",
            publisher,
            queue,
            workers,
            stop,
        ))
    })
}

impl Reconciler for RootCaPublisher {
    async fn reconcile(&self, namespace: &str) -> client::Result<Option<Duration>> {
        let Some(ns) = self.namespaces.indexer().get(namespace) else {
            return Ok(None);
        };
        if ns.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let result = match self.configmaps.indexer().get_named(Some(namespace), NAME) {
            Some(cm) if cm.data.as_ref().and_then(|d| d.get(KEY)) == Some(self.ca.as_ref()) => return Ok(None),
            Some(_) => api
                .patch(NAME, &Patch::Merge(json!({"data": {KEY: self.ca.as_str()}})))
                .await
                .map(|_| ()),
            None => {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(NAME.into()),
                        namespace: Some(namespace.into()),
                        annotations: Some(BTreeMap::from([(
                            "kubernetes.io/description".to_string(),
                            "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.".to_string(),
                        )])),
                        ..Default::default()
                    },
                    data: Some(BTreeMap::from([(KEY.to_string(), self.ca.as_ref().clone())])),
                    ..Default::default()
                };
                api.create(&cm).await.map(|_| ())
            }
        };
        match result {
            Ok(()) => Ok(None),
            Err(e) if e.is_already_exists() || e.is_not_found() || e.code() == Some(403) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
