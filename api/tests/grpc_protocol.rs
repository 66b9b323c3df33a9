//! The generated internal protocol carries Kubernetes JSON unchanged: a Pod
//! serialised with k8s-openapi survives a real gRPC round trip through the
//! generated client and server, and errors carry a metav1.Status in their
//! details as the protocol documents. (The real server is the API server;
//! this checks only the generated code and the framing.)

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

use std::time::Duration;

use api::k8s::api::core::v1::Pod;
use api::proto::resources_client::ResourcesClient;
use api::proto::resources_server::{Resources, ResourcesServer};
use api::proto::*;
use tokio_stream::wrappers::TcpListenerStream;

/// Returns the object of a Create as it arrived; refuses the rest.
struct Echo;

type WatchStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<WatchEvent, tonic::Status>> + Send>>;

fn unimplemented(verb: &str) -> tonic::Status {
    tonic::Status::unimplemented(verb.to_string())
}

#[tonic::async_trait]
impl Resources for Echo {
    type WatchStream = WatchStream;
    async fn get(&self, _: tonic::Request<GetRequest>) -> Result<tonic::Response<Object>, tonic::Status> {
        let status = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#;
        Err(tonic::Status::with_details(
            tonic::Code::NotFound,
            "pods \"x\" not found",
            status.to_vec().into(),
        ))
    }
    async fn list(&self, _: tonic::Request<ListRequest>) -> Result<tonic::Response<Object>, tonic::Status> {
        Err(unimplemented("list"))
    }
    async fn watch(&self, _: tonic::Request<WatchRequest>) -> Result<tonic::Response<WatchStream>, tonic::Status> {
        Err(unimplemented("watch"))
    }
    async fn create(&self, r: tonic::Request<CreateRequest>) -> Result<tonic::Response<Object>, tonic::Status> {
        Ok(tonic::Response::new(Object {
            json: r.into_inner().object,
        }))
    }
    async fn update(&self, _: tonic::Request<UpdateRequest>) -> Result<tonic::Response<Object>, tonic::Status> {
        Err(unimplemented("update"))
    }
    async fn patch(&self, _: tonic::Request<PatchRequest>) -> Result<tonic::Response<Object>, tonic::Status> {
        Err(unimplemented("patch"))
    }
    async fn delete(&self, _: tonic::Request<DeleteRequest>) -> Result<tonic::Response<Object>, tonic::Status> {
        Err(unimplemented("delete"))
    }
}

#[tokio::test]
async fn kubernetes_json_round_trips_through_the_generated_service() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ResourcesServer::new(Echo))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let mut client = ResourcesClient::new(channel);

    let pod: Pod = serde_json::from_str(
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"default"},
            "spec":{"containers":[{"name":"c","image":"busybox","command":["sleep","3600"]}]}}"#,
    )
    .unwrap();
    let json = serde_json::to_vec(&pod).unwrap();
    let request = CreateRequest {
        r#ref: Some(ResourceRef {
            version: "v1".into(),
            resource: "pods".into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        object: json.clone(),
        options: None,
    };
    let reply = tokio::time::timeout(Duration::from_secs(10), client.create(request))
        .await
        .expect("reply within 10s")
        .unwrap()
        .into_inner();
    assert_eq!(reply.json, json);
    let back: Pod = serde_json::from_slice(&reply.json).unwrap();
    assert_eq!(back, pod);

    let err = tokio::time::timeout(Duration::from_secs(10), client.get(GetRequest::default()))
        .await
        .expect("reply within 10s")
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let status: serde_json::Value = serde_json::from_slice(err.details()).unwrap();
    assert_eq!(status["code"], 404);
}
