//! Prometheus metrics: one registry per process and the `/metrics` endpoint.
//!
//! Each component registers its metrics (under the upstream Kubernetes and
//! etcd names, so existing dashboards work) in the registry made by
//! [`registry`] and serves it with [`serve`] on its metrics port. The same
//! small HTTP server answers `/healthz`, which says only that the process is
//! alive and serving; readiness is each component's own business.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The content type of the Prometheus text exposition format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A registry with the standard process metrics (`process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, `process_open_fds`, …) already in it.
pub fn registry() -> Registry {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    {
        let collector = prometheus::process_collector::ProcessCollector::for_self();
        if let Err(e) = registry.register(Box::new(collector)) {
            tracing::warn!(error = %e, "process metrics unavailable");
        }
    }
    registry
}

/// The registry's metrics in the text exposition format.
pub fn encode(registry: &Registry) -> String {
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut buf) {
        tracing::error!(error = %e, "cannot encode metrics");
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// A component's own routes on the metrics port (etcd's `/health`, say):
/// given a GET path, `Some((status, content type, body))` to answer it.
pub type ExtraRoutes = Arc<dyn Fn(&str) -> Option<(StatusCode, &'static str, String)> + Send + Sync>;

/// Serves `GET /metrics` and `GET /healthz` on `listener` (plain HTTP/1.1)
/// until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, registry: Registry, shutdown: CancellationToken) {
    serve_with(listener, registry, None, shutdown).await
}

/// [`serve`], with a component's `extra` routes consulted first.
pub async fn serve_with(
    listener: TcpListener,
    registry: Registry,
    extra: Option<ExtraRoutes>,
    shutdown: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let registry = registry.clone();
        let extra = extra.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let registry = registry.clone();
                let extra = extra.clone();
                async move {
                    let custom = match (req.method(), &extra) {
                        (&Method::GET, Some(extra)) => extra(req.uri().path()),
                        _ => None,
                    };
                    Ok::<_, Infallible>(match custom {
                        Some((status, content_type, body)) => response(status, content_type, body),
                        None => respond(req.method(), req.uri().path(), &registry),
                    })
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "metrics connection ended with an error");
            }
        });
    }
}

fn respond(method: &Method, path: &str, registry: &Registry) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (method, path) {
        (&Method::GET, "/metrics") => (StatusCode::OK, TEXT_CONTENT_TYPE, encode(registry)),
        (&Method::GET, "/healthz") => (StatusCode::OK, "text/plain", "ok".to_string()),
        (_, "/metrics" | "/healthz") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET is allowed\n".to_string(),
        ),
        _ => (StatusCode::NOT_FOUND, "text/plain", format!("{path} not found\n")),
    };
    response(status, content_type, body)
}

fn response(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(http::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_paths_and_methods_are_refused() {
        let r = registry();
        assert_eq!(respond(&Method::GET, "/nope", &r).status(), StatusCode::NOT_FOUND);
        assert_eq!(
            respond(&Method::POST, "/metrics", &r).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(respond(&Method::GET, "/healthz", &r).status(), StatusCode::OK);
    }

    #[test]
    fn registry_has_process_metrics_on_linux() {
        let text = encode(&registry());
        if cfg!(target_os = "linux") {
            assert!(text.contains("process_resident_memory_bytes"), "{text}");
        }
    }
}
