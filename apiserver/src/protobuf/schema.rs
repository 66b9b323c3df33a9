//! The wire layout of Kubernetes' protobuf messages, read once from
//! `messages.txt` (generated from k8s-pb by scripts/gen-protobuf-schema.py).

use std::collections::HashMap;
use std::sync::LazyLock;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Double,
    /// Another message, by its full name.
    Message(String),
}

impl FieldType {
    pub fn is_scalar(&self) -> bool {
        !matches!(self, FieldType::Message(_) | FieldType::String | FieldType::Bytes)
    }

    fn parse(text: &str) -> FieldType {
        match text {
            "string" => FieldType::String,
            "bytes" => FieldType::Bytes,
            "bool" => FieldType::Bool,
            "int32" => FieldType::Int32,
            "int64" => FieldType::Int64,
            "double" => FieldType::Double,
            message => FieldType::Message(message.to_string()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Field {
    pub number: u32,
    /// The Rust (snake_case) name; the JSON name is looked up.
    pub name: String,
    pub repeated: bool,
    /// For a map field, `kind` is the key's (always string) and this the value's.
    pub map_value: Option<FieldType>,
    pub kind: FieldType,
}

static MESSAGES: LazyLock<HashMap<String, Vec<Field>>> = LazyLock::new(|| {
    let mut messages: HashMap<String, Vec<Field>> = HashMap::new();
    let mut current: Option<String> = None;
    for line in include_str!("messages.txt").lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix("message ") {
            current = Some(name.to_string());
            messages.entry(name.to_string()).or_default();
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (Some(name), Some(number)) = (&current, parts.first().and_then(|n| n.parse().ok())) else {
            continue;
        };
        let field = match parts.as_slice() {
            [_, field, "map", value] => Field {
                number,
                name: field.to_string(),
                repeated: false,
                map_value: Some(FieldType::parse(value)),
                kind: FieldType::String,
            },
            [_, field, "repeated", kind] => Field {
                number,
                name: field.to_string(),
                repeated: true,
                map_value: None,
                kind: FieldType::parse(kind),
            },
            [_, field, kind] => Field {
                number,
                name: field.to_string(),
                repeated: false,
                map_value: None,
                kind: FieldType::parse(kind),
            },
            _ => continue,
        };
        if let Some(fields) = messages.get_mut(name) {
            fields.push(field);
        }
    }
    messages
});

/// The fields of a message, by its full name.
pub fn message(name: &str) -> Option<&'static [Field]> {
    MESSAGES.get(name).map(Vec::as_slice)
}
