//! Conversion between the versions of a resource that share storage.
//!
//! Some objects are served under two API versions from one set of stored
//! objects: HorizontalPodAutoscalers as `autoscaling/v1` and
//! `autoscaling/v2`, Events as core `v1` and `events.k8s.io/v1`, and a
//! custom resource under each version its CRD serves. Each is stored in one
//! version (v2, core v1, or as written) and converted on the way in and
//! out, so a client of either version reads an object of its version and
//! no write through the older version loses what only the newer can say:
//! like Kubernetes, the v2-only parts of an HPA ride through v1 in
//! `autoscaling.alpha.kubernetes.io/*` annotations.

use serde_json::{json, Map, Value};

use crate::request_info::RequestInfo;

const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";

/// The version objects of this resource are stored in, if it is one of
/// the shared ones.
fn storage_version(info: &RequestInfo) -> Option<&'static str> {
    match (info.resource.group, info.resource.plural) {
        ("autoscaling", "horizontalpodautoscalers") => Some("autoscaling/v2"),
        ("" | "events.k8s.io", "events") => Some("v1"),
        _ => None,
    }
}

/// Whether writes of this resource may need converting.
pub fn converts_on_write(info: &RequestInfo) -> bool {
    storage_version(info).is_some()
}

/// Whether `api_version` names `group`/`version`, without building a string
/// (this runs for every object read).
fn is_version(api_version: &str, group: &str, version: &str) -> bool {
    match api_version.split_once('/') {
        Some((g, v)) => g == group && v == version,
        None => group.is_empty() && api_version == version,
    }
}

/// A stored object, as the request's version shows it.
pub fn from_storage(info: &RequestInfo, object: Value) -> Value {
    let have = object["apiVersion"].as_str().unwrap_or_default();
    if object.is_null() || is_version(have, info.resource.group, info.resource.version) {
        return object;
    }
    let wanted = info.resource.api_version();
    let have = have.to_string();
    match (have.as_str(), wanted.as_str()) {
        ("autoscaling/v2", "autoscaling/v1") => hpa_v2_to_v1(object),
        ("autoscaling/v1", "autoscaling/v2") => hpa_v1_to_v2(object),
        ("v1", "events.k8s.io/v1") => core_event_to_events(object),
        ("events.k8s.io/v1", "v1") => events_to_core_event(object),
        // Custom resources: versions differ in name only (no conversion
        // webhook), as with Kubernetes' "None" strategy.
        _ => with_api_version(object, &wanted),
    }
}

/// An object about to be stored, in its storage version.
pub fn to_storage(info: &RequestInfo, object: Value) -> Value {
    let Some(version) = storage_version(info) else {
        return object;
    };
    let have = object["apiVersion"].as_str().unwrap_or_default().to_string();
    match (have.as_str(), version) {
        ("autoscaling/v1", "autoscaling/v2") => hpa_v1_to_v2(object),
        ("events.k8s.io/v1", "v1") => events_to_core_event(object),
        _ => object,
    }
}

fn with_api_version(mut object: Value, api_version: &str) -> Value {
    object["apiVersion"] = json!(api_version);
    object
}

fn annotations(object: &mut Value) -> &mut Map<String, Value> {
    if !object["metadata"]["annotations"].is_object() {
        object["metadata"]["annotations"] = json!({});
    }
    object["metadata"]["annotations"]
        .as_object_mut()
        .unwrap_or_else(|| unreachable!("just made an object"))
}

fn stash(object: &mut Value, key: &str, value: &Value) {
    if value.as_array().is_some_and(|a| !a.is_empty()) || value.is_object() {
        annotations(object).insert(key.into(), json!(value.to_string()));
    }
}

fn unstash(object: &mut Value, key: &str) -> Option<Value> {
    // get_mut, not indexing: indexing a missing key would insert a null.
    let annotations = object.get_mut("metadata")?.get_mut("annotations")?.as_object_mut()?;
    let text = annotations.remove(key)?;
    let value = serde_json::from_str(text.as_str()?).ok();
    if object["metadata"]["annotations"]
        .as_object()
        .is_some_and(|a| a.is_empty())
    {
        if let Some(m) = object["metadata"].as_object_mut() {
            m.remove("annotations");
        }
    }
    value
}

fn is_cpu_utilization(metric: &Value) -> bool {
    metric["type"] == "Resource"
        && metric["resource"]["name"] == "cpu"
        && metric["resource"]["target"]["type"] == "Utilization"
}

fn hpa_v2_to_v1(v2: Value) -> Value {
    let mut v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": v2["metadata"]});
    let spec = &v2["spec"];
    v1["spec"] = json!({"scaleTargetRef": spec["scaleTargetRef"], "maxReplicas": spec["maxReplicas"]});
    if !spec["minReplicas"].is_null() {
        v1["spec"]["minReplicas"] = spec["minReplicas"].clone();
    }
    let metrics = spec["metrics"].as_array().cloned().unwrap_or_default();
    let (cpu, others): (Vec<Value>, Vec<Value>) = metrics.into_iter().partition(is_cpu_utilization);
    if let Some(target) = cpu
        .first()
        .and_then(|m| m["resource"]["target"]["averageUtilization"].as_i64())
    {
        v1["spec"]["targetCPUUtilizationPercentage"] = json!(target);
    }
    stash(&mut v1, METRICS, &json!(others));
    stash(&mut v1, BEHAVIOR, &spec["behavior"]);
    let status = &v2["status"];
    if status.is_object() {
        let mut s = json!({"currentReplicas": status["currentReplicas"].as_i64().unwrap_or(0),
                           "desiredReplicas": status["desiredReplicas"].as_i64().unwrap_or(0)});
        for key in ["observedGeneration", "lastScaleTime"] {
            if !status[key].is_null() {
                s[key] = status[key].clone();
            }
        }
        let current = status["currentMetrics"].as_array().cloned().unwrap_or_default();
        if let Some(cpu) = current
            .iter()
            .find(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu")
            .and_then(|m| m["resource"]["current"]["averageUtilization"].as_i64())
        {
            s["currentCPUUtilizationPercentage"] = json!(cpu);
        }
        v1["status"] = s;
        stash(&mut v1, CURRENT_METRICS, &json!(current));
        stash(&mut v1, CONDITIONS, &status["conditions"]);
    }
    v1
}

fn hpa_v1_to_v2(mut v1: Value) -> Value {
    let mut metrics: Vec<Value> = unstash(&mut v1, METRICS)
        .and_then(|m| m.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|m| !is_cpu_utilization(m))
        .collect();
    if let Some(target) = v1["spec"]["targetCPUUtilizationPercentage"].as_i64() {
        metrics.insert(
            0,
            json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": target}}}),
        );
    }
    let behavior = unstash(&mut v1, BEHAVIOR);
    let current = unstash(&mut v1, CURRENT_METRICS);
    let conditions = unstash(&mut v1, CONDITIONS);
    let spec = &v1["spec"];
    let mut v2 = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": v1["metadata"],
        "spec": {"scaleTargetRef": spec["scaleTargetRef"], "maxReplicas": spec["maxReplicas"]}});
    if !spec["minReplicas"].is_null() {
        v2["spec"]["minReplicas"] = spec["minReplicas"].clone();
    }
    if !metrics.is_empty() {
        v2["spec"]["metrics"] = json!(metrics);
    }
    if let Some(b) = behavior {
        v2["spec"]["behavior"] = b;
    }
    let status = &v1["status"];
    if status.is_object() {
        let mut s = json!({"currentReplicas": status["currentReplicas"], "desiredReplicas": status["desiredReplicas"]});
        for key in ["observedGeneration", "lastScaleTime"] {
            if !status[key].is_null() {
                s[key] = status[key].clone();
            }
        }
        if let Some(c) = current {
            s["currentMetrics"] = c;
        }
        if let Some(c) = conditions {
            s["conditions"] = c;
        }
        v2["status"] = s;
    }
    v2
}

/// Copies the fields named in `pairs` (`(from, to)`) that are set.
fn moved(from: &Value, pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .filter(|(f, _)| !from[*f].is_null())
        .map(|(f, t)| (t.to_string(), from[*f].clone()))
        .collect()
}

const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reason", "reason"),
    ("type", "type"),
    ("eventTime", "eventTime"),
    ("related", "related"),
    ("action", "action"),
    ("reportingComponent", "reportingController"),
    ("reportingInstance", "reportingInstance"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("series", "series"),
];

fn core_event_to_events(core: Value) -> Value {
    let mut e = moved(&core, EVENT_FIELDS);
    e.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    e.insert("kind".into(), json!("Event"));
    e.insert("metadata".into(), core["metadata"].clone());
    Value::Object(e)
}

fn events_to_core_event(events: Value) -> Value {
    let back: Vec<(&str, &str)> = EVENT_FIELDS.iter().map(|(a, b)| (*b, *a)).collect();
    let mut e = moved(&events, &back);
    e.insert("apiVersion".into(), json!("v1"));
    e.insert("kind".into(), json!("Event"));
    e.insert("metadata".into(), events["metadata"].clone());
    // A core Event needs its involvedObject.
    e.entry("involvedObject").or_insert_with(|| json!({}));
    Value::Object(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpas_survive_a_round_trip_through_v1() {
        let v2 = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1Gi"}}}],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}});
        let v1 = hpa_v2_to_v1(v2.clone());
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
        assert!(v1["metadata"]["annotations"][METRICS]
            .as_str()
            .unwrap()
            .contains("memory"));
        assert_eq!(hpa_v1_to_v2(v1), v2, "nothing lost");
    }

    #[test]
    fn events_map_between_the_two_apis() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "message": "hi", "reason": "Started", "count": 2});
        let e = core_event_to_events(core.clone());
        assert_eq!(
            (
                e["note"].as_str(),
                e["regarding"]["name"].as_str(),
                e["deprecatedCount"].as_i64()
            ),
            (Some("hi"), Some("p"), Some(2))
        );
        assert_eq!(events_to_core_event(e), core);
    }
}
