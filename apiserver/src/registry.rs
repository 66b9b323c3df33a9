//! Registry rules: what the API server does to an object on its way into
//! and out of storage, whatever the resource.
//!
//! On create it checks the kind and names, fills `uid`,
//! `creationTimestamp` and `generation`, and settles the namespace; on
//! update it keeps what clients may not change and bumps `generation`
//! when the spec changes; a status update changes only `status`, and an
//! ordinary update never does. `resourceVersion` is never stored: it is
//! the key's mod revision, written into each object as it is read.

use api::resources::ResourceInfo;
use serde_json::{json, Map, Value};

use crate::request_info::RequestInfo;
use crate::status::ApiError;

/// Whether `name` is a DNS-1123 subdomain (Kubernetes' rule for most names).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// RFC 3339 UTC, seconds precision, as Kubernetes writes timestamps.
pub fn now() -> String {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn metadata(object: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let Some(map) = object.as_object_mut() else {
        return Err(ApiError::bad_request("the request body must be a JSON or YAML object"));
    };
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    meta.as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

/// Checks `apiVersion` and `kind` (when given) against the resource.
fn check_type(resource: &ResourceInfo, object: &mut Value) -> Result<(), ApiError> {
    let want_version = resource.api_version();
    match object.get("apiVersion").and_then(Value::as_str) {
        Some(v) if v != want_version => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({want_version})"
            )))
        }
        _ => {}
    }
    match object.get("kind").and_then(Value::as_str) {
        Some(k) if k != resource.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                resource.kind
            )))
        }
        _ => {}
    }
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".into(), json!(want_version));
        map.insert("kind".into(), json!(resource.kind));
    }
    Ok(())
}

/// Settles the namespace of `object` against the request's.
fn check_namespace(info: &RequestInfo, meta: &mut Map<String, Value>) -> Result<(), ApiError> {
    if !info.resource.namespaced {
        meta.remove("namespace");
        return Ok(());
    }
    let path_ns = info.namespace.as_deref().unwrap_or_default();
    match meta.get("namespace").and_then(Value::as_str) {
        Some(ns) if !path_ns.is_empty() && ns != path_ns => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            meta.insert("namespace".into(), json!(path_ns));
            Ok(())
        }
    }
}

/// Prepares a new object for storage; returns its name and the object.
pub fn prepare_create(info: &RequestInfo, mut object: Value) -> Result<(String, Value), ApiError> {
    check_type(info.resource, &mut object)?;
    let kind = info.resource.kind;
    let meta = metadata(&mut object)?;
    let name = match meta.get("name").and_then(Value::as_str) {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => match meta.get("generateName").and_then(Value::as_str) {
            Some(prefix) if !prefix.is_empty() => {
                let suffix: String = uuid::Uuid::new_v4().simple().to_string().chars().take(5).collect();
                format!("{prefix}{suffix}")
            }
            _ => {
                return Err(ApiError::invalid(
                    kind,
                    "",
                    "metadata.name",
                    "Required value: name or generateName is required",
                ))
            }
        },
    };
    if !valid_name(&name) {
        return Err(ApiError::invalid(
            kind,
            &name,
            "metadata.name",
            "Invalid value: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        ));
    }
    if let Some(path_name) = &info.name {
        if *path_name != name {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
    }
    check_namespace(info, meta)?;
    meta.insert("name".into(), json!(name));
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(now()));
    meta.insert("generation".into(), json!(1));
    for field in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        meta.remove(field);
    }
    fold_string_data(info, &mut object);
    if info.resource.plural == "namespaces" && info.resource.group.is_empty() {
        object["status"] = json!({"phase": "Active"});
        let spec = object
            .as_object_mut()
            .map(|o| o.entry("spec").or_insert_with(|| json!({})).clone());
        if let Some(mut spec) = spec {
            spec["finalizers"] = json!(["kubernetes"]);
            object["spec"] = spec;
        }
    }
    Ok((name, object))
}

/// A Secret's `stringData` is a write-only convenience: its entries are
/// stored base64-encoded in `data` (overriding keys of the same name) and
/// the field itself is dropped, as Kubernetes does.
fn fold_string_data(info: &RequestInfo, object: &mut Value) {
    use base64::Engine;
    if info.resource.plural != "secrets" || !info.resource.group.is_empty() {
        return;
    }
    let Some(plain) = object.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    let Some(entries) = plain.as_object() else { return };
    if !object["data"].is_object() {
        object["data"] = json!({});
    }
    for (key, value) in entries {
        let text = value.as_str().unwrap_or_default();
        object["data"][key] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

/// Prepares a replacement of `existing` by `object` (a PUT of the object
/// or, with `status`, of its status subresource).
pub fn prepare_update(info: &RequestInfo, existing: &Value, mut object: Value) -> Result<Value, ApiError> {
    check_type(info.resource, &mut object)?;
    let name = info.name.clone().unwrap_or_default();
    if info.subresource.as_deref() == Some("finalize") {
        // namespaces/{name}/finalize: only spec.finalizers changes.
        let mut merged = existing.clone();
        merged["spec"]["finalizers"] = object["spec"].get("finalizers").cloned().unwrap_or(json!([]));
        return Ok(merged);
    }
    if info.subresource.as_deref() == Some("approval") {
        // certificatesigningrequests/{name}/approval: only the Approved,
        // Denied (and Failed) conditions change; the signer writes the
        // certificate through status.
        let mut merged = existing.clone();
        let conditions = object["status"].get("conditions").cloned().unwrap_or(json!([]));
        let flag = |kind: &str| {
            conditions
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == kind && c["status"] == "True")
        };
        let had = |kind: &str| {
            existing["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == kind && c["status"] == "True")
        };
        for kind in ["Approved", "Denied"] {
            if had(kind) && !flag(kind) {
                return Err(ApiError::invalid(
                    "CertificateSigningRequest",
                    &name,
                    "status.conditions",
                    &format!("Forbidden: updates may not remove a condition of type \"{kind}\""),
                ));
            }
        }
        if flag("Approved") && flag("Denied") {
            return Err(ApiError::invalid(
                "CertificateSigningRequest",
                &name,
                "status.conditions",
                "Invalid value: \"Approved\": Approved and Denied conditions are mutually exclusive",
            ));
        }
        merged["status"]["conditions"] = conditions;
        return Ok(merged);
    }
    let status_update = info.subresource.as_deref() == Some("status");
    let has_status = info.resource.subresource("status").is_some();
    if status_update {
        // Only the status changes.
        let mut merged = existing.clone();
        merged["status"] = object.get("status").cloned().unwrap_or(Value::Null);
        return Ok(merged);
    }
    fold_string_data(info, &mut object);
    let meta = metadata(&mut object)?;
    match meta.get("name").and_then(Value::as_str) {
        Some(n) if n != name => {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ))
        }
        _ => {}
    }
    check_namespace(info, meta)?;
    meta.insert("name".into(), json!(name));
    for field in [
        "uid",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match existing["metadata"].get(field) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
    meta.remove("resourceVersion");
    if has_status {
        // The main resource does not change status.
        match existing.get("status") {
            Some(s) => object["status"] = s.clone(),
            None => {
                if let Some(o) = object.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    if object.get("spec") != existing.get("spec") {
        let generation = existing["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        object["metadata"]["generation"] = json!(generation);
    }
    Ok(object)
}

/// The object as clients see it: with its resourceVersion.
pub fn with_version(mut object: Value, revision: i64) -> Value {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), json!(revision.to_string()));
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request_info::parse;

    #[test]
    fn create_fills_metadata_and_checks_names() {
        let info = parse("/api/v1/namespaces/dev/configmaps").unwrap();
        let (name, obj) = prepare_create(
            &info,
            json!({"metadata": {"name": "c1", "resourceVersion": "9"}, "data": {"a": "b"}}),
        )
        .unwrap();
        assert_eq!(name, "c1");
        assert_eq!(obj["kind"], "ConfigMap");
        assert_eq!(obj["metadata"]["namespace"], "dev");
        assert!(obj["metadata"]["uid"].is_string() && obj["metadata"]["creationTimestamp"].is_string());
        assert!(obj["metadata"].get("resourceVersion").is_none());

        let err = prepare_create(&info, json!({"metadata": {"name": "Bad_Name"}})).unwrap_err();
        assert_eq!((err.code, err.reason), (422, "Invalid"));
        let err = prepare_create(&info, json!({"kind": "Secret", "metadata": {"name": "x"}})).unwrap_err();
        assert_eq!(err.code, 400);
        let err = prepare_create(&info, json!({"metadata": {"name": "x", "namespace": "other"}})).unwrap_err();
        assert_eq!(err.code, 400);
        let (name, _) = prepare_create(&info, json!({"metadata": {"generateName": "job-"}})).unwrap();
        assert!(name.starts_with("job-") && name.len() == 9, "{name}");
    }

    #[test]
    fn updates_keep_identity_and_bump_generation_on_spec_changes() {
        let info = parse("/apis/apps/v1/namespaces/dev/deployments").unwrap();
        let (_, existing) = prepare_create(
            &info,
            json!({"metadata": {"name": "web"}, "spec": {"replicas": 1}, "status": {"replicas": 1}}),
        )
        .unwrap();
        let named = parse("/apis/apps/v1/namespaces/dev/deployments/web").unwrap();
        let updated = prepare_update(
            &named,
            &existing,
            json!({"metadata": {"name": "web", "uid": "forged"}, "spec": {"replicas": 3}, "status": {"replicas": 9}}),
        )
        .unwrap();
        assert_eq!(updated["metadata"]["uid"], existing["metadata"]["uid"]);
        assert_eq!(updated["metadata"]["generation"], 2);
        assert_eq!(updated["status"]["replicas"], 1, "the main resource ignores status");
        let status = parse("/apis/apps/v1/namespaces/dev/deployments/web/status").unwrap();
        let updated = prepare_update(
            &status,
            &existing,
            json!({"spec": {"replicas": 7}, "status": {"replicas": 2}}),
        )
        .unwrap();
        assert_eq!(
            (
                updated["spec"]["replicas"].as_i64(),
                updated["status"]["replicas"].as_i64()
            ),
            (Some(1), Some(2))
        );
    }
}
