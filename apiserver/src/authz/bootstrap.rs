//! The bootstrap policy: the ClusterRoles and ClusterRoleBindings a
//! cluster starts with, created at start-up when absent (an edited one is
//! left as the user left it). The names and the shape of the rules are
//! upstream's; `admin`, `edit` and `view` are aggregated from the
//! `system:aggregate-to-*` roles (and from any role with the same labels,
//! such as a CRD's).
//!
//! One difference: upstream's controller manager runs each controller
//! under its own ServiceAccount; ours runs every controller as
//! `system:kube-controller-manager`, so that role may do anything.

use serde_json::{json, Value};

use super::rbac::{CLUSTER_ROLES, CLUSTER_ROLE_BINDINGS};
use crate::storage::{Storage, StorageError};

const AGGREGATE: &str = "rbac.authorization.k8s.io/aggregate-to-";
const READ: [&str; 3] = ["get", "list", "watch"];
const WRITE: [&str; 5] = ["create", "delete", "deletecollection", "patch", "update"];

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    json!({"verbs": verbs, "apiGroups": groups, "resources": resources})
}

fn paths(verbs: &[&str], urls: &[&str]) -> Value {
    json!({"verbs": verbs, "nonResourceURLs": urls})
}

fn role(name: &str, labels: Value, rules: Vec<Value>) -> Value {
    let mut labels = labels;
    labels["kubernetes.io/bootstrapping"] = json!("rbac-defaults");
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": labels,
                     "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
        "rules": rules,
    })
}

fn aggregated(name: &str, labels: Value) -> Value {
    let mut r = role(name, labels, Vec::new());
    r["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {format!("{AGGREGATE}{name}"): "true"}}]});
    r
}

fn binding(name: &str, role: &str, subjects: &[(&str, &str)]) -> Value {
    let subjects: Vec<Value> = subjects
        .iter()
        .map(|(kind, who)| json!({"kind": kind, "apiGroup": "rbac.authorization.k8s.io", "name": who}))
        .collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                     "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

/// The bootstrap ClusterRoles.
pub fn cluster_roles() -> Vec<Value> {
    let to = |names: &[&str]| {
        let mut labels = json!({});
        for n in names {
            labels[format!("{AGGREGATE}{n}")] = json!("true");
        }
        labels
    };
    let health = ["/healthz", "/livez", "/readyz", "/version", "/version/"];
    vec![
        role(
            "cluster-admin",
            json!({}),
            vec![rule(&["*"], &["*"], &["*"]), paths(&["*"], &["*"])],
        ),
        aggregated("admin", json!({})),
        aggregated("edit", to(&["admin"])),
        aggregated("view", to(&["edit"])),
        role(
            "system:aggregate-to-admin",
            to(&["admin"]),
            vec![
                rule(&READ, &["rbac.authorization.k8s.io"], &["roles", "rolebindings"]),
                rule(&WRITE, &["rbac.authorization.k8s.io"], &["roles", "rolebindings"]),
                rule(&["create"], &["authorization.k8s.io"], &["localsubjectaccessreviews"]),
            ],
        ),
        role(
            "system:aggregate-to-edit",
            to(&["admin", "edit"]),
            vec![
                rule(
                    &WRITE,
                    &[""],
                    &[
                        "pods",
                        "pods/attach",
                        "pods/exec",
                        "pods/portforward",
                        "pods/proxy",
                        "configmaps",
                        "secrets",
                        "services",
                        "endpoints",
                        "persistentvolumeclaims",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "serviceaccounts",
                    ],
                ),
                rule(&["create"], &[""], &["serviceaccounts/token", "pods/eviction"]),
                rule(&["impersonate"], &[""], &["serviceaccounts"]),
                rule(
                    &WRITE,
                    &["apps"],
                    &[
                        "daemonsets",
                        "deployments",
                        "deployments/rollback",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/scale",
                        "statefulsets",
                        "statefulsets/scale",
                    ],
                ),
                rule(&WRITE, &["batch"], &["jobs", "cronjobs"]),
                rule(&WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
                rule(&WRITE, &["policy"], &["poddisruptionbudgets"]),
                rule(&WRITE, &["networking.k8s.io"], &["ingresses", "networkpolicies"]),
                rule(&READ, &[""], &["secrets"]),
            ],
        ),
        role(
            "system:aggregate-to-view",
            to(&["admin", "edit", "view"]),
            vec![
                rule(
                    &READ,
                    &[""],
                    &[
                        "pods",
                        "pods/log",
                        "pods/status",
                        "configmaps",
                        "endpoints",
                        "persistentvolumeclaims",
                        "persistentvolumeclaims/status",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "replicationcontrollers/status",
                        "serviceaccounts",
                        "services",
                        "services/status",
                        "bindings",
                        "events",
                        "limitranges",
                        "resourcequotas",
                        "resourcequotas/status",
                        "namespaces",
                        "namespaces/status",
                    ],
                ),
                rule(&READ, &["apps"], &["*"]),
                rule(&READ, &["batch"], &["*"]),
                rule(
                    &READ,
                    &["autoscaling"],
                    &["horizontalpodautoscalers", "horizontalpodautoscalers/status"],
                ),
                rule(
                    &READ,
                    &["policy"],
                    &["poddisruptionbudgets", "poddisruptionbudgets/status"],
                ),
                rule(&READ, &["discovery.k8s.io"], &["endpointslices"]),
                rule(&READ, &["events.k8s.io"], &["events"]),
                rule(
                    &READ,
                    &["networking.k8s.io"],
                    &["ingresses", "ingresses/status", "networkpolicies"],
                ),
            ],
        ),
        role(
            "system:discovery",
            json!({}),
            vec![paths(
                &["get"],
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/readyz",
                    "/openapi",
                    "/openapi/*",
                    "/version",
                    "/version/",
                ],
            )],
        ),
        role(
            "system:basic-user",
            json!({}),
            vec![rule(
                &["create"],
                &["authorization.k8s.io", "authentication.k8s.io"],
                &[
                    "selfsubjectaccessreviews",
                    "selfsubjectrulesreviews",
                    "selfsubjectreviews",
                ],
            )],
        ),
        role("system:public-info-viewer", json!({}), vec![paths(&["get"], &health)]),
        role(
            "system:monitoring",
            json!({}),
            vec![paths(
                &["get"],
                &["/metrics", "/metrics/slis", "/healthz", "/livez", "/readyz"],
            )],
        ),
        role(
            "system:auth-delegator",
            json!({}),
            vec![
                rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                rule(&["create"], &["authorization.k8s.io"], &["subjectaccessreviews"]),
            ],
        ),
        role(
            "system:kube-scheduler",
            json!({}),
            vec![
                rule(&["create", "patch", "update"], &["", "events.k8s.io"], &["events"]),
                rule(&["create"], &[""], &["pods/binding", "bindings"]),
                rule(&["patch", "update"], &[""], &["pods/status"]),
                rule(&["get", "list", "watch", "delete"], &[""], &["pods"]),
                rule(
                    &READ,
                    &[""],
                    &[
                        "nodes",
                        "namespaces",
                        "services",
                        "replicationcontrollers",
                        "persistentvolumes",
                        "persistentvolumeclaims",
                    ],
                ),
                rule(&READ, &["apps"], &["replicasets", "statefulsets"]),
                rule(&READ, &["policy"], &["poddisruptionbudgets"]),
                rule(&READ, &["storage.k8s.io"], &["*"]),
                rule(&READ, &["scheduling.k8s.io"], &["priorityclasses"]),
                rule(
                    &["get", "create", "update", "list", "watch"],
                    &["coordination.k8s.io"],
                    &["leases"],
                ),
                rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                rule(&["create"], &["authorization.k8s.io"], &["subjectaccessreviews"]),
            ],
        ),
        role(
            "system:kube-controller-manager",
            json!({}),
            vec![rule(&["*"], &["*"], &["*"]), paths(&["get"], &["*"])],
        ),
        role(
            "system:node-proxier",
            json!({}),
            vec![
                rule(&["list", "watch"], &[""], &["services", "endpoints"]),
                rule(&["list", "watch"], &["discovery.k8s.io"], &["endpointslices"]),
                rule(&READ, &[""], &["nodes"]),
                rule(&["create", "patch", "update"], &["", "events.k8s.io"], &["events"]),
            ],
        ),
        role(
            "system:kubelet-api-admin",
            json!({}),
            vec![
                rule(&READ, &[""], &["nodes"]),
                rule(&["proxy"], &[""], &["nodes"]),
                rule(
                    &["*"],
                    &[""],
                    &["nodes/log", "nodes/metrics", "nodes/proxy", "nodes/stats"],
                ),
            ],
        ),
        role(
            "system:node",
            json!({}),
            // Kept for reference and for clusters that bind it; kubelets
            // are authorized by the Node authorizer.
            vec![
                rule(&READ, &[""], &["nodes", "services", "endpoints"]),
                rule(
                    &["create", "update", "patch", "delete"],
                    &[""],
                    &["nodes", "nodes/status"],
                ),
                rule(&["get", "list", "watch", "delete"], &[""], &["pods"]),
                rule(&["update", "patch"], &[""], &["pods/status"]),
                rule(&["get"], &[""], &["secrets", "configmaps", "persistentvolumeclaims"]),
                rule(&["create"], &[""], &["serviceaccounts/token"]),
                rule(
                    &["create", "get", "update", "patch", "delete"],
                    &["coordination.k8s.io"],
                    &["leases"],
                ),
                rule(&["create", "patch", "update"], &["", "events.k8s.io"], &["events"]),
            ],
        ),
    ]
}

/// The bootstrap ClusterRoleBindings.
pub fn cluster_role_bindings() -> Vec<Value> {
    vec![
        binding("cluster-admin", "cluster-admin", &[("Group", "system:masters")]),
        binding(
            "system:discovery",
            "system:discovery",
            &[("Group", "system:authenticated")],
        ),
        binding(
            "system:basic-user",
            "system:basic-user",
            &[("Group", "system:authenticated")],
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &[("Group", "system:authenticated"), ("Group", "system:unauthenticated")],
        ),
        binding(
            "system:monitoring",
            "system:monitoring",
            &[("Group", "system:monitoring")],
        ),
        binding(
            "system:kube-scheduler",
            "system:kube-scheduler",
            &[("User", "system:kube-scheduler")],
        ),
        binding(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            &[("User", "system:kube-controller-manager")],
        ),
        binding(
            "system:node-proxier",
            "system:node-proxier",
            &[("User", "system:kube-proxy")],
        ),
    ]
}

/// Creates each bootstrap object that is absent; returns how many were made.
pub async fn ensure(storage: &Storage) -> Result<usize, StorageError> {
    let mut created = 0;
    for (prefix, objects) in [
        (CLUSTER_ROLES, cluster_roles()),
        (CLUSTER_ROLE_BINDINGS, cluster_role_bindings()),
    ] {
        for mut object in objects {
            let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let key = format!("{prefix}{name}");
            object["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
            object["metadata"]["creationTimestamp"] = json!(crate::registry::now());
            match storage.create(key.as_bytes(), object.to_string().into_bytes()).await {
                Ok(_) => created += 1,
                Err(StorageError::AlreadyExists) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(created)
}
