//! `pods/log`: a pod's container log, read from the kubelet of the pod's
//! node and streamed back, which is what `kubectl logs` (with `-f`,
//! `--tail`, `--since`, `--previous`, `--timestamps`) calls.
//!
//! The API server finds the node's address (its InternalIP) and kubelet
//! port (`status.daemonEndpoints.kubeletEndpoint.Port`) and calls the
//! kubelet's `/containerLogs` over mutual TLS with its kubelet-client
//! certificate (`--kubelet-client-certificate`), checking the kubelet's
//! serving certificate against the cluster CA under the node's name.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::request_info::RequestInfo;
use crate::rest::App;
use crate::status::ApiError;
use crate::verbs::Query;

type Result<T> = std::result::Result<T, ApiError>;

/// The query parameters passed on to the kubelet.
const FORWARDED: &[&str] = &[
    "follow",
    "previous",
    "timestamps",
    "tailLines",
    "sinceSeconds",
    "sinceTime",
    "limitBytes",
];

fn container_of(pod: &Value, query: &Query) -> Result<String> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let names: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(pod["spec"]["initContainers"].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    match query.get("container") {
        Some(c) if names.contains(&c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None if names.len() == 1 => Ok(names[0].to_string()),
        None => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            names.join(" ")
        ))),
    }
}

async fn get_json(app: &App, key: String) -> Result<Option<Value>> {
    match app.storage.get(key.as_bytes()).await {
        Ok(stored) => Ok(serde_json::from_slice(&stored.value).ok()),
        Err(crate::storage::StorageError::NotFound) => Ok(None),
        Err(e) => Err(ApiError::unavailable(e.to_string())),
    }
}

/// Streams the log of the container the request names.
pub async fn proxy(app: &App, info: &RequestInfo, query: &Query) -> Result<Response> {
    let namespace = info.namespace.clone().unwrap_or_default();
    let name = info.name.clone().unwrap_or_default();
    let pod = get_json(app, format!("/registry/pods/{namespace}/{name}"))
        .await?
        .ok_or_else(|| ApiError::not_found("pods", "", &name))?;
    let container = container_of(&pod, query)?;
    let Some(node_name) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    };
    let Some(tls) = app.kubelet_tls.clone() else {
        return Err(ApiError::unavailable(
            "this API server has no kubelet client certificate (--kubelet-client-certificate)",
        ));
    };
    let node = get_json(app, format!("/registry/minions/{node_name}"))
        .await?
        .ok_or_else(|| ApiError::not_found("nodes", "", node_name))?;
    let addresses = node["status"]["addresses"].as_array().cloned().unwrap_or_default();
    let address = addresses
        .iter()
        .find(|a| a["type"] == "InternalIP")
        .or_else(|| addresses.first())
        .and_then(|a| a["address"].as_str())
        .ok_or_else(|| ApiError::unavailable(format!("node {node_name} has no address")))?
        .to_string();
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .unwrap_or(10250);
    let port =
        u16::try_from(port).map_err(|_| ApiError::unavailable(format!("node {node_name} has kubelet port {port}")))?;
    let mut path = format!("/containerLogs/{namespace}/{name}/{container}");
    let params: Vec<String> = FORWARDED
        .iter()
        .filter_map(|k| {
            query.get(k).map(|v| {
                format!(
                    "{k}={}",
                    form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                )
            })
        })
        .collect();
    if !params.is_empty() {
        path = format!("{path}?{}", params.join("&"));
    }
    let unreachable = |e: String| {
        ApiError::unavailable(format!(
            "cannot reach the kubelet of node {node_name} at {address}:{port}: {e}"
        ))
    };
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect((address.as_str(), port)),
    )
    .await
    .map_err(|_| unreachable("timed out".into()))?
    .map_err(|e| unreachable(e.to_string()))?;
    let server_name =
        rustls::pki_types::ServerName::try_from(node_name.to_string()).map_err(|e| unreachable(e.to_string()))?;
    let handshake = tokio_rustls::TlsConnector::from(tls).connect(server_name, tcp);
    let stream = tokio::time::timeout(std::time::Duration::from_secs(10), handshake)
        .await
        .map_err(|_| unreachable("the TLS handshake timed out".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = Request::get(path)
        .header(header::HOST, node_name)
        .body(http_body_util::Empty::<axum::body::Bytes>::new())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    // The response head within 30 s; the body (a follow) may stream for ever.
    let response = tokio::time::timeout(std::time::Duration::from_secs(30), sender.send_request(request))
        .await
        .map_err(|_| unreachable("no response within 30s".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let status = response.status();
    let body = Body::new(response.into_body());
    if status != StatusCode::OK {
        let bytes = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
        let message = String::from_utf8_lossy(&bytes).trim().to_string();
        return Err(match status.as_u16() {
            400 => ApiError::bad_request(message),
            404 => ApiError::not_found("pods", "", &name),
            _ => ApiError::internal(format!("the kubelet answered {status}: {message}")),
        });
    }
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], body).into_response())
}

/// The kubelet client configuration from the flags.
pub fn kubelet_tls(
    config: &crate::config::Config,
) -> std::result::Result<Option<Arc<rustls::ClientConfig>>, common::tls::Error> {
    let (Some(cert), Some(key)) = (&config.kubelet_client_certificate, &config.kubelet_client_key) else {
        return Ok(None);
    };
    let ca = config
        .kubelet_certificate_authority
        .clone()
        .unwrap_or_else(|| config.client_ca_file.clone());
    let identity = common::tls::Identity::from_files(cert, key)?;
    let cas = common::tls::load_certs(&ca)?;
    Ok(Some(common::tls::client_config(&cas, Some(&identity), &[b"http/1.1"])?))
}
