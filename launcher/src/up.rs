//! `kubernate up`: a whole cluster on this machine, as child processes.
//!
//! `up` creates the PKI in `DIR/pki` if it is not there (adding node
//! identities that are missing), then starts, in order and each after the
//! previous one answers: the store, the API server (waiting for
//! `/readyz`), the controller manager, the scheduler and one kubelet per
//! node, with their logs in `DIR/logs/`. When every node is Ready it says
//! how to use kubectl. It then supervises: a component that exits is
//! started again (so `kill -9` of the API server heals by itself). On
//! Ctrl-C or SIGTERM it stops everything in reverse order — the
//! components, then the containers their kubelets left running — and
//! leaves no process behind. Everything else stays in DIR, so the next
//! `up` brings back the same cluster.
//!
//! `up --detach` runs the same supervisor in the background and returns
//! once the cluster is ready; `kubernate down --dir DIR` stops it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::pki;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Setup(String),
    #[error("pki: {0}")]
    Pki(#[from] pki::Error),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0} did not become ready within {1:?}; see its log in {2}")]
    NotReady(String, Duration, PathBuf),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub dir: PathBuf,
    pub nodes: u32,
    /// Added to every default port (2379, 6443, 10257 …), to run two
    /// clusters side by side.
    pub port_offset: u16,
    /// Where the component binaries are (default: beside `kubernate`).
    pub bin_dir: Option<PathBuf>,
    /// How long a silent node stays Ready (the controller manager's
    /// `--node-monitor-grace-period`, e.g. `40s`).
    pub node_monitor_grace_period: String,
}

impl Options {
    /// Refuses a port offset that would push some port past 65535.
    fn check(&self) -> Result<(), Error> {
        let highest = 11250u32 + self.nodes + u32::from(self.port_offset);
        if highest > u32::from(u16::MAX) {
            return Err(Error::Setup(format!(
                "--port-offset {} with {} node(s) needs port {highest}, above 65535",
                self.port_offset, self.nodes
            )));
        }
        Ok(())
    }

    fn port(&self, base: u16) -> u16 {
        base + self.port_offset
    }

    fn server(&self) -> String {
        format!("https://127.0.0.1:{}", self.port(6443))
    }

    fn pki(&self) -> PathBuf {
        self.dir.join("pki")
    }

    fn node_names(&self) -> Vec<String> {
        (1..=self.nodes).map(|i| format!("node-{i}")).collect()
    }

    fn binary(&self, name: &str) -> Result<PathBuf, Error> {
        let dir = match &self.bin_dir {
            Some(d) => d.clone(),
            None => std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .unwrap_or_default(),
        };
        let path = dir.join(name);
        if path.exists() {
            Ok(path)
        } else {
            Err(Error::Setup(format!(
                "{} not found; build every component first (cargo build --release --bins)",
                path.display()
            )))
        }
    }
}

/// One supervised component.
struct Component {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    restarts: u32,
}

impl Component {
    fn spawn(&mut self) -> Result<(), Error> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io(format!("opening {}", self.log.display())))?;
        let err = log.try_clone().map_err(io("duplicating the log file"))?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            // Its own process group: a Ctrl-C at the terminal reaches only
            // `up`, which stops the components in order.
            .process_group(0)
            .spawn()
            .map_err(io(format!("starting {}", self.program.display())))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `grace`.
    async fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else { return };
        if let Some(pid) = child
            .id()
            .and_then(|p| rustix::process::Pid::from_raw(i32::try_from(p).unwrap_or(0)))
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }
}

/// A GET over HTTPS with the admin identity; (status, body).
async fn get(tls: &Arc<rustls::ClientConfig>, port: u16, path: &str) -> Option<(u16, String)> {
    let tcp = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .ok()?
    .ok()?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").ok()?;
    let handshake = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp);
    let mut stream = tokio::time::timeout(Duration::from_secs(5), handshake)
        .await
        .ok()?
        .ok()?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAccept: application/json\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// The body of a chunked response, joined.
fn unchunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_string();
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
    }
    if out.is_empty() {
        body.to_string()
    } else {
        out
    }
}

async fn wait_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The names of the nodes whose Ready condition is True.
fn ready_nodes(list: &str) -> Vec<String> {
    let Ok(list) = serde_json::from_str::<serde_json::Value>(list) else {
        return Vec::new();
    };
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| {
            n["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

fn pid_file(dir: &Path) -> PathBuf {
    dir.join("up.pid")
}

fn ready_file(dir: &Path) -> PathBuf {
    dir.join("up.ready")
}

/// The pid of the `kubernate up` running from `dir`, if it still runs (a
/// pid reused by another program does not count).
fn running_pid(dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file(dir)).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let ours = args.first().is_some_and(|a| a.ends_with(b"kubernate")) && args.iter().any(|a| *a == b"up");
    ours.then_some(pid)
}

/// Field 22 of /proc/PID/stat: when the process started.
fn proc_start(pid: i64) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split(' ').nth(19)?.parse().ok()
}

/// Kills the containers the kubelets left behind: those without an exit
/// record whose process is the very one recorded (same start time), each
/// with its process group.
fn kill_containers(dir: &Path) {
    let Ok(nodes) = std::fs::read_dir(dir.join("nodes")) else {
        return;
    };
    for node in nodes.filter_map(|n| n.ok()) {
        let Ok(containers) = std::fs::read_dir(node.path().join("containers")) else {
            continue;
        };
        for c in containers.filter_map(|c| c.ok()) {
            if c.path().join("exit.json").exists() {
                continue;
            }
            let Ok(bytes) = std::fs::read(c.path().join("pid")) else {
                continue;
            };
            let Ok(started) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                continue;
            };
            let Some(pid) = started["pid"].as_i64() else { continue };
            let same = proc_start(pid).is_some_and(|t| Some(t) == started["proc_start"].as_u64());
            let Some(raw) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else {
                continue;
            };
            if same {
                let _ = rustix::process::kill_process_group(raw, rustix::process::Signal::KILL);
            }
        }
    }
}

fn components(opts: &Options) -> Result<Vec<Component>, Error> {
    let pki = opts.pki();
    let p = |f: &str| pki.join(f).to_string_lossy().to_string();
    let logs = opts.dir.join("logs");
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (store, peer, metrics) = (opts.port(2379), opts.port(2380), opts.port(2381));
    let mut list: Vec<(String, &str, Vec<String>)> = vec![
        ("store".to_string(), "kubernate-store", {
            let mut a = s(&["--name", "store-0", "--data-dir"]);
            a.push(opts.dir.join("store").to_string_lossy().to_string());
            a.extend(s(&["--listen-client-urls", &format!("https://127.0.0.1:{store}")]));
            a.extend(s(&["--advertise-client-urls", &format!("https://127.0.0.1:{store}")]));
            a.extend(s(&["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")]));
            a.extend(s(&[
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
            ]));
            a.extend(s(&["--listen-metrics-urls", &format!("http://127.0.0.1:{metrics}")]));
            a.extend(s(&[
                "--cert-file",
                &p("store/store-0.crt"),
                "--key-file",
                &p("store/store-0.key"),
            ]));
            a.extend(s(&[
                "--trusted-ca-file",
                &p("store-ca.crt"),
                "--allowed-client-cn",
                "kube-apiserver-etcd-client",
            ]));
            a
        }),
        (
            "apiserver".to_string(),
            "kubernate-apiserver",
            s(&[
                "--etcd-servers",
                &format!("https://127.0.0.1:{store}"),
                "--etcd-cafile",
                &p("store-ca.crt"),
                "--etcd-certfile",
                &p("apiserver-store-client.crt"),
                "--etcd-keyfile",
                &p("apiserver-store-client.key"),
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                &opts.port(6443).to_string(),
                "--tls-cert-file",
                &p("apiserver.crt"),
                "--tls-private-key-file",
                &p("apiserver.key"),
                "--client-ca-file",
                &p("ca.crt"),
                "--kubelet-client-certificate",
                &p("apiserver-kubelet-client.crt"),
                "--kubelet-client-key",
                &p("apiserver-kubelet-client.key"),
                "--service-account-key-file",
                &p("service-account.pub"),
                "--service-account-signing-key-file",
                &p("service-account.key"),
            ]),
        ),
        (
            "controller-manager".to_string(),
            "kubernate-controller-manager",
            s(&[
                "--kubeconfig",
                &p("controller-manager.kubeconfig"),
                "--metrics-bind-address",
                &format!("127.0.0.1:{}", opts.port(10257)),
                "--node-monitor-grace-period",
                &opts.node_monitor_grace_period,
            ]),
        ),
        (
            "scheduler".to_string(),
            "kubernate-scheduler",
            s(&[
                "--kubeconfig",
                &p("scheduler.kubeconfig"),
                "--metrics-bind-address",
                &format!("127.0.0.1:{}", opts.port(10259)),
            ]),
        ),
    ];
    for (i, node) in opts.node_names().iter().enumerate() {
        let port = opts.port(10260) + u16::try_from(i).unwrap_or(0);
        let root = opts.dir.join("nodes").join(node);
        let args = s(&[
            "--kubeconfig",
            &p(&format!("nodes/{node}.kubeconfig")),
            "--hostname-override",
            node,
            "--root-dir",
            &root.to_string_lossy(),
            "--image-store",
            &opts.dir.join("images").to_string_lossy(),
            "--metrics-bind-address",
            &format!("127.0.0.1:{port}"),
            "--port",
            &(opts.port(11250) + u16::try_from(i).unwrap_or(0)).to_string(),
            "--tls-cert-file",
            &p(&format!("nodes/{node}-serving.crt")),
            "--tls-private-key-file",
            &p(&format!("nodes/{node}-serving.key")),
            "--client-ca-file",
            &p("ca.crt"),
        ]);
        list.push((format!("kubelet-{node}"), "kubernate-kubelet", args));
    }
    let mut out = Vec::new();
    for (name, binary, args) in list {
        out.push(Component {
            log: logs.join(format!("{name}.log")),
            name,
            program: opts.binary(binary)?,
            args,
            child: None,
            restarts: 0,
        });
    }
    Ok(out)
}

/// Creates what is missing of the PKI.
fn ensure_pki(opts: &Options) -> Result<(), Error> {
    let dir = opts.pki();
    if !dir.join("ca.crt").exists() {
        let mut init = pki::InitOptions::new(&dir);
        init.nodes = opts.node_names();
        init.server = opts.server();
        pki::init(&init)?;
    }
    for node in opts.node_names() {
        if !dir.join("nodes").join(format!("{node}.kubeconfig")).exists() {
            pki::add_node(&dir, &node, Some(&opts.server()), false)?;
        }
    }
    Ok(())
}

/// A Prometheus configuration that scrapes every component of this
/// cluster (`prometheus --config.file=DIR/prometheus.yml`). The API
/// server's /metrics needs a client certificate: the admin one, until a
/// scraper identity with RBAC exists.
pub fn prometheus_config(opts: &Options) -> String {
    // Absolute: Prometheus reads relative paths from the config's folder.
    let pki = std::path::absolute(opts.pki()).unwrap_or_else(|_| opts.pki());
    let target = |port: u16| format!("'127.0.0.1:{}'", opts.port(port));
    let kubelets: Vec<String> = (0..opts.nodes)
        .map(|i| format!("'127.0.0.1:{}'", opts.port(10260) + u16::try_from(i).unwrap_or(0)))
        .collect();
    format!(
        "# Written by `kubernate up`: every component of the cluster in {dir}.
global:
  scrape_interval: 5s
scrape_configs:
- job_name: store
  static_configs: [{{targets: [{store}]}}]
- job_name: apiserver
  scheme: https
  tls_config:
    ca_file: {ca}
    cert_file: {cert}
    key_file: {key}
  static_configs: [{{targets: [{apiserver}]}}]
- job_name: controller-manager
  static_configs: [{{targets: [{cm}]}}]
- job_name: scheduler
  static_configs: [{{targets: [{scheduler}]}}]
- job_name: kubelet
  static_configs: [{{targets: [{kubelets}]}}]
",
        dir = opts.dir.display(),
        store = target(2381),
        ca = pki.join("ca.crt").display(),
        cert = pki.join("admin.crt").display(),
        key = pki.join("admin.key").display(),
        apiserver = target(6443),
        cm = target(10257),
        scheduler = target(10259),
        kubelets = kubelets.join(", "),
    )
}

/// Runs the cluster in the foreground until SIGINT or SIGTERM.
/// Stores the `busybox` test image when the store lacks it and the host
/// has a static busybox; says why not otherwise (pods can still use
/// imported images).
fn ensure_busybox(store: &Path) {
    if crate::busybox::present(store) {
        return;
    }
    match crate::busybox::import(store) {
        Ok(name) => println!("imported {name} (from this machine's busybox) into {}", store.display()),
        Err(e) => println!(
            "no busybox image: {e}; import images with `kubernate image import FILE --store {}`",
            store.display()
        ),
    }
}

pub async fn run(opts: Options) -> Result<(), Error> {
    opts.check()?;
    std::fs::create_dir_all(opts.dir.join("logs")).map_err(io(format!("creating {}", opts.dir.display())))?;
    if let Some(pid) = running_pid(&opts.dir) {
        if u32::try_from(pid).ok() != Some(std::process::id()) {
            return Err(Error::Setup(format!(
                "a cluster already runs from {} (pid {pid}); `kubernate down --dir {}` stops it",
                opts.dir.display(),
                opts.dir.display()
            )));
        }
    }
    std::fs::write(pid_file(&opts.dir), std::process::id().to_string()).map_err(io("writing up.pid"))?;
    let _ = std::fs::remove_file(ready_file(&opts.dir));
    ensure_pki(&opts)?;
    ensure_busybox(&opts.dir.join("images"));
    std::fs::write(opts.dir.join("prometheus.yml"), prometheus_config(&opts)).map_err(io("writing prometheus.yml"))?;
    let stop = common::shutdown::on_signal();
    let result = supervise(&opts, &stop).await;
    let _ = std::fs::remove_file(ready_file(&opts.dir));
    let _ = std::fs::remove_file(pid_file(&opts.dir));
    result
}

async fn supervise(opts: &Options, stop: &tokio_util::sync::CancellationToken) -> Result<(), Error> {
    let mut all = components(opts)?;
    let admin = common::kubeconfig::Kubeconfig::load_resolved(&opts.pki().join("admin.kubeconfig"))
        .map_err(|e| Error::Setup(format!("admin kubeconfig: {e}")))?;
    let tls = admin
        .client_tls(&[b"http/1.1"])
        .map_err(|e| Error::Setup(format!("admin TLS: {e}")))?;
    let started = async {
        for c in all.iter_mut() {
            c.spawn()?;
            println!("started {}", c.name);
            match c.name.as_str() {
                "store" if !wait_port(opts.port(2379), Duration::from_secs(30)).await => {
                    return Err(Error::NotReady(c.name.clone(), Duration::from_secs(30), c.log.clone()));
                }
                "apiserver" => {
                    let deadline = Instant::now() + Duration::from_secs(60);
                    loop {
                        if let Some((200, _)) = get(&tls, opts.port(6443), "/readyz").await {
                            break;
                        }
                        if Instant::now() > deadline {
                            return Err(Error::NotReady(c.name.clone(), Duration::from_secs(60), c.log.clone()));
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                _ => {}
            }
        }
        // Every node Ready.
        let wanted = opts.node_names();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ready = match get(&tls, opts.port(6443), "/api/v1/nodes").await {
                Some((200, body)) => ready_nodes(&unchunk(&body)),
                _ => Vec::new(),
            };
            if wanted.iter().all(|n| ready.contains(n)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady(
                    "the nodes".into(),
                    Duration::from_secs(120),
                    opts.dir.join("logs"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let outcome = tokio::select! {
        r = started => r,
        _ = stop.cancelled() => Ok(()),
    };
    if outcome.is_ok() && !stop.is_cancelled() {
        std::fs::write(ready_file(&opts.dir), "ready\n").map_err(io("writing up.ready"))?;
        let kubeconfig = opts.pki().join("admin.kubeconfig");
        println!(
            "\nKubernate is up: {} node(s) Ready, API server at {}.",
            opts.nodes,
            opts.server()
        );
        println!("  export KUBECONFIG={}", kubeconfig.display());
        println!("  kubectl get nodes");
        println!(
            "Logs are in {}; prometheus --config.file={} scrapes every component.",
            opts.dir.join("logs").display(),
            opts.dir.join("prometheus.yml").display()
        );
        println!("Ctrl-C stops the cluster.");
        // Supervise: restart what exits.
        while !stop.is_cancelled() {
            for c in all.iter_mut() {
                let exited = c
                    .child
                    .as_mut()
                    .map(|ch| ch.try_wait().ok().flatten().is_some())
                    .unwrap_or(true);
                if exited {
                    c.restarts += 1;
                    eprintln!("{} exited; starting it again (restart {})", c.name, c.restarts);
                    let _ = c.spawn();
                }
            }
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
    println!("stopping");
    for c in all.iter_mut().rev() {
        c.stop(Duration::from_secs(10)).await;
    }
    kill_containers(&opts.dir);
    println!("stopped");
    outcome
}

/// `up --detach`: runs the supervisor in the background and returns when
/// the cluster is ready (or the supervisor failed).
pub fn detach(opts: &Options, args: &[String]) -> Result<(), Error> {
    opts.check()?;
    std::fs::create_dir_all(opts.dir.join("logs")).map_err(io(format!("creating {}", opts.dir.display())))?;
    if let Some(pid) = running_pid(&opts.dir) {
        return Err(Error::Setup(format!(
            "a cluster already runs from {} (pid {pid})",
            opts.dir.display()
        )));
    }
    let _ = std::fs::remove_file(ready_file(&opts.dir));
    let log_path = opts.dir.join("logs").join("up.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io("opening up.log"))?;
    let err = log.try_clone().map_err(io("duplicating up.log"))?;
    let exe = std::env::current_exe().map_err(io("finding the kubernate binary"))?;
    let args: Vec<&String> = args.iter().skip(1).filter(|a| a.as_str() != "--detach").collect();
    let mut child = std::process::Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(io("starting the supervisor"))?;
    let deadline = Instant::now() + Duration::from_secs(240);
    while Instant::now() < deadline {
        if ready_file(&opts.dir).exists() {
            println!("Kubernate is up (supervisor pid {}).", child.id());
            println!("  export KUBECONFIG={}", opts.pki().join("admin.kubeconfig").display());
            println!("  kubernate down --dir {} stops it.", opts.dir.display());
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::Setup(format!(
                "the cluster failed to start ({status}); see {}",
                log_path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(Error::NotReady(
        "the cluster".into(),
        Duration::from_secs(240),
        log_path,
    ))
}

/// `kubernate down`: stops the cluster that `up` runs from `dir`.
pub fn down(dir: &Path) -> Result<(), Error> {
    let Some(pid) = running_pid(dir) else {
        println!("no cluster runs from {}", dir.display());
        return Ok(());
    };
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            println!("stopped the cluster in {}", dir.display());
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(Error::Setup(format!(
        "the supervisor (pid {pid}) did not stop within 90s"
    )))
}
