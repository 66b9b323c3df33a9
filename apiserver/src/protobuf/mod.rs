//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), as
//! client-go's typed clients send them: kubectl's imperative commands
//! (`kubectl create namespace|configmap|secret|deployment`, `kubectl run`)
//! and Helm writing its release Secrets.
//!
//! A body is the magic `k8s\0` followed by a `runtime.Unknown` message:
//! the apiVersion and kind, then the object's own protobuf encoding. This
//! module turns that into the object's JSON, which the rest of the API
//! server works with. The wire layout of every message (field numbers and
//! types) is in `messages.txt`, generated from the k8s-pb crate by
//! `scripts/gen-protobuf-schema.py`; the JSON names come from the
//! k8s-openapi schemas ([`types`](crate::types)), which also say which
//! protobuf fields Kubernetes' JSON flattens into their parent (embedded
//! Go structs such as a Volume's VolumeSource). A handful of messages have
//! a JSON form of their own: Time, MicroTime, Duration, Quantity,
//! IntOrString, RawExtension and the raw-JSON holders.
//!
//! Responses go the other way ([`encode`]) when the client prefers
//! protobuf, as client-go's typed clients do
//! (`application/vnd.kubernetes.protobuf, */*`); kinds without a protobuf
//! message (custom resources, Tables) are answered in JSON.

pub mod encode;
mod schema;
mod wire;

use serde_json::{Map, Value};

pub use schema::message;
use schema::{Field, FieldType};
use wire::{Reader, WireValue};

/// The magic prefix of a Kubernetes protobuf body.
pub const MAGIC: &[u8] = b"k8s\x00";

/// Why a body could not be decoded (a 400 for the client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode the protobuf body: {0}")]
pub struct DecodeError(pub String);

fn err(message: impl Into<String>) -> DecodeError {
    DecodeError(message.into())
}

/// The message that carries `kind` of `api_version` on the wire.
pub fn message_for(api_version: &str, kind: &str) -> Option<String> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    if let Some(t) = crate::types::find(group, version, kind) {
        if schema::message(&t.schema_name).is_some() {
            return Some(t.schema_name.clone());
        }
    }
    // Kinds outside the resource table (DeleteOptions, Eviction, Scale …):
    // their package follows from the group.
    let package = match group {
        "" => "core".to_string(),
        "meta.k8s.io" => return Some(format!("io.k8s.apimachinery.pkg.apis.meta.v1.{kind}")),
        "apiextensions.k8s.io" => {
            return Some(format!(
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{version}.{kind}"
            ))
        }
        g => g.trim_end_matches(".k8s.io").split('.').next().unwrap_or(g).to_string(),
    };
    let candidates = [
        format!("io.k8s.api.{package}.{version}.{kind}"),
        format!("io.k8s.apimachinery.pkg.apis.meta.v1.{kind}"),
    ];
    candidates.into_iter().find(|c| schema::message(c).is_some())
}

/// Decodes a request body: `k8s\0` + runtime.Unknown → the object's JSON.
pub fn decode_body(body: &[u8]) -> Result<Value, DecodeError> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| err("the body does not start with the Kubernetes protobuf magic"))?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), None);
    let mut reader = Reader::new(envelope);
    while let Some((number, value)) = reader.next_field().map_err(err)? {
        match (number, value) {
            (1, WireValue::Bytes(type_meta)) => {
                let mut meta = Reader::new(type_meta);
                while let Some((n, v)) = meta.next_field().map_err(err)? {
                    match (n, v) {
                        (1, WireValue::Bytes(b)) => api_version = String::from_utf8_lossy(b).into_owned(),
                        (2, WireValue::Bytes(b)) => kind = String::from_utf8_lossy(b).into_owned(),
                        _ => {}
                    }
                }
            }
            (2, WireValue::Bytes(b)) => raw = Some(b),
            (3, WireValue::Bytes(encoding)) if !encoding.is_empty() => {
                return Err(err(format!(
                    "content encoding {:?} is not supported",
                    String::from_utf8_lossy(encoding)
                )))
            }
            _ => {}
        }
    }
    if kind.is_empty() {
        return Err(err("the envelope names no kind"));
    }
    let name = message_for(&api_version, &kind)
        .ok_or_else(|| err(format!("{kind} of {api_version} has no protobuf form here")))?;
    let mut object = decode_message(&name, raw.unwrap_or_default())?;
    if let Value::Object(map) = &mut object {
        map.insert("apiVersion".into(), Value::String(api_version));
        map.insert("kind".into(), Value::String(kind));
    }
    Ok(object)
}

/// The k8s-openapi schema of a message. The table spells some names as
/// prost does (`AwsElasticBlockStoreVolumeSource` for
/// `AWSElasticBlockStoreVolumeSource`), so a miss is retried ignoring case.
fn definition(message: &str) -> Option<&'static Value> {
    use std::collections::HashMap;
    use std::sync::LazyLock;
    static FOLDED: LazyLock<HashMap<String, &'static str>> = LazyLock::new(|| {
        crate::types::definitions()
            .keys()
            .map(|k| (k.to_ascii_lowercase(), k.as_str()))
            .collect()
    });
    let definitions = crate::types::definitions();
    definitions.get(message).or_else(|| {
        let name = FOLDED.get(&message.to_ascii_lowercase())?;
        definitions.get(*name)
    })
}

/// The JSON name of a protobuf field in the schema `message`: the
/// k8s-openapi property whose name matches once case and underscores are
/// ignored (`pod_ip` ~ `podIP`), or None when Kubernetes' JSON flattens
/// the field into its parent.
fn json_name(message: &str, field: &Field) -> Option<String> {
    let normal = |s: &str| s.replace('_', "").to_ascii_lowercase();
    let wanted = normal(&field.name);
    match definition(message) {
        Some(schema) => {
            let properties = schema["properties"].as_object();
            let found = properties
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
                .find(|k| normal(k) == wanted)
                .cloned();
            match (found, &field.kind) {
                (Some(name), _) => Some(name),
                // An embedded struct: its fields go into the parent.
                (None, FieldType::Message(_)) if !field.repeated => None,
                (None, _) => Some(camel(&field.name)),
            }
        }
        None => Some(camel(&field.name)),
    }
}

fn camel(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Decodes one message of schema `name` into JSON.
pub fn decode_message(name: &str, bytes: &[u8]) -> Result<Value, DecodeError> {
    if let Some(special) = special(name, bytes)? {
        return Ok(special);
    }
    let fields = schema::message(name).ok_or_else(|| err(format!("unknown message {name}")))?;
    let mut out = Map::new();
    let mut reader = Reader::new(bytes);
    while let Some((number, value)) = reader.next_field().map_err(err)? {
        // Fields this version does not know are skipped, as protobuf does.
        let Some(field) = fields.iter().find(|f| f.number == number) else {
            continue;
        };
        let json = json_name(name, field);
        match (&field.kind, field.map_value.as_ref()) {
            (_, Some(value_type)) => {
                let WireValue::Bytes(entry) = value else {
                    return Err(err(format!("{name}.{}: bad map entry", field.name)));
                };
                let (k, v) = map_entry(entry, value_type)?;
                let key = json.unwrap_or_else(|| camel(&field.name));
                let slot = out.entry(key).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = slot {
                    m.insert(k, v);
                }
            }
            (kind, None) => {
                let decoded = scalar_or_message(kind, value, name, &field.name)?;
                match json {
                    Some(key) if field.repeated => {
                        let slot = out.entry(key).or_insert_with(|| Value::Array(Vec::new()));
                        match (slot, decoded) {
                            // Unpacked repeated scalars arrive one by one;
                            // packed ones as one array.
                            (Value::Array(list), Value::Array(many)) if kind.is_scalar() => list.extend(many),
                            (Value::Array(list), one) => list.push(one),
                            _ => {}
                        }
                    }
                    Some(key) => {
                        if !omitted(&decoded) {
                            out.insert(key, decoded);
                        }
                    }
                    None => {
                        // Flatten the embedded message into this one.
                        if let Value::Object(inner) = decoded {
                            out.extend(inner);
                        }
                    }
                }
            }
        }
    }
    Ok(Value::Object(out))
}

/// Go's JSON leaves empty strings and unset timestamps out.
fn omitted(value: &Value) -> bool {
    matches!(value, Value::String(s) if s.is_empty()) || value.is_null()
}

fn scalar_or_message(kind: &FieldType, value: WireValue<'_>, message: &str, field: &str) -> Result<Value, DecodeError> {
    let bad = || err(format!("{message}.{field}: unexpected wire type"));
    Ok(match (kind, value) {
        (FieldType::String, WireValue::Bytes(b)) => Value::String(String::from_utf8_lossy(b).into_owned()),
        (FieldType::Bytes, WireValue::Bytes(b)) => {
            use base64::Engine;
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (FieldType::Bool, WireValue::Varint(v)) => Value::Bool(v != 0),
        (FieldType::Int32, WireValue::Varint(v)) => Value::from(v as i32),
        (FieldType::Int64, WireValue::Varint(v)) => Value::from(v as i64),
        (FieldType::Double, WireValue::Fixed64(v)) => serde_json::Number::from_f64(f64::from_bits(v))
            .map(Value::Number)
            .unwrap_or(Value::Null),
        // Packed repeated numbers.
        (FieldType::Int32 | FieldType::Int64, WireValue::Bytes(b)) => {
            let mut r = Reader::new(b);
            let mut items = Vec::new();
            while !r.is_empty() {
                let v = r.varint().map_err(err)?;
                items.push(if matches!(kind, FieldType::Int32) {
                    Value::from(v as i32)
                } else {
                    Value::from(v as i64)
                });
            }
            Value::Array(items)
        }
        (FieldType::Message(name), WireValue::Bytes(b)) => decode_message(name, b)?,
        _ => return Err(bad()),
    })
}

fn map_entry(entry: &[u8], value_type: &FieldType) -> Result<(String, Value), DecodeError> {
    let (mut key, mut value) = (String::new(), None);
    let mut r = Reader::new(entry);
    while let Some((n, v)) = r.next_field().map_err(err)? {
        match (n, v) {
            (1, WireValue::Bytes(b)) => key = String::from_utf8_lossy(b).into_owned(),
            (2, v) => value = Some(scalar_or_message(value_type, v, "map", "value")?),
            _ => {}
        }
    }
    let empty = match value_type {
        FieldType::Message(_) => Value::Object(Map::new()),
        _ => Value::String(String::new()),
    };
    Ok((key, value.unwrap_or(empty)))
}

/// Messages that wrap a Go slice (`ExtraValue`, `Verbs`): one repeated
/// string field on the wire, a plain array in JSON.
pub(crate) fn is_string_list(name: &str) -> bool {
    name.ends_with(".ExtraValue") || name == "io.k8s.apimachinery.pkg.apis.meta.v1.Verbs"
}

/// Messages whose JSON is not an object of their fields.
fn special(name: &str, bytes: &[u8]) -> Result<Option<Value>, DecodeError> {
    let meta = "io.k8s.apimachinery.pkg.apis.meta.v1.";
    let fields = || -> Result<Vec<(u32, WireValue<'_>)>, DecodeError> {
        let mut r = Reader::new(bytes);
        let mut all = Vec::new();
        while let Some(f) = r.next_field().map_err(err)? {
            all.push(f);
        }
        Ok(all)
    };
    let int = |all: &[(u32, WireValue<'_>)], n: u32| {
        all.iter()
            .find_map(|(k, v)| match v {
                WireValue::Varint(x) if *k == n => Some(*x as i64),
                _ => None,
            })
            .unwrap_or(0)
    };
    let text = |all: &[(u32, WireValue<'_>)], n: u32| {
        all.iter().find_map(|(k, v)| match v {
            WireValue::Bytes(b) if *k == n => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        })
    };
    let raw_json = |all: &[(u32, WireValue<'_>)]| -> Value {
        all.iter()
            .find_map(|(k, v)| match v {
                WireValue::Bytes(b) if *k == 1 => serde_json::from_slice(b).ok(),
                _ => None,
            })
            .unwrap_or(Value::Null)
    };
    if is_string_list(name) {
        let items = fields()?
            .into_iter()
            .filter_map(|(k, v)| match v {
                WireValue::Bytes(b) if k == 1 => Some(Value::String(String::from_utf8_lossy(b).into_owned())),
                _ => None,
            })
            .collect();
        return Ok(Some(Value::Array(items)));
    }
    let value = match name.strip_prefix(meta) {
        Some(t @ ("Time" | "MicroTime")) => {
            let all = fields()?;
            let (seconds, nanos) = (int(&all, 1), int(&all, 2));
            if seconds == 0 && nanos == 0 {
                Value::Null
            } else {
                Value::String(timestamp(seconds, nanos, t == "MicroTime"))
            }
        }
        Some("Duration") => Value::String(go_duration(int(&fields()?, 1))),
        Some("FieldsV1") => raw_json(&fields()?),
        _ => match name {
            "io.k8s.apimachinery.pkg.api.resource.Quantity" => Value::String(text(&fields()?, 1).unwrap_or_default()),
            "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => {
                let all = fields()?;
                if int(&all, 1) == 1 {
                    Value::String(text(&all, 3).unwrap_or_default())
                } else {
                    Value::from(int(&all, 2) as i32)
                }
            }
            "io.k8s.apimachinery.pkg.runtime.RawExtension" => raw_json(&fields()?),
            n if n.starts_with("io.k8s.apiextensions-apiserver.") && n.ends_with(".JSON") => raw_json(&fields()?),
            _ => return Ok(None),
        },
    };
    Ok(Some(value))
}

/// RFC 3339 in UTC, with microseconds for MicroTime.
fn timestamp(seconds: i64, nanos: i64, micro: bool) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    if micro {
        format!("{base}.{:06}Z", nanos / 1000)
    } else {
        format!("{base}Z")
    }
}

/// A duration in nanoseconds as Go prints it (`1h2m3s`, `1.5s`, `0s`).
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let (h, m) = (n / 3_600_000_000_000, (n / 60_000_000_000) % 60);
    let s = (n % 60_000_000_000) as f64 / 1e9;
    let mut out = sign.to_string();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}s"));
    out
}
