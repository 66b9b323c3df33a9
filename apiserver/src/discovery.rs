//! Discovery: how clients learn what this server serves.
//!
//! kubectl reads `/api` and `/apis` for the groups and versions, then each
//! group-version's resource list for kinds, plurals, short names, verbs
//! and categories. Everything here comes from `api::resources`, the same
//! table the router and storage use, so what is advertised is what works.
//!
//! Aggregated discovery (`apidiscovery.k8s.io/v2`, [`aggregated`]) is the
//! same table in one document: `/api` or `/apis` answer with every
//! group, version and resource when the client's `Accept` asks for an
//! `APIGroupDiscoveryList`, which saves kubectl one request per
//! group-version (over twenty here) on every cold start.

use api::resources::{self, ResourceInfo};
use serde_json::{json, Value};

/// The Kubernetes version this server speaks (k8s-openapi's pin).
pub const KUBE_MINOR: &str = "35";

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": format!("v1.{KUBE_MINOR}.0-kubernate.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

/// `/api`: the core group's versions.
pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [],
    })
}

/// Every group/version served, built-in then custom.
fn group_versions() -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = resources::group_versions()
        .into_iter()
        .map(|(g, v)| (g.to_string(), v.to_string()))
        .collect();
    for info in crate::crd::all() {
        let pair = (info.group.to_string(), info.version.to_string());
        if !pairs.contains(&pair) {
            pairs.push(pair);
        }
    }
    pairs
}

/// `/apis/<group>`: one group's versions (an `APIGroup`); `None` if not served.
pub fn group(name: &str) -> Option<Value> {
    let list = groups();
    let found = list["groups"].as_array()?.iter().find(|g| g["name"] == name)?.clone();
    let mut group = found;
    group["kind"] = json!("APIGroup");
    group["apiVersion"] = json!("v1");
    Some(group)
}

/// `/apis`: every named group, preferred version first.
pub fn groups() -> Value {
    let all = group_versions();
    let mut names: Vec<&str> = Vec::new();
    for (group, _) in &all {
        if !group.is_empty() && !names.contains(&group.as_str()) {
            names.push(group);
        }
    }
    let groups: Vec<Value> = names
        .iter()
        .map(|group| {
            let versions: Vec<Value> = all
                .iter()
                .filter(|(g, _)| g == group)
                .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({
                "name": group,
                "versions": versions,
                "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_entry(r: &ResourceInfo) -> Value {
    let mut entry = json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        entry["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        entry["categories"] = json!(r.categories);
    }
    entry
}

/// The built-in and custom resources of one group/version.
fn served(group: &str, version: &str) -> Vec<&'static ResourceInfo> {
    let mut served: Vec<&ResourceInfo> = resources::resources_in(group, version);
    served.extend(
        crate::crd::all()
            .into_iter()
            .filter(|info| info.group == group && info.version == version),
    );
    served
}

/// `/api/v1` or `/apis/<group>/<version>`; `None` if not served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let served = served(group, version);
    if served.is_empty() {
        return None;
    }
    let mut list = Vec::new();
    for r in served {
        list.push(resource_entry(r));
        for sub in r.subresources {
            let mut entry = json!({
                "name": format!("{}/{}", r.plural, sub.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": sub.kind,
                "verbs": sub.verbs,
            });
            if (sub.group, sub.version) != (r.group, r.version) {
                entry["group"] = json!(sub.group);
                entry["version"] = json!(sub.version);
            }
            list.push(entry);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": list,
    }))
}

/// The `Accept` media types that ask for aggregated discovery, and the
/// `apiVersion` each is answered with.
const AGGREGATED_FORMATS: [(&str, &str); 2] = [
    ("v2", "apidiscovery.k8s.io/v2"),
    ("v2beta1", "apidiscovery.k8s.io/v2beta1"),
];

/// Which aggregated format, if any, an `Accept` header prefers: the first
/// JSON media range that names `g=apidiscovery.k8s.io;as=APIGroupDiscoveryList`
/// with a version we serve, unless a plain JSON range comes before it
/// (client-go lists its choices in order of preference).
pub fn aggregated_format(accept: &str) -> Option<&'static str> {
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let params: Vec<(String, String)> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let json = media == "application/json";
        match (param("g"), param("as")) {
            (Some("apidiscovery.k8s.io"), Some("APIGroupDiscoveryList")) if json => {
                let version = param("v").unwrap_or("");
                if let Some((v, _)) = AGGREGATED_FORMATS.iter().find(|(v, _)| *v == version) {
                    return Some(v);
                }
            }
            (None, None) if json || media == "*/*" || media == "application/*" => return None,
            _ => {}
        }
    }
    None
}

/// The `Content-Type` of an aggregated document of `format` ("v2").
pub fn aggregated_content_type(format: &str) -> String {
    format!("application/json;g=apidiscovery.k8s.io;v={format};as=APIGroupDiscoveryList")
}

fn response_kind(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

/// One resource of an `APIVersionDiscovery`, its subresources nested.
fn aggregated_resource(r: &ResourceInfo) -> Value {
    let subresources: Vec<Value> = r
        .subresources
        .iter()
        .map(|sub| {
            json!({
                "subresource": sub.name,
                "responseKind": response_kind(sub.group, sub.version, sub.kind),
                "verbs": sub.verbs,
            })
        })
        .collect();
    let mut entry = json!({
        "resource": r.plural,
        "responseKind": response_kind(r.group, r.version, r.kind),
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        entry["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        entry["categories"] = json!(r.categories);
    }
    if !subresources.is_empty() {
        entry["subresources"] = json!(subresources);
    }
    entry
}

/// `/api` (`core`) or `/apis` as an `APIGroupDiscoveryList` of `format`:
/// each group with its versions, preferred first, each version with all
/// its resources.
pub fn aggregated(core: bool, format: &str) -> Value {
    let api_version = AGGREGATED_FORMATS
        .iter()
        .find(|(v, _)| *v == format)
        .map_or("apidiscovery.k8s.io/v2", |(_, a)| a);
    let all = group_versions();
    let mut names: Vec<&str> = Vec::new();
    for (group, _) in &all {
        if group.is_empty() == core && !names.contains(&group.as_str()) {
            names.push(group);
        }
    }
    let items: Vec<Value> = names
        .iter()
        .map(|group| {
            let versions: Vec<Value> = all
                .iter()
                .filter(|(g, _)| g == group)
                .map(|(g, v)| {
                    let resources: Vec<Value> = served(g, v).into_iter().map(aggregated_resource).collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let mut metadata = json!({"creationTimestamp": null});
            if !group.is_empty() {
                metadata["name"] = json!(group);
            }
            json!({"metadata": metadata, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": api_version,
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_come_from_the_resource_table() {
        let apps = resource_list("apps", "v1").unwrap();
        let names: Vec<&str> = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"deployments") && names.contains(&"deployments/scale"));
        let scale = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(scale["group"], "autoscaling");
        assert!(resource_list("apps", "v9").is_none());
        let groups = groups();
        let first = &groups["groups"][0];
        assert_eq!(first["name"], "apps");
        let autoscaling = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "autoscaling")
            .unwrap();
        assert_eq!(autoscaling["preferredVersion"]["version"], "v2");
        let apps = group("apps").unwrap();
        assert_eq!(
            (apps["kind"].as_str(), apps["preferredVersion"]["groupVersion"].as_str()),
            (Some("APIGroup"), Some("apps/v1"))
        );
        assert!(group("nope.example.com").is_none());
    }

    #[test]
    fn accept_header_chooses_the_aggregated_form() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_format(kubectl), Some("v2"));
        let beta = "application/json; g=apidiscovery.k8s.io; v=v2beta1; as=APIGroupDiscoveryList";
        assert_eq!(aggregated_format(beta), Some("v2beta1"));
        // Protobuf is not offered; the next choice is taken.
        let proto =
            "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_format(proto), None);
        assert_eq!(aggregated_format("application/json"), None);
        assert_eq!(aggregated_format("*/*"), None);
        let unknown = "application/json;g=apidiscovery.k8s.io;v=v9;as=APIGroupDiscoveryList";
        assert_eq!(aggregated_format(unknown), None);
        assert_eq!(
            aggregated_content_type("v2"),
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        );
    }

    #[test]
    fn aggregated_documents_hold_every_resource_with_its_subresources() {
        let core = aggregated(true, "v2");
        assert_eq!(core["apiVersion"], "apidiscovery.k8s.io/v2");
        let items = core["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert!(items[0]["metadata"].get("name").is_none());
        let pods = items[0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap();
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["responseKind"]["kind"], "Pod");
        assert_eq!(pods["shortNames"][0], "po");
        let eviction = pods["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subresource"] == "eviction")
            .unwrap();
        assert_eq!(eviction["responseKind"]["group"], "policy");

        let named = aggregated(false, "v2beta1");
        assert_eq!(named["apiVersion"], "apidiscovery.k8s.io/v2beta1");
        let groups: Vec<&str> = named["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(groups, groups_names(&super::groups()));
        let autoscaling = named["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["metadata"]["name"] == "autoscaling")
            .unwrap();
        assert_eq!(autoscaling["versions"][0]["version"], "v2");
        assert_eq!(autoscaling["versions"][1]["version"], "v1");
    }

    fn groups_names(list: &Value) -> Vec<&str> {
        list["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect()
    }
}
