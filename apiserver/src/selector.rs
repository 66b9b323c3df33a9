//! Label and field selectors, as `?labelSelector=` and `?fieldSelector=`
//! spell them: `app=web,tier!=db,env in (prod,stage),!legacy`.

use serde_json::Value;

use crate::status::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed selector; the empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selector(Vec<Requirement>);

/// Splits on commas that are not inside parentheses.
fn terms(text: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0usize, Vec::new());
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out.into_iter().map(str::trim).filter(|t| !t.is_empty()).collect()
}

fn set(values: &str, term: &str) -> Result<Vec<String>, ApiError> {
    let inner = values
        .trim()
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(|| ApiError::bad_request(format!("unable to parse requirement: {term:?}: expected (values)")))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}

impl Selector {
    /// The value `key` must equal (an `=` or `==` term), if the selector
    /// pins it: how an authorizer reads a field selector the same way the
    /// list does.
    pub fn pinned(&self, key: &str) -> Option<&str> {
        self.0.iter().find_map(|r| match r {
            Requirement::Equals(k, v) if k == key => Some(v.as_str()),
            _ => None,
        })
    }

    pub fn parse(text: &str) -> Result<Selector, ApiError> {
        let mut requirements = Vec::new();
        for term in terms(text) {
            let requirement = if let Some(key) = term.strip_prefix('!') {
                Requirement::NotExists(key.trim().to_string())
            } else if let Some((key, value)) = term.split_once("!=") {
                Requirement::NotEquals(key.trim().into(), value.trim().into())
            } else if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Requirement::Equals(key.trim().into(), value.trim().into())
            } else if let Some((key, values)) = term.split_once(" notin ") {
                Requirement::NotIn(key.trim().into(), set(values, term)?)
            } else if let Some((key, values)) = term.split_once(" in ") {
                Requirement::In(key.trim().into(), set(values, term)?)
            } else if term.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
                Requirement::Exists(term.to_string())
            } else {
                return Err(ApiError::bad_request(format!("unable to parse requirement: {term:?}")));
            };
            requirements.push(requirement);
        }
        Ok(Selector(requirements))
    }

    /// A `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`),
    /// as PodDisruptionBudgets and workloads carry it.
    pub fn from_label_selector(selector: &Value) -> Result<Selector, ApiError> {
        let mut requirements = Vec::new();
        if let Some(labels) = selector["matchLabels"].as_object() {
            for (k, v) in labels {
                let v = v.as_str().unwrap_or_default();
                requirements.push(Requirement::Equals(k.clone(), v.to_string()));
            }
        }
        for e in selector["matchExpressions"].as_array().into_iter().flatten() {
            let key = e["key"].as_str().unwrap_or_default().to_string();
            let values = || {
                e["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            };
            requirements.push(match e["operator"].as_str().unwrap_or_default() {
                "In" => Requirement::In(key, values()),
                "NotIn" => Requirement::NotIn(key, values()),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::NotExists(key),
                other => {
                    return Err(ApiError::bad_request(format!(
                        "{other:?} is not a valid label selector operator"
                    )))
                }
            });
        }
        Ok(Selector(requirements))
    }

    /// Whether the labels (or fields) `get` looks up satisfy the selector.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k).as_deref() == Some(v),
            Requirement::NotEquals(k, v) => get(k).as_deref() != Some(v),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.contains(&x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(&x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }

    /// Label selector against an object.
    pub fn matches_labels(&self, object: &Value) -> bool {
        self.matches(|k| object["metadata"]["labels"][k].as_str().map(str::to_string))
    }

    /// Field selector against an object (`metadata.name`, `spec.nodeName`, …).
    pub fn matches_fields(&self, object: &Value) -> bool {
        self.matches(|path| {
            let mut v = object;
            for part in field_path(path).split('.') {
                v = &v[part];
            }
            match v {
                Value::String(s) => Some(s.clone()),
                // A boolean left out is false, as Go's zero value reads.
                Value::Null if BOOLEAN_FIELDS.contains(&path) => Some("false".into()),
                Value::Null => Some(String::new()),
                other => Some(other.to_string()),
            }
        })
    }

    /// Refuses field labels the resource does not support (400), as
    /// kube-apiserver does, instead of matching nothing.
    pub fn check_field_labels(&self, group: &str, plural: &str) -> Result<(), ApiError> {
        for r in &self.0 {
            let key = match r {
                Requirement::Equals(k, _)
                | Requirement::NotEquals(k, _)
                | Requirement::In(k, _)
                | Requirement::NotIn(k, _)
                | Requirement::Exists(k)
                | Requirement::NotExists(k) => k,
            };
            if !field_label_supported(group, plural, key) {
                return Err(ApiError::bad_request(format!("field label not supported: {key}")));
            }
        }
        Ok(())
    }
}

/// Field labels whose value is a boolean.
const BOOLEAN_FIELDS: &[&str] = &["spec.unschedulable", "spec.hostNetwork"];

/// The object path a field label reads (`source` is an Event's
/// `source.component`).
fn field_path(label: &str) -> &str {
    match label {
        "source" => "source.component",
        other => other,
    }
}

/// The field labels each resource can be selected by (kube-apiserver's
/// field label conversions); `metadata.name` and `metadata.namespace`
/// work everywhere.
fn field_label_supported(group: &str, plural: &str, label: &str) -> bool {
    if matches!(label, "metadata.name" | "metadata.namespace") {
        return true;
    }
    let supported: &[&str] = match (group, plural) {
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "nodes") => &["spec.unschedulable"],
        ("", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("events.k8s.io", "events") => &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ],
        ("", "secrets") => &["type"],
        ("", "namespaces") => &["status.phase"],
        ("", "replicationcontrollers") | ("apps", "replicasets") => &["status.replicas"],
        ("", "services") => &["spec.clusterIP", "spec.type"],
        ("batch", "jobs") => &["status.successful"],
        ("certificates.k8s.io", "certificatesigningrequests") => &["spec.signerName"],
        _ => &[],
    };
    supported.contains(&label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_labels_are_checked_and_booleans_default_to_false() {
        let s = Selector::parse("spec.unschedulable=false").unwrap();
        assert!(s.check_field_labels("", "nodes").is_ok());
        assert!(s.matches_fields(&json!({"metadata": {"name": "n"}, "spec": {}})));
        let e = Selector::parse("spec.color=red")
            .unwrap()
            .check_field_labels("", "pods")
            .unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "field label not supported: spec.color")
        );
        assert!(Selector::parse("status.phase=Running")
            .unwrap()
            .check_field_labels("", "pods")
            .is_ok());
        let event = json!({"source": {"component": "kubelet"}});
        assert!(Selector::parse("source=kubelet").unwrap().matches_fields(&event));
    }

    #[test]
    fn label_selectors_cover_equality_sets_and_existence() {
        let pod =
            json!({"metadata": {"name": "p", "labels": {"app": "web", "env": "prod"}}, "spec": {"nodeName": "n1"}});
        let yes = [
            "app=web",
            "app==web,env!=dev",
            "env in (prod, stage)",
            "tier notin (db)",
            "app",
            "!legacy",
            "",
        ];
        for s in yes {
            assert!(Selector::parse(s).unwrap().matches_labels(&pod), "{s}");
        }
        for s in ["app=db", "env in (dev)", "!app", "tier"] {
            assert!(!Selector::parse(s).unwrap().matches_labels(&pod), "{s}");
        }
        assert!(Selector::parse("spec.nodeName=n1,metadata.name=p")
            .unwrap()
            .matches_fields(&pod));
        assert!(Selector::parse("spec.nodeName=")
            .unwrap()
            .matches_fields(&json!({"spec": {}})));
        assert_eq!(Selector::parse("a in b").unwrap_err().code, 400);
        let structured = json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]},
                                 {"key": "legacy", "operator": "DoesNotExist"}]});
        assert!(Selector::from_label_selector(&structured).unwrap().matches_labels(&pod));
        let other = json!({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]});
        assert!(!Selector::from_label_selector(&other).unwrap().matches_labels(&pod));
        let bad = json!({"matchExpressions": [{"key": "env", "operator": "Near"}]});
        assert_eq!(Selector::from_label_selector(&bad).unwrap_err().code, 400);
    }
}
