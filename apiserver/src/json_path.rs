//! The small JSONPath subset CRDs use to point into their objects:
//! `.spec.replicas`, `.status.conditions[0].type`, `.metadata.labels.app`
//! (printer columns' `jsonPath`, the scale subresource's
//! `specReplicasPath`, `statusReplicasPath` and `labelSelectorPath`).

use serde_json::Value;

/// The path's steps: field names and list indexes.
enum Step<'a> {
    Field(&'a str),
    Index(usize),
}

fn steps(path: &str) -> Option<Vec<Step<'_>>> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let path = path.strip_prefix('.')?;
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            out.push(Step::Field(name));
        }
        while let Some((index, after)) = rest.split_once(']') {
            out.push(Step::Index(index.parse().ok()?));
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    Some(out)
}

/// The value at `path` in `object`; null when absent or not a valid path.
pub fn get<'a>(object: &'a Value, path: &str) -> &'a Value {
    let Some(steps) = steps(path) else {
        return &Value::Null;
    };
    let mut v = object;
    for step in steps {
        v = match step {
            Step::Field(name) => &v[name],
            Step::Index(i) => &v[i],
        };
    }
    v
}

/// Sets the value at `path` (fields only), creating objects on the way;
/// false if the path is not a plain field path.
pub fn set(object: &mut Value, path: &str, value: Value) -> bool {
    let Some(steps) = steps(path) else {
        return false;
    };
    let mut v = object;
    for step in steps {
        let Step::Field(name) = step else {
            return false;
        };
        if !v.is_object() {
            *v = Value::Object(serde_json::Map::new());
        }
        v = &mut v[name];
    }
    *v = value;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_read_and_write() {
        let mut o = json!({"spec": {"replicas": 3}, "status": {"conditions": [{"type": "Ready"}]}});
        assert_eq!(get(&o, ".spec.replicas"), &json!(3));
        assert_eq!(get(&o, ".status.conditions[0].type"), &json!("Ready"));
        assert_eq!(get(&o, "{.spec.replicas}"), &json!(3));
        assert!(get(&o, ".spec.missing.deeper").is_null());
        assert!(get(&o, "spec").is_null(), "a path starts with a dot");
        assert!(set(&mut o, ".status.replicas", json!(2)));
        assert_eq!(o["status"]["replicas"], 2);
        assert!(!set(&mut o, ".status.conditions[0].type", json!("x")));
    }
}
