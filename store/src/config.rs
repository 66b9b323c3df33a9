//! Command-line flags, with etcd's names where they fit.

use std::path::PathBuf;

use clap::Parser;

/// kubernate-store: an etcd v3 compatible key-value store replicated by Raft.
#[derive(Debug, Clone, Parser)]
#[command(name = "kubernate-store", version, about)]
pub struct Config {
    /// Human-readable name of this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Where the Raft log, snapshots and the member's state live (default: <name>.etcd).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// URLs to serve clients on (comma-separated; https when --cert-file is given).
    #[arg(long, value_delimiter = ',', default_value = "http://localhost:2379")]
    pub listen_client_urls: Vec<String>,
    /// Client URLs this member announces to the cluster.
    #[arg(long, value_delimiter = ',', default_value = "http://localhost:2379")]
    pub advertise_client_urls: Vec<String>,
    /// URLs to serve peers on.
    #[arg(long, value_delimiter = ',', default_value = "http://localhost:2380")]
    pub listen_peer_urls: Vec<String>,
    /// Peer URLs this member announces to the cluster.
    #[arg(long, value_delimiter = ',', default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: Vec<String>,
    /// The initial members: NAME=PEER_URL,... (default: this member alone,
    /// at its --initial-advertise-peer-urls).
    #[arg(long, default_value = "")]
    pub initial_cluster: String,
    /// `new` to bootstrap a cluster, `existing` to join one (after `member add`).
    #[arg(long, default_value = "new", value_parser = ["new", "existing"])]
    pub initial_cluster_state: String,
    /// Distinguishes clusters bootstrapped from the same member list.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Client port certificate (enables TLS on client URLs).
    #[arg(long)]
    pub cert_file: Option<PathBuf>,
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// CA that client certificates must chain to.
    #[arg(long)]
    pub trusted_ca_file: Option<PathBuf>,
    /// Require client certificates (always: client TLS needs --trusted-ca-file).
    #[arg(long)]
    pub client_cert_auth: bool,
    /// Only these client certificate CNs may use the client port (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub allowed_client_cn: Vec<String>,
    /// Peer port certificate (enables TLS between members).
    #[arg(long)]
    pub peer_cert_file: Option<PathBuf>,
    #[arg(long)]
    pub peer_key_file: Option<PathBuf>,
    #[arg(long)]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Require peer client certificates (always on when peer TLS is configured).
    #[arg(long)]
    pub peer_client_cert_auth: bool,
    /// URLs serving /metrics and /health over plain HTTP.
    #[arg(long, value_delimiter = ',', default_value = "http://localhost:2381")]
    pub listen_metrics_urls: Vec<String>,
    /// Storage quota in bytes; beyond it writes fail with NOSPACE.
    #[arg(long, default_value_t = 2 * 1024 * 1024 * 1024)]
    pub quota_backend_bytes: i64,
    /// Applied entries between snapshots (after which the log is purged).
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_count: u64,
    /// Largest client request accepted, in bytes.
    #[arg(long, default_value_t = 1536 * 1024)]
    pub max_request_bytes: usize,
    /// How often a watcher that asked for progress notifications and saw
    /// no events hears the current revision (Go duration: 10m, 5s, 500ms).
    #[arg(long = "experimental-watch-progress-notify-interval", default_value = "10m", value_parser = go_duration)]
    pub watch_progress_notify_interval: std::time::Duration,
    /// Leader heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Election timeout in milliseconds (randomised between it and twice it).
    #[arg(long, default_value_t = 1000)]
    pub election_timeout: u64,
    #[command(flatten)]
    pub telemetry: common::telemetry::TelemetryArgs,
}

/// A duration as etcd's flags spell them (Go's `time.ParseDuration`):
/// numbers with units, e.g. `10m`, `1m30s`, `250ms`.
fn go_duration(text: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("invalid duration {text:?} (expected e.g. 10m, 30s, 500ms)");
    let mut total = 0f64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    std::time::Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// A bad flag combination, said plainly.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// One entry of `--initial-cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub name: String,
    pub peer_urls: Vec<String>,
}

impl Config {
    /// A one-member cluster named `name` with its data in `data_dir`,
    /// on loopback ports the OS picks (see `Running::client_addrs`), plus
    /// `extra` flags: what tests and a single-machine cluster start from.
    pub fn single(name: &str, data_dir: &std::path::Path, extra: &[&str]) -> Config {
        let cluster = format!("{name}=http://127.0.0.1:1");
        let data_dir = data_dir.display().to_string();
        let mut args = vec![
            "kubernate-store",
            "--name",
            name,
            "--data-dir",
            &data_dir,
            "--listen-client-urls",
            "http://127.0.0.1:0",
            "--listen-peer-urls",
            "http://127.0.0.1:0",
            // Never dialled: a single member has no peers.
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:1",
            "--initial-cluster",
            &cluster,
            "--listen-metrics-urls",
            "http://127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        Config::parse_from(args)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", self.name)))
    }

    /// Whether the client port serves TLS.
    pub fn client_tls(&self) -> bool {
        self.cert_file.is_some()
    }

    /// Whether the peer port serves TLS.
    pub fn peer_tls(&self) -> bool {
        self.peer_cert_file.is_some()
    }

    /// `--initial-cluster`, grouped by name (a name may repeat for several URLs).
    pub fn initial_members(&self) -> Result<Vec<InitialMember>, ConfigError> {
        let alone = format!(
            "{}={}",
            self.name,
            self.initial_advertise_peer_urls.join(&format!(",{}=", self.name))
        );
        let cluster = if self.initial_cluster.trim().is_empty() {
            &alone
        } else {
            &self.initial_cluster
        };
        let mut members: Vec<InitialMember> = Vec::new();
        for part in cluster.split(',').filter(|p| !p.trim().is_empty()) {
            let (name, url) = part
                .split_once('=')
                .ok_or_else(|| ConfigError(format!("--initial-cluster entry {part:?} is not NAME=URL")))?;
            let (name, url) = (name.trim(), url.trim());
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError(format!(
                    "--initial-cluster URL {url:?} must start with http:// or https://"
                )));
            }
            match members.iter_mut().find(|m| m.name == name) {
                Some(m) => m.peer_urls.push(url.to_string()),
                None => members.push(InitialMember {
                    name: name.to_string(),
                    peer_urls: vec![url.to_string()],
                }),
            }
        }
        if !members.iter().any(|m| m.name == self.name) {
            return Err(ConfigError(format!(
                "member {:?} is not in --initial-cluster {:?}",
                self.name, cluster
            )));
        }
        Ok(members)
    }

    /// Checks that TLS flags and URL schemes agree.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let pair = |cert: &Option<PathBuf>, key: &Option<PathBuf>, what: &str| match (cert, key) {
            (Some(_), None) | (None, Some(_)) => {
                Err(ConfigError(format!("{what}: give both the certificate and the key")))
            }
            _ => Ok(()),
        };
        pair(&self.cert_file, &self.key_file, "--cert-file/--key-file")?;
        pair(
            &self.peer_cert_file,
            &self.peer_key_file,
            "--peer-cert-file/--peer-key-file",
        )?;
        let schemes = |urls: &[String], tls: bool, flag: &str| {
            let want = if tls { "https://" } else { "http://" };
            match urls.iter().find(|u| !u.starts_with(want)) {
                Some(u) => Err(ConfigError(format!(
                    "{flag} {u:?} must use {want} ({} TLS is {})",
                    if flag.contains("peer") { "peer" } else { "client" },
                    if tls { "configured" } else { "not configured" }
                ))),
                None => Ok(()),
            }
        };
        schemes(&self.listen_client_urls, self.client_tls(), "--listen-client-urls")?;
        schemes(&self.listen_peer_urls, self.peer_tls(), "--listen-peer-urls")?;
        // Secure by default: a TLS client port admits only clients with a
        // certificate from a CA it trusts (etcd would also serve anyone).
        if self.client_tls() && self.trusted_ca_file.is_none() {
            return Err(ConfigError(
                "--trusted-ca-file is required with client TLS: the store admits only clients with a certificate"
                    .into(),
            ));
        }
        if self.peer_tls() && self.peer_trusted_ca_file.is_none() {
            return Err(ConfigError("--peer-trusted-ca-file is required with peer TLS".into()));
        }
        if (self.client_cert_auth || !self.allowed_client_cn.is_empty()) && self.trusted_ca_file.is_none() {
            return Err(ConfigError(
                "--client-cert-auth and --allowed-client-cn need --trusted-ca-file".into(),
            ));
        }
        if self.snapshot_count == 0 {
            return Err(ConfigError("--snapshot-count must be positive".into()));
        }
        self.initial_members()?;
        Ok(())
    }
}

/// The host:port of a URL, for binding.
pub fn socket_addr(url: &str) -> Result<String, ConfigError> {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .ok_or_else(|| ConfigError(format!("{url:?} is not a URL")))?;
    let host_port = rest.split('/').next().unwrap_or(rest);
    if !host_port.contains(':') || host_port.ends_with(']') {
        return Err(ConfigError(format!("{url:?} has no port")));
    }
    Ok(host_port.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Config {
        let mut all = vec!["kubernate-store"];
        all.extend_from_slice(args);
        Config::parse_from(all)
    }

    #[test]
    fn initial_cluster_is_parsed_and_must_name_this_member() {
        let c = config(&[
            "--name",
            "b",
            "--initial-cluster",
            "a=http://h1:2380,b=http://h2:2380,b=http://h3:2380",
        ]);
        let m = c.initial_members().unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].peer_urls, vec!["http://h2:2380", "http://h3:2380"]);
        let c = config(&["--name", "z", "--initial-cluster", "a=http://h1:2380"]);
        assert!(c
            .initial_members()
            .unwrap_err()
            .to_string()
            .contains("\"z\" is not in --initial-cluster"));
    }

    #[test]
    fn without_initial_cluster_a_member_starts_alone() {
        let c = config(&["--name", "s1", "--initial-advertise-peer-urls", "http://10.0.0.1:2380"]);
        let m = c.initial_members().unwrap();
        assert_eq!(
            m,
            vec![InitialMember {
                name: "s1".into(),
                peer_urls: vec!["http://10.0.0.1:2380".into()]
            }]
        );
    }

    #[test]
    fn tls_flags_and_schemes_must_agree() {
        let c = config(&["--cert-file", "c.pem"]);
        assert!(c.validate().unwrap_err().to_string().contains("give both"));
        let c = config(&["--cert-file", "c.pem", "--key-file", "k.pem"]);
        assert!(c.validate().unwrap_err().to_string().contains("must use https://"));
        let c = config(&[
            "--cert-file",
            "c.pem",
            "--key-file",
            "k.pem",
            "--listen-client-urls",
            "https://127.0.0.1:2379",
        ]);
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--trusted-ca-file is required"));
        assert!(config(&[]).validate().is_ok());
    }

    #[test]
    fn durations_are_read_as_go_spells_them() {
        use std::time::Duration;
        assert_eq!(go_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(go_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "10", "5x", "s", "-1s"] {
            assert!(go_duration(bad).is_err(), "{bad:?} was accepted");
        }
        let c = config(&["--experimental-watch-progress-notify-interval", "2s"]);
        assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(2));
    }

    #[test]
    fn socket_addrs_come_from_urls() {
        assert_eq!(socket_addr("https://127.0.0.1:2379").unwrap(), "127.0.0.1:2379");
        assert_eq!(socket_addr("http://[::1]:2380/").unwrap(), "[::1]:2380");
        assert!(socket_addr("http://localhost").is_err());
    }
}
