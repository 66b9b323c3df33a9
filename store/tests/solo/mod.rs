//! One store member started in-process on loopback ports, and plain HTTP
//! calls to its client and metrics ports: what the single-member tests
//! (`etcd_api.rs`, `watch_and_gateway.rs`, `gateway_routes.rs`) share.

// Each test crate uses its own part.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use etcd_client::Client;
use serde_json::Value;
use store::config::Config;

/// The longest any single wait may take.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Member {
    pub running: Option<store::Running>,
    _dir: tempfile::TempDir,
    pub endpoint: String,
    /// The client port.
    pub addr: SocketAddr,
}

impl Member {
    /// One member with `extra` flags, once it has elected itself leader.
    pub async fn start(extra: &[&str]) -> Member {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = Config::single("solo", &dir.path().join("data"), extra);
        let running = store::start(config).await.expect("the member starts");
        let addr = running.client_addrs[0];
        let member = Member {
            running: Some(running),
            _dir: dir,
            endpoint: format!("http://{addr}"),
            addr,
        };
        let mut client = member.client().await;
        let ready = async {
            while !matches!(client.status().await, Ok(status) if status.leader() != 0) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(WAIT, ready)
            .await
            .expect("member elected itself leader within 10s");
        member
    }

    pub async fn client(&self) -> Client {
        Client::connect([self.endpoint.as_str()], None)
            .await
            .expect("a client connects")
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.running.as_ref().expect("the member is running").metrics_addrs[0]
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

/// `METHOD path` with a JSON body over a fresh HTTP/1.1 connection:
/// (status line, the body's JSON lines joined by newlines).
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.expect("send the request");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("read the response");
        response
    };
    let response = tokio::time::timeout(WAIT, exchange)
        .await
        .unwrap_or_else(|_| panic!("{path}: HTTP response within 10s"));
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    // Bodies may be chunked; keep the JSON lines only.
    let body = rest
        .lines()
        .filter(|l| l.starts_with('{'))
        .collect::<Vec<_>>()
        .join("\n");
    (head.lines().next().unwrap_or_default().to_string(), body)
}

/// `POST path` to the JSON gateway: (status line, the first JSON answer).
pub async fn post(addr: SocketAddr, path: &str, body: &str) -> (String, Value) {
    let (status, text) = http(addr, "POST", path, body).await;
    let line = text.lines().next().unwrap_or_default();
    let value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{path}: no JSON answer ({e}): {status} {text}"));
    (status, value)
}
