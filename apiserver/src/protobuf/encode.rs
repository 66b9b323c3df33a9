//! Protobuf responses: an object's JSON written as Kubernetes' protobuf
//! encoding, for clients whose `Accept` prefers
//! `application/vnd.kubernetes.protobuf` (client-go's typed clients).
//!
//! This is the decoder ([`super::decode_message`]) run backwards over the
//! same message table: each protobuf field takes the JSON property of the
//! same name, embedded Go structs (a Volume's VolumeSource) take their
//! fields from the parent object, and the few messages with a JSON form
//! of their own (Time, Quantity, IntOrString, raw JSON holders …) are
//! converted back. The wire primitives are prost's.

use prost::encoding::{encode_key, encode_varint, WireType};
use serde_json::Value;

use super::schema::{self, FieldType};
use super::{json_name, message_for, MAGIC};

/// The `Content-Type` of a protobuf answer, and of a protobuf watch.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
pub const WATCH_CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";

pub(crate) fn bytes_field(number: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(number, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

pub(crate) fn varint_field(number: u32, value: u64, out: &mut Vec<u8>) {
    encode_key(number, WireType::Varint, out);
    encode_varint(value, out);
}

/// `k8s\0` + runtime.Unknown around an encoded message: what a client
/// reads as one object.
fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut type_meta = Vec::new();
    bytes_field(1, api_version.as_bytes(), &mut type_meta);
    bytes_field(2, kind.as_bytes(), &mut type_meta);
    let mut out = MAGIC.to_vec();
    bytes_field(1, &type_meta, &mut out);
    bytes_field(2, raw, &mut out);
    bytes_field(3, b"", &mut out);
    bytes_field(4, b"", &mut out);
    out
}

/// An object (with its `apiVersion` and `kind`) as a protobuf body;
/// `None` when its kind has no protobuf form (custom resources, Tables).
pub fn encode_object(object: &Value) -> Option<Vec<u8>> {
    let api_version = object["apiVersion"].as_str()?;
    let kind = object["kind"].as_str()?;
    let name = message_for(api_version, kind)?;
    Some(envelope(api_version, kind, &encode_message(&name, object)))
}

/// One watch event as a protobuf watch stream frames it: a 4-byte
/// big-endian length, then a meta/v1 WatchEvent (no envelope) whose
/// object is the enveloped object. `None` as for [`encode_object`].
pub fn encode_watch_event(kind: &str, object: &Value) -> Option<Vec<u8>> {
    let mut raw_extension = Vec::new();
    bytes_field(1, &encode_object(object)?, &mut raw_extension);
    let mut event = Vec::new();
    bytes_field(1, kind.as_bytes(), &mut event);
    bytes_field(2, &raw_extension, &mut event);
    let length = u32::try_from(event.len()).ok()?;
    let mut frame = length.to_be_bytes().to_vec();
    frame.extend(event);
    Some(frame)
}

/// One message of schema `name` from its JSON.
pub fn encode_message(name: &str, json: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    if special(name, json, &mut out) {
        return out;
    }
    let Some(fields) = schema::message(name) else {
        return out;
    };
    let mut fields: Vec<_> = fields.iter().collect();
    fields.sort_by_key(|f| f.number);
    for field in fields {
        let Some(key) = json_name(name, field) else {
            // An embedded struct: its fields are this object's.
            if let FieldType::Message(inner) = &field.kind {
                bytes_field(field.number, &encode_message(inner, json), &mut out);
            }
            continue;
        };
        let value = &json[key.as_str()];
        if let Some(value_type) = &field.map_value {
            for (k, v) in value.as_object().into_iter().flatten() {
                let mut entry = Vec::new();
                bytes_field(1, k.as_bytes(), &mut entry);
                single(2, value_type, v, &mut entry);
                bytes_field(field.number, &entry, &mut out);
            }
        } else if field.repeated {
            for item in value.as_array().into_iter().flatten() {
                single(field.number, &field.kind, item, &mut out);
            }
        } else if !value.is_null() {
            single(field.number, &field.kind, value, &mut out);
        }
    }
    out
}

/// One field's value (one element of a repeated field).
fn single(number: u32, kind: &FieldType, value: &Value, out: &mut Vec<u8>) {
    match kind {
        FieldType::String => {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            bytes_field(number, text.as_bytes(), out);
        }
        FieldType::Bytes => {
            use base64::Engine;
            let text = value.as_str().unwrap_or_default();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap_or_else(|_| text.as_bytes().to_vec());
            bytes_field(number, &bytes, out);
        }
        FieldType::Bool => varint_field(number, u64::from(value.as_bool().unwrap_or(false)), out),
        // Negative numbers are sign-extended to 64 bits, as protobuf does.
        FieldType::Int32 | FieldType::Int64 => varint_field(number, value.as_i64().unwrap_or(0) as u64, out),
        FieldType::Double => {
            encode_key(number, WireType::SixtyFourBit, out);
            out.extend_from_slice(&value.as_f64().unwrap_or(0.0).to_bits().to_le_bytes());
        }
        FieldType::Message(name) => bytes_field(number, &encode_message(name, value), out),
    }
}

/// Messages whose JSON is not an object of their fields; true if `name`
/// was one of them (and `out` holds it).
fn special(name: &str, json: &Value, out: &mut Vec<u8>) -> bool {
    if super::is_string_list(name) {
        for item in json.as_array().into_iter().flatten() {
            single(1, &FieldType::String, item, out);
        }
        return true;
    }
    let raw_json = |out: &mut Vec<u8>| bytes_field(1, json.to_string().as_bytes(), out);
    let meta = "io.k8s.apimachinery.pkg.apis.meta.v1.";
    match name.strip_prefix(meta) {
        Some("Time" | "MicroTime") => {
            let parsed = json
                .as_str()
                .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok());
            if let Some(at) = parsed {
                varint_field(1, at.unix_timestamp() as u64, out);
                varint_field(2, u64::from(at.nanosecond()), out);
            }
            true
        }
        Some("Duration") => {
            let nanos = json.as_str().and_then(parse_go_duration).unwrap_or(0);
            varint_field(1, nanos as u64, out);
            true
        }
        Some("FieldsV1") => {
            raw_json(out);
            true
        }
        _ => match name {
            "io.k8s.apimachinery.pkg.api.resource.Quantity" => {
                let text = match json {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                bytes_field(1, text.as_bytes(), out);
                true
            }
            "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => {
                match json {
                    Value::String(s) => {
                        varint_field(1, 1, out);
                        bytes_field(3, s.as_bytes(), out);
                    }
                    other => {
                        varint_field(1, 0, out);
                        varint_field(2, other.as_i64().unwrap_or(0) as u64, out);
                    }
                }
                true
            }
            "io.k8s.apimachinery.pkg.runtime.RawExtension" => {
                raw_json(out);
                true
            }
            n if n.starts_with("io.k8s.apiextensions-apiserver.") && n.ends_with(".JSON") => {
                raw_json(out);
                true
            }
            _ => false,
        },
    }
}

/// A Go duration (`1h2m3.5s`, `300ms`, `-1.5h`) in nanoseconds.
fn parse_go_duration(text: &str) -> Option<i64> {
    let (sign, mut rest) = match text.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Some((sign * total).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_survive_a_round_trip_through_protobuf() {
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web",
                "namespace": "shop",
                "labels": {"app": "web"},
                "creationTimestamp": "2026-11-26T14:03:52Z",
                "resourceVersion": "42",
            },
            "spec": {
                "containers": [{
                    "name": "c",
                    "image": "busybox",
                    "command": ["sleep", "3600"],
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
                    "readinessProbe": {"httpGet": {"port": "http", "path": "/"}, "periodSeconds": 10},
                }],
                "volumes": [{"name": "cfg", "configMap": {"name": "settings", "defaultMode": 420}}],
                "securityContext": {"runAsUser": -1},
                "priority": 0,
                "enableServiceLinks": true,
            },
            "status": {"phase": "Running", "hostIP": "10.0.0.1"},
        });
        let body = encode_object(&pod).unwrap();
        let back = crate::protobuf::decode_body(&body).unwrap();
        assert_eq!(back, pod);
    }

    #[test]
    fn slices_wrapped_in_messages_stay_arrays() {
        let review = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "SelfSubjectReview",
            "metadata": {},
            "status": {"userInfo": {
                "username": "u",
                "extra": {"authentication.kubernetes.io/pod-name": ["holder"]},
            }},
        });
        let back = crate::protobuf::decode_body(&encode_object(&review).unwrap()).unwrap();
        assert_eq!(back, review);
    }

    #[test]
    fn messages_named_as_prost_names_them_keep_their_json_names() {
        let pv = json!({
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": "ebs"},
            "spec": {
                "awsElasticBlockStore": {"volumeID": "vol-1", "fsType": "ext4"},
                "capacity": {"storage": "1Gi"},
            },
        });
        let back = crate::protobuf::decode_body(&encode_object(&pv).unwrap()).unwrap();
        assert_eq!(back, pv);
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("1h2m3.5s"), Some(3_723_500_000_000));
        assert_eq!(parse_go_duration("300ms"), Some(300_000_000));
        assert_eq!(parse_go_duration("-1.5h"), Some(-5_400_000_000_000));
        assert_eq!(parse_go_duration("0s"), Some(0));
        assert_eq!(parse_go_duration("1x"), None);
    }

    #[test]
    fn kinds_without_a_message_are_not_encoded() {
        let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
        assert!(encode_object(&widget).is_none());
        let event = encode_watch_event(
            "ADDED",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}),
        )
        .unwrap();
        let length = u32::from_be_bytes([event[0], event[1], event[2], event[3]]) as usize;
        assert_eq!(length, event.len() - 4);
    }
}
