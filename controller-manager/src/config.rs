//! Command-line flags, under kube-controller-manager's names where one
//! exists.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

pub use common::flags::parse_duration;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "kubernate-controller-manager",
    about = "The control loops that move actual state toward desired state."
)]
pub struct Config {
    /// Kubeconfig of the controller manager's identity (system:kube-controller-manager).
    #[arg(long)]
    pub kubeconfig: PathBuf,

    /// The API server's address, overriding the kubeconfig's.
    #[arg(long)]
    pub master: Option<String>,

    /// Controllers to run: `*` for all, a name to enable, `-name` to disable
    /// (e.g. `*,-nodelifecycle`). `kubernate-controller-manager --help` lists
    /// the names under CONTROLLERS.
    #[arg(long, default_value = "*", value_delimiter = ',')]
    pub controllers: Vec<String>,

    /// Serve /metrics and /healthz (plain HTTP) on this address.
    #[arg(long, default_value = "127.0.0.1:10257")]
    pub metrics_bind_address: SocketAddr,

    /// Run only while holding the leader Lease.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub leader_elect_lease_duration: Duration,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub leader_elect_retry_period: Duration,
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,
    #[arg(long, default_value = "kube-controller-manager")]
    pub leader_elect_resource_name: String,

    /// Workers per controller.
    #[arg(long, default_value_t = 5)]
    pub concurrent_syncs: usize,

    /// How long a node's Lease may go unrenewed before the node is marked
    /// NotReady (Unknown).
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// How often node health is checked.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub node_monitor_period: Duration,
    /// Pods evicted per second from unhealthy nodes.
    #[arg(long, default_value_t = 0.1)]
    pub node_eviction_rate: f64,

    /// Terminated pods kept before the oldest are deleted (0: keep all).
    #[arg(long, default_value_t = 12500)]
    pub terminated_pod_gc_threshold: usize,
    /// How often the pod garbage collector runs.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub pod_gc_period: Duration,
    /// How often every namespace with quotas is recounted (deleted pods
    /// are counted out at once; other kinds at the next recount).
    /// kube-controller-manager's default is 5m.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub resource_quota_sync_period: Duration,

    /// Pod changes within this period reach a Service's Endpoints and
    /// EndpointSlices in one write (0: each change at once).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub endpoint_updates_batch_period: Duration,

    /// How often the garbage collector re-reads which kinds exist (CRDs).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub discovery_period: Duration,

    /// The cluster CA published as the kube-root-ca.crt ConfigMap in every
    /// namespace; defaults to the kubeconfig's certificate authority.
    #[arg(long)]
    pub root_ca_file: Option<PathBuf>,

    #[command(flatten)]
    pub telemetry: common::telemetry::TelemetryArgs,
}

impl Config {
    /// Whether the controller `name` is on, by `--controllers`.
    pub fn enabled(&self, name: &str) -> bool {
        let mut on = false;
        for entry in &self.controllers {
            match entry.as_str() {
                "*" => on = true,
                e if e.strip_prefix('-') == Some(name) => return false,
                e if e == name => on = true,
                _ => {}
            }
        }
        on
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_flag_enables_and_disables() {
        let config = |flag: &str| Config::parse_from(["cm", "--kubeconfig", "k", "--controllers", flag]);
        assert!(config("*").enabled("replicaset"));
        assert!(!config("*,-replicaset").enabled("replicaset"));
        assert!(config("*,-replicaset").enabled("deployment"));
        assert!(config("replicaset").enabled("replicaset"));
        assert!(!config("replicaset").enabled("deployment"));
    }
}
