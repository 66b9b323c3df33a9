//! Resource quota usage: what one object costs against a ResourceQuota.
//!
//! Two places need the same arithmetic: the API server's ResourceQuota
//! admission step, which charges a new object against the quotas of its
//! namespace before it is stored, and the controller manager's
//! resource-quota controller, which recounts a namespace from its objects
//! (so that deleted objects free their share). Both ask [`usage`] what an
//! object uses, named as a quota's `spec.hard` names resources:
//!
//! - object counts: `count/<resource>[.<group>]` for every resource, and
//!   the older names `pods`, `services`, `configmaps`, `secrets`,
//!   `persistentvolumeclaims`, `replicationcontrollers`, `resourcequotas`;
//! - a pod's compute resources, unless it has finished: `requests.cpu`
//!   (also plain `cpu`), `requests.memory` (`memory`), `limits.cpu`,
//!   `limits.memory`, and the same for ephemeral storage and any other
//!   resource (`requests.nvidia.com/gpu`), each the larger of the sum over
//!   containers and the largest init container, plus the pod's overhead;
//! - `services.nodeports` and `services.loadbalancers`;
//! - a claim's `requests.storage`, also per storage class
//!   (`<class>.storageclass.storage.k8s.io/requests.storage`).
//!
//! Amounts are thousandths (as [`Quantity::milli`]), so cores, bytes and
//! counts add up alike.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::quantity::Quantity;

/// Usage by quota resource name, in thousandths.
pub type Usage = BTreeMap<String, i64>;

/// Resource names with an older, unprefixed quota name.
const LEGACY_COUNTS: &[&str] = &[
    "pods",
    "services",
    "configmaps",
    "secrets",
    "persistentvolumeclaims",
    "replicationcontrollers",
    "resourcequotas",
];

/// The quota name that counts objects of `plural` in `group`.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// The resource (group, plural) whose objects a quota resource name
/// counts: `pods` and `requests.cpu` → pods, `count/deployments.apps` →
/// deployments in apps, `services.nodeports` → services.
pub fn tracked_resource(name: &str) -> Option<(String, String)> {
    if let Some(counted) = name.strip_prefix("count/") {
        return Some(match counted.split_once('.') {
            Some((plural, group)) => (group.to_string(), plural.to_string()),
            None => (String::new(), counted.to_string()),
        });
    }
    let core = |plural: &str| Some((String::new(), plural.to_string()));
    if LEGACY_COUNTS.contains(&name) {
        return core(name);
    }
    if name.starts_with("services.") {
        return core("services");
    }
    if name == "requests.storage" || name.contains(".storageclass.storage.k8s.io/") {
        return core("persistentvolumeclaims");
    }
    if name.starts_with("requests.")
        || name.starts_with("limits.")
        || matches!(name, "cpu" | "memory" | "ephemeral-storage")
    {
        return core("pods");
    }
    None
}

/// Thousandths of a quantity's text; `None` when it is not a quantity.
pub fn milli(text: &str) -> Option<i64> {
    Quantity::parse(text).ok().map(|q| q.milli())
}

fn add(usage: &mut Usage, name: impl Into<String>, amount: i64) {
    let slot = usage.entry(name.into()).or_insert(0);
    *slot = slot.saturating_add(amount);
}

/// Whether a pod has finished (its compute resources are free again).
fn finished(pod: &Value) -> bool {
    matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
}

/// A container list's `resources.<kind>` (requests or limits), summed.
fn sum(containers: &Value, kind: &str) -> BTreeMap<String, i64> {
    let mut total = BTreeMap::new();
    for c in containers.as_array().into_iter().flatten() {
        for (name, q) in c["resources"][kind].as_object().into_iter().flatten() {
            if let Some(m) = q.as_str().and_then(milli) {
                let slot = total.entry(name.clone()).or_insert(0i64);
                *slot = slot.saturating_add(m);
            }
        }
    }
    total
}

/// A pod's effective requests or limits (`kind`), in thousandths:
/// containers summed, at least the largest init container, plus overhead
/// (what LimitRanger's Pod limits bound, too).
pub fn pod_resources(pod: &Value, kind: &str) -> BTreeMap<String, i64> {
    let mut total = sum(&pod["spec"]["containers"], kind);
    for init in pod["spec"]["initContainers"].as_array().into_iter().flatten() {
        for (name, m) in sum(&Value::Array(vec![init.clone()]), kind) {
            let slot = total.entry(name).or_insert(0);
            *slot = (*slot).max(m);
        }
    }
    for (name, q) in pod["spec"]["overhead"].as_object().into_iter().flatten() {
        if let Some(m) = q.as_str().and_then(milli) {
            let slot = total.entry(name.clone()).or_insert(0);
            *slot = slot.saturating_add(m);
        }
    }
    total
}

/// What `object` (of `plural` in `group`) uses.
pub fn usage(group: &str, plural: &str, object: &Value) -> Usage {
    let mut usage = Usage::new();
    let one = 1000;
    if group.is_empty() && plural == "pods" && finished(object) {
        return usage;
    }
    add(&mut usage, count_name(group, plural), one);
    if group.is_empty() && LEGACY_COUNTS.contains(&plural) {
        add(&mut usage, plural, one);
    }
    match (group, plural) {
        ("", "pods") => {
            for kind in ["requests", "limits"] {
                for (name, m) in pod_resources(object, kind) {
                    add(&mut usage, format!("{kind}.{name}"), m);
                    // `cpu`, `memory` and `ephemeral-storage` alone mean requests.
                    if kind == "requests" && matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage") {
                        add(&mut usage, name, m);
                    }
                }
            }
        }
        ("", "services") => {
            let kind = object["spec"]["type"].as_str().unwrap_or("ClusterIP");
            if kind == "LoadBalancer" {
                add(&mut usage, "services.loadbalancers", one);
            }
            if matches!(kind, "NodePort" | "LoadBalancer") {
                let ports = object["spec"]["ports"].as_array().map_or(0, Vec::len);
                add(&mut usage, "services.nodeports", one * ports as i64);
            }
        }
        ("", "persistentvolumeclaims") => {
            let storage = object["spec"]["resources"]["requests"]["storage"]
                .as_str()
                .and_then(milli)
                .unwrap_or(0);
            add(&mut usage, "requests.storage", storage);
            if let Some(class) = object["spec"]["storageClassName"].as_str() {
                let prefix = format!("{class}.storageclass.storage.k8s.io");
                add(&mut usage, format!("{prefix}/requests.storage"), storage);
                add(&mut usage, format!("{prefix}/persistentvolumeclaims"), one);
            }
        }
        _ => {}
    }
    usage
}

/// The compute resources a quota limits that some container of `pod`
/// does not state (a quota on `limits.cpu` needs every container to set
/// a cpu limit): `(resource, containers)` pairs.
pub fn unstated(pod: &Value, hard: &BTreeMap<String, String>) -> Vec<(String, Vec<String>)> {
    let mut missing = Vec::new();
    for name in hard.keys() {
        let (kind, resource) = match name.split_once('.') {
            Some(("requests", r)) => ("requests", r),
            Some(("limits", r)) => ("limits", r),
            _ if matches!(name.as_str(), "cpu" | "memory") => ("requests", name.as_str()),
            _ => continue,
        };
        if !matches!(resource, "cpu" | "memory") {
            continue;
        }
        let containers = pod["spec"]["containers"].as_array().into_iter().flatten();
        let init = pod["spec"]["initContainers"].as_array().into_iter().flatten();
        let without: Vec<String> = containers
            .chain(init)
            .filter(|c| c["resources"][kind][resource].is_null())
            .map(|c| c["name"].as_str().unwrap_or_default().to_string())
            .collect();
        if !without.is_empty() {
            missing.push((name.clone(), without));
        }
    }
    missing
}

/// Whether a quota with `scopes` covers `pod` (Terminating: it has an
/// active deadline; BestEffort: no container requests or limits
/// anything). Objects other than pods are only covered by unscoped
/// quotas.
pub fn in_scope(scopes: &[String], plural: &str, object: &Value) -> bool {
    if scopes.is_empty() {
        return true;
    }
    if plural != "pods" {
        return false;
    }
    let best_effort = pod_resources(object, "requests").is_empty() && pod_resources(object, "limits").is_empty();
    let terminating = !object["spec"]["activeDeadlineSeconds"].is_null();
    scopes.iter().all(|scope| match scope.as_str() {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => best_effort,
        "NotBestEffort" => !best_effort,
        _ => false,
    })
}

/// Thousandths written as Kubernetes writes the quantity: `500m`, `2`,
/// or with the binary suffix `like` uses (`1Gi` for a hard limit in Gi)
/// when the amount is a whole multiple of it.
pub fn format(milli: i64, like: &str) -> String {
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let whole = milli / 1000;
    if like.ends_with('i') && whole != 0 {
        for (suffix, size) in [
            ("Ei", 1i64 << 60),
            ("Pi", 1 << 50),
            ("Ti", 1 << 40),
            ("Gi", 1 << 30),
            ("Mi", 1 << 20),
            ("Ki", 1 << 10),
        ] {
            if whole % size == 0 {
                return format!("{}{suffix}", whole / size);
            }
        }
    }
    whole.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: Value) -> Value {
        json!({"spec": {"containers": containers}, "status": {"phase": "Pending"}})
    }

    #[test]
    fn a_pod_uses_its_count_and_compute_resources() {
        let p = pod(json!([
            {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1"}}},
            {"name": "b", "resources": {"requests": {"cpu": "250m"}}},
        ]));
        let u = usage("", "pods", &p);
        assert_eq!(u["pods"], 1000);
        assert_eq!(u["count/pods"], 1000);
        assert_eq!(u["requests.cpu"], 500);
        assert_eq!(u["cpu"], 500);
        assert_eq!(u["requests.memory"], 64 * 1024 * 1024 * 1000);
        assert_eq!(u["limits.cpu"], 1000);
        let mut done = p.clone();
        done["status"]["phase"] = json!("Succeeded");
        assert!(usage("", "pods", &done).is_empty());
    }

    #[test]
    fn init_containers_count_when_larger() {
        let mut p = pod(json!([{"name": "a", "resources": {"requests": {"cpu": "100m"}}}]));
        p["spec"]["initContainers"] = json!([{"name": "i", "resources": {"requests": {"cpu": "2"}}}]);
        assert_eq!(usage("", "pods", &p)["requests.cpu"], 2000);
    }

    #[test]
    fn services_claims_and_other_kinds() {
        let svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}});
        let u = usage("", "services", &svc);
        assert_eq!((u["services"], u["services.nodeports"]), (1000, 2000));
        assert!(!u.contains_key("services.loadbalancers"));
        let pvc = json!({"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}}});
        let u = usage("", "persistentvolumeclaims", &pvc);
        assert_eq!(u["fast.storageclass.storage.k8s.io/requests.storage"], (1 << 30) * 1000);
        let u = usage("apps", "deployments", &json!({}));
        assert_eq!(u.keys().collect::<Vec<_>>(), ["count/deployments.apps"]);
    }

    #[test]
    fn unstated_resources_and_scopes() {
        let p = pod(json!([{"name": "a", "resources": {"requests": {"cpu": "1"}}}]));
        let hard: BTreeMap<String, String> = [
            ("requests.cpu".into(), "2".into()),
            ("limits.memory".into(), "1Gi".into()),
            ("pods".into(), "3".into()),
        ]
        .into();
        assert_eq!(
            unstated(&p, &hard),
            [("limits.memory".to_string(), vec!["a".to_string()])]
        );
        let scopes = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(in_scope(&scopes(&["NotBestEffort"]), "pods", &p));
        assert!(!in_scope(&scopes(&["BestEffort"]), "pods", &p));
        assert!(!in_scope(&scopes(&["BestEffort"]), "services", &json!({})));
        assert!(in_scope(&[], "services", &json!({})));
    }

    #[test]
    fn quota_names_say_which_objects_they_count() {
        let r = |n: &str| tracked_resource(n).map(|(g, p)| format!("{g}/{p}"));
        assert_eq!(r("pods").as_deref(), Some("/pods"));
        assert_eq!(r("requests.cpu").as_deref(), Some("/pods"));
        assert_eq!(r("memory").as_deref(), Some("/pods"));
        assert_eq!(r("count/deployments.apps").as_deref(), Some("apps/deployments"));
        assert_eq!(r("count/configmaps").as_deref(), Some("/configmaps"));
        assert_eq!(r("services.nodeports").as_deref(), Some("/services"));
        assert_eq!(
            r("gold.storageclass.storage.k8s.io/requests.storage").as_deref(),
            Some("/persistentvolumeclaims")
        );
        assert_eq!(r("nonsense"), None);
    }

    #[test]
    fn amounts_are_written_back_as_quantities() {
        assert_eq!(format(500, "2"), "500m");
        assert_eq!(format(3000, "10"), "3");
        assert_eq!(format(2 * (1 << 30) * 1000, "4Gi"), "2Gi");
        assert_eq!(format(1536 * 1000, "1Gi"), "1536");
        assert_eq!(format(2048 * 1000, "1Gi"), "2Ki");
        assert_eq!(format(0, "1Gi"), "0");
    }
}
