//! The kubelet: the node agent. It registers its Node and keeps it alive
//! (`node_status`), watches the pods bound to it, and runs them through a
//! CRI-shaped [`runtime`]: one [worker](pod_workers) per pod syncing its
//! containers toward the spec, a [PLEG](pleg) noticing container exits,
//! and a [status](status) per pod written back to the API server.
//!
//! - [`runtime`]: the `Runtime` trait, the process runtime and its shim.
//! - [`env`]: containers' environment (`valueFrom`, `envFrom`, `$(VAR)`).
//! - [`container_config`]: a container's spec and image turned into what
//!   the runtime runs; [`volumes`]: the pod's volumes.
//! - [`prober`]: liveness, readiness and startup probes.
//! - [`node_status`]: registration, Lease heartbeat, Node status.

pub mod config;
pub mod container_config;
pub mod delegated_auth;
pub mod env;
pub mod housekeeping;
pub mod metrics;
pub mod node_status;
pub mod pleg;
pub mod pod_workers;
pub mod prober;
pub mod resource_metrics;
pub mod runtime;
pub mod server;
pub mod status;
pub mod volumes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::{Client, Event, Informer, ListParams, SharedInformerFactory};
use k8s_openapi::api::core::v1::Pod;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::pod_workers::{Backoffs, ImagePulls, PodWorkers};
use crate::runtime::process::ProcessRuntime;
use crate::runtime::Runtime;

/// The index of pods by uid.
pub const UID_INDEX: &str = "uid";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] client::Error),
    #[error("{0}")]
    Config(String),
    #[error("runtime: {0}")]
    Runtime(#[from] runtime::RuntimeError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot listen on {0}: {1}")]
    Listen(std::net::SocketAddr, std::io::Error),
}

/// Everything the sync loop shares.
pub struct Kubelet<R: Runtime> {
    pub client: Client,
    pub runtime: Arc<R>,
    pub pods: Arc<Informer<Pod>>,
    pub node_ip: String,
    pub workers: PodWorkers,
    pub backoff: Backoffs,
    pub pulls: ImagePulls,
    /// ServiceAccount tokens of projected volumes.
    pub tokens: volumes::service_account_token::Tokens,
    /// This node's name (the kubelet API asks the API server about it).
    pub node_name: String,
    /// The API server's answers on who may call the kubelet API.
    pub decisions: delegated_auth::Decisions,
    /// Where images are found (`kubernate image import` puts them there).
    pub image_store: std::path::PathBuf,
    /// Pods' directories are `<root_dir>/pods/<uid>`.
    pub root_dir: std::path::PathBuf,
    pub probes: prober::Probes,
    pub metrics: metrics::Metrics,
    pub sync_period: Duration,
    pub stop: CancellationToken,
    /// When each pod was first seen running here (its status.startTime).
    start_times: Mutex<HashMap<String, String>>,
    /// When each pod was first seen, for the start-latency metric.
    seen: Mutex<HashMap<String, Instant>>,
}

/// Serves the kubelet API (logs) when it has a serving certificate.
async fn serve_api<R: Runtime>(
    config: &Config,
    kubelet: Arc<Kubelet<R>>,
    stop: &CancellationToken,
) -> Result<(), Error> {
    let (Some(cert), Some(key), Some(ca)) = (
        &config.tls_cert_file,
        &config.tls_private_key_file,
        &config.client_ca_file,
    ) else {
        tracing::warn!(
            "no --tls-cert-file/--tls-private-key-file/--client-ca-file: the kubelet API (kubectl logs) is not served"
        );
        return Ok(());
    };
    let files = common::tls::ServerFiles {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: ca.clone(),
    };
    let tls = files
        .load(common::tls::ClientAuth::Required, &[b"http/1.1"])
        .map_err(|e| Error::Config(format!("kubelet API TLS: {e}")))?;
    let address = std::net::SocketAddr::new(config.address, config.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| Error::Listen(address, e))?;
    tracing::info!(%address, "serving the kubelet API");
    tokio::spawn(common::serve::serve_tls(
        listener,
        tls,
        server::router(kubelet),
        stop.clone(),
    ));
    Ok(())
}

/// Runs the kubelet until `stop`.
pub async fn run(config: Config, stop: CancellationToken) -> Result<(), Error> {
    let mut resolved = common::kubeconfig::Kubeconfig::load_resolved(&config.kubeconfig)
        .map_err(|e| Error::Config(format!("kubeconfig: {e}")))?;
    if let Some(server) = &config.master {
        resolved.server = server.clone();
    }
    let client = Client::from_resolved(&resolved)?;
    if rustix::process::geteuid().is_root() {
        let cgroups = runtime::cgroups::detect();
        tracing::info!(cgroups = %cgroups.describe(), images = %config.image_store.display(),
            "containers run isolated: own root filesystem and PID, mount, UTS and IPC namespaces");
    } else {
        tracing::warn!(
            "not running as root: containers run as plain processes of this user, without their image's filesystem, namespaces or limits"
        );
    }
    let machine = node_status::Machine::measure(&config).map_err(Error::Config)?;
    let runtime = Arc::new(ProcessRuntime::new(&config.root_dir, &machine.ip)?);
    let node =
        node_status::NodeStatus::new(client.clone(), &config, machine, runtime.version()).map_err(Error::Config)?;
    let node_name = node.name().to_string();
    let node_ip = node.ip().to_string();
    node.register().await?;
    tracing::info!(node = %node_name, ip = %node_ip, root = %config.root_dir.display(), "kubelet started");

    let registry = common::metrics::registry();
    let metrics = metrics::Metrics::register(&registry)?;
    let listener = tokio::net::TcpListener::bind(config.metrics_bind_address)
        .await
        .map_err(|e| Error::Listen(config.metrics_bind_address, e))?;
    tokio::spawn(common::metrics::serve(listener, registry, stop.clone()));

    // Only this node's pods.
    let factory = SharedInformerFactory::new(client.clone());
    let pods = factory.informer_for::<Pod>(
        None,
        ListParams::default().fields(&format!("spec.nodeName={node_name}")),
    );
    pods.add_index(
        UID_INDEX,
        Arc::new(|p: &Pod| vec![p.metadata.uid.clone().unwrap_or_default()]),
    );
    let kubelet = Arc::new(Kubelet {
        client,
        runtime,
        pods: pods.clone(),
        node_ip,
        workers: PodWorkers::default(),
        backoff: Backoffs::default(),
        pulls: ImagePulls::default(),
        tokens: Default::default(),
        node_name: node_name.clone(),
        decisions: Default::default(),
        image_store: config.image_store.clone(),
        root_dir: config.root_dir.clone(),
        probes: prober::Probes::default(),
        metrics,
        sync_period: config.sync_frequency,
        stop: stop.clone(),
        start_times: Mutex::new(HashMap::new()),
        seen: Mutex::new(HashMap::new()),
    });
    let weak = Arc::downgrade(&kubelet);
    pods.add_handler(move |event| {
        let Some(k) = weak.upgrade() else { return };
        let p = match event {
            // A change of status alone (most often our own write) is not
            // the kubelet's business, as upstream's pod config ignores it.
            Event::Updated { old, new }
                if old.spec == new.spec
                    && old.metadata.deletion_timestamp == new.metadata.deletion_timestamp
                    && old.metadata.deletion_grace_period_seconds == new.metadata.deletion_grace_period_seconds =>
            {
                return
            }
            Event::Added(p) | Event::Updated { new: p, .. } | Event::Deleted(p) => p,
        };
        if let Some(uid) = p.metadata.uid.as_deref() {
            k.workers.dispatch(&k, uid);
        }
    });
    factory.start(&stop);
    if !factory.wait_for_sync(Duration::from_secs(120)).await {
        return Err(Error::Config("the pod cache did not sync within 120s".into()));
    }
    tokio::spawn(pleg::run(kubelet.clone(), stop.clone()));
    tokio::spawn(housekeeping::run(kubelet.clone(), stop.clone()));
    tokio::spawn(prober::run(kubelet.clone(), stop.clone()));
    serve_api(&config, kubelet.clone(), &stop).await?;
    node.run(&config, stop).await;
    Ok(())
}
