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
            for part in path.split('.') {
                v = &v[part];
            }
            match v {
                Value::String(s) => Some(s.clone()),
                Value::Null => Some(String::new()),
                other => Some(other.to_string()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    }
}
