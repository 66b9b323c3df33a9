//! Discovery: how clients learn what this server serves.
//!
//! kubectl reads `/api` and `/apis` for the groups and versions, then each
//! group-version's resource list for kinds, plurals, short names, verbs
//! and categories. Everything here comes from `api::resources`, the same
//! table the router and storage use, so what is advertised is what works.
//! (The aggregated form, `apidiscovery.k8s.io/v2`, is not served yet;
//! kubectl falls back to these documents.)

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

/// `/api/v1` or `/apis/<group>/<version>`; `None` if not served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut served: Vec<&ResourceInfo> = resources::resources_in(group, version);
    served.extend(
        crate::crd::all()
            .into_iter()
            .filter(|info| info.group == group && info.version == version),
    );
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
    }
}
