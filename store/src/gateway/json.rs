//! Protobuf's JSON mapping for the etcd messages the gateway carries.
//!
//! etcd's gateway (grpc-gateway with original field names) writes 64-bit
//! integers as strings, bytes as base64 and enums by name, and leaves out
//! fields that hold their default value; it reads either field spelling
//! (`range_end` or `rangeEnd`) and integers as strings or numbers. This
//! module does that for exactly the messages the gateway serves.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use etcd_client::proto::*;
use serde_json::{Map, Value};

// ---- writing ----------------------------------------------------------------

/// A JSON object under construction that skips default values.
#[derive(Default)]
pub struct Out(Map<String, Value>);

impl Out {
    pub fn int(mut self, name: &str, v: i64) -> Self {
        if v != 0 {
            self.0.insert(name.into(), Value::String(v.to_string()));
        }
        self
    }
    pub fn uint(mut self, name: &str, v: u64) -> Self {
        if v != 0 {
            self.0.insert(name.into(), Value::String(v.to_string()));
        }
        self
    }
    pub fn bytes(mut self, name: &str, v: &[u8]) -> Self {
        if !v.is_empty() {
            self.0.insert(name.into(), Value::String(B64.encode(v)));
        }
        self
    }
    pub fn boolean(mut self, name: &str, v: bool) -> Self {
        if v {
            self.0.insert(name.into(), Value::Bool(true));
        }
        self
    }
    pub fn string(mut self, name: &str, v: &str) -> Self {
        if !v.is_empty() {
            self.0.insert(name.into(), Value::String(v.into()));
        }
        self
    }
    pub fn value(mut self, name: &str, v: Option<Value>) -> Self {
        if let Some(v) = v {
            self.0.insert(name.into(), v);
        }
        self
    }
    pub fn list(mut self, name: &str, v: Vec<Value>) -> Self {
        if !v.is_empty() {
            self.0.insert(name.into(), Value::Array(v));
        }
        self
    }
    /// A 32-bit integer, which protobuf's JSON writes as a number.
    pub fn uint32(mut self, name: &str, v: u32) -> Self {
        if v != 0 {
            self.0.insert(name.into(), Value::from(v));
        }
        self
    }
    /// An enum by name (by number if `variants` does not name it).
    pub fn enumeration(mut self, name: &str, v: i32, variants: &[&str]) -> Self {
        if v != 0 {
            let value = usize::try_from(v)
                .ok()
                .and_then(|i| variants.get(i))
                .map_or_else(|| Value::from(v), |s| Value::String((*s).to_string()));
            self.0.insert(name.into(), value);
        }
        self
    }
    pub fn done(self) -> Value {
        Value::Object(self.0)
    }
}

pub fn header(h: &Option<PbResponseHeader>) -> Option<Value> {
    h.as_ref().map(|h| {
        Out::default()
            .uint("cluster_id", h.cluster_id)
            .uint("member_id", h.member_id)
            .int("revision", h.revision)
            .uint("raft_term", h.raft_term)
            .done()
    })
}

pub fn kv(kv: &PbKeyValue) -> Value {
    Out::default()
        .bytes("key", &kv.key)
        .int("create_revision", kv.create_revision)
        .int("mod_revision", kv.mod_revision)
        .int("version", kv.version)
        .bytes("value", &kv.value)
        .int("lease", kv.lease)
        .done()
}

/// `AlarmRequest.AlarmAction` and `AlarmType`, in number order.
pub const ALARM_ACTIONS: &[&str] = &["GET", "ACTIVATE", "DEACTIVATE"];
pub const ALARM_TYPES: &[&str] = &["NONE", "NOSPACE", "CORRUPT"];

fn strings(v: &[String]) -> Vec<Value> {
    v.iter().map(|s| Value::String(s.clone())).collect()
}

/// A cluster member as `member list` and the other member calls show it.
pub fn member(m: &PbMember) -> Value {
    Out::default()
        .uint("ID", m.id)
        .string("name", &m.name)
        .list("peerURLs", strings(&m.peer_ur_ls))
        .list("clientURLs", strings(&m.client_ur_ls))
        .boolean("isLearner", m.is_learner)
        .done()
}

/// `{header, members}`: the answer to member list, remove, update, promote.
pub fn members(h: &Option<PbResponseHeader>, members: &[PbMember]) -> Value {
    Out::default()
        .value("header", header(h))
        .list("members", members.iter().map(member).collect())
        .done()
}

pub fn range_response(r: &PbRangeResponse) -> Value {
    Out::default()
        .value("header", header(&r.header))
        .list("kvs", r.kvs.iter().map(kv).collect())
        .boolean("more", r.more)
        .int("count", r.count)
        .done()
}

pub fn put_response(r: &PbPutResponse) -> Value {
    Out::default()
        .value("header", header(&r.header))
        .value("prev_kv", r.prev_kv.as_ref().map(kv))
        .done()
}

pub fn delete_response(r: &PbDeleteResponse) -> Value {
    Out::default()
        .value("header", header(&r.header))
        .int("deleted", r.deleted)
        .list("prev_kvs", r.prev_kvs.iter().map(kv).collect())
        .done()
}

pub fn txn_response(r: &PbTxnResponse) -> Value {
    let responses = r
        .responses
        .iter()
        .map(|op| match &op.response {
            Some(PbTxnOpResponse::ResponseRange(x)) => Out::default().value("response_range", Some(range_response(x))),
            Some(PbTxnOpResponse::ResponsePut(x)) => Out::default().value("response_put", Some(put_response(x))),
            Some(PbTxnOpResponse::ResponseDeleteRange(x)) => {
                Out::default().value("response_delete_range", Some(delete_response(x)))
            }
            Some(PbTxnOpResponse::ResponseTxn(x)) => Out::default().value("response_txn", Some(txn_response(x))),
            None => Out::default(),
        })
        .map(Out::done)
        .collect();
    Out::default()
        .value("header", header(&r.header))
        .boolean("succeeded", r.succeeded)
        .list("responses", responses)
        .done()
}

pub fn event(e: &PbEvent) -> Value {
    let kind = if e.r#type == 1 { "DELETE" } else { "PUT" };
    let out = Out::default();
    let out = if kind == "DELETE" {
        out.string("type", kind)
    } else {
        out
    };
    out.value("kv", e.kv.as_ref().map(kv))
        .value("prev_kv", e.prev_kv.as_ref().map(kv))
        .done()
}

pub fn watch_response(r: &PbWatchResponse) -> Value {
    Out::default()
        .value("header", header(&r.header))
        .int("watch_id", r.watch_id)
        .boolean("created", r.created)
        .boolean("canceled", r.canceled)
        .int("compact_revision", r.compact_revision)
        .string("cancel_reason", &r.cancel_reason)
        .boolean("fragment", r.fragment)
        .list("events", r.events.iter().map(event).collect())
        .done()
}

// ---- reading ----------------------------------------------------------------

/// A JSON request body being read; errors name the field.
pub struct In<'a>(pub &'a Value);

/// `range_end` → `rangeEnd`, the other spelling protobuf JSON accepts.
fn camel(name: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

impl<'a> In<'a> {
    /// The body as an object; anything else is refused.
    pub fn object(value: &'a Value) -> Result<Self, String> {
        if value.is_object() {
            Ok(In(value))
        } else {
            Err("the request body must be a JSON object".into())
        }
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.0
            .get(name)
            .or_else(|| self.0.get(camel(name)))
            .filter(|v| !v.is_null())
    }

    pub fn bytes(&self, name: &str) -> Result<Vec<u8>, String> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => B64
                .decode(s)
                .map_err(|e| format!("field {name:?} is not valid base64: {e}")),
            Some(_) => Err(format!("field {name:?} must be a base64 string")),
        }
    }

    pub fn int(&self, name: &str) -> Result<i64, String> {
        match self.get(name) {
            None => Ok(0),
            Some(Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| format!("field {name:?} is not a 64-bit integer")),
            Some(Value::String(s)) => s
                .parse()
                .map_err(|_| format!("field {name:?} is not an integer: {s:?}")),
            Some(_) => Err(format!("field {name:?} must be an integer")),
        }
    }

    /// A uint64 (member ids use all 64 bits), as a string or a number.
    pub fn uint(&self, name: &str) -> Result<u64, String> {
        match self.get(name) {
            None => Ok(0),
            Some(Value::Number(n)) => n
                .as_u64()
                .ok_or_else(|| format!("field {name:?} is not an unsigned 64-bit integer")),
            Some(Value::String(s)) => s
                .parse()
                .map_err(|_| format!("field {name:?} is not an unsigned integer: {s:?}")),
            Some(_) => Err(format!("field {name:?} must be an integer")),
        }
    }

    /// A list of strings (`peerURLs`).
    pub fn strings(&self, name: &str) -> Result<Vec<String>, String> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("items of {name:?} must be strings"))
                })
                .collect(),
            Some(_) => Err(format!("field {name:?} must be a list of strings")),
        }
    }

    /// A nested message: absent (or null) is `None`, anything but an
    /// object is refused.
    pub fn message(&self, name: &str) -> Result<Option<In<'a>>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.is_object() => Ok(Some(In(v))),
            Some(_) => Err(format!("field {name:?} must be an object")),
        }
    }

    pub fn boolean(&self, name: &str) -> Result<bool, String> {
        match self.get(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(format!("field {name:?} must be true or false")),
        }
    }

    /// An enum given by name or number.
    pub fn enumeration(&self, name: &str, variants: &[&str]) -> Result<i32, String> {
        match self.get(name) {
            None => Ok(0),
            Some(Value::String(s)) => variants
                .iter()
                .position(|v| v == s)
                .map(|i| i as i32)
                .ok_or_else(|| format!("field {name:?}: unknown value {s:?} (one of {})", variants.join(", "))),
            Some(Value::Number(n)) => n
                .as_i64()
                .filter(|i| (0..variants.len() as i64).contains(i))
                .map(|i| i as i32)
                .ok_or_else(|| format!("field {name:?}: {n} is out of range")),
            Some(_) => Err(format!("field {name:?} must be a name or a number")),
        }
    }

    pub fn child(&self, name: &str) -> Option<In<'a>> {
        self.get(name).filter(|v| v.is_object()).map(In)
    }

    pub fn list(&self, name: &str) -> Result<Vec<In<'a>>, String> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    if v.is_object() {
                        Ok(In(v))
                    } else {
                        Err(format!("items of {name:?} must be objects"))
                    }
                })
                .collect(),
            Some(_) => Err(format!("field {name:?} must be a list")),
        }
    }
}

pub fn range_request(i: &In<'_>) -> Result<PbRangeRequest, String> {
    Ok(PbRangeRequest {
        key: i.bytes("key")?,
        range_end: i.bytes("range_end")?,
        limit: i.int("limit")?,
        revision: i.int("revision")?,
        sort_order: i.enumeration("sort_order", &["NONE", "ASCEND", "DESCEND"])?,
        sort_target: i.enumeration("sort_target", &["KEY", "VERSION", "CREATE", "MOD", "VALUE"])?,
        serializable: i.boolean("serializable")?,
        keys_only: i.boolean("keys_only")?,
        count_only: i.boolean("count_only")?,
        min_mod_revision: i.int("min_mod_revision")?,
        max_mod_revision: i.int("max_mod_revision")?,
        min_create_revision: i.int("min_create_revision")?,
        max_create_revision: i.int("max_create_revision")?,
    })
}

pub fn put_request(i: &In<'_>) -> Result<PbPutRequest, String> {
    Ok(PbPutRequest {
        key: i.bytes("key")?,
        value: i.bytes("value")?,
        lease: i.int("lease")?,
        prev_kv: i.boolean("prev_kv")?,
        ignore_value: i.boolean("ignore_value")?,
        ignore_lease: i.boolean("ignore_lease")?,
    })
}

pub fn delete_request(i: &In<'_>) -> Result<PbDeleteRequest, String> {
    Ok(PbDeleteRequest {
        key: i.bytes("key")?,
        range_end: i.bytes("range_end")?,
        prev_kv: i.boolean("prev_kv")?,
    })
}

fn compare(i: &In<'_>) -> Result<PbCompare, String> {
    let target = i.enumeration("target", &["VERSION", "CREATE", "MOD", "VALUE", "LEASE"])?;
    let target_union = match target {
        0 => PbTargetUnion::Version(i.int("version")?),
        1 => PbTargetUnion::CreateRevision(i.int("create_revision")?),
        2 => PbTargetUnion::ModRevision(i.int("mod_revision")?),
        3 => PbTargetUnion::Value(i.bytes("value")?),
        _ => PbTargetUnion::Lease(i.int("lease")?),
    };
    Ok(PbCompare {
        result: i.enumeration("result", &["EQUAL", "GREATER", "LESS", "NOT_EQUAL"])?,
        target,
        key: i.bytes("key")?,
        range_end: i.bytes("range_end")?,
        target_union: Some(target_union),
    })
}

fn request_op(i: &In<'_>) -> Result<PbTxnRequestOp, String> {
    let request = if let Some(r) = i.child("request_range") {
        PbTxnOpRequest::RequestRange(range_request(&r)?)
    } else if let Some(r) = i.child("request_put") {
        PbTxnOpRequest::RequestPut(put_request(&r)?)
    } else if let Some(r) = i.child("request_delete_range") {
        PbTxnOpRequest::RequestDeleteRange(delete_request(&r)?)
    } else if let Some(r) = i.child("request_txn") {
        PbTxnOpRequest::RequestTxn(txn_request(&r)?)
    } else {
        return Err(
            "a txn operation needs one of request_range, request_put, request_delete_range, request_txn".into(),
        );
    };
    Ok(PbTxnRequestOp { request: Some(request) })
}

pub fn txn_request(i: &In<'_>) -> Result<PbTxnRequest, String> {
    Ok(PbTxnRequest {
        compare: i.list("compare")?.iter().map(compare).collect::<Result<_, _>>()?,
        success: i.list("success")?.iter().map(request_op).collect::<Result<_, _>>()?,
        failure: i.list("failure")?.iter().map(request_op).collect::<Result<_, _>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_both_spellings_strings_and_numbers() {
        let body = json!({"key": "Zm9v", "rangeEnd": "Zm9w", "limit": "10", "revision": 3, "sort_order": "DESCEND"});
        let r = range_request(&In::object(&body).unwrap()).unwrap();
        assert_eq!(
            (r.key, r.range_end, r.limit, r.revision, r.sort_order),
            (b"foo".to_vec(), b"fop".to_vec(), 10, 3, 2)
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let err = put_request(&In(&json!({"key": "not base64!"}))).unwrap_err();
        assert!(err.contains("\"key\" is not valid base64"), "{err}");
        let err = range_request(&In(&json!({"key": "YQ==", "sort_target": "SIZE"}))).unwrap_err();
        assert!(err.contains("unknown value \"SIZE\""), "{err}");
        assert!(In::object(&json!([1])).is_err());
    }

    #[test]
    fn reads_full_uint64_ids_string_lists_and_messages() {
        let body = json!({"ID": "17237436991929493444", "targetID": 18446744073709551615u64,
                          "peerURLs": ["http://a:2380"], "leader": {"rev": "4"}});
        let i = In(&body);
        assert_eq!(i.uint("ID").expect("a string id"), 17237436991929493444);
        assert_eq!(i.uint("targetID").expect("a numeric id"), u64::MAX);
        assert_eq!(i.strings("peerURLs").expect("a list"), ["http://a:2380"]);
        let leader = i.message("leader").expect("an object").expect("present");
        assert_eq!(leader.int("rev").expect("an int"), 4);
        assert!(i.uint("peerURLs").is_err() && i.strings("ID").is_err() && i.message("ID").is_err());
        assert!(In(&json!({"ID": "-1"})).uint("ID").is_err());
    }

    #[test]
    fn writes_enums_by_name_and_members() {
        let alarm = Out::default()
            .enumeration("alarm", 1, ALARM_TYPES)
            .enumeration("none", 0, ALARM_TYPES)
            .done();
        assert_eq!(alarm, json!({"alarm": "NOSPACE"}));
        let m = PbMember {
            id: u64::MAX,
            name: String::new(),
            peer_ur_ls: vec!["http://a:2380".into()],
            client_ur_ls: Vec::new(),
            is_learner: true,
        };
        assert_eq!(
            member(&m),
            json!({"ID": u64::MAX.to_string(), "peerURLs": ["http://a:2380"], "isLearner": true})
        );
    }

    #[test]
    fn writes_int64_as_strings_and_skips_defaults() {
        let resp = PbPutResponse {
            header: Some(PbResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: 3,
                raft_term: 0,
            }),
            prev_kv: None,
        };
        assert_eq!(
            put_response(&resp),
            json!({"header": {"cluster_id": "1", "member_id": "2", "revision": "3"}})
        );
    }
}
