//! The resources a pod asks for and a node has, as the scheduler adds
//! them up: cpu in millicores, memory and ephemeral storage in bytes, a
//! count of pods, and extended resources (`example.com/gpu`) by name.

use std::collections::BTreeMap;

use api::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

/// Requests a pod that names none is scored as if it asked for: keeps
/// the scoring from stacking request-less pods on one node.
pub const DEFAULT_MILLI_CPU: i64 = 100;
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
    pub scalar: BTreeMap<String, i64>,
}

fn parse(q: &K8sQuantity) -> Option<Quantity> {
    Quantity::parse(&q.0).ok()
}

impl Resource {
    /// From a resource list (`requests`, `allocatable`, `overhead`).
    pub fn from_list(list: &BTreeMap<String, K8sQuantity>) -> Resource {
        let mut r = Resource::default();
        for (name, q) in list {
            let Some(q) = parse(q) else { continue };
            match name.as_str() {
                "cpu" => r.milli_cpu = q.milli(),
                "memory" => r.memory = q.value(),
                "ephemeral-storage" => r.ephemeral_storage = q.value(),
                "pods" => r.pods = q.value(),
                other if is_extended(other) => {
                    r.scalar.insert(other.to_string(), q.value());
                }
                _ => {}
            }
        }
        r
    }

    pub fn add(&mut self, other: &Resource) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.pods += other.pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, other: &Resource) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.pods -= other.pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Each field the larger of the two (init containers run one at a time).
    fn max_with(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }
}

/// Extended resources: a domain-qualified name (`example.com/gpu`),
/// `hugepages-*`, or `attachable-volumes-*`.
fn is_extended(name: &str) -> bool {
    (name.contains('/') && !name.starts_with("kubernetes.io/")) || name.starts_with("hugepages-")
}

fn container_requests(c: &Container) -> Resource {
    c.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .map(Resource::from_list)
        .unwrap_or_default()
}

/// What the pod needs on a node: the sum of its containers' (and
/// restartable init "sidecar" containers') requests, or the largest init
/// container's if that is more, plus the pod overhead; `pods` is 1.
pub fn pod_requests(pod: &Pod) -> Resource {
    let Some(spec) = pod.spec.as_ref() else {
        return Resource {
            pods: 1,
            ..Default::default()
        };
    };
    let mut total = Resource::default();
    for c in &spec.containers {
        total.add(&container_requests(c));
    }
    let mut sidecars = Resource::default();
    for init in spec.init_containers.iter().flatten() {
        let r = container_requests(init);
        if init.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            total.add(&r);
        } else {
            let mut with_sidecars = r.clone();
            with_sidecars.add(&sidecars);
            total.max_with(&with_sidecars);
        }
    }
    if let Some(overhead) = &spec.overhead {
        total.add(&Resource::from_list(overhead));
    }
    total.pods = 1;
    total
}

/// [`pod_requests`] for scoring: cpu and memory that are not requested
/// count as the defaults.
pub fn non_zero_requests(pod: &Pod) -> (i64, i64) {
    let Some(spec) = pod.spec.as_ref() else {
        return (DEFAULT_MILLI_CPU, DEFAULT_MEMORY);
    };
    let mut cpu = 0;
    let mut memory = 0;
    for c in &spec.containers {
        let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        let get = |name: &str| requests.and_then(|r| r.get(name)).and_then(parse);
        cpu += get("cpu").map_or(DEFAULT_MILLI_CPU, |q| q.milli());
        memory += get("memory").map_or(DEFAULT_MEMORY, |q| q.value());
    }
    (cpu, memory)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn requests_add_containers_and_take_the_largest_init_container() {
        let p = pod(serde_json::json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "200m", "example.com/gpu": "1"}}}],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1", "memory": "10Mi"}}}],
            "overhead": {"cpu": "50m"}}}));
        let r = pod_requests(&p);
        assert_eq!(r.milli_cpu, 1050);
        assert_eq!(r.memory, 100 * 1024 * 1024);
        assert_eq!(r.scalar["example.com/gpu"], 1);
        assert_eq!(r.pods, 1);
        assert_eq!(non_zero_requests(&p), (300, 100 * 1024 * 1024 + DEFAULT_MEMORY));
    }
}
