//! The OpenAPI documents: `/openapi/v2` (one Swagger 2.0 document) and
//! `/openapi/v3` (an index of one OpenAPI 3.0 document per group-version).
//!
//! kubectl reads them to explain fields (`kubectl explain`), and before an
//! apply or create it looks in the v3 document for a PATCH operation of the
//! kind that declares the `fieldValidation` query parameter: if it finds
//! one it leaves validation to the server (`fieldValidation=Strict`)
//! instead of validating client-side. Schemas come from the k8s-openapi
//! types ([`types`]); each kind's schema and each operation
//! carries `x-kubernetes-group-version-kind`, which is how clients find the
//! schema of a kind. Documents are built once, on first use.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use api::resources::{self, ResourceInfo};
use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

use crate::discovery::KUBE_MINOR;
use crate::strategic_merge::Strategy;
use crate::types;

fn gvk(r: &ResourceInfo) -> Value {
    json!({"group": r.group, "version": r.version, "kind": r.kind})
}

fn base(r: &ResourceInfo) -> String {
    let root = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    if r.namespaced {
        format!("{root}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{root}/{}", r.plural)
    }
}

/// Query parameters, OpenAPI 3 style (`schema`) or Swagger 2 style (`type`).
fn query(name: &str, description: &str, v3: bool) -> Value {
    if v3 {
        json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
    } else {
        json!({"name": name, "in": "query", "description": description, "type": "string", "uniqueItems": true})
    }
}

fn path_param(name: &str, v3: bool) -> Value {
    let description = format!("{name} of the object");
    if v3 {
        json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string"}})
    } else {
        json!({"name": name, "in": "path", "required": true, "description": description, "type": "string"})
    }
}

fn write_params(v3: bool) -> Vec<Value> {
    vec![
        query(
            "dryRun",
            "When present, modifications are not persisted. Valid value: All.",
            v3,
        ),
        query(
            "fieldManager",
            "A name associated with the actor making these changes.",
            v3,
        ),
        query(
            "fieldValidation",
            "How the server treats unknown or duplicate fields: Ignore, Warn or Strict.",
            v3,
        ),
    ]
}

/// The operations of one resource: list/create on the collection,
/// get/replace/patch/delete on an object, and the status subresource.
fn operations(r: &ResourceInfo, schema_ref: &str, v3: bool) -> Vec<(String, Value)> {
    let reference = json!({"$ref": schema_ref});
    let op = |action: &str, id: &str, extra: Vec<Value>, body: bool| {
        let mut o = json!({
            "operationId": format!("{id}{}", r.kind),
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk(r),
            "parameters": extra,
        });
        if v3 {
            o["responses"] = json!({"200": {"description": "OK",
                "content": {"application/json": {"schema": reference.clone()}}}});
            if body {
                o["requestBody"] = json!({"required": true,
                    "content": {"application/json": {"schema": reference.clone()}}});
            }
        } else {
            o["responses"] = json!({"200": {"description": "OK", "schema": reference.clone()}});
            if body {
                if let Some(params) = o["parameters"].as_array_mut() {
                    params.push(json!({"name": "body", "in": "body", "required": true, "schema": reference.clone()}));
                }
            }
        }
        o
    };
    let namespace = r.namespaced.then(|| path_param("namespace", v3));
    let mut paths = Vec::new();
    let mut collection = Map::new();
    if r.has_verb("list") {
        let selectors = vec![
            query("labelSelector", "A selector to restrict the list by labels.", v3),
            query("fieldSelector", "A selector to restrict the list by fields.", v3),
            query("resourceVersion", "Which version of the list to serve.", v3),
            query("limit", "The most items to return.", v3),
            query("continue", "The token of the previous page.", v3),
            query("watch", "Watch for changes instead of listing.", v3),
        ];
        collection.insert("get".into(), op("list", "list", selectors, false));
    }
    if r.has_verb("create") {
        collection.insert("post".into(), op("post", "create", write_params(v3), true));
    }
    if !collection.is_empty() {
        collection.insert(
            "parameters".into(),
            json!(namespace.iter().cloned().collect::<Vec<_>>()),
        );
        paths.push((base(r), Value::Object(collection)));
    }
    let mut item = Map::new();
    if r.has_verb("get") {
        item.insert("get".into(), op("get", "read", vec![], false));
    }
    if r.has_verb("update") {
        item.insert("put".into(), op("put", "replace", write_params(v3), true));
    }
    if r.has_verb("patch") {
        item.insert("patch".into(), op("patch", "patch", write_params(v3), true));
    }
    if r.has_verb("delete") {
        item.insert("delete".into(), op("delete", "delete", vec![], false));
    }
    let mut params: Vec<Value> = vec![path_param("name", v3)];
    params.extend(namespace.clone());
    if !item.is_empty() {
        item.insert("parameters".into(), json!(params));
        paths.push((format!("{}/{{name}}", base(r)), Value::Object(item)));
    }
    if r.subresource("status").is_some() {
        let mut status = Map::new();
        status.insert("get".into(), op("get", "readStatus", vec![], false));
        status.insert("put".into(), op("put", "replaceStatus", write_params(v3), true));
        status.insert("patch".into(), op("patch", "patchStatus", write_params(v3), true));
        status.insert("parameters".into(), json!(params));
        paths.push((format!("{}/{{name}}/status", base(r)), Value::Object(status)));
    }
    paths
}

/// Schemas for `resources`, with the kinds marked by their GVK.
fn schemas(resources: &[&ResourceInfo], settings: SchemaSettings) -> Map<String, Value> {
    let mut generator = settings.into_generator();
    for r in resources {
        if let Some(t) = types::find(r.group, r.version, r.kind) {
            (t.schema)(&mut generator);
        }
    }
    let mut definitions = generator.take_definitions(true);
    // The patch strategies, so that kubectl computes the patches the
    // server applies.
    for (schema, field, strategy) in crate::strategic_merge::PATCH_STRATEGIES {
        let Some(Value::Object(property)) = definitions
            .get_mut(*schema)
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(*field))
        else {
            continue;
        };
        match strategy {
            Strategy::MergeBy(key) => {
                property.insert("x-kubernetes-patch-strategy".into(), json!("merge"));
                property.insert("x-kubernetes-patch-merge-key".into(), json!(key));
            }
            Strategy::Union => {
                property.insert("x-kubernetes-patch-strategy".into(), json!("merge"));
            }
            Strategy::Replace => {}
        }
    }
    for r in resources {
        if let Some(t) = types::find(r.group, r.version, r.kind) {
            if let Some(Value::Object(schema)) = definitions.get_mut(&t.schema_name) {
                schema.insert("x-kubernetes-group-version-kind".into(), json!([gvk(r)]));
                // k8s-openapi's types make `metadata` a plain field, so the
                // generated schema requires it; Kubernetes does not (a
                // review is sent without any), and kubectl checks.
                if let Some(Value::Array(required)) = schema.get_mut("required") {
                    required.retain(|f| f != "metadata");
                    if required.is_empty() {
                        schema.remove("required");
                    }
                }
            }
        }
    }
    definitions.into_iter().collect()
}

fn info() -> Value {
    json!({"title": "Kubernetes", "version": format!("v1.{KUBE_MINOR}.0")})
}

/// The OpenAPI 3.0 document of one group-version.
fn v3_document(group: &str, version: &str) -> Value {
    let served: Vec<&ResourceInfo> = resources::RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    let mut paths = Map::new();
    for r in &served {
        let Some(t) = types::find(r.group, r.version, r.kind) else {
            continue;
        };
        for (path, item) in operations(r, &format!("#/components/schemas/{}", t.schema_name), true) {
            paths.insert(path, item);
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": paths,
        "components": {"schemas": schemas(&served, SchemaSettings::openapi3())},
    })
}

/// `group/version` as the v3 index names it: `api/v1`, `apis/apps/v1`.
fn v3_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

struct Documents {
    /// The v3 documents by key, as text, with their hashes.
    v3: BTreeMap<String, (String, String)>,
    v2: String,
}

fn hash(text: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    format!("{:016X}", h.finish())
}

static DOCUMENTS: LazyLock<Documents> = LazyLock::new(|| {
    let mut v3 = BTreeMap::new();
    for (group, version) in resources::group_versions() {
        let text = v3_document(group, version).to_string();
        v3.insert(v3_key(group, version), (hash(&text), text));
    }
    let all: Vec<&ResourceInfo> = resources::RESOURCES.iter().collect();
    let mut paths = Map::new();
    for r in &all {
        let Some(t) = types::find(r.group, r.version, r.kind) else {
            continue;
        };
        for (path, item) in operations(r, &format!("#/definitions/{}", t.schema_name), false) {
            paths.insert(path, item);
        }
    }
    let v2 = json!({
        "swagger": "2.0",
        "info": info(),
        "paths": paths,
        "definitions": schemas(&all, SchemaSettings::draft07()),
    })
    .to_string();
    Documents { v3, v2 }
});

/// A custom resource's schema name, as the apiextensions server names
/// it: the group reversed, the version, the kind (`com.example.v1.Widget`).
fn custom_schema_name(r: &ResourceInfo) -> String {
    let reversed: Vec<&str> = r.group.split('.').rev().collect();
    format!("{}.{}.{}", reversed.join("."), r.version, r.kind)
}

/// The OpenAPI 3.0 document of a custom resources' group-version, built
/// from its CRDs at each request (CRDs come and go at run time), so that
/// `kubectl explain` knows them; `None` when no CRD serves it.
fn custom_v3_document(group: &str, version: &str) -> Option<Value> {
    let served: Vec<crate::crd::Served> = crate::crd::all()
        .into_iter()
        .filter(|r| r.group == group && r.version == version)
        .filter_map(|r| crate::crd::find(r.group, r.version, r.plural))
        .collect();
    if served.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for s in &served {
        let name = custom_schema_name(s.info);
        for (path, item) in operations(s.info, &format!("#/components/schemas/{name}"), true) {
            paths.insert(path, item);
        }
        let mut schema = (*s.schema).clone();
        if !schema.is_object() {
            schema = json!({"type": "object"});
        }
        schema["x-kubernetes-group-version-kind"] = json!([gvk(s.info)]);
        let properties = &mut schema["properties"];
        if !properties.is_object() {
            *properties = json!({});
        }
        properties["apiVersion"] = json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."});
        properties["kind"] = json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."});
        properties["metadata"] = json!({"type": "object", "description": "Standard object's metadata."});
        schemas.insert(name, schema);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// `/openapi/v3`: where each group-version's document is, built-in and
/// custom.
pub fn v3_index() -> Value {
    let mut paths: Map<String, Value> = DOCUMENTS
        .v3
        .iter()
        .map(|(key, (hash, _))| {
            (
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}),
            )
        })
        .collect();
    for r in crate::crd::all() {
        let key = v3_key(r.group, r.version);
        if paths.contains_key(&key) {
            continue;
        }
        if let Some(doc) = custom_v3_document(r.group, r.version) {
            let hash = hash(&doc.to_string());
            paths.insert(
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}),
            );
        }
    }
    json!({"paths": paths})
}

/// `/openapi/v3/<key>`, as JSON text.
pub fn v3(key: &str) -> Option<String> {
    if let Some((_, text)) = DOCUMENTS.v3.get(key) {
        return Some(text.clone());
    }
    let (group, version) = key.strip_prefix("apis/")?.split_once('/')?;
    custom_v3_document(group, version).map(|doc| doc.to_string())
}

/// `/openapi/v2`, as JSON text.
pub fn v2() -> &'static str {
    &DOCUMENTS.v2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_name_kinds_and_declare_field_validation() {
        let doc: Value = serde_json::from_str(&v3("apis/apps/v1").unwrap()).unwrap();
        let deployment = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
        );
        assert!(
            doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"].is_object(),
            "referenced schemas come along"
        );
        let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
        let spec_ref = deployment["properties"]["spec"].to_string();
        assert!(
            spec_ref.contains("#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"),
            "{spec_ref}"
        );

        let index = v3_index();
        let url = index["paths"]["api/v1"]["serverRelativeURL"].as_str().unwrap();
        assert!(url.starts_with("/openapi/v3/api/v1?hash="), "{url}");
        let v2: Value = serde_json::from_str(v2()).unwrap();
        assert_eq!(v2["swagger"], "2.0");
        assert!(v2["definitions"]["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"].is_array());
        assert!(v2.to_string().contains("#/definitions/io.k8s.api.core.v1.PodSpec"));
        let containers = &doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    }
}
