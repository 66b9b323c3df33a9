//! The scale subresource (`deployments/web/scale`): a workload's replica
//! count as an `autoscaling/v1` Scale, which is what `kubectl scale` and
//! the HorizontalPodAutoscaler read and write without knowing the
//! workload's kind. Writing a Scale writes the parent's `spec.replicas`
//! through the parent's own update rules.

use serde_json::{json, Value};

use crate::request_info::RequestInfo;
use crate::rest::App;
use crate::status::ApiError;
use crate::verbs::{self, WriteOptions};

type Result<T> = std::result::Result<T, ApiError>;

fn parent(info: &RequestInfo) -> RequestInfo {
    RequestInfo {
        subresource: None,
        ..info.clone()
    }
}

/// A label selector as the Scale's `status.selector` string.
fn selector_string(parent: &Value) -> String {
    let selector = &parent["spec"]["selector"];
    // ReplicationControllers select with a plain map.
    let (labels, expressions) = if selector["matchLabels"].is_object() || selector["matchExpressions"].is_array() {
        (&selector["matchLabels"], &selector["matchExpressions"])
    } else {
        (selector, &Value::Null)
    };
    let mut parts: Vec<String> = labels
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    for e in expressions.as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            _ => format!("!{key}"),
        });
    }
    parts.join(",")
}

/// The Scale view of a workload.
/// Where a workload keeps what a Scale shows: the built-in ones at
/// `.spec.replicas`, `.status.replicas` and their selector; a custom
/// resource where its CRD's `subresources.scale` says.
struct Paths {
    spec: String,
    status: String,
    /// A custom resource's selector, already a string.
    selector: Option<String>,
}

fn paths(info: &RequestInfo) -> Paths {
    let r = info.resource;
    match crate::crd::find(r.group, r.version, r.plural).and_then(|s| s.scale) {
        Some(scale) => Paths {
            spec: scale["specReplicasPath"]
                .as_str()
                .unwrap_or(".spec.replicas")
                .to_string(),
            status: scale["statusReplicasPath"]
                .as_str()
                .unwrap_or(".status.replicas")
                .to_string(),
            selector: Some(scale["labelSelectorPath"].as_str().unwrap_or_default().to_string()),
        },
        None => Paths {
            spec: ".spec.replicas".into(),
            status: ".status.replicas".into(),
            selector: None,
        },
    }
}

fn scale_of(workload: &Value, paths: &Paths) -> Value {
    let mut scale = to_scale(workload);
    if paths.selector.is_none() {
        return scale; // a built-in workload
    }
    scale["spec"]["replicas"] = json!(crate::json_path::get(workload, &paths.spec).as_i64().unwrap_or(0));
    scale["status"]["replicas"] = json!(crate::json_path::get(workload, &paths.status).as_i64().unwrap_or(0));
    if let Some(path) = &paths.selector {
        let selector = if path.is_empty() {
            ""
        } else {
            crate::json_path::get(workload, path).as_str().unwrap_or_default()
        };
        scale["status"]["selector"] = json!(selector);
    }
    scale
}

pub fn to_scale(workload: &Value) -> Value {
    let meta = &workload["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": workload["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {
            "replicas": workload["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector_string(workload),
        },
    })
}

pub async fn get(app: &App, info: &RequestInfo) -> Result<Value> {
    Ok(scale_of(&verbs::read(app, &parent(info)).await?.0, &paths(info)))
}

pub async fn update(app: &App, info: &RequestInfo, scale: Value, opts: &WriteOptions) -> Result<Value> {
    let owner = parent(info);
    let (mut workload, revision) = verbs::read(app, &owner).await?;
    if let Some(rv) = scale["metadata"]["resourceVersion"]
        .as_str()
        .filter(|rv| !rv.is_empty())
    {
        if rv != revision.to_string() {
            return Err(ApiError::conflict(
                info.resource.plural,
                info.resource.group,
                info.name.as_deref().unwrap_or_default(),
            ));
        }
    }
    let replicas = scale["spec"]["replicas"].as_i64().filter(|r| *r >= 0).ok_or_else(|| {
        ApiError::invalid(
            "Scale",
            info.name.as_deref().unwrap_or_default(),
            "spec.replicas",
            &format!(
                "Invalid value: {}: must be greater than or equal to 0",
                scale["spec"]["replicas"]
            ),
        )
    })?;
    let existing = workload.clone();
    let paths = paths(info);
    if !crate::json_path::set(&mut workload, &paths.spec, json!(replicas)) {
        return Err(ApiError::internal(format!(
            "cannot write the replicas at {}",
            paths.spec
        )));
    }
    let written = verbs::write_update(app, &owner, &existing, revision, workload, opts).await?;
    Ok(scale_of(&written, &paths))
}

pub async fn patch(
    app: &App,
    info: &RequestInfo,
    content_type: &str,
    body: &[u8],
    opts: &WriteOptions,
) -> Result<Value> {
    let current = scale_of(&verbs::read(app, &parent(info)).await?.0, &paths(info));
    let patched = verbs::apply_patch(
        info,
        &current,
        content_type,
        body,
        Some("io.k8s.api.autoscaling.v1.Scale"),
    )?;
    update(app, info, patched, opts).await
}
