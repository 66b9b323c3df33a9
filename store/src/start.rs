//! Bringing a member up: storage, Raft, bootstrap, and the three ports.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::tls::{self, ClientAuth};
use etcd_client::proto::{PbClusterServer, PbKvServer, PbLeaseServer, PbMaintenanceServer, PbWatchServer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{socket_addr, Config};
use crate::metrics::{GrpcMetricsLayer, Metrics};
use crate::node::{member_id, stable_id, Limits, Node};
use crate::raft::log_store::LogStore;
use crate::raft::network::proto::peer_server::PeerServer;
use crate::raft::network::{Dialer, PeerService};
use crate::raft::state_machine::StateMachine;
use crate::raft::{Member, Raft};
use crate::server::proto::{v3election::election_server::ElectionServer, v3lock::lock_server::LockServer};
use crate::server::{cluster::ClusterService, kv::KvService, lease::LeaseService};
use crate::server::{election::ElectionService, lock::LockService};
use crate::server::{maintenance::MaintenanceService, watch::WatchService};

/// Why a member could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{what}: {detail}")]
    Io { what: String, detail: String },
    #[error(transparent)]
    Tls(#[from] tls::Error),
    #[error("raft: {0}")]
    Raft(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let what = what.into();
    move |e| StartError::Io {
        what,
        detail: e.to_string(),
    }
}

/// A started member.
pub struct Running {
    pub node: Arc<Node>,
    pub client_addrs: Vec<SocketAddr>,
    pub peer_addrs: Vec<SocketAddr>,
    pub metrics_addrs: Vec<SocketAddr>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Running {
    /// Stops the member: servers first, then Raft.
    pub async fn stop(self) {
        self.stop.cancel();
        common::shutdown::drain(&self.tasks, Duration::from_secs(5)).await;
        if let Err(e) = self.node.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

/// Starts a member and runs it until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let running = start(config).await?;
    shutdown.cancelled().await;
    running.stop().await;
    Ok(())
}

async fn bind(urls: &[String], what: &str) -> Result<Vec<TcpListener>, StartError> {
    let mut listeners = Vec::new();
    for url in urls {
        let addr = socket_addr(url)?;
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(io(format!("binding {what} {addr}")))?;
        listeners.push(listener);
    }
    Ok(listeners)
}

fn addrs(listeners: &[TcpListener]) -> Vec<SocketAddr> {
    listeners.iter().filter_map(|l| l.local_addr().ok()).collect()
}

/// Starts a member: opens its data, starts Raft (bootstrapping a new
/// cluster if asked), and serves the client, peer and metrics ports.
/// This member's id: derived from its peer URLs when its data directory is
/// new, then kept there (`member_id`), as etcd keeps it in its WAL, so that
/// a member whose URLs `member update` changed keeps its identity.
fn member_identity(data_dir: &std::path::Path, derived: u64) -> std::io::Result<u64> {
    let path = data_dir.join("member_id");
    match std::fs::read_to_string(&path) {
        Ok(text) => u64::from_str_radix(text.trim(), 16).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not a hex member id: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = data_dir.join("member_id.tmp");
            let mut file = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut file, format!("{derived:x}\n").as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(data_dir)?.sync_all()?;
            Ok(derived)
        }
        Err(e) => Err(e),
    }
}

pub async fn start(config: Config) -> Result<Running, StartError> {
    config.validate()?;
    let members = config.initial_members()?;
    let token = &config.initial_cluster_token;
    // The cluster id comes from the token alone, so a member that joins
    // later (with a longer --initial-cluster) agrees with the founders.
    let cluster_id = stable_id(&[token.as_str()]);
    let me = members
        .iter()
        .find(|m| m.name == config.name)
        .ok_or_else(|| crate::config::ConfigError(format!("member {:?} is not in --initial-cluster", config.name)))?;
    let data_dir = config.data_dir();
    std::fs::create_dir_all(&data_dir).map_err(io(format!("creating {}", data_dir.display())))?;
    let id = member_identity(&data_dir, member_id(&me.peer_urls, token)).map_err(io(format!(
        "reading or writing the member id in {}",
        data_dir.display()
    )))?;
    let registry = common::metrics::registry();
    let metrics = Metrics::new(&registry).map_err(|e| StartError::Raft(e.to_string()))?;
    let fsync = metrics.wal_fsync.clone();
    let log = LogStore::open(&data_dir.join("raft.redb"), Some(Arc::new(move |s| fsync.observe(s)))).map_err(|e| {
        StartError::Io {
            what: format!("opening the Raft log in {}", data_dir.display()),
            detail: e.to_string(),
        }
    })?;
    let commit = metrics.backend_commit.clone();
    let sm = StateMachine::open(&data_dir, Some(Arc::new(move |s| commit.observe(s))))
        .map_err(|e| StartError::Raft(e.to_string()))?;

    let peer_tls_client = match (
        &config.peer_cert_file,
        &config.peer_key_file,
        &config.peer_trusted_ca_file,
    ) {
        (Some(cert), Some(key), Some(ca)) => Some(
            tls::ClientFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            }
            .load(&[common::grpc::ALPN_H2])?,
        ),
        _ => None,
    };
    let dialer = Dialer {
        tls: peer_tls_client,
        rtt: Some(metrics.peer_rtt.clone()),
        ..Default::default()
    };
    let raft_config = openraft::Config {
        cluster_name: token.clone(),
        heartbeat_interval: config.heartbeat_interval,
        election_timeout_min: config.election_timeout,
        election_timeout_max: config.election_timeout * 2,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_count),
        max_in_snapshot_log_to_keep: 1000,
        max_payload_entries: 1000,
        // The election timer is raft::pre_vote's.
        enable_elect: false,
        ..Default::default()
    }
    .validate()
    .map_err(|e| StartError::Raft(e.to_string()))?;
    let election_timeout = (
        Duration::from_millis(raft_config.election_timeout_min),
        Duration::from_millis(raft_config.election_timeout_max),
    );
    let raft = Raft::new(id, Arc::new(raft_config), dialer.clone(), log.clone(), sm.clone())
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;

    if config.initial_cluster_state == "new" {
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if !initialized {
            // Every founder must propose the very same membership (Raft
            // treats the founders' first entries as one), so no client URLs
            // here: each member publishes its own once it runs.
            let mut voters = BTreeMap::new();
            for m in &members {
                let member = Member {
                    name: m.name.clone(),
                    peer_urls: m.peer_urls.clone(),
                    client_urls: Vec::new(),
                };
                voters.insert(member_id(&m.peer_urls, token), member);
            }
            tracing::info!(members = voters.len(), "bootstrapping a new cluster");
            if let Err(e) = raft.initialize(voters).await {
                // Another member may have initialized first; that is fine.
                tracing::info!(error = %e, "cluster already initialized");
            }
        }
    }

    let proposer = crate::proposer::Proposer::start(raft.clone());
    let (reads, read_queue) = tokio::sync::mpsc::unbounded_channel();
    let node = Arc::new(Node {
        id,
        cluster_id,
        cluster_token: token.clone(),
        name: config.name.clone(),
        raft,
        sm,
        dialer,
        limits: Limits {
            quota_bytes: config.quota_backend_bytes,
            max_request_bytes: config.max_request_bytes,
            progress_interval: config.watch_progress_notify_interval,
            ..Limits::default()
        },
        proposer,
        reads,
        failed_proposals: metrics.proposals_failed.clone(),
        // Created once Raft has replayed its log: openraft's lease clock
        // starts then, and a pre-vote must not be granted before it would.
        elections: crate::raft::pre_vote::Elections::new(election_timeout.0, election_timeout.1),
        log,
    });
    tokio::spawn(crate::raft::pre_vote::run(Arc::downgrade(&node)));
    tokio::spawn(crate::node::run_read_rounds(Arc::downgrade(&node), read_queue));

    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();

    // Client port.
    let client_listeners = bind(&config.listen_client_urls, "client URL").await?;
    let client_addrs = addrs(&client_listeners);
    let client_tls = match (&config.cert_file, &config.key_file) {
        (Some(cert), Some(key)) => {
            let identity = tls::Identity::from_files(cert, key)?;
            let (cas, mode) = match &config.trusted_ca_file {
                Some(ca) if !config.allowed_client_cn.is_empty() => (
                    tls::load_certs(ca)?,
                    ClientAuth::RequiredWithCn(config.allowed_client_cn.clone()),
                ),
                Some(ca) => (tls::load_certs(ca)?, ClientAuth::Required),
                None => (Vec::new(), ClientAuth::None),
            };
            Some(tls::server_config(&identity, &cas, mode, common::serve::ALPN_BOTH)?)
        }
        _ => {
            tracing::warn!(
                "serving clients over plain HTTP: anyone who can reach the client port can read and write everything"
            );
            None
        }
    };
    let limit = config.max_request_bytes + 512 * 1024;
    let grpc =
        tonic::service::Routes::new(PbKvServer::new(KvService { node: node.clone() }).max_decoding_message_size(limit))
            .add_service(PbWatchServer::new(WatchService { node: node.clone() }).max_decoding_message_size(limit))
            .add_service(PbLeaseServer::new(LeaseService::new(node.clone())).max_decoding_message_size(limit))
            .add_service(PbMaintenanceServer::new(MaintenanceService { node: node.clone() }))
            .add_service(PbClusterServer::new(ClusterService { node: node.clone() }))
            .add_service(LockServer::new(LockService { node: node.clone() }).max_decoding_message_size(limit))
            .add_service(ElectionServer::new(ElectionService { node: node.clone() }).max_decoding_message_size(limit));
    // gRPC and etcd's JSON gateway share the client port, as in etcd.
    let router = grpc
        .into_axum_router()
        .merge(crate::gateway::router(node.clone(), limit))
        .layer(GrpcMetricsLayer {
            metrics: metrics.clone(),
        })
        .layer(common::trace_context::ServerTraceLayer);
    for listener in client_listeners {
        match &client_tls {
            Some(tls) => {
                tasks.spawn(common::serve::serve_tls(
                    listener,
                    tls.clone(),
                    router.clone(),
                    stop.clone(),
                ));
            }
            None => {
                tasks.spawn(common::serve::serve_plain(listener, router.clone(), stop.clone()));
            }
        }
    }

    // Peer port.
    let peer_listeners = bind(&config.listen_peer_urls, "peer URL").await?;
    let peer_addrs = addrs(&peer_listeners);
    let peer_tls = match (
        &config.peer_cert_file,
        &config.peer_key_file,
        &config.peer_trusted_ca_file,
    ) {
        (Some(cert), Some(key), Some(ca)) => Some(
            tls::ServerFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: ca.clone(),
            }
            .load(ClientAuth::Required, &[common::grpc::ALPN_H2])?,
        ),
        _ => {
            tracing::warn!("peers talk over plain HTTP");
            None
        }
    };
    let peer_router = tonic::service::Routes::new(
        PeerServer::new(PeerService { node: node.clone() })
            .max_decoding_message_size(256 * 1024 * 1024)
            .max_encoding_message_size(256 * 1024 * 1024),
    )
    .into_axum_router();
    for listener in peer_listeners {
        match &peer_tls {
            Some(tls) => tasks.spawn(common::serve::serve_tls(
                listener,
                tls.clone(),
                peer_router.clone(),
                stop.clone(),
            )),
            None => tasks.spawn(common::serve::serve_plain(listener, peer_router.clone(), stop.clone())),
        };
    }

    // Metrics port.
    let metrics_listeners = bind(&config.listen_metrics_urls, "metrics URL").await?;
    let metrics_addrs = addrs(&metrics_listeners);
    let read_probe = crate::health::ReadProbe::default();
    tokio::spawn(crate::health::probe(Arc::downgrade(&node), read_probe.clone()));
    let health = crate::health::route(node.clone(), read_probe);
    for listener in metrics_listeners {
        tasks.spawn(common::metrics::serve_with(
            listener,
            registry.clone(),
            Some(health.clone()),
            stop.clone(),
        ));
    }

    let me = Member {
        name: config.name.clone(),
        peer_urls: me.peer_urls.clone(),
        client_urls: config.advertise_client_urls.clone(),
    };
    tasks.spawn(crate::server::cluster::publish(node.clone(), me, stop.clone()));
    tasks.spawn(crate::lessor::run_expiry(node.clone(), stop.clone()));
    tasks.spawn(crate::metrics::run_updater(node.clone(), metrics.clone(), stop.clone()));
    tracing::info!(name = %config.name, id = format!("{id:016x}"), cluster = format!("{cluster_id:016x}"), ?client_addrs, ?peer_addrs, "store member started");
    Ok(Running {
        node,
        client_addrs,
        peer_addrs,
        metrics_addrs,
        tasks,
        stop,
    })
}
