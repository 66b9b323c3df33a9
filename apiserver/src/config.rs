//! Command-line flags, with kube-apiserver's names.

use std::path::PathBuf;

use clap::Parser;

/// kubernate-apiserver: the Kubernetes REST API over the store.
#[derive(Debug, Clone, Parser)]
#[command(name = "kubernate-apiserver", version, about)]
pub struct Config {
    /// Store (etcd v3) endpoints, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub etcd_servers: Vec<String>,
    /// CA of the store's serving certificate.
    #[arg(long)]
    pub etcd_cafile: Option<PathBuf>,
    /// Client certificate for the store.
    #[arg(long)]
    pub etcd_certfile: Option<PathBuf>,
    #[arg(long)]
    pub etcd_keyfile: Option<PathBuf>,
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_address: String,
    #[arg(long, default_value_t = 6443)]
    pub secure_port: u16,
    #[arg(long)]
    pub tls_cert_file: PathBuf,
    #[arg(long)]
    pub tls_private_key_file: PathBuf,
    /// CA that client certificates must chain to.
    #[arg(long)]
    pub client_ca_file: PathBuf,
    /// The API server's client certificate for kubelets (pods/log).
    #[arg(long)]
    pub kubelet_client_certificate: Option<PathBuf>,
    #[arg(long)]
    pub kubelet_client_key: Option<PathBuf>,
    /// CA of the kubelets' serving certificates (default: --client-ca-file).
    #[arg(long)]
    pub kubelet_certificate_authority: Option<PathBuf>,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 3 * 1024 * 1024)]
    pub max_request_body_bytes: usize,
    /// The range Service ClusterIPs come from; its first address is the
    /// `kubernetes` Service's.
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cluster_ip_range: String,
    /// The range NodePort Services' node ports come from.
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// The address the `kubernetes` Service's endpoints name (default: the
    /// bind address, or 127.0.0.1 when binding every address).
    #[arg(long)]
    pub advertise_address: Option<String>,
    /// Serve plain HTTP on 127.0.0.1:PORT without authentication, every
    /// request as a cluster admin (the classic `--insecure-port`); 0, the
    /// default, turns it off. For local experiments only.
    #[arg(long, default_value_t = 0)]
    pub insecure_port: u16,
    /// How often the store's history is compacted, in seconds: each time
    /// to the revision of the previous round, so watches can resume from
    /// anything newer than one interval. 0 turns it off.
    #[arg(long, default_value_t = 300)]
    pub etcd_compaction_interval: u64,
    /// Most read-only requests (get, list) served at once; more get 429. 0: no limit.
    #[arg(long, default_value_t = 400)]
    pub max_requests_inflight: usize,
    /// Most mutating requests served at once; more get 429. 0: no limit.
    #[arg(long, default_value_t = 200)]
    pub max_mutating_requests_inflight: usize,
    /// How often a watch that allows bookmarks receives one, in seconds
    /// (kube-apiserver sends them about once a minute).
    #[arg(long, default_value_t = 60)]
    pub watch_bookmark_interval: u64,
    /// Serve lists and watches from memory (kube-apiserver's
    /// `--watch-cache`); `--watch-cache=false` reads the store every time.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub watch_cache: bool,
    /// Public key (PEM) that ServiceAccount tokens are verified with
    /// (`kubernate pki`'s service-account.pub).
    #[arg(long)]
    pub service_account_key_file: Option<PathBuf>,
    /// Private key (PEM, ES256) that TokenRequest signs tokens with.
    #[arg(long)]
    pub service_account_signing_key_file: Option<PathBuf>,
    /// The `iss` of the tokens this server issues and accepts.
    #[arg(long, default_value = "https://kubernetes.default.svc.cluster.local")]
    pub service_account_issuer: String,
    /// Audiences a token must name (default: the issuer).
    #[arg(long, value_delimiter = ',')]
    pub api_audiences: Vec<String>,
    /// Static bearer tokens, `token,user,uid[,"group1,group2"]` per line.
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,
    /// Serve requests without credentials as system:anonymous (they are
    /// then authorized like anyone else); off, they get 401.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub anonymous_auth: bool,
    /// Write an audit event per request here (JSON lines; `-` for stdout).
    #[arg(long)]
    pub audit_log_path: Option<PathBuf>,
    /// Rotate the audit log when it grows past this many megabytes.
    #[arg(long, default_value_t = 100)]
    pub audit_log_maxsize: u64,
    /// How many rotated audit logs to keep.
    #[arg(long, default_value_t = 10)]
    pub audit_log_maxbackup: usize,
    #[command(flatten)]
    pub telemetry: common::telemetry::TelemetryArgs,
}
