//! Decoding a written object into its type: wrong types are refused,
//! unknown fields are dropped, and with `fieldValidation=Strict` (what
//! kubectl sends by default) refused, with every unknown field named.
//!
//! Upstream decodes into the Go struct and encodes again, so an unknown
//! field is never stored; [`types`] does the same with the
//! k8s-openapi type, and the fields the round trip lost are the unknown
//! ones.

use serde_json::Value;

use crate::request_info::RequestInfo;
use crate::status::ApiError;
use crate::types;

/// What to do about unknown fields (`?fieldValidation=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them, with a `Warning` header naming each.
    #[default]
    Warn,
    /// Refuse the request with 400.
    Strict,
}

impl FieldValidation {
    pub fn parse(value: Option<&str>) -> Result<FieldValidation, ApiError> {
        match value.unwrap_or_default() {
            "" | "Warn" => Ok(FieldValidation::Warn),
            "Ignore" => Ok(FieldValidation::Ignore),
            "Strict" => Ok(FieldValidation::Strict),
            other => Err(ApiError::bad_request(format!(
                "fieldValidation {other:?} is not one of Ignore, Warn, Strict"
            ))),
        }
    }
}

/// The object as its type knows it, or the error Kubernetes would give.
pub fn decode(info: &RequestInfo, object: Value, mode: FieldValidation) -> Result<Value, ApiError> {
    let r = info.resource;
    let Some(t) = types::find(r.group, r.version, r.kind) else {
        return custom(info, object, mode);
    };
    let typed = (t.round_trip)(&object).map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {e}",
            kind = r.kind,
            version = r.version
        ))
    })?;
    let unknown = types::unknown_fields(&object, &typed);
    if !unknown.is_empty() {
        let listed: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
        match mode {
            FieldValidation::Strict => {
                return Err(ApiError::bad_request(format!(
                    "strict decoding error: {}",
                    listed.join(", ")
                )))
            }
            FieldValidation::Warn => listed.into_iter().for_each(crate::warnings::add),
            FieldValidation::Ignore => {}
        }
    }
    Ok(typed)
}

/// A custom resource: checked and pruned against its structural schema.
fn custom(info: &RequestInfo, mut object: Value, mode: FieldValidation) -> Result<Value, ApiError> {
    let r = info.resource;
    let Some(served) = crate::crd::find(r.group, r.version, r.plural) else {
        return Ok(object);
    };
    if served.schema.is_null() {
        return Ok(object);
    }
    let found = crate::structural::check(&served.schema, &mut object);
    let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
    if let Some((field, message)) = found.errors.first() {
        let kind = format!("{}.{}", r.kind, r.group);
        return Err(ApiError::invalid(&kind, &name, field, message));
    }
    if mode == FieldValidation::Warn {
        for field in &found.pruned {
            crate::warnings::add(format!("unknown field \"{field}\""));
        }
    }
    if mode == FieldValidation::Strict && !found.pruned.is_empty() {
        let listed: Vec<String> = found.pruned.iter().map(|f| format!("unknown field \"{f}\"")).collect();
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            listed.join(", ")
        )));
    }
    Ok(object)
}
