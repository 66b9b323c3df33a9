//! The Service registry strategy: defaults, ClusterIP and NodePort
//! allocation, and their release.
//!
//! On create a Service gets Kubernetes' defaults (type ClusterIP,
//! sessionAffinity None, TCP ports whose targetPort is the port, one IPv4
//! family) and an address from `--service-cluster-ip-range` unless it is
//! headless (`clusterIP: None`) or an ExternalName; NodePort and
//! LoadBalancer Services get a node port per port from
//! `--service-node-port-range`. Addresses and ports the caller asks for are
//! checked against the ranges and against what is taken. On update the
//! ClusterIP cannot change (an update that leaves it out keeps it), node
//! ports are kept per port, and ports no longer needed are released; on
//! delete everything is released.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

use crate::allocator::{AllocationError, Allocator};
use crate::status::ApiError;
use crate::storage::Storage;

/// What a Service holds, to give back if its write fails.
#[derive(Debug, Default)]
pub struct Held {
    pub ip: Option<String>,
    pub ports: Vec<u16>,
}

impl Held {
    pub async fn release(self, allocator: &Allocator, storage: &Storage) {
        if let Some(ip) = &self.ip {
            allocator.release_ip(storage, ip).await;
        }
        for port in self.ports {
            allocator.release_port(storage, port).await;
        }
    }
}

fn name_of(svc: &Value) -> String {
    svc["metadata"]["name"].as_str().unwrap_or_default().to_string()
}

fn owner(svc: &Value) -> String {
    format!(
        "{}/{}",
        svc["metadata"]["namespace"].as_str().unwrap_or_default(),
        name_of(svc)
    )
}

fn kind_of(svc: &Value) -> &str {
    svc["spec"]["type"].as_str().unwrap_or("ClusterIP")
}

fn needs_node_ports(svc: &Value) -> bool {
    matches!(kind_of(svc), "NodePort" | "LoadBalancer")
}

/// Kubernetes' defaults for a Service, and the checks that need no store.
pub fn default_and_validate(svc: &mut Value) -> Result<(), ApiError> {
    let name = name_of(svc);
    let invalid = |field: &str, message: &str| ApiError::invalid("Service", &name, field, message);
    if !svc["spec"].is_object() {
        svc["spec"] = json!({});
    }
    let spec = &mut svc["spec"];
    if spec["type"].is_null() {
        spec["type"] = json!("ClusterIP");
    }
    let kind = spec["type"].as_str().unwrap_or_default().to_string();
    if !matches!(
        kind.as_str(),
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        return Err(invalid(
            "spec.type",
            &format!("Unsupported value: \"{kind}\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""),
        ));
    }
    if spec["sessionAffinity"].is_null() {
        spec["sessionAffinity"] = json!("None");
    }
    if kind == "ExternalName" {
        if spec["externalName"].as_str().unwrap_or_default().is_empty() {
            return Err(invalid("spec.externalName", "Required value"));
        }
        return Ok(());
    }
    if spec["internalTrafficPolicy"].is_null() {
        spec["internalTrafficPolicy"] = json!("Cluster");
    }
    if kind != "ClusterIP" && spec["externalTrafficPolicy"].is_null() {
        spec["externalTrafficPolicy"] = json!("Cluster");
    }
    if spec["ipFamilies"].is_null() {
        spec["ipFamilies"] = json!(["IPv4"]);
    }
    if spec["ipFamilyPolicy"].is_null() {
        spec["ipFamilyPolicy"] = json!("SingleStack");
    }
    let ports = spec["ports"].as_array_mut();
    let Some(ports) = ports.filter(|p| !p.is_empty()) else {
        return Err(invalid("spec.ports", "Required value"));
    };
    let several = ports.len() > 1;
    let mut names = std::collections::HashSet::new();
    for (i, port) in ports.iter_mut().enumerate() {
        let number = port["port"].as_i64().unwrap_or(0);
        if !(1..=65535).contains(&number) {
            return Err(invalid(
                &format!("spec.ports[{i}].port"),
                &format!("Invalid value: {number}: must be between 1 and 65535, inclusive"),
            ));
        }
        let port_name = port["name"].as_str().unwrap_or_default().to_string();
        if several && port_name.is_empty() {
            return Err(invalid(&format!("spec.ports[{i}].name"), "Required value"));
        }
        if !names.insert(port_name.clone()) {
            return Err(invalid(
                &format!("spec.ports[{i}].name"),
                &format!("Duplicate value: \"{port_name}\""),
            ));
        }
        if port["protocol"].is_null() {
            port["protocol"] = json!("TCP");
        }
        if port["targetPort"].is_null() {
            port["targetPort"] = json!(number);
        }
    }
    Ok(())
}

fn allocation_error(svc: &Value, field: &str, e: AllocationError) -> ApiError {
    match e {
        AllocationError::Storage(s) => ApiError::unavailable(s.to_string()),
        other => ApiError::invalid("Service", &name_of(svc), field, &format!("Invalid value: {other}")),
    }
}

/// Allocates what a new Service needs; on error nothing stays allocated.
pub async fn allocate(allocator: &Allocator, storage: &Storage, svc: &mut Value) -> Result<Held, ApiError> {
    let mut held = Held::default();
    match allocate_into(allocator, storage, svc, None, &mut held).await {
        Ok(()) => Ok(held),
        Err(e) => {
            held.release(allocator, storage).await;
            Err(e)
        }
    }
}

/// Carries allocations over from `old` and allocates what is new; returns
/// what was newly taken and what `old` held that is no longer needed.
pub async fn reallocate(
    allocator: &Allocator,
    storage: &Storage,
    old: &Value,
    svc: &mut Value,
) -> Result<(Held, Held), ApiError> {
    let mut fresh = Held::default();
    if let Err(e) = allocate_into(allocator, storage, svc, Some(old), &mut fresh).await {
        fresh.release(allocator, storage).await;
        return Err(e);
    }
    let mut stale = Held::default();
    let kept: Vec<u16> = node_ports(svc);
    stale.ports = node_ports(old).into_iter().filter(|p| !kept.contains(p)).collect();
    if svc["spec"]["clusterIP"] != old["spec"]["clusterIP"] {
        stale.ip = old["spec"]["clusterIP"]
            .as_str()
            .filter(|ip| *ip != "None")
            .map(str::to_string);
    }
    Ok((fresh, stale))
}

/// What a stored Service holds.
pub fn held_by(svc: &Value) -> Held {
    Held {
        ip: svc["spec"]["clusterIP"]
            .as_str()
            .filter(|ip| !ip.is_empty() && *ip != "None")
            .map(str::to_string),
        ports: node_ports(svc),
    }
}

fn node_ports(svc: &Value) -> Vec<u16> {
    svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_u64().and_then(|n| u16::try_from(n).ok()))
        .collect()
}

async fn allocate_into(
    allocator: &Allocator,
    storage: &Storage,
    svc: &mut Value,
    old: Option<&Value>,
    held: &mut Held,
) -> Result<(), ApiError> {
    let owner = owner(svc);
    let external_name = kind_of(svc) == "ExternalName";
    // The address.
    let old_ip = old
        .and_then(|o| o["spec"]["clusterIP"].as_str())
        .filter(|ip| !ip.is_empty());
    let asked = svc["spec"]["clusterIP"]
        .as_str()
        .filter(|ip| !ip.is_empty())
        .map(str::to_string);
    match (asked.as_deref(), old_ip) {
        _ if external_name => {}
        (None, Some(kept)) => {
            svc["spec"]["clusterIP"] = json!(kept);
            svc["spec"]["clusterIPs"] = json!([kept]);
        }
        (Some(a), Some(kept)) if a != kept => {
            return Err(ApiError::invalid(
                "Service",
                &name_of(svc),
                "spec.clusterIPs[0]",
                &format!("Invalid value: \"{a}\": may not change once set"),
            ))
        }
        (Some(_), Some(_)) => {}
        (Some("None"), None) => svc["spec"]["clusterIPs"] = json!(["None"]),
        (asked, None) => {
            let requested = match asked {
                Some(text) => Some(text.parse::<Ipv4Addr>().map_err(|_| {
                    ApiError::invalid(
                        "Service",
                        &name_of(svc),
                        "spec.clusterIPs[0]",
                        &format!("Invalid value: \"{text}\": must be a valid IP address"),
                    )
                })?),
                None => None,
            };
            let ip = allocator
                .allocate_ip(storage, requested, &owner)
                .await
                .map_err(|e| allocation_error(svc, "spec.clusterIPs[0]", e))?;
            held.ip = Some(ip.to_string());
            svc["spec"]["clusterIP"] = json!(ip.to_string());
            svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
        }
    }
    // The node ports.
    let count = svc["spec"]["ports"].as_array().map_or(0, Vec::len);
    for i in 0..count {
        if !needs_node_ports(svc) {
            if let Some(p) = svc["spec"]["ports"][i].as_object_mut() {
                p.remove("nodePort");
            }
            continue;
        }
        let port = svc["spec"]["ports"][i].clone();
        let previous = old.and_then(|o| {
            o["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["port"] == port["port"] && p["protocol"] == port["protocol"])
                .and_then(|p| p["nodePort"].as_u64())
        });
        let asked = port["nodePort"].as_u64().and_then(|n| u16::try_from(n).ok());
        let chosen = match (asked, previous.and_then(|n| u16::try_from(n).ok())) {
            (None, Some(kept)) => kept,
            (Some(a), Some(kept)) if a == kept => kept,
            (asked, _) => {
                let field = format!("spec.ports[{i}].nodePort");
                let port = allocator
                    .allocate_port(storage, asked, &owner)
                    .await
                    .map_err(|e| allocation_error(svc, &field, e))?;
                held.ports.push(port);
                port
            }
        };
        svc["spec"]["ports"][i]["nodePort"] = json!(chosen);
    }
    Ok(())
}
