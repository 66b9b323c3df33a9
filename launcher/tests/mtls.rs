//! Certificates from `kubernate pki init` used the way components will use
//! them: a gRPC server built with `common::grpc` over `common::tls`, and
//! clients that present (or fail to present) the right identity.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::grpc::{self, PeerInfo, ALPN_H2};
use common::tls::{self, ClientAuth, Identity};
use tokio_util::sync::CancellationToken;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

fn pki(dir: &Path) {
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_kubernate"))
        .args(["pki", "init", "--dir", dir.to_str().unwrap(), "--nodes", "n1"])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The CN of the client certificate each request arrived with.
type Seen = Arc<Mutex<Vec<String>>>;

async fn start_server(dir: &Path, seen: Seen) -> (std::net::SocketAddr, CancellationToken) {
    let server_tls = tls::ServerFiles {
        cert: dir.join("apiserver.crt"),
        key: dir.join("apiserver.key"),
        client_ca: dir.join("ca.crt"),
    }
    .load(ClientAuth::Required, &[ALPN_H2])
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let record = move |req: tonic::Request<()>| {
        let peer = PeerInfo::of(&req).ok_or_else(|| tonic::Status::unauthenticated("no peer info"))?;
        // The shared code reads the certificate's subject (CN = user).
        let subject = peer
            .subject()
            .ok_or_else(|| tonic::Status::unauthenticated("no cert"))?;
        seen.lock().unwrap().push(subject.common_name);
        Ok(req)
    };
    let router = tonic::transport::Server::builder()
        .layer(common::trace_context::ServerTraceLayer)
        .add_service(tonic_health::pb::health_server::HealthServer::with_interceptor(
            tonic_health::server::HealthService::from_health_reporter(tonic_health::server::HealthReporter::new()),
            record,
        ));
    let incoming = grpc::incoming(listener, server_tls, shutdown.clone());
    let stop = shutdown.clone();
    tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            .await
    });
    (addr, shutdown)
}

async fn check(addr: std::net::SocketAddr, host: &str, client: Arc<rustls::ClientConfig>) -> Result<(), String> {
    let channel = grpc::channel(&format!("https://{host}:{}", addr.port()), client).map_err(|e| e.to_string())?;
    let mut health = HealthClient::with_interceptor(channel, common::trace_context::InjectContext);
    let call = health.check(HealthCheckRequest { service: String::new() });
    match tokio::time::timeout(Duration::from_secs(10), call).await {
        Err(_) => Err("timed out".into()),
        Ok(Err(status)) => Err(format!("{status}")),
        Ok(Ok(_)) => Ok(()),
    }
}

fn client(dir: &Path, ca: &str, identity: Option<&str>) -> Arc<rustls::ClientConfig> {
    let cas = tls::load_certs(&dir.join(ca)).unwrap();
    let id = identity
        .map(|base| Identity::from_files(&dir.join(format!("{base}.crt")), &dir.join(format!("{base}.key"))).unwrap());
    tls::client_config(&cas, id.as_ref(), &[ALPN_H2]).unwrap()
}

#[tokio::test]
async fn mutual_tls_accepts_cluster_identities_and_rejects_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let other = tmp.path().join("other");
    pki(&dir);
    pki(&other);
    let seen: Seen = Arc::default();
    let (addr, shutdown) = start_server(&dir, seen.clone()).await;

    // A client certificate from the cluster CA is accepted, and the server
    // sees who it is; the server's name checks out for 127.0.0.1 and localhost.
    check(addr, "127.0.0.1", client(&dir, "ca.crt", Some("admin")))
        .await
        .unwrap();
    check(addr, "localhost", client(&dir, "ca.crt", Some("nodes/n1")))
        .await
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec!["admin".to_string(), "system:node:n1".to_string()]
    );

    // No client certificate: refused.
    let err = check(addr, "127.0.0.1", client(&dir, "ca.crt", None))
        .await
        .unwrap_err();
    assert!(!err.is_empty());
    // A client certificate from another cluster's CA: refused.
    check(addr, "127.0.0.1", client(&other, "ca.crt", Some("admin")))
        .await
        .expect_err("foreign CA must be refused");
    let foreign = {
        let cas = tls::load_certs(&dir.join("ca.crt")).unwrap();
        let id = Identity::from_files(&other.join("admin.crt"), &other.join("admin.key")).unwrap();
        tls::client_config(&cas, Some(&id), &[ALPN_H2]).unwrap()
    };
    check(addr, "127.0.0.1", foreign)
        .await
        .expect_err("client cert from another CA must be refused");
    // A store-CA client certificate is not a cluster identity either.
    let store_client = {
        let cas = tls::load_certs(&dir.join("ca.crt")).unwrap();
        let id = Identity::from_files(
            &dir.join("apiserver-store-client.crt"),
            &dir.join("apiserver-store-client.key"),
        )
        .unwrap();
        tls::client_config(&cas, Some(&id), &[ALPN_H2]).unwrap()
    };
    check(addr, "127.0.0.1", store_client)
        .await
        .expect_err("store CA client must be refused");
    // A client that trusts a different CA refuses the server.
    check(addr, "127.0.0.1", client(&other, "ca.crt", None))
        .await
        .expect_err("server from an untrusted CA must be refused");
    // Nothing refused reached the service.
    assert_eq!(seen.lock().unwrap().len(), 2);

    // The server keeps serving after refusing handshakes.
    check(addr, "127.0.0.1", client(&dir, "ca.crt", Some("scheduler")))
        .await
        .unwrap();
    shutdown.cancel();
}
