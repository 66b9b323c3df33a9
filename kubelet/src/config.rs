//! The kubelet's flags, under upstream's names where one exists.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use common::flags::parse_duration;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "kubernate-kubelet",
    about = "The node agent: runs the pods bound to its node."
)]
pub struct Config {
    /// Kubeconfig of this node's identity (system:node:<name>).
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// The API server's address, overriding the kubeconfig's.
    #[arg(long)]
    pub master: Option<String>,
    /// The node's name (default: the host name).
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// Where pods' directories, container state and logs live.
    #[arg(long, default_value = "/var/lib/kubernate/kubelet")]
    pub root_dir: PathBuf,
    /// The local image store (`kubernate image import --store`); a pod's
    /// image must be there, or it waits in ErrImagePull.
    #[arg(long, default_value = "/var/lib/kubernate/images")]
    pub image_store: PathBuf,
    /// Extra node labels, `key=value,…`.
    #[arg(long, value_delimiter = ',')]
    pub node_labels: Vec<String>,
    /// Taints to register the node with, `key=value:Effect,…`.
    #[arg(long, value_delimiter = ',')]
    pub register_with_taints: Vec<String>,
    /// Resources kept for the system, `cpu=100m,memory=256Mi,…`:
    /// allocatable is capacity minus these.
    #[arg(long, value_delimiter = ',')]
    pub system_reserved: Vec<String>,
    /// Capacity overrides (default: measured from the host).
    #[arg(long)]
    pub capacity_cpu: Option<String>,
    #[arg(long)]
    pub capacity_memory: Option<String>,
    #[arg(long)]
    pub capacity_ephemeral_storage: Option<String>,
    #[arg(long, default_value_t = 110)]
    pub max_pods: i64,
    /// The node's address (default: the first non-loopback IPv4 address).
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// The kubelet API's port (TLS; logs for `kubectl logs`).
    #[arg(long, default_value_t = 10250)]
    pub port: u16,
    /// The address the kubelet API listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub address: IpAddr,
    /// The kubelet API's serving certificate and key (the PKI's
    /// nodes/<name>-serving.*); without them the API is not served.
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    #[arg(long)]
    pub tls_private_key_file: Option<PathBuf>,
    /// CA of the clients (the API server) allowed to call the kubelet API.
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// Serve /metrics and /healthz (plain HTTP) here.
    #[arg(long, default_value = "127.0.0.1:10255")]
    pub metrics_bind_address: SocketAddr,
    /// How often the node's status is computed (and written when it changed).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub node_status_update_frequency: Duration,
    /// How often the status is written even when unchanged.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub node_status_report_frequency: Duration,
    /// How long the node's Lease is valid; renewed every quarter of it.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    pub node_lease_duration: Duration,
    /// How often every pod is synced even when nothing changed.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub sync_frequency: Duration,
    #[command(flatten)]
    pub telemetry: common::telemetry::TelemetryArgs,
}

impl Config {
    pub fn node_name(&self) -> String {
        self.hostname_override.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_lowercase())
                .unwrap_or_else(|_| "localhost".into())
        })
    }
}
