//! The grpc action of probes: the gRPC health-checking protocol's Check
//! (grpc.health.v1), in plain text as upstream probes it; SERVING is a
//! success.

/// Asks `service` ("" for the whole server) on host:port.
pub async fn check(host: &str, port: u16, service: String) -> Result<(), String> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let target = format!("http://{host}:{port}");
    let channel = tonic::transport::Endpoint::from_shared(target.clone())
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("failed to connect service {target:?}: {e}"))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest { service })
        .await
        .map_err(|e| format!("health rpc failed: {}", e.message()))?;
    match response.into_inner().status() {
        ServingStatus::Serving => Ok(()),
        other => Err(format!("service unhealthy (responded with {:?})", other.as_str_name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn grpc_probes_ask_the_health_service() {
        use tonic_health::pb::health_check_response::ServingStatus;
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("ready", tonic_health::ServingStatus::Serving)
            .await;
        reporter
            .set_service_status("sick", tonic_health::ServingStatus::NotServing)
            .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        check("127.0.0.1", port, "ready".into()).await.unwrap();
        let err = check("127.0.0.1", port, "sick".into()).await.unwrap_err();
        assert!(err.contains(ServingStatus::NotServing.as_str_name()), "{err}");
    }
}
