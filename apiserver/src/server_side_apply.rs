//! Server-side apply (`PATCH` with `application/apply-patch+yaml`): a
//! field manager declares the fields it wants, the server merges them.
//!
//! The applied configuration is what its manager (`?fieldManager=helm`)
//! wants now; the server compares it with what that manager applied last
//! time ([`managed_fields`]) and with what other managers own:
//!
//! - fields in the configuration are set, merged into the live object
//!   (maps by key, associative lists by their keys, atomic lists whole);
//! - fields the manager applied before and no longer mentions are removed,
//!   unless another manager owns them too;
//! - a field another manager owns with a different value is a conflict:
//!   409 naming each field and its owner, unless `force=true`, which takes
//!   the fields over;
//! - an object that does not exist is created from the configuration,
//!   which is how Helm 4 installs every chart object.

use serde_json::{json, Value};

use crate::managed_fields::{self, fields_of, Entry, FieldSet, Step};
use crate::request_info::RequestInfo;
use crate::rest::App;
use crate::status::ApiError;
use crate::strategic_merge::{strategy, Strategy};
use crate::verbs::{self, WriteOptions};

type Result<T> = std::result::Result<T, ApiError>;

const ATTEMPTS: usize = 5;

/// Merges `config` into `live`, as apply sets fields.
fn merge(schema: Option<&str>, live: &mut Value, config: &Value) {
    let Some(fields) = config.as_object() else {
        *live = config.clone();
        return;
    };
    if !live.is_object() {
        *live = json!({});
    }
    for (key, value) in fields {
        let field_schema = schema.and_then(|s| crate::types::field_schema(s, key));
        match value {
            Value::Object(m) if !m.is_empty() => merge(field_schema, &mut live[key], value),
            Value::Array(items) => match strategy(schema, key) {
                Strategy::MergeBy(k) if live[key].is_array() => {
                    for item in items {
                        let found = live[key]
                            .as_array_mut()
                            .and_then(|list| list.iter_mut().find(|l| l.get(k).is_some() && l.get(k) == item.get(k)));
                        match found {
                            Some(existing) => merge(field_schema, existing, item),
                            None => {
                                if let Some(list) = live[key].as_array_mut() {
                                    list.push(item.clone());
                                }
                            }
                        }
                    }
                }
                Strategy::Union if live[key].is_array() => {
                    for item in items {
                        if let Some(list) = live[key].as_array_mut() {
                            if !list.contains(item) {
                                list.push(item.clone());
                            }
                        }
                    }
                }
                _ => live[key] = value.clone(),
            },
            _ => live[key] = value.clone(),
        }
    }
}

fn conflict_error(info: &RequestInfo, conflicts: &[(String, String, String)]) -> ApiError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(manager, version, field)| {
            json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{manager}\" using {version}"), "field": field})
        })
        .collect();
    let mut lines = vec![format!(
        "Apply failed with {} conflict{}:",
        conflicts.len(),
        if conflicts.len() == 1 { "" } else { "s" }
    )];
    for (manager, version, field) in conflicts {
        lines.push(format!("conflict with \"{manager}\" using {version}: {field}"));
    }
    ApiError {
        code: 409,
        reason: "Conflict",
        message: lines.join("\n"),
        details: Some(json!({
            "name": info.name,
            "group": info.resource.group,
            "kind": info.resource.plural,
            "causes": causes,
        })),
    }
}

/// The merged object and its managed fields, or the conflicts.
fn plan(
    info: &RequestInfo,
    schema: Option<&str>,
    live: &Value,
    config: &Value,
    manager: &str,
    force: bool,
) -> Result<Value> {
    let status = info.subresource.as_deref() == Some("status");
    let subresource = info.subresource.clone().unwrap_or_default();
    let wanted = fields_of(schema, config, status);
    let mut entries = managed_fields::read_entries(live);
    // A manager is its name, operation and subresource together: the same
    // name updating (kubectl scale) and applying (kubectl apply) are two.
    let mine = |e: &Entry| e.manager == manager && e.operation == "Apply" && e.subresource == subresource;
    // Conflicts: a field someone else owns, set to another value.
    let mut conflicts = Vec::new();
    let mut taken = FieldSet::default();
    for path in &wanted.0 {
        if !matches!(path.last(), Some(Step::Field(_))) {
            continue;
        }
        if managed_fields::get(live, path) == managed_fields::get(config, path) {
            continue;
        }
        for e in entries.iter().filter(|e| !mine(e) && e.fields.contains(path)) {
            conflicts.push((e.manager.clone(), e.api_version.clone(), managed_fields::display(path)));
            taken.0.insert(path.clone());
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(info, &conflicts));
    }
    for e in entries.iter_mut() {
        if !mine(e) {
            e.fields.remove_all(&taken);
        }
    }
    // What this manager applied before and has dropped now goes, unless
    // someone else also owns it.
    let before = entries
        .iter()
        .find(|e| mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut merged = live.clone();
    for path in before.difference(&wanted).0.iter().rev() {
        let shared = entries.iter().any(|e| !mine(e) && e.fields.contains(path));
        if !shared {
            managed_fields::remove(&mut merged, path);
        }
    }
    let body = if status {
        json!({"status": config["status"]})
    } else {
        without_status(config)
    };
    merge(schema, &mut merged, &body);
    entries.retain(|e| !mine(e));
    entries.push(Entry {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version: info.resource.api_version(),
        subresource,
        time: crate::registry::now(),
        fields: wanted,
    });
    managed_fields::write_entries(&mut merged, &entries);
    Ok(merged)
}

fn without_status(config: &Value) -> Value {
    let mut c = config.clone();
    if let Some(m) = c.as_object_mut() {
        m.remove("status");
    }
    c
}

/// Applies `body` (YAML or JSON) as `opts.field_manager`.
pub async fn apply(app: &App, info: &RequestInfo, body: &[u8], opts: &WriteOptions, force: bool) -> Result<Value> {
    let manager = opts.field_manager.clone().filter(|m| !m.is_empty()).ok_or_else(|| {
        ApiError::invalid(
            "PatchOptions",
            "",
            "fieldManager",
            "Required value: is required for apply patch",
        )
    })?;
    let config: Value =
        serde_yaml::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !config.is_object() {
        return Err(ApiError::bad_request("an applied configuration must be an object"));
    }
    let r = info.resource;
    let kind_ok = config["kind"].as_str() == Some(r.kind) && config["apiVersion"].as_str() == Some(&r.api_version());
    if !kind_ok {
        return Err(ApiError::bad_request(format!(
            "the applied configuration must have apiVersion {} and kind {}",
            r.api_version(),
            r.kind
        )));
    }
    let name = info.name.clone().unwrap_or_default();
    if config["metadata"]["name"].as_str().is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(
            "the name of the object does not match the name on the URL",
        ));
    }
    let schema = crate::types::find(r.group, r.version, r.kind).map(|t| t.schema_name.as_str());
    let applied = WriteOptions {
        apply: true,
        ..opts.clone()
    };
    let main = RequestInfo {
        subresource: None,
        ..info.clone()
    };
    for _ in 0..ATTEMPTS {
        match verbs::read(app, &main).await {
            Err(e) if e.code == 404 && info.subresource.is_none() => {
                let mut object = without_status(&config);
                object["metadata"]["name"] = json!(name);
                let fields = fields_of(schema, &object, false);
                managed_fields::write_entries(
                    &mut object,
                    &[Entry {
                        manager: manager.clone(),
                        operation: "Apply".into(),
                        api_version: r.api_version(),
                        subresource: String::new(),
                        time: crate::registry::now(),
                        fields,
                    }],
                );
                let collection = RequestInfo {
                    name: None,
                    ..main.clone()
                };
                match verbs::create(app, &collection, object, &applied).await {
                    Err(e) if e.reason == "AlreadyExists" => continue,
                    other => return other,
                }
            }
            Err(e) => return Err(e),
            Ok((live, revision)) => {
                let merged = plan(info, schema, &live, &config, &manager, force)?;
                match verbs::write_update(app, info, &live, revision, merged, &applied).await {
                    Err(e)
                        if e.code == 409
                            && e.reason == "Conflict"
                            && e.details.as_ref().is_none_or(|d| d.get("causes").is_none()) =>
                    {
                        continue
                    }
                    other => return other,
                }
            }
        }
    }
    Err(ApiError::conflict(r.plural, r.group, &name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> RequestInfo {
        crate::request_info::parse("/apis/apps/v1/namespaces/shop/deployments/web").unwrap()
    }

    const SCHEMA: Option<&str> = Some("io.k8s.api.apps.v1.Deployment");

    fn config(replicas: i64, image: &str, with_label: bool) -> Value {
        let mut c = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "app", "image": image}]}}}});
        if with_label {
            c["metadata"]["labels"] = json!({"tier": "front"});
        }
        c
    }

    #[test]
    fn apply_sets_removes_and_detects_conflicts() {
        let first = plan(
            &info(),
            SCHEMA,
            &json!({"metadata": {"name": "web"}}),
            &config(2, "a:1", true),
            "helm",
            false,
        )
        .unwrap();
        assert_eq!(first["spec"]["replicas"], 2);
        assert_eq!(first["metadata"]["labels"]["tier"], "front");
        assert_eq!(first["metadata"]["managedFields"][0]["manager"], "helm");

        // Dropping the label from the configuration removes it.
        let second = plan(&info(), SCHEMA, &first, &config(2, "a:2", false), "helm", false).unwrap();
        assert!(
            second["metadata"].get("labels").is_none_or(|l| l.get("tier").is_none()),
            "{second}"
        );
        assert_eq!(second["spec"]["template"]["spec"]["containers"][0]["image"], "a:2");

        // Another manager changed replicas: applying a different value conflicts.
        let mut scaled = second.clone();
        scaled["spec"]["replicas"] = json!(5);
        let mut entries = managed_fields::read_entries(&second);
        let (changed, removed) = managed_fields::changes(SCHEMA, &second, &scaled, false);
        managed_fields::record_update(&mut entries, "kubectl", "apps/v1", "", &changed, &removed);
        managed_fields::write_entries(&mut scaled, &entries);
        let e = plan(&info(), SCHEMA, &scaled, &config(3, "a:2", false), "helm", false).unwrap_err();
        assert_eq!(e.code, 409);
        assert!(
            e.message
                .contains(r#"conflict with "kubectl" using apps/v1: .spec.replicas"#),
            "{}",
            e.message
        );
        // The same value is no conflict; force takes the field over.
        assert!(plan(&info(), SCHEMA, &scaled, &config(5, "a:2", false), "helm", false).is_ok());
        let forced = plan(&info(), SCHEMA, &scaled, &config(3, "a:2", false), "helm", true).unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        let owners = managed_fields::read_entries(&forced);
        assert!(
            owners.iter().all(|e| e.manager == "helm"),
            "kubectl lost replicas, its only field"
        );
    }
}
