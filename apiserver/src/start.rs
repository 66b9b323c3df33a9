//! Bringing the API server up: the store connection, the built-in
//! namespaces, and the HTTPS port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::tls::{self, ClientAuth};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::rest::App;
use crate::storage::{Storage, StorageError};

/// Why the API server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] tls::Error),
    #[error("store: {0}")]
    Store(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// A started API server.
pub struct Running {
    pub addr: SocketAddr,
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Running {
    pub async fn stop(self) {
        self.stop.cancel();
        common::shutdown::drain(&self.tasks, Duration::from_secs(5)).await;
    }
}

/// Runs until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let running = start(config).await?;
    shutdown.cancelled().await;
    running.stop().await;
    Ok(())
}

/// How long start-up waits for the store.
pub const STORE_WAIT: Duration = Duration::from_secs(30);

/// The namespaces every cluster has.
pub const BUILT_IN_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

async fn connect(config: &Config) -> Result<etcd_client::Client, StartError> {
    let store_err = |e: String| StartError::Store(e);
    match (&config.etcd_cafile, &config.etcd_certfile, &config.etcd_keyfile) {
        (Some(ca), Some(cert), Some(key)) => {
            let tls = tls::ClientFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            }
            .load(&[common::grpc::ALPN_H2])?;
            let endpoint = config
                .etcd_servers
                .first()
                .ok_or_else(|| store_err("no --etcd-servers".into()))?;
            let channel = common::grpc::channel(endpoint, tls).map_err(|e| store_err(e.to_string()))?;
            etcd_client::Client::from_channel(etcd_client::Channel::Tonic(channel), None)
                .await
                .map_err(|e| store_err(e.to_string()))
        }
        (None, None, None) => etcd_client::Client::connect(&config.etcd_servers, None)
            .await
            .map_err(|e| store_err(e.to_string())),
        _ => Err(store_err(
            "give all of --etcd-cafile, --etcd-certfile and --etcd-keyfile, or none".into(),
        )),
    }
}

/// Creates the built-in namespaces that are missing.
async fn ensure_namespaces(storage: &Storage) -> Result<(), StartError> {
    for name in BUILT_IN_NAMESPACES {
        let object = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": crate::registry::now(),
                "labels": {"kubernetes.io/metadata.name": name},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        });
        let key = format!("/registry/namespaces/{name}");
        let bytes = serde_json::to_vec(&object).map_err(|e| StartError::Store(e.to_string()))?;
        match storage.create(key.as_bytes(), bytes).await {
            Ok(_) | Err(StorageError::AlreadyExists) => {}
            Err(e) => return Err(StartError::Store(format!("creating namespace {name}: {e}"))),
        }
    }
    Ok(())
}

pub async fn start(config: Config) -> Result<Running, StartError> {
    // The store may still be starting (or electing a leader): keep trying
    // for a while, as kube-apiserver waits for etcd.
    let deadline = tokio::time::Instant::now() + STORE_WAIT;
    let storage = loop {
        let attempt = async {
            let storage = Storage::new(connect(&config).await?);
            ensure_namespaces(&storage).await?;
            Ok::<_, StartError>(storage)
        };
        match attempt.await {
            Ok(storage) => break storage,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "store not ready yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    };

    let identity = tls::Identity::from_files(&config.tls_cert_file, &config.tls_private_key_file)?;
    let client_cas = tls::load_certs(&config.client_ca_file)?;
    // Optional: a client without a certificate reaches us and gets 401.
    let tls = tls::server_config(&identity, &client_cas, ClientAuth::Optional, common::serve::ALPN_BOTH)?;

    let addr = format!("{}:{}", config.bind_address, config.secure_port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| StartError::Listen {
            addr: addr.clone(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|source| StartError::Listen { addr, source })?;

    let metrics = crate::metrics::Metrics::new().map_err(|e| StartError::Store(format!("metrics: {e}")))?;
    let app = Arc::new(App {
        storage,
        max_body: config.max_request_body_bytes,
        metrics,
        bookmark_interval: Duration::from_secs(config.watch_bookmark_interval.max(1)),
        max_in_flight: crate::max_in_flight::MaxInFlight::new(
            config.max_requests_inflight,
            config.max_mutating_requests_inflight,
        ),
    });
    // gRPC for the components and REST for everyone else on one port:
    // the gRPC service's paths first, every other path to the REST handler.
    let rest = axum::Router::new()
        .fallback(crate::rest::handle)
        .with_state(app.clone());
    let grpc = api::proto::resources_server::ResourcesServer::new(crate::grpc::ResourcesService { app });
    let router = tonic::service::Routes::new(grpc)
        .into_axum_router()
        .fallback_service(rest)
        .layer(common::trace_context::ServerTraceLayer);
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    tasks.spawn(common::serve::serve_tls(listener, tls, router, stop.clone()));
    tracing::info!(%local, "API server listening");
    Ok(Running {
        addr: local,
        tasks,
        stop,
    })
}
