//! etcd's JSON gateway on the client port: `POST /v3/kv/put` and friends,
//! for clients that speak HTTP and JSON instead of gRPC (curl, scripts).
//!
//! Each route decodes the JSON body into the etcd request ([`json`]),
//! calls the same service implementation the gRPC API uses, and encodes
//! the answer as etcd's gateway does. Errors come back as
//! `{"error": …, "code": <gRPC code>, "message": …}` with the HTTP status
//! grpc-gateway gives that code. `/v3/watch` streams one
//! `{"result": WatchResponse}` object per line. The cluster, maintenance,
//! lock and election routes are in `routes.rs`.

pub mod json;
mod routes;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use etcd_client::proto::*;
use serde_json::{json, Value};
use tokio_stream::StreamExt;
use tonic::Request;

use crate::node::Node;
use crate::server::{cluster::ClusterService, kv::KvService, lease::LeaseService};
use crate::server::{maintenance::MaintenanceService, watch};
use json::In;

/// The gateway's routes, to merge with the gRPC services on the client
/// port. Bodies may be `limit` bytes before base64 (a third more after), so
/// that a request just over `--max-request-bytes` gets etcd's error from
/// the size check rather than a bare 413.
pub fn router(node: Arc<Node>, limit: usize) -> axum::Router {
    let router: axum::Router<Arc<Node>> = axum::Router::new()
        .route("/v3/kv/range", post(range))
        .route("/v3/kv/put", post(put))
        .route("/v3/kv/deleterange", post(delete_range))
        .route("/v3/kv/txn", post(txn))
        .route("/v3/kv/compaction", post(compaction))
        .route("/v3/lease/grant", post(lease_grant))
        .route("/v3/lease/revoke", post(lease_revoke))
        .route("/v3/kv/lease/revoke", post(lease_revoke))
        .route("/v3/lease/timetolive", post(lease_time_to_live))
        .route("/v3/kv/lease/timetolive", post(lease_time_to_live))
        .route("/v3/lease/leases", post(lease_leases))
        .route("/v3/kv/lease/leases", post(lease_leases))
        .route("/v3/lease/keepalive", post(lease_keep_alive))
        .route("/v3/maintenance/status", post(status))
        .route("/v3/cluster/member/list", post(member_list))
        .route("/v3/watch", post(watch_stream));
    routes::add(router)
        .layer(axum::extract::DefaultBodyLimit::max(limit / 3 * 4 + 64 * 1024))
        .with_state(node)
}

/// An error as etcd's gateway writes it.
fn error(code: tonic::Code, message: &str) -> Response {
    let status = match code {
        tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition | tonic::Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::AlreadyExists | tonic::Code::Aborted => StatusCode::CONFLICT,
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        tonic::Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        tonic::Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = json!({"error": message, "code": code as i32, "message": message});
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn ok(value: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// Parses the body as a JSON object (an empty body is `{}`); the error
/// is the message for a 400.
fn body(bytes: &Bytes) -> Result<Value, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("malformed JSON body: {e}"))?;
    if !value.is_object() {
        return Err("the request body must be a JSON object".into());
    }
    Ok(value)
}

/// Runs `decode`, then `call`, then `encode`, mapping each failure.
async fn handle<Req, Resp, Fut>(
    bytes: Bytes,
    decode: impl FnOnce(&In<'_>) -> Result<Req, String>,
    call: impl FnOnce(Req) -> Fut,
    encode: impl FnOnce(&Resp) -> Value,
) -> Response
where
    Fut: std::future::Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
{
    let value = match body(&bytes) {
        Ok(v) => v,
        Err(message) => return error(tonic::Code::InvalidArgument, &message),
    };
    let request = match decode(&In(&value)) {
        Ok(r) => r,
        Err(message) => return error(tonic::Code::InvalidArgument, &message),
    };
    match call(request).await {
        Ok(resp) => ok(encode(resp.get_ref())),
        Err(status) => error(status.code(), status.message()),
    }
}

async fn range(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = KvService { node };
    handle(
        bytes,
        json::range_request,
        |r| async move { svc.range(Request::new(r)).await },
        json::range_response,
    )
    .await
}

async fn put(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = KvService { node };
    handle(
        bytes,
        json::put_request,
        |r| async move { svc.put(Request::new(r)).await },
        json::put_response,
    )
    .await
}

async fn delete_range(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = KvService { node };
    handle(
        bytes,
        json::delete_request,
        |r| async move { svc.delete_range(Request::new(r)).await },
        json::delete_response,
    )
    .await
}

async fn txn(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = KvService { node };
    handle(
        bytes,
        json::txn_request,
        |r| async move { svc.txn(Request::new(r)).await },
        json::txn_response,
    )
    .await
}

async fn compaction(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = KvService { node };
    handle(
        bytes,
        |i| {
            Ok(PbCompactionRequest {
                revision: i.int("revision")?,
                physical: i.boolean("physical")?,
            })
        },
        |r| async move { svc.compact(Request::new(r)).await },
        |r: &PbCompactionResponse| json::Out::default().value("header", json::header(&r.header)).done(),
    )
    .await
}

async fn lease_grant(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = LeaseService::new(node);
    handle(
        bytes,
        |i| {
            Ok(PbLeaseGrantRequest {
                ttl: i.int("TTL")?,
                id: i.int("ID")?,
            })
        },
        |r| async move { svc.lease_grant(Request::new(r)).await },
        |r: &PbLeaseGrantResponse| {
            json::Out::default()
                .value("header", json::header(&r.header))
                .int("ID", r.id)
                .int("TTL", r.ttl)
                .string("error", &r.error)
                .done()
        },
    )
    .await
}

async fn lease_revoke(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = LeaseService::new(node);
    handle(
        bytes,
        |i| Ok(PbLeaseRevokeRequest { id: i.int("ID")? }),
        |r| async move { svc.lease_revoke(Request::new(r)).await },
        |r: &PbLeaseRevokeResponse| json::Out::default().value("header", json::header(&r.header)).done(),
    )
    .await
}

async fn lease_time_to_live(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = LeaseService::new(node);
    handle(
        bytes,
        |i| {
            Ok(PbLeaseTimeToLiveRequest {
                id: i.int("ID")?,
                keys: i.boolean("keys")?,
            })
        },
        |r| async move { svc.lease_time_to_live(Request::new(r)).await },
        |r: &PbLeaseTimeToLiveResponse| {
            let keys = r
                .keys
                .iter()
                .map(|k| json::Out::default().bytes("k", k).done()["k"].clone())
                .collect();
            json::Out::default()
                .value("header", json::header(&r.header))
                .int("ID", r.id)
                .int("TTL", r.ttl)
                .int("grantedTTL", r.granted_ttl)
                .list("keys", keys)
                .done()
        },
    )
    .await
}

async fn lease_leases(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = LeaseService::new(node);
    handle(
        bytes,
        |_| Ok(PbLeaseLeasesRequest {}),
        |r| async move { svc.lease_leases(Request::new(r)).await },
        |r: &PbLeaseLeasesResponse| {
            let leases = r
                .leases
                .iter()
                .map(|l| json::Out::default().int("ID", l.id).done())
                .collect();
            json::Out::default()
                .value("header", json::header(&r.header))
                .list("leases", leases)
                .done()
        },
    )
    .await
}

/// One keep-alive per request (the gateway has no client stream).
async fn lease_keep_alive(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let value = match body(&bytes) {
        Ok(v) => v,
        Err(message) => return error(tonic::Code::InvalidArgument, &message),
    };
    let id = match In(&value).int("ID") {
        Ok(id) => id,
        Err(message) => return error(tonic::Code::InvalidArgument, &message),
    };
    match crate::lessor::query(&node, id, true).await {
        Ok(answer) => ok(json!({"result": json::Out::default()
            .value("header", json::header(&Some(node.header(node.revision()))))
            .int("ID", id)
            .int("TTL", if answer.remaining < 0 { 0 } else { answer.granted_ttl })
            .done()})),
        Err(e) => error(e.code(), &e.to_string()),
    }
}

async fn status(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = MaintenanceService { node };
    handle(
        bytes,
        |_| Ok(PbStatusRequest {}),
        |r| async move { svc.status(Request::new(r)).await },
        |r: &PbStatusResponse| {
            json::Out::default()
                .value("header", json::header(&r.header))
                .string("version", &r.version)
                .int("dbSize", r.db_size)
                .uint("leader", r.leader)
                .uint("raftIndex", r.raft_index)
                .uint("raftTerm", r.raft_term)
                .uint("raftAppliedIndex", r.raft_applied_index)
                .list("errors", r.errors.iter().map(|e| Value::String(e.clone())).collect())
                .int("dbSizeInUse", r.db_size_in_use)
                .boolean("isLearner", r.is_learner)
                .done()
        },
    )
    .await
}

async fn member_list(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let svc = ClusterService { node };
    handle(
        bytes,
        |i| {
            Ok(PbMemberListRequest {
                linearizable: i.boolean("linearizable")?,
            })
        },
        |r| async move { svc.member_list(Request::new(r)).await },
        |r: &PbMemberListResponse| json::members(&r.header, &r.members),
    )
    .await
}

/// `POST /v3/watch` with `{"create_request": {...}}`: a stream of results.
async fn watch_stream(State(node): State<Arc<Node>>, bytes: Bytes) -> Response {
    let value = match body(&bytes) {
        Ok(v) => v,
        Err(message) => return error(tonic::Code::InvalidArgument, &message),
    };
    let Some(create) = In(&value).child("create_request") else {
        return error(tonic::Code::InvalidArgument, "the body must hold a create_request");
    };
    let spec = match watch::Spec::from_json(&create) {
        Ok(spec) => spec,
        Err(message) => return error(tonic::Code::InvalidArgument, &message),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let cancel = tokio_util::sync::CancellationToken::new();
    let (delivered, _) = tokio::sync::watch::channel(0);
    let registered = spec.register(&node);
    let (to_watcher, watcher_cancel) = (tx.clone(), cancel.clone());
    tokio::spawn(async move {
        if to_watcher.send(Ok(registered.created.clone())).await.is_ok() {
            watch::run_watcher(node, spec, registered, to_watcher, watcher_cancel, delivered).await;
        }
    });
    let guard = cancel.drop_guard();
    let lines = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |item| {
        let _keep = &guard;
        let line = match item {
            Ok(resp) => json!({"result": json::watch_response(&resp)}),
            Err(status) => json!({"error": {"code": status.code() as i32, "message": status.message()}}),
        };
        Ok::<_, std::convert::Infallible>(Bytes::from(format!("{line}\n")))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(lines),
    )
        .into_response()
}
