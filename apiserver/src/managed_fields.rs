//! Managed fields: which field manager set which fields of an object.
//!
//! Every write records, in `metadata.managedFields`, the fields it set
//! under the name of its field manager (`?fieldManager=`, or the client's
//! user agent): `kubectl-client-side-apply`, `helm`, `kube-controller-
//! manager` … Server-side apply ([`server_side_apply`](crate::server_side_apply))
//! uses these records to merge one manager's configuration with everyone
//! else's changes and to report conflicts.
//!
//! A field set is a set of paths. A path walks maps by field name (`f:`),
//! associative lists by their key fields (`k:{"name":"app"}`, the element
//! itself), and set-like lists by value (`v:"a"`); everything else, scalars
//! and atomic lists, is a leaf. On the wire a set is Kubernetes' FieldsV1
//! tree (`{"f:spec":{"f:replicas":{}}}`, with `"."` for an element that is
//! owned itself).

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use crate::strategic_merge::{strategy, Strategy};

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// A field of an object (or a key of a map).
    Field(String),
    /// An element of an associative list, by its key fields (canonical JSON).
    Key(String),
    /// An element of a set-like list, by its value (canonical JSON).
    Value(String),
}

pub type Path = Vec<Step>;

/// The fields a manager owns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet(pub BTreeSet<Path>);

impl FieldSet {
    pub fn contains(&self, path: &Path) -> bool {
        self.0.contains(path)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.difference(&other.0).cloned().collect())
    }
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.union(&other.0).cloned().collect())
    }
    pub fn remove_all(&mut self, other: &FieldSet) {
        self.0.retain(|p| !other.0.contains(p));
    }
}

/// Fields that identify an object or belong to the server, never owned.
fn identity(path: &[String]) -> bool {
    matches!(
        path,
        [f] if f == "apiVersion" || f == "kind" || f == "status"
    ) || matches!(
        path,
        [m, f] if m == "metadata" && matches!(f.as_str(), "name" | "namespace" | "uid" | "resourceVersion"
            | "generation" | "creationTimestamp" | "deletionTimestamp" | "deletionGracePeriodSeconds"
            | "managedFields" | "selfLink")
    )
}

fn key_of(item: &Value, key: &str) -> String {
    let mut m = Map::new();
    m.insert(key.to_string(), item.get(key).cloned().unwrap_or(Value::Null));
    Value::Object(m).to_string()
}

/// The fields `value` sets, for an object of schema `schema`. With
/// `status`, only the status (what a status update owns); otherwise
/// everything but the status and the identity fields.
pub fn fields_of(schema: Option<&str>, value: &Value, status: bool) -> FieldSet {
    let mut out = BTreeSet::new();
    let Some(map) = value.as_object() else {
        return FieldSet(out);
    };
    for (k, v) in map {
        if status != (k == "status") {
            continue;
        }
        walk(
            schema,
            k,
            v,
            &mut vec![Step::Field(k.clone())],
            &mut vec![k.clone()],
            &mut out,
        );
    }
    FieldSet(out)
}

fn walk(
    parent: Option<&str>,
    field: &str,
    value: &Value,
    path: &mut Path,
    names: &mut Vec<String>,
    out: &mut BTreeSet<Path>,
) {
    if identity(names) {
        return;
    }
    let schema = parent.and_then(|p| crate::types::field_schema(p, field));
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                path.push(Step::Field(k.clone()));
                names.push(k.clone());
                walk(schema, k, v, path, names, out);
                names.pop();
                path.pop();
            }
        }
        Value::Array(items) => match strategy(parent, field) {
            Strategy::MergeBy(key) if items.iter().all(|i| i.get(key).is_some()) => {
                for item in items {
                    path.push(Step::Key(key_of(item, key)));
                    out.insert(path.clone());
                    if let Some(fields) = item.as_object() {
                        for (k, v) in fields {
                            path.push(Step::Field(k.clone()));
                            names.push(k.clone());
                            walk(schema, k, v, path, names, out);
                            names.pop();
                            path.pop();
                        }
                    }
                    path.pop();
                }
            }
            Strategy::Union => {
                for item in items {
                    path.push(Step::Value(item.to_string()));
                    out.insert(path.clone());
                    path.pop();
                }
            }
            _ => {
                out.insert(path.clone());
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The value at `path` in `object`, if any.
pub fn get<'a>(object: &'a Value, path: &[Step]) -> Option<&'a Value> {
    let mut here = object;
    for step in path {
        here = match step {
            Step::Field(f) => here.get(f)?,
            Step::Key(k) => find_keyed(here, k)?,
            Step::Value(v) => here.as_array()?.iter().find(|i| i.to_string() == *v)?,
        };
    }
    Some(here)
}

fn find_keyed<'a>(list: &'a Value, key: &str) -> Option<&'a Value> {
    let wanted: Map<String, Value> = serde_json::from_str(key).ok()?;
    list.as_array()?
        .iter()
        .find(|item| wanted.iter().all(|(k, v)| item.get(k) == Some(v)))
}

/// Removes the value at `path` (a field, a list element) from `object`.
pub fn remove(object: &mut Value, path: &[Step]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut here = object;
    for step in parents {
        let next = match step {
            Step::Field(f) => here.get_mut(f),
            Step::Key(k) => {
                let Ok(wanted) = serde_json::from_str::<Map<String, Value>>(k) else {
                    return;
                };
                here.as_array_mut()
                    .and_then(|l| l.iter_mut().find(|i| wanted.iter().all(|(k, v)| i.get(k) == Some(v))))
            }
            Step::Value(v) => here
                .as_array_mut()
                .and_then(|l| l.iter_mut().find(|i| i.to_string() == *v)),
        };
        match next {
            Some(n) => here = n,
            None => return,
        }
    }
    match last {
        Step::Field(f) => {
            if let Some(m) = here.as_object_mut() {
                m.remove(f);
            }
        }
        Step::Key(k) => {
            if let (Some(list), Ok(wanted)) = (here.as_array_mut(), serde_json::from_str::<Map<String, Value>>(k)) {
                list.retain(|i| !wanted.iter().all(|(k, v)| i.get(k) == Some(v)));
            }
        }
        Step::Value(v) => {
            if let Some(list) = here.as_array_mut() {
                list.retain(|i| i.to_string().as_str() != v.as_str());
            }
        }
    }
}

fn step_key(step: &Step) -> String {
    match step {
        Step::Field(f) => format!("f:{f}"),
        Step::Key(k) => format!("k:{k}"),
        Step::Value(v) => format!("v:{v}"),
    }
}

/// The FieldsV1 tree of a set.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Value::Object(Map::new());
    for path in &set.0 {
        let mut here = &mut root;
        for step in path {
            let key = step_key(step);
            here = here
                .as_object_mut()
                .map(|m| m.entry(key).or_insert_with(|| Value::Object(Map::new())))
                .unwrap_or_else(|| unreachable!("every node is an object"));
        }
        // A node that is owned and has children marks itself with ".".
        if matches!(path.last(), Some(Step::Key(_))) {
            if let Some(m) = here.as_object_mut() {
                m.insert(".".into(), json!({}));
            }
        }
    }
    root
}

/// A set from its FieldsV1 tree.
pub fn from_fields_v1(tree: &Value) -> FieldSet {
    fn go(node: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
        let Some(map) = node.as_object() else { return };
        if (map.is_empty() || map.contains_key(".")) && !path.is_empty() {
            out.insert(path.clone());
        }
        for (key, child) in map {
            let step = if let Some(f) = key.strip_prefix("f:") {
                Step::Field(f.to_string())
            } else if let Some(k) = key.strip_prefix("k:") {
                Step::Key(k.to_string())
            } else if let Some(v) = key.strip_prefix("v:") {
                Step::Value(v.to_string())
            } else {
                continue;
            };
            path.push(step);
            go(child, path, out);
            path.pop();
        }
    }
    let mut out = BTreeSet::new();
    go(tree, &mut Vec::new(), &mut out);
    FieldSet(out)
}

/// How a path reads in a conflict message: `.spec.replicas`,
/// `.spec.template.spec.containers[name="app"].image`.
pub fn display(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            Step::Key(k) => {
                let parsed: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let inner: Vec<String> = parsed.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("[{}]", inner.join(",")));
            }
            Step::Value(v) => out.push_str(&format!("[={v}]")),
        }
    }
    out
}

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub manager: String,
    /// "Apply" or "Update".
    pub operation: String,
    pub api_version: String,
    pub subresource: String,
    pub time: String,
    pub fields: FieldSet,
}

pub fn read_entries(object: &Value) -> Vec<Entry> {
    let text = |e: &Value, k: &str| e[k].as_str().unwrap_or_default().to_string();
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Entry {
            manager: text(e, "manager"),
            operation: text(e, "operation"),
            api_version: text(e, "apiVersion"),
            subresource: text(e, "subresource"),
            time: text(e, "time"),
            fields: from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

pub fn write_entries(object: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if let Some(meta) = object["metadata"].as_object_mut() {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// The leaves whose value `new` sets differently from `old` (added or
/// changed), and those `old` had and `new` lost.
pub fn changes(schema: Option<&str>, old: &Value, new: &Value, status: bool) -> (FieldSet, FieldSet) {
    let before = fields_of(schema, old, status);
    let after = fields_of(schema, new, status);
    let changed: BTreeSet<Path> = after
        .0
        .iter()
        .filter(|p| !before.0.contains(*p) || get(old, p) != get(new, p))
        .cloned()
        .collect();
    (FieldSet(changed), before.difference(&after))
}

/// Records a non-apply write by `manager`: it now owns what it changed,
/// nobody owns what it removed.
pub fn record_update(
    entries: &mut Vec<Entry>,
    manager: &str,
    api_version: &str,
    subresource: &str,
    changed: &FieldSet,
    removed: &FieldSet,
) {
    for e in entries.iter_mut() {
        e.fields.remove_all(changed);
        e.fields.remove_all(removed);
    }
    let now = crate::registry::now();
    match entries
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == "Update" && e.subresource == subresource)
    {
        Some(e) => {
            e.fields = e.fields.union(changed);
            e.time = now;
        }
        None => entries.push(Entry {
            manager: manager.to_string(),
            operation: "Update".into(),
            api_version: api_version.to_string(),
            subresource: subresource.to_string(),
            time: now,
            fields: changed.clone(),
        }),
    }
    entries.retain(|e| !e.fields.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";

    #[test]
    fn field_sets_round_trip_through_fields_v1() {
        let object = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a"]},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "app", "image": "x", "args": ["a", "b"]}]}}}});
        let set = fields_of(Some(DEPLOYMENT), &object, false);
        let tree = to_fields_v1(&set);
        assert_eq!(tree["f:metadata"]["f:labels"]["f:app"], json!({}));
        assert_eq!(tree["f:metadata"]["f:finalizers"]["v:\"a\""], json!({}));
        let container = &tree["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"];
        assert_eq!(container["."], json!({}));
        assert_eq!(container["f:args"], json!({}), "an atomic list is one leaf");
        assert!(tree["f:metadata"].get("f:name").is_none(), "identity is not owned");
        assert_eq!(from_fields_v1(&tree), set);
        let image: Path = vec![
            Step::Field("spec".into()),
            Step::Field("template".into()),
            Step::Field("spec".into()),
            Step::Field("containers".into()),
            Step::Key("{\"name\":\"app\"}".into()),
            Step::Field("image".into()),
        ];
        assert_eq!(get(&object, &image), Some(&json!("x")));
        assert_eq!(display(&image), ".spec.template.spec.containers[name=\"app\"].image");
        let mut trimmed = object.clone();
        remove(&mut trimmed, &image[..5]);
        assert_eq!(trimmed["spec"]["template"]["spec"]["containers"], json!([]));
    }

    #[test]
    fn updates_take_ownership_of_what_they_change() {
        let old = json!({"spec": {"replicas": 1, "paused": false}});
        let new = json!({"spec": {"replicas": 3, "paused": false}});
        let (changed, removed) = changes(Some(DEPLOYMENT), &old, &new, false);
        let replicas: Path = vec![Step::Field("spec".into()), Step::Field("replicas".into())];
        assert_eq!(changed.0.iter().collect::<Vec<_>>(), [&replicas]);
        assert!(removed.is_empty());
        let mut entries = vec![Entry {
            manager: "helm".into(),
            operation: "Apply".into(),
            api_version: "apps/v1".into(),
            subresource: String::new(),
            time: String::new(),
            fields: fields_of(Some(DEPLOYMENT), &old, false),
        }];
        record_update(&mut entries, "kubectl", "apps/v1", "", &changed, &removed);
        assert!(!entries[0].fields.contains(&replicas), "taken from helm");
        assert!(entries[1].fields.contains(&replicas) && entries[1].operation == "Update");
    }
}
