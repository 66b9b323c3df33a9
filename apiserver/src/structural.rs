//! Structural schemas: how a custom resource is checked and pruned.
//!
//! A CRD version's `openAPIV3Schema` says what its objects may hold. A
//! write is walked along it: a value of the wrong type, outside its enum or
//! bounds, or a missing required field is an error (422 with the field);
//! a field the schema does not declare is pruned, as Kubernetes prunes,
//! unless the schema says `x-kubernetes-preserve-unknown-fields` (with
//! strict field validation, unknown fields are refused instead).
//! `apiVersion`, `kind` and `metadata` are always allowed at the root.
//! Not checked: `pattern`, `format`, CEL validation rules.

use serde_json::Value;

/// What a walk found.
#[derive(Debug, Default)]
pub struct Findings {
    /// `(field, message)` of each violation.
    pub errors: Vec<(String, String)>,
    /// The unknown fields that were pruned.
    pub pruned: Vec<String>,
}

/// Checks and prunes `object` against `schema`, in place.
pub fn check(schema: &Value, object: &mut Value) -> Findings {
    let mut found = Findings::default();
    if let Some(fields) = object.as_object_mut() {
        for (key, value) in fields.iter_mut() {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match schema["properties"].get(key) {
                Some(sub) => walk(sub, value, key, &mut found),
                None if preserves(schema) => {}
                None => found.pruned.push(key.clone()),
            }
        }
        let pruned: Vec<String> = found.pruned.iter().filter(|p| !p.contains('.')).cloned().collect();
        for key in pruned {
            fields.remove(&key);
        }
    }
    required(schema, object, "", &mut found);
    found
}

fn preserves(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"] == true
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn required(schema: &Value, value: &Value, path: &str, found: &mut Findings) {
    for name in schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if value.get(name).is_none() {
            found.errors.push((join(path, name), "Required value".into()));
        }
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn walk(schema: &Value, value: &mut Value, path: &str, found: &mut Findings) {
    if value.is_null() {
        return; // null is "unset"; nullable or not, nothing to check
    }
    let actual = type_name(value);
    if schema["x-kubernetes-int-or-string"] == true {
        if !matches!(actual, "integer" | "string") {
            found.errors.push((
                path.into(),
                format!("Invalid value: {value}: must be an integer or a string"),
            ));
        }
        return;
    }
    let expected = schema["type"].as_str().unwrap_or_default();
    let fits = match expected {
        "" => true,
        "number" => matches!(actual, "number" | "integer"),
        other => other == actual,
    };
    if !fits {
        found.errors.push((
            path.into(),
            format!("Invalid value: \"{actual}\": {path} in body must be of type {expected}: \"{actual}\""),
        ));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            let listed: Vec<String> = allowed.iter().map(Value::to_string).collect();
            found.errors.push((
                path.into(),
                format!("Unsupported value: {value}: supported values: {}", listed.join(", ")),
            ));
        }
    }
    bounds(schema, value, path, found);
    match value {
        Value::Object(fields) => {
            let mut unknown = Vec::new();
            for (key, sub) in fields.iter_mut() {
                let here = join(path, key);
                if let Some(s) = schema["properties"].get(key) {
                    walk(s, sub, &here, found);
                } else if schema["additionalProperties"].is_object() {
                    walk(&schema["additionalProperties"], sub, &here, found);
                } else if !(preserves(schema) || schema["additionalProperties"] == true) {
                    unknown.push(key.clone());
                    found.pruned.push(here);
                }
            }
            for key in unknown {
                fields.remove(&key);
            }
            required(schema, value, path, found);
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(&schema["items"], item, &format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

fn bounds(schema: &Value, value: &Value, path: &str, found: &mut Findings) {
    let mut fail = |m: String| found.errors.push((path.into(), m));
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema["minimum"].as_f64().filter(|m| n < *m) {
            fail(format!(
                "Invalid value: {value}: {path} in body should be greater than or equal to {min}"
            ));
        }
        if let Some(max) = schema["maximum"].as_f64().filter(|m| n > *m) {
            fail(format!(
                "Invalid value: {value}: {path} in body should be less than or equal to {max}"
            ));
        }
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = schema["minLength"].as_u64().filter(|m| len < *m) {
            fail(format!(
                "Invalid value: {value}: {path} in body should be at least {min} chars long"
            ));
        }
        if let Some(max) = schema["maxLength"].as_u64().filter(|m| len > *m) {
            fail(format!("Too long: {path} may not be more than {max} bytes"));
        }
    }
    if let Some(items) = value.as_array() {
        let n = items.len() as u64;
        if let Some(min) = schema["minItems"].as_u64().filter(|m| n < *m) {
            fail(format!(
                "Invalid value: {path} in body should have at least {min} items"
            ));
        }
        if let Some(max) = schema["maxItems"].as_u64().filter(|m| n > *m) {
            fail(format!("Too many: {n}: must have at most {max} items"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["size"], "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "color": {"type": "string", "enum": ["red", "blue"]},
                "port": {"x-kubernetes-int-or-string": true},
                "tags": {"type": "array", "items": {"type": "string"}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}}})
    }

    #[test]
    fn valid_objects_pass_and_unknown_fields_are_pruned() {
        let mut o = json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "w"},
            "spec": {"size": 3, "color": "red", "port": "http", "tags": ["a"], "extra": {"any": {"thing": 1}},
                     "labels": {"a": "b"}, "typo": 1},
            "stray": true});
        let found = check(&schema(), &mut o);
        assert!(found.errors.is_empty(), "{:?}", found.errors);
        assert_eq!(found.pruned, ["spec.typo", "stray"]);
        assert!(o["spec"].get("typo").is_none() && o.get("stray").is_none());
        assert_eq!(o["spec"]["extra"]["any"]["thing"], 1, "preserved");
    }

    #[test]
    fn violations_name_their_fields() {
        let mut o = json!({"spec": {"size": "big", "color": "green", "tags": [1], "labels": {"a": 2}}});
        let found = check(&schema(), &mut o);
        let fields: Vec<&str> = found.errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["spec.color", "spec.labels.a", "spec.size", "spec.tags[0]"]);
        let mut o = json!({"spec": {"size": 11}});
        assert!(check(&schema(), &mut o).errors[0]
            .1
            .contains("less than or equal to 10"));
        let mut o = json!({"spec": {}});
        assert_eq!(
            check(&schema(), &mut o).errors[0],
            ("spec.size".to_string(), "Required value".to_string())
        );
    }
}
