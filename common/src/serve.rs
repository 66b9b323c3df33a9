//! One port, two protocols: gRPC and HTTP/1.1 served side by side.
//!
//! etcd answers its JSON gateway and its gRPC API on the client port, and
//! the Kubernetes API server answers kubectl's REST calls and components'
//! gRPC calls on 6443. Both come down to one router (an `axum::Router`
//! holding the tonic services next to plain HTTP routes) served by hyper's
//! automatic HTTP/1.1-or-HTTP/2 connection builder, on connections from
//! [`grpc::incoming`](crate::grpc::incoming) (TLS, with the peer's
//! certificates in each request's extensions) or from plain TCP.

use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

/// ALPN protocols for a port that speaks both: HTTP/2 preferred.
pub const ALPN_BOTH: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Concurrent HTTP/2 streams (requests, watches) per connection.
pub const MAX_STREAMS: u32 = 1000;

/// How long open connections get to finish after shutdown begins.
pub const DRAIN: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` with TLS until `shutdown`; each request
/// carries the connection's [`PeerInfo`](crate::grpc::PeerInfo) as an extension.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    router: axum::Router,
    shutdown: CancellationToken,
) {
    let mut incoming = crate::grpc::incoming(listener, tls, shutdown.clone());
    let graceful = GracefulShutdown::new();
    loop {
        let conn = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = incoming.next() => match next {
                Some(Ok(conn)) => conn,
                Some(Err(_)) => continue,
                None => break,
            },
        };
        let peer = conn.peer().clone();
        let service = router.clone().layer(axum::Extension(peer));
        serve_connection(conn, service, &graceful);
    }
    drain(graceful).await;
}

/// Serves `router` on `listener` over plain TCP until `shutdown`.
pub async fn serve_plain(listener: TcpListener, router: axum::Router, shutdown: CancellationToken) {
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        serve_connection(stream, router.clone(), &graceful);
    }
    drain(graceful).await;
}

fn serve_connection<IO>(io: IO, router: axum::Router, graceful: &GracefulShutdown)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Watches are long-lived streams; kube-apiserver allows 1000 per
    // HTTP/2 connection (--http2-max-streams-per-connection), hyper 200.
    builder.http2().max_concurrent_streams(MAX_STREAMS);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let conn = graceful.watch(conn.into_owned());
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    });
}

async fn drain(graceful: GracefulShutdown) {
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::debug!("connections still open after the drain period");
    }
}
