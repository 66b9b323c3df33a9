//! The LimitRanger admission step: a namespace's LimitRanges give its
//! pods' containers default requests and limits and bound what they may
//! ask for.
//!
//! For every LimitRange item of type `Container`, a new pod's containers
//! (init containers too) get the item's `default` as limits and its
//! `defaultRequest` as requests wherever they state none; then every
//! container must lie within `min` and `max` and below
//! `maxLimitRequestRatio`. Items of type `Pod` bound the pod's containers
//! summed, and items of type `PersistentVolumeClaim` a claim's storage.
//! A pod or claim outside the bounds is refused with 403 Forbidden naming
//! each broken bound, in kube-apiserver's words.
//!
//! A LimitRange item's own defaults follow upstream: a `max` without a
//! `default` is the default limit, and a `default` (or else a `min`)
//! without a `defaultRequest` is the default request ([`item_defaults`],
//! applied when a LimitRange is stored).

use serde_json::{json, Map, Value};

use crate::rest::App;
use crate::status::ApiError;

type Result<T> = std::result::Result<T, ApiError>;

/// Fills a LimitRange item's unstated defaults (SetDefaults_LimitRangeItem).
pub fn item_defaults(item: &mut Value) {
    if item["type"] != "Container" {
        return;
    }
    for key in ["default", "defaultRequest"] {
        if !item[key].is_object() {
            item[key] = json!({});
        }
    }
    let fill = |item: &mut Value, from: &str, to: &str| {
        let source: Map<String, Value> = item[from].as_object().cloned().unwrap_or_default();
        for (resource, q) in source {
            if item[to].get(&resource).is_none() {
                item[to][resource] = q;
            }
        }
    };
    fill(item, "max", "default");
    fill(item, "default", "defaultRequest");
    fill(item, "min", "defaultRequest");
}

/// The LimitRange items of `namespace`, each with its defaults filled.
async fn items(app: &App, namespace: &str) -> Result<Vec<Value>> {
    let ranges = crate::verbs::list_namespace(app, "limitranges", namespace).await?;
    let mut items = Vec::new();
    for range in ranges {
        for item in range["spec"]["limits"].as_array().into_iter().flatten() {
            let mut item = item.clone();
            item_defaults(&mut item);
            items.push(item);
        }
    }
    Ok(items)
}

fn milli(q: &Value) -> Option<i64> {
    q.as_str().and_then(api::quota::milli)
}

fn text(q: &Value) -> String {
    q.as_str().unwrap_or_default().to_string()
}

/// Sets missing requests and limits from a Container item.
fn default_container(container: &mut Value, item: &Value) {
    for (kind, source) in [("limits", "default"), ("requests", "defaultRequest")] {
        for (resource, q) in item[source].as_object().into_iter().flatten() {
            if !container["resources"].is_object() {
                container["resources"] = json!({});
            }
            let slot = &mut container["resources"][kind];
            if !slot.is_object() {
                *slot = json!({});
            }
            if slot.get(resource).is_none_or(Value::is_null) {
                slot[resource] = q.clone();
            }
        }
    }
}

/// The bounds of one item broken by `requests`/`limits` (a container's,
/// or a pod's summed), in kube-apiserver's words.
fn check(item: &Value, what: &str, requests: &Value, limits: &Value, broken: &mut Vec<String>) {
    for (resource, min) in item["min"].as_object().into_iter().flatten() {
        match milli(&requests[resource]) {
            None => broken.push(format!(
                "minimum {resource} usage per {what} is {}.  No request is specified",
                text(min)
            )),
            Some(r) if milli(min).is_some_and(|m| r < m) => broken.push(format!(
                "minimum {resource} usage per {what} is {}, but request is {}",
                text(min),
                text(&requests[resource])
            )),
            _ => {}
        }
    }
    for (resource, max) in item["max"].as_object().into_iter().flatten() {
        match milli(&limits[resource]) {
            None => broken.push(format!(
                "maximum {resource} usage per {what} is {}.  No limit is specified",
                text(max)
            )),
            Some(l) if milli(max).is_some_and(|m| l > m) => broken.push(format!(
                "maximum {resource} usage per {what} is {}, but limit is {}",
                text(max),
                text(&limits[resource])
            )),
            _ => {}
        }
    }
    for (resource, ratio) in item["maxLimitRequestRatio"].as_object().into_iter().flatten() {
        let (Some(limit), Some(max_ratio)) = (milli(&limits[resource]), milli(ratio)) else {
            continue;
        };
        match milli(&requests[resource]).filter(|r| *r > 0) {
            None => broken.push(format!(
                "{resource} max limit to request ratio per {what} is {}, but no request is specified or request is 0",
                text(ratio)
            )),
            Some(request) => {
                let actual = limit as f64 / request as f64;
                if actual * 1000.0 > max_ratio as f64 {
                    broken.push(format!(
                        "{resource} max limit to request ratio per {what} is {}, but provided ratio is {actual:.6}",
                        text(ratio)
                    ));
                }
            }
        }
    }
}

/// A pod's effective requests or limits (containers summed, at least its
/// largest init container, plus overhead) as quantities (`1500m`).
fn pod_total(pod: &Value, kind: &str) -> Value {
    let total: Map<String, Value> = api::quota::pod_resources(pod, kind)
        .into_iter()
        .map(|(resource, milli)| (resource, json!(format!("{milli}m"))))
        .collect();
    Value::Object(total)
}

/// Defaults and checks a new pod (`plural` "pods") or claim against the
/// LimitRanges of its namespace.
pub async fn admit(app: &App, plural: &str, namespace: &str, name: &str, object: &mut Value) -> Result<()> {
    if !matches!(plural, "pods" | "persistentvolumeclaims") {
        return Ok(());
    }
    let items = items(app, namespace).await?;
    if items.is_empty() {
        return Ok(());
    }
    let mut broken = Vec::new();
    for item in &items {
        match (plural, item["type"].as_str()) {
            ("pods", Some("Container")) => {
                for list in ["initContainers", "containers"] {
                    for c in object["spec"][list].as_array_mut().into_iter().flatten() {
                        default_container(c, item);
                        let resources = &c["resources"];
                        check(
                            item,
                            "Container",
                            &resources["requests"],
                            &resources["limits"],
                            &mut broken,
                        );
                    }
                }
            }
            ("pods", Some("Pod")) => {
                let (requests, limits) = (pod_total(object, "requests"), pod_total(object, "limits"));
                check(item, "Pod", &requests, &limits, &mut broken);
            }
            ("persistentvolumeclaims", Some("PersistentVolumeClaim")) => {
                let resources = &object["spec"]["resources"];
                let requests = &resources["requests"];
                // A claim's limit, if it has none, is its request.
                let limits = if resources["limits"].is_object() {
                    &resources["limits"]
                } else {
                    requests
                };
                check(item, "PersistentVolumeClaim", requests, limits, &mut broken);
            }
            _ => {}
        }
    }
    if plural == "pods" {
        let qos = crate::defaults::qos_class(&object["spec"]);
        object["status"]["qosClass"] = json!(qos);
    }
    if broken.is_empty() {
        return Ok(());
    }
    Err(ApiError::forbidden_because(format!(
        "{plural} \"{name}\" is forbidden: [{}]",
        broken.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_default_like_kubernetes() {
        let mut item = json!({"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "10Mi"}});
        item_defaults(&mut item);
        assert_eq!(item["default"], json!({"cpu": "2"}));
        assert_eq!(item["defaultRequest"], json!({"cpu": "2", "memory": "10Mi"}));
    }

    #[test]
    fn containers_get_defaults_and_bounds_are_named() {
        let item = json!({"type": "Container", "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "100m"},
                          "max": {"memory": "1Gi"}, "maxLimitRequestRatio": {"cpu": "2"}});
        let mut c = json!({"name": "a", "resources": {"limits": {"memory": "2Gi"}}});
        default_container(&mut c, &item);
        assert_eq!(c["resources"]["requests"]["cpu"], "100m");
        assert_eq!(c["resources"]["limits"]["cpu"], "500m");
        let mut broken = Vec::new();
        check(
            &item,
            "Container",
            &c["resources"]["requests"],
            &c["resources"]["limits"],
            &mut broken,
        );
        assert_eq!(
            broken,
            [
                "maximum memory usage per Container is 1Gi, but limit is 2Gi",
                "cpu max limit to request ratio per Container is 2, but provided ratio is 5.000000",
            ]
        );
    }
}
