//! `/openapi/v2` in protobuf: the form client-go asks for.
//!
//! kubectl validates a manifest on the client when the server cannot do
//! it (kinds without a PATCH operation, such as TokenReview or
//! SubjectAccessReview, cannot declare `fieldValidation`), and for that it
//! reads the Swagger 2.0 document as
//! `application/com.github.proto-openapi.spec.v2@v1.0+protobuf` only:
//! gnostic's `openapi.v2.Document` message. This module writes the JSON
//! document (`openapi::v2`) in that message: the paths with their
//! operations and parameters, and the definitions, whose `x-` vendor
//! extensions (`x-kubernetes-group-version-kind`) travel as YAML text in
//! gnostic's `Any`, which is how kube-openapi reads them back. Field
//! numbers are gnostic's (`openapiv2/OpenAPIv2.proto`).

use std::sync::LazyLock;

use prost::encoding::{encode_key, WireType};
use serde_json::{Map, Value};

use crate::protobuf::encode::{bytes_field, varint_field};

/// The media type client-go asks for (the answer is
/// `application/octet-stream`, as kube-openapi sends it).
pub const CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// The protobuf document, encoded once.
pub fn document() -> &'static [u8] {
    static DOCUMENT: LazyLock<Vec<u8>> = LazyLock::new(|| {
        let doc: Value = serde_json::from_str(crate::openapi::v2()).unwrap_or(Value::Null);
        encode_document(&doc)
    });
    &DOCUMENT
}

fn string(number: u32, value: &Value, out: &mut Vec<u8>) {
    if let Some(s) = value.as_str() {
        bytes_field(number, s.as_bytes(), out);
    }
}

fn strings(number: u32, value: &Value, out: &mut Vec<u8>) {
    for item in value.as_array().into_iter().flatten() {
        string(number, item, out);
    }
}

fn boolean(number: u32, value: &Value, out: &mut Vec<u8>) {
    if let Some(b) = value.as_bool() {
        varint_field(number, u64::from(b), out);
    }
}

fn int(number: u32, value: &Value, out: &mut Vec<u8>) {
    if let Some(n) = value.as_i64() {
        varint_field(number, n as u64, out);
    }
}

fn double(number: u32, value: &Value, out: &mut Vec<u8>) {
    if let Some(n) = value.as_f64() {
        encode_key(number, WireType::SixtyFourBit, out);
        out.extend_from_slice(&n.to_bits().to_le_bytes());
    }
}

fn message(number: u32, body: Vec<u8>, out: &mut Vec<u8>) {
    bytes_field(number, &body, out);
}

/// gnostic's `Any`: the value as YAML text.
fn any(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let yaml = serde_yaml::to_string(value).unwrap_or_default();
    bytes_field(2, yaml.as_bytes(), &mut out);
    out
}

/// The `x-` keys of an object as repeated `NamedAny` in field `number`.
fn vendor_extensions(number: u32, object: &Map<String, Value>, out: &mut Vec<u8>) {
    for (name, value) in object.iter().filter(|(k, _)| k.starts_with("x-")) {
        let mut named = Vec::new();
        bytes_field(1, name.as_bytes(), &mut named);
        message(2, any(value), &mut named);
        message(number, named, out);
    }
}

/// `name: value` pairs (`NamedSchema`, `NamedPathItem` …) in field `number`.
fn named(number: u32, name: &str, value: Vec<u8>, out: &mut Vec<u8>) {
    let mut pair = Vec::new();
    bytes_field(1, name.as_bytes(), &mut pair);
    message(2, value, &mut pair);
    message(number, pair, out);
}

fn schema(s: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(object) = s.as_object() else {
        return out;
    };
    string(1, &s["$ref"], &mut out);
    string(2, &s["format"], &mut out);
    string(3, &s["title"], &mut out);
    string(4, &s["description"], &mut out);
    if !s["default"].is_null() {
        message(5, any(&s["default"]), &mut out);
    }
    double(6, &s["multipleOf"], &mut out);
    double(7, &s["maximum"], &mut out);
    boolean(8, &s["exclusiveMaximum"], &mut out);
    double(9, &s["minimum"], &mut out);
    boolean(10, &s["exclusiveMinimum"], &mut out);
    int(11, &s["maxLength"], &mut out);
    int(12, &s["minLength"], &mut out);
    string(13, &s["pattern"], &mut out);
    int(14, &s["maxItems"], &mut out);
    int(15, &s["minItems"], &mut out);
    boolean(16, &s["uniqueItems"], &mut out);
    int(17, &s["maxProperties"], &mut out);
    int(18, &s["minProperties"], &mut out);
    strings(19, &s["required"], &mut out);
    for value in s["enum"].as_array().into_iter().flatten() {
        message(20, any(value), &mut out);
    }
    match &s["additionalProperties"] {
        Value::Bool(b) => {
            let mut item = Vec::new();
            varint_field(2, u64::from(*b), &mut item);
            message(21, item, &mut out);
        }
        inner @ Value::Object(_) => {
            let mut item = Vec::new();
            message(1, schema(inner), &mut item);
            message(21, item, &mut out);
        }
        _ => {}
    }
    let types = match &s["type"] {
        Value::String(t) => vec![Value::String(t.clone())],
        Value::Array(ts) => ts.clone(),
        _ => Vec::new(),
    };
    if !types.is_empty() {
        let mut item = Vec::new();
        strings(1, &Value::Array(types), &mut item);
        message(22, item, &mut out);
    }
    let items = match &s["items"] {
        one @ Value::Object(_) => vec![one.clone()],
        Value::Array(many) => many.clone(),
        _ => Vec::new(),
    };
    if !items.is_empty() {
        let mut item = Vec::new();
        for i in &items {
            message(1, schema(i), &mut item);
        }
        message(23, item, &mut out);
    }
    for part in s["allOf"].as_array().into_iter().flatten() {
        message(24, schema(part), &mut out);
    }
    if let Some(properties) = s["properties"].as_object() {
        let mut props = Vec::new();
        for (name, p) in properties {
            named(1, name, schema(p), &mut props);
        }
        message(25, props, &mut out);
    }
    boolean(27, &s["readOnly"], &mut out);
    vendor_extensions(31, object, &mut out);
    out
}

/// One operation parameter as a `ParametersItem`.
fn parameter(p: &Value) -> Vec<u8> {
    let mut inner = Vec::new();
    let mut kind = 0;
    match p["in"].as_str() {
        Some("body") => {
            string(1, &p["description"], &mut inner);
            string(2, &p["name"], &mut inner);
            string(3, &p["in"], &mut inner);
            boolean(4, &p["required"], &mut inner);
            message(5, schema(&p["schema"]), &mut inner);
            kind = 1;
        }
        Some(place @ ("query" | "path")) => {
            let mut sub = Vec::new();
            boolean(1, &p["required"], &mut sub);
            string(2, &p["in"], &mut sub);
            string(3, &p["description"], &mut sub);
            string(4, &p["name"], &mut sub);
            let (type_field, unique_field, variant) = if place == "query" { (6, 20, 3) } else { (5, 19, 4) };
            string(type_field, &p["type"], &mut sub);
            boolean(unique_field, &p["uniqueItems"], &mut sub);
            let mut non_body = Vec::new();
            message(variant, sub, &mut non_body);
            inner = non_body;
            kind = 2;
        }
        _ => {}
    }
    let mut parameter = Vec::new();
    if kind > 0 {
        message(kind, inner, &mut parameter);
    }
    let mut item = Vec::new();
    message(1, parameter, &mut item);
    item
}

fn operation(o: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    strings(1, &o["tags"], &mut out);
    string(2, &o["summary"], &mut out);
    string(3, &o["description"], &mut out);
    string(5, &o["operationId"], &mut out);
    strings(6, &o["produces"], &mut out);
    strings(7, &o["consumes"], &mut out);
    for p in o["parameters"].as_array().into_iter().flatten() {
        message(8, parameter(p), &mut out);
    }
    let mut responses = Vec::new();
    for (code, r) in o["responses"].as_object().into_iter().flatten() {
        let mut response = Vec::new();
        string(1, &r["description"], &mut response);
        if r["schema"].is_object() {
            let mut item = Vec::new();
            message(1, schema(&r["schema"]), &mut item);
            message(2, item, &mut response);
        }
        let mut value = Vec::new();
        message(1, response, &mut value);
        named(1, code, value, &mut responses);
    }
    message(9, responses, &mut out);
    strings(10, &o["schemes"], &mut out);
    if let Some(object) = o.as_object() {
        vendor_extensions(13, object, &mut out);
    }
    out
}

fn path_item(item: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    for (field, method) in [
        (2, "get"),
        (3, "put"),
        (4, "post"),
        (5, "delete"),
        (6, "options"),
        (7, "head"),
        (8, "patch"),
    ] {
        if item[method].is_object() {
            message(field, operation(&item[method]), &mut out);
        }
    }
    for p in item["parameters"].as_array().into_iter().flatten() {
        message(9, parameter(p), &mut out);
    }
    out
}

fn encode_document(doc: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    string(1, &doc["swagger"], &mut out);
    let mut info = Vec::new();
    string(1, &doc["info"]["title"], &mut info);
    string(2, &doc["info"]["version"], &mut info);
    message(2, info, &mut out);
    let mut paths = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        named(2, path, path_item(item), &mut paths);
    }
    message(8, paths, &mut out);
    let mut definitions = Vec::new();
    for (name, s) in doc["definitions"].as_object().into_iter().flatten() {
        named(1, name, schema(s), &mut definitions);
    }
    message(9, definitions, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_holds_every_definition() {
        let bytes = document();
        assert!(bytes.len() > 100_000, "{}", bytes.len());
        // The definitions and their group-version-kind extensions, as
        // kube-openapi looks them up.
        let text = String::from_utf8_lossy(bytes);
        assert!(text.contains("io.k8s.api.authentication.v1.TokenReview"));
        assert!(text.contains("x-kubernetes-group-version-kind"));
        assert!(text.contains("kind: TokenReview"));
    }
}
