//! The connection to the API server: a kubeconfig becomes a mutual-TLS
//! gRPC channel to the internal `Resources` service.
//!
//! The channel dials lazily and re-dials after a broken connection on the
//! next call (tonic's channel does this), so a component survives an API
//! server restart; loops that must keep going (the reflector, leader
//! election) add their own backoff on top. Every unary call carries a
//! deadline, sent as `grpc-timeout` and enforced here as well, so a hung
//! server never hangs a component.

use std::path::Path;
use std::time::Duration;

use api::proto::resources_client::ResourcesClient;
use api::proto::*;
use common::kubeconfig::{Kubeconfig, Resolved};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::error::{Error, Result};

/// The largest answer accepted from the API server.
pub const MAX_MESSAGE: usize = 1 << 30;

/// How long a unary call may take unless [`Client::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Adds the bearer token (when the kubeconfig has one) and the current
/// trace context to every call.
#[derive(Clone)]
pub struct Outgoing {
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl tonic::service::Interceptor for Outgoing {
    fn call(&mut self, request: tonic::Request<()>) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        let mut request = common::trace_context::InjectContext.call(request)?;
        if let Some(token) = &self.token {
            request.metadata_mut().insert("authorization", token.clone());
        }
        Ok(request)
    }
}

type Grpc = ResourcesClient<InterceptedService<Channel, Outgoing>>;

/// A handle on the API server; cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct Client {
    grpc: Grpc,
    timeout: Duration,
    namespace: String,
}

impl Client {
    /// Connects with a kubeconfig file (its current context).
    pub fn from_kubeconfig(path: &Path) -> Result<Client> {
        let resolved = Kubeconfig::load_resolved(path).map_err(|e| Error::Config(e.to_string()))?;
        Client::from_resolved(&resolved)
    }

    /// Connects with an already resolved kubeconfig context.
    pub fn from_resolved(config: &Resolved) -> Result<Client> {
        let tls = config
            .client_tls(&[common::grpc::ALPN_H2])
            .map_err(|e| Error::Config(e.to_string()))?;
        let channel = common::grpc::channel(&config.server, tls).map_err(|e| Error::Config(e.to_string()))?;
        let token = match &config.token {
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| Error::Config("the token is not a valid header value".into()))?,
            ),
            None => None,
        };
        Ok(Client {
            // A list of every pod of a big cluster is larger than tonic's 4 MiB default.
            grpc: ResourcesClient::with_interceptor(channel, Outgoing { token }).max_decoding_message_size(MAX_MESSAGE),
            timeout: DEFAULT_TIMEOUT,
            namespace: config.namespace.clone().unwrap_or_else(|| "default".into()),
        })
    }

    /// The same connection with another per-call deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// The kubeconfig context's namespace ("default" when it names none).
    pub fn default_namespace(&self) -> &str {
        &self.namespace
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        request
    }

    /// Runs a unary call under the deadline and decodes the JSON answer.
    async fn call<F, Fut>(&self, f: F) -> Result<serde_json::Value>
    where
        F: FnOnce(Grpc) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<Object>, tonic::Status>>,
    {
        let answer = tokio::time::timeout(self.timeout, f(self.grpc.clone()))
            .await
            .map_err(|_| Error::Transport(format!("no answer within {:?}", self.timeout)))??;
        serde_json::from_slice(&answer.get_ref().json).map_err(|e| Error::decode("the API server's answer", e))
    }

    pub async fn get(&self, r: ResourceRef) -> Result<serde_json::Value> {
        let req = self.request(GetRequest {
            r#ref: Some(r),
            ..Default::default()
        });
        self.call(|mut g| async move { g.get(req).await }).await
    }

    pub async fn list(&self, req: ListRequest) -> Result<serde_json::Value> {
        let req = self.request(req);
        self.call(|mut g| async move { g.list(req).await }).await
    }

    /// Opens a watch; the stream itself is bounded by the server's timeout,
    /// only opening it by the call deadline.
    pub async fn watch(&self, req: WatchRequest) -> Result<tonic::Streaming<WatchEvent>> {
        let req = self.request(req);
        let mut grpc = self.grpc.clone();
        let opened = tokio::time::timeout(self.timeout, grpc.watch(req))
            .await
            .map_err(|_| Error::Transport(format!("watch not opened within {:?}", self.timeout)))??;
        Ok(opened.into_inner())
    }

    pub async fn create(&self, r: ResourceRef, object: Vec<u8>) -> Result<serde_json::Value> {
        let req = self.request(CreateRequest {
            r#ref: Some(r),
            object,
            options: None,
        });
        self.call(|mut g| async move { g.create(req).await }).await
    }

    pub async fn update(&self, r: ResourceRef, object: Vec<u8>) -> Result<serde_json::Value> {
        let req = self.request(UpdateRequest {
            r#ref: Some(r),
            object,
            options: None,
        });
        self.call(|mut g| async move { g.update(req).await }).await
    }

    pub async fn patch(&self, req: PatchRequest) -> Result<serde_json::Value> {
        let req = self.request(req);
        self.call(|mut g| async move { g.patch(req).await }).await
    }

    pub async fn delete(&self, r: ResourceRef, options: Vec<u8>) -> Result<serde_json::Value> {
        let req = self.request(DeleteRequest {
            r#ref: Some(r),
            options,
        });
        self.call(|mut g| async move { g.delete(req).await }).await
    }
}
