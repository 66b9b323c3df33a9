//! Validation: the rules an object must satisfy beyond its type, answered
//! with 422 Invalid naming the field, as Kubernetes does.
//!
//! For every object: label keys and values, annotation keys. For pods: at
//! least one container, each with a DNS-1123 label name (unique) and an
//! image, a known restart policy, and, on update, nothing changed but what
//! Kubernetes lets change (container images, activeDeadlineSeconds, added
//! tolerations). For workloads: a selector that matches the template's
//! labels and never changes. For Jobs: a restart policy of OnFailure or
//! Never. Namespace names are DNS-1123 labels and Service names DNS-1035
//! labels; an immutable ConfigMap or Secret keeps its data.

use serde_json::Value;

use crate::selector::Selector;
use crate::status::ApiError;

/// A DNS-1123 label: lower-case alphanumerics and '-', at most 63.
pub fn dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// A label value or a key's name part: at most 63 of [A-Za-z0-9-_.],
/// starting and ending alphanumeric (a value may also be empty).
fn qualified_part(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A label or annotation key: `[prefix/]name`, the prefix a DNS subdomain.
pub fn qualified_name(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => crate::registry::valid_name(prefix) && qualified_part(name),
        None => qualified_part(key),
    }
}

/// A DNS-1035 label (Service names): a DNS-1123 label starting with a letter.
pub fn dns1035_label(name: &str) -> bool {
    dns_label(name) && name.starts_with(|c: char| c.is_ascii_lowercase())
}

const DNS1123_LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_LABEL: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

/// The fields of an immutable ConfigMap or Secret that may not change.
fn immutable_data(c: &Check<'_>, plural: &str, object: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let Some(old) = old.filter(|o| o["immutable"] == true) else {
        return Ok(());
    };
    let fields: &[&str] = if plural == "secrets" {
        &["data", "type", "immutable"]
    } else {
        &["data", "binaryData", "immutable"]
    };
    for field in fields {
        let (was, is) = (&old[*field], &object[*field]);
        let empty = |v: &Value| v.is_null() || v.as_object().is_some_and(|m| m.is_empty());
        if was != is && !(empty(was) && empty(is)) {
            return Err(c.fail(field, "Forbidden: field is immutable when `immutable` is set"));
        }
    }
    Ok(())
}

pub fn label_value(value: &str) -> bool {
    value.is_empty() || qualified_part(value)
}

struct Check<'a> {
    kind: &'a str,
    name: &'a str,
}

impl Check<'_> {
    fn fail(&self, field: &str, message: impl AsRef<str>) -> ApiError {
        ApiError::invalid(self.kind, self.name, field, message.as_ref())
    }
}

fn metadata(c: &Check<'_>, object: &Value) -> Result<(), ApiError> {
    for (key, value) in object["metadata"]["labels"].as_object().into_iter().flatten() {
        if !qualified_name(key) {
            return Err(c.fail(
                "metadata.labels",
                format!("Invalid value: \"{key}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
            ));
        }
        let text = value.as_str().unwrap_or_default();
        if !label_value(text) {
            return Err(c.fail(
                "metadata.labels",
                format!("Invalid value: \"{text}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
            ));
        }
    }
    for (key, _) in object["metadata"]["annotations"].as_object().into_iter().flatten() {
        if !qualified_name(key) {
            return Err(c.fail(
                "metadata.annotations",
                format!("Invalid value: \"{key}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
            ));
        }
    }
    Ok(())
}

/// A resource list's quantities: each a quantity, none negative (a
/// negative request would lower a quota's usage).
fn quantities(c: &Check<'_>, list: &Value, at: &str) -> Result<(), ApiError> {
    for (name, q) in list.as_object().into_iter().flatten() {
        let text = q.as_str().map_or_else(|| q.to_string(), str::to_string);
        match api::quantity::Quantity::parse(&text) {
            Err(_) => {
                return Err(c.fail(
                    &format!("{at}[{name}]"),
                    format!("Invalid value: \"{text}\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"),
                ))
            }
            Ok(q) if q.milli() < 0 => {
                return Err(c.fail(
                    &format!("{at}[{name}]"),
                    format!("Invalid value: \"{text}\": must be greater than or equal to 0"),
                ))
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

/// A container's requests and limits: valid quantities, requests no
/// larger than limits.
fn resources(c: &Check<'_>, resources: &Value, at: &str) -> Result<(), ApiError> {
    quantities(c, &resources["requests"], &format!("{at}.requests"))?;
    quantities(c, &resources["limits"], &format!("{at}.limits"))?;
    let milli = |v: &Value| {
        v.as_str()
            .and_then(|t| api::quantity::Quantity::parse(t).ok())
            .map(|q| q.milli())
    };
    for (name, request) in resources["requests"].as_object().into_iter().flatten() {
        if let (Some(r), Some(l)) = (milli(request), milli(&resources["limits"][name])) {
            if r > l {
                return Err(c.fail(
                    &format!("{at}.requests"),
                    format!(
                        "Invalid value: \"{}\": must be less than or equal to {name} limit of {}",
                        request.as_str().unwrap_or_default(),
                        resources["limits"][name].as_str().unwrap_or_default()
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn pod_spec(c: &Check<'_>, spec: &Value, at: &str, restart_policies: &[&str]) -> Result<(), ApiError> {
    let containers = spec["containers"].as_array().map(Vec::as_slice).unwrap_or_default();
    if containers.is_empty() {
        return Err(c.fail(&format!("{at}.containers"), "Required value"));
    }
    let mut names = std::collections::HashSet::new();
    let init = spec["initContainers"].as_array().map(Vec::as_slice).unwrap_or_default();
    for (list, items) in [("containers", containers), ("initContainers", init)] {
        for (i, container) in items.iter().enumerate() {
            let field = format!("{at}.{list}[{i}]");
            let name = container["name"].as_str().unwrap_or_default();
            if !dns_label(name) {
                return Err(c.fail(
                    &format!("{field}.name"),
                    format!("Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"),
                ));
            }
            if !names.insert(name) {
                return Err(c.fail(&format!("{field}.name"), format!("Duplicate value: \"{name}\"")));
            }
            if container["image"].as_str().unwrap_or_default().trim().is_empty() {
                return Err(c.fail(&format!("{field}.image"), "Required value"));
            }
            resources(c, &container["resources"], &format!("{field}.resources"))?;
        }
    }
    quantities(c, &spec["overhead"], &format!("{at}.overhead"))?;
    let policy = spec["restartPolicy"].as_str().unwrap_or_default();
    if !restart_policies.contains(&policy) {
        let valid: Vec<String> = restart_policies.iter().map(|p| format!("\"{p}\"")).collect();
        return Err(c.fail(
            &format!("{at}.restartPolicy"),
            format!(
                "Unsupported value: \"{policy}\": supported values: {}",
                valid.join(", ")
            ),
        ));
    }
    Ok(())
}

/// The fields of a pod spec an update may change, blanked out so that the
/// rest can be compared.
fn immutable_part(spec: &Value) -> Value {
    let mut s = spec.clone();
    for list in ["containers", "initContainers"] {
        if let Some(items) = s[list].as_array_mut() {
            for c in items {
                if let Some(o) = c.as_object_mut() {
                    o.remove("image");
                }
            }
        }
    }
    if let Some(o) = s.as_object_mut() {
        o.remove("activeDeadlineSeconds");
        o.remove("tolerations");
    }
    s
}

fn workload(c: &Check<'_>, object: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let selector = &object["spec"]["selector"];
    if selector.is_null() || selector.as_object().is_some_and(|m| m.is_empty()) {
        return Err(c.fail("spec.selector", "Required value"));
    }
    let parsed = Selector::from_label_selector(selector)?;
    let template = &object["spec"]["template"];
    if !parsed.matches_labels(template) {
        return Err(c.fail(
            "spec.template.metadata.labels",
            "Invalid value: `selector` does not match template `labels`",
        ));
    }
    if let Some(old) = old {
        if old["spec"]["selector"] != *selector {
            return Err(c.fail("spec.selector", "Invalid value: field is immutable"));
        }
    }
    pod_spec(c, &template["spec"], "spec.template.spec", &["Always"])
}

/// A CRD is named `<plural>.<group>` and may not define a built-in group.
fn crd(c: &Check<'_>, object: &Value) -> Result<(), ApiError> {
    let group = object["spec"]["group"].as_str().unwrap_or_default();
    let plural = object["spec"]["names"]["plural"].as_str().unwrap_or_default();
    if group.is_empty() || plural.is_empty() || object["spec"]["names"]["kind"].as_str().unwrap_or_default().is_empty()
    {
        return Err(c.fail(
            "spec",
            "Required value: group, names.plural and names.kind are required",
        ));
    }
    if c.name != format!("{plural}.{group}") {
        return Err(c.fail(
            "metadata.name",
            format!(
                "Invalid value: \"{}\": must be spec.names.plural+\".\"+spec.group",
                c.name
            ),
        ));
    }
    if api::resources::RESOURCES.iter().any(|r| r.group == group) {
        return Err(c.fail(
            "spec.group",
            format!("Invalid value: \"{group}\": the group of a built-in API cannot be extended"),
        ));
    }
    Ok(())
}

/// Checks `object` (of `group`/`plural`) on create (`old` None) or update.
pub fn validate(group: &str, plural: &str, object: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let c = Check { kind, name };
    metadata(&c, object)?;
    match (group, plural) {
        ("", "pods") => {
            pod_spec(&c, &object["spec"], "spec", &["Always", "OnFailure", "Never"])?;
            if let Some(old) = old {
                if immutable_part(&old["spec"]) != immutable_part(&object["spec"]) {
                    return Err(c.fail(
                        "spec",
                        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds` or `spec.tolerations` (only additions to existing tolerations)",
                    ));
                }
            }
            Ok(())
        }
        // Names are checked when objects are made (an older object with
        // a looser name can still be updated, finalized and deleted).
        ("", "namespaces") if old.is_none() && !dns_label(name) => {
            Err(c.fail("metadata.name", format!("Invalid value: \"{name}\": {DNS1123_LABEL}")))
        }
        ("", "services") if old.is_none() && !dns1035_label(name) => {
            Err(c.fail("metadata.name", format!("Invalid value: \"{name}\": {DNS1035_LABEL}")))
        }
        ("", "persistentvolumeclaims") => {
            quantities(&c, &object["spec"]["resources"]["requests"], "spec.resources.requests")
        }
        ("", "configmaps" | "secrets") => immutable_data(&c, plural, object, old),
        ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets") => workload(&c, object, old),
        ("apiextensions.k8s.io", "customresourcedefinitions") => crd(&c, object),
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => role_ref(&c, plural, object, old),
        ("batch", "jobs") => pod_spec(
            &c,
            &object["spec"]["template"]["spec"],
            "spec.template.spec",
            &["OnFailure", "Never"],
        ),
        _ => Ok(()),
    }
}

/// A binding's roleRef: in the RBAC group, a ClusterRole for a
/// ClusterRoleBinding (a Role or ClusterRole for a RoleBinding), named,
/// and never changed afterwards, as upstream validates it.
fn role_ref(c: &Check<'_>, plural: &str, object: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let r = &object["roleRef"];
    if r["apiGroup"] != "rbac.authorization.k8s.io" {
        return Err(c.fail(
            "roleRef.apiGroup",
            "Unsupported value: supported values: \"rbac.authorization.k8s.io\"",
        ));
    }
    let kinds: &[&str] = if plural == "clusterrolebindings" {
        &["ClusterRole"]
    } else {
        &["Role", "ClusterRole"]
    };
    if !r["kind"].as_str().is_some_and(|k| kinds.contains(&k)) {
        return Err(c.fail(
            "roleRef.kind",
            format!("Unsupported value: supported values: {kinds:?}"),
        ));
    }
    if r["name"].as_str().is_none_or(str::is_empty) {
        return Err(c.fail("roleRef.name", "Required value"));
    }
    if let Some(old) = old {
        if old["roleRef"] != *r {
            return Err(c.fail("roleRef", "Invalid value: cannot change roleRef"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn role_refs_are_checked_and_fixed() {
        let binding = |kind: &str| {
            json!({"kind": "ClusterRoleBinding", "metadata": {"name": "b"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": "cluster-admin"}})
        };
        let rbac = "rbac.authorization.k8s.io";
        assert!(validate(rbac, "clusterrolebindings", &binding("ClusterRole"), None).is_ok());
        assert!(validate(rbac, "clusterrolebindings", &binding("Role"), None).is_err());
        assert!(validate(rbac, "rolebindings", &binding("Role"), None).is_ok());
        let mut changed = binding("ClusterRole");
        changed["roleRef"]["name"] = json!("view");
        assert!(validate(rbac, "clusterrolebindings", &changed, Some(&binding("ClusterRole"))).is_err());
    }

    #[test]
    fn quantities_must_be_valid_and_not_negative() {
        let pod = |resources: serde_json::Value| {
            serde_json::json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"restartPolicy": "Always",
                "containers": [{"name": "c", "image": "i", "resources": resources}]}})
        };
        let e = validate("", "pods", &pod(serde_json::json!({"requests": {"cpu": "-1"}})), None).unwrap_err();
        assert!(
            e.message.contains("must be greater than or equal to 0"),
            "{}",
            e.message
        );
        let e = validate("", "pods", &pod(serde_json::json!({"limits": {"cpu": "lots"}})), None).unwrap_err();
        assert!(e.message.contains("quantities must match"), "{}", e.message);
        let e = validate(
            "",
            "pods",
            &pod(serde_json::json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}})),
            None,
        )
        .unwrap_err();
        assert!(
            e.message.contains("must be less than or equal to cpu limit"),
            "{}",
            e.message
        );
        assert!(validate(
            "",
            "pods",
            &pod(serde_json::json!({"requests": {"cpu": "500m"}, "limits": {"cpu": "1"}})),
            None
        )
        .is_ok());
        let claim = serde_json::json!({"kind": "PersistentVolumeClaim", "metadata": {"name": "c"},
            "spec": {"resources": {"requests": {"storage": "-1Gi"}}}});
        assert!(validate("", "persistentvolumeclaims", &claim, None).is_err());
    }

    #[test]
    fn names_immutability_and_labels() {
        let ns = serde_json::json!({"kind": "Namespace", "metadata": {"name": "a.b"}});
        let e = validate("", "namespaces", &ns, None).unwrap_err();
        assert!(e.message.contains("RFC 1123 label"), "{}", e.message);
        let svc = serde_json::json!({"kind": "Service", "metadata": {"name": "1web"}});
        let e = validate("", "services", &svc, None).unwrap_err();
        assert!(e.message.contains("DNS-1035 label"), "{}", e.message);
        let old =
            serde_json::json!({"kind": "ConfigMap", "metadata": {"name": "c"}, "immutable": true, "data": {"a": "1"}});
        let mut new = old.clone();
        new["data"]["a"] = serde_json::json!("2");
        let e = validate("", "configmaps", &new, Some(&old)).unwrap_err();
        assert!(
            e.message.contains("data: Forbidden: field is immutable"),
            "{}",
            e.message
        );
        let mut relabelled = old.clone();
        relabelled["metadata"]["labels"] = serde_json::json!({"x": "y"});
        assert!(validate("", "configmaps", &relabelled, Some(&old)).is_ok());
        let mut unset = old.clone();
        unset["immutable"] = serde_json::json!(false);
        assert!(validate("", "configmaps", &unset, Some(&old)).is_err());
    }

    #[test]
    fn label_syntax() {
        for key in ["app", "app.kubernetes.io/name", "a_b-c.d", "x/y"] {
            assert!(qualified_name(key), "{key}");
        }
        for key in ["", "-a", "a b", "Has/Upper/Slash", "x/", "/y", &"a".repeat(64)] {
            assert!(!qualified_name(key), "{key}");
        }
        assert!(label_value("") && label_value("v1.2_3") && !label_value("-x") && !label_value("a b"));
    }

    #[test]
    fn pods_need_named_containers_with_images_and_keep_their_spec() {
        let pod = |containers: Value| json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"restartPolicy": "Always", "containers": containers}});
        assert!(validate("", "pods", &pod(json!([{"name": "a", "image": "x"}])), None).is_ok());
        let e = validate("", "pods", &pod(json!([])), None).unwrap_err();
        assert!(e.message.contains("spec.containers: Required value"), "{}", e.message);
        let e = validate("", "pods", &pod(json!([{"name": "a"}])), None).unwrap_err();
        assert!(
            e.message.contains("spec.containers[0].image: Required value"),
            "{}",
            e.message
        );
        let e = validate(
            "",
            "pods",
            &pod(json!([{"name": "a", "image": "x"}, {"name": "a", "image": "y"}])),
            None,
        )
        .unwrap_err();
        assert!(e.message.contains("Duplicate value"), "{}", e.message);

        let old = pod(json!([{"name": "a", "image": "x"}]));
        assert!(validate("", "pods", &pod(json!([{"name": "a", "image": "y"}])), Some(&old)).is_ok());
        let e = validate("", "pods", &pod(json!([{"name": "b", "image": "x"}])), Some(&old)).unwrap_err();
        assert!(
            e.message.contains("Forbidden: pod updates may not change"),
            "{}",
            e.message
        );
    }

    #[test]
    fn workload_selectors_match_templates_and_stay() {
        let d = |selector: Value| {
            json!({"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"selector": selector,
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"restartPolicy": "Always", "containers": [{"name": "a", "image": "x"}]}}}})
        };
        let web = d(json!({"matchLabels": {"app": "web"}}));
        assert!(validate("apps", "deployments", &web, None).is_ok());
        let e = validate("apps", "deployments", &d(json!({"matchLabels": {"app": "db"}})), None).unwrap_err();
        assert!(e.message.contains("does not match template"), "{}", e.message);
        let e = validate("apps", "deployments", &d(Value::Null), None).unwrap_err();
        assert!(e.message.contains("spec.selector: Required value"), "{}", e.message);
        let wider = d(json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]}));
        let e = validate("apps", "deployments", &wider, Some(&web)).unwrap_err();
        assert!(e.message.contains("field is immutable"), "{}", e.message);
    }
}
