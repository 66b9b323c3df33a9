//! The Priority admission step: a pod's `priorityClassName` becomes its
//! `spec.priority` and `spec.preemptionPolicy`, which the scheduler orders
//! its queue and preempts by.
//!
//! As in Kubernetes: a named class must exist (else 403 with the reason);
//! a pod naming none gets the class marked `globalDefault`, if any, else
//! priority 0; `system-cluster-critical` and `system-node-critical` always
//! exist; a pod may not set `spec.priority` to something its class does
//! not give.

use serde_json::{json, Value};

use crate::rest::App;
use crate::status::ApiError;

/// The built-in classes: name, value.
const SYSTEM_CLASSES: &[(&str, i64)] = &[
    ("system-node-critical", 2_000_001_000),
    ("system-cluster-critical", 2_000_000_000),
];

const PREFIX: &str = "/registry/priorityclasses/";

async fn class(app: &App, name: &str) -> Result<Option<Value>, ApiError> {
    if let Some((_, value)) = SYSTEM_CLASSES.iter().find(|(n, _)| *n == name) {
        return Ok(Some(
            json!({"metadata": {"name": name}, "value": value, "preemptionPolicy": "PreemptLowerPriority"}),
        ));
    }
    let value = crate::verbs::get_for_admission(app, &format!("{PREFIX}{name}")).await?;
    Ok(value.and_then(|v| serde_json::from_slice(&v).ok()))
}

async fn global_default(app: &App) -> Result<Option<Value>, ApiError> {
    let resource = api::resources::find("scheduling.k8s.io", "v1", "priorityclasses")
        .ok_or_else(|| ApiError::internal("no priorityclasses resource"))?;
    // From the watch cache, as upstream reads its lister: no store call
    // per pod.
    let classes = crate::verbs::list_in(app, resource, "").await?;
    Ok(classes
        .into_iter()
        .filter(|c| c["globalDefault"].as_bool() == Some(true))
        .min_by_key(|c| c["value"].as_i64().unwrap_or(0)))
}

/// Resolves the pod's priority on create.
pub async fn admit(app: &App, pod: &mut Value) -> Result<(), ApiError> {
    let spec = &pod["spec"];
    let named = spec["priorityClassName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let class = match &named {
        Some(name) => Some(class(app, name).await?.ok_or_else(|| {
            ApiError::forbidden_because(format!(
                "pods \"{}\" is forbidden: no PriorityClass with name {name} was found",
                pod["metadata"]["name"].as_str().unwrap_or_default()
            ))
        })?),
        None => global_default(app).await?,
    };
    let value = class.as_ref().and_then(|c| c["value"].as_i64()).unwrap_or(0);
    if let Some(given) = spec["priority"].as_i64() {
        if given != value {
            return Err(ApiError::forbidden_because(
                "the integer value of priority must not be provided in pod spec; priority admission controller computed it from the given PriorityClass name".to_string(),
            ));
        }
    }
    let policy = class
        .as_ref()
        .and_then(|c| c["preemptionPolicy"].as_str())
        .unwrap_or("PreemptLowerPriority")
        .to_string();
    if let Some(given) = spec["preemptionPolicy"].as_str() {
        if class.is_some() && given != policy {
            return Err(ApiError::forbidden_because(format!(
                "the string value of PreemptionPolicy must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
            )));
        }
    }
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("priority".into(), json!(value));
        if let Some(c) = &class {
            spec.insert("priorityClassName".into(), c["metadata"]["name"].clone());
        }
        spec.entry("preemptionPolicy").or_insert(json!(policy));
    }
    Ok(())
}
