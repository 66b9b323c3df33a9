//! What the Endpoints and EndpointSlice controllers share: which pods
//! back a Service, which of their addresses are ready, and which port
//! each Service port reaches on each pod (a named `targetPort` may be a
//! different number on different pods).

use std::sync::Arc;
use std::time::Duration;

use client::indexer::key_of;
use client::{Event, Informer, WorkQueue};
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::controller_utils::{is_pod_ready, is_pod_terminated};

/// The pods a Service with a selector sends traffic to: matching, with an
/// IP, and not finished. `None` for a Service without a selector, whose
/// endpoints are its owner's business.
pub fn selected_pods(service: &Service, pods: &Informer<Pod>) -> Option<Vec<Arc<Pod>>> {
    let selector = service.spec.as_ref()?.selector.as_ref().filter(|s| !s.is_empty())?;
    let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
    let mut selected: Vec<Arc<Pod>> = pods
        .indexer()
        .list_namespace(namespace)
        .into_iter()
        .filter(|p| client::label_selector::matches_map(selector, p.metadata.labels.as_ref()))
        .filter(|p| pod_ip(p).is_some() && !is_pod_terminated(p))
        .collect();
    selected.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Some(selected)
}

pub fn pod_ip(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.pod_ip.as_deref().filter(|ip| !ip.is_empty())
}

/// A reference to the pod, as endpoints carry it.
pub fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// Whether the pod receives traffic: ready and not terminating (or the
/// Service publishes not-ready addresses).
pub fn is_serving(service: &Service, pod: &Pod) -> bool {
    let publish = service.spec.as_ref().and_then(|s| s.publish_not_ready_addresses) == Some(true);
    publish || (is_pod_ready(pod) && pod.metadata.deletion_timestamp.is_none())
}

/// The port on `pod` that `port` sends to, if the pod has it.
pub fn target_port(port: &ServicePort, pod: &Pod) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse() {
                return Some(n);
            }
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find_map(|p| {
                    (p.name.as_deref() == Some(name.as_str()) && p.protocol.as_deref().unwrap_or("TCP") == protocol)
                        .then_some(p.container_port)
                })
        }
    }
}

/// The Service's ports as resolved on one pod: (name, port, protocol).
pub type PortSet = Vec<(Option<String>, i32, String)>;

/// The ports `pod` serves for `service`; `None` if the Service has ports
/// and the pod has none of them.
pub fn resolved_ports(service: &Service, pod: &Pod) -> Option<PortSet> {
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    let resolved: PortSet = ports
        .iter()
        .filter_map(|p| {
            target_port(p, pod).map(|n| (p.name.clone(), n, p.protocol.clone().unwrap_or_else(|| "TCP".into())))
        })
        .collect();
    (!resolved.is_empty() || ports.is_empty()).then_some(resolved)
}

/// Enqueues, after `delay` (0: at once), the Services in the pod's
/// namespace whose selector matches it, before or after the change.
pub fn watch_pods(pods: &Informer<Pod>, services: &Arc<Informer<Service>>, queue: &WorkQueue<String>, delay: Duration) {
    let (services, queue) = (services.clone(), queue.clone());
    let enqueue = move |pod: &Pod| {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        for svc in services.indexer().list_namespace(namespace) {
            let selector = svc
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .filter(|s| !s.is_empty());
            if selector.is_some_and(|s| client::label_selector::matches_map(s, pod.metadata.labels.as_ref())) {
                if delay.is_zero() {
                    queue.add(key_of(svc.as_ref()));
                } else {
                    queue.add_after(key_of(svc.as_ref()), delay);
                }
            }
        }
    };
    pods.add_handler(move |event| match event {
        Event::Added(p) | Event::Deleted(p) => enqueue(p),
        Event::Updated { old, new } => {
            if old.metadata.resource_version != new.metadata.resource_version {
                enqueue(old);
                if old.metadata.labels != new.metadata.labels {
                    enqueue(new);
                }
            }
        }
    });
}
