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
pub(crate) fn field(pod: &Pod, path: &str) -> Option<String> {
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

/// A container's resource by its `resourceFieldRef` (`limits.cpu`,
/// `requests.memory`, …), divided by its divisor and rounded up, as the
/// downward API gives it. An unset limit falls back to the request, then
/// to 0 (upstream uses the node's allocatable).
pub(crate) fn resource(
    pod: &Pod,
    default_container: Option<&str>,
    selector: &k8s_openapi::api::core::v1::ResourceFieldSelector,
) -> Result<String, String> {
    use api::quantity::Quantity;
    let name = selector
        .container_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .or(default_container)
        .ok_or_else(|| format!("resourceFieldRef {:?} needs a containerName", selector.resource))?;
    let container = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
        .find(|c| c.name == name)
        .ok_or_else(|| format!("resourceFieldRef: no container {name:?}"))?;
    let (kind, resource) = selector
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported resource {:?}", selector.resource))?;
    let resources = container.resources.clone().unwrap_or_default();
    let (limits, requests) = (
        resources.limits.unwrap_or_default(),
        resources.requests.unwrap_or_default(),
    );
    let value = match kind {
        "limits" => limits.get(resource).or_else(|| requests.get(resource)),
        "requests" => requests.get(resource),
        _ => return Err(format!("unsupported resource {:?}", selector.resource)),
    };
    let parse = |q: &str| Quantity::parse(q).map_err(|e| e.to_string());
    let value = match value {
        Some(v) => parse(&v.0)?.milli(),
        None => 0,
    };
    let divisor = match &selector.divisor {
        Some(d) => parse(&d.0)?.milli(),
        None => 1000,
    };
    if divisor <= 0 {
        return Err(format!("divisor of {:?} must be positive", selector.resource));
    }
    Ok((value.saturating_add(divisor - 1) / divisor).to_string())
}

/// The container's environment, in order, with references expanded:
/// PATH and HOSTNAME, then the image's `Env`, then `envFrom`, then `env`.
pub async fn resolve(
    client: &Client,
    pod: &Pod,
    container: &Container,
    image_env: &[String],
) -> Result<Vec<(String, String)>, ConfigError> {
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
    for entry in image_env {
        let (k, v) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
        set(&mut vars, &mut order, k.to_string(), v.to_string());
    }
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
            } else if let Some(r) = &from.resource_field_ref {
                resource(pod, Some(&container.name), r).map_err(ConfigError)?
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

/// What the container runs, as Kubernetes combines the pod's `command`
/// and `args` with the image's `Entrypoint` and `Cmd`: `command` replaces
/// the entrypoint (and drops the image's Cmd), `args` replaces Cmd.
/// `$(VAR)` is expanded in the pod's parts only.
pub fn argv(container: &Container, env: &[(String, String)], image: &common::image_store::RunConfig) -> Vec<String> {
    let vars: BTreeMap<String, String> = env.iter().cloned().collect();
    let expanded = |list: &Vec<String>| list.iter().map(|a| expand(a, &vars)).collect::<Vec<_>>();
    let command = container.command.as_ref().filter(|c| !c.is_empty());
    let args = container.args.as_ref().filter(|a| !a.is_empty());
    let mut argv = match command {
        Some(c) => expanded(c),
        None => image.entrypoint.clone().unwrap_or_default(),
    };
    match (args, command) {
        (Some(a), _) => argv.extend(expanded(a)),
        (None, None) => argv.extend(image.cmd.clone().unwrap_or_default()),
        (None, Some(_)) => {}
    }
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_and_args_combine_with_the_image_as_kubernetes_does() {
        use common::image_store::RunConfig;
        let image = RunConfig {
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["default".into()]),
            ..Default::default()
        };
        let c = |command: Option<&[&str]>, args: Option<&[&str]>| Container {
            command: command.map(|c| c.iter().map(|s| s.to_string()).collect()),
            args: args.map(|a| a.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        let env = [("X".to_string(), "1".to_string())];
        assert_eq!(argv(&c(None, None), &env, &image), ["/entry", "default"]);
        assert_eq!(argv(&c(Some(&["sh"]), None), &env, &image), ["sh"]);
        assert_eq!(argv(&c(None, Some(&["$(X)"])), &env, &image), ["/entry", "1"]);
        assert_eq!(
            argv(&c(Some(&["sh"]), Some(&["-c", "x"])), &env, &image),
            ["sh", "-c", "x"]
        );
        assert!(argv(&c(None, None), &env, &RunConfig::default()).is_empty());
    }

    #[test]
    fn resources_divide_and_round_up() {
        use k8s_openapi::api::core::v1::{PodSpec, ResourceFieldSelector, ResourceRequirements};
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Q;
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        limits: Some(
                            [
                                ("cpu".to_string(), Q("250m".into())),
                                ("memory".to_string(), Q("64Mi".into())),
                            ]
                            .into(),
                        ),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let sel = |r: &str, d: Option<&str>| ResourceFieldSelector {
            resource: r.into(),
            divisor: d.map(|d| Q(d.into())),
            container_name: None,
        };
        assert_eq!(resource(&pod, Some("c"), &sel("limits.cpu", None)).unwrap(), "1");
        assert_eq!(
            resource(&pod, Some("c"), &sel("limits.cpu", Some("1m"))).unwrap(),
            "250"
        );
        assert_eq!(
            resource(&pod, Some("c"), &sel("limits.memory", Some("1Mi"))).unwrap(),
            "64"
        );
        assert_eq!(resource(&pod, Some("c"), &sel("requests.memory", None)).unwrap(), "0");
        assert!(resource(&pod, None, &sel("limits.cpu", None)).is_err());
    }

    #[test]
    fn references_expand_and_escape() {
        let vars = BTreeMap::from([("A".to_string(), "1".to_string())]);
        assert_eq!(expand("x$(A)y", &vars), "x1y");
        assert_eq!(expand("$(B)", &vars), "$(B)");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("cost $5 $(A", &vars), "cost $5 $(A");
    }
}
