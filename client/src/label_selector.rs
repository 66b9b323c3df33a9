//! `metav1.LabelSelector` on the client side: does an object's label set
//! match, and how is the selector spelled in a list's `labelSelector`.
//!
//! Controllers select their pods with these (a ReplicaSet's
//! `spec.selector`, a Service's `spec.selector` map, a
//! PodDisruptionBudget's selector), so the rules are Kubernetes': the
//! empty selector matches everything, `matchLabels` and every
//! `matchExpressions` requirement must all hold, and an operator that is
//! not `In`, `NotIn`, `Exists` or `DoesNotExist` makes the selector invalid.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// A selector that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector: {0}")]
pub struct InvalidSelector(pub String);

type Labels = BTreeMap<String, String>;

fn requirement_matches(r: &LabelSelectorRequirement, labels: &Labels) -> Result<bool, InvalidSelector> {
    let values = r.values.as_deref().unwrap_or_default();
    let value = labels.get(&r.key);
    match r.operator.as_str() {
        "In" => Ok(value.is_some_and(|v| values.contains(v))),
        "NotIn" => Ok(!value.is_some_and(|v| values.contains(v))),
        "Exists" => Ok(value.is_some()),
        "DoesNotExist" => Ok(value.is_none()),
        other => Err(InvalidSelector(format!(
            "{other:?} is not a valid label selector operator"
        ))),
    }
}

/// Whether `labels` satisfy `selector`.
pub fn matches(selector: &LabelSelector, labels: Option<&Labels>) -> Result<bool, InvalidSelector> {
    let empty = Labels::new();
    let labels = labels.unwrap_or(&empty);
    for (k, v) in selector.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return Ok(false);
        }
    }
    for r in selector.match_expressions.iter().flatten() {
        if !requirement_matches(r, labels)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether `labels` carry every pair of a plain map selector (a Service's
/// or ReplicationController's). An empty map matches everything here;
/// callers that mean "selects nothing" check for emptiness first.
pub fn matches_map(selector: &Labels, labels: Option<&Labels>) -> bool {
    selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Whether the selector has no requirement at all.
pub fn is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector.match_expressions.as_ref().is_none_or(|e| e.is_empty())
}

/// The selector as a list's `labelSelector` string
/// (`app=web,tier in (a,b),!legacy`).
pub fn to_query(selector: &LabelSelector) -> Result<String, InvalidSelector> {
    let mut terms: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for r in selector.match_expressions.iter().flatten() {
        let values = r.values.as_deref().unwrap_or_default().join(",");
        terms.push(match r.operator.as_str() {
            "In" => format!("{} in ({values})", r.key),
            "NotIn" => format!("{} notin ({values})", r.key),
            "Exists" => r.key.clone(),
            "DoesNotExist" => format!("!{}", r.key),
            other => {
                return Err(InvalidSelector(format!(
                    "{other:?} is not a valid label selector operator"
                )))
            }
        });
    }
    Ok(terms.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn match_labels_and_expressions_must_all_hold() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                expr("tier", "In", &["a", "b"]),
                expr("env", "NotIn", &["dev"]),
                expr("legacy", "DoesNotExist", &[]),
            ]),
        };
        let yes = labels(&[("app", "web"), ("tier", "b")]);
        assert!(matches(&selector, Some(&yes)).unwrap());
        for no in [
            labels(&[("app", "db"), ("tier", "b")]),
            labels(&[("app", "web"), ("tier", "c")]),
            labels(&[("app", "web"), ("tier", "a"), ("env", "dev")]),
            labels(&[("app", "web"), ("tier", "a"), ("legacy", "")]),
        ] {
            assert!(!matches(&selector, Some(&no)).unwrap(), "{no:?}");
        }
        assert_eq!(
            to_query(&selector).unwrap(),
            "app=web,tier in (a,b),env notin (dev),!legacy"
        );
    }

    #[test]
    fn empty_selector_matches_everything_and_bad_operators_are_refused() {
        assert!(matches(&LabelSelector::default(), None).unwrap());
        assert!(is_empty(&LabelSelector::default()));
        let bad = LabelSelector {
            match_expressions: Some(vec![expr("a", "Near", &[])]),
            ..Default::default()
        };
        assert!(matches(&bad, None).is_err());
        assert!(to_query(&bad).is_err());
        assert!(matches_map(
            &labels(&[("a", "1")]),
            Some(&labels(&[("a", "1"), ("b", "2")]))
        ));
        assert!(!matches_map(&labels(&[("a", "1")]), None));
    }
}
