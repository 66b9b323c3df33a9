//! The multi-member harness shared by `cluster.rs` and `linearizability.rs`:
//! real `kubernate-store` processes on loopback, driven by the real
//! `etcdctl` 3.4 (`ETCDCTL_API=3`), as etcd's `tests/e2e` does.
//!
//! Every member writes its output to `<tempdir>/<name>.log`; when a test
//! fails, the tail of each log is printed, and every child is killed when
//! its `Cluster` is dropped. Tests take a global lock so that only one
//! cluster runs at a time: elections on a small, shared machine should not
//! compete with another test's cluster.
//!
//! The flags are etcd's, so `CLUSTER_TEST_STORE_BIN=/usr/bin/etcd` runs the
//! same tests against etcd itself, to check what they expect.

// Each test crate uses its own part of the harness.
#![allow(dead_code)]

pub mod checker;
pub mod link;

use std::fmt::Debug;
use std::fs::{self, File};
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The longest any single etcdctl invocation may run before it is killed.
pub const ETCDCTL_LIMIT: &str = "30";

pub static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

pub fn exclusive() -> MutexGuard<'static, ()> {
    ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn store_binary() -> String {
    std::env::var("CLUSTER_TEST_STORE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_kubernate-store").into())
}

/// Stops a process started through `timeout` (as `Cluster::etcdctl`
/// does): SIGTERM, which `timeout` passes on to its child, so nothing is
/// left behind; SIGKILL would end only `timeout` itself.
pub fn terminate(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

/// `n` distinct free loopback ports: all are bound at once, then released.
/// They come from below the ephemeral range (32768-60999), so that no
/// outgoing connection takes one as its source port before its member binds
/// it; the scan starts at a random place so parallel tests rarely meet.
pub fn free_ports(n: usize) -> Vec<u16> {
    let seed = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), std::process::id());
    let start = 20_000 + (seed % 12_000) as u16;
    let listeners: Vec<TcpListener> = (start..32_000)
        .chain(20_000..start)
        .filter_map(|port| TcpListener::bind(("127.0.0.1", port)).ok())
        .take(n)
        .collect();
    assert_eq!(listeners.len(), n, "no {n} free ports below 32000");
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// Polls `check` every 200 ms until it returns `Ok`, for at most `timeout`;
/// `Err` holds the last thing `check` saw.
pub fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return Ok(v),
            Err(last) if start.elapsed() > timeout => return Err(last),
            Err(_) => sleep(Duration::from_millis(200)),
        }
    }
}

/// [`poll`], panicking on timeout with what it waited for.
pub fn wait_for<T>(what: &str, timeout: Duration, check: impl FnMut() -> Result<T, String>) -> T {
    poll(timeout, check)
        .unwrap_or_else(|last| panic!("timed out after {timeout:?} waiting for {what}; last saw: {last}"))
}

/// `Ok(value)` when `done`, else `Err` describing `saw`.
pub fn ready<T>(done: bool, value: T, saw: impl Debug) -> Result<T, String> {
    if done {
        Ok(value)
    } else {
        Err(format!("{saw:?}"))
    }
}

/// Which client certificate etcdctl presents (TLS clusters only).
#[derive(Clone, Copy)]
pub enum Creds {
    /// `apiserver-store-client`: CN kube-apiserver-etcd-client, store CA.
    StoreClient,
    /// `admin`, signed by the cluster CA.
    ClusterAdmin,
    /// No client certificate at all.
    Anonymous,
    /// `store/store-0`: CN store-0, store CA, for servers only (no clientAuth).
    StoreMember,
    /// `store/store-0-peer`: CN store-0, store CA, for servers and clients.
    StorePeer,
}

/// What an etcdctl run printed.
#[derive(Debug)]
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn result(self) -> Result<String, String> {
        let ok = self.ok;
        ready(ok, self.stdout.clone(), self)
    }
}

pub struct Member {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    pub args: Vec<String>,
    pub log: PathBuf,
    pub child: Option<Child>,
}

impl Member {
    /// Starts the member (again), appending to its log.
    pub fn spawn(&mut self) {
        let log = File::options().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = Command::new(store_binary());
        cmd.args(&self.args).stdin(Stdio::null());
        self.child = Some(cmd.stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap());
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The client endpoint as given to etcdctl: host:port without the scheme
    /// (TLS follows from --cacert). See `maintenance_calls_accept_http_endpoints`.
    pub fn endpoint(&self) -> &str {
        self.client_url.split_once("://").map_or(&self.client_url, |(_, hp)| hp)
    }
}

/// Members sharing one temporary directory (data, logs and the PKI).
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub tls: bool,
    pub members: Vec<Member>,
}

impl Cluster {
    /// Starts members bootstrapping a new cluster and waits until each is
    /// healthy; with client and peer TLS from a fresh PKI when `tls`.
    pub fn start(names: &[&str], tls: bool) -> Cluster {
        Self::start_with(names, tls, &[])
    }

    /// As [`Cluster::start`], with `extra` flags for every member.
    pub fn start_with(names: &[&str], tls: bool, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        if tls {
            let options = kubernate::pki::InitOptions::new(dir.path().join("pki"));
            // One spare, for a member that joins later.
            let store_members = names.len() as u32 + 1;
            kubernate::pki::init(&kubernate::pki::InitOptions {
                store_members,
                ..options
            })
            .unwrap();
        }
        let members = Vec::new();
        let mut cluster = Cluster { dir, tls, members };
        let scheme = if tls { "https" } else { "http" };
        let ports = free_ports(names.len() * 3);
        let url = |i: usize, scheme: &str| format!("{scheme}://127.0.0.1:{}", ports[i]);
        let initial: Vec<String> = (0..names.len())
            .map(|i| format!("{}={}", names[i], url(3 * i + 1, scheme)))
            .collect();
        for (i, name) in names.iter().enumerate() {
            let (client, peer, metrics) = (url(3 * i, scheme), url(3 * i + 1, scheme), url(3 * i + 2, "http"));
            let mut m = cluster.member(name, &client, &peer, &metrics, &initial.join(","), "new");
            m.args.extend(extra.iter().map(|a| a.to_string()));
            if tls {
                let flags = cluster.tls_flags(i);
                m.args.extend(flags);
            }
            m.spawn();
            cluster.members.push(m);
        }
        for i in 0..names.len() {
            cluster.wait_healthy(i);
        }
        cluster
    }

    /// The TLS flags of the `i`th store member (certificates `store-{i}`).
    pub fn tls_flags(&self, i: usize) -> Vec<String> {
        let f = |flag: &str, file: &str| format!("--{flag}={}", self.pki().join(file).display());
        let mut flags = vec![
            f("cert-file", &format!("store/store-{i}.crt")),
            f("key-file", &format!("store/store-{i}.key")),
            f("trusted-ca-file", "store-ca.crt"),
            f("peer-cert-file", &format!("store/store-{i}-peer.crt")),
            f("peer-key-file", &format!("store/store-{i}-peer.key")),
            f("peer-trusted-ca-file", "store-ca.crt"),
            "--client-cert-auth".into(),
        ];
        if !store_binary().ends_with("/etcd") {
            // Ours; etcd has no such flag.
            flags.push("--allowed-client-cn=kube-apiserver-etcd-client".into());
        }
        flags
    }

    pub fn pki(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    /// A member's flags, not yet started.
    pub fn member(&self, name: &str, client: &str, peer: &str, metrics: &str, initial: &str, state: &str) -> Member {
        let data_dir = self.dir.path().join(format!("{name}.etcd")).display().to_string();
        let args = [
            ("--name", name),
            ("--data-dir", &data_dir),
            ("--listen-client-urls", client),
            ("--advertise-client-urls", client),
            ("--listen-peer-urls", peer),
            ("--initial-advertise-peer-urls", peer),
            ("--listen-metrics-urls", metrics),
            ("--initial-cluster", initial),
            ("--initial-cluster-state", state),
            ("--initial-cluster-token", "cluster-test"),
        ];
        Member {
            name: name.into(),
            client_url: client.into(),
            peer_url: peer.into(),
            args: args.iter().flat_map(|(f, v)| [f.to_string(), v.to_string()]).collect(),
            log: self.dir.path().join(format!("{name}.log")),
            child: None,
        }
    }

    /// The endpoints of every running member, comma-separated.
    pub fn all(&self) -> String {
        let running = self.members.iter().filter(|m| m.child.is_some());
        running.map(Member::endpoint).collect::<Vec<_>>().join(",")
    }

    /// etcdctl against `endpoints` as `creds`, under `timeout`.
    pub fn etcdctl(&self, creds: Creds, endpoints: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", ETCDCTL_LIMIT, "etcdctl", "--endpoints", endpoints])
            .args(["--dial-timeout=3s", "--command-timeout=10s"])
            .env("ETCDCTL_API", "3");
        let pair = match creds {
            Creds::StoreClient => Some("apiserver-store-client"),
            Creds::ClusterAdmin => Some("admin"),
            Creds::StoreMember => Some("store/store-0"),
            Creds::StorePeer => Some("store/store-0-peer"),
            Creds::Anonymous => None,
        };
        if self.tls {
            cmd.arg("--cacert").arg(self.pki().join("store-ca.crt"));
            if let Some(pair) = pair {
                cmd.arg("--cert").arg(self.pki().join(format!("{pair}.crt")));
                cmd.arg("--key").arg(self.pki().join(format!("{pair}.key")));
            }
        }
        cmd.args(args);
        cmd
    }

    /// Runs etcdctl to completion, feeding it `stdin`.
    pub fn ctl_as(&self, creds: Creds, endpoints: &str, args: &[&str], stdin: &str) -> Out {
        let mut cmd = self.etcdctl(creds, endpoints, args);
        let io = || Stdio::piped();
        let mut child = cmd.stdin(io()).stdout(io()).stderr(io()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let code = output.status.code();
        assert_ne!(code, Some(124), "etcdctl {args:?} ran over {ETCDCTL_LIMIT} s: {stderr}");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let ok = output.status.success();
        Out { ok, stdout, stderr }
    }

    pub fn ctl(&self, endpoints: &str, args: &[&str]) -> Out {
        self.ctl_as(Creds::StoreClient, endpoints, args, "")
    }

    /// etcdctl's stdout; panics if it fails.
    pub fn must(&self, endpoints: &str, args: &[&str]) -> String {
        let out = self.ctl(endpoints, args);
        assert!(out.ok, "etcdctl {args:?} failed: {out:#?}");
        out.stdout
    }

    pub fn wait_healthy(&self, i: usize) {
        let what = format!("`etcdctl endpoint health` to pass on {}", self.members[i].name);
        wait_for(&what, Duration::from_secs(30), || {
            let out = self.ctl(self.members[i].endpoint(), &["endpoint", "health"]);
            // etcdctl 3.4 prints the health report on stderr.
            ready(out.ok && out.stderr.contains("is healthy"), (), out)
        });
    }

    /// `endpoint status -w json` of every running member: (endpoint, status).
    pub fn status(&self) -> Result<Vec<(String, Value)>, String> {
        let out = self.ctl(&self.all(), &["endpoint", "status", "-w", "json"]).result()?;
        let all: Vec<Value> = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
        let endpoint = |s: &Value| s["Endpoint"].as_str().unwrap().to_string();
        Ok(all.iter().map(|s| (endpoint(s), s["Status"].clone())).collect())
    }

    /// The index of the member that every running member names as leader.
    pub fn leader(&self) -> usize {
        wait_for(
            "the running members to agree on a leader",
            Duration::from_secs(30),
            || {
                let status = self.status()?;
                let leader = status.first().and_then(|(_, s)| s["leader"].as_u64());
                let agreed = leader.is_some() && status.iter().all(|(_, s)| s["leader"].as_u64() == leader);
                let found = status.iter().find(|(_, s)| s["header"]["member_id"].as_u64() == leader);
                let at = found.and_then(|(ep, _)| self.members.iter().position(|m| m.endpoint() == ep));
                ready(agreed && at.is_some(), at.unwrap_or_default(), status)
            },
        )
    }

    /// A serializable (local) read of `key` on member `i`; `Err` until it is there.
    pub fn local_get(&self, i: usize, key: &str) -> Result<String, String> {
        let args = ["get", key, "--consistency=s", "--print-value-only"];
        let value = self.ctl(self.members[i].endpoint(), &args).result()?;
        let value = value.trim_end().to_string();
        ready(
            !value.is_empty(),
            value,
            format!("no {key} on {} yet", self.members[i].name),
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
        if std::thread::panicking() {
            for m in &self.members {
                let log = fs::read_to_string(&m.log).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                eprintln!("----- last 30 lines of {} ({}) -----\n{tail}", m.name, m.log.display());
            }
        }
    }
}
