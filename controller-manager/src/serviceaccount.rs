//! The service account controller: every namespace has a ServiceAccount
//! named `default`, which pods that name none run as. A deleted one comes
//! back; a terminating namespace gets none.

use std::sync::Arc;
use std::time::Duration;

use client::indexer::key_of;
use client::{Api, Client, Event, Informer};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::context::Context;
use crate::controller::{self, Reconciler};
use crate::Runner;

const DEFAULT: &str = "default";

pub struct ServiceAccountController {
    client: Client,
    namespaces: Arc<Informer<Namespace>>,
    accounts: Arc<Informer<ServiceAccount>>,
}

pub fn start(ctx: &Context) -> Runner {
    let namespaces = ctx.factory.informer::<Namespace>();
    let accounts = ctx.factory.informer::<ServiceAccount>();
    let queue = ctx.queue("serviceaccount");
    let q = queue.clone();
    namespaces.add_handler(move |event| {
        if let Event::Added(ns) | Event::Updated { new: ns, .. } = event {
            q.add(key_of(ns.as_ref()));
        }
    });
    let q = queue.clone();
    accounts.add_handler(move |event| {
        if let Event::Deleted(sa) = event {
            if sa.metadata.name.as_deref() == Some(DEFAULT) {
                q.add(sa.metadata.namespace.clone().unwrap_or_default());
            }
        }
    });
    let controller = Arc::new(ServiceAccountController {
        client: ctx.client.clone(),
        namespaces,
        accounts,
    });
    let workers = ctx.config.concurrent_syncs;
    Box::new(move |stop| Box::pin(controller::run("serviceaccount", controller, queue, workers, stop)))
}

impl Reconciler for ServiceAccountController {
    async fn reconcile(&self, namespace: &str) -> client::Result<Option<Duration>> {
        let Some(ns) = self.namespaces.indexer().get(namespace) else {
            return Ok(None);
        };
        if ns.metadata.deletion_timestamp.is_some()
            || self.accounts.indexer().get_named(Some(namespace), DEFAULT).is_some()
        {
            return Ok(None);
        }
        let account = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(DEFAULT.into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        match api.create(&account).await {
            Ok(_) => Ok(None),
            // Already there, or the namespace is going away.
            Err(e) if e.is_already_exists() || e.code() == Some(403) || e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}
