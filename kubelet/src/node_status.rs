//! The node's registration, heartbeat and status.
//!
//! At start the kubelet creates its Node (or updates the one a previous
//! run created) with labels, taints, addresses, capacity and allocatable.
//! It then renews its Lease in `kube-node-lease` every quarter of the
//! lease duration (10 s by default): that is the heartbeat the node
//! lifecycle controller watches. The Node's status is recomputed every
//! `--node-status-update-frequency` and written when it changed, or every
//! `--node-status-report-frequency` anyway.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use api::quantity::Quantity;
use client::{Api, Client, Patch};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// What the node is, measured once at start.
pub struct Machine {
    pub capacity: BTreeMap<String, K8sQuantity>,
    pub allocatable: BTreeMap<String, K8sQuantity>,
    pub ip: String,
    pub hostname: String,
    pub kernel: String,
    pub os_image: String,
}

fn meminfo_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn disk_bytes(path: &std::path::Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(path).ok()?;
    Some(stat.f_blocks * stat.f_frsize)
}

/// The first non-loopback IPv4 address of the host.
fn host_ip() -> String {
    let output = std::process::Command::new("hostname").arg("-I").output();
    output
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().find(|a| !a.contains(':')).map(str::to_string))
        .unwrap_or_else(|| "127.0.0.1".into())
}

fn os_release() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

/// `key=value` pairs of a flag.
fn pairs(list: &[String]) -> Vec<(String, String)> {
    list.iter()
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

impl Machine {
    pub fn measure(config: &Config) -> Result<Machine, String> {
        let cpu = match &config.capacity_cpu {
            Some(c) => c.clone(),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()).to_string(),
        };
        let memory = match &config.capacity_memory {
            Some(m) => m.clone(),
            None => meminfo_total().unwrap_or(0).to_string(),
        };
        let storage = match &config.capacity_ephemeral_storage {
            Some(s) => s.clone(),
            None => disk_bytes(&config.root_dir).unwrap_or(0).to_string(),
        };
        let mut capacity = BTreeMap::new();
        for (name, value) in [
            ("cpu", cpu),
            ("memory", memory),
            ("ephemeral-storage", storage),
            ("pods", config.max_pods.to_string()),
        ] {
            Quantity::parse(&value).map_err(|e| format!("capacity {name}: {e}"))?;
            capacity.insert(name.to_string(), K8sQuantity(value));
        }
        let mut allocatable = capacity.clone();
        for (name, reserved) in pairs(&config.system_reserved) {
            let r = Quantity::parse(&reserved).map_err(|e| format!("--system-reserved {name}: {e}"))?;
            let Some(total) = capacity.get(&name) else {
                return Err(format!(
                    "--system-reserved names {name:?}, which the node does not have"
                ));
            };
            let total = Quantity::parse(&total.0).map_err(|e| e.to_string())?;
            let left = if name == "cpu" {
                format!("{}m", (total.milli() - r.milli()).max(0))
            } else {
                (total.value() - r.value()).max(0).to_string()
            };
            allocatable.insert(name, K8sQuantity(left));
        }
        Ok(Machine {
            capacity,
            allocatable,
            ip: config.node_ip.map_or_else(host_ip, |ip| ip.to_string()),
            hostname: config.node_name(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            os_image: os_release(),
        })
    }
}

/// `key=value:Effect` or `key:Effect`.
pub fn parse_taint(text: &str) -> Result<Taint, String> {
    let (kv, effect) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("taint {text:?}: expected key=value:Effect"))?;
    if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
        return Err(format!(
            "taint {text:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute"
        ));
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    Ok(Taint {
        key: key.to_string(),
        value,
        effect: effect.to_string(),
        time_added: None,
    })
}

pub struct NodeStatus {
    client: Client,
    name: String,
    machine: Machine,
    runtime_version: String,
    labels: BTreeMap<String, String>,
    taints: Vec<Taint>,
    /// The kubelet API's port, published in the Node's status.
    port: u16,
}

impl NodeStatus {
    pub fn new(
        client: Client,
        config: &Config,
        machine: Machine,
        runtime_version: String,
    ) -> Result<NodeStatus, String> {
        let name = config.node_name();
        let mut labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), name.clone()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            (
                "kubernetes.io/arch".to_string(),
                std::env::consts::ARCH
                    .replace("x86_64", "amd64")
                    .replace("aarch64", "arm64"),
            ),
            ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ]);
        labels.extend(pairs(&config.node_labels));
        let taints = config
            .register_with_taints
            .iter()
            .filter(|t| !t.is_empty())
            .map(|t| parse_taint(t))
            .collect::<Result<_, _>>()?;
        Ok(NodeStatus {
            client,
            name,
            machine,
            runtime_version,
            labels,
            taints,
            port: config.port,
        })
    }

    pub fn ip(&self) -> &str {
        &self.machine.ip
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creates the Node, or adds our labels to the one that exists.
    pub async fn register(&self) -> client::Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": self.name, "labels": self.labels},
            "spec": {"taints": self.taints},
        }))
        .map_err(|e| client::Error::decode("Node", e))?;
        match nodes.create(&node).await {
            Ok(_) => tracing::info!(node = %self.name, "registered the node"),
            Err(e) if e.is_already_exists() => {
                nodes
                    .patch(&self.name, &Patch::Merge(json!({"metadata": {"labels": self.labels}})))
                    .await?;
                tracing::info!(node = %self.name, "the node was registered before; labels brought up to date");
            }
            Err(e) => return Err(e),
        }
        self.write_status().await
    }

    fn status(&self) -> serde_json::Value {
        let now = client::api::timestamp_now().to_string();
        let condition = |type_: &str, status: &str, reason: &str, message: &str| {
            json!({"type": type_, "status": status, "reason": reason, "message": message,
                   "lastHeartbeatTime": now, "lastTransitionTime": now})
        };
        json!({
            "capacity": self.machine.capacity,
            "allocatable": self.machine.allocatable,
            "addresses": [{"type": "InternalIP", "address": self.machine.ip}, {"type": "Hostname", "address": self.machine.hostname}],
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "nodeInfo": {
                "machineID": std::fs::read_to_string("/etc/machine-id").unwrap_or_default().trim(),
                "systemUUID": "", "bootID": std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim(),
                "kernelVersion": self.machine.kernel, "osImage": self.machine.os_image,
                "containerRuntimeVersion": self.runtime_version,
                "kubeletVersion": concat!("v1.35.0-kubernate-", env!("CARGO_PKG_VERSION")),
                "kubeProxyVersion": "", "operatingSystem": "linux",
                "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
            },
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
        })
    }

    /// Writes the status, keeping conditions' transition times when their
    /// status did not change.
    pub async fn write_status(&self) -> client::Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let mut status = self.status();
        if let Ok(current) = nodes.get(&self.name).await {
            let old = current.status.and_then(|s| s.conditions).unwrap_or_default();
            if let Some(conditions) = status["conditions"].as_array_mut() {
                for c in conditions {
                    let same = old.iter().find(|o| {
                        Some(o.type_.as_str()) == c["type"].as_str() && Some(o.status.as_str()) == c["status"].as_str()
                    });
                    if let Some(t) = same.and_then(|o| o.last_transition_time.as_ref()) {
                        c["lastTransitionTime"] = json!(t.0.to_string());
                    }
                }
            }
        }
        nodes
            .patch_status(&self.name, &Patch::Merge(json!({ "status": status })))
            .await?;
        Ok(())
    }

    /// Whether the Node's Ready condition is the True this kubelet reports.
    async fn status_is_current(&self) -> bool {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let Ok(node) = nodes.get(&self.name).await else {
            return false;
        };
        node.status
            .and_then(|s| s.conditions)
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    }

    /// Renews (or creates) the node's Lease.
    async fn renew_lease(&self, duration: Duration) -> client::Result<()> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        let now = MicroTime(client::api::timestamp_now());
        match leases.get_opt(&self.name).await? {
            Some(mut lease) => {
                let spec = lease.spec.get_or_insert_with(Default::default);
                spec.renew_time = Some(now);
                spec.holder_identity = Some(self.name.clone());
                spec.lease_duration_seconds = Some(i32::try_from(duration.as_secs()).unwrap_or(40));
                leases.update(&lease).await?;
            }
            None => {
                let lease: Lease = serde_json::from_value(json!({
                    "metadata": {"name": self.name, "namespace": "kube-node-lease"},
                    "spec": {"holderIdentity": self.name, "leaseDurationSeconds": duration.as_secs(), "renewTime": now.0.to_string()},
                }))
                .map_err(|e| client::Error::decode("Lease", e))?;
                leases.create(&lease).await?;
            }
        }
        Ok(())
    }

    /// Heartbeats and status reports until `stop`.
    pub async fn run(self, config: &Config, stop: CancellationToken) {
        let renew_every = config.node_lease_duration / 4;
        let mut last_lease = Instant::now() - renew_every;
        let mut last_status = Instant::now();
        let mut last_check = Instant::now();
        loop {
            if last_lease.elapsed() >= renew_every {
                match self.renew_lease(config.node_lease_duration).await {
                    Ok(()) => last_lease = Instant::now(),
                    Err(e) => tracing::warn!(error = %e, "could not renew the node lease"),
                }
            }
            // Every update period: write at once if the Node says something
            // else than we would (the node lifecycle controller marked it
            // Unknown while we were away); otherwise every report period.
            let mut due = last_status.elapsed() >= config.node_status_report_frequency;
            if !due && last_check.elapsed() >= config.node_status_update_frequency {
                last_check = Instant::now();
                due = !self.status_is_current().await;
            }
            if due {
                match self.write_status().await {
                    Ok(()) => last_status = Instant::now(),
                    Err(e) => tracing::warn!(error = %e, "could not write the node status"),
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}
