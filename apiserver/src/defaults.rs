//! Defaulting: the values Kubernetes fills in when a client leaves a field
//! out, so every component reads the same complete object.
//!
//! A pod without `schedulerName` is the default scheduler's; without
//! `restartPolicy` it restarts `Always`; a container whose image has no tag
//! or `:latest` is pulled `Always`, any other `IfNotPresent`; a Deployment
//! without a strategy rolls 25 % / 25 %. These are kube-apiserver's
//! defaults (its `SetDefaults_*` functions), applied on every create and
//! update, also to the pod templates inside workloads. Services and
//! Secrets are defaulted in their own strategies.

use serde_json::{json, Value};

/// Sets `object[key]` when it is missing (or null).
fn or_set(object: &mut Value, key: &str, value: Value) {
    if object.get(key).is_none_or(Value::is_null) {
        object[key] = value;
    }
}

fn each(list: &mut Value, mut f: impl FnMut(&mut Value)) {
    if let Some(items) = list.as_array_mut() {
        items.iter_mut().for_each(&mut f);
    }
}

/// The pull policy Kubernetes picks for an image reference.
pub fn pull_policy(image: &str) -> &'static str {
    // The tag is what follows the last ':' after the last '/' (a registry
    // port is not a tag); a digest pins the image.
    let name = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    match name.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn probe(p: &mut Value) {
    if !p.is_object() {
        return;
    }
    or_set(p, "timeoutSeconds", json!(1));
    or_set(p, "periodSeconds", json!(10));
    or_set(p, "successThreshold", json!(1));
    or_set(p, "failureThreshold", json!(3));
}

fn container(c: &mut Value) {
    let image = c["image"].as_str().unwrap_or_default().to_string();
    or_set(c, "imagePullPolicy", json!(pull_policy(&image)));
    or_set(c, "terminationMessagePath", json!("/dev/termination-log"));
    or_set(c, "terminationMessagePolicy", json!("File"));
    or_set(c, "resources", json!({}));
    each(&mut c["ports"], |p| or_set(p, "protocol", json!("TCP")));
    each(&mut c["env"], |e| {
        if e["valueFrom"]["fieldRef"].is_object() {
            or_set(&mut e["valueFrom"]["fieldRef"], "apiVersion", json!("v1"));
        }
    });
    for name in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(name) {
            probe(p);
        }
    }
}

/// A PodSpec's defaults (also inside templates).
pub fn pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    or_set(spec, "restartPolicy", json!("Always"));
    or_set(spec, "dnsPolicy", json!("ClusterFirst"));
    or_set(spec, "terminationGracePeriodSeconds", json!(30));
    or_set(spec, "securityContext", json!({}));
    or_set(spec, "schedulerName", json!("default-scheduler"));
    or_set(spec, "enableServiceLinks", json!(true));
    each(&mut spec["containers"], container);
    each(&mut spec["initContainers"], container);
    each(&mut spec["volumes"], |v| {
        for source in ["configMap", "secret"] {
            if v[source].is_object() {
                or_set(&mut v[source], "defaultMode", json!(420));
            }
        }
    });
}

/// The QoS class of a pod: Guaranteed when every container's requests
/// equal its limits for cpu and memory, BestEffort with no requests or
/// limits at all, Burstable otherwise.
pub fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = spec["containers"].as_array().into_iter().flatten().collect();
    let resources = |c: &Value, kind: &str, name: &str| c["resources"][kind][name].clone();
    let any = containers.iter().any(|c| {
        ["requests", "limits"]
            .iter()
            .any(|k| c["resources"][*k].as_object().is_some_and(|m| !m.is_empty()))
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = resources(c, "limits", r);
            let request = resources(c, "requests", r);
            !limit.is_null() && (request.is_null() || request == limit)
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn template(object: &mut Value) {
    pod_spec(&mut object["spec"]["template"]["spec"]);
}

/// Kinds whose status only their controllers write: a create starts it
/// empty, whatever the client sent (nodes and namespaces keep theirs).
const STATUS_RESET_ON_CREATE: &[(&str, &str)] = &[
    ("", "pods"),
    ("", "services"),
    ("", "replicationcontrollers"),
    ("", "persistentvolumeclaims"),
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
    ("policy", "poddisruptionbudgets"),
    ("autoscaling", "horizontalpodautoscalers"),
];

/// Defaults for a new object: its status starts empty (for kinds whose
/// controllers own it), then [`apply`].
pub fn on_create(group: &str, plural: &str, object: &mut Value) {
    if STATUS_RESET_ON_CREATE.contains(&(group, plural)) {
        if let Some(o) = object.as_object_mut() {
            o.remove("status");
        }
    }
    if (group, plural) == ("", "pods") {
        admit_pod(&mut object["spec"]);
        requests_from_limits(&mut object["spec"]);
    }
    apply(group, plural, object);
}

/// A container that states a limit but no request for a resource
/// requests its limit (SetDefaults_Pod).
fn requests_from_limits(spec: &mut Value) {
    for list in ["initContainers", "containers"] {
        each(&mut spec[list], |c| {
            let limits = c["resources"]["limits"].as_object().cloned().unwrap_or_default();
            if limits.is_empty() {
                return;
            }
            if !c["resources"]["requests"].is_object() {
                c["resources"]["requests"] = json!({});
            }
            for (resource, q) in limits {
                or_set(&mut c["resources"]["requests"], &resource, q);
            }
        });
    }
}

/// Two of Kubernetes' admission steps for new pods: the ServiceAccount
/// one (a pod runs as the namespace's `default` service account unless it
/// names another) and DefaultTolerationSeconds (a pod tolerates its node
/// being not-ready or unreachable for 300 s before eviction).
fn admit_pod(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    let account = spec["serviceAccountName"]
        .as_str()
        .or_else(|| spec["serviceAccount"].as_str())
        .filter(|a| !a.is_empty())
        .unwrap_or("default")
        .to_string();
    spec["serviceAccountName"] = json!(account);
    spec["serviceAccount"] = json!(account);
    let mut tolerations = spec["tolerations"].as_array().cloned().unwrap_or_default();
    for taint in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        let covered = tolerations.iter().any(|t| {
            (t["key"] == taint || (t["key"].is_null() && t["operator"] == "Exists"))
                && (t["effect"].is_null() || t["effect"] == "NoExecute")
        });
        if !covered {
            tolerations
                .push(json!({"key": taint, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
    spec["tolerations"] = Value::Array(tolerations);
}

/// Defaults for a new or replaced object of `kind` (group, plural).
pub fn apply(group: &str, plural: &str, object: &mut Value) {
    match (group, plural) {
        ("", "pods") => {
            pod_spec(&mut object["spec"]);
            let qos = qos_class(&object["spec"]);
            if !object["status"].is_object() {
                object["status"] = json!({});
            }
            or_set(&mut object["status"], "phase", json!("Pending"));
            or_set(&mut object["status"], "qosClass", json!(qos));
        }
        ("", "podtemplates") => pod_spec(&mut object["template"]["spec"]),
        ("", "replicationcontrollers") => {
            or_set(&mut object["spec"], "replicas", json!(1));
            // An RC without a selector selects its template's labels.
            let labels = object["spec"]["template"]["metadata"]["labels"].clone();
            if object["spec"]["selector"].is_null() && labels.is_object() {
                object["spec"]["selector"] = labels;
            }
            template(object);
        }
        ("", "secrets") => or_set(object, "type", json!("Opaque")),
        ("", "limitranges") => each(&mut object["spec"]["limits"], crate::limit_ranger::item_defaults),
        ("apiextensions.k8s.io", "customresourcedefinitions") if object["status"]["conditions"].is_null() => {
            crate::crd::accepted_status(object);
        }
        ("", "persistentvolumeclaims") => or_set(&mut object["spec"], "volumeMode", json!("Filesystem")),
        ("apps", "deployments") => {
            let spec = &mut object["spec"];
            or_set(spec, "replicas", json!(1));
            or_set(spec, "revisionHistoryLimit", json!(10));
            or_set(spec, "progressDeadlineSeconds", json!(600));
            or_set(spec, "strategy", json!({"type": "RollingUpdate"}));
            if spec["strategy"]["type"] == "RollingUpdate" {
                or_set(&mut spec["strategy"], "rollingUpdate", json!({}));
                or_set(&mut spec["strategy"]["rollingUpdate"], "maxUnavailable", json!("25%"));
                or_set(&mut spec["strategy"]["rollingUpdate"], "maxSurge", json!("25%"));
            }
            template(object);
        }
        ("apps", "replicasets") => {
            or_set(&mut object["spec"], "replicas", json!(1));
            template(object);
        }
        ("apps", "statefulsets") => {
            let spec = &mut object["spec"];
            or_set(spec, "replicas", json!(1));
            or_set(spec, "podManagementPolicy", json!("OrderedReady"));
            or_set(spec, "revisionHistoryLimit", json!(10));
            or_set(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            or_set(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            template(object);
        }
        ("apps", "daemonsets") => {
            let spec = &mut object["spec"];
            or_set(spec, "revisionHistoryLimit", json!(10));
            or_set(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
            );
            template(object);
        }
        ("batch", "jobs") => {
            let spec = &mut object["spec"];
            or_set(spec, "parallelism", json!(1));
            or_set(spec, "completions", json!(1));
            or_set(spec, "backoffLimit", json!(6));
            or_set(spec, "completionMode", json!("NonIndexed"));
            or_set(spec, "suspend", json!(false));
            or_set(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
            template(object);
        }
        ("batch", "cronjobs") => {
            let spec = &mut object["spec"];
            or_set(spec, "concurrencyPolicy", json!("Allow"));
            or_set(spec, "suspend", json!(false));
            or_set(spec, "successfulJobsHistoryLimit", json!(3));
            or_set(spec, "failedJobsHistoryLimit", json!(1));
            pod_spec(&mut object["spec"]["jobTemplate"]["spec"]["template"]["spec"]);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policies_follow_the_tag() {
        assert_eq!(pull_policy("busybox"), "Always");
        assert_eq!(pull_policy("busybox:latest"), "Always");
        assert_eq!(pull_policy("busybox:1.36"), "IfNotPresent");
        assert_eq!(pull_policy("registry:5000/app"), "Always", "a port is not a tag");
        assert_eq!(pull_policy("registry:5000/app:v2"), "IfNotPresent");
        assert_eq!(pull_policy("app@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn pods_and_deployments_get_kubernetes_defaults() {
        let mut pod = json!({"spec": {"containers": [{"name": "a", "image": "busybox",
            "ports": [{"containerPort": 80}], "readinessProbe": {"httpGet": {"port": 80}}}]}});
        apply("", "pods", &mut pod);
        let spec = &pod["spec"];
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(spec["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(spec["containers"][0]["readinessProbe"]["periodSeconds"], 10);
        assert_eq!(pod["status"], json!({"phase": "Pending", "qosClass": "BestEffort"}));
        let mut admitted = json!({"spec": {"containers": [], "tolerations": [{"operator": "Exists"}]}});
        on_create("", "pods", &mut admitted);
        assert_eq!(admitted["spec"]["serviceAccountName"], "default");
        assert_eq!(
            admitted["spec"]["tolerations"].as_array().unwrap().len(),
            1,
            "already tolerates everything"
        );
        let mut plain = json!({"spec": {"containers": [], "serviceAccountName": "robot"}});
        on_create("", "pods", &mut plain);
        assert_eq!(plain["spec"]["serviceAccountName"], "robot");
        assert_eq!(plain["spec"]["tolerations"][1]["tolerationSeconds"], 300);

        let mut given = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "x:1",
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        apply("", "pods", &mut given);
        assert_eq!(given["spec"]["restartPolicy"], "Never", "given values stay");
        assert_eq!(given["status"]["qosClass"], "Guaranteed");

        let mut deployment = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x:1"}]}}}});
        apply("apps", "deployments", &mut deployment);
        assert_eq!(deployment["spec"]["replicas"], 1);
        assert_eq!(deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(deployment["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    }
}
