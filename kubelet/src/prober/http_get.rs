//! The httpGet action of probes and hooks, through hyper: a GET whose
//! status from 200 to 399 is a success. HTTPS is not verified (a probe
//! checks liveness, not identity, and containers' certificates are rarely
//! signed for the pod IP), as upstream's prober does.

use std::sync::Arc;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// What one GET asks.
pub struct Request<'a> {
    pub https: bool,
    pub host: &'a str,
    pub port: u16,
    pub path: &'a str,
    pub headers: &'a [(String, String)],
}

/// Accepts any server certificate; still checks the handshake's
/// signatures, so the connection is TLS, just not authenticated.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn send<S>(stream: S, request: hyper::Request<Empty<Bytes>>) -> Result<u16, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    Ok(response.status().as_u16())
}

/// Runs the GET; `Ok` for 200–399.
pub async fn get(r: Request<'_>) -> Result<(), String> {
    let scheme = if r.https { "https" } else { "http" };
    let url = format!("{scheme}://{}:{}{}", r.host, r.port, r.path);
    let fail = |e: String| format!("Get \"{url}\": {e}");
    let mut builder = hyper::Request::get(r.path)
        .header("Host", format!("{}:{}", r.host, r.port))
        .header("User-Agent", "kube-probe/1.35")
        .header("Accept", "*/*")
        .header("Connection", "close");
    for (name, value) in r.headers {
        // A header the probe names replaces the default (Host included).
        if let Some(headers) = builder.headers_mut() {
            headers.remove(name.as_str());
        }
        builder = builder.header(name.as_str(), value.as_str());
    }
    let request = builder.body(Empty::<Bytes>::new()).map_err(|e| fail(e.to_string()))?;
    let tcp = tokio::net::TcpStream::connect((r.host, r.port))
        .await
        .map_err(|e| fail(e.to_string()))?;
    let code = if r.https {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| fail(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        let name = ServerName::try_from(r.host.to_string()).map_err(|e| fail(e.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| fail(e.to_string()))?;
        send(tls, request).await.map_err(fail)?
    } else {
        send(tcp, request).await.map_err(fail)?
    };
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A real TLS server with a self-signed certificate, answering 200 on
    /// /ok and 500 elsewhere.
    async fn https_server() -> u16 {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["somewhere.example".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 4096];
                    let n = tls.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    let status = if head.starts_with("GET /ok ") && head.contains("x-probe: yes") {
                        "200 OK"
                    } else {
                        "500 Internal Server Error"
                    };
                    let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    let _ = tls.write_all(reply.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn https_probes_skip_verification_and_judge_the_status() {
        let port = https_server().await;
        let headers = [("X-Probe".to_string(), "yes".to_string())];
        let request = |path| Request {
            https: true,
            host: "127.0.0.1",
            port,
            path,
            headers: &headers,
        };
        get(request("/ok")).await.unwrap();
        let err = get(request("/bad")).await.unwrap_err();
        assert!(err.contains("statuscode: 500"), "{err}");
        // Plain HTTP against a TLS port fails (and says where it went).
        let err = get(Request {
            https: false,
            ..request("/ok")
        })
        .await
        .unwrap_err();
        assert!(err.contains("127.0.0.1"), "{err}");
    }
}
