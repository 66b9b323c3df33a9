//! The EndpointSlice controller: each Service with a selector gets
//! EndpointSlices listing its pods, at most [`MAX_ENDPOINTS`] per slice,
//! one set of slices per address family (IPv4, IPv6) and per set of
//! resolved ports. Each endpoint carries its conditions (ready, serving,
//! terminating), node and pod, which is what kube-proxy routes by.
//!
//! The slices are owned by the Service (deleted with it) and labelled
//! `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by`,
//! so slices managed by others are never touched. Each sync compares the
//! desired slices with the existing ones and writes only the difference:
//! unchanged slices stay, changed ones are updated in place, extra ones
//! are deleted.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::indexer::key_of;
use client::{Api, Client, DeleteParams, Event, Informer, ListParams};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::context::Context;
use crate::controller::{self, Reconciler};
use crate::controller_utils::controller_ref;
use crate::service_pods::{is_serving, pod_ip, pod_reference, resolved_ports, selected_pods, watch_pods, PortSet};
use crate::Runner;

pub const MAX_ENDPOINTS: usize = 100;
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";

/// What this controller last wrote for each Service, so that it does not
/// act again before its own writes are in its cache (a slice created with
/// `generateName` and not yet seen would otherwise be created twice).
#[derive(Default)]
struct Tracker {
    /// Per Service: (slice name, resourceVersion written, or `None` if
    /// deleted), and when.
    written: Mutex<HashMap<String, (Vec<Written>, Instant)>>,
}

/// A slice written: its name and the resourceVersion written (`None`:
/// deleted).
type Written = (String, Option<i64>);

/// How long to wait for our writes to show before acting anyway.
const TRACK_TIMEOUT: Duration = Duration::from_secs(10);

fn tracked(slice: &EndpointSlice) -> Written {
    let version = slice
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (slice.metadata.name.clone().unwrap_or_default(), Some(version))
}

impl Tracker {
    fn caught_up(&self, key: &str, cache: &Informer<EndpointSlice>) -> bool {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let Some((slices, at)) = written.get(key) else {
            return true;
        };
        let namespace = key.split_once('/').map_or("", |(ns, _)| ns);
        let seen = slices.iter().all(|(name, version)| {
            let cached = cache.indexer().get_named(Some(namespace), name);
            match version {
                None => cached.is_none(),
                Some(v) => cached.is_some_and(|c| {
                    c.metadata
                        .resource_version
                        .as_deref()
                        .and_then(|r| r.parse::<i64>().ok())
                        .unwrap_or(0)
                        >= *v
                }),
            }
        });
        if seen || at.elapsed() > TRACK_TIMEOUT {
            written.remove(key);
            return true;
        }
        false
    }

    fn record(&self, key: &str, slices: Vec<Written>) {
        if !slices.is_empty() {
            let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
            written.insert(key.to_string(), (slices, Instant::now()));
        }
    }
}

pub struct EndpointSliceController {
    tracker: Tracker,
    client: Client,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    slices: Arc<Informer<EndpointSlice>>,
}

pub fn start(ctx: &Context) -> Runner {
    let services = ctx.factory.informer::<Service>();
    let pods = ctx.factory.informer::<Pod>();
    let slices = ctx.factory.informer_for::<EndpointSlice>(
        None,
        ListParams::default().labels(&format!("{MANAGED_BY}={CONTROLLER_NAME}")),
    );
    slices.add_index(
        SERVICE_NAME,
        Arc::new(|s: &EndpointSlice| {
            let service = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME))
                .cloned()
                .unwrap_or_default();
            vec![format!(
                "{}/{service}",
                s.metadata.namespace.as_deref().unwrap_or_default()
            )]
        }),
    );
    let queue = ctx.queue("endpoint_slice");
    let q = queue.clone();
    services.add_handler(move |event| {
        let (Event::Added(s) | Event::Updated { new: s, .. } | Event::Deleted(s)) = event;
        q.add(key_of(s.as_ref()));
    });
    let q = queue.clone();
    slices.add_handler(move |event| {
        if let Event::Deleted(s) | Event::Updated { new: s, .. } = event {
            if let Some(service) = s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME)) {
                q.add(format!(
                    "{}/{service}",
                    s.metadata.namespace.as_deref().unwrap_or_default()
                ));
            }
        }
    });
    watch_pods(&pods, &services, &queue, ctx.config.endpoint_updates_batch_period);
    let controller = Arc::new(EndpointSliceController {
        tracker: Tracker::default(),
        client: ctx.client.clone(),
        services,
        pods,
        slices,
    });
    let workers = ctx.config.concurrent_syncs;
    Box::new(move |stop| Box::pin(controller::run("endpointslice", controller, queue, workers, stop)))
}

/// The desired slice contents, grouped by (address type, ports).
fn desired(service: &Service, pods: &[Arc<Pod>]) -> BTreeMap<(String, PortSet), Vec<Endpoint>> {
    let mut groups: BTreeMap<(String, PortSet), Vec<Endpoint>> = BTreeMap::new();
    for pod in pods {
        let Some(ip) = pod_ip(pod) else { continue };
        let family = if ip.contains(':') { "IPv6" } else { "IPv4" };
        let Some(resolved) = resolved_ports(service, pod) else {
            continue;
        };
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let serving = crate::controller_utils::is_pod_ready(pod);
        groups
            .entry((family.to_string(), resolved))
            .or_default()
            .push(Endpoint {
                addresses: vec![ip.to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some(is_serving(service, pod)),
                    serving: Some(serving),
                    terminating: Some(terminating),
                }),
                node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                target_ref: Some(pod_reference(pod)),
                ..Default::default()
            });
    }
    groups
}

fn slice_key(slice: &EndpointSlice) -> (String, PortSet) {
    let ports = slice
        .ports
        .iter()
        .flatten()
        .map(|p| {
            (
                p.name.clone(),
                p.port.unwrap_or(0),
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            )
        })
        .collect();
    (slice.address_type.clone(), ports)
}

impl EndpointSliceController {
    fn new_slice(&self, service: &Service, family: &str, ports: &PortSet, endpoints: Vec<Endpoint>) -> EndpointSlice {
        let name = service.metadata.name.clone().unwrap_or_default();
        let mut labels = service.metadata.labels.clone().unwrap_or_default();
        labels.insert(SERVICE_NAME.into(), name.clone());
        labels.insert(MANAGED_BY.into(), CONTROLLER_NAME.into());
        EndpointSlice {
            metadata: ObjectMeta {
                generate_name: Some(format!("{name}-")),
                namespace: service.metadata.namespace.clone(),
                labels: Some(labels),
                owner_references: Some(vec![controller_ref("v1", "Service", &service.metadata)]),
                ..Default::default()
            },
            address_type: family.to_string(),
            endpoints,
            ports: Some(
                ports
                    .iter()
                    .map(|(name, port, protocol)| EndpointPort {
                        name: name.clone(),
                        port: Some(*port),
                        protocol: Some(protocol.clone()),
                        app_protocol: None,
                    })
                    .collect(),
            ),
        }
    }
}

impl Reconciler for EndpointSliceController {
    async fn reconcile(&self, key: &str) -> client::Result<Option<Duration>> {
        let (namespace, _) = key.split_once('/').unwrap_or(("", key));
        if !self.tracker.caught_up(key, &self.slices) {
            // Our last writes are not in the cache yet: acting now could
            // create a slice twice. The slice events bring us back.
            return Ok(Some(Duration::from_millis(200)));
        }
        let mut written = Vec::new();
        let result = self.sync(key, namespace, &mut written).await;
        self.tracker.record(key, written);
        result
    }
}

impl EndpointSliceController {
    async fn sync(&self, key: &str, namespace: &str, written: &mut Vec<Written>) -> client::Result<Option<Duration>> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), namespace);
        let mut existing: Vec<Arc<EndpointSlice>> = self.slices.indexer().by_index(SERVICE_NAME, key);
        existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let service = self.services.indexer().get(key);
        // Without the Service (or its selector) there is nothing to publish;
        // the garbage collector removes owned slices too, this is faster.
        let pods = service.as_ref().and_then(|s| selected_pods(s, &self.pods));
        let (Some(service), Some(pods)) = (service, pods) else {
            for slice in existing {
                let name = slice.metadata.name.as_deref().unwrap_or_default();
                match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => written.push((name.to_string(), None)),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(None);
        };
        let mut unused: Vec<Arc<EndpointSlice>> = existing;
        let mut wanted = desired(&service, &pods);
        if wanted.is_empty() {
            // An empty slice still says "this Service has no endpoints".
            let ports = service.spec.as_ref().and_then(|s| s.ports.clone()).unwrap_or_default();
            let set: PortSet = ports
                .iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        p.port,
                        p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    )
                })
                .collect();
            wanted.insert(("IPv4".into(), set), Vec::new());
        }
        for ((family, ports), endpoints) in wanted {
            let chunks: Vec<Vec<Endpoint>> = if endpoints.is_empty() {
                vec![Vec::new()]
            } else {
                endpoints.chunks(MAX_ENDPOINTS).map(<[Endpoint]>::to_vec).collect()
            };
            for chunk in chunks {
                let reuse = unused
                    .iter()
                    .position(|s| slice_key(s) == (family.clone(), ports.clone()));
                let labels = self.new_slice(&service, &family, &ports, Vec::new()).metadata.labels;
                match reuse.map(|i| unused.remove(i)) {
                    Some(slice) if slice.endpoints == chunk && slice.metadata.labels == labels => {}
                    Some(slice) => {
                        let mut updated = slice.as_ref().clone();
                        updated.endpoints = chunk;
                        updated.metadata.labels = labels;
                        let updated = api.update(&updated).await?;
                        written.push(tracked(&updated));
                    }
                    None => {
                        let slice = self.new_slice(&service, &family, &ports, chunk);
                        match api.create(&slice).await {
                            Ok(created) => written.push(tracked(&created)),
                            Err(e) if e.code() == Some(403) => return Ok(None),
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
        }
        for slice in unused {
            let name = slice.metadata.name.as_deref().unwrap_or_default();
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => written.push((name.to_string(), None)),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}
