//! The served kinds as Rust types: each kind's JSON schema (for the
//! OpenAPI documents) and a typed round trip (for decoding and pruning).
//!
//! Kubernetes decodes every object into its Go struct and encodes it
//! again before storing it, which rejects a wrongly typed field
//! (`replicas: "three"`) and drops fields the type does not have. The round
//! trip through the k8s-openapi type does the same here, and comparing
//! what went in with what came out names the unknown fields that strict
//! field validation refuses.

use std::sync::LazyLock;

use k8s_openapi::Resource;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// One served kind.
pub struct TypeInfo {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The name of its schema (`io.k8s.api.apps.v1.Deployment`).
    pub schema_name: String,
    /// Adds its schema (and the schemas it refers to) to a generator.
    pub schema: fn(&mut SchemaGenerator) -> Schema,
    /// Decodes into the type and encodes again.
    pub round_trip: fn(&Value) -> Result<Value, String>,
}

fn info<T: Resource + JsonSchema + Serialize + DeserializeOwned>() -> TypeInfo {
    TypeInfo {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        schema_name: T::schema_name().to_string(),
        schema: |generator| generator.subschema_for::<T>(),
        round_trip: |value| {
            let typed: T = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
            serde_json::to_value(typed).map_err(|e| e.to_string())
        },
    }
}

macro_rules! every_info {
    ($($t:ty),+ $(,)?) => {
        fn every_info() -> Vec<TypeInfo> {
            vec![$(info::<$t>()),+]
        }
    };
}
api::with_every_type!(every_info);

static TYPES: LazyLock<Vec<TypeInfo>> = LazyLock::new(every_info);

pub fn all() -> &'static [TypeInfo] {
    &TYPES
}

pub fn find(group: &str, version: &str, kind: &str) -> Option<&'static TypeInfo> {
    TYPES
        .iter()
        .find(|t| t.group == group && t.version == version && t.kind == kind)
}

/// Every schema the served kinds use, by name (`#/definitions/…` refs).
static DEFINITIONS: LazyLock<serde_json::Map<String, Value>> = LazyLock::new(|| {
    let mut generator = schemars::generate::SchemaSettings::draft07().into_generator();
    for t in TYPES.iter() {
        (t.schema)(&mut generator);
    }
    generator.take_definitions(true)
});

/// All schemas, for documents that carry them all.
pub fn definitions() -> &'static serde_json::Map<String, Value> {
    &DEFINITIONS
}

/// The schema a field of `schema` refers to (for a list, its elements'):
/// how a walk down an object knows what type it is in.
pub fn field_schema(schema: &str, field: &str) -> Option<&'static str> {
    let property = &DEFINITIONS.get(schema)?["properties"][field];
    let target = if property["items"].is_object() {
        &property["items"]
    } else {
        property
    };
    let reference = target["$ref"]
        .as_str()
        .or_else(|| target["allOf"][0]["$ref"].as_str())?;
    let name = reference.rsplit('/').next()?;
    DEFINITIONS.get_key_value(name).map(|(k, _)| k.as_str())
}

/// The fields of `input` that `output` (its round trip) lost, as dotted
/// paths (`spec.replicass`, `spec.template.spec.containers[0].imag`).
/// A field set to null is not unknown, only empty.
pub fn unknown_fields(input: &Value, output: &Value) -> Vec<String> {
    let mut lost = Vec::new();
    walk(input, output, "", &mut lost);
    lost
}

fn walk(input: &Value, output: &Value, path: &str, lost: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (key, value) in i {
                let here = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match o.get(key) {
                    Some(out) => walk(value, out, &here, lost),
                    None if value.is_null() => {}
                    None => lost.push(here),
                }
            }
        }
        (Value::Array(i), Value::Array(o)) => {
            for (n, (a, b)) in i.iter().zip(o).enumerate() {
                walk(a, b, &format!("{path}[{n}]"), lost);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_prune_and_name_unknown_fields() {
        let deployment = find("apps", "v1", "Deployment").unwrap();
        assert_eq!(deployment.schema_name, "io.k8s.api.apps.v1.Deployment");
        let input = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": null},
            "spec": {"replicass": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": [{"name": "a", "imag": "x"}]}}}});
        let output = (deployment.round_trip)(&input).unwrap();
        assert!(output["spec"].get("replicass").is_none(), "pruned");
        assert_eq!(
            unknown_fields(&input, &output),
            ["spec.replicass", "spec.template.spec.containers[0].imag"]
        );
        let wrong = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
                           "spec": {"replicas": "three", "selector": {}, "template": {}}});
        assert!((deployment.round_trip)(&wrong).unwrap_err().contains("invalid type"));
        assert_eq!(all().len(), api::resources::RESOURCES.len());
        assert_eq!(
            field_schema("io.k8s.api.apps.v1.Deployment", "spec"),
            Some("io.k8s.api.apps.v1.DeploymentSpec")
        );
        assert_eq!(
            field_schema("io.k8s.api.core.v1.PodSpec", "containers"),
            Some("io.k8s.api.core.v1.Container")
        );
        assert_eq!(field_schema("io.k8s.api.core.v1.PodSpec", "nodeName"), None);
    }
}
