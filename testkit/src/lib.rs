//! The harness the integration tests share: a real cluster control plane
//! on loopback ports, in a temporary directory.
//!
//! [`Cluster::start`] writes a fresh PKI (`kubernate pki init`), starts a
//! store (Kubernate's own, in-process, or a real etcd 3.4 process) and the
//! `kubernate-apiserver` binary as a child process, and waits until the
//! API server accepts connections. The API server is a real process so
//! tests can kill it (`kill -9` semantics) and start it again on the same
//! port, as an operator would. Every wait is bounded.
//!
//! The binaries come from the cargo target directory the test runs from
//! (`cargo nextest run --workspace` builds them all).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a harness is a failed test

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which store the API server runs on.
pub enum Backend {
    Kubernate(store::Running),
    /// A real etcd 3.4 (Debian's etcd-server), killed on drop.
    Etcd(ChildGuard),
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    // Below Linux's ephemeral range (32768-60999): a port the kernel hands
    // out for bind(0) is also what it hands out as the source port of
    // outgoing connections, and one of those can take it before the
    // server that was meant to listen there binds it.
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let mut candidate = hasher.finish();
    for _ in 0..1000 {
        let port = 20_000 + (candidate % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
        candidate = candidate
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The path of a workspace binary next to the running test executable
/// (`target/<profile>/deps/test-…` → `target/<profile>/<name>`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --workspace, or run the tests with --workspace)",
        path.display()
    );
    path
}

/// Stores `busybox:latest` (made from the host's static busybox, as
/// `kubernate up` does) in the image store `store`.
pub fn import_busybox(store: &Path) {
    kubernate::busybox::import(store).unwrap();
}

async fn start_backend(kind: &str, dir: &Path) -> (Backend, String) {
    match kind {
        "kubernate" => {
            let config = store::config::Config::single("s", &dir.join("store"), &[]);
            let running = store::start(config).await.unwrap();
            let endpoint = format!("http://{}", running.client_addrs[0]);
            (Backend::Kubernate(running), endpoint)
        }
        "etcd" | "kubernate-process" => {
            // Kubernate's store takes etcd's flags, so both start alike.
            let program = if kind == "etcd" {
                "etcd".into()
            } else {
                binary("kubernate-store")
            };
            let (client, peer) = (free_port(), free_port());
            let mut command = Command::new(program);
            if kind == "etcd" {
                command.args(["--log-level", "error"]);
            } else {
                command.args(["--listen-metrics-urls", &format!("http://127.0.0.1:{}", free_port())]);
            }
            let child = command
                .args(["--name", "e", "--data-dir", dir.join("etcd").to_str().unwrap()])
                .args(["--listen-client-urls", &format!("http://127.0.0.1:{client}")])
                .args(["--advertise-client-urls", &format!("http://127.0.0.1:{client}")])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args(["--initial-cluster", &format!("e=http://127.0.0.1:{peer}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("the store binary (etcd 3.4 is Debian's etcd-server)");
            (Backend::Etcd(ChildGuard(child)), format!("http://127.0.0.1:{client}"))
        }
        other => panic!("unknown backend {other:?}: kubernate, kubernate-process or etcd"),
    }
}

/// Runs a command with `stdin` as its input; (success, stdout, stderr).
async fn run_with_input(mut cmd: tokio::process::Command, stdin: Option<&str>) -> (bool, String, String) {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).await.unwrap();
        drop(pipe);
    }
    let out = child.wait_with_output().await.unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// A store and an API server in a temporary directory.
pub struct Cluster {
    backend: Option<Backend>,
    apiserver: Option<ChildGuard>,
    pub dir: tempfile::TempDir,
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    port: u16,
    store_endpoint: String,
    extra_args: Vec<String>,
}

/// How long the API server gets to come up.
const START_TIMEOUT: Duration = Duration::from_secs(40);

impl Cluster {
    /// A cluster on `kind` ("kubernate" or "etcd").
    pub async fn start(kind: &str) -> Cluster {
        Self::start_with(kind, &[]).await
    }

    /// A cluster whose API server gets `extra_args` too.
    pub async fn start_with(kind: &str, extra_args: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        kubernate::pki::init(&kubernate::pki::InitOptions::new(dir.path().join("pki"))).unwrap();
        let (backend, store_endpoint) = start_backend(kind, dir.path()).await;
        let port = free_port();
        let mut cluster = Cluster {
            backend: Some(backend),
            apiserver: None,
            dir,
            server: format!("https://127.0.0.1:{port}"),
            port,
            store_endpoint,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        cluster.start_apiserver().await;
        cluster
    }

    /// The store's client URL (`http://127.0.0.1:<port>`), for tests that
    /// change the store behind the API server's back.
    pub fn store_endpoint(&self) -> &str {
        &self.store_endpoint
    }

    pub fn pki(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    /// One HTTPS request to the API server as the cluster admin with curl
    /// (no retries, unlike kubectl), `args` before the URL (method,
    /// headers, body); the raw output, head included with `-i`.
    pub async fn curl(&self, args: &[&str], path: &str) -> Vec<u8> {
        let out = self.curl_command(args, path).output().await.unwrap();
        out.stdout
    }

    /// The same with `stdin` as curl's input (`--data-binary @-` sends it),
    /// for bodies too large for an argument; the output as text.
    pub async fn curl_input(&self, args: &[&str], path: &str, stdin: &str) -> String {
        run_with_input(self.curl_command(args, path), Some(stdin)).await.1
    }

    fn curl_command(&self, args: &[&str], path: &str) -> tokio::process::Command {
        let pki = self.pki();
        let mut cmd = tokio::process::Command::new("curl");
        cmd.args(["-s", "--max-time", "25"])
            .arg("--cacert")
            .arg(pki.join("ca.crt"))
            .arg("--cert")
            .arg(pki.join("admin.crt"))
            .arg("--key")
            .arg(pki.join("admin.key"))
            .args(args)
            .arg(format!("{}{path}", self.server));
        cmd
    }

    /// The cluster-admin kubeconfig (system:masters).
    pub fn kubeconfig(&self) -> PathBuf {
        self.pki().join("admin.kubeconfig")
    }

    /// The cluster-admin kubeconfig, read and pointed at this cluster's
    /// API server (for clients built in the test process).
    pub fn admin_config(&self) -> common::kubeconfig::Resolved {
        let mut config = common::kubeconfig::Kubeconfig::load_resolved(&self.kubeconfig()).unwrap();
        config.server = self.server.clone();
        config
    }

    /// Issues a node's certificates and kubeconfig (`kubernate pki node`);
    /// its identity for [`Component::start`] is `nodes/<name>`.
    pub fn add_node(&self, name: &str) {
        kubernate::pki::add_node(&self.pki(), name, Some(&self.server), false).unwrap();
    }

    /// Issues a user's client certificate and kubeconfig (`kubernate pki
    /// user`); returns the kubeconfig's path.
    pub fn add_user(&self, name: &str, groups: &[&str]) -> PathBuf {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        kubernate::pki::add_user(&self.pki(), name, &groups, Some(&self.server), false).unwrap();
        self.pki().join(format!("users/{name}.kubeconfig"))
    }

    /// Runs kubectl (bounded by 30 s) with other credentials: `--kubeconfig`
    /// and any extra flags (`--token`, `--as`, …).
    pub async fn kubectl_with(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut cmd = tokio::process::Command::new("timeout");
        cmd.args(["-k", "5", "30", "kubectl", "--kubeconfig"])
            .arg(kubeconfig)
            .args(["--server", &self.server])
            .args(args);
        run_with_input(cmd, stdin).await
    }

    /// The kubeconfig of another identity written by `pki init`
    /// (`scheduler`, `controller-manager`, …).
    pub fn kubeconfig_of(&self, identity: &str) -> PathBuf {
        self.pki().join(format!("{identity}.kubeconfig"))
    }

    /// Starts the API server (again) on the cluster's port and waits until
    /// it says it listens and accepts connections.
    pub async fn start_apiserver(&mut self) {
        let p = |f: &str| self.pki().join(f).to_str().unwrap().to_string();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("apiserver.log"))
            .unwrap();
        let started_before = self.apiserver_log().matches("API server listening").count();
        let child = Command::new(binary("kubernate-apiserver"))
            .args(["--etcd-servers", &self.store_endpoint])
            .args(["--secure-port", &self.port.to_string()])
            .args(["--tls-cert-file", &p("apiserver.crt")])
            .args(["--tls-private-key-file", &p("apiserver.key")])
            .args(["--client-ca-file", &p("ca.crt")])
            .args(["--kubelet-client-certificate", &p("apiserver-kubelet-client.crt")])
            .args(["--kubelet-client-key", &p("apiserver-kubelet-client.key")])
            .args(["--service-account-key-file", &p("service-account.pub")])
            .args(["--service-account-signing-key-file", &p("service-account.key")])
            .args(&self.extra_args)
            // The readiness check below reads the "listening" line.
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").map_or_else(|_| "info".to_string(), |v| format!("{v},apiserver=info")),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.apiserver = Some(ChildGuard(child));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // Ours must say it listens: the port was free when picked, but
            // another test's server may have taken it since, and a bare
            // connect would then reach that one.
            let listening = self.apiserver_log().matches("API server listening").count() > started_before;
            if listening && tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            if let Some(status) = self.apiserver.as_mut().and_then(|c| c.0.try_wait().unwrap()) {
                panic!("the API server exited ({status}); log:\n{}", self.apiserver_log());
            }
            assert!(
                Instant::now() < deadline,
                "the API server did not listen within {START_TIMEOUT:?}; log:\n{}",
                self.apiserver_log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) an etcd backend, so that store
    /// calls hang as they do when the store is overloaded or partitioned.
    pub fn signal_store(&self, signal: &str) {
        let Some(Backend::Etcd(etcd)) = &self.backend else {
            panic!("only an etcd backend runs as a process that can be signalled");
        };
        let status = Command::new("kill")
            .args([signal, &etcd.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} etcd");
    }

    /// The API server's process id (for its memory use, say).
    pub fn apiserver_pid(&self) -> Option<u32> {
        self.apiserver.as_ref().map(|c| c.0.id())
    }

    /// The store's process id, when it runs as a process.
    pub fn store_pid(&self) -> Option<u32> {
        match &self.backend {
            Some(Backend::Etcd(child)) => Some(child.0.id()),
            _ => None,
        }
    }

    /// Kills the API server at once (SIGKILL): no drain, streams cut.
    pub fn kill_apiserver(&mut self) {
        self.apiserver.take();
    }

    /// What the API server has logged so far.
    pub fn apiserver_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("apiserver.log")).unwrap_or_default()
    }

    /// Runs kubectl (bounded by 30 s) as admin; returns (success, stdout, stderr).
    pub async fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        self.kubectl_version("kubectl", args, stdin).await
    }

    /// The same with another kubectl binary (`kubectl-1.35`, installed by
    /// scripts/install-helm.sh).
    pub async fn kubectl_version(&self, binary: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut cmd = tokio::process::Command::new("timeout");
        cmd.args(["-k", "5", "30", binary, "--kubeconfig"])
            .arg(self.kubeconfig())
            .args(["--server", &self.server])
            .args(args);
        run_with_input(cmd, stdin).await
    }

    /// kubectl that must succeed; its stdout.
    pub async fn must(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.kubectl(args, None).await;
        assert!(ok, "kubectl {args:?} failed:\n{out}\n{err}");
        out
    }

    /// kubectl that must succeed and print JSON (`-o json`, `--raw`); the JSON.
    pub async fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.must(args).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl {args:?} printed no JSON ({e}):\n{out}"))
    }

    /// Stops everything.
    pub async fn stop(mut self) {
        self.apiserver.take();
        // An in-process store has to be stopped; etcd is killed on drop.
        if let Some(Backend::Kubernate(store)) = self.backend.take() {
            store.stop().await;
        }
    }
}

/// A component binary (controller manager, scheduler …) run against a
/// [`Cluster`] under its own identity, with its log in the cluster's
/// directory and its metrics on a free port. Kill and start it again at
/// will.
pub struct Component {
    binary: String,
    args: Vec<String>,
    log: PathBuf,
    pub metrics_port: u16,
    child: Option<ChildGuard>,
}

impl Component {
    /// `binary --kubeconfig <identity>.kubeconfig --master <server>
    /// --metrics-bind-address 127.0.0.1:<port> args…`, started.
    pub fn start(cluster: &Cluster, binary: &str, identity: &str, args: &[&str]) -> Component {
        let metrics_port = free_port();
        let mut all = vec![
            "--kubeconfig".to_string(),
            cluster.kubeconfig_of(identity).to_str().unwrap().to_string(),
            "--master".into(),
            cluster.server.clone(),
            "--metrics-bind-address".into(),
            format!("127.0.0.1:{metrics_port}"),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        let mut component = Component {
            binary: binary.to_string(),
            args: all,
            log: cluster.dir.path().join(format!("{binary}.log")),
            metrics_port,
            child: None,
        };
        component.restart();
        component
    }

    /// Starts it (again), appending to the same log.
    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(binary(&self.binary))
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(ChildGuard(child));
    }

    /// kill -9.
    pub fn kill(&mut self) {
        self.child = None;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its /metrics text (empty if it does not answer).
    pub async fn metrics(&self) -> String {
        let out = tokio::process::Command::new("curl")
            .args([
                "-sf",
                "--max-time",
                "5",
                &format!("http://127.0.0.1:{}/metrics", self.metrics_port),
            ])
            .output()
            .await
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

/// Polls `check` every 100 ms until it returns `Some`; panics after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Helpers the benchmarks share.
pub mod bench {
    use std::time::Duration;

    /// The value of `--name N` on the command line, or `default`.
    pub fn arg(name: &str, default: usize) -> usize {
        let args: Vec<String> = std::env::args().collect();
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// The `p` quantile (0..=1) of sorted durations, in milliseconds.
    pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
        if sorted.is_empty() {
            return 0.0;
        }
        let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[i].as_secs_f64() * 1000.0
    }
}
