//! The pods/binding subresource: how a scheduler assigns a pod to a node.
//!
//! A Binding names the node; the API server sets the pod's `spec.nodeName`
//! (otherwise immutable) exactly once and marks the pod `PodScheduled`. A
//! second binding of a bound pod is a 409 Conflict, which is how two
//! schedulers racing for one pod learn that the other one won.

use serde_json::{json, Value};

use crate::request_info::RequestInfo;
use crate::rest::App;
use crate::status::ApiError;
use crate::storage::StorageError;
use crate::verbs::{self, storage_error};

/// How many times a binding retries when the pod changed underneath it.
const ATTEMPTS: usize = 5;

/// The `metav1.Status` a successful subresource POST answers with.
pub fn success(code: u16) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code})
}

pub async fn bind(app: &App, info: &RequestInfo, binding: Value) -> Result<Value, ApiError> {
    let pod_name = info.name.clone().unwrap_or_default();
    let node = binding["target"]["name"].as_str().unwrap_or_default();
    if node.is_empty() {
        return Err(ApiError::invalid("Binding", &pod_name, "target.name", "Required value"));
    }
    let pod_info = pod_of(info, &binding, "binding")?;
    for _ in 0..ATTEMPTS {
        let (mut pod, revision) = verbs::read(app, &pod_info).await?;
        if let Some(current) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            return Err(ApiError::conflict_because(
                "pods",
                "",
                &pod_name,
                &format!("pod {pod_name} is already assigned to node \"{current}\""),
            ));
        }
        if pod["metadata"].get("deletionTimestamp").is_some() {
            return Err(ApiError::conflict_because(
                "pods",
                "",
                &pod_name,
                &format!("pod {pod_name} is being deleted, cannot be assigned to a host"),
            ));
        }
        pod["spec"]["nodeName"] = json!(node);
        set_scheduled(&mut pod);
        match verbs::write(app, &pod_info, pod, revision).await {
            Ok(_) => return Ok(success(201)),
            Err(StorageError::Conflict) => continue,
            Err(e) => return Err(storage_error(&pod_info, &pod_name, e)),
        }
    }
    Err(ApiError::conflict("pods", "", &pod_name))
}

/// The pod a pods/binding or pods/eviction request is about; the body, if
/// it names a pod, must name the one in the URL.
pub fn pod_of(info: &RequestInfo, body: &Value, what: &str) -> Result<RequestInfo, ApiError> {
    let pod_name = info.name.as_deref().unwrap_or_default();
    if let Some(name) = body["metadata"]["name"].as_str() {
        if name != pod_name {
            return Err(ApiError::bad_request(format!(
                "the {what} names pod {name:?}, but the URL names pod {pod_name:?}"
            )));
        }
    }
    Ok(RequestInfo {
        subresource: None,
        ..info.clone()
    })
}

/// Adds (or replaces) the `PodScheduled=True` condition.
fn set_scheduled(pod: &mut Value) {
    let condition = json!({
        "type": "PodScheduled",
        "status": "True",
        "lastProbeTime": null,
        "lastTransitionTime": crate::registry::now(),
    });
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    let conditions = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let mut kept: Vec<Value> = conditions.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
    kept.push(condition);
    pod["status"]["conditions"] = Value::Array(kept);
    if pod["status"]["phase"].is_null() {
        pod["status"]["phase"] = json!("Pending");
    }
}
