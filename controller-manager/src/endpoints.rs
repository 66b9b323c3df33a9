//! The Endpoints controller: each Service with a selector gets an
//! Endpoints object of the same name listing the IPs of its pods, ready
//! ones under `addresses` and the others under `notReadyAddresses`, in
//! subsets grouped by the ports they resolve to. kube-proxy and anything
//! still reading the v1 API follow it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use client::indexer::key_of;
use client::{Api, Client, DeleteParams, Event, Informer};
use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::context::Context;
use crate::controller::{self, Reconciler};
use crate::service_pods::{is_serving, pod_ip, pod_reference, resolved_ports, selected_pods, watch_pods, PortSet};
use crate::Runner;

pub struct EndpointsController {
    client: Client,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    endpoints: Arc<Informer<Endpoints>>,
}

pub fn start(ctx: &Context) -> Runner {
    let services = ctx.factory.informer::<Service>();
    let pods = ctx.factory.informer::<Pod>();
    let endpoints = ctx.factory.informer::<Endpoints>();
    let queue = ctx.queue("endpoint");
    let q = queue.clone();
    services.add_handler(move |event| {
        let (Event::Added(s) | Event::Updated { new: s, .. } | Event::Deleted(s)) = event;
        q.add(key_of(s.as_ref()));
    });
    // Someone else changed or removed ours: put it right.
    let q = queue.clone();
    endpoints.add_handler(move |event| {
        if let Event::Deleted(e) | Event::Updated { new: e, .. } = event {
            q.add(key_of(e.as_ref()));
        }
    });
    watch_pods(&pods, &services, &queue, ctx.config.endpoint_updates_batch_period);
    let controller = Arc::new(EndpointsController {
        client: ctx.client.clone(),
        services,
        pods,
        endpoints,
    });
    let workers = ctx.config.concurrent_syncs;
    Box::new(move |stop| Box::pin(controller::run("endpoint", controller, queue, workers, stop)))
}

fn address(pod: &Pod, ip: &str) -> EndpointAddress {
    EndpointAddress {
        ip: ip.to_string(),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        target_ref: Some(pod_reference(pod)),
        hostname: None,
    }
}

/// The subsets: addresses grouped by the ports they resolve to.
pub fn subsets(service: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let mut groups: BTreeMap<PortSet, (Vec<EndpointAddress>, Vec<EndpointAddress>)> = BTreeMap::new();
    for pod in pods {
        let Some(ip) = pod_ip(pod) else { continue };
        let publish = service.spec.as_ref().and_then(|s| s.publish_not_ready_addresses) == Some(true);
        if pod.metadata.deletion_timestamp.is_some() && !publish {
            continue; // Shutting down: no new traffic.
        }
        let Some(resolved) = resolved_ports(service, pod) else {
            continue;
        };
        let group = groups.entry(resolved).or_default();
        if is_serving(service, pod) {
            group.0.push(address(pod, ip));
        } else {
            group.1.push(address(pod, ip));
        }
    }
    groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then(|| {
                ports
                    .into_iter()
                    .map(|(name, port, protocol)| EndpointPort {
                        name,
                        port,
                        protocol: Some(protocol),
                        app_protocol: None,
                    })
                    .collect()
            }),
        })
        .collect()
}

impl Reconciler for EndpointsController {
    async fn reconcile(&self, key: &str) -> client::Result<Option<Duration>> {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), namespace);
        let Some(service) = self.services.indexer().get(key) else {
            // The Service is gone: so is what we made for it.
            if self.endpoints.indexer().get(key).is_some() {
                match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(None);
        };
        let Some(pods) = selected_pods(&service, &self.pods) else {
            return Ok(None);
        };
        let subsets = subsets(&service, &pods);
        let labels = service.metadata.labels.clone();
        match self.endpoints.indexer().get(key) {
            Some(current)
                if current.subsets.clone().unwrap_or_default() == subsets && current.metadata.labels == labels =>
            {
                Ok(None)
            }
            Some(current) => {
                let mut updated = current.as_ref().clone();
                updated.subsets = Some(subsets);
                updated.metadata.labels = labels;
                match api.update(&updated).await {
                    Ok(_) => Ok(None),
                    Err(e) => Err(e), // A conflict: the cache catches up and we retry.
                }
            }
            None => {
                let endpoints = Endpoints {
                    metadata: ObjectMeta {
                        name: Some(name.to_string()),
                        namespace: Some(namespace.to_string()),
                        labels,
                        ..Default::default()
                    },
                    subsets: Some(subsets),
                };
                match api.create(&endpoints).await {
                    Ok(_) => Ok(None),
                    Err(e) if e.is_already_exists() => Err(e),
                    Err(e) if e.code() == Some(403) => Ok(None), // The namespace is terminating.
                    Err(e) => Err(e),
                }
            }
        }
    }
}
