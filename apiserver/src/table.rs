//! Table output (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`):
//! the columns `kubectl get` prints, computed by the server.
//!
//! kubectl does not know how to print a Pod; it asks the API server for a
//! `meta.k8s.io/v1` Table whose column definitions and row cells are ready
//! to show (READY 1/1, STATUS Running, AGE 5m). Columns with priority 1
//! appear only with `-o wide`. Each row carries the object's metadata (or
//! the whole object with `includeObject=Object`) so that `--show-labels`
//! and `-o name` still work. Kinds without printer columns of their own get
//! NAME and AGE.

use serde_json::{json, Value};

/// `(name, type, priority, description)` of a column.
type Column = (&'static str, &'static str, u8, &'static str);

const NAME: Column = ("Name", "string", 0, "Name must be unique within a namespace.");
const AGE: Column = (
    "Age",
    "string",
    0,
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);

/// The `-o wide` columns of Deployments and ReplicaSets.
const WORKLOAD_WIDE: [Column; 3] = [
    ("Containers", "string", 1, "Names of each container in the template."),
    (
        "Images",
        "string",
        1,
        "Images referenced by each container in the template.",
    ),
    ("Selector", "string", 1, "Label selector for pods."),
];

fn columns(plural: &str, group: &str) -> Vec<Column> {
    match (group, plural) {
        ("", "pods") => vec![
            NAME,
            ("Ready", "string", 0, "The number of containers that are ready."),
            (
                "Status",
                "string",
                0,
                "The aggregate status of the containers in this pod.",
            ),
            (
                "Restarts",
                "string",
                0,
                "The number of times the containers in this pod have been restarted.",
            ),
            AGE,
            ("IP", "string", 1, "IP address allocated to the pod."),
            ("Node", "string", 1, "Name of the node the pod is assigned to."),
            (
                "Nominated Node",
                "string",
                1,
                "Name of the node where the pod may run after preemption.",
            ),
            ("Readiness Gates", "string", 1, "The readiness gates of the pod."),
        ],
        ("", "nodes") => vec![
            NAME,
            ("Status", "string", 0, "The status of the node."),
            ("Roles", "string", 0, "The roles of the node."),
            AGE,
            ("Version", "string", 0, "Kubelet version."),
            ("Internal-IP", "string", 1, "List of internal IPs of the node."),
            ("External-IP", "string", 1, "List of external IPs of the node."),
            ("OS-Image", "string", 1, "OS image reported by the node."),
            ("Kernel-Version", "string", 1, "Kernel version reported by the node."),
            (
                "Container-Runtime",
                "string",
                1,
                "Container runtime reported by the node.",
            ),
        ],
        ("apps", "deployments") => vec![
            NAME,
            (
                "Ready",
                "string",
                0,
                "Number of ready replicas out of the desired number.",
            ),
            (
                "Up-to-date",
                "integer",
                0,
                "Total number of non-terminated pods with the desired template.",
            ),
            ("Available", "integer", 0, "Total number of available pods."),
            AGE,
        ]
        .into_iter()
        .chain(WORKLOAD_WIDE)
        .collect(),
        ("apps", "replicasets") => vec![
            NAME,
            ("Desired", "integer", 0, "Number of desired pods."),
            ("Current", "integer", 0, "Number of actual pods."),
            ("Ready", "integer", 0, "Number of ready pods."),
            AGE,
        ]
        .into_iter()
        .chain(WORKLOAD_WIDE)
        .collect(),
        ("", "services") => vec![
            NAME,
            ("Type", "string", 0, "The type of the service."),
            ("Cluster-IP", "string", 0, "The IP address of the service."),
            ("External-IP", "string", 0, "The external IP addresses of the service."),
            ("Port(s)", "string", 0, "The ports exposed by the service."),
            AGE,
            ("Selector", "string", 1, "Route traffic to pods with these labels."),
        ],
        ("", "namespaces") => vec![NAME, ("Status", "string", 0, "The status of the namespace."), AGE],
        ("", "events") => vec![
            ("Last Seen", "string", 0, "Time of the last occurrence."),
            ("Type", "string", 0, "Type of this event (Normal, Warning)."),
            ("Reason", "string", 0, "Short, machine understandable reason."),
            ("Object", "string", 0, "The object this event is about."),
            ("Message", "string", 0, "A human-readable description."),
            ("Source", "string", 1, "The component reporting this event."),
            ("First Seen", "string", 1, "Time of the first occurrence."),
            ("Count", "integer", 1, "The number of times this event has occurred."),
            ("Name", "string", 1, "The name of the event."),
        ],
        ("", "configmaps") => vec![NAME, ("Data", "integer", 0, "Number of data entries."), AGE],
        ("", "secrets") => vec![
            NAME,
            ("Type", "string", 0, "The type of the secret."),
            ("Data", "integer", 0, "Number of data entries."),
            AGE,
        ],
        ("coordination.k8s.io", "leases") => vec![NAME, ("Holder", "string", 0, "The holder of the lease."), AGE],
        _ => vec![NAME, AGE],
    }
}

/// Kubernetes' short durations: 45s, 3m20s, 5h, 12d, 2y30d.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    match () {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 && s % 60 != 0 => format!("{m}m{}s", s % 60),
        _ if m < 180 => format!("{m}m"),
        _ if h < 8 && m % 60 != 0 => format!("{h}h{}m", m % 60),
        _ if h < 48 => format!("{h}h"),
        _ if h < 192 && h % 24 != 0 => format!("{d}d{}h", h % 24),
        _ if d < 365 * 2 => format!("{d}d"),
        _ if d / 365 < 8 && d % 365 != 0 => format!("{}y{}d", d / 365, d % 365),
        _ => format!("{}y", d / 365),
    }
}

/// How long ago an RFC 3339 timestamp was, the way AGE shows it.
fn age(timestamp: &Value) -> String {
    let Some(text) = timestamp.as_str() else {
        return "<unknown>".into();
    };
    let Ok(then) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) else {
        return "<unknown>".into();
    };
    human_duration((time::OffsetDateTime::now_utc() - then).whole_seconds())
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn or_none(text: String) -> String {
    if text.is_empty() {
        "<none>".into()
    } else {
        text
    }
}

fn joined(items: &Value, field: &str) -> String {
    items
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| s(&i[field]))
        .collect::<Vec<_>>()
        .join(",")
}

/// A label selector as text (`app=web,tier in (a,b)`).
fn selector_text(selector: &Value) -> String {
    let mut parts: Vec<String> = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", s(v)))
        .collect();
    for e in selector["matchExpressions"].as_array().into_iter().flatten() {
        let values = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect::<Vec<_>>()
            .join(",");
        parts.push(format!(
            "{} {} ({values})",
            s(&e["key"]),
            s(&e["operator"]).to_lowercase()
        ));
    }
    parts.join(",")
}

fn pod_cells(pod: &Value) -> Vec<Value> {
    let statuses = pod["status"]["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let total = pod["spec"]["containers"].as_array().map_or(0, Vec::len);
    let ready = statuses.iter().filter(|c| c["ready"] == true).count();
    let restarts: i64 = statuses.iter().filter_map(|c| c["restartCount"].as_i64()).sum();
    // The reason a person wants to see: a waiting or terminated
    // container's reason wins over the phase, deletion over both.
    let mut status = s(&pod["status"]["phase"]);
    if let Some(reason) = pod["status"]["reason"].as_str() {
        status = reason.to_string();
    }
    for c in &statuses {
        if let Some(r) = c["state"]["waiting"]["reason"].as_str() {
            status = r.to_string();
        } else if let Some(r) = c["state"]["terminated"]["reason"].as_str() {
            status = r.to_string();
        }
    }
    if pod["metadata"]["deletionTimestamp"].is_string() {
        status = "Terminating".into();
    }
    if status.is_empty() {
        status = "Pending".into();
    }
    let gates = pod["spec"]["readinessGates"].as_array().map_or(0, Vec::len);
    vec![
        json!(pod["metadata"]["name"]),
        json!(format!("{ready}/{total}")),
        json!(status),
        json!(restarts.to_string()),
        json!(age(&pod["metadata"]["creationTimestamp"])),
        json!(or_none(s(&pod["status"]["podIP"]))),
        json!(or_none(s(&pod["spec"]["nodeName"]))),
        json!(or_none(s(&pod["status"]["nominatedNodeName"]))),
        json!(if gates == 0 {
            "<none>".to_string()
        } else {
            format!("0/{gates}")
        }),
    ]
}

fn node_cells(node: &Value) -> Vec<Value> {
    let conditions = node["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let ready = conditions.iter().find(|c| c["type"] == "Ready");
    let mut status = match ready.map(|c| c["status"].as_str()) {
        Some(Some("True")) => "Ready".to_string(),
        _ => "NotReady".to_string(),
    };
    if node["spec"]["unschedulable"] == true {
        status.push_str(",SchedulingDisabled");
    }
    let roles: Vec<&str> = node["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
        .collect();
    let address = |kind: &str| {
        let found = node["status"]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["type"] == kind)
            .map(|a| s(&a["address"]))
            .collect::<Vec<_>>()
            .join(",");
        or_none(found)
    };
    let info = &node["status"]["nodeInfo"];
    vec![
        json!(node["metadata"]["name"]),
        json!(status),
        json!(or_none(roles.join(","))),
        json!(age(&node["metadata"]["creationTimestamp"])),
        json!(s(&info["kubeletVersion"])),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(or_none(s(&info["osImage"]))),
        json!(or_none(s(&info["kernelVersion"]))),
        json!(or_none(s(&info["containerRuntimeVersion"]))),
    ]
}

fn workload_tail(object: &Value) -> [Value; 3] {
    let containers = &object["spec"]["template"]["spec"]["containers"];
    [
        json!(joined(containers, "name")),
        json!(joined(containers, "image")),
        json!(selector_text(&object["spec"]["selector"])),
    ]
}

fn service_cells(svc: &Value) -> Vec<Value> {
    let spec = &svc["spec"];
    let kind = spec["type"].as_str().unwrap_or("ClusterIP");
    let mut external: Vec<String> = spec["externalIPs"].as_array().into_iter().flatten().map(s).collect();
    for ingress in svc["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
    {
        external.push(s(if ingress["ip"].is_string() {
            &ingress["ip"]
        } else {
            &ingress["hostname"]
        }));
    }
    let external = match (external.is_empty(), kind) {
        (false, _) => external.join(","),
        (true, "LoadBalancer") => "<pending>".into(),
        (true, "ExternalName") => s(&spec["externalName"]),
        _ => "<none>".into(),
    };
    let ports: Vec<String> = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let protocol = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(node_port) => format!("{}:{node_port}/{protocol}", s(&p["port"])),
                None => format!("{}/{protocol}", s(&p["port"])),
            }
        })
        .collect();
    let selector: Vec<String> = spec["selector"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", s(v)))
        .collect();
    vec![
        json!(svc["metadata"]["name"]),
        json!(kind),
        json!(or_none(s(&spec["clusterIP"]))),
        json!(external),
        json!(or_none(ports.join(","))),
        json!(age(&svc["metadata"]["creationTimestamp"])),
        json!(or_none(selector.join(","))),
    ]
}

fn event_cells(event: &Value) -> Vec<Value> {
    let object = &event["involvedObject"];
    let last = if event["lastTimestamp"].is_string() {
        &event["lastTimestamp"]
    } else {
        &event["eventTime"]
    };
    let source = &event["source"];
    let source = match (s(&source["component"]), s(&source["host"])) {
        (c, h) if h.is_empty() => c,
        (c, h) => format!("{c}, {h}"),
    };
    vec![
        json!(age(last)),
        json!(s(&event["type"])),
        json!(s(&event["reason"])),
        json!(format!("{}/{}", s(&object["kind"]).to_lowercase(), s(&object["name"]))),
        json!(s(&event["message"])),
        json!(source),
        json!(age(&event["firstTimestamp"])),
        json!(event["count"].as_i64().unwrap_or(1)),
        json!(event["metadata"]["name"]),
    ]
}

fn count(map: &Value) -> usize {
    map.as_object().map_or(0, |m| m.len())
}

fn cells(plural: &str, group: &str, o: &Value) -> Vec<Value> {
    let name = json!(o["metadata"]["name"]);
    let created = json!(age(&o["metadata"]["creationTimestamp"]));
    let int = |v: &Value| json!(v.as_i64().unwrap_or(0));
    match (group, plural) {
        ("", "pods") => pod_cells(o),
        ("", "nodes") => node_cells(o),
        ("", "services") => service_cells(o),
        ("", "events") => event_cells(o),
        ("apps", "deployments") => {
            let ready = o["status"]["readyReplicas"].as_i64().unwrap_or(0);
            let desired = o["spec"]["replicas"].as_i64().unwrap_or(1);
            let mut row = vec![
                name,
                json!(format!("{ready}/{desired}")),
                int(&o["status"]["updatedReplicas"]),
                int(&o["status"]["availableReplicas"]),
                created,
            ];
            row.extend(workload_tail(o));
            row
        }
        ("apps", "replicasets") => {
            let mut row = vec![
                name,
                json!(o["spec"]["replicas"].as_i64().unwrap_or(1)),
                int(&o["status"]["replicas"]),
                int(&o["status"]["readyReplicas"]),
                created,
            ];
            row.extend(workload_tail(o));
            row
        }
        ("", "namespaces") => vec![name, json!(s(&o["status"]["phase"])), created],
        ("", "configmaps") => vec![name, json!(count(&o["data"]) + count(&o["binaryData"])), created],
        ("", "secrets") => vec![name, json!(s(&o["type"])), json!(count(&o["data"])), created],
        ("coordination.k8s.io", "leases") => {
            vec![name, json!(or_none(s(&o["spec"]["holderIdentity"]))), created]
        }
        _ => vec![name, created],
    }
}

/// What a row carries besides its cells (`includeObject`).
fn row_object(object: &Value, include: &str) -> Value {
    match include {
        "None" => Value::Null,
        "Object" => object.clone(),
        _ => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": object["metadata"],
        }),
    }
}

/// A `meta.k8s.io/v1` Table of `rows` under `definitions`.
fn envelope(list_meta: Value, definitions: Vec<Value>, rows: Vec<Value>) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

/// A custom resource's Table: NAME, then its CRD's
/// `additionalPrinterColumns` (each a JSONPath into the object; `date`
/// columns shown as an age), or NAME and AGE when it declares none.
fn custom_table(columns: &[Value], objects: &[Value], list_meta: Value, include: &str) -> Value {
    let mut definitions = vec![json!({"name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace.", "priority": 0})];
    for c in columns {
        definitions.push(json!({
            "name": c["name"],
            "type": c["type"],
            "format": c["format"].as_str().unwrap_or_default(),
            "description": c["description"].as_str().unwrap_or_default(),
            "priority": c["priority"].as_i64().unwrap_or(0),
        }));
    }
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            for c in columns {
                let value = crate::json_path::get(o, c["jsonPath"].as_str().unwrap_or_default());
                cells.push(match (c["type"].as_str(), value) {
                    (_, Value::Null) => Value::Null,
                    (Some("date"), v) => json!(age(v)),
                    (Some("string"), Value::String(s)) => json!(s),
                    (Some("string"), v) => json!(v.to_string()),
                    (_, v) => v.clone(),
                });
            }
            json!({"cells": cells, "object": row_object(o, include)})
        })
        .collect();
    envelope(list_meta, definitions, rows)
}

/// A Table of `objects` (a list's items, or one object) for `resource`.
pub fn table(resource: &api::resources::ResourceInfo, objects: &[Value], list_meta: Value, include: &str) -> Value {
    if let Some(served) = crate::crd::find(resource.group, resource.version, resource.plural) {
        if let Some(columns) = served.columns.as_array().filter(|c| !c.is_empty()) {
            return custom_table(columns, objects, list_meta, include);
        }
    }
    let definitions: Vec<Value> = columns(resource.plural, resource.group)
        .into_iter()
        .map(|(name, kind, priority, description)| {
            json!({
                "name": name,
                "type": kind,
                "format": if name == "Name" { "name" } else { "" },
                "description": description,
                "priority": priority,
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            json!({
                "cells": cells(resource.plural, resource.group, o),
                "object": row_object(o, include),
            })
        })
        .collect();
    envelope(list_meta, definitions, rows)
}

/// Whether an Accept header asks for a Table.
pub fn wanted(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table") && first.contains("g=meta.k8s.io"))
}

/// A list response (or one object) as a Table.
pub fn from_response(resource: &api::resources::ResourceInfo, value: &Value, include: &str) -> Value {
    match value.get("items").and_then(Value::as_array) {
        Some(items) => table(resource, items, value["metadata"].clone(), include),
        None => {
            let meta = json!({"resourceVersion": value["metadata"]["resourceVersion"]});
            table(resource, std::slice::from_ref(value), meta, include)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectls() {
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (200, "3m20s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (30 * 3600, "30h"),
            (3 * 86400 + 3600, "3d1h"),
            (400 * 86400, "400d"),
            (3 * 365 * 86400 + 86400, "3y1d"),
        ];
        for (seconds, text) in cases {
            assert_eq!(human_duration(seconds), text, "{seconds}");
        }
    }

    #[test]
    fn pod_rows_show_readiness_status_and_restarts() {
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": [
                {"ready": true, "restartCount": 2, "state": {"running": {}}},
                {"ready": false, "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]},
        });
        let resource = api::resources::find("", "v1", "pods").unwrap();
        let t = from_response(resource, &pod, "Metadata");
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[0], "web");
        assert_eq!(cells[1], "1/2");
        assert_eq!(cells[2], "CrashLoopBackOff");
        assert_eq!(cells[3], "5");
        assert_eq!(cells[5], "10.0.0.5");
        assert_eq!(cells[6], "n1");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(
            t["columnDefinitions"].as_array().unwrap().len(),
            cells.as_array().unwrap().len()
        );
    }

    #[test]
    fn accept_headers_that_ask_for_tables() {
        assert!(wanted("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"));
        assert!(!wanted("application/json"));
        assert!(!wanted(
            "application/json, application/json;as=Table;v=v1;g=meta.k8s.io"
        ));
    }
}
