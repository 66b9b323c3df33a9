//! The `/metrics` helper serves what Prometheus accepts: the text is checked
//! by the real `promtool check metrics` (Debian's `prometheus` package).

#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut response))
        .await
        .expect("response within 10s")
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    (head.to_string(), body.to_string())
}

#[tokio::test]
async fn metrics_endpoint_serves_text_promtool_accepts() {
    let registry = common::metrics::registry();
    let requests = IntCounterVec::new(
        Opts::new(
            "apiserver_request_total",
            "Counter of apiserver requests by verb, resource and code.",
        ),
        &["verb", "resource", "code"],
    )
    .unwrap();
    let latency = HistogramVec::new(
        HistogramOpts::new(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds.",
        ),
        &["verb", "resource"],
    )
    .unwrap();
    registry.register(Box::new(requests.clone())).unwrap();
    registry.register(Box::new(latency.clone())).unwrap();
    requests.with_label_values(&["GET", "pods", "200"]).inc_by(3);
    latency.with_label_values(&["GET", "pods"]).observe(0.012);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(common::metrics::serve(listener, registry, shutdown.clone()));

    let (head, body) = get(addr, "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(
        body.contains(r#"apiserver_request_total{code="200",resource="pods",verb="GET"} 3"#),
        "{body}"
    );
    assert!(body.contains("apiserver_request_duration_seconds_bucket"), "{body}");
    assert!(body.contains("process_resident_memory_bytes"), "{body}");

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (Debian package `prometheus`; .ci/run installs it)");
    promtool.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool rejected the metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let (head, body) = get(addr, "/healthz").await;
    assert!(head.starts_with("HTTP/1.1 200") && body == "ok", "{head}\n{body}");
    let (head, _) = get(addr, "/other").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("metrics server stops on shutdown")
        .unwrap();
}

#[tokio::test]
async fn promtool_really_rejects_bad_metrics() {
    // Guards the test above: promtool must fail on malformed exposition text.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("promtool must be installed");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(b"# TYPE x counter\nx{a=\"1\" 3\n")
        .unwrap();
    assert!(!promtool.wait().unwrap().success());
}
