//! Strategic merge patch: how `kubectl apply`, `kubectl patch` (its
//! default) and `kubectl edit` change built-in objects.
//!
//! A JSON merge patch replaces lists whole, which is wrong for a pod's
//! containers: patching one container's image would drop the others. A
//! strategic merge patch knows, per field, how a list merges: containers
//! are matched by `name`, container ports by `containerPort`, volume mounts
//! by `mountPath`, conditions by `type`, finalizers are a set … (the patch
//! merge keys Kubernetes declares on its types, in [`PATCH_STRATEGIES`],
//! found by following the type's schema down the object). Lists
//! without a strategy are replaced, maps merge key by key, and `null`
//! deletes a key.
//!
//! The directives kubectl sends are honoured: `$patch: replace | delete |
//! merge` (on a map, or as a list element), `$retainKeys`,
//! `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`.

use serde_json::{Map, Value};

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The patch's list replaces the object's.
    Replace,
    /// Elements are maps matched by this key; matches merge, others add.
    MergeBy(&'static str),
    /// A list of scalars treated as a set: the patch's values are added.
    Union,
}

/// The patch strategies Kubernetes declares on its types
/// (`patchStrategy:"merge" patchMergeKey:"…"`), by schema and field.
/// Every list not named here is replaced whole. The same table marks the
/// OpenAPI schemas (`x-kubernetes-patch-merge-key`) so that kubectl
/// computes the same patches the server applies.
pub const PATCH_STRATEGIES: &[(&str, &str, Strategy)] = &[
    ("io.k8s.api.core.v1.PodSpec", "containers", Strategy::MergeBy("name")),
    (
        "io.k8s.api.core.v1.PodSpec",
        "initContainers",
        Strategy::MergeBy("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        Strategy::MergeBy("name"),
    ),
    ("io.k8s.api.core.v1.PodSpec", "volumes", Strategy::MergeBy("name")),
    (
        "io.k8s.api.core.v1.PodSpec",
        "imagePullSecrets",
        Strategy::MergeBy("name"),
    ),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", Strategy::MergeBy("ip")),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        Strategy::MergeBy("topologyKey"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "schedulingGates",
        Strategy::MergeBy("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "resourceClaims",
        Strategy::MergeBy("name"),
    ),
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        Strategy::MergeBy("containerPort"),
    ),
    ("io.k8s.api.core.v1.Container", "env", Strategy::MergeBy("name")),
    (
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        Strategy::MergeBy("mountPath"),
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        Strategy::MergeBy("devicePath"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "env",
        Strategy::MergeBy("name"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeMounts",
        Strategy::MergeBy("mountPath"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeDevices",
        Strategy::MergeBy("devicePath"),
    ),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", Strategy::MergeBy("port")),
    ("io.k8s.api.core.v1.PodStatus", "conditions", Strategy::MergeBy("type")),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", Strategy::MergeBy("ip")),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", Strategy::MergeBy("ip")),
    ("io.k8s.api.core.v1.NodeStatus", "conditions", Strategy::MergeBy("type")),
    ("io.k8s.api.core.v1.NodeStatus", "addresses", Strategy::MergeBy("type")),
    (
        "io.k8s.api.core.v1.NamespaceStatus",
        "conditions",
        Strategy::MergeBy("type"),
    ),
    (
        "io.k8s.api.core.v1.ReplicationControllerStatus",
        "conditions",
        Strategy::MergeBy("type"),
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        Strategy::MergeBy("type"),
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        Strategy::MergeBy("type"),
    ),
    (
        "io.k8s.api.apps.v1.StatefulSetStatus",
        "conditions",
        Strategy::MergeBy("type"),
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "conditions",
        Strategy::MergeBy("type"),
    ),
    ("io.k8s.api.batch.v1.JobStatus", "conditions", Strategy::MergeBy("type")),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        Strategy::MergeBy("uid"),
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        Strategy::Union,
    ),
];

/// The strategy of list `field` in an object of schema `schema`.
pub fn strategy(schema: Option<&str>, field: &str) -> Strategy {
    let Some(schema) = schema else { return Strategy::Replace };
    PATCH_STRATEGIES
        .iter()
        .find(|(s, f, _)| *s == schema && *f == field)
        .map(|(_, _, strategy)| *strategy)
        .unwrap_or(Strategy::Replace)
}

/// Why a patch could not be applied (a 422 or 400 for the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatchError(pub String);

/// Applies `patch` to `original`, an object whose schema is `schema`
/// (`io.k8s.api.apps.v1.Deployment`; `None` for an unknown type, whose
/// lists are all replaced).
pub fn apply(schema: Option<&str>, original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError("a strategic merge patch must be a JSON object".into()));
    };
    let mut result = original.clone();
    if !result.is_object() {
        result = Value::Object(Map::new());
    }
    let mut path = Vec::new();
    merge_map(schema, &mut result, patch, &mut path)?;
    Ok(result)
}

/// `path` only names where an error happened; `schema` drives the merge.
fn merge_map(
    schema: Option<&str>,
    target: &mut Value,
    patch: &Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<(), PatchError> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replaced = patch.clone();
            replaced.remove("$patch");
            *target = Value::Object(replaced);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => return Err(PatchError(format!("unknown patch directive $patch: {other:?}"))),
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    for (key, value) in patch {
        if key == "$patch" || key == "$retainKeys" || key.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let doomed = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(list)) = target.get_mut(field) {
                list.retain(|v| !doomed.contains(v));
            }
            continue;
        }
        let Some(map) = target.as_object_mut() else { continue };
        match value {
            Value::Null => {
                map.remove(key);
            }
            Value::Object(sub) => {
                path.push(key.clone());
                let field_schema = schema.and_then(|s| crate::types::field_schema(s, key));
                let slot = map.entry(key.clone()).or_insert(Value::Null);
                merge_map(field_schema, slot, sub, path)?;
                if slot.is_null() {
                    map.remove(key);
                }
                path.pop();
            }
            Value::Array(items) => {
                path.push(key.clone());
                let strategy = strategy(schema, key);
                let item_schema = schema.and_then(|s| crate::types::field_schema(s, key));
                let slot = map.entry(key.clone()).or_insert(Value::Array(Vec::new()));
                merge_list(item_schema, slot, items, strategy, path)?;
                path.pop();
            }
            scalar => {
                map.insert(key.clone(), scalar.clone());
            }
        }
    }
    if let Some(order) = patch
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("$setElementOrder/")?, v)))
        .next()
    {
        reorder(target, order.0, order.1, strategy(schema, order.0));
    }
    if let Some(Value::Array(keep)) = patch.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        if let Some(map) = target.as_object_mut() {
            map.retain(|k, _| keep.contains(&k.as_str()));
        }
    }
    Ok(())
}

fn merge_list(
    schema: Option<&str>,
    target: &mut Value,
    items: &[Value],
    strategy: Strategy,
    path: &mut Vec<String>,
) -> Result<(), PatchError> {
    let replace_whole = items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"));
    if !target.is_array() || strategy == Strategy::Replace || replace_whole {
        let kept: Vec<Value> = items.iter().filter(|i| i.get("$patch").is_none()).cloned().collect();
        *target = Value::Array(kept);
        return Ok(());
    }
    let Some(list) = target.as_array_mut() else {
        return Ok(());
    };
    match strategy {
        Strategy::Union => {
            for item in items {
                if !list.contains(item) {
                    list.push(item.clone());
                }
            }
        }
        Strategy::MergeBy(key) => {
            for item in items {
                let Some(patch) = item.as_object() else {
                    return Err(PatchError(format!(
                        "the list {} merges by {key:?}, so its elements must be objects",
                        path.join(".")
                    )));
                };
                let Some(id) = patch.get(key) else {
                    return Err(PatchError(format!(
                        "an element of {} has no merge key {key:?}",
                        path.join(".")
                    )));
                };
                let found = list.iter().position(|existing| existing.get(key) == Some(id));
                match (found, patch.get("$patch").and_then(Value::as_str)) {
                    (Some(i), Some("delete")) => {
                        list.remove(i);
                    }
                    (None, Some("delete")) => {}
                    (Some(i), _) => merge_map(schema, &mut list[i], patch, path)?,
                    (None, _) => {
                        let mut fresh = Value::Object(Map::new());
                        merge_map(schema, &mut fresh, patch, path)?;
                        list.push(fresh);
                    }
                }
            }
        }
        Strategy::Replace => {}
    }
    Ok(())
}

/// `$setElementOrder/<field>`: the listed elements first, in that order.
fn reorder(target: &mut Value, field: &str, order: &Value, strategy: Strategy) {
    let Some(order) = order.as_array() else { return };
    let key = match strategy {
        Strategy::MergeBy(key) => Some(key),
        _ => None,
    };
    let Some(Value::Array(list)) = target.get_mut(field) else {
        return;
    };
    let rank = |v: &Value| {
        order
            .iter()
            .position(|o| match key {
                Some(k) => o.get(k).is_some() && o.get(k) == v.get(k),
                None => o == v,
            })
            .unwrap_or(usize::MAX)
    };
    list.sort_by_key(rank);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}, "finalizers": ["a"]},
            "spec": {"replicas": 2, "template": {"spec": {
                "containers": [
                    {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                     "ports": [{"containerPort": 80, "name": "http"}]},
                    {"name": "sidecar", "image": "proxy:1"}],
                "tolerations": [{"key": "x"}]}}},
        })
    }

    #[test]
    fn containers_merge_by_name_and_other_lists_replace() {
        let patch = json!({"spec": {"replicas": 3, "template": {"spec": {
            "containers": [{"name": "app", "image": "app:2", "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}]}],
            "tolerations": [{"key": "y"}]}}}});
        let out = apply(Some("io.k8s.api.apps.v1.Deployment"), &deployment(), &patch).unwrap();
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers.as_array().unwrap().len(), 2, "the sidecar stays");
        assert_eq!(containers[0]["image"], "app:2");
        assert_eq!(containers[0]["ports"][0]["containerPort"], 80, "untouched fields stay");
        let env: Vec<(String, String)> = containers[0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap().into(), e["value"].as_str().unwrap().into()))
            .collect();
        assert_eq!(
            env,
            [
                ("A".into(), "1".into()),
                ("B".into(), "20".into()),
                ("C".into(), "3".into())
            ]
        );
        assert_eq!(out["spec"]["template"]["spec"]["tolerations"], json!([{"key": "y"}]));
        assert_eq!(out["spec"]["replicas"], 3);
    }

    #[test]
    fn nulls_delete_and_directives_are_honoured() {
        let patch = json!({
            "metadata": {"labels": {"tier": null}, "finalizers": ["b"], "$deleteFromPrimitiveList/finalizers": ["a"]},
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
                "containers": [{"name": "app", "$patch": "delete"}, {"name": "new", "image": "n:1"}]}}},
        });
        let out = apply(Some("io.k8s.api.apps.v1.Deployment"), &deployment(), &patch).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["sidecar", "new"]);

        let replace =
            json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only"}]}}}});
        let out = apply(Some("io.k8s.api.apps.v1.Deployment"), &deployment(), &replace).unwrap();
        assert_eq!(out["spec"]["template"]["spec"]["containers"], json!([{"name": "only"}]));

        let retain = json!({"spec": {"$retainKeys": ["replicas"], "replicas": 1}});
        let out = apply(Some("io.k8s.api.apps.v1.Deployment"), &deployment(), &retain).unwrap();
        assert_eq!(out["spec"], json!({"replicas": 1}));
    }

    #[test]
    fn service_ports_merge_by_port_and_bad_patches_are_refused() {
        let svc = json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}});
        let out = apply(
            Some("io.k8s.api.core.v1.Service"),
            &svc,
            &json!({"spec": {"ports": [{"port": 443, "targetPort": 8443}]}}),
        )
        .unwrap();
        assert_eq!(
            out["spec"]["ports"][1],
            json!({"port": 443, "name": "https", "targetPort": 8443})
        );
        assert_eq!(out["spec"]["ports"].as_array().unwrap().len(), 2);
        let no_key = json!({"spec": {"ports": [{"targetPort": 1}]}});
        assert!(apply(Some("io.k8s.api.core.v1.Service"), &svc, &no_key)
            .unwrap_err()
            .0
            .contains("merge key"));
        assert!(apply(Some("io.k8s.api.core.v1.Service"), &svc, &json!([1])).is_err());
    }
}
