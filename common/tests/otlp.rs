//! Spans reach a real OTLP/gRPC receiver, and a gRPC call carries the
//! caller's trace context to the server, whose span joins the same trace.
//!
//! The receiver is the OTLP TraceService from opentelemetry-proto, started
//! by the test on a loopback port. One test per binary, because it installs
//! the global subscriber.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::trace::v1::Span;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Default, Clone)]
struct Receiver {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push((service.clone(), span));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_receiver_and_context_crosses_grpc() {
    // The receiver (plain HTTP/2 on loopback, as a local collector would be).
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp_addr = listener.local_addr().unwrap();
    let svc = TraceServiceServer::new(receiver.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let provider = common::telemetry::otlp_provider("otlp-test", &format!("http://{otlp_addr}")).unwrap();
    let subscriber = tracing_subscriber::registry().with(common::telemetry::layer(&provider));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    // A traced gRPC server (health service behind ServerTraceLayer) on plain
    // HTTP/2: the trace context is metadata, independent of TLS.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_addr = listener.local_addr().unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(common::trace_context::ServerTraceLayer)
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc_addr}"))
        .unwrap()
        .connect_lazy();
    let mut client = HealthClient::with_interceptor(channel, common::trace_context::InjectContext);
    let caller = tracing::info_span!("caller-operation");
    async {
        tokio::time::timeout(Duration::from_secs(10), client.check(HealthCheckRequest::default()))
            .await
            .expect("health check within 10s")
            .expect("health check succeeds");
    }
    .instrument(caller)
    .await;

    let flushed = tokio::task::spawn_blocking(move || provider.force_flush());
    tokio::time::timeout(Duration::from_secs(20), flushed)
        .await
        .expect("flush within 20s")
        .unwrap()
        .expect("flush succeeds");

    let spans = receiver.spans.lock().unwrap().clone();
    let caller = spans
        .iter()
        .find(|(_, s)| s.name == "caller-operation")
        .unwrap_or_else(|| {
            panic!(
                "caller span not exported; got {:?}",
                spans.iter().map(|s| &s.1.name).collect::<Vec<_>>()
            )
        });
    assert!(
        caller.0.contains("otlp-test"),
        "service.name resource attribute: {}",
        caller.0
    );
    let server = spans
        .iter()
        .find(|(_, s)| s.name == "/grpc.health.v1.Health/Check")
        .unwrap_or_else(|| {
            panic!(
                "server span not exported; got {:?}",
                spans.iter().map(|s| &s.1.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(
        server.1.trace_id, caller.1.trace_id,
        "server span joins the caller's trace"
    );
    assert_eq!(
        server.1.parent_span_id, caller.1.span_id,
        "server span's parent is the caller's span"
    );
}
