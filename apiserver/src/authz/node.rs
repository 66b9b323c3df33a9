//! The Node authorizer: what a kubelet may do, decided by its relation to
//! the object, as upstream's Node authorizer and NodeRestriction admission
//! do together. A kubelet is `system:node:<name>` in group `system:nodes`.
//!
//! - its own Node (create, update, patch, delete, status) and Lease in
//!   `kube-node-lease`; every Node readable;
//! - pods bound to it: get, delete, status; list and watch only with the
//!   field selector `spec.nodeName=<name>`;
//! - the secrets, configmaps, persistentvolumeclaims and ServiceAccounts
//!   (and their tokens) that pods bound to it use, and nothing else of
//!   those kinds;
//! - events, reviews (TokenReview, SubjectAccessReview), certificate
//!   signing requests, and reads of services, endpoints and
//!   endpointslices, runtime classes and storage objects.
//!
//! Anything else gets no opinion here (and RBAC has none for nodes).

use serde_json::Value;

use super::{Attributes, Decision};
use crate::rest::App;

const READ: [&str; 3] = ["get", "list", "watch"];

/// The node's name, when the user is a kubelet.
pub fn node_name(user: &crate::authn::User) -> Option<&str> {
    let name = user.name.strip_prefix("system:node:")?;
    (user.groups.iter().any(|g| g == "system:nodes") && !name.is_empty()).then_some(name)
}

/// The pods of `namespace` bound to `node`.
async fn pods_on(app: &App, namespace: &str, node: &str) -> Vec<Value> {
    let prefix = format!("/registry/pods/{namespace}/");
    let Ok((items, _)) = app.storage.list(prefix.as_bytes(), 0).await else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|i| serde_json::from_slice::<Value>(&i.value).ok())
        .filter(|p| p["spec"]["nodeName"] == node)
        .collect()
}

/// Whether the pod uses an object of this kind and name.
pub fn uses(pod: &Value, kind: &str, name: &str) -> bool {
    let spec = &pod["spec"];
    let is = |v: &Value| v.as_str() == Some(name);
    let containers = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().cloned().unwrap_or_default());
    let volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
    match kind {
        "secrets" => {
            spec["imagePullSecrets"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| is(&s["name"]))
                || volumes.iter().any(|v| {
                    is(&v["secret"]["secretName"])
                        || v["projected"]["sources"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|s| is(&s["secret"]["name"]))
                })
                || containers.into_iter().any(|c| {
                    c["envFrom"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|e| is(&e["secretRef"]["name"]))
                        || c["env"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|e| is(&e["valueFrom"]["secretKeyRef"]["name"]))
                })
        }
        "configmaps" => {
            volumes.iter().any(|v| {
                is(&v["configMap"]["name"])
                    || v["projected"]["sources"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|s| is(&s["configMap"]["name"]))
            }) || containers.into_iter().any(|c| {
                c["envFrom"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|e| is(&e["configMapRef"]["name"]))
                    || c["env"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|e| is(&e["valueFrom"]["configMapKeyRef"]["name"]))
            })
        }
        "persistentvolumeclaims" => volumes.iter().any(|v| is(&v["persistentVolumeClaim"]["claimName"])),
        "serviceaccounts" => {
            let sa = spec["serviceAccountName"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or("default");
            sa == name
        }
        _ => false,
    }
}

/// The value a field selector pins `field` to, parsed exactly as the list
/// will parse it (so `!=` tricks cannot pass for an equality).
fn pinned(selector: Option<&str>, field: &str) -> Option<String> {
    let parsed = crate::selector::Selector::parse(selector?).ok()?;
    parsed.pinned(field).map(str::to_string)
}

fn selects(selector: Option<&str>, field: &str, value: &str) -> bool {
    pinned(selector, field).as_deref() == Some(value)
}

fn no_relationship(node: &str) -> Decision {
    Decision::Deny(format!("no relationship found between node '{node}' and this object"))
}

/// The NodeRestriction admission step, on the object a kubelet writes
/// (the authorizer cannot see bodies): a Node or Lease only under its own
/// name, no `node-restriction.kubernetes.io/` labels set or changed, and
/// only mirror pods bound to itself.
pub fn admit(
    user: Option<&crate::authn::User>,
    info: &crate::request_info::RequestInfo,
    object: &Value,
    old: Option<&Value>,
) -> Result<(), crate::status::ApiError> {
    let Some(node) = user.and_then(node_name) else {
        return Ok(());
    };
    let refuse = |why: String| {
        Err(crate::status::ApiError::forbidden_because(format!(
            "node '{node}' {why}"
        )))
    };
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    match (info.resource.group, info.resource.plural, info.subresource.as_deref()) {
        ("", "nodes", _) => {
            if name != node {
                return refuse(format!("is not allowed to modify node '{name}'"));
            }
            let restricted = |o: Option<&Value>| -> Vec<(String, Value)> {
                o.and_then(|o| o["metadata"]["labels"].as_object())
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| {
                        k.split('/')
                            .next()
                            .is_some_and(|p| p.ends_with("node-restriction.kubernetes.io"))
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            if restricted(Some(object)) != restricted(old) {
                return refuse("is not allowed to set or change labels under node-restriction.kubernetes.io/".into());
            }
            Ok(())
        }
        ("coordination.k8s.io", "leases", None)
            if info.namespace.as_deref() == Some("kube-node-lease") && name != node =>
        {
            refuse(format!("is not allowed to modify lease '{name}'"))
        }
        ("", "pods", None) if old.is_none() => {
            let mirror = object["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string();
            if mirror && object["spec"]["nodeName"] == node {
                Ok(())
            } else {
                refuse("can only create mirror pods bound to itself".into())
            }
        }
        _ => Ok(()),
    }
}

pub async fn decide(app: &App, a: &Attributes<'_>) -> Decision {
    let Some(node) = node_name(a.user) else {
        return Decision::NoOpinion;
    };
    let allow = || Decision::Allow(format!("node '{node}'"));
    let Some(r) = a.resource else {
        return Decision::NoOpinion;
    };
    let read = READ.contains(&a.verb);
    let own = r.name == Some(node);
    let namespace = r.namespace.unwrap_or_default();
    match (r.group, r.resource, r.subresource) {
        ("", "nodes", None | Some("status")) => {
            if read
                || (own && ["create", "update", "patch", "delete"].contains(&a.verb))
                || (a.verb == "create" && r.name.is_none())
            {
                allow()
            } else {
                Decision::Deny(format!(
                    "node '{node}' cannot modify node '{}'",
                    r.name.unwrap_or_default()
                ))
            }
        }
        ("coordination.k8s.io", "leases", None) if namespace == "kube-node-lease" => {
            if own || (a.verb == "create" && r.name.is_none()) {
                allow()
            } else {
                Decision::Deny(format!("node '{node}' can only access its own lease"))
            }
        }
        ("", "pods", None) if a.verb == "create" => allow(),
        ("", "pods", None | Some("status")) => match (a.verb, r.name) {
            ("list" | "watch", None) if r.subresource.is_none() => {
                if selects(a.field_selector, "spec.nodeName", node) {
                    allow()
                } else {
                    Decision::Deny(format!(
                        "node '{node}' can only list or watch pods with the field selector spec.nodeName={node}"
                    ))
                }
            }
            ("get" | "delete" | "update" | "patch", Some(name)) => {
                let key = format!("/registry/pods/{namespace}/{name}");
                let bound = match app.storage.get(key.as_bytes()).await {
                    Ok(stored) => {
                        serde_json::from_slice::<Value>(&stored.value).is_ok_and(|p| p["spec"]["nodeName"] == node)
                    }
                    // A missing pod: let the request find that out (404).
                    Err(_) => true,
                };
                let verb_ok = r.subresource.is_some() || matches!(a.verb, "get" | "delete");
                if bound && verb_ok {
                    allow()
                } else {
                    no_relationship(node)
                }
            }
            _ => no_relationship(node),
        },
        ("", kind @ ("secrets" | "configmaps" | "persistentvolumeclaims" | "serviceaccounts"), sub) => {
            let name = match (r.name, a.verb) {
                (Some(n), _) => Some(n.to_string()),
                // The kubelet's single-object watches select by name.
                (None, "list" | "watch") => a.field_selector.and_then(|s| {
                    s.split(',')
                        .find_map(|t| t.trim().strip_prefix("metadata.name=").map(str::to_string))
                }),
                _ => None,
            };
            let verb_ok = match (kind, sub) {
                ("serviceaccounts", Some("token")) => a.verb == "create",
                (_, None) => read,
                _ => false,
            };
            let Some(name) = name.filter(|_| verb_ok) else {
                return no_relationship(node);
            };
            if pods_on(app, namespace, node).await.iter().any(|p| uses(p, kind, &name)) {
                allow()
            } else {
                no_relationship(node)
            }
        }
        ("", "events", None) | ("events.k8s.io", "events", None)
            if ["create", "update", "patch", "get", "list", "watch"].contains(&a.verb) =>
        {
            allow()
        }
        ("", "services" | "endpoints", None) | ("discovery.k8s.io", "endpointslices", None) if read => allow(),
        ("node.k8s.io", "runtimeclasses", None) | ("storage.k8s.io", _, None) if read => allow(),
        ("certificates.k8s.io", "certificatesigningrequests", None)
            if ["create", "get", "list", "watch"].contains(&a.verb) =>
        {
            allow()
        }
        ("authentication.k8s.io", "tokenreviews", None) | ("authorization.k8s.io", "subjectaccessreviews", None)
            if a.verb == "create" =>
        {
            allow()
        }
        _ => Decision::NoOpinion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_use_what_their_spec_names() {
        let pod = serde_json::json!({"spec": {
            "serviceAccountName": "robot",
            "imagePullSecrets": [{"name": "pull"}],
            "volumes": [{"name": "a", "secret": {"secretName": "vol"}},
                        {"name": "b", "projected": {"sources": [{"configMap": {"name": "proj"}}]}},
                        {"name": "c", "persistentVolumeClaim": {"claimName": "data"}}],
            "initContainers": [{"name": "i", "envFrom": [{"configMapRef": {"name": "init-env"}}]}],
            "containers": [{"name": "c", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "key", "key": "k"}}}]}]
        }});
        for (kind, name) in [
            ("secrets", "pull"),
            ("secrets", "vol"),
            ("secrets", "key"),
            ("configmaps", "proj"),
            ("configmaps", "init-env"),
            ("persistentvolumeclaims", "data"),
            ("serviceaccounts", "robot"),
        ] {
            assert!(uses(&pod, kind, name), "{kind} {name}");
        }
        assert!(!uses(&pod, "secrets", "other"));
        assert!(!uses(&pod, "serviceaccounts", "default"));
        assert!(uses(&serde_json::json!({"spec": {}}), "serviceaccounts", "default"));
        assert!(selects(Some("spec.nodeName=n1"), "spec.nodeName", "n1"));
        assert!(selects(
            Some("status.phase=Running,spec.nodeName==n1"),
            "spec.nodeName",
            "n1"
        ));
        assert!(!selects(Some("spec.nodeName=n2"), "spec.nodeName", "n1"));
        assert!(!selects(None, "spec.nodeName", "n1"));
        // A term the list reads as `!=` must not pass for `=`.
        assert!(!selects(
            Some("spec.nodeName!=(,spec.nodeName=n1,)"),
            "spec.nodeName",
            "n1"
        ));
        assert_eq!(
            pinned(Some("metadata.name!=(,metadata.name=s1,)"), "metadata.name"),
            None
        );
    }
}
