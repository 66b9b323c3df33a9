#![allow(clippy::unwrap_used)]
//! Multi-member tests: real `kubernate-store` processes driven by the real
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

use std::collections::BTreeMap;
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
const ETCDCTL_LIMIT: &str = "30";

static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

fn exclusive() -> MutexGuard<'static, ()> {
    ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn store_binary() -> String {
    std::env::var("CLUSTER_TEST_STORE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_kubernate-store").into())
}

/// `n` distinct free loopback ports: all are bound at once, then released.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// Polls `check` every 200 ms until it returns `Ok`, for at most `timeout`;
/// `Err` holds the last thing `check` saw.
fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> Result<T, String> {
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
fn wait_for<T>(what: &str, timeout: Duration, check: impl FnMut() -> Result<T, String>) -> T {
    poll(timeout, check)
        .unwrap_or_else(|last| panic!("timed out after {timeout:?} waiting for {what}; last saw: {last}"))
}

/// `Ok(value)` when `done`, else `Err` describing `saw`.
fn ready<T>(done: bool, value: T, saw: impl Debug) -> Result<T, String> {
    if done {
        Ok(value)
    } else {
        Err(format!("{saw:?}"))
    }
}

/// Which client certificate etcdctl presents (TLS clusters only).
#[derive(Clone, Copy)]
enum Creds {
    /// `apiserver-store-client`: CN kube-apiserver-etcd-client, store CA.
    StoreClient,
    /// `admin`, signed by the cluster CA.
    ClusterAdmin,
    /// No client certificate at all.
    Anonymous,
}

/// What an etcdctl run printed.
#[derive(Debug)]
struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Out {
    fn result(self) -> Result<String, String> {
        let ok = self.ok;
        ready(ok, self.stdout.clone(), self)
    }
}

struct Member {
    name: String,
    client_url: String,
    peer_url: String,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Member {
    /// Starts the member (again), appending to its log.
    fn spawn(&mut self) {
        let log = File::options().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = Command::new(store_binary());
        cmd.args(&self.args).stdin(Stdio::null());
        self.child = Some(cmd.stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap());
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The client endpoint as given to etcdctl: host:port without the scheme
    /// (TLS follows from --cacert). See `maintenance_calls_accept_http_endpoints`.
    fn endpoint(&self) -> &str {
        self.client_url.split_once("://").map_or(&self.client_url, |(_, hp)| hp)
    }
}

/// Members sharing one temporary directory (data, logs and the PKI).
struct Cluster {
    dir: tempfile::TempDir,
    tls: bool,
    members: Vec<Member>,
}

impl Cluster {
    /// Starts members bootstrapping a new cluster and waits until each is
    /// healthy; with client and peer TLS from a fresh PKI when `tls`.
    fn start(names: &[&str], tls: bool) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        if tls {
            let options = kubernate::pki::InitOptions::new(dir.path().join("pki"));
            let store_members = names.len() as u32;
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
            if tls {
                let f = |flag: &str, file: &str| format!("--{flag}={}", cluster.pki().join(file).display());
                m.args.extend([
                    f("cert-file", &format!("store/store-{i}.crt")),
                    f("key-file", &format!("store/store-{i}.key")),
                    f("trusted-ca-file", "store-ca.crt"),
                    f("peer-cert-file", &format!("store/store-{i}-peer.crt")),
                    f("peer-key-file", &format!("store/store-{i}-peer.key")),
                    f("peer-trusted-ca-file", "store-ca.crt"),
                    "--client-cert-auth".into(),
                ]);
                if !store_binary().ends_with("/etcd") {
                    // Ours; etcd has no such flag.
                    m.args.push("--allowed-client-cn=kube-apiserver-etcd-client".into());
                }
            }
            m.spawn();
            cluster.members.push(m);
        }
        for i in 0..names.len() {
            cluster.wait_healthy(i);
        }
        cluster
    }

    fn pki(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    /// A member's flags, not yet started.
    fn member(&self, name: &str, client: &str, peer: &str, metrics: &str, initial: &str, state: &str) -> Member {
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
    fn all(&self) -> String {
        let running = self.members.iter().filter(|m| m.child.is_some());
        running.map(Member::endpoint).collect::<Vec<_>>().join(",")
    }

    /// etcdctl against `endpoints` as `creds`, under `timeout`.
    fn etcdctl(&self, creds: Creds, endpoints: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", ETCDCTL_LIMIT, "etcdctl", "--endpoints", endpoints])
            .args(["--dial-timeout=3s", "--command-timeout=10s"])
            .env("ETCDCTL_API", "3");
        let pair = match creds {
            Creds::StoreClient => Some("apiserver-store-client"),
            Creds::ClusterAdmin => Some("admin"),
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
    fn ctl_as(&self, creds: Creds, endpoints: &str, args: &[&str], stdin: &str) -> Out {
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

    fn ctl(&self, endpoints: &str, args: &[&str]) -> Out {
        self.ctl_as(Creds::StoreClient, endpoints, args, "")
    }

    /// etcdctl's stdout; panics if it fails.
    fn must(&self, endpoints: &str, args: &[&str]) -> String {
        let out = self.ctl(endpoints, args);
        assert!(out.ok, "etcdctl {args:?} failed: {out:#?}");
        out.stdout
    }

    fn wait_healthy(&self, i: usize) {
        let what = format!("`etcdctl endpoint health` to pass on {}", self.members[i].name);
        wait_for(&what, Duration::from_secs(30), || {
            let out = self.ctl(self.members[i].endpoint(), &["endpoint", "health"]);
            // etcdctl 3.4 prints the health report on stderr.
            ready(out.ok && out.stderr.contains("is healthy"), (), out)
        });
    }

    /// `endpoint status -w json` of every running member: (endpoint, status).
    fn status(&self) -> Result<Vec<(String, Value)>, String> {
        let out = self.ctl(&self.all(), &["endpoint", "status", "-w", "json"]).result()?;
        let all: Vec<Value> = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
        let endpoint = |s: &Value| s["Endpoint"].as_str().unwrap().to_string();
        Ok(all.iter().map(|s| (endpoint(s), s["Status"].clone())).collect())
    }

    /// The index of the member that every running member names as leader.
    fn leader(&self) -> usize {
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
    fn local_get(&self, i: usize, key: &str) -> Result<String, String> {
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

/// The revision in the header of a `-w json` response.
fn revision(json: &str) -> i64 {
    let v: Value = serde_json::from_str(json).unwrap();
    v["header"]["revision"].as_i64().unwrap()
}

#[test]
fn etcdctl_against_a_three_member_tls_cluster() {
    let _one = exclusive();
    let c = Cluster::start(&["a", "b", "c"], true);
    let (all, one) = (c.all(), c.members[1].endpoint().to_string());
    let ok = |args: &[&str]| c.must(&all, args);

    // KV.
    assert_eq!(c.must(&one, &["put", "foo", "bar"]), "OK\n");
    assert_eq!(ok(&["put", "foo2", "baz"]), "OK\n");
    assert_eq!(ok(&["get", "foo"]), "foo\nbar\n");
    assert_eq!(ok(&["get", "--prefix", "foo"]), "foo\nbar\nfoo2\nbaz\n");
    assert_eq!(ok(&["del", "foo2"]), "1\n");
    assert_eq!(ok(&["get", "--prefix", "foo"]), "foo\nbar\n");

    // Txn on stdin: compares, blank line, success ops, blank line, failure ops, blank line.
    let txn = |value: &str| {
        let input = format!("value(\"foo\") = \"{value}\"\n\nput branch success\n\nput branch failure\n\n");
        let out = c.ctl_as(Creds::StoreClient, &all, &["txn"], &input);
        out.result().unwrap()
    };
    assert_eq!(txn("bar"), "SUCCESS\n\nOK\n");
    assert_eq!(ok(&["get", "branch", "--print-value-only"]), "success\n");
    assert_eq!(txn("nope"), "FAILURE\n\nOK\n");
    assert_eq!(ok(&["get", "branch", "--print-value-only"]), "failure\n");

    // Watch from the next revision, so no event is missed however long the
    // watch takes to start.
    let next = revision(&ok(&["get", "foo", "-w", "json"])) + 1;
    let watch_out = c.dir.path().join("watch.out");
    let mut watch = c.etcdctl(Creds::StoreClient, &one, &["watch", "w", &format!("--rev={next}")]);
    let watch_file = File::create(&watch_out).unwrap();
    let mut watch = watch.stdout(watch_file).stderr(Stdio::null()).spawn().unwrap();
    ok(&["put", "w", "1"]);
    ok(&["del", "w"]);
    let events = wait_for("the watch to print a put and a delete", Duration::from_secs(15), || {
        let s = fs::read_to_string(&watch_out).unwrap();
        ready(s.contains("DELETE"), s.clone(), s)
    });
    let _ = watch.kill();
    let _ = watch.wait();
    assert_eq!(events, "PUT\nw\n1\nDELETE\nw\n\n");

    // Leases.
    let granted = ok(&["lease", "grant", "60"]);
    let id = granted.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(granted, format!("lease {id} granted with TTL(60s)\n"));
    ok(&["put", "leased", "v", &format!("--lease={id}")]);
    let kept = ok(&["lease", "keep-alive", "--once", &id]);
    assert_eq!(kept, format!("lease {id} keepalived with TTL(60)\n"));
    let ttl = ok(&["lease", "timetolive", &id, "--keys"]);
    assert!(ttl.contains("attached keys([leased])"), "{ttl}");
    assert_eq!(ok(&["lease", "revoke", &id]), format!("lease {id} revoked\n"));
    assert_eq!(ok(&["get", "leased"]), "", "the leased key outlived its lease");

    // Maintenance.
    let status = ok(&["endpoint", "status"]);
    let leaders = status.lines().filter(|l| l.split(", ").nth(4) == Some("true"));
    assert_eq!(
        (status.lines().count(), leaders.count()),
        (3, 1),
        "one leader: {status}"
    );
    let health = c.ctl(&all, &["endpoint", "health"]);
    let healthy = health
        .stderr
        .matches("is healthy: successfully committed proposal")
        .count();
    assert!(health.ok && healthy == 3, "{health:?}");

    let snap = c.dir.path().join("snap.db");
    let saved = c.must(&one, &["snapshot", "save", snap.to_str().unwrap()]);
    assert_eq!(saved, format!("Snapshot saved at {}\n", snap.display()));
    assert!(fs::metadata(&snap).unwrap().len() > 0, "the snapshot is empty");

    let old = revision(&ok(&["put", "k", "v1", "-w", "json"]));
    let new = revision(&ok(&["put", "k", "v2", "-w", "json"]));
    assert_eq!(
        ok(&["compaction", &new.to_string()]),
        format!("compacted revision {new}\n")
    );
    let stale = c.ctl(&all, &["get", "k", &format!("--rev={old}")]);
    assert!(
        !stale.ok && stale.stderr.contains("required revision has been compacted"),
        "{stale:?}"
    );
    assert_eq!(ok(&["get", "k", &format!("--rev={new}"), "--print-value-only"]), "v2\n");

    let defrag = ok(&["defrag"]);
    assert_eq!(
        defrag.matches("Finished defragmenting etcd member[").count(),
        3,
        "{defrag}"
    );
    assert_eq!(ok(&["alarm", "list"]), "");

    // Clients the store must refuse, and nothing they could have written.
    let before = revision(&ok(&["get", "foo", "-w", "json"]));
    for (creds, who) in [
        (Creds::ClusterAdmin, "the cluster CA's admin"),
        (Creds::Anonymous, "no"),
    ] {
        let out = c.ctl_as(creds, &one, &["put", "intruder", who], "");
        assert!(!out.ok, "a client with {who} certificate could write: {out:?}");
        let out = c.ctl_as(creds, &one, &["get", "foo"], "");
        assert!(
            !out.ok && out.stdout.is_empty(),
            "a client with {who} certificate could read: {out:?}"
        );
    }
    assert_eq!(ok(&["get", "intruder"]), "");
    assert_eq!(revision(&ok(&["get", "foo", "-w", "json"])), before);

    // Membership, last, as every other check stands without it: whoever
    // answers lists all three members with their names and client URLs.
    for m in &c.members {
        let list = c.must(m.endpoint(), &["member", "list"]);
        assert_eq!(list.lines().count(), 3, "{list}");
        for x in &c.members {
            let want = format!(", started, {}, {}, {}, false", x.name, x.peer_url, x.client_url);
            assert!(
                list.contains(&want),
                "`member list` on {} lacks {want:?}:\n{list}",
                m.name
            );
        }
    }
}

/// For Maintenance calls (status, hashkv, defrag) etcdctl dials each
/// endpoint on its own and sends it, scheme included, as the HTTP/2
/// `:authority`; etcd accepts that.
#[test]
#[ignore = "known gap: the h2 crate resets streams whose :authority carries a scheme \
            (etcdctl 3.4 sends `http://host:port` for per-endpoint maintenance calls); \
            use host:port endpoints until the server tolerates it"]
fn maintenance_calls_accept_http_endpoints() {
    let _one = exclusive();
    let c = Cluster::start(&["a"], false);
    let url = c.members[0].client_url.clone();
    assert_eq!(c.must(&url, &["put", "k", "v"]), "OK\n");
    let status = c.must(&url, &["endpoint", "status"]);
    assert!(status.starts_with(&format!("{url}, ")), "{status}");
    let hash = c.must(&url, &["endpoint", "hashkv"]);
    assert!(hash.starts_with(&format!("{url}, ")), "{hash}");
    assert_eq!(
        c.must(&url, &["defrag"]),
        format!("Finished defragmenting etcd member[{url}]\n")
    );
}

#[test]
fn member_add_and_remove() {
    let _one = exclusive();
    let mut c = Cluster::start(&["a", "b", "c"], false);
    let all = c.all();
    c.must(&all, &["put", "before-join", "here"]);

    let ports = free_ports(3);
    let [client, peer, metrics] = [0, 1, 2].map(|i| format!("http://127.0.0.1:{}", ports[i]));
    // etcd refuses membership changes ("unhealthy cluster") for 5 s after it starts.
    let added = wait_for("`member add` to be accepted", Duration::from_secs(30), || {
        c.ctl(&all, &["member", "add", "d", &format!("--peer-urls={peer}")])
            .result()
    });
    // "Member <id> added to cluster <id>", the IDs padded to 16 characters.
    let id = added.split_whitespace().nth(1).unwrap().to_string();
    assert!(
        added.starts_with("Member ") && added.contains(" added to cluster "),
        "{added}"
    );
    assert!(added.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""), "{added}");
    let mut initial: Vec<String> = c.members.iter().map(|m| format!("{}={}", m.name, m.peer_url)).collect();
    initial.push(format!("d={peer}"));
    let mut d = c.member("d", &client, &peer, &metrics, &initial.join(","), "existing");
    d.spawn();
    c.members.push(d);
    let value = wait_for(
        "d to serve a key written before it joined",
        Duration::from_secs(30),
        || c.local_get(3, "before-join"),
    );
    assert_eq!(value, "here");

    // Checked after the removal, which does not depend on them.
    let want = format!("{id}, started, d, {peer}, {client}, false");
    let listed = poll(Duration::from_secs(10), || {
        let list = c.ctl(&all, &["member", "list"]).result()?;
        ready(list.lines().count() == 4 && list.lines().any(|l| l == want), (), list)
    });
    let d_status = c.must(c.members[3].endpoint(), &["endpoint", "status", "-w", "json"]);
    let d_id = serde_json::from_str::<Value>(&d_status).unwrap()[0]["Status"]["header"]["member_id"].as_u64();

    let removed = c.must(&all, &["member", "remove", &id]);
    assert!(
        removed.starts_with(&format!("Member {id} removed from cluster ")),
        "{removed}"
    );
    let list = c.must(&all, &["member", "list"]);
    assert_eq!(list.lines().count(), 3, "{list}");
    assert!(!list.contains(&id), "{list}");
    c.must(&all, &["put", "after-remove", "ok"]);

    listed.unwrap_or_else(|list| panic!("d was never listed as {want:?}: {list}"));
    let d_id = d_id.map(|x| format!("{x:x}"));
    assert_eq!(
        d_id.as_deref(),
        Some(id.as_str()),
        "d answers as another member: {d_status}"
    );
}

#[test]
fn failover_elects_a_new_leader_and_writes_resume() {
    let _one = exclusive();
    let mut c = Cluster::start(&["a", "b", "c"], false);
    c.must(&c.all(), &["put", "before", "1"]);
    let leader = c.leader();
    c.members[leader].kill();
    let killed = Instant::now();
    let survivors = c.all();
    wait_for("a put through a surviving member", Duration::from_secs(30), || {
        c.ctl(&survivors, &["put", "after-failover", "2", "--command-timeout=1s"])
            .result()
    });
    let name = &c.members[leader].name;
    println!(
        "failover: a put succeeded {:?} after the leader {name} was killed",
        killed.elapsed()
    );
    println!("failover: {} leads now", c.members[c.leader()].name);

    c.members[leader].spawn();
    let caught_up = wait_for("the restarted member to catch up", Duration::from_secs(30), || {
        c.local_get(leader, "after-failover")
    });
    assert_eq!(caught_up, "2");
    assert_eq!(c.local_get(leader, "before").unwrap(), "1");
}

#[test]
fn acknowledged_writes_survive_killing_the_leader() {
    let _one = exclusive();
    let mut c = Cluster::start(&["a", "b", "c"], false);
    let leader = c.leader();
    let followers = (0..3).filter(|i| *i != leader).map(|i| c.members[i].client_url.clone());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5));
    let connect = |url: String| etcd_client::Client::connect([url], Some(options.clone()));
    let mut clients: Vec<etcd_client::Client> = followers.map(|f| runtime.block_on(connect(f)).unwrap()).collect();

    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    let (mut attempts, mut failures) = (0usize, 0usize);
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.len() < 300 {
        assert!(
            Instant::now() < deadline,
            "only {} of 300 writes acknowledged in 120 s",
            acked.len()
        );
        if acked.len() == 100 && c.members[leader].child.is_some() {
            println!(
                "killing the leader {} after 100 acknowledged writes",
                c.members[leader].name
            );
            c.members[leader].kill();
        }
        let (key, value) = (format!("w/{attempts:05}"), format!("v{attempts}"));
        let client = &mut clients[attempts % 2];
        attempts += 1;
        match runtime.block_on(client.put(key.as_str(), value.as_str(), None)) {
            Ok(_) => drop(acked.insert(key, value)),
            Err(_) => {
                failures += 1;
                sleep(Duration::from_millis(20));
            }
        }
    }
    println!(
        "{} writes acknowledged, {failures} failed (outcome unknown)",
        acked.len()
    );
    c.members[leader].spawn();

    let rev = wait_for(
        "all three members to apply the same revision",
        Duration::from_secs(30),
        || {
            let revs: Vec<i64> = c
                .status()?
                .iter()
                .map(|(_, s)| s["header"]["revision"].as_i64().unwrap())
                .collect();
            let first = revs.first().copied().unwrap_or_default();
            ready(revs.len() == 3 && revs.iter().all(|r| *r == first), first, &revs)
        },
    );
    for m in &c.members {
        let out = c.must(m.endpoint(), &["get", "w/", "--prefix", "--consistency=s"]);
        let lines: Vec<&str> = out.lines().collect();
        let seen: BTreeMap<&str, &str> = lines.chunks(2).map(|kv| (kv[0], kv[1])).collect();
        let missing: Vec<&String> = acked.keys().filter(|k| !seen.contains_key(k.as_str())).collect();
        assert!(missing.is_empty(), "{} lost acknowledged writes: {missing:?}", m.name);
        for (k, v) in &acked {
            assert_eq!(seen[k.as_str()], v, "{} has the wrong value for {k}", m.name);
        }
    }
    let hashes = c.must(&c.all(), &["endpoint", "hashkv", &format!("--rev={rev}"), "-w", "json"]);
    let hashes: Vec<Value> = serde_json::from_str(&hashes).unwrap();
    let hashes: Vec<u64> = hashes.iter().map(|h| h["HashKV"]["hash"].as_u64().unwrap()).collect();
    assert_eq!(hashes.len(), 3);
    assert!(
        hashes.iter().all(|h| *h == hashes[0]),
        "HashKV at revision {rev} differs: {hashes:?}"
    );
}
