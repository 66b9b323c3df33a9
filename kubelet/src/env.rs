//! A container's environment: `env` (values, and `valueFrom` a field of
//! the pod, a ConfigMap key or a Secret key), `envFrom` (every key of a
//! ConfigMap or Secret, with a prefix), and `$(VAR)` references expanded
//! in values, command and args as Kubernetes does (`$$` escapes).

use std::collections::BTreeMap;

use client::{Api, Client};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};

/// The PATH of a container whose spec sets none (an image's usual one).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why a container cannot be given its environment
/// (`CreateContainerConfigError`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Expands `$(NAME)` from `vars`; unknown references stay as written.
pub fn expand(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A pod field by its `fieldRef.fieldPath`.
fn field(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let status = pod.status.as_ref();
    let bracket = |prefix: &str| path.strip_prefix(prefix).and_then(|r| r.strip_suffix("']"));
    if let Some(key) = bracket("metadata.labels['") {
        return meta.labels.as_ref()?.get(key).cloned();
    }
    if let Some(key) = bracket("metadata.annotations['") {
        return meta.annotations.as_ref()?.get(key).cloned();
    }
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => pod.spec.as_ref()?.node_name.clone(),
        "spec.serviceAccountName" => pod.spec.as_ref()?.service_account_name.clone(),
        "status.hostIP" => status?.host_ip.clone(),
        "status.podIP" => status?.pod_ip.clone(),
        "status.podIPs" => Some(
            status?
                .pod_ips
                .iter()
                .flatten()
                .map(|p| p.ip.clone())
                .collect::<Vec<_>>()
                .join(","),
        ),
        _ => None,
    }
}

/// Reads ConfigMaps and Secrets once per container start.
struct Sources<'a> {
    client: &'a Client,
    namespace: &'a str,
    configmaps: BTreeMap<String, Option<ConfigMap>>,
    secrets: BTreeMap<String, Option<Secret>>,
}

impl Sources<'_> {
    async fn configmap(&mut self, name: &str) -> Result<Option<&ConfigMap>, ConfigError> {
        if !self.configmaps.contains_key(name) {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), self.namespace);
            let found = api
                .get_opt(name)
                .await
                .map_err(|e| ConfigError(format!("reading configmap {name:?}: {e}")))?;
            self.configmaps.insert(name.to_string(), found);
        }
        Ok(self.configmaps.get(name).and_then(Option::as_ref))
    }

    async fn secret(&mut self, name: &str) -> Result<Option<&Secret>, ConfigError> {
        if !self.secrets.contains_key(name) {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), self.namespace);
            let found = api
                .get_opt(name)
                .await
                .map_err(|e| ConfigError(format!("reading secret {name:?}: {e}")))?;
            self.secrets.insert(name.to_string(), found);
        }
        Ok(self.secrets.get(name).and_then(Option::as_ref))
    }
}

fn configmap_data(cm: &ConfigMap) -> BTreeMap<String, String> {
    let mut data = cm.data.clone().unwrap_or_default();
    for (k, v) in cm.binary_data.iter().flatten() {
        data.insert(k.clone(), String::from_utf8_lossy(&v.0).to_string());
    }
    data
}

fn secret_data(s: &Secret) -> BTreeMap<String, String> {
    let mut data: BTreeMap<String, String> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).to_string()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone());
    }
    data
}

/// One key of a ConfigMap's or Secret's data (`None`: absent and optional).
fn pick(
    data: Option<BTreeMap<String, String>>,
    name: &str,
    key: &str,
    optional: Option<bool>,
    kind: &str,
    namespace: &str,
) -> Result<Option<String>, ConfigError> {
    let optional = optional == Some(true);
    match data {
        Some(data) => match data.get(key) {
            Some(v) => Ok(Some(v.clone())),
            None if optional => Ok(None),
            None => Err(ConfigError(format!(
                "couldn't find key {key} in {kind} {namespace}/{name}"
            ))),
        },
        None if optional => Ok(None),
        None => Err(ConfigError(format!("{} \"{name}\" not found", kind.to_lowercase()))),
    }
}

/// The container's environment, in order, with references expanded.
pub async fn resolve(client: &Client, pod: &Pod, container: &Container) -> Result<Vec<(String, String)>, ConfigError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut sources = Sources {
        client,
        namespace,
        configmaps: BTreeMap::new(),
        secrets: BTreeMap::new(),
    };
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    // What every container gets, as container runtimes and the kubelet set it.
    for (k, v) in [
        ("PATH", DEFAULT_PATH.to_string()),
        ("HOSTNAME", pod.metadata.name.clone().unwrap_or_default()),
    ] {
        vars.insert(k.to_string(), v);
        order.push(k.to_string());
    }
    let set = |vars: &mut BTreeMap<String, String>, order: &mut Vec<String>, k: String, v: String| {
        if !order.contains(&k) {
            order.push(k.clone());
        }
        vars.insert(k, v);
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match sources.configmap(&r.name).await? {
                Some(cm) => configmap_data(cm)
                    .into_iter()
                    .for_each(|(k, v)| set(&mut vars, &mut order, format!("{prefix}{k}"), v)),
                None if r.optional == Some(true) => {}
                None => return Err(ConfigError(format!("configmap \"{}\" not found", r.name))),
            }
        }
        if let Some(r) = &from.secret_ref {
            match sources.secret(&r.name).await? {
                Some(s) => secret_data(s)
                    .into_iter()
                    .for_each(|(k, v)| set(&mut vars, &mut order, format!("{prefix}{k}"), v)),
                None if r.optional == Some(true) => {}
                None => return Err(ConfigError(format!("secret \"{}\" not found", r.name))),
            }
        }
    }
    for e in container.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            expand(v, &vars)
        } else if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                field(pod, &f.field_path).unwrap_or_default()
            } else if let Some(k) = &from.config_map_key_ref {
                let data = sources.configmap(&k.name).await?.map(configmap_data);
                match pick(data, &k.name, &k.key, k.optional, "ConfigMap", namespace)? {
                    Some(v) => v,
                    None => continue,
                }
            } else if let Some(k) = &from.secret_key_ref {
                let data = sources.secret(&k.name).await?.map(secret_data);
                match pick(data, &k.name, &k.key, k.optional, "Secret", namespace)? {
                    Some(v) => v,
                    None => continue,
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        set(&mut vars, &mut order, e.name.clone(), value);
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = vars.get(&k).cloned().unwrap_or_default();
            (k, v)
        })
        .collect())
}

/// command + args with `$(VAR)` expanded from the environment.
pub fn argv(container: &Container, env: &[(String, String)]) -> Vec<String> {
    let vars: BTreeMap<String, String> = env.iter().cloned().collect();
    container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .map(|a| expand(a, &vars))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_expand_and_escape() {
        let vars = BTreeMap::from([("A".to_string(), "1".to_string())]);
        assert_eq!(expand("x$(A)y", &vars), "x1y");
        assert_eq!(expand("$(B)", &vars), "$(B)");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("cost $5 $(A", &vars), "cost $5 $(A");
    }
}
