//! Bringing the API server up: the store connection, the built-in
//! namespaces, and the HTTPS port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::tls::{self, ClientAuth};
use serde_json::{json, Value};
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
    #[error("configuration: {0}")]
    Config(String),
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

/// The store channel, carrying each request's trace context (so a
/// request's trace continues into the store).
fn traced(channel: tonic::transport::Channel) -> etcd_client::Channel {
    use tower::ServiceExt;
    let service = common::trace_context::InjectService::new(channel).map_err(tower::BoxError::from);
    etcd_client::Channel::Custom(tower::util::BoxCloneSyncService::new(service))
}

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
            etcd_client::Client::from_channel(traced(channel), None)
                .await
                .map_err(|e| store_err(e.to_string()))
        }
        (None, None, None) => {
            // Every endpoint, balanced, as etcd-client's own connect does.
            let mut endpoints = Vec::new();
            for url in &config.etcd_servers {
                let endpoint = tonic::transport::Endpoint::from_shared(url.clone())
                    .map_err(|e| store_err(format!("{url}: {e}")))?;
                endpoints.push(endpoint);
            }
            if endpoints.is_empty() {
                return Err(store_err("no --etcd-servers".into()));
            }
            let channel = tonic::transport::Channel::balance_list(endpoints.into_iter());
            etcd_client::Client::from_channel(traced(channel), None)
                .await
                .map_err(|e| store_err(e.to_string()))
        }
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

async fn listen(addr: &str) -> Result<tokio::net::TcpListener, StartError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen {
            addr: addr.to_string(),
            source,
        })
}

/// How often apiserver_storage_objects is brought up to date.
const COUNT_PERIOD: Duration = Duration::from_secs(30);

/// Keeps apiserver_storage_objects current: a count-only range per
/// resource every [`COUNT_PERIOD`].
async fn count_objects(app: Arc<App>, stop: CancellationToken) {
    loop {
        for r in api::resources::RESOURCES {
            match app.storage.count(r.storage_prefix().as_bytes()).await {
                Ok(n) => {
                    let name = if r.group.is_empty() {
                        r.plural.to_string()
                    } else {
                        format!("{}.{}", r.plural, r.group)
                    };
                    app.metrics.stored_objects.with_label_values(&[&name]).set(n);
                }
                Err(e) => tracing::debug!(error = %e, "cannot count stored objects"),
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(COUNT_PERIOD) => {}
        }
    }
}

/// Compacts the store every `every`, to the revision seen one round
/// before, as kube-apiserver does: the history kept is at least one
/// interval long.
async fn compact_history(app: Arc<App>, every: Duration, stop: CancellationToken) {
    let mut previous = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if previous > 0 {
            match app.storage.compact(previous).await {
                Ok(()) => tracing::debug!(revision = previous, "compacted the store"),
                // Someone (another API server) compacted further already.
                Err(crate::storage::StorageError::Compacted(_)) => {}
                Err(e) => tracing::warn!(error = %e, "compaction failed"),
            }
        }
        match app.storage.revision().await {
            Ok(now) => previous = now,
            Err(e) => tracing::warn!(error = %e, "cannot read the store's revision"),
        }
    }
}

/// The `kubernetes` Service in `default` (the first ClusterIP, port 443)
/// and its Endpoints naming this API server, so that pods find the API.
async fn ensure_kubernetes_service(app: &App, advertise: &str, port: u16) -> Result<(), crate::status::ApiError> {
    use crate::request_info::RequestInfo;
    let info = |plural: &str, name: Option<&str>| {
        api::resources::find("", "v1", plural).map(|resource| RequestInfo {
            resource,
            namespace: Some("default".into()),
            name: name.map(str::to_string),
            subresource: None,
        })
    };
    let missing = || crate::status::ApiError::internal("services or endpoints missing from the resource table");
    let service = info("services", Some("kubernetes")).ok_or_else(missing)?;
    match crate::verbs::get(app, &service).await {
        Ok(_) => {}
        Err(e) if e.code == 404 => {
            let body = json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kubernetes", "namespace": "default",
                             "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"clusterIP": app.allocator.cidr.first_ip().to_string(),
                         "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
            });
            let collection = info("services", None).ok_or_else(missing)?;
            match crate::verbs::create(app, &collection, body, &Default::default()).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    }
    let subsets = json!([{"addresses": [{"ip": advertise}],
                          "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]);
    let endpoints = info("endpoints", Some("kubernetes")).ok_or_else(missing)?;
    ensure_kubernetes_endpoints(app, &endpoints, subsets).await?;
    // And its EndpointSlice, which kube-proxy-like clients read. No
    // managed-by label: the EndpointSlice controller leaves it alone.
    let slices = api::resources::find("discovery.k8s.io", "v1", "endpointslices").ok_or_else(missing)?;
    let slice_info = |name: Option<&str>| RequestInfo {
        resource: slices,
        namespace: Some("default".into()),
        name: name.map(str::to_string),
        subresource: None,
    };
    let address_type = if advertise.contains(':') { "IPv6" } else { "IPv4" };
    let wanted = |current: Value| {
        let mut slice = current;
        slice["addressType"] = json!(address_type);
        slice["endpoints"] = json!([{"addresses": [advertise], "conditions": {"ready": true}}]);
        slice["ports"] = json!([{"name": "https", "port": port, "protocol": "TCP"}]);
        slice
    };
    match crate::verbs::get(app, &slice_info(Some("kubernetes"))).await {
        Ok(current) if wanted(current.clone()) == current => Ok(()),
        Ok(current) => crate::verbs::update(
            app,
            &slice_info(Some("kubernetes")),
            wanted(current),
            &Default::default(),
        )
        .await
        .map(|_| ()),
        Err(e) if e.code == 404 => {
            let body = wanted(json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "kubernetes", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "kubernetes"}},
            }));
            match crate::verbs::create(app, &slice_info(None), body, &Default::default()).await {
                Err(e) if e.code != 409 => Err(e),
                _ => Ok(()),
            }
        }
        Err(e) => Err(e),
    }
}

/// The `kubernetes` Endpoints naming this API server.
async fn ensure_kubernetes_endpoints(
    app: &App,
    endpoints: &crate::request_info::RequestInfo,
    subsets: Value,
) -> Result<(), crate::status::ApiError> {
    let missing = || crate::status::ApiError::internal("endpoints missing from the resource table");
    match crate::verbs::get(app, endpoints).await {
        Ok(current) if current["subsets"] == subsets => Ok(()),
        Ok(mut current) => {
            current["subsets"] = subsets;
            crate::verbs::update(app, endpoints, current, &Default::default())
                .await
                .map(|_| ())
        }
        Err(e) if e.code == 404 => {
            let body = json!({
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": "kubernetes", "namespace": "default"},
                "subsets": subsets,
            });
            let collection = crate::request_info::RequestInfo {
                resource: api::resources::find("", "v1", "endpoints").ok_or_else(missing)?,
                namespace: Some("default".into()),
                name: None,
                subresource: None,
            };
            crate::verbs::create(app, &collection, body, &Default::default())
                .await
                .map(|_| ())
        }
        Err(e) => Err(e),
    }
}

const RBAC_PREFIXES: [&str; 4] = [
    crate::authz::rbac::ROLES,
    crate::authz::rbac::ROLE_BINDINGS,
    crate::authz::rbac::CLUSTER_ROLES,
    crate::authz::rbac::CLUSTER_ROLE_BINDINGS,
];

/// Token files, ServiceAccount keys and anonymous access, from the flags.
fn authenticator(config: &Config) -> Result<crate::authn::Authenticator, StartError> {
    let tokens = match &config.token_auth_file {
        Some(path) => crate::authn::token_file::TokenFile::load(path)
            .map_err(|e| StartError::Config(format!("--token-auth-file: {e}")))?,
        None => Default::default(),
    };
    let service_accounts = match (
        &config.service_account_key_file,
        &config.service_account_signing_key_file,
    ) {
        (Some(public), private) => Some(
            crate::authn::service_account::ServiceAccounts::load(
                public,
                private.as_deref(),
                &config.service_account_issuer,
                &config.api_audiences,
            )
            .map_err(|e| StartError::Config(format!("ServiceAccount keys: {e}")))?,
        ),
        (None, Some(_)) => {
            return Err(StartError::Config(
                "--service-account-signing-key-file needs --service-account-key-file".into(),
            ))
        }
        (None, None) => {
            tracing::warn!("no --service-account-key-file: ServiceAccount tokens are neither issued nor accepted");
            None
        }
    };
    Ok(crate::authn::Authenticator {
        tokens,
        service_accounts,
        anonymous: config.anonymous_auth,
    })
}

pub async fn start(config: Config) -> Result<Running, StartError> {
    let allocator = crate::allocator::Allocator {
        cidr: crate::allocator::Cidr::parse(&config.service_cluster_ip_range)
            .map_err(|e| StartError::Config(format!("--service-cluster-ip-range: {e}")))?,
        ports: crate::allocator::parse_port_range(&config.service_node_port_range)
            .map_err(|e| StartError::Config(format!("--service-node-port-range: {e}")))?,
    };
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
    let listener = listen(&addr).await?;
    let local = listener
        .local_addr()
        .map_err(|source| StartError::Listen { addr, source })?;
    // Both ports are bound before the slower start-up work, so a client
    // that sees one open finds the other open too.
    let insecure_listener = if config.insecure_port > 0 {
        let addr = format!("127.0.0.1:{}", config.insecure_port);
        let listener = listen(&addr).await?;
        tracing::warn!(%addr, "serving the API WITHOUT authentication or authorization on the insecure port (loopback only)");
        Some(listener)
    } else {
        None
    };

    let metrics = crate::metrics::Metrics::new().map_err(|e| StartError::Store(format!("metrics: {e}")))?;
    let storage = storage.with_timings(metrics.store_duration.clone());
    // Custom resources are servable from the first request on.
    crate::crd::load(&storage).await;
    let authn = authenticator(&config)?;
    let created = crate::authz::bootstrap::ensure(&storage)
        .await
        .map_err(|e| StartError::Store(format!("the bootstrap RBAC policy: {e}")))?;
    if created > 0 {
        tracing::info!(created, "created the bootstrap RBAC policy");
    }
    // Authorization knows every role and binding from the first request on.
    let rbac = crate::authz::rbac::Rbac::default();
    for prefix in RBAC_PREFIXES {
        if let Some((items, _)) = crate::watch_prefix::list(&storage, prefix).await {
            rbac.apply(prefix, crate::watch_prefix::Update::Reset(items));
        }
    }
    let stop = CancellationToken::new();
    let bookmark_interval = Duration::from_secs(config.watch_bookmark_interval.max(1));
    let app = Arc::new(App {
        watch_cache: crate::watch_cache::Caches::new(
            config.watch_cache,
            storage.clone(),
            bookmark_interval,
            stop.clone(),
        ),
        storage,
        max_body: config.max_request_body_bytes,
        metrics,
        bookmark_interval,
        max_in_flight: crate::max_in_flight::MaxInFlight::new(
            config.max_requests_inflight,
            config.max_mutating_requests_inflight,
        ),
        allocator,
        kubelet_tls: crate::pod_logs::kubelet_tls(&config)?,
        authn,
        rbac,
        audit: match &config.audit_log_path {
            Some(path) => Some(
                crate::audit::AuditLog::open(path, config.audit_log_maxsize, config.audit_log_maxbackup)
                    .map_err(|e| StartError::Config(format!("--audit-log-path {}: {e}", path.display())))?,
            ),
            None => None,
        },
    });
    let advertise = match &config.advertise_address {
        Some(a) => a.clone(),
        None if local.ip().is_unspecified() => "127.0.0.1".to_string(),
        None => local.ip().to_string(),
    };
    ensure_kubernetes_service(&app, &advertise, local.port())
        .await
        .map_err(|e| StartError::Store(format!("the kubernetes Service: {e}")))?;
    // gRPC for the components and REST for everyone else on one port:
    // the gRPC service's paths first, every other path to the REST handler.
    let rest = axum::Router::new()
        .fallback(crate::rest::handle)
        .with_state(app.clone());
    let insecure = insecure_listener.map(|listener| {
        (
            listener,
            rest.clone().layer(axum::Extension(crate::authn::InsecurePort)),
        )
    });
    // Messages over the body limit are still read, so that the answer is a
    // 413 Status rather than a transport error.
    let grpc = api::proto::resources_server::ResourcesServer::new(crate::grpc::ResourcesService { app: app.clone() })
        .max_decoding_message_size(config.max_request_body_bytes.saturating_mul(4));
    let router = tonic::service::Routes::new(grpc)
        .into_axum_router()
        .fallback_service(rest)
        .layer(common::trace_context::ServerTraceLayer);
    let tasks = TaskTracker::new();
    tasks.spawn(count_objects(app.clone(), stop.clone()));
    tasks.spawn(crate::crd::follow(app.storage.clone(), stop.clone()));
    for prefix in RBAC_PREFIXES {
        let app = app.clone();
        tasks.spawn(crate::watch_prefix::follow(
            app.storage.clone(),
            prefix,
            stop.clone(),
            move |update| app.rbac.apply(prefix, update),
        ));
    }
    if config.etcd_compaction_interval > 0 {
        let every = Duration::from_secs(config.etcd_compaction_interval);
        tasks.spawn(compact_history(app.clone(), every, stop.clone()));
    }
    tasks.spawn(common::serve::serve_tls(listener, tls, router, stop.clone()));
    if let Some((listener, router)) = insecure {
        tasks.spawn(common::serve::serve_plain(listener, router, stop.clone()));
    }
    tracing::info!(%local, "API server listening");
    Ok(Running {
        addr: local,
        tasks,
        stop,
    })
}
