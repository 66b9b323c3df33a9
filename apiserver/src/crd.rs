//! CustomResourceDefinitions: resources defined while the server runs.
//!
//! Creating a CRD makes its group, versions and plural servable at once:
//! discovery lists them, requests route to them, objects are stored under
//! `/registry/<group>/<plural>/`, and writes are checked against the
//! version's structural schema ([`structural`](crate::structural)). The
//! served resources are kept in a table next to the built-in one, filled
//! at start from the stored CRDs, updated on every CRD write, and kept in
//! step with other API servers by a watch on the CRDs. A CRD is
//! `Established` as soon as it is stored; deleting it deletes its objects.

use std::sync::{LazyLock, RwLock};

use api::resources::{ResourceInfo, Subresource, Verb};
use serde_json::{json, Value};

use crate::storage::Storage;

/// One served version of a custom resource.
#[derive(Debug, Clone)]
pub struct Served {
    /// The CRD's name (`<plural>.<group>`).
    pub crd: String,
    pub info: &'static ResourceInfo,
    /// The version's `openAPIV3Schema` (shared: requests clone `Served`).
    pub schema: std::sync::Arc<Value>,
    /// The version's `additionalPrinterColumns` (an array, maybe empty).
    pub columns: std::sync::Arc<Value>,
    /// The version's `subresources.scale`, if it has one.
    pub scale: Option<std::sync::Arc<Value>>,
}

static SERVED: LazyLock<RwLock<Vec<Served>>> = LazyLock::new(|| RwLock::new(Vec::new()));

const VERBS: &[Verb] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const STATUS_VERBS: &[Verb] = &["get", "patch", "update"];

fn leak(text: &str) -> &'static str {
    Box::leak(text.to_string().into_boxed_str())
}

/// The resources a CRD defines (one per served version). Strings are
/// leaked: a CRD's resource must outlive every request that holds it, and
/// CRDs change rarely.
fn resources_of(crd: &Value) -> Vec<Served> {
    let spec = &crd["spec"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let (group, plural, kind) = (
        text(&spec["group"]),
        text(&spec["names"]["plural"]),
        text(&spec["names"]["kind"]),
    );
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return Vec::new();
    }
    let singular = match text(&spec["names"]["singular"]) {
        s if s.is_empty() => kind.to_lowercase(),
        s => s,
    };
    let list = |v: &Value| -> &'static [&'static str] {
        let items: Vec<&'static str> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(leak)
            .collect();
        Box::leak(items.into_boxed_slice())
    };
    let name = crd["metadata"]["name"].as_str().unwrap_or_default().to_string();
    spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"].as_bool().unwrap_or(true))
        .map(|v| {
            let version = leak(v["name"].as_str().unwrap_or_default());
            let (group, kind) = (leak(&group), leak(&kind));
            let mut subresources: Vec<Subresource> = Vec::new();
            if v["subresources"]["status"].is_object() {
                subresources.push(Subresource {
                    name: "status",
                    group,
                    version,
                    kind,
                    verbs: STATUS_VERBS,
                });
            }
            if v["subresources"]["scale"].is_object() {
                subresources.push(Subresource {
                    name: "scale",
                    group: "autoscaling",
                    version: "v1",
                    kind: "Scale",
                    verbs: STATUS_VERBS,
                });
            }
            let info = ResourceInfo {
                group,
                version,
                kind,
                plural: leak(&plural),
                singular: leak(&singular),
                short_names: list(&spec["names"]["shortNames"]),
                namespaced: spec["scope"].as_str() != Some("Cluster"),
                verbs: VERBS,
                subresources: Box::leak(subresources.into_boxed_slice()),
                categories: list(&spec["names"]["categories"]),
            };
            Served {
                crd: name.clone(),
                info: Box::leak(Box::new(info)),
                schema: std::sync::Arc::new(v["schema"]["openAPIV3Schema"].clone()),
                columns: std::sync::Arc::new(v["additionalPrinterColumns"].clone()),
                scale: v["subresources"]["scale"]
                    .is_object()
                    .then(|| std::sync::Arc::new(v["subresources"]["scale"].clone())),
            }
        })
        .collect()
}

fn table() -> std::sync::RwLockWriteGuard<'static, Vec<Served>> {
    SERVED.write().unwrap_or_else(|p| p.into_inner())
}

fn read() -> std::sync::RwLockReadGuard<'static, Vec<Served>> {
    SERVED.read().unwrap_or_else(|p| p.into_inner())
}

/// Serves (or re-serves) what a stored CRD defines.
pub fn register(crd: &Value) {
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    let fresh = resources_of(crd);
    let mut served = table();
    served.retain(|s| s.crd != name);
    served.extend(fresh);
}

/// Stops serving a deleted CRD's resources.
pub fn unregister(name: &str) {
    table().retain(|s| s.crd != name);
}

/// A custom resource by group, version and plural.
pub fn find(group: &str, version: &str, plural: &str) -> Option<Served> {
    read()
        .iter()
        .find(|s| s.info.group == group && s.info.version == version && s.info.plural == plural)
        .cloned()
}

/// A built-in or custom resource.
pub fn resource(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    api::resources::find(group, version, plural).or_else(|| find(group, version, plural).map(|s| s.info))
}

/// Every served custom resource.
pub fn all() -> Vec<&'static ResourceInfo> {
    read().iter().map(|s| s.info).collect()
}

/// The status a CRD gets when it is stored: its names accepted, itself
/// established, its storage version recorded.
pub fn accepted_status(crd: &mut Value) {
    let now = crate::registry::now();
    let condition = |kind: &str, reason: &str, message: &str| json!({"type": kind, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message});
    let storage: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"].as_bool().unwrap_or(false))
        .map(|v| v["name"].clone())
        .collect();
    crd["status"] = json!({
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "acceptedNames": crd["spec"]["names"],
        "storedVersions": storage,
    });
}

/// Serves exactly these stored CRDs (by key).
fn reset(items: &[(String, Vec<u8>)]) {
    let mut names = Vec::new();
    for (_, value) in items {
        if let Ok(crd) = serde_json::from_slice::<Value>(value) {
            register(&crd);
            names.push(crd["metadata"]["name"].as_str().unwrap_or_default().to_string());
        }
    }
    // CRDs deleted while nobody watched are served no more.
    table().retain(|s| names.contains(&s.crd));
}

/// Serves every stored CRD.
pub async fn load(storage: &Storage) {
    if let Some((items, _)) = crate::watch_prefix::list(storage, PREFIX).await {
        reset(&items);
    }
}

/// Where CRDs are stored.
const PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";

/// Loads every stored CRD, then follows changes (another API server may
/// write them) until `stop`.
pub async fn follow(storage: Storage, stop: tokio_util::sync::CancellationToken) {
    use crate::watch_prefix::Update;
    crate::watch_prefix::follow(storage, PREFIX, stop, |update| match update {
        Update::Reset(items) => reset(&items),
        Update::Put(_, value) => {
            if let Ok(crd) = serde_json::from_slice::<Value>(&value) {
                register(&crd);
            }
        }
        Update::Delete(key) => {
            if let Some(name) = key.strip_prefix(PREFIX) {
                unregister(name);
            }
        }
    })
    .await
}
