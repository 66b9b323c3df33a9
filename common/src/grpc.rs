//! gRPC over mutual TLS, with tonic.
//!
//! tonic can terminate TLS itself, but then the TLS settings are tonic's and
//! the peer certificate is only reachable through tonic's own types. Here the
//! TLS handshake is ours: [`incoming`] accepts TCP connections, completes the
//! rustls handshake with a [`tls::server_config`](crate::tls::server_config)
//! and hands tonic (or hyper, for the REST API) finished streams, each
//! carrying a [`PeerInfo`] that every request sees in its extensions. The
//! authenticator reads the client certificate from there. On the client side
//! [`channel`] dials with a [`tls::client_config`](crate::tls::client_config)
//! through a custom connector, so both ends use the same rustls settings.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint, Uri};

/// The ALPN protocol id gRPC runs on.
pub const ALPN_H2: &[u8] = b"h2";

/// How long a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client waits for a TCP connection and TLS handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of the client side.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint is not an `https://host:port` URI.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
}

/// Who is on the other end of a served connection. tonic puts a copy into
/// the extensions of every request on that connection.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub remote_addr: SocketAddr,
    /// The client's certificate chain, leaf first; empty when the client
    /// presented none (only possible with `ClientAuth::Optional`).
    pub certificates: Arc<Vec<CertificateDer<'static>>>,
}

impl PeerInfo {
    /// The peer of the connection a request arrived on.
    pub fn of<T>(request: &tonic::Request<T>) -> Option<&PeerInfo> {
        request.extensions().get::<PeerInfo>()
    }

    /// The client certificate's subject as Kubernetes reads it: the common
    /// name (the user) and the organisations (the groups). `None` without a
    /// client certificate. The TLS handshake has already verified the chain.
    pub fn subject(&self) -> Option<Subject> {
        let leaf = self.certificates.first()?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
        let subject = cert.subject();
        let common_name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
        let organizations = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_string))
            .collect();
        Some(Subject {
            common_name,
            organizations,
        })
    }
}

/// The identity in a client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// CN: the user name.
    pub common_name: String,
    /// O: the groups.
    pub organizations: Vec<String>,
}

/// A server-side TLS connection whose handshake has completed.
pub struct TlsConnection {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    peer: PeerInfo,
}

impl TlsConnection {
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }
}

impl Connected for TlsConnection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.peer.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Accepts connections on `listener` and completes their TLS handshakes
/// concurrently, yielding the ones that succeed. A failed handshake (no
/// client certificate, one from an unknown CA, a plain-text client) is
/// logged and dropped; it never stops the server. The stream ends when
/// `shutdown` is cancelled.
///
/// Feed it to `tonic::transport::Server::serve_with_incoming_shutdown`.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    shutdown: CancellationToken,
) -> ReceiverStream<Result<TlsConnection, io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, remote_addr) = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Usually out of file descriptors: back off briefly.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let certificates = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                            .unwrap_or_default();
                        let peer = PeerInfo {
                            remote_addr,
                            certificates: Arc::new(certificates),
                        };
                        let _ = tx.send(Ok(TlsConnection { stream, peer })).await;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%remote_addr, error = %e, "TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(%remote_addr, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// A lazily connecting channel to `endpoint` (`https://host:port`) that
/// dials with `tls`. The first call connects; a broken connection is
/// re-dialled on the next call.
pub fn channel(endpoint: &str, tls: Arc<ClientConfig>) -> Result<Channel, Error> {
    let bad = |reason: &str| Error::Endpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let uri: Uri = endpoint
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    if uri.scheme_str() != Some("https") {
        return Err(bad("the scheme must be https"));
    }
    if uri.host().is_none() {
        return Err(bad("no host"));
    }
    let connector = TlsConnector { config: tls };
    Ok(Endpoint::from(uri)
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .connect_with_connector_lazy(connector))
}

/// The tower service tonic calls to open a connection: TCP, then rustls.
#[derive(Clone)]
struct TlsConnector {
    config: Arc<ClientConfig>,
}

impl tower::Service<Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let config = self.config.clone();
        Box::pin(async move {
            let invalid = |msg: &str| io::Error::new(io::ErrorKind::InvalidInput, msg.to_string());
            let host = uri.host().ok_or_else(|| invalid("endpoint has no host"))?;
            let port = uri.port_u16().unwrap_or(443);
            // An IPv6 literal arrives bracketed; the name to verify is bare.
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let name = ServerName::try_from(bare.to_string())
                .map_err(|_| invalid("endpoint host is not a valid DNS name or IP address"))?;
            let tcp = TcpStream::connect((bare, port)).await?;
            let _ = tcp.set_nodelay(true);
            let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_client_config() -> Arc<ClientConfig> {
        crate::tls::client_config(&[], None, &[ALPN_H2]).unwrap()
    }

    #[tokio::test]
    async fn channel_rejects_plain_http_and_garbage() {
        let err = channel("http://127.0.0.1:6443", empty_client_config()).unwrap_err();
        assert!(err.to_string().contains("scheme must be https"), "{err}");
        assert!(channel("not a uri", empty_client_config()).is_err());
    }
}
