//! Matching pods to nodes, as the scheduler, the node lifecycle
//! controller and the kubelet all need it: taints and tolerations, and
//! node selectors and required node affinity.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration};

/// Whether `toleration` matches `taint` (key, value and effect).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect_ok = toleration
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    if !effect_ok {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == taint.key,
        _ => key == taint.key && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
    }
}

/// Whether any of `tolerations` matches `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => !value.is_some_and(|v| values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether the node satisfies one term (all its expressions and fields);
/// an empty term matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.as_ref();
    let name = node.metadata.name.as_deref();
    expressions
        .iter()
        .all(|r| requirement_matches(r, labels.and_then(|l| l.get(&r.key)).map(String::as_str)))
        && fields
            .iter()
            .all(|r| requirement_matches(r, if r.key == "metadata.name" { name } else { None }))
}

fn selector_matches(selector: &BTreeMap<String, String>, node: &Node) -> bool {
    let labels = node.metadata.labels.as_ref();
    selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Whether the pod may run on the node by its `nodeSelector` and required
/// node affinity (terms are ORed).
pub fn pod_matches_node(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = pod.spec.as_ref() else { return true };
    if let Some(selector) = &spec.node_selector {
        if !selector_matches(selector, node) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    match required {
        Some(selector) => selector.node_selector_terms.iter().any(|t| term_matches(t, node)),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(labels: &[(&str, &str)]) -> Node {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "n1", "labels":
            labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()}}))
        .unwrap()
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"spec": spec})).unwrap()
    }

    #[test]
    fn tolerations_match_by_key_value_and_effect() {
        let taint = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        };
        let t = |json: serde_json::Value| -> Toleration { serde_json::from_value(json).unwrap() };
        assert!(tolerates(&t(serde_json::json!({"key": "k", "value": "v"})), &taint));
        assert!(tolerates(
            &t(serde_json::json!({"key": "k", "operator": "Exists", "effect": "NoSchedule"})),
            &taint
        ));
        assert!(tolerates(&t(serde_json::json!({"operator": "Exists"})), &taint));
        assert!(!tolerates(&t(serde_json::json!({"key": "k", "value": "w"})), &taint));
        assert!(!tolerates(
            &t(serde_json::json!({"key": "k", "operator": "Exists", "effect": "NoExecute"})),
            &taint
        ));
    }

    #[test]
    fn node_selector_and_affinity_terms() {
        let n = node(&[("zone", "a"), ("gen", "5")]);
        assert!(pod_matches_node(&pod(serde_json::json!({"containers": []})), &n));
        assert!(pod_matches_node(
            &pod(serde_json::json!({"nodeSelector": {"zone": "a"}})),
            &n
        ));
        assert!(!pod_matches_node(
            &pod(serde_json::json!({"nodeSelector": {"zone": "b"}})),
            &n
        ));
        let affinity = |terms: serde_json::Value| {
            pod(
                serde_json::json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}),
            )
        };
        assert!(pod_matches_node(
            &affinity(serde_json::json!([
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
            {"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}]}])),
            &n
        ));
        assert!(!pod_matches_node(
            &affinity(serde_json::json!([
            {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}])),
            &n
        ));
        assert!(pod_matches_node(
            &affinity(serde_json::json!([
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}])),
            &n
        ));
        assert!(
            !pod_matches_node(&affinity(serde_json::json!([{}])), &n),
            "an empty term matches nothing"
        );
    }
}
