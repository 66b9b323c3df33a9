//! The kubelet's own API on port 10250, over TLS with its serving
//! certificate: `/containerLogs/{namespace}/{pod}/{container}` (what the
//! API server's `pods/log` proxies to, so `kubectl logs` works) and
//! `/healthz`.
//!
//! Clients must present a certificate from the cluster CA; what they may
//! do the API server decides ([`delegated_auth`](crate::delegated_auth)).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use common::grpc::PeerInfo;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};

use crate::runtime::{Runtime, State as Run};
use crate::Kubelet;

fn text(code: StatusCode, message: impl Into<String>) -> Response {
    (code, message.into()).into_response()
}

/// One CRI log line: (time, tag, message). The tag is `F` for a whole
/// line, `P` for a piece of a longer one.
fn parse_line(line: &str) -> Option<(&str, &str, &str)> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let _stream = parts.next()?;
    let tag = parts.next()?;
    Some((time, tag, parts.next().unwrap_or("")))
}

fn since_ok(time: &str, since: Option<i64>) -> bool {
    let Some(since) = since else { return true };
    time.parse::<k8s_openapi::jiff::Timestamp>()
        .is_ok_and(|t| t.as_second() >= since)
}

fn render(line: &str, timestamps: bool) -> Option<String> {
    let (time, tag, message) = parse_line(line)?;
    // A partial piece continues on the next entry: no newline after it.
    let end = if tag == "P" { "" } else { "\n" };
    Some(if timestamps {
        format!("{time} {message}{end}")
    } else {
        format!("{message}{end}")
    })
}

async fn logs<R: Runtime>(
    State(kubelet): State<Arc<Kubelet<R>>>,
    Extension(peer): Extension<PeerInfo>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    uri: axum::http::Uri,
) -> Response {
    let query: HashMap<String, String> = form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    if let Some(refusal) = denied(&kubelet, &peer, "proxy").await {
        return refusal;
    }
    let Some(found) = kubelet.pods.indexer().get(&format!("{namespace}/{pod}")) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod {namespace}/{pod} not found on this node"),
        );
    };
    let uid = found.metadata.uid.clone().unwrap_or_default();
    let mut attempts: Vec<_> = kubelet
        .runtime
        .list_containers()
        .into_iter()
        .filter(|c| c.config.pod_uid == uid && c.config.name == container)
        .collect();
    attempts.sort_by_key(|c| std::cmp::Reverse(c.config.attempt));
    let previous = query.get("previous").is_some_and(|v| v == "true");
    let chosen = if previous { attempts.get(1) } else { attempts.first() };
    let Some(chosen) = chosen.cloned() else {
        let message = if previous {
            format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
        } else {
            format!("container \"{container}\" in pod \"{pod}\" is waiting to start")
        };
        return text(StatusCode::BAD_REQUEST, message);
    };
    let follow = query.get("follow").is_some_and(|v| v == "true") && matches!(chosen.state, Run::Running { .. });
    let timestamps = query.get("timestamps").is_some_and(|v| v == "true");
    let tail: Option<usize> = query.get("tailLines").and_then(|v| v.parse().ok());
    let since: Option<i64> = query
        .get("sinceSeconds")
        .and_then(|v| v.parse::<i64>().ok())
        .map(|s| crate::runtime::shim::now_seconds() - s)
        .or_else(|| {
            query
                .get("sinceTime")
                .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
                .map(|t| t.as_second())
        });
    let limit: Option<usize> = query.get("limitBytes").and_then(|v| v.parse().ok());
    let content = std::fs::read_to_string(&chosen.log_path).unwrap_or_default();
    let mut lines: Vec<String> = content
        .lines()
        .filter(|l| parse_line(l).is_some_and(|(t, _, _)| since_ok(t, since)))
        .filter_map(|l| render(l, timestamps))
        .collect();
    if let Some(n) = tail {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    let mut head = lines.concat();
    if let Some(limit) = limit {
        let mut at = limit.min(head.len());
        while !head.is_char_boundary(at) {
            at -= 1;
        }
        head.truncate(at);
    }
    if !follow {
        return (StatusCode::OK, [("content-type", "text/plain")], head).into_response();
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let path: PathBuf = chosen.log_path.clone();
    let id = chosen.id.clone();
    let offset = content.len() as u64;
    tokio::spawn(async move {
        if tx.send(Ok(Bytes::from(head))).await.is_err() {
            return;
        }
        let Ok(mut file) = tokio::fs::File::open(&path).await else {
            return;
        };
        if file.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
            return;
        }
        let mut reader = BufReader::new(file);
        // A line is sent once whole: a read may end in the middle of one.
        let mut line = String::new();
        let mut ended = false;
        loop {
            match reader.read_line(&mut line).await {
                Ok(_) if line.ends_with('\n') => {
                    if let Some(out) = render(line.trim_end_matches('\n'), timestamps) {
                        if tx.send(Ok(Bytes::from(out))).await.is_err() {
                            return;
                        }
                    }
                    line.clear();
                }
                Ok(_) if ended => return, // Drained after the container ended.
                Ok(_) => {
                    // Nothing more for now: after the container ends, one last
                    // read takes what it wrote just before.
                    let running = kubelet
                        .runtime
                        .list_containers()
                        .iter()
                        .any(|c| c.id == id && matches!(c.state, Run::Running { .. }));
                    if tx.is_closed() {
                        return;
                    }
                    ended = !running;
                    if running {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                Err(_) => return,
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    (StatusCode::OK, [("content-type", "text/plain")], body).into_response()
}

/// The refusal for a caller who may not read from this kubelet.
/// The refusal, if the caller may not get `nodes/<subresource>`.
async fn denied<R: Runtime>(kubelet: &Kubelet<R>, peer: &PeerInfo, subresource: &str) -> Option<Response> {
    use crate::delegated_auth::Refusal;
    match kubelet
        .decisions
        .check(&kubelet.client, &kubelet.node_name, peer, subresource)
        .await
    {
        Ok(()) => None,
        Err(Refusal::Unauthenticated) => Some(text(StatusCode::UNAUTHORIZED, "Unauthorized")),
        Err(Refusal::Forbidden(message)) => Some(text(StatusCode::FORBIDDEN, message)),
    }
}

async fn resource_metrics<R: Runtime>(
    State(kubelet): State<Arc<Kubelet<R>>>,
    Extension(peer): Extension<PeerInfo>,
) -> Response {
    if let Some(refusal) = denied(&kubelet, &peer, "metrics").await {
        return refusal;
    }
    let body = crate::resource_metrics::render(&kubelet.runtime.list_containers());
    (StatusCode::OK, [("content-type", "text/plain; version=0.0.4")], body).into_response()
}

pub fn router<R: Runtime>(kubelet: Arc<Kubelet<R>>) -> Router {
    Router::new()
        .route("/containerLogs/{namespace}/{pod}/{container}", get(logs::<R>))
        .route("/metrics/resource", get(resource_metrics::<R>))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(kubelet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_lines_render_with_and_without_time() {
        let line = "2026-11-26T09:00:00.5Z stdout F hello world";
        assert_eq!(render(line, false).unwrap(), "hello world\n");
        assert_eq!(render(line, true).unwrap(), "2026-11-26T09:00:00.5Z hello world\n");
        assert_eq!(render("2026-11-26T09:00:00.5Z stdout P abc", false).unwrap(), "abc");
        assert!(since_ok("2026-11-26T09:00:00.5Z", Some(0)));
        assert!(!since_ok("2026-11-26T09:00:00.5Z", Some(i64::MAX)));
    }
}
